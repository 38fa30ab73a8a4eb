# pipelines/finetune.mk — fine-tune a Stable Diffusion model on your own
# imagefolder with the sdtools pipeline, as a make recipe: each stage is a
# target whose output is a directory, so an interrupted run resumes at the
# stage (and, for sdencode and sdfit, inside the stage) where it stopped.
#
#   make -f pipelines/finetune.mk DATA=pokemon MODEL=sd15 OUT=runs/pokemon
#   make -f pipelines/finetune.mk DATA=pokemon MODEL=sd15 OUT=runs/pokemon samples
#
# Variables (defaults follow the diffusers README recipe for 24 GB GPUs; on a
# CPU lower RES and STEPS):
#   RES=512 BATCH=1 ACCUM=4 STEPS=15000 LR=1e-05 PROMPT="a cute pokemon"
#   FIT_FLAGS (extra sdfit options), BIN (where the tools are; default build/bin)

DATA   ?= $(error set DATA=imagefolder)
MODEL  ?= $(error set MODEL=diffusers model dir or .safetensors)
OUT    ?= runs/finetune
BIN    ?= build/bin
RES    ?= 512
BATCH  ?= 1
ACCUM  ?= 4
STEPS  ?= 15000
LR     ?= 1e-05
PROMPT ?= a cute pokemon
FIT_FLAGS ?= --use_ema --gradient_checkpointing --checkpointing_steps 500 --checkpoints_total_limit 3

.PHONY: all prep latents model samples
all: model

prep: $(OUT)/prep/manifest.json
$(OUT)/prep/manifest.json:
	$(BIN)/sdprep --train_data_dir $(DATA) --pretrained_model_name_or_path $(MODEL) \
	    --resolution $(RES) --center_crop --random_flip -o $(OUT)/prep

# sdencode keeps finished, verified shards when re-run
latents: $(OUT)/latents/.done
$(OUT)/latents/.done: $(OUT)/prep/manifest.json
	$(BIN)/sdencode $(OUT)/prep --pretrained_model_name_or_path $(MODEL) -o $(OUT)/latents --text_embeddings
	touch $@

# an interrupted training resumes from its latest checkpoint
model: $(OUT)/model/model_index.json
$(OUT)/model/model_index.json: $(OUT)/latents/.done
	$(BIN)/sdfit $(OUT)/latents --pretrained_model_name_or_path $(MODEL) --output_dir $(OUT)/model \
	    --resolution $(RES) --train_batch_size $(BATCH) --gradient_accumulation_steps $(ACCUM) \
	    --max_train_steps $(STEPS) --learning_rate $(LR) --lr_scheduler constant --lr_warmup_steps 0 \
	    --max_grad_norm 1 --validation_prompts "$(PROMPT)" \
	    $$(ls -d $(OUT)/model/checkpoint-* >/dev/null 2>&1 && echo --resume_from_checkpoint latest) $(FIT_FLAGS)

samples: $(OUT)/model/model_index.json
	$(BIN)/sdsample --pretrained_model_name_or_path $(OUT)/model --prompt "$(PROMPT)" \
	    --num_images_per_prompt 4 --seed 0 -o $(OUT)/samples --force

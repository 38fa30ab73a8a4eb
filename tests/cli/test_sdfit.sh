# CLI tests of sdfit: options, the output directory and checkpoints (diffusers'
# acceptance tests), exact resume (explicit checkpoint, SIGKILL, disk full),
# --on_nan, refusals of mismatched latents, --replay through the CLI against
# the reference trainer's golden, EMA output, prediction_type, random init.
. "$(dirname "$0")/lib.sh"
SDFIT=$BIN/sdfit
CHECK="$PY $ROOT/tests/cli/check_sdfit.py"
GOLD=$ROOT/tests/ref/golden/sdfit

check "--help" "$SDFIT" --help
check "--version" sh -c "'$SDFIT' --version | grep -q 'sdfit (sdtools)'"
"$SDFIT" >/dev/null 2>&1; [ $? -eq 2 ] && pass "no arguments exits 2" || fail "no arguments exits 2"
"$SDFIT" x --pretrained_model_name_or_path m --lr_scheduler >/dev/null 2>&1; [ $? -eq 2 ] && pass "missing value exits 2" || fail "missing value exits 2"
"$SDFIT" x --pretrained_model_name_or_path m --on_nan maybe >/dev/null 2>&1; [ $? -eq 2 ] && pass "bad --on_nan exits 2" || fail "bad --on_nan exits 2"
"$SDFIT" x --pretrained_model_name_or_path m --train-batch-size 0 >/dev/null 2>&1; [ $? -eq 2 ] && pass "batch size 0 exits 2 (hyphenated name)" || fail "batch size 0"
"$SDFIT" x y --pretrained_model_name_or_path m >/dev/null 2>&1; [ $? -eq 2 ] && pass "two latent sets exit 2" || fail "two latent sets"
err=$("$SDFIT" x --pretrained_model_name_or_path m --dream_training 2>&1); [ $? -eq 2 ] && pass "--dream_training: not implemented, usage error" || fail "--dream_training" "$err"

# data: synthetic images -> sdprep -> sdencode (sd1-tiny: 32 px images -> 16x16 latents), with and without text embeddings
$PY "$ROOT/tests/fixtures/make_dataset.py" "$TMP/data" --n 7 --seed 11 >/dev/null
$PY "$ROOT/tests/fixtures/make_tiny_model.py" --config sd1-tiny "$TMP/model" >/dev/null
"$BIN/sdprep" --train_data_dir "$TMP/data" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/prep" \
    --resolution 32 --random_flip --shard_size 4 -q 2>/dev/null
"$BIN/sdencode" "$TMP/prep" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/lat" -q 2>/dev/null
"$BIN/sdencode" "$TMP/prep" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/latx" --text_embeddings -q 2>/dev/null
M="--pretrained_model_name_or_path $TMP/model"
COMMON="$M --train_batch_size 2 --lr_warmup_steps 0 --seed 3 -j 1 -q"

# diffusers' acceptance tests: 4 steps, checkpoints every 2 -> {2, 4}; the output pipeline; checkpoint-2/unet loads
err=$("$SDFIT" "$TMP/lat" $COMMON --output_dir "$TMP/o1" --max_train_steps 4 --checkpointing_steps 2 2>&1) \
  && pass "4 steps" || fail "4 steps" "$err"
[ "$(cd "$TMP/o1" && ls -d checkpoint-* | tr '\n' ' ')" = "checkpoint-2 checkpoint-4 " ] && pass "checkpoints {2, 4}" || fail "checkpoints {2, 4}" "$(ls "$TMP/o1")"
ok=1; for f in model_index.json unet/config.json unet/diffusion_pytorch_model.safetensors scheduler/scheduler_config.json \
    vae/diffusion_pytorch_model.safetensors text_encoder/model.safetensors tokenizer/vocab.json logs/train_log.jsonl; do
    [ -f "$TMP/o1/$f" ] || { ok=0; echo "# missing $f"; }; done
[ $ok -eq 1 ] && pass "output dir in diffusers layout + logs" || fail "output dir in diffusers layout"
$CHECK keys "$TMP/o1/checkpoint-2/unet/diffusion_pytorch_model.safetensors" "$TMP/model/unet/diffusion_pytorch_model.safetensors" \
  && pass "checkpoint-2/unet holds the UNet's tensors" || fail "checkpoint-2/unet keys"
$CHECK same "$TMP/o1/checkpoint-4/unet/diffusion_pytorch_model.safetensors" "$TMP/o1/unet/diffusion_pytorch_model.safetensors" \
  && pass "output unet == checkpoint-4 unet" || fail "output unet == checkpoint-4 unet"
$CHECK differ "$TMP/o1/unet/diffusion_pytorch_model.safetensors" "$TMP/model/unet/diffusion_pytorch_model.safetensors" \
  && pass "the UNet was trained" || fail "the UNet was trained"
cmp -s "$TMP/o1/vae/diffusion_pytorch_model.safetensors" "$TMP/model/vae/diffusion_pytorch_model.safetensors" \
  && pass "VAE carried over" || fail "VAE carried over"
n=$($CHECK jsonl "$TMP/o1/logs/train_log.jsonl" 4) && pass "train_log.jsonl: steps 1..4" || fail "train_log.jsonl"
n=$($CHECK tb "$TMP/o1/logs/text2image-fine-tune" train_loss 4) && pass "TensorBoard: $n train_loss events" || fail "TensorBoard events"
$CHECK tb "$TMP/o1/logs/text2image-fine-tune" grad_norm 4 >/dev/null && $CHECK tb "$TMP/o1/logs/text2image-fine-tune" images_per_s 4 >/dev/null \
  && pass "TensorBoard: grad_norm, images_per_s" || fail "TensorBoard scalars"
# resuming from checkpoint-4 to 5 steps -> {4, 5}; a total limit of 2 then gives {4, 6}... as diffusers' tests
cp -r "$TMP/o1" "$TMP/o2"
"$SDFIT" "$TMP/lat" $COMMON --output_dir "$TMP/o2" --max_train_steps 5 --checkpointing_steps 1 --checkpoints_total_limit 2 \
    --resume_from_checkpoint checkpoint-4 2>/dev/null
[ "$(cd "$TMP/o2" && ls -d checkpoint-* | tr '\n' ' ')" = "checkpoint-4 checkpoint-5 " ] && pass "resume 4 -> 5 with limit 2: {4, 5}" || fail "resume limit" "$(ls "$TMP/o2")"
"$SDFIT" "$TMP/lat" $COMMON --output_dir "$TMP/o3" --max_train_steps 6 --checkpointing_steps 2 --checkpoints_total_limit 2 2>/dev/null
[ "$(cd "$TMP/o3" && ls -d checkpoint-* | tr '\n' ' ')" = "checkpoint-4 checkpoint-6 " ] && pass "6 steps, limit 2: {4, 6}" || fail "total limit" "$(ls "$TMP/o3")"

# exact resume: GA 2, EMA, min-SNR, noise offset, input perturbation, cosine warmup, cached text embeddings
R="$TMP/latx $COMMON --gradient_accumulation_steps 2 --use_ema --snr_gamma 5 --noise_offset 0.05 --input_perturbation 0.1 \
   --lr_scheduler cosine --lr_warmup_steps 2 --learning_rate 1e-3 --max_train_steps 9 --checkpointing_steps 3"
"$SDFIT" $R --output_dir "$TMP/full" 2>/dev/null
mkdir -p "$TMP/part"; cp -r "$TMP/full/checkpoint-3" "$TMP/part/"
"$SDFIT" $R --output_dir "$TMP/part" --resume_from_checkpoint latest 2>/dev/null
$CHECK same "$TMP/full/unet/diffusion_pytorch_model.safetensors" "$TMP/part/unet/diffusion_pytorch_model.safetensors" \
  && $CHECK same "$TMP/full/checkpoint-9/optimizer/exp_avg_sq.safetensors" "$TMP/part/checkpoint-9/optimizer/exp_avg_sq.safetensors" \
  && $CHECK same "$TMP/full/checkpoint-9/unet/diffusion_pytorch_model.safetensors" "$TMP/part/checkpoint-9/unet/diffusion_pytorch_model.safetensors" \
  && pass "resumed from checkpoint-3 == uninterrupted (EMA output, weights, optimizer: bit-identical)" || fail "exact resume from checkpoint-3"
$CHECK same "$TMP/full/unet/diffusion_pytorch_model.safetensors" "$TMP/full/checkpoint-9/unet_ema/diffusion_pytorch_model.safetensors" \
  && pass "--use_ema: the EMA weights are the output unet" || fail "EMA output"
grep -q '"optimization_step": 9' "$TMP/full/checkpoint-9/unet_ema/config.json" && grep -q '"decay"' "$TMP/full/checkpoint-9/unet_ema/config.json" \
  && pass "unet_ema/config.json carries the EMA state" || fail "unet_ema/config.json"
# SIGKILL at some point after checkpoint-3 (mid-step or mid-checkpoint), then resume latest
"$SDFIT" $R --max_train_steps 9 --output_dir "$TMP/killed" 2>/dev/null &
pid=$!
for i in $(seq 1 400); do [ -d "$TMP/killed/checkpoint-3" ] && break; sleep 0.01; done
kill -9 $pid 2>/dev/null; killed=$?; wait $pid 2>/dev/null
[ $killed -eq 0 ] && [ ! -f "$TMP/killed/model_index.json" ] && pass "killed (SIGKILL) after checkpoint-3: no output pipeline" \
  || pass "the run finished before the kill (nothing to check)"
"$SDFIT" $R --output_dir "$TMP/killed" --resume_from_checkpoint latest 2>/dev/null
$CHECK same "$TMP/full/unet/diffusion_pytorch_model.safetensors" "$TMP/killed/unet/diffusion_pytorch_model.safetensors" \
  && pass "killed + resumed == uninterrupted (bit-identical)" || fail "kill and resume"
# disk full while writing checkpoint-6: the run fails, checkpoint-3 stays valid, resuming gives the same result
mkdir -p "$TMP/full2"; cp -r "$TMP/full/checkpoint-3" "$TMP/full2/"
err=$(trap '' XFSZ; ulimit -f 2500; "$SDFIT" $R --output_dir "$TMP/full2" --resume_from_checkpoint latest 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "error:.*checkpoint-6" && [ ! -d "$TMP/full2/checkpoint-6" ] && [ -f "$TMP/full2/checkpoint-3/trainer_state.json" ] \
  && pass "disk full in checkpoint-6: error, no checkpoint-6, checkpoint-3 intact" || fail "disk full" "rc=$rc $err" "$(ls -a "$TMP/full2")"
"$SDFIT" $R --output_dir "$TMP/full2" --resume_from_checkpoint latest 2>/dev/null
$CHECK same "$TMP/full/unet/diffusion_pytorch_model.safetensors" "$TMP/full2/unet/diffusion_pytorch_model.safetensors" \
  && pass "resume after the failed save == uninterrupted" || fail "resume after disk full"
# the same with 2 threads (the CPU backend's reductions are split statically: run-to-run deterministic)
R2=$(echo "$R" | sed 's/-j 1/-j 2/')
"$SDFIT" $R2 --output_dir "$TMP/full_j2" 2>/dev/null
mkdir -p "$TMP/part_j2"; cp -r "$TMP/full_j2/checkpoint-6" "$TMP/part_j2/"
"$SDFIT" $R2 --output_dir "$TMP/part_j2" --resume_from_checkpoint latest 2>/dev/null
$CHECK same "$TMP/full_j2/unet/diffusion_pytorch_model.safetensors" "$TMP/part_j2/unet/diffusion_pytorch_model.safetensors" \
  && pass "2 threads: resumed from checkpoint-6 == uninterrupted (bit-identical)" || fail "exact resume with 2 threads"
expect_error "resume with another batch size" "train_batch_size" "$SDFIT" $R --output_dir "$TMP/part" --train_batch_size 3 \
    --resume_from_checkpoint checkpoint-3
expect_error "resume a missing checkpoint" "checkpoint-77" "$SDFIT" $R --output_dir "$TMP/part" --resume_from_checkpoint checkpoint-77

# --on_nan: a NaN in the replayed noise of micro-batch 2 (step 3)
$CHECK replay "$TMP/nan.safetensors" 8 2 4 16 16 --nan 2
err=$("$SDFIT" "$TMP/lat" $COMMON --output_dir "$TMP/nan1" --max_train_steps 4 --checkpointing_steps 1 --replay "$TMP/nan.safetensors" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && [ "$(printf '%s\n' "$err" | grep -c '')" -eq 1 ] && echo "$err" | grep -q "step 3: the loss is nan.*--on_nan abort" \
  && [ -d "$TMP/nan1/checkpoint-2" ] && [ ! -d "$TMP/nan1/checkpoint-3" ] && [ ! -f "$TMP/nan1/model_index.json" ] \
  && pass "--on_nan abort: one error line, checkpoint-2 kept, nothing after" || fail "--on_nan abort" "rc=$rc $err"
err=$("$SDFIT" "$TMP/lat" $M --train_batch_size 2 --lr_warmup_steps 0 --seed 3 -j 1 --output_dir "$TMP/nan2" --max_train_steps 4 \
    --checkpointing_steps 1 --replay "$TMP/nan.safetensors" --on_nan skip 2>&1); rc=$?
sk=$($CHECK jsonl "$TMP/nan2/logs/train_log.jsonl" 4)
[ $rc -eq 0 ] && [ "$sk" = "3" ] && echo "$err" | grep -q "warning: step 3: the loss is nan; update skipped" && echo "$err" | grep -q "1 skipped" \
  && $CHECK same "$TMP/nan2/checkpoint-2/unet/diffusion_pytorch_model.safetensors" "$TMP/nan2/checkpoint-3/unet/diffusion_pytorch_model.safetensors" \
  && $CHECK same "$TMP/nan2/checkpoint-2/optimizer/exp_avg.safetensors" "$TMP/nan2/checkpoint-3/optimizer/exp_avg.safetensors" \
  && $CHECK differ "$TMP/nan2/checkpoint-3/unet/diffusion_pytorch_model.safetensors" "$TMP/nan2/checkpoint-4/unet/diffusion_pytorch_model.safetensors" \
  && pass "--on_nan skip: step 3 skipped (weights and moments unchanged), counted, training goes on" || fail "--on_nan skip" "rc=$rc skipped='$sk'" "$err"
expect_error "replay too short" "covers 8 micro-batches" "$SDFIT" "$TMP/lat" $COMMON --output_dir "$TMP/nan3" --max_train_steps 9 \
    --replay "$TMP/nan.safetensors" --on_nan skip

# refusals: latents of another VAE, another text encoder, another tokenizer, another resolution
$PY "$ROOT/tests/fixtures/make_tiny_model.py" --config sd1-tiny "$TMP/other" --seed 9 >/dev/null
expect_error "latents of another VAE" "another VAE" "$SDFIT" "$TMP/lat" --pretrained_model_name_or_path "$TMP/other" --output_dir "$TMP/x" -q
cp -r "$TMP/model" "$TMP/m_te"; rm -rf "$TMP/m_te/text_encoder"; cp -r "$TMP/other/text_encoder" "$TMP/m_te/"
expect_error "embeddings of another text encoder" "another text encoder" "$SDFIT" "$TMP/latx" --pretrained_model_name_or_path "$TMP/m_te" --output_dir "$TMP/x" -q
cp -r "$TMP/model" "$TMP/m_tok"; rm -rf "$TMP/m_tok/tokenizer"
$PY "$ROOT/tests/fixtures/make_tiny_tokenizer.py" "$TMP/m_tok/tokenizer" --pad bang >/dev/null
expect_error "tokens of another tokenizer" "another tokenizer" "$SDFIT" "$TMP/lat" --pretrained_model_name_or_path "$TMP/m_tok" --output_dir "$TMP/x" -q
expect_error "another resolution" "resolution 32" "$SDFIT" "$TMP/lat" $M --resolution 512 --output_dir "$TMP/x" -q
err=$("$SDFIT" "$TMP/lat" --pretrained_model_name_or_path "$TMP/m_tok" --output_dir "$TMP/x" --max_train_steps 1 --ignore_provenance 2>&1) \
  && echo "$err" | grep -q "warning:.*another tokenizer" && pass "--ignore_provenance: a warning" || fail "--ignore_provenance" "$err"
expect_error "not a latent set" "not \"latent\"" "$SDFIT" "$TMP/prep" $M --output_dir "$TMP/x" -q
head -c 3000 "$TMP/lat/latent-000001.tar" > "$TMP/trunc.tar"; mkdir -p "$TMP/lat_tr"; cp "$TMP/lat/manifest.json" "$TMP/lat/latent-000000.tar" "$TMP/lat_tr/"
mv "$TMP/trunc.tar" "$TMP/lat_tr/latent-000001.tar"
expect_error "truncated shard" "latent-000001.tar" "$SDFIT" "$TMP/lat_tr" $M --output_dir "$TMP/x" -q

# --replay through the CLI: the reference trainer's trajectory (golden traj_a; output = EMA weights)
$PY "$ROOT/tests/fixtures/make_tiny_model.py" --config sd1-micro "$TMP/micro" >/dev/null
err=$("$SDFIT" "$GOLD/latents" --pretrained_model_name_or_path "$TMP/micro" --output_dir "$TMP/ra" --replay "$GOLD/traj_a.replay.safetensors" \
    --train_batch_size 2 --gradient_accumulation_steps 2 --max_train_steps 5 --seed 42 --learning_rate 1e-3 --lr_scheduler cosine \
    --lr_warmup_steps 2 --max_grad_norm 0.05 --use_ema --snr_gamma 5 --noise_offset 0.05 -j 1 -q 2>&1) || fail "replay run" "$err"
e=$($CHECK golden "$TMP/ra/unet/diffusion_pytorch_model.safetensors" "$GOLD/traj_a.safetensors" ema. 1e-4) \
  && pass "--replay: 5 steps (GA 2, clip, cosine warmup, EMA, min-SNR, offset) match the reference trainer's EMA weights ($e of RMS)" \
  || fail "--replay vs reference" "$e"

# --prediction_type is written into the output's scheduler config; the base model's stays as it was
"$SDFIT" "$TMP/lat" $COMMON --output_dir "$TMP/v" --max_train_steps 1 --prediction_type v_prediction 2>/dev/null
grep -q '"prediction_type": "v_prediction"' "$TMP/v/scheduler/scheduler_config.json" && ! grep -q v_prediction "$TMP/model/scheduler/scheduler_config.json" \
  && pass "--prediction_type v_prediction saved in the output scheduler config (base untouched)" || fail "prediction_type saved"
# --init_unet_from_config: a random UNet, deterministic in --seed
"$SDFIT" "$TMP/lat" $COMMON --output_dir "$TMP/r1" --max_train_steps 1 --init_unet_from_config "$TMP/model/unet/config.json" 2>/dev/null
"$SDFIT" "$TMP/lat" $COMMON --output_dir "$TMP/r2" --max_train_steps 1 --init_unet_from_config "$TMP/model/unet" 2>/dev/null
$CHECK same "$TMP/r1/unet/diffusion_pytorch_model.safetensors" "$TMP/r2/unet/diffusion_pytorch_model.safetensors" \
  && $CHECK differ "$TMP/r1/unet/diffusion_pytorch_model.safetensors" "$TMP/o1/unet/diffusion_pytorch_model.safetensors" \
  && $CHECK keys "$TMP/r1/unet/diffusion_pytorch_model.safetensors" "$TMP/model/unet/diffusion_pytorch_model.safetensors" \
  && pass "--init_unet_from_config: random init, same seed same weights" || fail "--init_unet_from_config"
# reference options that do not apply: one note each, not an error
err=$("$SDFIT" "$TMP/lat" $M --train_batch_size 2 --seed 3 -j 1 --output_dir "$TMP/n" --max_train_steps 1 --mixed_precision fp16 \
    --enable_xformers_memory_efficient_attention --dataloader_num_workers 4 --push_to_hub --center_crop --report_to wandb 2>&1) \
  && [ "$(echo "$err" | grep -c 'note: --')" -eq 6 ] && pass "not-applicable reference options: accepted with a note each" \
  || fail "not-applicable options" "$err"
# validation images: every 2 steps (epochs off), EMA weights; the last one is what sdsample renders from the output
err=$("$SDFIT" "$TMP/lat" $COMMON --output_dir "$TMP/val" --max_train_steps 4 --use_ema --learning_rate 1e-3 \
    --validation_prompts "a red square" "two cats" --validation_steps 2 --validation_epochs 0 2>&1) || fail "validation run" "$err"
n=$(ls "$TMP"/val/logs/validation/step-00000[24]/0[01].png 2>/dev/null | wc -l)
[ "$n" -eq 4 ] && $CHECK tb "$TMP/val/logs" validation/1 2 >/dev/null && pass "validation: 2 prompts at steps 2 and 4 (PNGs + TensorBoard images)" \
  || fail "validation images" "$n" "$(ls -R "$TMP/val/logs")"
"$BIN/sdsample" --pretrained_model_name_or_path "$TMP/val" --prompt "a red square" --num_inference_steps 20 --seed 3 -o "$TMP/vs" -j 1 -q 2>/dev/null
$CHECK pixels "$TMP/val/logs/validation/step-000004/00.png" "$TMP"/vs/*.png \
  && pass "the step-4 validation image (EMA weights) == sdsample on the output dir" || fail "validation == sdsample"

# --gradient_checkpointing: the same weights, bit for bit; --scale_lr: lr x GA x batch; latest with no checkpoint: a fresh start
"$SDFIT" "$TMP/lat" $COMMON --output_dir "$TMP/gc" --max_train_steps 3 --gradient_checkpointing 2>/dev/null
"$SDFIT" "$TMP/lat" $COMMON --output_dir "$TMP/gc0" --max_train_steps 3 2>/dev/null
$CHECK same "$TMP/gc/unet/diffusion_pytorch_model.safetensors" "$TMP/gc0/unet/diffusion_pytorch_model.safetensors" \
  && pass "--gradient_checkpointing: bit-identical weights" || fail "--gradient_checkpointing"
err=$("$SDFIT" "$TMP/lat" $M --train_batch_size 2 --gradient_accumulation_steps 2 --scale_lr --lr_warmup_steps 0 --seed 3 -j 1 \
    --output_dir "$TMP/sl" --max_train_steps 1 --resume_from_checkpoint latest 2>&1)
[ "$($CHECK field "$TMP/sl/logs/train_log.jsonl" 1 lr)" = "0.0004" ] && echo "$err" | grep -q "does not exist; starting a new" \
  && pass "--scale_lr (1e-4 x 2 x 2); --resume_from_checkpoint latest without checkpoints starts afresh" || fail "--scale_lr / latest" "$err"

# the latent set as --train_data_dir, the summary line
err=$("$SDFIT" --train_data_dir "$TMP/lat" $M --train_batch_size 4 --seed 1 -j 1 --output_dir "$TMP/s" --num_train_epochs 2 2>&1) \
  && echo "$err" | grep -q "sdfit: 4 steps (4 this run" && pass "--num_train_epochs 2 = 4 steps (7 samples, batch 4); summary" \
  || fail "epochs / summary" "$err"
# shards named by a brace list and by a glob (the manifest beside them is used)
"$SDFIT" "$TMP/lat/latent-{000000..000001}.tar" $COMMON --output_dir "$TMP/br" --max_train_steps 2 2>/dev/null
"$SDFIT" --latents "$TMP/lat/latent-*.tar" $COMMON --output_dir "$TMP/gl" --max_train_steps 2 2>/dev/null
$CHECK same "$TMP/br/unet/diffusion_pytorch_model.safetensors" "$TMP/gl/unet/diffusion_pytorch_model.safetensors" \
  && $CHECK same "$TMP/br/unet/diffusion_pytorch_model.safetensors" "$TMP/o1/checkpoint-2/unet/diffusion_pytorch_model.safetensors" \
  && pass "latent shards as {000000..000001} and as a glob == the directory" || fail "brace / glob shard specs"
finish

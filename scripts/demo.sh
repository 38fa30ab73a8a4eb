#!/usr/bin/env bash
# demo.sh — the pipeline on a built-in default (make demo): a synthetic
# imagefolder (coloured shapes, captioned) and a tiny random model, through
#   sdprep -> sdencode -> sdfit -> sdsample
# as far as this build's tools go. Outputs in demo-out/. Minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/bin
PY=$PWD/.venv-test/bin/python
OUT=demo-out
rm -rf "$OUT"; mkdir -p "$OUT"
step() { echo; echo "== $*"; }

step "a synthetic dataset (imagefolder: metadata.jsonl + images) and a tiny SD1-style model"
$PY tests/fixtures/make_dataset.py "$OUT/data" --n 64 --seed 1 --min-size 64 --max-size 160
$PY tests/fixtures/make_tiny_model.py --config sd1-tiny "$OUT/model" >/dev/null
$BIN/sdinfo "$OUT/model"

step "sdprep: images -> prep shards (PIL-exact resize/crop, exact CLIP tokens)"
$BIN/sdprep --train_data_dir "$OUT/data" --pretrained_model_name_or_path "$OUT/model" -o "$OUT/prep" \
    --resolution 64 --center_crop --random_flip --shard_size 32
$BIN/sdinfo "$OUT/prep" | head -3

step "sdencode: prep shards -> latent shards (VAE moments of both orientations, text embeddings)"
$BIN/sdencode "$OUT/prep" --pretrained_model_name_or_path "$OUT/model" -o "$OUT/latents" --text_embeddings
$BIN/sdinfo "$OUT/latents" | head -3

if [ -x "$BIN/sdfit" ]; then
    step "sdfit: fine-tune the UNet on the latents"
    $BIN/sdfit "$OUT/latents" --pretrained_model_name_or_path "$OUT/model" --output_dir "$OUT/finetuned" \
        --resolution 64 --train_batch_size 8 --max_train_steps 60 --learning_rate 1e-3 --lr_warmup_steps 0 \
        --checkpointing_steps 30 --seed 0 --use_ema \
        --validation_prompts "a red circle on a blue background" --validation_epochs 4
    $PY scripts/plot_loss.py "$OUT/finetuned" "$OUT/loss.png" && echo "loss curve: $OUT/loss.png"
    $BIN/sdinfo "$OUT/finetuned" | head -3
fi
if [ -x "$BIN/sdsample" ]; then
    step "sdsample: render prompts with the (fine-tuned) model"
    MODEL="$OUT/model"; [ -d "$OUT/finetuned/unet" ] && MODEL="$OUT/finetuned"
    $BIN/sdsample --pretrained_model_name_or_path "$MODEL" --prompt "a red circle on a blue background" \
        --prompt "a yellow square on a black background" --num_inference_steps 20 --seed 0 \
        --height 64 --width 64 --output_dir "$OUT/samples"
    ls -l "$OUT/samples"
fi
echo
echo "== demo done: outputs in $OUT/"

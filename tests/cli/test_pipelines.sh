# pipelines/finetune.mk: the recipe chains sdprep -> sdencode -> sdfit on a
# tiny model, and a second invocation has nothing left to do.
. "$(dirname "$0")/lib.sh"
# Run the recipe as a user would, not as a sub-make of `make check`: the
# parent's jobserver flags are not ours to inherit (make warns about them).
unset MAKEFLAGS MFLAGS MAKELEVEL
$PY "$ROOT/tests/fixtures/make_dataset.py" "$TMP/data" --n 6
$PY "$ROOT/tests/fixtures/make_tiny_model.py" --config sd1-tiny "$TMP/model" >/dev/null
MK="make -s -f $ROOT/pipelines/finetune.mk BIN=$BIN DATA=$TMP/data MODEL=$TMP/model OUT=$TMP/run RES=32 STEPS=2 BATCH=2 ACCUM=1"
out=$(cd "$ROOT" && $MK FIT_FLAGS="--checkpointing_steps 1 -q" 2>&1) && [ -f "$TMP/run/model/model_index.json" ] \
  && [ -d "$TMP/run/model/checkpoint-2" ] && pass "prep -> latents -> model" || fail "prep -> latents -> model" "$out"
out=$(cd "$ROOT" && $MK 2>&1) && [ -z "$out" ] && pass "a second run has nothing to do" || fail "a second run has nothing to do" "$out"
"$BIN/sdinfo" "$TMP/run/model" | grep -q "diffusers pipeline" && pass "the output is a diffusers pipeline" || fail "output is a pipeline"
finish

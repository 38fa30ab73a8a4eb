# CLI tests of sdencode: parity of stored moments / text embeddings with
# diffusers + transformers (golden), kill-and-rerun equals an uninterrupted
# run, refusals (incomplete/mismatched inputs, other settings), skips.
. "$(dirname "$0")/lib.sh"
SDENC=$BIN/sdencode
GOLD=$ROOT/tests/ref/golden/sdencode/golden.safetensors
CHECK="$PY $ROOT/tests/cli/check_latents.py"

check "--help" "$SDENC" --help
check "--version" sh -c "'$SDENC' --version | grep -q 'sdencode (sdtools)'"
"$SDENC" >/dev/null 2>&1; [ $? -eq 2 ] && pass "no arguments exits 2" || fail "no arguments exits 2"
"$SDENC" x -o y --pretrained_model_name_or_path m --latent_dtype bf8 >/dev/null 2>&1; [ $? -eq 2 ] && pass "bad dtype exits 2" || fail "bad dtype exits 2"

# the inputs of tests/ref/gen_sdencode.py
$PY "$ROOT/tests/fixtures/make_dataset.py" "$TMP/data" --n 8 --seed 3
$PY "$ROOT/tests/fixtures/make_tiny_model.py" --config sd1-tiny "$TMP/model" >/dev/null
"$BIN/sdprep" --train_data_dir "$TMP/data" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/prep" \
    --resolution 32 --center_crop --random_flip --shard_size 3 -q 2>/dev/null

err=$("$SDENC" "$TMP/prep" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/lat" --text_embeddings -q 2>&1) \
  && pass "encode with text embeddings" || fail "encode with text embeddings" "$err"
echo "$err" | grep -q "sdencode: 8 samples in 3 shards" && pass "summary line" || fail "summary line" "$err"
out=$($CHECK "$TMP/lat" "$GOLD" --text hidden_states 2>&1) && pass "moments + hidden states match diffusers/transformers ($out)" || fail "parity" "$out"
"$SDENC" "$TMP/prep" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/lat1" --text_embeddings --clip_skip 1 -q 2>/dev/null
out=$($CHECK "$TMP/lat1" "$GOLD" --text hidden_states_skip1 2>&1) && pass "--clip_skip 1 matches diffusers' clip_skip ($out)" || fail "clip_skip parity" "$out"
"$SDENC" "$TMP/prep" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/lat16" --latent_dtype fp16 -j 1 -q 2>/dev/null
out=$($CHECK "$TMP/lat16" "$GOLD" --fp16 2>&1) && pass "fp16 latents, one thread ($out)" || fail "fp16 parity" "$out"
$PY - "$TMP/lat16" <<'PY' && pass "fp16 latents are F16 and carry the VAE fingerprint" || fail "fp16 dtype/metadata"
import json, sys, tarfile
from safetensors import safe_open
d = sys.argv[1]; m = json.load(open(d + "/manifest.json"))
t = tarfile.open(d + "/" + m["shards"][0]["name"]); raw = t.extractfile("000000000.latent.safetensors").read()
import safetensors; meta = safetensors.deserialize(raw)
assert all(x[1]["dtype"] in ("F16", "float16") for x in meta), meta
open(d + "/x.st", "wb").write(raw)
with safe_open(d + "/x.st", "numpy") as f: assert f.metadata()["vae_fingerprint"] == m["provenance"]["vae_fingerprint"]
PY

# re-running an unchanged, complete set keeps everything
err=$("$SDENC" "$TMP/prep" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/lat" --text_embeddings -q 2>&1)
echo "$err" | grep -q "(3 kept from an earlier run)" && pass "re-run keeps verified shards" || fail "re-run keeps verified shards" "$err"
# other settings are refused unless --force
expect_error "other settings refused" "--force" "$SDENC" "$TMP/prep" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/lat" -q
# a modified shard is redone
printf 'x' >> "$TMP/lat/latent-000001.tar"
err=$("$SDENC" "$TMP/prep" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/lat" --text_embeddings -q 2>&1)
echo "$err" | grep -q "(2 kept from an earlier run)" && $CHECK "$TMP/lat" "$GOLD" --text hidden_states >/dev/null \
  && pass "a damaged shard is re-encoded" || fail "a damaged shard is re-encoded" "$err"

# kill and re-run: the result equals an uninterrupted run, byte for byte
$PY "$ROOT/tests/fixtures/make_dataset.py" "$TMP/data2" --n 48 --seed 4
"$BIN/sdprep" --train_data_dir "$TMP/data2" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/prep2" \
    --resolution 64 --random_flip --shard_size 6 -q 2>/dev/null
"$SDENC" "$TMP/prep2" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/full" -q 2>/dev/null
"$SDENC" "$TMP/prep2" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/killed" -q 2>/dev/null &
pid=$!; sleep 0.8; kill -9 $pid 2>/dev/null; killed=$?; wait $pid 2>/dev/null
if [ $killed -eq 0 ]; then
    grep -q '"complete": false' "$TMP/killed/manifest.json" 2>/dev/null || [ ! -f "$TMP/killed/manifest.json" ] \
      && pass "killed run: manifest incomplete" || fail "killed run left a complete manifest"
else pass "run finished before the kill"; fi
"$SDENC" "$TMP/prep2" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/killed" -q 2>/dev/null
same=1; for f in "$TMP"/full/latent-*.tar; do cmp -s "$f" "$TMP/killed/$(basename "$f")" || same=0; done
[ $same -eq 1 ] && [ "$(ls "$TMP"/killed/*.tar | wc -l)" -eq 8 ] && pass "killed + re-run == uninterrupted run (byte-identical)" || fail "kill and re-run differ"
"$BIN/sdinfo" "$TMP/killed" 2>&1 | grep -q "complete, 8 shards, 48 samples" && pass "sdinfo: complete set" || fail "sdinfo: complete set"

# bad inputs
expect_error "prep set missing" "No such file" "$SDENC" "$TMP/nope" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/x" -q
mkdir -p "$TMP/inc"; cp "$TMP"/prep/* "$TMP/inc/"; sed -i 's/"complete": true/"complete": false/' "$TMP/inc/manifest.json"
expect_error "incomplete prep set" "incomplete" "$SDENC" "$TMP/inc" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/x" -q
expect_error "latent set as input" "not \"prep\"" "$SDENC" "$TMP/lat" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/x" -q
cp -r "$TMP/model" "$TMP/model2"; rm -rf "$TMP/model2/tokenizer"
$PY "$ROOT/tests/fixtures/make_tiny_tokenizer.py" "$TMP/model2/tokenizer" --pad bang >/dev/null
expect_error "other tokenizer refused" "another tokenizer" "$SDENC" "$TMP/prep" --pretrained_model_name_or_path "$TMP/model2" -o "$TMP/x" -q
# a truncated prep shard: an error naming it (its size no longer matches)
mkdir -p "$TMP/tr"; cp "$TMP"/prep/* "$TMP/tr/"; head -c 3000 "$TMP/prep/prep-000001.tar" > "$TMP/tr/prep-000001.tar"
expect_error "truncated prep shard" "prep-000001.tar" "$SDENC" "$TMP/tr" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/x2" -q
# a corrupt image member: counted skip, or an error with --strict
$PY - "$TMP/prep" "$TMP/bad" <<'PY'
import io, json, os, shutil, sys, tarfile
src, dst = sys.argv[1], sys.argv[2]; os.makedirs(dst)
m = json.load(open(src + "/manifest.json"))
for sh in m["shards"]:
    tin = tarfile.open(f"{src}/{sh['name']}"); out = io.BytesIO(); tout = tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT)
    for mem in tin.getmembers():
        data = tin.extractfile(mem).read()
        if mem.name == "000000004.png": data = data[:60]
        mem.size = len(data); tout.addfile(mem, io.BytesIO(data))
    tout.close(); open(f"{dst}/{sh['name']}", "wb").write(out.getvalue())
    sh["bytes"] = len(out.getvalue())
import hashlib
for sh in m["shards"]: sh["sha256"] = hashlib.sha256(open(f"{dst}/{sh['name']}", "rb").read()).hexdigest()
json.dump(m, open(dst + "/manifest.json", "w"), indent=2)
PY
err=$("$SDENC" "$TMP/bad" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/lbad" -q 2>&1)
echo "$err" | grep -q "7 samples in 3 shards.*skipped 1" && pass "corrupt image: counted skip" || fail "corrupt image: counted skip" "$err"
expect_error "corrupt image with --strict" "000000004" "$SDENC" "$TMP/bad" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/lbad2" --strict -q
finish

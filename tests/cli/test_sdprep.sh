# CLI tests of sdprep: options, outputs read by Python with no project code and
# checked against PIL, determinism, every bad-input skip, --strict, kills.
. "$(dirname "$0")/lib.sh"
SDPREP=$BIN/sdprep
CHECK="$PY $ROOT/tests/cli/check_prep.py"

check "--help" "$SDPREP" --help
check "--version" sh -c "'$SDPREP' --version | grep -q 'sdprep (sdtools)'"
"$SDPREP" -o x >/dev/null 2>&1; [ $? -eq 2 ] && pass "missing --train_data_dir exits 2" || fail "missing --train_data_dir exits 2"
"$SDPREP" --train_data_dir x -o y --tokenizer_name z --resolution abc >/dev/null 2>&1; [ $? -eq 2 ] && pass "bad number exits 2" || fail "bad number exits 2"
"$SDPREP" --train_data_dir x -o y --tokenizer_name z --image_interpolation_mode wavelet >/dev/null 2>&1; [ $? -eq 2 ] && pass "bad interpolation exits 2" || fail "bad interpolation exits 2"

$PY "$ROOT/tests/fixtures/make_tiny_model.py" --config sd1-tiny "$TMP/model" >/dev/null
$PY "$ROOT/tests/fixtures/make_dataset.py" "$TMP/data" --n 30 --bad
expect_error "missing tokenizer" "vocab.json" "$SDPREP" --train_data_dir "$TMP/data" --tokenizer_name "$TMP/nope" -o "$TMP/x"
expect_error "missing dataset" "nope" "$SDPREP" --train_data_dir "$TMP/nope" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/x"

# a run with every kind of bad input: counted skips, outputs checked against PIL
err=$("$SDPREP" --train_data_dir "$TMP/data" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/p1" \
      --resolution 64 --random_flip --shard_size 7 -q 2>&1); rc=$?
[ $rc -eq 0 ] && pass "run with bad inputs succeeds" || fail "run with bad inputs succeeds" "$err"
summary=$(echo "$err" | grep '^sdprep: wrote')
echo "$summary" | grep -q "wrote 30 samples in 5 shards" && echo "$summary" | grep -q "skipped 9 (missing_image 1, bad_row 1, no_caption 1, bad_utf8 1, duplicate 1, outside_root 1, bad_image 3)" \
  && pass "summary counts every skip by reason" || fail "summary counts every skip by reason" "$summary"
out=$($CHECK "$TMP/p1" "$TMP/data" 2>&1) && pass "outputs match PIL + tokens ($out)" || fail "outputs match PIL" "$out"
$PY - "$TMP/p1" <<'PY' && pass "manifest records skips, options and fingerprint" || fail "manifest records skips"
import json, sys
m = json.load(open(sys.argv[1] + "/manifest.json")); p = m["provenance"]
assert p["tool"] == "sdprep" and p["options"]["random_flip"] is True and p["options"]["resolution"] == 64
assert p["tokenizer_fingerprint"].startswith("sha256:") and p["counts"]["bad_image"] == 3
reasons = sorted(s["reason"] for s in p["skipped"]); assert reasons == ["bad_image"] * 3, reasons
assert p["dataset"]["skips"]["duplicate"] == 1 if "skips" in p["dataset"] else True
PY

# determinism: other thread count, same bytes
"$SDPREP" --train_data_dir "$TMP/data" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/p2" \
    --resolution 64 --random_flip --shard_size 7 -q -j 1 2>/dev/null
same=1; for f in "$TMP"/p1/prep-*.tar; do cmp -s "$f" "$TMP/p2/$(basename "$f")" || same=0; done
[ $same -eq 1 ] && pass "byte-identical shards with -j1 and all threads" || fail "byte-identical shards"
# another seed changes random crops, not the set
"$SDPREP" --train_data_dir "$TMP/data" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/p3" \
    --resolution 64 --shard_size 7 -q --seed 5 2>/dev/null
cmp -s "$TMP/p1/prep-000000.tar" "$TMP/p3/prep-000000.tar" && fail "seed changes random crops" || pass "seed changes random crops"

# existing output: refused without --force, replaced with it
expect_error "existing output refused" "--force" "$SDPREP" --train_data_dir "$TMP/data" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/p1" -q
"$SDPREP" --train_data_dir "$TMP/data" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/p1" -q --force \
    --resolution 48 --center_crop --shard_size 100 --image_interpolation_mode bicubic 2>/dev/null \
  && [ ! -e "$TMP/p1/prep-000004.tar" ] && out=$($CHECK "$TMP/p1" "$TMP/data" --interp bicubic 2>&1) \
  && pass "--force replaces; center crop + bicubic match PIL ($out)" || fail "--force replaces" "$out"

# --strict: the first skip is an error, and no complete manifest is left
expect_error "--strict fails on a skip" "skipped" "$SDPREP" --train_data_dir "$TMP/data" --pretrained_model_name_or_path "$TMP/model" -o "$TMP/s1" --strict -q
[ ! -f "$TMP/s1/manifest.json" ] || grep -q '"complete": false' "$TMP/s1/manifest.json" && pass "--strict leaves nothing that looks complete" || fail "--strict leaves nothing complete"

# other layouts and options
$PY "$ROOT/tests/fixtures/make_dataset.py" "$TMP/side" --n 8 --layout sidecar
"$SDPREP" --train_data_dir "$TMP/side" --tokenizer_name "$TMP/model/tokenizer" -o "$TMP/p4" --resolution 32 --center_crop -q 2>/dev/null \
  && out=$($CHECK "$TMP/p4" "$TMP/side" 2>&1) && pass "sidecar captions ($out)" || fail "sidecar captions" "$out"
$PY "$ROOT/tests/fixtures/make_dataset.py" "$TMP/csv" --n 9 --layout csv
"$SDPREP" --train_data_dir "$TMP/csv" --tokenizer_name "$TMP/model/tokenizer" -o "$TMP/p5" --resolution 32 --max_train_samples 5 --zstd -q 2>/dev/null \
  && n=$($BIN/sdinfo --json "$TMP/p5" | $PY -c 'import json,sys; print(json.load(sys.stdin)["manifest"]["samples"])' 2>/dev/null) \
  && [ "$n" = 5 ] && ls "$TMP"/p5/prep-000000.tar.zst >/dev/null && pass "csv + --max_train_samples 5 + --zstd" || fail "csv + max_train_samples + zstd" "n=$n"
"$SDPREP" --train_data_dir "$TMP/csv" --tokenizer_name "$TMP/model/tokenizer" -o "$TMP/p6" --height 40 --width 24 --image_interpolation_mode bilinear -q 2>/dev/null \
  && $PY - "$TMP/p6" <<'PY' && pass "ppdiffusers --height/--width: straight resize" || fail "ppdiffusers --height/--width"
import io, json, sys, tarfile
from PIL import Image
t = tarfile.open(sys.argv[1] + "/prep-000000.tar")
for m in t.getmembers():
    if m.name.endswith(".png"):
        im = Image.open(io.BytesIO(t.extractfile(m).read())); assert im.size == (24, 40), im.size
    if m.name.endswith(".json"):
        j = json.loads(t.extractfile(m).read()); assert [j["resized_width"], j["resized_height"]] == [24, 40], j
PY

# a killed run never leaves a set that looks complete
$PY "$ROOT/tests/fixtures/make_dataset.py" "$TMP/big" --n 300 --min-size 400 --max-size 700
"$SDPREP" --train_data_dir "$TMP/big" --tokenizer_name "$TMP/model/tokenizer" -o "$TMP/k" --resolution 256 --shard_size 20 -q -j 1 2>/dev/null &
pid=$!; sleep 0.5; kill -9 $pid 2>/dev/null; killed=$?; wait $pid 2>/dev/null
if [ $killed -eq 0 ]; then
    if [ -f "$TMP/k/manifest.json" ]; then grep -q '"complete": false' "$TMP/k/manifest.json" && pass "killed run: manifest says incomplete" || fail "killed run left a complete manifest"
    else pass "killed run: no manifest"; fi
    ls "$TMP"/k/ | grep -qv -e '^prep-' -e '^manifest.json$' -e '^\.' && fail "killed run left stray files" || pass "killed run: only finished shards and hidden temporaries"
else
    grep -q '"complete": true' "$TMP/k/manifest.json" && pass "run finished before the kill (complete set)" || fail "run neither killed nor complete"
fi
finish

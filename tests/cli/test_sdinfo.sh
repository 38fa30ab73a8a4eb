# CLI tests of sdinfo: options, output, exit codes, and the malformed-safetensors corpus.
. "$(dirname "$0")/lib.sh"
SDINFO=$BIN/sdinfo

check "--help" "$SDINFO" --help
check "--version" sh -c "'$SDINFO' --version | grep -q 'sdinfo (sdtools)'"
"$SDINFO" >/dev/null 2>&1; [ $? -eq 2 ] && pass "usage error exits 2" || fail "usage error exits 2"
"$SDINFO" --bogus >/dev/null 2>&1; [ $? -eq 2 ] && pass "unknown option exits 2" || fail "unknown option exits 2"
expect_error "missing file" "no such file" "$SDINFO" "$TMP/nope.safetensors"

python3 "$ROOT/tests/corpus/make_safetensors_corpus.py" "$TMP/corpus" 2>/dev/null
n_bad=0 n_good=0
while IFS=$'\t' read -r file sub; do
    case "$file" in
    bad_*) n_bad=$((n_bad + 1)); expect_error "corpus $file" "$sub" "$SDINFO" "$TMP/corpus/$file" ;;
    good_*) n_good=$((n_good + 1)); check "corpus $file" "$SDINFO" --stats "$TMP/corpus/$file" ;;
    esac
done < "$TMP/corpus/expect.tsv"
[ "$n_bad" -ge 40 ] && [ "$n_good" -ge 10 ] && pass "corpus has $n_bad bad and $n_good good files" || fail "corpus too small"

# the error names the file
err=$("$SDINFO" "$TMP/corpus/bad_gap.safetensors" 2>&1)
case "$err" in "sdinfo: error: $TMP/corpus/bad_gap.safetensors: "*) pass "error names the file" ;; *) fail "error names the file" "$err" ;; esac

# output content on a known file
out=$("$SDINFO" "$TMP/corpus/good_metadata.safetensors")
echo "$out" | grep -q "1 tensors, 4 parameters" && echo "$out" | grep -q "metadata format: pt" \
  && pass "text summary" || fail "text summary" "$out"
out=$("$SDINFO" --dump a "$TMP/corpus/good_basic.safetensors" | tr '\n' ' ')
[ "$out" = "1 2 3 4 " ] && pass "--dump values" || fail "--dump values" "$out"
expect_error "--dump unknown tensor" "no tensor named" "$SDINFO" --dump nope "$TMP/corpus/good_basic.safetensors"
"$SDINFO" --json --stats "$TMP/corpus/good_basic.safetensors" | python3 -c '
import json,sys; j=json.load(sys.stdin); t=j["tensor_list"][0]
assert j["kind"]=="safetensors" and j["parameters"]==4 and t["shape"]==[2,2] and t["min"]==1 and t["max"]==4, j' \
  && pass "--json --stats" || fail "--json --stats"
# several paths: one bad one good -> exit 1, output for the good one
out=$("$SDINFO" -s "$TMP/corpus/good_basic.safetensors" "$TMP/corpus/bad_gap.safetensors" 2>/dev/null); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q good_basic && pass "multiple paths" || fail "multiple paths" "rc=$rc"
# shard tars and shard sets (the describe is tested in depth by test_shard)
SHARD_TOOL=$ROOT/${SD_BUILD:-build}/tests/util/shard_tool
"$SHARD_TOOL" write-prep "$TMP/prep" 7 3 >/dev/null 2>&1
out=$("$SDINFO" "$TMP/prep/prep-000000.tar" 2>&1)
echo "$out" | grep -q "3 samples" && pass "shard tar summary" || fail "shard tar summary" "$out"
"$SDINFO" --json "$TMP/prep" | python3 -c 'import json,sys; j=json.load(sys.stdin); assert "7" in json.dumps(j), j' \
  && pass "shard set --json" || fail "shard set --json"
printf 'not a tar' > "$TMP/bad.tar"
expect_error "corrupt tar" "bad.tar" "$SDINFO" "$TMP/bad.tar"
# model directories
"$PY" "$ROOT/tests/fixtures/make_tiny_model.py" --config sd1-tiny "$TMP/tiny" >/dev/null 2>&1
out=$("$SDINFO" "$TMP/tiny" 2>&1)
echo "$out" | grep -q "unet: UNet2DConditionModel, 1,427,012 parameters" && echo "$out" | grep -q "text_encoder: CLIPTextModel" \
  && pass "model dir summary" || fail "model dir summary" "$out"
"$SDINFO" --json "$TMP/tiny/unet" >/dev/null && pass "component dir --json" || fail "component dir --json"
mkdir -p "$TMP/emptydir"
expect_error "plain directory" "not a model directory" "$SDINFO" "$TMP/emptydir"
finish

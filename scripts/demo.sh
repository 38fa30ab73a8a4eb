#!/usr/bin/env bash
# demo.sh — the project's main job on a built-in default (make demo).
# Grows with the pipeline: today it writes and inspects tensor files; each tool
# extends it until it is prep -> encode -> fit -> sample on a tiny model.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/bin
OUT=demo-out
rm -rf "$OUT"; mkdir -p "$OUT"

echo "== sdinfo: a tensor file written by libsd, and the malformed-file corpus"
$BUILD/tests/util/st_tool write "$OUT/example.safetensors"
$BIN/sdinfo "$OUT/example.safetensors"
python3 tests/corpus/make_safetensors_corpus.py "$OUT/corpus" 2>/dev/null
for f in "$OUT"/corpus/bad_gap.safetensors "$OUT"/corpus/bad_not_utf8.safetensors; do
    $BIN/sdinfo "$f" || true
done
echo "== demo done: outputs in $OUT/"

#!/usr/bin/env bash
# bench/run.sh — every benchmark, side by side with the PyTorch reference on
# this machine, in one run (make bench). Results: bench/out/*.txt|json.
# Not part of make check. BENCH_QUICK=1 skips the largest configurations.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
PY=.venv-ref/bin/python
status=0
run() { echo "== $*"; "$@" || { echo "bench: $* failed" >&2; status=1; }; }
[ -f bench/bench_image.py ] && run $PY bench/bench_image.py
for s in bench/bench_*.sh; do [ -f "$s" ] && run bash "$s"; done
exit $status

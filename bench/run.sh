#!/usr/bin/env bash
# bench/run.sh — `make bench`: every side-by-side benchmark against the PyTorch
# reference stack (.venv-ref) on this machine, in one run: bench/bench_*.py
# and bench/bench_*.sh. Results are printed and kept in bench/out/. Not part of
# make check. Keep each one short: the machine may be shared.
set -uo pipefail
cd "$(dirname "$0")/.."
export SD_BUILD=${BUILD:-build}
mkdir -p bench/out
status=0
for b in bench/bench_*.py bench/bench_*.sh; do
    [ -f "$b" ] || continue
    echo "== $b" >&2
    case "$b" in
    *.py) .venv-ref/bin/python "$b" || status=1 ;;
    *.sh) bash "$b" || status=1 ;;
    esac
done
exit $status

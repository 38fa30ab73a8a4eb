#!/usr/bin/env bash
# bench/run.sh — `make bench`: every side-by-side benchmark against the
# reference stack (.venv-ref). Keep each one short: the machine may be shared.
set -euo pipefail
cd "$(dirname "$0")/.."
export SD_BUILD=${BUILD:-build}
for b in bench/bench_*.py; do
    [ -f "$b" ] || continue
    echo "== $b" >&2
    .venv-ref/bin/python "$b" "$@"
done

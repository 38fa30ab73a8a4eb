#!/usr/bin/env bash
# make_goldens.sh — regenerate every golden file under tests/ref/golden with the
# reference stack (.venv-ref: torch, diffusers, transformers). Each generator
# tests/ref/gen_*.py is deterministic (fixed seeds, inputs from files) and
# writes small files that are committed; make check only reads them.
set -euo pipefail
cd "$(dirname "$0")/../.."
export SD_ROOT=$PWD SD_BUILD=${BUILD:-build} PYTHONDONTWRITEBYTECODE=1
for g in tests/ref/gen_*.py; do
    [ -f "$g" ] || continue
    echo "golden: $g" >&2
    .venv-ref/bin/python "$g"
done

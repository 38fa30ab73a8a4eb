#!/usr/bin/env bash
# setup-ref.sh — create .venv-ref, the PyTorch reference stack (tests/ref/requirements.txt).
# Used by `make golden` and `make bench`, never by `make check`. A second run
# installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=tests/ref/requirements.txt
STAMP=.venv-ref/.sdtools-req
if [ -x .venv-ref/bin/python ] && cmp -s "$REQ" "$STAMP"; then exit 0; fi
[ -x .venv-ref/bin/python ] || python3 -m venv .venv-ref
echo "setup-ref: installing the reference stack into .venv-ref (several GB)" >&2
.venv-ref/bin/pip install -q --disable-pip-version-check -r "$REQ"
cp "$REQ" "$STAMP"

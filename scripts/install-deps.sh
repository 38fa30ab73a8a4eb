#!/usr/bin/env bash
# install-deps.sh — install what building and testing sdtools needs.
#
# System packages come from Debian (apt-get, as root); the light Python test
# stack (numpy, safetensors, pillow) goes into .venv-test from PyPI. Each step
# checks first, so a second run installs nothing. The heavy reference stack
# (torch, diffusers, ...) is separate: scripts/setup-ref.sh (make golden/bench).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential pkg-config python3 python3-venv
      libarchive-dev libzstd-dev libpng-dev libjpeg62-turbo-dev libwebp-dev zlib1g-dev libdeflate-dev
      libcjson-dev libutf8proc-dev libopenblas-openmp-dev libopenmpi-dev openmpi-bin
      clang libclang-rt-14-dev)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "install-deps: error: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
        SUDO=sudo
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python test environment: a stamp records the requirements it was built from.
REQ=tests/requirements.txt
STAMP=.venv-test/.sdtools-req
PY=${PYTHON:-python3}
if [ ! -x .venv-test/bin/python ] || ! cmp -s "$REQ" "$STAMP"; then
    echo "install-deps: creating .venv-test from $REQ" >&2
    rm -rf .venv-test
    "$PY" -m venv .venv-test
    .venv-test/bin/pip install -q --disable-pip-version-check -r "$REQ"
    cp "$REQ" "$STAMP"
fi

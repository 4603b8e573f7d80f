#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: Chromium from apt, a virtualenv with every Python dependency.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
# The CPU build of PyTorch; a plain `torch` requirement would pull gigabytes of CUDA.
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,torch]"
echo "setup done: $(.venv/bin/python --version), $(/usr/bin/chromium --version 2>/dev/null | head -1)"

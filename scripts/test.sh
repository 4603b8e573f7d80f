#!/usr/bin/env bash
# Set everything up, then run the whole test suite (real headless Chromium; browser tests never skip).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -n 2 -q "$@"

#!/usr/bin/env bash
# Install the peer libraries that `webcnn bench` compares against (pinned; git-ignored; the tests never need them).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=bench/peers
mkdir -p "$PREFIX"
[ -f "$PREFIX/package.json" ] || echo '{"name": "webcnn-bench-peers", "private": true}' > "$PREFIX/package.json"
npm install --prefix "$PREFIX" --no-audit --no-fund --save-exact \
  @tensorflow/tfjs@4.22.0 onnxruntime-web@1.22.0
echo "peers installed in $PREFIX/node_modules"

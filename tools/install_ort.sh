#!/bin/bash
# Installs ONNX Runtime 1.30 for Node.js (CPU) into build/ort, the peer that
# tests and benchmarks compare against.  --ignore-scripts skips the package's
# download of a GPU build, which fails offline; the CPU library ships inside.
set -eu
cd "$(dirname "$0")/.."
[ -f build/ort/node_modules/onnxruntime-node/package.json ] && exit 0
command -v npm >/dev/null || { echo "install_ort: npm is missing (apt-get install npm)"; exit 1; }
mkdir -p build/ort
npm install --prefix build/ort --ignore-scripts --no-audit --no-fund onnxruntime-node@1.30 >/dev/null

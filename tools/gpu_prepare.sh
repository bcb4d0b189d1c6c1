#!/bin/bash
# Gathers what tools/gpu_bench.sh needs on a GPU machine without Debian's
# packages: oneDNN and its runtime libraries, and a few hundred photos.
set -eu
cd "$(dirname "$0")/.."
rm -rf .gpu && mkdir -p .gpu/lib
for lib in libdnnl.so.2 libgomp.so.1 libOpenCL.so.1; do cp -L "/usr/lib/x86_64-linux-gnu/$lib" .gpu/lib/; done
SRC=${ONNXTL_SHARED:-../shared/data}/dogscats
for split in train test; do for cls in cat dog; do
    mkdir -p .gpu/photos/$split/$cls
    ls "$SRC/$split/$cls" | sort | head -n 64 | while read -r f; do cp "$SRC/$split/$cls/$f" .gpu/photos/$split/$cls/; done
done; done
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
du -sh .gpu

#!/bin/bash
# Gathers what tools/gpu_bench.sh needs on a GPU machine without Debian's
# packages, in .gpu/ (ignored by git, carried to the machine): oneDNN and its
# runtime libraries (xz-compressed: the carried tree is limited to 64 MiB) and
# real photos in ImageFolder layout, enough for the trainer's 100-step parity.
set -eu
cd "$(dirname "$0")/.."
rm -rf .gpu && mkdir -p .gpu/lib
for lib in libdnnl.so.2 libgomp.so.1 libOpenCL.so.1; do cp -L "/usr/lib/x86_64-linux-gnu/$lib" .gpu/lib/; done
tar -C .gpu -cf - lib | xz -T0 -6 > .gpu/lib.tar.xz
rm -rf .gpu/lib
SRC=${ONNXTL_SHARED:-../shared/data}/dogscats
for split in train test; do for cls in cat dog; do
    n=64; [ $split = train ] && n=160
    mkdir -p .gpu/data/dogscats/$split/$cls
    ls "$SRC/$split/$cls" | sort | head -n $n | while read -r f; do cp "$SRC/$split/$cls/$f" .gpu/data/dogscats/$split/$cls/; done
done; done
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
du -sh .gpu

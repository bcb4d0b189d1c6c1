#!/bin/bash
# Runs each fuzz target (build-fuzz/fuzz_*, built by make fuzz) for SECONDS,
# from a corpus of seeds gathered here and the saved inputs in test/fuzz/NAME/,
# and prints each target's execution count.  An input that crashes, leaks or
# times out is saved under build-fuzz/crashes/NAME/ and fails the run: copy it
# into test/fuzz/NAME/ once fixed, where make test replays it.
# usage: tools/fuzz.sh [SECONDS]     FUZZ_TARGETS="model npy" picks targets.
set -eu
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
SHARED=${ONNXTL_SHARED:-../shared/data}
PY=/usr/bin/python3
CORPUS=build-fuzz/corpus
TARGETS=${FUZZ_TARGETS:-$(ls build-fuzz/fuzz_* | sed 's|build-fuzz/fuzz_||')}

seed_model() { # the ONNX node tests' models: small, and every op onnxtl knows
    if [ -d "$SHARED/onnx-node" ]; then
        for d in "$SHARED"/onnx-node/test_*/; do cp "$d/model.onnx" "$1/$(basename "$d").onnx"; done
    else
        echo "fuzz: $SHARED/onnx-node is missing; the model target starts from test/fuzz/model only"
    fi
}

seed_features() { # small complete features files
    for rows in 1 3 8; do build/synth_features "$1/synth$rows.bin" $rows 4 4x2 >/dev/null; done
    build/synth_features "$1/synth_fp16.bin" 3 4 4x2 fp16 >/dev/null
}

seed_npy() {
    $PY - "$1" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]
for i, a in enumerate([np.zeros((2, 3), np.float32), np.arange(5, dtype=np.int64), np.ones((1, 3, 4, 4), np.float64),
                       np.array(3.5, np.float32), np.zeros((0, 4), np.int32), np.ones(6, np.uint8).reshape(2, 3)]):
    np.save(f"{d}/seed{i}.npy", a)
PYEOF
}

seed_jpeg() { # small JPEGs made from a few photos (baseline, progressive, gray, CMYK), each after a variant byte
    [ -d "$SHARED/dogscats" ] || { echo "fuzz: $SHARED/dogscats is missing; the jpeg target starts from test/fuzz/jpeg only"; return; }
    $PY - "$1" "$SHARED/dogscats/train/cat" <<'PYEOF'
import io, os, sys
from PIL import Image
out, src = sys.argv[1], sys.argv[2]
for i, f in enumerate(sorted(os.listdir(src))[:4]):
    img = Image.open(os.path.join(src, f)).convert("RGB").resize((48, 36))
    for j, (im, kw) in enumerate([(img, {}), (img, {"progressive": True}), (img.convert("L"), {}), (img.convert("CMYK"), {})]):
        b = io.BytesIO()
        im.save(b, "JPEG", quality=70, **kw)
        open(f"{out}/photo{i}_{j}.bin", "wb").write(bytes([i * 4 + j]) + b.getvalue())
PYEOF
}

seed_dataset() { :; } # test/fuzz/dataset holds the seeds: trees written as text
seed_checkpoint() { :; } # test/fuzz/checkpoint holds a valid checkpoint of the target's trainer state

failed=0
total=0
for t in $TARGETS; do
    mkdir -p "$CORPUS/$t" "build-fuzz/crashes/$t"
    [ -n "$(ls -A "$CORPUS/$t")" ] || "seed_$t" "$CORPUS/$t"
    saved=test/fuzz/$t
    [ -d "$saved" ] || saved=
    log=build-fuzz/crashes/$t.log
    # -rss_limit_mb stays under CI's memory; -timeout flags an input that takes 20 s.
    build-fuzz/fuzz_$t -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="build-fuzz/crashes/$t/" "$CORPUS/$t" $saved >"$log" 2>&1 || true
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    total=$((total + ${runs:-0}))
    if ls "build-fuzz/crashes/$t"/* >/dev/null 2>&1; then
        echo "FAIL fuzz $t: $(grep -m1 -E 'ERROR|SUMMARY' "$log") (inputs in build-fuzz/crashes/$t/, log $log)"
        failed=1
    else
        echo "PASS fuzz $t: ${runs:-0} executions in ${SECONDS_EACH} s, corpus $(ls "$CORPUS/$t" | wc -l) inputs"
    fi
done
echo "fuzz: $total executions in all"
exit $failed

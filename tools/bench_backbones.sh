#!/bin/bash
# Backbone throughput of onnxtl against ONNX Runtime 1.30 CPU, in one run:
# each model's whole graph on a synthetic input, batch 16, all cores, measured
# alternately (onnxtl, ONNX Runtime, onnxtl, ONNX Runtime, ...) in three
# rounds and the median of each kept, every measurement at least
# BENCH_SECONDS (default 2) long, as a first run of the model times it (a
# 2-core machine shared with others varies by 5-10% between runs); onnxtl's --precision int8 too (scales calibrated on 32 of the
# shared photos) and, where the CPU multiplies bf16, --precision bf16, both
# against ONNX Runtime's fp32.  On an AVX-512 machine, onnxtl's fp32 with
# oneDNN (and so onnxtl's Winograd) capped at AVX2 too, as an AVX2-only CPU
# runs it (ONNX Runtime cannot be capped alike: its figure stays native).
# BENCH_MODELS, BENCH_ITERS (the fewest batches a measurement runs),
# BENCH_SECONDS and BENCH_THREADS size the run.
set -eu
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
THREADS=${BENCH_THREADS:-$(nproc)}
MIN_ITERS=${BENCH_ITERS:-3}
SECONDS_EACH=${BENCH_SECONDS:-2}
MODELS=${BENCH_MODELS:-resnet50 vgg16 efficientnet_b0 mobilenet_v3_large convnext_tiny vit_b_16}
tools/install_ort.sh
# The ISA extensions that oneDNN and our element-wise loops (AVX-512, AVX2 or the baseline) pick from.
isa=$(grep -m1 -o -w -E 'avx2|avx512f|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | paste -sd' ')
echo "== backbones, batch 16, $THREADS threads (CPU: $(lscpu | sed -n 's/^Model name: *//p'); ISA: ${isa:-baseline x86-64})"
export_model() { # arch: the path of its export, made when missing
    local model=build/models/$1_op17_fold.onnx
    [ -f "$model" ] || $PY models/export_torchvision.py --arch "$1" --opset 17 --out build/models >/dev/null
    echo "$model"
}
cpu_facts=$(build/onnxtl info "$(export_model resnet18)" --device cpu | sed -n 's/^CPU kernels: //p')
echo "   onnxtl's CPU kernels: $cpu_facts"
bf16=0
case "$cpu_facts" in *"bf16 available"*) bf16=1 ;; esac
avx2=0
case "$cpu_facts" in *"oneDNN avx512"*) avx2=1 ;; esac
# The int8 calibration sample: 16 training photos of each class.
SHARED=${ONNXTL_SHARED:-../shared/data}/dogscats
CAL=build/bench/calibration
rm -rf "$CAL"
if [ -d "$SHARED" ]; then
    for cls in cat dog; do
        mkdir -p "$CAL/data/train/$cls"
        ls "$SHARED/train/$cls" | sort | head -n 16 | while read -r f; do
            ln -s "$(realpath "$SHARED/train/$cls/$f")" "$CAL/data/train/$cls/$f"; done
    done
fi
calibrate() { # model arch: prints the ranges file, or nothing without the photos
    [ -d "$CAL/data" ] || return 0
    build/onnxtl extract "$1" "$CAL/data" -o "$CAL/$2.bin" --precision int8 --calibrate 32 --quiet --restart
    build/onnxtl features "$CAL/$2.bin" --json |
        $PY -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)["int8_ranges"])' >"$CAL/$2.ranges"
    echo "$CAL/$2.ranges"
}
printf '%-22s %12s %12s %8s %14s %8s %14s %8s %14s %8s\n' model onnxtl ort ratio "onnxtl int8" ratio "onnxtl bf16" ratio \
    "fp32 at AVX2" ratio
for arch in $MODELS; do
    model=$(export_model "$arch")
    size=$(build/onnxtl info "$model" | sed -n 's/^  input *float32 *\[N, \([0-9]*\), \([0-9]*\), \([0-9]*\)\]/\1x\2x\3/p')
    ranges=$(calibrate "$model" "$arch")
    rate=$(build/bench_backbone "$model" 16 1 "$THREADS" logits)
    ITERS=$($PY -c "import math; print(max($MIN_ITERS, math.ceil($SECONDS_EACH * $rate / 16)))")
    ours=() theirs=() quarters=() halves=() capped=()
    for round in 1 2 3; do
        ours+=("$(build/bench_backbone "$model" 16 "$ITERS" "$THREADS" logits)")
        theirs+=("$(node tools/ort_bench.js "$model" 16 "$ITERS" "$THREADS" "$size")")
        [ -n "$ranges" ] && quarters+=("$(build/bench_backbone "$model" 16 "$ITERS" "$THREADS" logits cpu 4 1 "$ranges")") ||
            quarters+=(0)
        [ $bf16 = 1 ] && halves+=("$(build/bench_backbone "$model" 16 "$ITERS" "$THREADS" logits cpu 3)") || halves+=(0)
        [ $avx2 = 1 ] && capped+=("$(ONEDNN_MAX_CPU_ISA=AVX2 build/bench_backbone "$model" 16 "$ITERS" "$THREADS" logits)") ||
            capped+=(0)
    done
    $PY - "$arch" "${ours[@]}" "${theirs[@]}" "${quarters[@]}" "${halves[@]}" "${capped[@]}" <<'PYEOF'
import statistics, sys
arch, *v = sys.argv[1], *map(float, sys.argv[2:])
o, t, q, h, a = (statistics.median(v[i:i + 3]) for i in range(0, 15, 3))
cell = lambda x: f"{x:9.1f} img/s {x / t:7.2f}x" if x else f"{'-':>14s} {'-':>8s}"
print(f"{arch:22s} {o:9.1f} img/s {t:9.1f} img/s {o / t:7.2f}x {cell(q)} {cell(h)} {cell(a)}")
PYEOF
done

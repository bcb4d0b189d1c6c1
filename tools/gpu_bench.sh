#!/bin/bash
# The GPU check, in one run on an H200 machine (Ubuntu 24.04, CUDA 13, cuDNN 9,
# PyTorch 2.11): GPU-vs-CPU parity, fp16/bf16 class agreement after fit-head,
# and throughput against PyTorch on the same GPU.  Expects build-cuda/ (make
# CUDA=1, built on Debian 12) and .gpu/ (tools/gpu_prepare.sh: oneDNN's
# libraries and a few hundred photos), both carried to the machine.
set -u
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=$PWD/.gpu/lib:${LD_LIBRARY_PATH:-}
RES=${OUT:-build/gpu}
mkdir -p "$RES" build/models
BIN=build-cuda/onnxtl
PY=python3
THREADS=$(nproc)
log() { echo "$*" | tee -a "$RES/results.txt"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$RES/results.txt"
$BIN --version >/dev/null || { echo "build-cuda/onnxtl does not run here"; ldd $BIN; exit 1; }

for arch in resnet18 resnet50 vgg16; do
    [ -f build/models/${arch}_op17_fold.onnx ] || $PY tools/export_torchvision.py --arch $arch --opset 17 --out build/models >/dev/null
done

log "== parity: CUDA against CPU"
$PY test/gpu_parity.py $BIN 2>&1 | tee -a "$RES/results.txt"

log "== fp16/bf16 classes after fit-head equal fp32's (resnet18, real photos)"
rm -rf build/gpu_work && mkdir -p build/gpu_work
$BIN extract build/models/resnet18_op17_fold.onnx .gpu/photos -o build/gpu_work/f.bin --device cuda --quiet --decoders 8
$BIN fit-head build/gpu_work/f.bin -o build/gpu_work/m.onnx --lr 1e-3 --quiet
for p in fp32 fp16 bf16; do
    $BIN run build/gpu_work/m.onnx .gpu/photos/test --device cuda --precision $p --batch 64 | cut -f1,2 > build/gpu_work/$p.txt
done
for p in fp16 bf16; do
    if cmp -s build/gpu_work/fp32.txt build/gpu_work/$p.txt && [ -s build/gpu_work/fp32.txt ]; then
        log "PASS $p predicts the fp32 class for all $(wc -l < build/gpu_work/fp32.txt) test photos"
    else log "FAIL $p classes differ from fp32: $(diff build/gpu_work/fp32.txt build/gpu_work/$p.txt | grep -c '^<') photos"; fi
done

log "== backbone throughput, batch 256, img/s (up to the head input)"
log "$(printf '%-10s %-5s %10s %12s %14s' model prec onnxtl 'torch eager' 'torch.compile')"
for arch in resnet50 vgg16; do
    cut=$($BIN info build/models/${arch}_op17_fold.onnx | sed -n "s/^head input (cached by extract): '\([^']*\)'.*/\1/p")
    for i in 0 1 2 3; do
        p=(fp32 tf32 fp16 bf16); p=${p[$i]}
        ours=$(build-cuda/bench_backbone build/models/${arch}_op17_fold.onnx 256 10 $THREADS "$cut" cuda $i 2>&1 | tail -1)
        eager=$($PY tools/gpu_torch_bench.py backbone $arch $p 256 2>&1 | tail -1)
        comp="-"
        [ $arch = resnet50 ] && [ $p = fp16 ] && comp=$(timeout 300 $PY tools/gpu_torch_bench.py backbone $arch $p 256 compile 2>&1 | tail -1)
        log "$(printf '%-10s %-5s %10s %12s %14s' $arch $p "$ours" "$eager" "$comp")"
    done
done

log "== end to end: 500x375 JPEGs to features, ResNet50 fp16"
$PY tools/gpu_torch_bench.py mkjpegs .gpu/photos build/gpu_work/jpegs ${GPU_BENCH_IMAGES:-4096}
n=$(find build/gpu_work/jpegs -name '*.jpg' | wc -l)
s=$(date +%s.%N)
$BIN extract build/models/resnet50_op17_fold.onnx build/gpu_work/jpegs -o build/gpu_work/e2e.bin --device cuda \
    --precision fp16 --batch 256 --decoders $((THREADS - 1)) --quiet
e2e=$($PY -c "print(f'{$n / ($(date +%s.%N) - $s):.0f}')")
torch_e2e=$($PY tools/gpu_torch_bench.py pipeline build/gpu_work/jpegs 256 16 2>&1 | tail -1)
log "onnxtl extract (TurboJPEG, $((THREADS - 1)) decoders): $e2e img/s;  PyTorch ImageFolder+DataLoader(16 workers)+fp16: $torch_e2e img/s ($n images)"

#!/bin/bash
# The GPU check, in one run on an H200 machine (Ubuntu 24.04, CUDA 13, cuDNN 9,
# PyTorch 2.11): GPU-vs-CPU parity, the GPU trainer against torch.optim,
# fp16/bf16 class agreement after fit-head, and throughput against PyTorch on
# the same GPU.  Expects build-cuda/ (make CUDA=1, built on Debian 12) and
# .gpu/ (tools/gpu_prepare.sh: oneDNN's libraries and real photos), both
# carried to the machine.  Results go to $OUT (or build/gpu)/results.txt.
set -u
cd "$(dirname "$0")/.."
RES=${OUT:-build/gpu}
mkdir -p "$RES" build/models
rm -rf build/gpu_work && mkdir -p build/gpu_work
[ -d .gpu/lib ] || tar -C .gpu -xJf .gpu/lib.tar.xz
export LD_LIBRARY_PATH=$PWD/.gpu/lib:${LD_LIBRARY_PATH:-}
export ONNXTL_CACHE_DIR=$PWD/build/gpu_work/cache # starts empty: the first run of each shape times its engines
BIN=build-cuda/onnxtl
PY=python3
THREADS=$(nproc)
W=build/gpu_work
log() { echo "$*" | tee -a "$RES/results.txt"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$RES/results.txt"
$BIN --version >/dev/null || { echo "build-cuda/onnxtl does not run here"; ldd $BIN; exit 1; }

for arch in resnet18 resnet50 vgg16; do
    [ -f build/models/${arch}_op17_fold.onnx ] || $PY models/export_torchvision.py --arch $arch --opset 17 --out build/models >/dev/null
done

log "== parity: CUDA against CPU"
ONNXTL_CUDA_LOG=1 timeout 300 $PY test/gpu_parity.py $BIN 2>&1 | tee -a "$RES/results.txt"

# img/s of the backbone up to the head input, batch 256, input in pinned memory.
ours() { # arch precision-index streams [env...]
    local cut
    cut=$($BIN info build/models/$1_op17_fold.onnx | sed -n "s/^head input (cached by extract): '\([^']*\)'.*/\1/p")
    env ONNXTL_CUDA_LOG=1 "${@:4}" timeout 120 build-cuda/bench_backbone build/models/$1_op17_fold.onnx 256 20 $THREADS \
        "$cut" cuda $2 $3 2>>"$RES/cuda_log.txt" | tail -1
}
log "== backbone throughput, batch 256, img/s (up to the head input)"
log "$(printf '%-9s %-5s %9s %10s %13s %12s %14s' model prec onnxtl '2 streams' 'legacy cuDNN' 'torch eager' 'torch.compile')"
for arch in resnet50 vgg16; do
    for i in 0 1 2 3; do
        p=(fp32 tf32 fp16 bf16); p=${p[$i]}
        echo "-- $arch $p" >> "$RES/cuda_log.txt"
        # VGG16 fp32 lists every candidate engine in cuda_log.txt: it is the row still behind torch
        if [ $arch = vgg16 ] && [ $p = fp32 ]; then mine=$(ours $arch $i 1 ONNXTL_CUDA_LOG=2); else mine=$(ours $arch $i 1); fi
        two=$(ours $arch $i 2) # two sessions side by side: one batch's upload overlaps the other's compute
        legacy="-"
        if { [ $arch = resnet50 ] && [ $p = fp16 ]; } || { [ $arch = vgg16 ] && [ $p = fp32 ]; }; then
            legacy=$(ours $arch $i 1 ONNXTL_CUDNN=legacy)
        fi
        eager=$(timeout 120 $PY tools/gpu_torch_bench.py backbone $arch $p 256 2>&1 | tail -1)
        comp="-"
        [ $arch = resnet50 ] && [ $p = fp16 ] && comp=$(timeout 300 $PY tools/gpu_torch_bench.py backbone $arch $p 256 compile 2>&1 | tail -1)
        log "$(printf '%-9s %-5s %9s %10s %13s %12s %14s' $arch $p "$mine" "$two" "$legacy" "$eager" "$comp")"
    done
done
log "engine choice (first run of each shape timed cuDNN's candidates; see cuda_log.txt):"
grep "onnxtl: cuda" "$RES/cuda_log.txt" | sort | uniq -c | tee -a "$RES/results.txt"
echo "-- resnet50 fp16 again, from the cache file" >> "$RES/cuda_log.txt"
log "resnet50 fp16 from the cache file: $(ours resnet50 2 1) img/s; $(tail -1 "$RES/cuda_log.txt")"

log "== trainer on the GPU: against torch.optim, and against the CPU trainer with dropout"
timeout 300 $PY test/trainer_parity.py $BIN .gpu/data --device cuda 2>&1 | tee -a "$RES/results.txt"

log "== fit-head, VGG16 MLP head (25088-4096-4096-2, 103M parameters), 25000 rows, 1 epoch, batch 16, Adam, fp32"
build-cuda/synth_features $W/synth.bin 25000 25088 25088x4096,4096x4096,4096x1000 || log "FAIL synth_features"
s=$(date +%s.%N)
timeout 300 $BIN fit-head $W/synth.bin -o none --head-only $W/h.onnx --device cuda --epochs 1 --quiet 2>&1 | tail -3
ours_fit=$($PY -c "print(f'{$(date +%s.%N) - $s:.2f}')")
torch_fit=$(timeout 300 $PY tools/gpu_torch_bench.py fithead 25000 25088 2>&1 | tail -1)
log "onnxtl fit-head --device cuda: $ours_fit s (the whole command: reading 2.5 GB of features, training, export); torch on the GPU (rows already on the GPU): $torch_fit s"
rm -f $W/synth.bin

log "== fp16/bf16 classes after fit-head equal fp32's (resnet18, real photos)"
$BIN extract build/models/resnet18_op17_fold.onnx .gpu/data/dogscats -o $W/f.bin --device cuda --quiet --decoders 8
$BIN fit-head $W/f.bin -o $W/m.onnx --lr 1e-3 --quiet --device cuda
for p in fp32 fp16 bf16; do
    $BIN run $W/m.onnx .gpu/data/dogscats/test --device cuda --precision $p --batch 64 | cut -f1,2 > $W/$p.txt
done
for p in fp16 bf16; do
    if cmp -s $W/fp32.txt $W/$p.txt && [ -s $W/fp32.txt ]; then
        log "PASS $p predicts the fp32 class for all $(wc -l < $W/fp32.txt) test photos"
    else log "FAIL $p classes differ from fp32: $(diff $W/fp32.txt $W/$p.txt | grep -c '^<') photos"; fi
done

log "== end to end: 500x375 JPEGs to features, ResNet50 fp16"
$PY tools/gpu_torch_bench.py mkjpegs .gpu/data/dogscats $W/jpegs ${GPU_BENCH_IMAGES:-8192}
n=$(find $W/jpegs -name '*.jpg' | wc -l)
s=$(date +%s.%N)
timeout 300 $BIN extract build/models/resnet50_op17_fold.onnx $W/jpegs -o $W/e2e.bin --device cuda \
    --precision fp16 --batch 256 --decoders $((THREADS - 1)) --streams 2 --quiet
e2e=$($PY -c "print(f'{$n / ($(date +%s.%N) - $s):.0f}')")
torch_e2e=$(timeout 300 $PY tools/gpu_torch_bench.py pipeline $W/jpegs 256 16 2>&1 | tail -1)
log "onnxtl extract (TurboJPEG, $((THREADS - 1)) decoders, 2 streams): $e2e img/s;  PyTorch ImageFolder+DataLoader(16 workers)+fp16: $torch_e2e img/s ($n images)"

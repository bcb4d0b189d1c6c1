#!/bin/bash
# make bench: onnxtl against its peers, measured side by side in one run.
#   BENCH_IMAGES  photos to use from ../shared/data/dogscats (default: all 2500)
#   BENCH_THREADS threads for every contender (default: all cores)
set -eu
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
THREADS=${BENCH_THREADS:-$(nproc)}
IMAGES=${BENCH_IMAGES:-2500}
BATCH=16
SHARED=${ONNXTL_SHARED:-../shared/data}/dogscats
[ -d "$SHARED" ] || { echo "bench: $SHARED is missing (the photos live in ../shared)"; exit 1; }
tools/install_ort.sh
MODEL=build/models/resnet50_op17_fold.onnx
[ -f "$MODEL" ] || $PY models/export_torchvision.py --arch resnet50 --opset 17 --out build/models >/dev/null

DATA=build/bench/data
rm -rf build/bench && mkdir -p "$DATA"
# IMAGES photos, each split and class in proportion (both classes stay for fit-head).
total=$(find -L "$SHARED" -name '*.jpg' | wc -l)
for split in train test; do for cls in cat dog; do
    mkdir -p "$DATA/$split/$cls"
    have=$(ls "$SHARED/$split/$cls" | wc -l)
    take=$(( (IMAGES * have + total - 1) / total ))
    ls "$SHARED/$split/$cls" | sort | head -n "$take" | while read -r f; do
        ln -s "$(realpath "$SHARED/$split/$cls/$f")" "$DATA/$split/$cls/$f"; done
done; done
n=$(find -L "$DATA" -name '*.jpg' | wc -l)
CUT=$(build/onnxtl info "$MODEL" | sed -n "s/^head input (cached by extract): '\([^']*\)'.*/\1/p")

echo "== ResNet50, $n Dogs-vs-Cats photos, batch $BATCH, $THREADS threads (CPU: $(lscpu | sed -n 's/^Model name: *//p'))"
backbone=$(build/bench_backbone "$MODEL" "$BATCH" 10 "$THREADS" "$CUT")
start=$(date +%s.%N)
build/onnxtl extract "$MODEL" "$DATA" -o build/bench/features.bin --batch "$BATCH" --threads "$THREADS" --quiet
e2e=$($PY -c "import sys; print(f'{$n / ($(date +%s.%N) - $start):.1f}')")
# --precision int8: the calibration pass (256 training photos in fp32) is timed apart from the extraction.
build/onnxtl extract "$MODEL" "$DATA" -o build/bench/int8.bin --batch "$BATCH" --threads "$THREADS" --precision int8 \
    --json 2>build/bench/int8.log >build/bench/int8.json
e2e8=$($PY -c "import json; print(f'{json.load(open(\"build/bench/int8.json\"))[\"images_per_second\"]:.1f}')")
calib=$(sed -n 's/.*tensors calibrated in \([0-9.]*\) s.*/\1/p' build/bench/int8.log)
build/onnxtl features build/bench/int8.bin --json |
    $PY -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)["int8_ranges"])' >build/bench/int8.ranges
backbone8=$(build/bench_backbone "$MODEL" "$BATCH" 10 "$THREADS" "$CUT" cpu 4 1 build/bench/int8.ranges)
read -r _ _ _ torch_ips < <($PY tools/bench_pipelines.py torch "$DATA" resnet50 "$MODEL" "$THREADS" "$BATCH")
read -r _ _ _ ort_ips < <($PY tools/bench_pipelines.py ort "$DATA" resnet50 "$MODEL" "$THREADS" "$BATCH")
$PY - "$backbone" "$e2e" "$backbone8" "$e2e8" "$calib" "$torch_ips" "$ort_ips" <<'PYEOF'
import sys
backbone, e2e, backbone8, e2e8, calib, torch_ips, ort_ips = map(float, sys.argv[1:])
print(f"{'pipeline':58s} {'img/s':>8s}")
print(f"{'onnxtl backbone only (no decoding), to the head input':58s} {backbone:8.1f}")
print(f"{'onnxtl extract: JPEG files to features file, end to end':58s} {e2e:8.1f}   {e2e / backbone:.2f}x backbone-only")
print(f"{'onnxtl int8 backbone only, to the head input':58s} {backbone8:8.1f}   {backbone8 / backbone:.2f}x fp32's")
print(f"{'onnxtl extract --precision int8, end to end':58s} {e2e8:8.1f}   {e2e8 / backbone8:.2f}x backbone-only, "
      f"{e2e8 / ort_ips:.2f}x ONNX Runtime's pipeline; after {calib:.1f} s of calibration")
print(f"{'PyTorch 1.13: ImageFolder + DataLoader + torch model':58s} {torch_ips:8.1f}   onnxtl is {e2e / torch_ips:.2f}x")
print(f"{'PIL transforms + ONNX Runtime 1.30 CPU':58s} {ort_ips:8.1f}   onnxtl is {e2e / ort_ips:.2f}x")
PYEOF

# fit-head against PyTorch training the same head on the same features.
MLP_ROWS=${BENCH_MLP_ROWS:-2000}
MLP_EPOCHS=${BENCH_MLP_EPOCHS:-1}
build/synth_features build/bench/synth_linear.bin 25000 2048 2048x1000
build/synth_features build/bench/synth_mlp.bin "$MLP_ROWS" 25088 25088x4096,4096x4096,4096x1000
fit_line() { # label features head epochs
    local label=$1 feats=$2 head=$3 epochs=$4
    build/onnxtl features "$feats" --npy build/bench/np >/dev/null
    local s=$(date +%s.%N)
    build/onnxtl fit-head "$feats" -o none --head "$head" --epochs "$epochs" --threads "$THREADS" --quiet
    local ours=$($PY -c "print(f'{$(date +%s.%N) - $s:.2f}')")
    local theirs=$($PY tools/bench_fit_head.py build/bench/np "$head" "$epochs" "$THREADS")
    $PY -c "print(f'{\"$label\":58s} {$ours:7.1f} s vs PyTorch {$theirs:7.1f} s: onnxtl is {$theirs / $ours:.2f}x')"
}
echo
echo "== fit-head (Adam lr 1e-5, batch 16), $THREADS threads"
fit_line "linear 2048->2, ResNet50 features of $n photos, 5 epochs" build/bench/features.bin linear 5
fit_line "linear 2048->2, synthetic 25000 rows, 5 epochs" build/bench/synth_linear.bin linear 5
fit_line "MLP 25088-4096-4096-2, synthetic $MLP_ROWS rows, $MLP_EPOCHS epoch(s)" build/bench/synth_mlp.bin mlp "$MLP_EPOCHS"

# train: one epoch of the small CNN from decoded images, against torch training the same parameters.
SMALL_CNN=build/models/small_cnn.onnx
[ -f "$SMALL_CNN" ] || $PY tools/export_small_cnn.py --out "$SMALL_CNN"
TRAIN_IMAGES=$(find -L "$DATA/train" -name '*.jpg' | wc -l)
echo
echo "== train, the small CNN at 64x64 from scratch (Adam lr 1e-5, batch $BATCH), one epoch of $TRAIN_IMAGES photos, $THREADS threads"
s=$(date +%s.%N)
build/onnxtl train "$SMALL_CNN" "$DATA/train" -o build/bench/small_cnn_trained.onnx --epochs 1 --batch "$BATCH" \
    --threads "$THREADS" --resize 64x64 --crop none --mean 0,0,0 --std 1,1,1 --quiet
ours=$($PY -c "print(f'{$(date +%s.%N) - $s:.2f}')")
read -r _ theirs < <($PY tools/bench_train.py small "$DATA" "$SMALL_CNN" "$THREADS" "$BATCH")
$PY -c "print(f'{\"onnxtl train, DATA/train as one unsplit folder\":58s} {$ours:7.1f} s vs PyTorch {$theirs:7.1f} s: onnxtl is {$theirs / $ours:.2f}x')"

# train --from: ResNet18's layer4 and fc fine-tuned on the layer3 output extract --cut cached once, against torch
# recomputing the frozen layers for every batch of every epoch, as the book's script does.
FT=build/models/resnet18_2class_224.onnx
[ -f "$FT" ] || $PY tools/bench_train.py export "$FT"
L3=/layer3/layer3.1/relu_1/Relu_output_0
echo
echo "== train --from layer3: ResNet18 layer4 + fc at 224x224 (BatchNorm frozen, Adam lr 1e-5, batch $BATCH), $TRAIN_IMAGES photos, $THREADS threads"
timed() { local s=$(date +%s.%N); "$@" || return; $PY -c "print(f'{$(date +%s.%N) - $s:.2f}')"; }
extract=$(timed build/onnxtl extract "$FT" "$DATA/train" --cut "$L3" -o build/bench/layer3.bin --batch "$BATCH" \
    --threads "$THREADS" --quiet)
cached=$(timed build/onnxtl train "$FT" build/bench/layer3.bin -o build/bench/ft.onnx --epochs 1 --batch "$BATCH" \
    --threads "$THREADS" --quiet)
images=$(timed build/onnxtl train "$FT" "$DATA/train" --from "$L3" -o build/bench/ft2.onnx --epochs 1 --batch "$BATCH" \
    --threads "$THREADS" --quiet)
read -r _ theirs < <($PY tools/bench_train.py finetune "$DATA" "$FT" "$THREADS" "$BATCH")
$PY - "$extract" "$cached" "$images" "$theirs" <<'PYEOF'
import sys
extract, cached, images, torch_epoch = map(float, sys.argv[1:])
print(f"{'onnxtl extract --cut layer3 (once; the cache)':58s} {extract:7.1f} s")
print(f"{'onnxtl train, one epoch on the cache':58s} {cached:7.1f} s vs PyTorch {torch_epoch:7.1f} s: onnxtl is "
      f"{torch_epoch / cached:.2f}x")
print(f"{'onnxtl train --from layer3, one epoch on the images':58s} {images:7.1f} s vs PyTorch {torch_epoch:7.1f} s: "
      f"onnxtl is {torch_epoch / images:.2f}x")
print(f"{'5 epochs: extract once + 5 on the cache, vs PyTorch 5':58s} {extract + 5 * cached:7.1f} s vs PyTorch "
      f"{5 * torch_epoch:7.1f} s: onnxtl is {5 * torch_epoch / (extract + 5 * cached):.2f}x")
PYEOF

echo
tools/bench_backbones.sh

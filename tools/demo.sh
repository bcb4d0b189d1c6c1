#!/bin/bash
# The README's first command: the whole transfer-learning workflow on a fresh
# machine.  Builds onnxtl, exports a torchvision ResNet50 (ImageNet weights
# when they can be downloaded, random weights otherwise), gets Dogs-vs-Cats
# photos, then extract -> fit-head -> eval -> run.
set -eu
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
tools/install_deps.sh
make -s
mkdir -p build/demo
start=$SECONDS

MODEL=build/demo/resnet50.onnx
if [ ! -f "$MODEL" ]; then
    echo "== exporting torchvision resnet50"
    if $PY models/export_torchvision.py --arch resnet50 --opset 17 --pretrained --output "$MODEL" >/dev/null 2>&1; then
        echo "   with pretrained ImageNet weights"
    else
        echo "   NOTICE: pretrained weights cannot be downloaded here, so the backbone has random"
        echo "   weights and accuracy will be near chance.  With network access the same commands"
        echo "   use ImageNet weights and reach about 97% on Dogs vs Cats."
        $PY models/export_torchvision.py --arch resnet50 --opset 17 --output "$MODEL" >/dev/null
    fi
fi

DATA=${ONNXTL_SHARED:-../shared/data}/dogscats
if [ ! -d "$DATA" ]; then
    DATA=build/demo/dogscats
    URL=${ONNXTL_DOGSCATS_URL:-https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip}
    if [ ! -d "$DATA" ]; then
        echo "== ../shared/data/dogscats is missing; downloading Dogs-vs-Cats photos"
        if ! curl -fsSL --max-time 1800 -o build/demo/dogscats.zip "$URL"; then
            echo "demo: no photos: ../shared/data/dogscats is missing and $URL cannot be downloaded." >&2
            echo "      Put an ImageFolder (train/<class>/*.jpg, test/<class>/*.jpg) there and rerun." >&2
            exit 1
        fi
        $PY tools/make_subset.py build/demo/dogscats.zip "$DATA" 1000 250
    fi
fi

echo "== onnxtl extract $MODEL $DATA"
build/onnxtl extract "$MODEL" "$DATA" -o build/demo/features.bin
echo "== onnxtl fit-head build/demo/features.bin"
build/onnxtl fit-head build/demo/features.bin -o build/demo/model.onnx
echo "== onnxtl eval build/demo/model.onnx $DATA/test"
build/onnxtl eval build/demo/model.onnx "$DATA/test"
echo "== onnxtl run build/demo/model.onnx (a few test photos)"
ls "$DATA"/test/cat/*.jpg | head -3 | xargs build/onnxtl run build/demo/model.onnx
ls "$DATA"/test/dog/*.jpg | head -3 | xargs build/onnxtl run build/demo/model.onnx
echo "== done in $((SECONDS - start)) s: model in build/demo/model.onnx"

#!/bin/bash
# The README's first command: build, export a torchvision ResNet50, describe it
# and run it.  (Random weights: this machine cannot download pretrained ones.)
set -eu
cd "$(dirname "$0")/.."
tools/install_deps.sh
make -s
mkdir -p build/models
MODEL=build/models/resnet50_op17_fold.onnx
if [ ! -f "$MODEL" ]; then
    echo "== exporting torchvision resnet50 (random init; pretrained weights need a network)"
    /usr/bin/python3 tools/export_torchvision.py --arch resnet50 --opset 17 --out build/models
fi
echo "== onnxtl info $MODEL"
build/onnxtl info "$MODEL"
/usr/bin/python3 -c "import numpy as np; np.save('build/demo_input.npy', np.random.default_rng(0).standard_normal((8, 3, 224, 224), dtype=np.float32))"
echo "== onnxtl infer (batch of 8 random images)"
TIMEFORMAT="inference took %R s (model load included)"
time build/onnxtl infer "$MODEL" --input input=build/demo_input.npy --output build/demo_logits.npy
/usr/bin/python3 -c "import numpy as np; y = np.load('build/demo_logits.npy'); print('logits', y.shape, 'top class per image:', y.argmax(1).tolist())"

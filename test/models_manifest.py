#!/usr/bin/python3
"""models/backbones.tsv against what onnxtl does with each export.

For every backbone listed: the export (models/export_torchvision.py, cached in
build/models) has the listed input shape; `onnxtl info` finds the listed head
tensor, or none where the manifest names the cut itself; `onnxtl infer`
computes that tensor with the listed number of features per image; and the
listed preprocessing is torchvision's own evaluation transform for the
architecture's weights.

usage: models_manifest.py ONNXTL
"""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "build", "models")


def rows():
    with open(os.path.join(ROOT, "models", "backbones.tsv")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                yield dict(zip(["arch", "input", "resize", "crop", "mean", "std", "channels", "head", "features"],
                               line.rstrip("\n").split("\t")))


def export(arch):
    path = os.path.join(MODELS, f"{arch}_op17_fold.onnx")
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(ROOT, "models", "export_torchvision.py"), "--arch", arch,
                        "--opset", "17", "--out", MODELS], check=True, stdout=subprocess.DEVNULL)
    return path


def check(onnxtl, row, tmp):
    arch, model = row["arch"], export(row["arch"])
    info = subprocess.run([onnxtl, "info", model], capture_output=True, text=True).stdout
    c, h, w = map(int, row["input"].split("x"))
    shape_ok = re.search(rf"\[N, {c}, {h}, {w}\]|\[\w+, {c}, {h}, {w}\]", info) is not None
    auto = row["head"].startswith("auto:")
    head = row["head"][5:] if auto else row["head"]
    found = re.search(r"head input \(cached by extract\): '([^']*)'", info)
    head_ok = (found and found.group(1) == head) if auto else found is None
    x = os.path.join(tmp, "x.npy")
    np.save(x, np.random.default_rng(0).standard_normal((1, c, h, w), dtype=np.float32))
    y = os.path.join(tmp, "y.npy")
    r = subprocess.run([onnxtl, "infer", model, "--input", f"input={x}", "--output", f"{head}={y}"],
                       capture_output=True, text=True)
    width = np.load(y).size if r.returncode == 0 else None
    t = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
    theirs = (str(t.resize_size[0]), str(t.crop_size[0]), ",".join(map(str, t.mean)), ",".join(map(str, t.std)))
    pre_ok = theirs == (row["resize"], row["crop"], row["mean"], row["std"])
    ok = shape_ok and head_ok and pre_ok and width == int(row["features"])
    print(f"{'PASS' if ok else 'FAIL'} manifest {arch}: input {c}x{h}x{w} {'found' if shape_ok else 'NOT found'}, "
          f"head '{head}' {'as listed' if head_ok else 'differs: ' + (found.group(1) if found else 'none found')}, "
          f"{width} features (listed {row['features']}), preprocessing "
          f"{'as torchvision' if pre_ok else 'differs from torchvision ' + str(theirs)}"
          f"{'' if r.returncode == 0 else ': ' + r.stderr.strip()}")
    return ok


def main():
    onnxtl = sys.argv[1]
    os.makedirs(MODELS, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        failed = sum(not check(onnxtl, row, tmp) for row in rows())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Feature parity on real photos: onnxtl extract's cached features against
torchvision's transform + the same torch model (the exported weights), read
at the classifier's input.  max |ours - ref| <= 1e-3 * max |ref| per model.

usage: extract_parity.py ONNXTL SHARED_DATA [--archs resnet18,resnet50,vgg16] [--photos 32]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "models"))
import export_torchvision  # noqa: E402

MODELS = os.path.join(os.path.dirname(HERE), "build", "models")


def photo_folder(shared, d, n):
    """An ImageFolder of n real photos (half cats, half dogs) linked from shared."""
    root = os.path.join(d, "photos")
    for cls in ("cat", "dog"):
        os.makedirs(os.path.join(root, "test", cls))
        src = os.path.join(os.path.abspath(shared), "dogscats", "test", cls)
        for f in sorted(os.listdir(src))[: n // 2]:
            os.symlink(os.path.join(src, f), os.path.join(root, "test", cls, f))
    return root


def torch_features(arch, paths):
    model = export_torchvision.build_model(arch, pretrained=False)
    head = model.fc if arch.startswith("resnet") else model.classifier
    captured = []
    head.register_forward_hook(lambda m, inp, out: captured.append(inp[0].detach()))
    t = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    x = torch.stack([t(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        model(x)
    return captured[0].numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnxtl")
    ap.add_argument("shared")
    ap.add_argument("--archs", default="resnet18,resnet50,vgg16")
    ap.add_argument("--photos", type=int, default=32)
    a = ap.parse_args()
    if not os.path.isdir(os.path.join(a.shared, "dogscats")):
        print(f"SKIP extract parity: {a.shared}/dogscats is missing (real photos live in ../shared)")
        return 0
    torch.set_num_threads(os.cpu_count() or 1)
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        root = photo_folder(a.shared, d, a.photos)
        for arch in a.archs.split(","):
            model = os.path.join(MODELS, f"{arch}_op17_fold.onnx")
            if not os.path.exists(model):
                subprocess.run([sys.executable, export_torchvision.__file__, "--arch", arch, "--opset", "17",
                                "--out", MODELS], check=True, stdout=subprocess.DEVNULL)
            feats = os.path.join(d, f"{arch}.bin")
            r = subprocess.run([a.onnxtl, "extract", model, root, "-o", feats, "--quiet"], capture_output=True, text=True)
            if r.returncode == 0:
                r = subprocess.run([a.onnxtl, "features", feats, "--npy", os.path.join(d, arch)], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL extract parity {arch}: onnxtl failed: {r.stderr.strip()}")
                failed += 1
                continue
            ours = np.load(os.path.join(d, f"{arch}_features.npy"))
            paths = [os.path.join(root, p) for p in open(os.path.join(d, f"{arch}_paths.txt")).read().split("\n") if p]
            ref = torch_features(arch, paths)
            err, scale = float(np.abs(ours - ref).max()), float(np.abs(ref).max())
            ok = ours.shape == ref.shape and err <= 1e-3 * scale
            print(f"{'PASS' if ok else 'FAIL'} extract parity {arch}: {len(paths)} photos, {ours.shape[1]} features, "
                  f"max|diff| {err:.3g}, max|ref| {scale:.3g}, relative {err / scale:.2e} (limit 1e-3)", flush=True)
            failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

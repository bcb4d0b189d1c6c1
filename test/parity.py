#!/usr/bin/python3
"""PyTorch parity: onnxtl's fp32 output against torch's float64 output.

For resnet18, resnet50 and vgg16 (random weights, fixed seed), exported at
opsets 11, 13 and 17 with and without constant folding, runs `onnxtl infer`
at batch 4 and batch 1 and requires max|ours - ref| <= 1e-4 * max|ref|.
Exports and references are cached in build/models.  Under
ONEDNN_MAX_CPU_ISA (make test runs it capped at AVX2), each label says so.

usage: parity.py ONNXTL [--archs resnet18,resnet50,vgg16] [--opsets 11,13,17] [--batches 4,1]
                 [--folds fold,nofold]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = os.path.join(ROOT, "build", "models")
EXPORT = os.path.join(ROOT, "models", "export_torchvision.py")


def ensure(path, args):
    if not os.path.exists(path):
        subprocess.run([sys.executable, EXPORT, "--out", MODELS] + args, check=True,
                       stdout=subprocess.DEVNULL)
    return path


def check(onnxtl, model, inp, ref, batch, label, tmp):
    x = np.load(inp)[:batch]
    xin = os.path.join(tmp, "in.npy")
    out = os.path.join(tmp, "out.npy")
    np.save(xin, x)
    r = subprocess.run([onnxtl, "infer", model, "--input", f"input={xin}", "--output", out],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL {label}: onnxtl exited {r.returncode}: {r.stderr.strip()}")
        return False
    r = subprocess.run([sys.executable, os.path.join(HERE, "compare_npy.py"), out, ref,
                        "--rows", str(batch), "--label", label], capture_output=True, text=True)
    print(r.stdout.strip(), flush=True)
    return r.returncode == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnxtl")
    ap.add_argument("--archs", default="resnet18,resnet50,vgg16")
    ap.add_argument("--opsets", default="11,13,17")
    ap.add_argument("--batches", default="4,1")
    ap.add_argument("--folds", default="fold,nofold")

    a = ap.parse_args()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    isa = f", oneDNN capped at {cap}" if cap else ""  # the cap selects onnxtl's Winograd kernels too
    os.makedirs(MODELS, exist_ok=True)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for arch in a.archs.split(","):
            inp = os.path.join(MODELS, f"{arch}_input.npy")
            ref = os.path.join(MODELS, f"{arch}_ref.npy")
            if not os.path.exists(ref):
                ensure(ref, ["--arch", arch, "--reference"])
            for opset in a.opsets.split(","):
                for fold in a.folds.split(","):
                    model = os.path.join(MODELS, f"{arch}_op{opset}_{fold}.onnx")
                    extra = ["--no-fold"] if fold == "nofold" else []
                    ensure(model, ["--arch", arch, "--opset", opset] + extra)
                    for batch in map(int, a.batches.split(",")):
                        label = f"parity {arch} opset {opset} {fold} batch {batch}{isa}"
                        failed += not check(a.onnxtl, model, inp, ref, batch, label, tmp)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""CUDA backend against the CPU backend on torchvision exports (resnet18,
resnet50, vgg16): max |gpu - cpu| <= tol * max |cpu| with tol 1e-4 in fp32,
5e-3 in tf32 and 3e-2 in fp16/bf16.  Skips, saying so, without a GPU.

usage: gpu_parity.py ONNXTL(built with CUDA=1) [--archs resnet18,resnet50,vgg16]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "build", "models")
TOL = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 3e-2, "bf16": 3e-2}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnxtl")
    ap.add_argument("--archs", default="resnet18,resnet50,vgg16")
    a = ap.parse_args()
    if not os.path.exists(a.onnxtl):
        print(f"SKIP gpu parity: {a.onnxtl} is not built (make CUDA=1)")
        return 0
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        x = os.path.join(d, "x.npy")
        np.save(x, np.random.default_rng(5).standard_normal((4, 3, 224, 224), dtype=np.float32))
        for arch in a.archs.split(","):
            model = os.path.join(MODELS, f"{arch}_op17_fold.onnx")
            if not os.path.exists(model):
                subprocess.run([sys.executable, os.path.join(ROOT, "models", "export_torchvision.py"), "--arch", arch,
                                "--opset", "17", "--out", MODELS], check=True, stdout=subprocess.DEVNULL)
            cpu = os.path.join(d, "cpu.npy")
            subprocess.run([a.onnxtl, "infer", model, "--input", f"input={x}", "--output", cpu], check=True)
            ref = np.load(cpu).astype(np.float64)
            for prec, tol in TOL.items():
                out = os.path.join(d, f"{prec}.npy")
                r = subprocess.run([a.onnxtl, "infer", model, "--input", f"input={x}", "--output", out, "--device", "cuda",
                                    "--precision", prec], capture_output=True, text=True)
                if r.returncode and "no CUDA GPU" in r.stderr:
                    print(f"SKIP gpu parity: no CUDA GPU on this machine ({r.stderr.strip()})")
                    return 0
                if r.returncode:
                    print(f"FAIL gpu parity {arch} {prec}: {r.stderr.strip()}")
                    failed += 1
                    continue
                got = np.load(out).astype(np.float64)
                err, scale = float(np.abs(got - ref).max()), float(np.abs(ref).max())
                ok = err <= tol * scale
                print(f"{'PASS' if ok else 'FAIL'} gpu parity {arch} {prec}: max|gpu-cpu| {err:.3g}, max|cpu| {scale:.3g}, "
                      f"relative {err / scale:.2e} (limit {tol:g})", flush=True)
                failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Every backbone of models/backbones.tsv against torch.

For each one, exported by models/export_torchvision.py (random init, fixed
seed, randomised BatchNorm statistics, opset 17, cached in build/models):
- onnxtl's logits against torch's float64 ones at batch 1 and 2;
- the tensor `onnxtl info` finds as the head input, against the input of the
  listed torchvision module, captured in float64 by a forward pre-hook, at
  batch 1 and 2;
- the export's input shape, and the listed preprocessing against
  torchvision's own evaluation transform for the architecture's weights.
All within max |ours - ref| <= 1e-4 * max |ref| (exact where ref is all zero,
as ViT's zero-initialised head gives).  A family the exporter cannot export
is a FAIL naming the exporter's error.

usage: models_manifest.py ONNXTL [--archs a,b,...]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "build", "models")
sys.path.insert(0, os.path.join(ROOT, "models"))
import export_torchvision  # noqa: E402

TOL = 1e-4
COLUMNS = ["arch", "input", "resize", "crop", "mean", "std", "channels", "head", "features", "module"]


def rows():
    with open(os.path.join(ROOT, "models", "backbones.tsv")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                yield dict(zip(COLUMNS, line.rstrip("\n").split("\t")))


def export(arch):
    path = os.path.join(MODELS, f"{arch}_op17_fold.onnx")
    if not os.path.exists(path):
        r = subprocess.run([sys.executable, os.path.join(ROOT, "models", "export_torchvision.py"), "--arch", arch,
                            "--opset", "17", "--out", MODELS], capture_output=True, text=True)
        if r.returncode:
            return None, (r.stderr.strip().splitlines() or ["no message"])[-1]
    return path, None


def relative(ours, ref):
    if ours.shape != ref.shape:
        return False, f"shape {ours.shape}, expected {ref.shape}"
    err, scale = float(np.abs(ours.astype(np.float64) - ref).max()), float(np.abs(ref).max())
    ok = bool(np.isfinite(ours).all()) and (err <= TOL * scale if scale else err == 0)
    return ok, f"relative {err / scale if scale else err:.3g}"


def torch_reference(row, x):
    """float64 logits and the listed module's input, for x."""
    model = export_torchvision.build_model(row["arch"], False).double()
    captured = {}
    module = model.get_submodule(row["module"])
    hook = module.register_forward_pre_hook(lambda m, inputs: captured.setdefault("x", inputs[0].detach()))
    with torch.no_grad():
        logits = model(torch.from_numpy(x).double())
    hook.remove()
    return logits.numpy(), captured["x"].reshape(x.shape[0], -1).numpy()


def check(onnxtl, row, tmp):
    arch = row["arch"]
    model, error = export(arch)
    if not model:
        print(f"FAIL manifest {arch}: the exporter cannot export it: {error}")
        return False
    info = subprocess.run([onnxtl, "info", model], capture_output=True, text=True)
    c, h, w = map(int, row["input"].split("x"))
    head = row["head"][5:] if row["head"].startswith("auto:") else row["head"]
    found = re.search(r"head input \(cached by extract\): '([^']*)'", info.stdout)
    t = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
    theirs = (str(t.resize_size[0]), str(t.crop_size[0]), ",".join(map(str, t.mean)), ",".join(map(str, t.std)))
    facts = {
        "input shape": re.search(rf"\[N, {c}, {h}, {w}\]", info.stdout) is not None,
        "head found": (found and found.group(1) == head) if row["head"].startswith("auto:") else True,
        "preprocessing as torchvision's": theirs == (row["resize"], row["crop"], row["mean"], row["std"]),
    }
    x = np.random.default_rng(0).standard_normal((2, c, h, w), dtype=np.float32)
    ref_logits, ref_feats = torch_reference(row, x)
    ok, details = all(facts.values()), [k if v else f"NOT {k}" for k, v in facts.items()]
    for batch in (1, 2):
        xin, lo, fo = (os.path.join(tmp, n) for n in ("x.npy", "logits.npy", "feats.npy"))
        np.save(xin, x[:batch])
        r = subprocess.run([onnxtl, "infer", model, "--input", f"input={xin}", "--output", lo,
                            "--output", f"{head}={fo}"], capture_output=True, text=True)
        if r.returncode:
            print(f"FAIL manifest {arch} batch {batch}: onnxtl exited {r.returncode}: {r.stderr.strip()[-300:]}")
            return False
        feats = np.load(fo).reshape(batch, -1)
        lok, ltext = relative(np.load(lo), ref_logits[:batch])
        fok, ftext = relative(feats, ref_feats[:batch])
        width_ok = feats.shape[1] == int(row["features"])
        ok = ok and lok and fok and width_ok
        details.append(f"batch {batch}: logits {ltext}, head input ({feats.shape[1]} features"
                       f"{'' if width_ok else ', listed ' + row['features']}) {ftext}")
    print(f"{'PASS' if ok else 'FAIL'} manifest {arch}: {'; '.join(details)} (limit {TOL:g})", flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnxtl")
    ap.add_argument("--archs", help="only these, comma-separated")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    os.makedirs(MODELS, exist_ok=True)
    only = set(a.archs.split(",")) if a.archs else None
    with tempfile.TemporaryDirectory() as tmp:
        failed = sum(not check(a.onnxtl, row, tmp) for row in rows() if not only or row["arch"] in only)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

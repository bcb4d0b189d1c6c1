#!/usr/bin/python3
"""--precision bf16 on the CPU, on real photos: ResNet50's features against
fp32's (cosine similarity at least 0.999 for every photo), and a head fitted
on fp32 features predicting every test photo's class alike when run in bf16.
Features of other arithmetic are never resumed or merged into fp32 ones.  On a
CPU without AVX512_BF16 or AMX, the one-line refusal naming them is checked.

usage: precision_tests.py ONNXTL SHARED_DATA
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from extract_tests import failed_count, model, report, subset  # noqa: E402


def sh(*args):
    return subprocess.run(args, capture_output=True, text=True)


def features(onnxtl, mdl, data, out, *extra):
    r = sh(onnxtl, "extract", mdl, data, "-o", out, "--quiet", *extra)
    if r.returncode:
        return None, r.stderr.strip()
    sh(onnxtl, "features", out, "--npy", out[:-4])
    return np.load(out[:-4] + "_features.npy"), ""


def predictions(onnxtl, mdl, folder, *extra):
    r = sh(onnxtl, "run", mdl, folder, "--json", *extra)
    return {p["path"]: p["predictions"][0]["class"] for p in map(json.loads, r.stdout.splitlines())}


def test_bf16(onnxtl, shared, d):
    mdl = model("resnet50")
    data = subset(shared, d, 20, 20)
    fp32, err32 = features(onnxtl, mdl, data, os.path.join(d, "fp32.bin"))
    bf16, err16 = features(onnxtl, mdl, data, os.path.join(d, "bf16.bin"), "--precision", "bf16")
    if fp32 is None or bf16 is None:
        report(False, "resnet50 features in fp32 and in bf16", err32 + err16)
        return
    cos = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    report(cos.min() >= 0.999, "resnet50 features with bf16 convolutions: cosine similarity to fp32's at least "
           "0.999 for every photo", f"{len(cos)} photos, min {cos.min():.6f}, mean {cos.mean():.6f}")
    head = os.path.join(d, "model.onnx")
    sh(onnxtl, "fit-head", os.path.join(d, "fp32.bin"), "-o", head, "--epochs", "5", "--lr", "1e-3", "--quiet")
    ours = predictions(onnxtl, head, os.path.join(data, "test"), "--precision", "bf16")
    ref = predictions(onnxtl, head, os.path.join(data, "test"))
    same = sum(ours.get(p) == c for p, c in ref.items())
    report(ref and same == len(ref) == len(ours), "a head fitted on fp32 features: run in bf16 predicts every test "
           "photo's class as fp32 does", f"{same} of {len(ref)} photos")
    r = sh(onnxtl, "merge", os.path.join(d, "mixed.bin"), os.path.join(d, "fp32.bin"), os.path.join(d, "bf16.bin"))
    report(r.returncode == 1, "merge refuses to mix features computed in fp32 and in bf16", r.stderr.strip())
    r = sh(onnxtl, "features", os.path.join(d, "bf16.bin"), "--json")
    report(r.returncode == 0 and json.loads(r.stdout)["compute"] == "cpu bf16",
           "the features file records that its features were computed on the CPU in bf16", r.stdout[:120])


BACKBONES = ["resnet18", "vgg16", "mobilenet_v3_large", "efficientnet_b0", "densenet121", "googlenet", "convnext_tiny",
             "regnet_y_400mf", "squeezenet1_1", "resnext50_32x4d", "vit_b_16"]


def test_backbones_bf16(onnxtl, d):
    """Grouped, depthwise and 1x1 convolutions, fused activations and residuals, Concat readers and Linear
    layers: the head input that extract caches (ViT's logits are zero: torchvision zeroes its head)."""
    worst = []
    rng = np.random.default_rng(0)
    for arch in BACKBONES:
        info = json.loads(sh(onnxtl, "info", model(arch), "--json").stdout)
        head = info["head_input"]["name"]
        x = os.path.join(d, f"{arch}_input.npy")
        np.save(x, rng.standard_normal([4] + [n or 4 for n in info["inputs"][0]["dims"][1:]]).astype(np.float32))
        outs = []
        for extra in ([], ["--precision", "bf16"]):
            out = os.path.join(d, f"{arch}{len(outs)}.npy")
            r = sh(onnxtl, "infer", model(arch), "--input", f"input={x}", "--output", f"{head}={out}", *extra)
            outs.append(np.load(out).reshape(4, -1) if r.returncode == 0 else None)
        if outs[0] is None or outs[1] is None:
            worst.append((arch, -1.0))
            continue
        a, b = outs
        worst.append((arch, float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())))
    report(all(c >= 0.999 for _, c in worst), f"the head input of {len(BACKBONES)} backbones with bf16 convolutions "
           "and Linear layers: cosine similarity to fp32's at least 0.999", ", ".join(f"{a} {c:.6f}" for a, c in worst))


def test_empty_matmul_bf16(onnxtl, d):
    """A Linear layer with no inputs to sum (K = 0) gives zeros, as in fp32, not a crash inside oneDNN."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.zeros((0, 3), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "k0",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 0])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [w])
    path, x, out = os.path.join(d, "k0.onnx"), os.path.join(d, "k0_x.npy"), os.path.join(d, "k0_y.npy")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    np.save(x, np.zeros((2, 0), np.float32))
    r = sh(onnxtl, "infer", path, "--input", f"x={x}", "--output", out, "--precision", "bf16")
    report(r.returncode == 0 and np.array_equal(np.load(out), np.zeros((2, 3), np.float32)),
           "a MatMul summing over nothing (K = 0) in bf16 gives zeros", r.stderr.strip())


def main():
    onnxtl, shared = sys.argv[1], sys.argv[2]
    info = json.loads(sh(onnxtl, "info", model(), "--device", "cpu", "--json").stdout)["placement"]
    with tempfile.TemporaryDirectory() as d:
        if not info["bf16"]:
            r = sh(onnxtl, "extract", model(), shared, "-o", os.path.join(d, "x.bin"), "--precision", "bf16")
            report(r.returncode == 1 and "AVX512_BF16 or AMX" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
                   f"--precision bf16 on a CPU without bf16 instructions (oneDNN: {info['isa']}) is refused in one line",
                   r.stderr.strip())
            print(f"SKIP bf16 accuracy: this CPU (oneDNN {info['isa']}) has no bf16 instructions")
        elif not os.path.isdir(os.path.join(shared, "dogscats")):
            print(f"SKIP bf16 accuracy: {shared}/dogscats is missing")
        else:
            test_bf16(onnxtl, shared, d)
        if info["bf16"]:
            test_backbones_bf16(onnxtl, d)
            test_empty_matmul_bf16(onnxtl, d)
    return 1 if failed_count() else 0


if __name__ == "__main__":
    sys.exit(main())

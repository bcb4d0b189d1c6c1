#!/usr/bin/python3
"""Models as other producers write them, built with onnx.helper from the
torchvision exports (this machine cannot download the model zoo).

- ml_tail: SqueezeNet with a Custom Vision / CoreML-style tail after its
  probabilities: ZipMap and a class-label lookup (ArgMax, ArrayFeatureExtractor
  over a string Constant) from ai.onnx.ml.  onnxtl must load it, find the head
  and list the tail as not needed; the head tensor must equal the plain
  export's; asking for the tail's output must fail naming its node.
- dynamo_pool: ResNet18 with the pool and flatten as the dynamo exporter
  writes them (ReduceMean over H and W with an axes input, then Reshape), at
  opset 18: the head must be found and the logits equal the plain export's.

usage: producers_tests.py ONNXTL
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "build", "models")
failed = 0


def report(ok, label, detail=""):
    global failed
    failed += not ok
    print(f"{'PASS' if ok else 'FAIL'} {label}{': ' + detail if detail else ''}", flush=True)


def export(arch, opset=17):
    path = os.path.join(MODELS, f"{arch}_op{opset}_fold.onnx")
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(ROOT, "models", "export_torchvision.py"), "--arch", arch,
                        "--opset", str(opset), "--out", MODELS], check=True, stdout=subprocess.DEVNULL)
    return path


def run(onnxtl, *args):
    return subprocess.run([onnxtl, *args], capture_output=True, text=True)


def infer(onnxtl, model, x, outputs, tmp):
    xin = os.path.join(tmp, "x.npy")
    np.save(xin, x)
    files = [os.path.join(tmp, f"out{i}.npy") for i in range(len(outputs))]
    r = run(onnxtl, "infer", model, "--input", f"input={xin}",
            *sum((["--output", f"{o}={f}"] for o, f in zip(outputs, files)), []))
    return r, [np.load(f) for f in files] if r.returncode == 0 else None


def ml_tail(onnxtl, tmp):
    m = onnx.load(export("squeezenet1_1"))
    g = m.graph
    labels = [f"class {i}" for i in range(1000)]
    g.node.extend([
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
        helper.make_node("ZipMap", ["probabilities"], ["loss"], name="zipmap", domain="ai.onnx.ml",
                         classlabels_strings=labels),
        helper.make_node("ArgMax", ["probabilities"], ["index"], name="argmax", axis=1, keepdims=0),
        helper.make_node("Constant", [], ["labels"], name="labels",
                         value=helper.make_tensor("labels", TensorProto.STRING, [1000], [s.encode() for s in labels])),
        helper.make_node("ArrayFeatureExtractor", ["labels", "index"], ["classLabel"], name="label_lookup",
                         domain="ai.onnx.ml"),
    ])
    del g.output[:]
    zipmap_type = onnx.TypeProto()  # seq(map(string, float)), as ZipMap writes
    zipmap_type.sequence_type.elem_type.map_type.key_type = TensorProto.STRING
    zipmap_type.sequence_type.elem_type.map_type.value_type.tensor_type.elem_type = TensorProto.FLOAT
    g.output.extend([helper.make_tensor_value_info("classLabel", TensorProto.STRING, [None]),
                     onnx.ValueInfoProto(name="loss", type=zipmap_type)])
    m.opset_import.append(helper.make_opsetid("ai.onnx.ml", 1))
    path = os.path.join(tmp, "squeezenet_ml_tail.onnx")
    onnx.save(m, path)
    r = run(onnxtl, "info", path)
    head = "/features/features.12/Concat_output_0"
    listed = all(f"node '{n}'" in r.stdout for n in ("zipmap", "label_lookup"))
    report(r.returncode == 0 and f"'{head}'" in r.stdout and listed and "not needed for the feature tensor" in r.stdout,
           "producer ml_tail: info loads it, finds the head and lists the ai.onnx.ml tail as not needed",
           (r.stdout + r.stderr).strip().splitlines()[-1] if r.stdout or r.stderr else "")
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224), dtype=np.float32)
    r1, ours = infer(onnxtl, path, x, [head, "probabilities"], tmp)
    r2, plain = infer(onnxtl, export("squeezenet1_1"), x, [head], tmp)
    same = ours is not None and plain is not None and np.array_equal(ours[0], plain[0])
    report(same, "producer ml_tail: its head tensor equals the plain export's, bit for bit",
           (r1.stderr + r2.stderr).strip())
    r, _ = infer(onnxtl, path, x, ["loss"], tmp)
    report(r.returncode == 1 and "'zipmap'" in r.stderr and "'loss'" in r.stderr and len(r.stderr.splitlines()) == 1,
           "producer ml_tail: asking for the ZipMap output fails in one line naming the node", r.stderr.strip())


def dynamo_pool(onnxtl, tmp):
    m = onnx.load(export("resnet18"))
    g = m.graph
    pool = next(n for n in g.node if n.op_type == "GlobalAveragePool")
    flat = next(n for n in g.node if n.op_type == "Flatten")
    pool_in, flat_out = pool.input[0], flat.output[0]
    keep = [n for n in g.node if n not in (pool, flat)]
    del g.node[:]
    g.initializer.extend([numpy_helper.from_array(np.array([2, 3], np.int64), "pool_axes"),
                          numpy_helper.from_array(np.array([-1, 512], np.int64), "flat_shape")])
    i = next(k for k, n in enumerate(keep) if flat_out in n.input)
    keep[i:i] = [helper.make_node("ReduceMean", [pool_in, "pool_axes"], ["pooled"], name="mean", keepdims=1),
                 helper.make_node("Reshape", ["pooled", "flat_shape"], [flat_out], name="flatten")]
    g.node.extend(keep)
    m.opset_import[0].version = 18
    path = os.path.join(tmp, "resnet18_dynamo_pool.onnx")
    onnx.save(m, path)
    r = run(onnxtl, "info", path)
    report(r.returncode == 0 and f"'{flat_out}' [1, 512]" in r.stdout,
           "producer dynamo_pool: info finds the head after ReduceMean and Reshape", r.stderr.strip())
    x = np.random.default_rng(2).standard_normal((2, 3, 224, 224), dtype=np.float32)
    _, ours = infer(onnxtl, path, x, ["logits"], tmp)
    _, plain = infer(onnxtl, export("resnet18"), x, ["logits"], tmp)
    err = float(np.abs(ours[0] - plain[0]).max() / np.abs(plain[0]).max()) if ours and plain else float("inf")
    report(err <= 1e-5, "producer dynamo_pool: logits equal the plain export's", f"relative {err:.3g} (limit 1e-05)")


def main():
    onnxtl = sys.argv[1]
    os.makedirs(MODELS, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ml_tail(onnxtl, tmp)
        dynamo_pool(onnxtl, tmp)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

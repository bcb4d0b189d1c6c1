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
- ir3_inputs: ResNet18 as IR 3 and opset 9 files are, every initializer also
  listed as a graph input: one image input, the head found, logits equal.
- opset7_caffe: the zoo's Caffe-era shape: opset 7, an ImageScaler and a
  BatchNormalization (weights as graph inputs) in front of ResNet18; logits
  equal the plain export's on the input they compute, and extract takes 0-255
  pixels by default because the model normalises them itself.
- custom_vision: SqueezeNet taking 227 x 227 images, with the image metadata
  Custom Vision writes (Image.BitmapPixelFormat Bgr8, NominalRange_0_255):
  extract crops 227, feeds BGR 0-255 pixels and says why.
- opset6: a network as the ONNX 1.2-era PyTorch exporter wrote it at opset 6
  (BatchNormalization with is_test, Dropout with is_test, Gemm and Add/Mul
  with broadcast=1): onnxtl runs the opset 6 file and must agree with ONNX
  Runtime (which starts at opset 7) on ONNX's own conversion of it to opset
  7; a broadcast along an axis before B's last dims is refused in one line.
- nhwc_input: ResNet18 behind a Transpose from N x H x W x 3, as tf2onnx and
  Keras exports take images: logits equal, and extract's features equal the
  plain export's on real photos.

usage: producers_tests.py ONNXTL
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnx.version_converter
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


def list_initializers_as_inputs(m):
    listed = {i.name for i in m.graph.input}
    m.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                         for t in m.graph.initializer if t.name not in listed)


def feed_input_through(m, nodes, out):
    """Makes the graph input 'input' go through nodes, whose last output out replaces it elsewhere."""
    rest = list(m.graph.node)
    for n in rest:
        n.input[:] = [out if i == "input" else i for i in n.input]
    del m.graph.node[:]
    m.graph.node.extend(nodes + rest)


def relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max()) if a is not None and b is not None else float("inf")


def ir3_inputs(onnxtl, tmp):
    m = onnx.load(export("resnet18"))
    list_initializers_as_inputs(m)
    m.ir_version, m.opset_import[0].version = 3, 9
    path = os.path.join(tmp, "resnet18_ir3.onnx")
    onnx.save(m, path)
    r = run(onnxtl, "info", path)
    listed = r.stdout.split("inputs:\n")[-1].split("ops (")[0].strip().splitlines()
    report(r.returncode == 0 and "'/Flatten_output_0' [1, 512]" in r.stdout and len(listed) == 1,
           "producer ir3_inputs: info loads it with one image input and finds the head",
           f"inputs listed: {listed} {r.stderr.strip()}")
    x = np.random.default_rng(3).standard_normal((2, 3, 224, 224), dtype=np.float32)
    _, ours = infer(onnxtl, path, x, ["logits"], tmp)
    _, plain = infer(onnxtl, export("resnet18"), x, ["logits"], tmp)
    err = relative(ours and ours[0], plain and plain[0])
    report(err <= 1e-6, "producer ir3_inputs: logits equal the plain export's", f"relative {err:.3g} (limit 1e-06)")


def photo_folder(tmp, n=3):
    """train/{cat,dog} with n real photos each, or None without ../shared."""
    src = os.path.join(ROOT, "..", "shared", "data", "dogscats", "train")
    if not os.path.isdir(src):
        return None
    root = os.path.join(tmp, "photos")
    for cls in ("cat", "dog"):
        os.makedirs(os.path.join(root, "train", cls), exist_ok=True)
        for f in sorted(os.listdir(os.path.join(src, cls)))[:n]:
            os.symlink(os.path.join(src, cls, f), os.path.join(root, "train", cls, f))
    return root


def opset7_caffe(onnxtl, tmp):
    m = onnx.load(export("resnet18"))
    rng = np.random.default_rng(4)
    scale, bias = 1 / 58.0, [-2.1, -2.0, -1.8]
    bn = {k: rng.random(3).astype(np.float32) + 0.5 for k in ("bn_scale", "bn_var")}
    bn.update({k: (rng.standard_normal(3) * 0.2).astype(np.float32) for k in ("bn_bias", "bn_mean")})
    m.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in bn.items())
    feed_input_through(m, [
        helper.make_node("ImageScaler", ["input"], ["scaled"], name="scaler", scale=scale, bias=bias),
        helper.make_node("BatchNormalization", ["scaled", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
                         ["normalized"], name="bn", epsilon=1e-5, spatial=1)], "normalized")
    list_initializers_as_inputs(m)
    m.ir_version, m.opset_import[0].version = 3, 7
    path = os.path.join(tmp, "resnet18_caffe_opset7.onnx")
    onnx.save(m, path)
    x = rng.uniform(0, 255, (2, 3, 224, 224)).astype(np.float32)
    c = (slice(None), None, None)
    y = (x.astype(np.float64) * scale + np.array(bias)[c] - bn["bn_mean"][c]) / np.sqrt(bn["bn_var"][c] + 1e-5)
    y = (y * bn["bn_scale"][c] + bn["bn_bias"][c]).astype(np.float32)
    r, ours = infer(onnxtl, path, x, ["logits"], tmp)
    _, plain = infer(onnxtl, export("resnet18"), y, ["logits"], tmp)
    err = relative(ours and ours[0], plain and plain[0])
    report(err <= 1e-5, "producer opset7_caffe: logits equal the plain export's on what ImageScaler and "
           "BatchNormalization compute", f"relative {err:.3g} (limit 1e-05) {r.stderr.strip()}")
    photos = photo_folder(tmp)
    if photos is None:
        print("SKIP producer opset7_caffe extract: ../shared/data/dogscats is missing")
        return
    r = run(onnxtl, "extract", path, photos, "-o", os.path.join(tmp, "caffe.bin"))
    line = next((ln for ln in r.stderr.splitlines() if "preprocess:" in ln), "")
    report(r.returncode == 0 and "pixels 0 to 255" in line and "mean=[0, 0, 0], std=[1, 1, 1]" in line
           and "ImageScaler" in line, "producer opset7_caffe: extract feeds 0-255 pixels and says why", line or r.stderr)
    r = run(onnxtl, "extract", path, photos, "-o", os.path.join(tmp, "caffe_bgr.bin"), "--channels", "bgr")
    line = next((ln for ln in r.stderr.splitlines() if "preprocess:" in ln), "")
    report(r.returncode == 0 and "BGR pixels 0 to 255" in line, "producer opset7_caffe: --channels bgr overrides it",
           line or r.stderr)


def custom_vision(onnxtl, tmp):
    m = onnx.load(export("squeezenet1_1"))
    m.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 227, 227]))
    onnx.helper.set_model_props(m, {"Image.BitmapPixelFormat": "Bgr8", "Image.NominalPixelRange": "NominalRange_0_255"})
    path = os.path.join(tmp, "squeezenet_custom_vision.onnx")
    onnx.save(m, path)
    photos = photo_folder(tmp) if not os.path.isdir(os.path.join(tmp, "photos")) else os.path.join(tmp, "photos")
    if photos is None:
        print("SKIP producer custom_vision: ../shared/data/dogscats is missing")
        return
    r = run(onnxtl, "extract", path, photos, "-o", os.path.join(tmp, "cv.bin"))
    line = next((ln for ln in r.stderr.splitlines() if "preprocess:" in ln), "")
    report(r.returncode == 0 and "Resize(259), CenterCrop([227, 227]), BGR pixels 0 to 255" in line
           and "input is 227x227" in line and "Bgr8" in line and "NominalRange_0_255" in line,
           "producer custom_vision: extract takes the model's input size and image metadata, and says why",
           line or r.stderr)


def ort_outputs(tmp, model, x, names):
    """ONNX Runtime's outputs for input x, through test/ort_run.js."""
    xin, spec = os.path.join(tmp, "ort_x.npy"), os.path.join(tmp, "ort_spec.json")
    np.save(xin, x)
    refs = {n: os.path.join(tmp, f"ort_{i}.npy") for i, n in enumerate(names)}
    with open(spec, "w") as f:
        json.dump([{"model": model, "inputs": {"input": xin}, "outputs": refs}], f)
    subprocess.run([os.path.join(ROOT, "tools", "install_ort.sh")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["node", os.path.join(ROOT, "test", "ort_run.js"), spec], check=True, stdout=subprocess.DEVNULL)
    for ref in refs.values():
        if os.path.exists(ref + ".err"):
            print(f"ONNX Runtime refused {model}: {open(ref + '.err').read().strip()}")
            return None
    return [np.load(refs[n]) for n in names]


def opset6_network(rng, legacy_axis):
    c = lambda name, shape, scale=0.3: numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
    inits = [c("w", (4, 3, 3, 3)), c("b", (4,)), c("bn_scale", (4,)), c("bn_bias", (4,)), c("bn_mean", (4,), 0.1),
             numpy_helper.from_array((rng.random(4) + 0.5).astype(np.float32), "bn_var"),
             c("fc_w", (10, 4 * 8 * 8)), c("fc_b", (10,)), c("extra", (10,)), c("gain", (10,)), c("channel_bias", (4,))]
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["conv", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn"],
                         is_test=1, epsilon=1e-5, momentum=0.9, spatial=1),
        helper.make_node("Relu", ["bn"], ["relu"]),
        helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Dropout", ["pool"], ["drop"], is_test=1, ratio=0.5),
        helper.make_node("Flatten", ["drop"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc"], transB=1, broadcast=1),
        helper.make_node("Add", ["fc", "extra"], ["shifted"], broadcast=1),
        helper.make_node("Mul", ["shifted", "gain"], ["scaled"], broadcast=1, axis=1),
        helper.make_node("Softmax", ["scaled"], ["probs"], axis=1),
    ]
    if legacy_axis:  # Caffe2's per-channel bias: [C] onto N x C x H x W at axis 1
        nodes.insert(1, helper.make_node("Add", ["conv", "channel_bias"], ["biased"], name="channel_add",
                                         broadcast=1, axis=1))
        nodes[2].input[0] = "biased"
    g = helper.make_graph(nodes, "opset6", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 3, 16, 16])],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 10]) for n in ("probs", "fc")], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 6)])
    m.ir_version = 3
    list_initializers_as_inputs(m)  # IR 3 requires it
    return m


def opset6(onnxtl, tmp):
    rng = np.random.default_rng(6)
    m = opset6_network(rng, False)
    path, converted = os.path.join(tmp, "opset6.onnx"), os.path.join(tmp, "opset6_as_7.onnx")
    onnx.save(m, path)
    onnx.save(onnx.version_converter.convert_version(m, 7), converted)
    x = rng.standard_normal((2, 3, 16, 16), dtype=np.float32)
    r, ours = infer(onnxtl, path, x, ["probs", "fc"], tmp)
    ref = ort_outputs(tmp, converted, x, ["probs", "fc"])
    err = max(relative(ours and ours[0], ref[0]), relative(ours and ours[1], ref[1]))
    report(err <= 1e-5, "producer opset6: runs the opset 6 file as ONNX Runtime runs its opset 7 conversion",
           f"relative {err:.3g} (limit 1e-05) {r.stderr.strip()}")
    onnx.save(opset6_network(rng, True), path)
    r, _ = infer(onnxtl, path, x, ["probs"], tmp)
    report(r.returncode == 1 and "'channel_add'" in r.stderr and "axis 1" in r.stderr and len(r.stderr.splitlines()) == 1,
           "producer opset6: a broadcast along axis 1 is refused in one line naming the node", r.stderr.strip())


def nhwc_input(onnxtl, tmp):
    m = onnx.load(export("resnet18"))
    feed_input_through(m, [helper.make_node("Transpose", ["input"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2])],
                       "nchw")
    m.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 224, 224, 3]))
    path = os.path.join(tmp, "resnet18_nhwc.onnx")
    onnx.save(m, path)
    x = np.random.default_rng(5).standard_normal((2, 3, 224, 224), dtype=np.float32)
    _, ours = infer(onnxtl, path, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), ["logits"], tmp)
    _, plain = infer(onnxtl, export("resnet18"), x, ["logits"], tmp)
    err = relative(ours and ours[0], plain and plain[0])
    report(err <= 1e-6, "producer nhwc_input: logits equal the plain export's", f"relative {err:.3g} (limit 1e-06)")
    photos = photo_folder(tmp) if not os.path.isdir(os.path.join(tmp, "photos")) else os.path.join(tmp, "photos")
    if photos is None:
        print("SKIP producer nhwc_input extract: ../shared/data/dogscats is missing")
        return
    feats = []
    for name, model in (("nhwc", path), ("nchw", export("resnet18"))):
        out = os.path.join(tmp, f"{name}.bin")
        r1 = run(onnxtl, "extract", model, photos, "-o", out, "--quiet")
        r2 = run(onnxtl, "features", out, "--npy", os.path.join(tmp, name))
        feats.append(np.load(os.path.join(tmp, f"{name}_features.npy")) if not r1.returncode + r2.returncode else None)
    err = relative(feats[0], feats[1])
    report(err <= 1e-6, "producer nhwc_input: extract's features equal the plain export's on real photos",
           f"relative {err:.3g} (limit 1e-06)")


def main():
    onnxtl = sys.argv[1]
    os.makedirs(MODELS, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ml_tail(onnxtl, tmp)
        dynamo_pool(onnxtl, tmp)
        ir3_inputs(onnxtl, tmp)
        opset7_caffe(onnxtl, tmp)
        custom_vision(onnxtl, tmp)
        opset6(onnxtl, tmp)
        nhwc_input(onnxtl, tmp)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

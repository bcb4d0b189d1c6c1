#!/usr/bin/python3
"""--precision bf16 and int8 on the CPU, on real photos.

bf16: ResNet50's features against fp32's (cosine similarity at least 0.999 for
every photo), and a head fitted on fp32 features predicting every test photo's
class alike when run in bf16.  On a CPU without AVX512_BF16 or AMX, the
one-line refusal naming them is checked.

int8: scales calibrated on the training photos; ResNet50's features at cosine
similarity 0.99 or more to fp32's for every photo, and a head fitted on them
predicting at least 99% of the test photos' classes as fp32 does, with the
scales carried from the features file into the model.  A resume keeps the
scales it began with; shards calibrate alike and merge.  Every oneDNN ISA
this CPU has (AVX2, AVX2-VNNI, AVX-512, VNNI, AMX) is run, fp32 and int8,
by capping oneDNN with ONEDNN_MAX_CPU_ISA; those it lacks are listed as SKIP.

Features of other arithmetic are never resumed or merged into fp32 ones.

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
from extract_tests import failed_count, kill_after_rows, model, report, same_file, subset  # noqa: E402


def sh(*args, env=None):
    return subprocess.run(args, capture_output=True, text=True, env=env)


def features(onnxtl, mdl, data, out, *extra, env=None):
    r = sh(onnxtl, "extract", mdl, data, "-o", out, "--quiet", *extra, env=env)
    if r.returncode:
        return None, r.stderr.strip()
    sh(onnxtl, "features", out, "--npy", out[:-4])
    return np.load(out[:-4] + "_features.npy"), ""


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def int8_ranges(onnxtl, path):
    r = sh(onnxtl, "features", path, "--json")
    return json.loads(r.stdout).get("int8_ranges") if r.returncode == 0 else None


def predictions(onnxtl, mdl, folder, *extra):
    r = sh(onnxtl, "run", mdl, folder, "--json", *extra)
    return {p["path"]: p["predictions"][0]["class"] for p in map(json.loads, r.stdout.splitlines())}


def resnet50_against_fp32(onnxtl, mdl, data, d, precision, bound, *extra):
    """ResNet50's features of the photos in fp32 and in precision (written to fp32.bin and PRECISION.bin):
    whether each photo's pair is at cosine similarity `bound` or more."""
    fp32, err32 = features(onnxtl, mdl, data, os.path.join(d, "fp32.bin"))
    low, err = features(onnxtl, mdl, data, os.path.join(d, f"{precision}.bin"), "--precision", precision, *extra)
    if fp32 is None or low is None:
        report(False, f"resnet50 features in fp32 and in {precision}", err32 + err)
        return False
    cos = cosines(fp32, low)
    report(cos.min() >= bound, f"resnet50 features with {precision} convolutions: cosine similarity to fp32's at "
           f"least {bound} for every photo", f"{len(cos)} photos, min {cos.min():.6f}, mean {cos.mean():.6f}")
    return True


def test_bf16(onnxtl, shared, d):
    mdl = model("resnet50")
    data = subset(shared, d, 20, 20)
    if not resnet50_against_fp32(onnxtl, mdl, data, d, "bf16", 0.999):
        return
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


def test_int8(onnxtl, shared, d):
    import onnx
    mdl = model("resnet50")
    data = subset(shared, d, 20, 20)
    if not resnet50_against_fp32(onnxtl, mdl, data, d, "int8", 0.99, "--calibrate", "40"):
        return
    ranges = int8_ranges(onnxtl, os.path.join(d, "int8.bin")) or ""
    lines = [line.split("\t") for line in ranges.splitlines()]
    g = onnx.load(mdl).graph
    tensors = {g.input[0].name} | {o for n in g.node for o in n.output}
    convs = {n.input[0] for n in g.node if n.op_type == "Conv"}
    # Each residual Add of two Conv outputs has one of them recorded: the
    # addend the other Conv sums in.  Which of the two depends on the order
    # the loader schedules the branches in, so either is accepted.
    conv_outs = {o for n in g.node if n.op_type == "Conv" for o in n.output}
    pairs = [set(n.input) for n in g.node if n.op_type == "Add" and set(n.input) <= conv_outs]
    names = {f[2] for f in lines}
    extra = names - convs
    report(all(len(f) == 3 and float(f[0]) <= float(f[1]) and f[2] in tensors for f in lines) and
           convs <= names and len(lines) == len(names) and
           all(len(p & names) == 1 for p in pairs if not p & convs) and
           extra <= set().union(set(), *pairs),
           "the features file records the calibrated range of the model's convolution inputs and residuals",
           f"{len(lines)} tensors for {len(convs)} distinct convolution inputs and {len(extra)} residuals of "
           f"{len(pairs)} Adds of two convolutions")
    head = os.path.join(d, "model8.onnx")
    r = sh(onnxtl, "fit-head", os.path.join(d, "int8.bin"), "-o", head, "--epochs", "5", "--lr", "1e-3", "--quiet")
    props = {p.key: p.value for p in onnx.load(head).metadata_props} if r.returncode == 0 else {}
    floats = r.returncode == 0 and all(t.data_type == onnx.TensorProto.FLOAT for t in onnx.load(head).graph.initializer)
    report(props.get("onnxtl.int8_ranges") == ranges and floats, "fit-head copies the int8 scales into its model's "
           "metadata and the model stays float", r.stderr.strip())
    ours = predictions(onnxtl, head, os.path.join(data, "test"), "--precision", "int8")
    ref = predictions(onnxtl, head, os.path.join(data, "test"))
    same = sum(ours.get(p) == c for p, c in ref.items())
    report(ref and len(ours) == len(ref) and same >= 0.99 * len(ref), "the head fitted on int8 features: run in int8 "
           "predicts at least 99% of the test photos' classes as fp32 does", f"{same} of {len(ref)} photos")
    r = sh(onnxtl, "run", mdl, os.path.join(data, "test", "cat"), "--precision", "int8")
    report(r.returncode == 1 and "fit-head stores them" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
           "run --precision int8 on a model without scales is refused in one line saying where they come from",
           r.stderr.strip())
    for what, text, expect in (("ranges made for another model", "0\t1\tinput\n", "made for another model"),
                               ("a range beyond 1e30", ranges + "0\t1e31\tinput\n", "at most 1e30"),
                               ("a malformed range line", "0 1 input\n", "not 'MIN<tab>MAX<tab>NAME'")):
        m = onnx.load(head)
        next(p for p in m.metadata_props if p.key == "onnxtl.int8_ranges").value = text
        bad = os.path.join(d, "bad_ranges.onnx")
        onnx.save(m, bad)
        r = sh(onnxtl, "run", bad, os.path.join(data, "test", "cat"), "--precision", "int8")
        report(r.returncode == 1 and expect in r.stderr and len(r.stderr.strip().splitlines()) == 1,
               f"a model whose int8 scales hold {what} is refused in one line", r.stderr.strip()[:200])
    r = sh(onnxtl, "extract", mdl, data, "-o", os.path.join(d, "x.bin"), "--calibrate", "8")
    report(r.returncode == 2, "--calibrate without --precision int8 is a usage error", r.stderr.strip()[:160])
    r = sh(onnxtl, "merge", os.path.join(d, "mixed8.bin"), os.path.join(d, "fp32.bin"), os.path.join(d, "int8.bin"))
    report(r.returncode == 1, "merge refuses to mix features computed in fp32 and in int8", r.stderr.strip())
    r = sh(onnxtl, "extract", mdl, data, "-o", os.path.join(d, "fp32.bin"), "--precision", "int8")
    report(r.returncode == 1 and "not made by this extraction" in r.stderr and "calibrat" not in r.stderr,
           "extract --precision int8 onto an fp32 features file is refused before any calibration",
           r.stderr.strip()[-200:])


def test_int8_resume_and_shards(onnxtl, shared, d):
    """The scales are fixed when an extraction begins: a resume asked for another calibration size keeps them, and
    ends byte for byte as an uninterrupted run; shards pick the same calibration sample, so they merge."""
    mdl = model()
    data = subset(shared, os.path.join(d, "resume"), 40, 10)
    ref = os.path.join(d, "ref8.bin")
    q8 = ["--precision", "int8", "--batch", "4", "--quiet"]
    r = sh(onnxtl, "extract", mdl, data, "-o", ref, "--calibrate", "20", *q8)
    out = os.path.join(d, "resumed8.bin")
    cmd = [onnxtl, "extract", mdl, data, "-o", out, "--calibrate", "20", *q8]
    killed = kill_after_rows(cmd, out + ".partial", 12, 512 * 4 + 16)
    r = sh(*cmd[:6], "--calibrate", "3", *q8)
    report(killed and r.returncode == 0 and same_file(out, ref) and int8_ranges(onnxtl, out) == int8_ranges(onnxtl, ref),
           "an int8 extraction killed mid-run and resumed with another --calibrate keeps its scales and equals an "
           "uninterrupted run byte for byte", r.stderr.strip()[-200:])
    shards = [os.path.join(d, f"shard8.{k}.bin") for k in (1, 2)]
    for k, path in enumerate(shards, 1):
        sh(onnxtl, "extract", mdl, data, "-o", path, "--calibrate", "20", "--shard", f"{k}/2", *q8)
    merged = os.path.join(d, "merged8.bin")
    r = sh(onnxtl, "merge", merged, *shards)
    a, b = (sh(onnxtl, "features", f, "--npy", f[:-4]) and np.load(f[:-4] + "_features.npy") for f in (merged, ref))
    report(r.returncode == 0 and np.array_equal(a, b), "int8 shards calibrate alike, merge, and equal an unsharded run",
           r.stderr.strip())


# oneDNN's ISA caps, the /proc/cpuinfo flags each needs, and the name `info` then reports.
ISAS = [("AVX2", {"avx2", "fma"}, "avx2"), ("AVX2_VNNI", {"avx2", "avx_vnni"}, "avx2_vnni"),
        ("AVX512_CORE", {"avx512f", "avx512bw", "avx512vl", "avx512dq"}, "avx512_core"),
        ("AVX512_CORE_VNNI", {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"}, "avx512_core_vnni"),
        ("AVX512_CORE_AMX", {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"},
         "avx512_core_amx")]


def test_isa_paths(onnxtl, shared, d):
    """fp32 at each ISA matches the native fp32 features within 1e-4; int8 at each stays at cosine 0.99."""
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    mdl = model()
    data = subset(shared, os.path.join(d, "isa"), 6, 4)
    native, err = features(onnxtl, mdl, data, os.path.join(d, "isa_native.bin"))
    for cap, needs, name in ISAS:
        if not needs <= flags:
            print(f"SKIP oneDNN {name} path: this CPU lacks {', '.join(sorted(needs - flags))}")
            continue
        env = dict(os.environ, ONEDNN_MAX_CPU_ISA=cap)
        isa = json.loads(sh(onnxtl, "info", mdl, "--device", "cpu", "--json", env=env).stdout)["placement"]["isa"]
        f32, e32 = features(onnxtl, mdl, data, os.path.join(d, f"isa_{name}.bin"), env=env)
        q8, e8 = features(onnxtl, mdl, data, os.path.join(d, f"isa_{name}8.bin"), "--precision", "int8", env=env)
        if native is None or f32 is None or q8 is None:
            report(False, f"resnet18 features on oneDNN's {name} kernels", err + e32 + e8)
            continue
        rel = float(np.abs(f32 - native).max() / np.abs(native).max())
        cos = float(cosines(f32, q8).min())
        report(isa == name and rel <= 1e-4 and cos >= 0.99, f"oneDNN's {name} kernels: fp32 features within 1e-4 of "
               "the native ISA's, int8 at cosine similarity 0.99 or more to them",
               f"info says {isa}, fp32 relative difference {rel:.2e}, int8 min cosine {cos:.6f}")


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


def residual_forms_model(path):
    """A graph whose int8 residual sums take every form: a residual held fp32
    (GlobalAveragePool reads it too) quantised under an int8 sum; an s8
    residual (a Conv without ReLU, as ResNet's downsample) under a u8 ReLU sum;
    a u8 residual under a u8 sum; and an int8 residual taken back to fp32 for
    a sum that GlobalAveragePool reads, in the residual's own dying buffer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(11)
    nodes, inits = [], []

    def conv(x, cin, cout, k, stride=1, relu=True):
        w, b, y = f"w{len(inits)}", f"b{len(inits)}", f"conv{len(nodes)}"
        inits.append(numpy_helper.from_array((rng.standard_normal((cout, cin, k, k)) *
                                              np.sqrt(2 / (cin * k * k))).astype(np.float32), w))
        inits.append(numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), b))
        nodes.append(helper.make_node("Conv", [x, w, b], [y], kernel_shape=[k, k], pads=[k // 2] * 4,
                                      strides=[stride, stride]))
        return relu_of(y) if relu else y

    def relu_of(x):
        nodes.append(helper.make_node("Relu", [x], [x + "_relu"]))
        return x + "_relu"

    def add(a, b):
        nodes.append(helper.make_node("Add", [a, b], [f"add{len(nodes)}"]))
        return relu_of(f"add{len(nodes) - 1}")

    def pooled(x):
        nodes.append(helper.make_node("GlobalAveragePool", [x], [x + "_gap"]))
        nodes.append(helper.make_node("Flatten", [x + "_gap"], [x + "_flat"]))
        return x + "_flat"

    x = conv(conv("input", 3, 16, 3, stride=4), 16, 16, 1)
    quantised = add(conv(x, 16, 16, 3, relu=False), x)           # x, fp32, quantised into the sum
    down = conv(quantised, 16, 16, 1, relu=False)                # s8, read only as a residual
    mixed = add(conv(conv(quantised, 16, 16, 1), 16, 16, 3, relu=False), down)
    same = add(conv(conv(mixed, 16, 16, 1), 16, 16, 3, relu=False), mixed)
    back = add(conv(conv(same, 16, 16, 1), 16, 16, 3, relu=False), same)  # fp32 (GlobalAveragePool reads it), in place
    nodes.append(helper.make_node("Concat", [pooled(back), pooled(x)], ["features"], axis=1))
    g = helper.make_graph(nodes, "residual_forms", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                  [None, 3, 224, 224])],
                          [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 32])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


def test_int8_residual_forms(onnxtl, shared, d):
    mdl = os.path.join(d, "residual_forms.onnx")
    residual_forms_model(mdl)
    data = subset(shared, d, 16, 16)
    fp32, err32 = features(onnxtl, mdl, data, os.path.join(d, "fp32.bin"), "--cut", "features")
    low, err = features(onnxtl, mdl, data, os.path.join(d, "int8.bin"), "--cut", "features", "--precision", "int8")
    if fp32 is None or low is None:
        report(False, "int8 residual sums of every form", err32 + err)
        return
    cos = cosines(fp32, low)
    report(cos.min() >= 0.99, "int8 residual sums of every form (fp32 residual quantised, s8 under u8, u8 under "
           "u8, int8 taken back to fp32 in its own buffer): features at cosine similarity 0.99 or more to fp32's",
           f"{len(cos)} photos, min {cos.min():.6f}, mean {cos.mean():.6f}")


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
        if not os.path.isdir(os.path.join(shared, "dogscats")):
            print(f"SKIP int8: {shared}/dogscats is missing")
        else:
            for test in (test_int8, test_int8_residual_forms, test_int8_resume_and_shards, test_isa_paths):
                os.makedirs(os.path.join(d, test.__name__))
                test(onnxtl, shared, os.path.join(d, test.__name__))
    return 1 if failed_count() else 0


if __name__ == "__main__":
    sys.exit(main())

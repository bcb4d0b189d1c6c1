#!/usr/bin/python3
"""The zero-copy loader: weights used where the file holds them, external
data mapped, aligned or not, and the model file never written.

Every output is compared with the torch reference that parity.py uses and
with the same model stored inline.

usage: loader_tests.py ONNXTL
"""
import glob
import hashlib
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from extract_tests import MODELS, failed_count, model, report  # noqa: E402


def infer(onnxtl, path, inp, out):
    return subprocess.run([onnxtl, "infer", path, "--input", f"input={inp}", "--output", out],
                          capture_output=True, text=True)


def against_reference(onnxtl, path, arch, d, label):
    """Runs path on the arch's reference input; returns the output, or None on failure."""
    out = os.path.join(d, "out.npy")
    r = infer(onnxtl, path, os.path.join(MODELS, f"{arch}_input.npy"), out)
    if r.returncode != 0:
        report(False, label, r.stderr.strip())
        return None
    r = subprocess.run([sys.executable, os.path.join(HERE, "compare_npy.py"), out,
                        os.path.join(MODELS, f"{arch}_ref.npy"), "--label", label], capture_output=True, text=True)
    print(r.stdout.strip(), flush=True)
    return np.load(out) if r.returncode == 0 else None


def save_external(src, d, one_file):
    m = onnx.load(src)
    path = os.path.join(d, "model.onnx")
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=one_file,
                    location="weights.bin", size_threshold=0)
    return path


def save_external_misaligned(src, d):
    """Each tensor one byte past a 4-byte boundary, so that none can be used in place."""
    m = onnx.load(src)
    with open(os.path.join(d, "odd.bin"), "wb") as f:
        for t in m.graph.initializer:
            if not t.HasField("raw_data"):
                continue
            f.write(b"\0" * (1 + (-(f.tell() + 1)) % 4))
            offset = f.tell()
            f.write(t.raw_data)
            t.ClearField("raw_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            for k, v in (("location", "odd.bin"), ("offset", str(offset)), ("length", str(f.tell() - offset))):
                e = t.external_data.add()
                e.key, e.value = k, v
    path = os.path.join(d, "model.onnx")
    onnx.save(m, path)
    return path


def test_external(onnxtl, d):
    arch = "resnet18"
    inline = against_reference(onnxtl, model(arch), arch, d, f"{arch} stored inline")
    cases = (("in one external file", lambda e: save_external(model(arch), e, True)),
             ("in a file per tensor", lambda e: save_external(model(arch), e, False)),
             ("in one external file, every tensor misaligned", lambda e: save_external_misaligned(model(arch), e)))
    for what, save in cases:
        e = tempfile.mkdtemp(dir=d)
        got = against_reference(onnxtl, save(e), arch, e, f"{arch} with its weights {what}")
        same = got is not None and inline is not None and np.array_equal(got, inline)
        report(same, f"{arch} with its weights {what} gives the inline model's output bit for bit")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def test_file_never_written(onnxtl, d):
    """BatchNorm folding rewrites the convolutions' weights where they lie: in a private mapping."""
    arch = "resnet18"
    path = model(arch, "nofold")
    before = sha256(path)
    got = against_reference(onnxtl, path, arch, d, f"{arch} with BatchNorm folded at load time")
    report(got is not None and sha256(path) == before,
           f"{arch}: folding BatchNorm into weights used in place leaves the model file as it was", f"sha256 {before[:16]}")


def peak_mib(args):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024


def test_peak_memory(onnxtl):
    path = model("vgg16")
    size = os.path.getsize(path) / 2**20
    code, peak = peak_mib([onnxtl, "info", path])
    # A loader that copies holds the weights at least once besides the file's pages (twice before this loader).
    report(code == 0 and peak < size / 2, "info on vgg16 peaks under half the model file's size: its weights "
           "are not copied where they are aligned", f"file {size:.0f} MiB, peak {peak:.0f} MiB")


def nested_tensors_model(path):
    """Tensors with raw_data wherever ONNX nests them: initializers, a sparse initializer, a Constant, If
    branches (subgraph initializers and attributes), a function's node, and training_info (left as it is)."""
    from onnx import helper, numpy_helper, TensorProto
    rng = np.random.default_rng(0)
    raw = lambda name, shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)  # noqa: E731

    def branch(name):
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [4])
        const = helper.make_node("Constant", [], [f"{name}_c"], value=raw(f"{name}_v", [4]))
        add = helper.make_node("Add", [f"{name}_c", f"{name}_w"], [f"{name}_out"])
        return helper.make_graph([const, add], name, [], [out], initializer=[raw(f"{name}_w", [4])])

    sparse = helper.make_sparse_tensor(raw("sv", [3]), numpy_helper.from_array(np.array([0, 2, 5], np.int64), "si"), [8])
    cond = helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True), "cv"))
    if_node = helper.make_node("If", ["cond"], ["y"], then_branch=branch("then"), else_branch=branch("else"))
    big = helper.make_node("Constant", [], ["t"], value=raw("big", [64, 64]))
    listed = helper.make_node("Identity", ["t"], ["u"], tensors=[raw("l1", [2, 3]), raw("l2", [5])])  # a TENSORS attribute
    graph = helper.make_graph([cond, if_node, big, listed], "nested", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                              initializer=[raw("w", [16, 16])], sparse_initializer=[sparse])
    fn = helper.make_function("local", "Scaled", ["x"], ["z"],
                              [helper.make_node("Constant", [], ["k"], value=raw("fk", [4])),
                               helper.make_node("Mul", ["x", "k"], ["z"])], [helper.make_opsetid("", 17)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                          functions=[fn])
    m.training_info.add().initialization.CopyFrom(helper.make_graph([], "init", [], [], initializer=[raw("ti", [8])]))
    onnx.save(m, path)


def test_parse_is_faithful(onnxtl, d):
    """The loader's parse, packed again, is the same message: every nested payload found its way back."""
    repack = os.path.join(os.path.dirname(onnxtl), "test_repack")
    cases = [("a model with tensors nested everywhere ONNX nests them", os.path.join(d, "nested.onnx"))]
    nested_tensors_model(cases[0][1])
    node_tests = os.path.join(os.path.dirname(HERE), "..", "shared", "data", "onnx-node")
    shared = sorted(glob.glob(os.path.join(node_tests, "*", "model.onnx")))
    for label, models in ((cases[0][0], [cases[0][1]]), (f"the {len(shared)} ONNX node-test models", shared),
                          ("the torchvision exports", [model("resnet18"), model("resnet18", "nofold")])):
        differ = []
        for path in models:
            out = os.path.join(d, "repacked.onnx")
            r = subprocess.run([repack, path, out], capture_output=True, text=True)
            ours = onnx.ModelProto()
            if r.returncode == 0:
                ours.ParseFromString(open(out, "rb").read())
            theirs = onnx.ModelProto()
            theirs.ParseFromString(open(path, "rb").read())
            if r.returncode or ours != theirs:
                differ.append(os.path.basename(os.path.dirname(path)) or path)
        if models:
            report(not differ, f"the loader's parse of {label}, packed again, equals the file's message (python-protobuf)",
                   f"{len(models)} models; differing: {differ[:4]}")


def run_model(onnxtl, path, d, inputs, outputs):
    """infer's outputs, or None."""
    args = [onnxtl, "infer", path]
    for name, x in inputs.items():
        np.save(os.path.join(d, f"in_{name}.npy"), x)
        args += ["--input", f"{name}={os.path.join(d, f'in_{name}.npy')}"]
    for name in outputs:
        args += ["--output", f"{name}={os.path.join(d, f'out_{name}.npy')}"]
    r = subprocess.run(args, capture_output=True, text=True)
    return [np.load(os.path.join(d, f"out_{n}.npy")) for n in outputs] if r.returncode == 0 else None


def test_skeleton_fallbacks(onnxtl, d):
    """Files the skeleton does not rewrite are parsed the copying way, and what the loader then uses in place
    must be bytes it keeps; weights that share external bytes stay apart when a pass rewrites one."""
    from onnx import helper, numpy_helper, TensorProto
    x = np.arange(64, dtype=np.float32)
    w = numpy_helper.from_array(np.full(64, 1.5, np.float32), "w")
    add = helper.make_model(helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "add",
                                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
                                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])], [w]),
                            opset_imports=[helper.make_opsetid("", 13)])
    odd = os.path.join(d, "odd.onnx")
    # an unknown field whose tag does not fit 32 bits: protobuf-c accepts it, the skeleton does not
    open(odd, "wb").write(add.SerializeToString() + bytes([0xFA, 0xFF, 0xFF, 0xFF, 0x7F, 0x01, 0x78]))
    got = run_model(onnxtl, odd, d, {"x": x}, ["y"])
    report(got is not None and np.array_equal(got[0], x + 1.5),
           "a model the skeleton cannot read (an unknown field with a tag past 32 bits) loads the copying way and "
           "computes x + w", "" if got is None else f"max |diff| {np.abs(got[0] - x - 1.5).max()}")

    # Constant's value given twice: protobuf merges the two tensors, as python-protobuf does
    t1 = numpy_helper.from_array(np.full(16, 2.0, np.float32))
    t2 = TensorProto(name="c")
    node = helper.make_node("Constant", [], ["c"], value=t1)
    plus = helper.make_node("Add", ["x", "c"], ["y"])
    io16 = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [16])  # noqa: E731
    twice = helper.make_model(helper.make_graph([node, plus], "twice", [io16("x")], [io16("y")]),
                              opset_imports=[helper.make_opsetid("", 13)])
    def varint(v):
        out = b""
        while v >= 0x80:
            out += bytes([v & 0x7f | 0x80])
            v >>= 7
        return out + bytes([v])

    def field(number, payload):  # length-delimited
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    def without(message, name):
        copy = type(message)()
        copy.CopyFrom(message)
        copy.ClearField(name)
        return copy.SerializeToString()
    attr = node.attribute[0].SerializeToString() + field(5, t2.SerializeToString())
    graph = without(twice.graph, "node") + field(1, without(node, "attribute") + field(5, attr)) + \
        field(1, plus.SerializeToString())
    path = os.path.join(d, "twice.onnx")
    open(path, "wb").write(without(twice, "graph") + field(7, graph))
    ref = numpy_helper.to_array(onnx.load(path).graph.node[0].attribute[0].t)
    got = run_model(onnxtl, path, d, {"x": x[:16]}, ["y"])
    report(got is not None and np.array_equal(got[0], x[:16] + ref),
           "a Constant whose value tensor is given twice (merged by protobuf) holds what python-protobuf reads", "")

    # two Conv weights naming the same external bytes; BatchNorm folds into the first
    with open(os.path.join(d, "w.bin"), "wb") as f:
        f.write(np.float32(1.0).tobytes())

    def shared_weight(name):
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[1, 1, 1, 1], data_location=TensorProto.EXTERNAL)
        for k, v in (("location", "w.bin"), ("offset", "0"), ("length", "4")):
            e = t.external_data.add()
            e.key, e.value = k, v
        return t
    consts = [numpy_helper.from_array(np.array([v], np.float32), n) for n, v in (("sc", 3.0), ("bb", 0.0), ("mu", 0.0), ("va", 1.0))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"]), helper.make_node("BatchNormalization", ["c1", "sc", "bb", "mu", "va"], ["y1"]),
             helper.make_node("Conv", ["x", "w2"], ["y2"])]
    io = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 2, 2])  # noqa: E731
    alias = helper.make_model(helper.make_graph(nodes, "alias", [io("x")], [io("y1"), io("y2")],
                                                [shared_weight("w1"), shared_weight("w2")] + consts),
                              opset_imports=[helper.make_opsetid("", 13)])
    path = os.path.join(d, "alias.onnx")
    onnx.save(alias, path)
    x4 = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2) + 1
    got = run_model(onnxtl, path, d, {"x": x4}, ["y1", "y2"])
    bn = 3.0 / np.sqrt(1.0 + 1e-5)
    report(got is not None and np.allclose(got[0], bn * x4, rtol=1e-6) and np.array_equal(got[1], x4),
           "two Conv weights naming the same external bytes: folding BatchNorm into one leaves the other as the file has it",
           "" if got is None else f"y2 {got[1].ravel()} for x {x4.ravel()}")


def main():
    onnxtl = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        test_parse_is_faithful(onnxtl, d)
        test_skeleton_fallbacks(onnxtl, d)
        test_external(onnxtl, d)
        test_file_never_written(onnxtl, d)
        test_peak_memory(onnxtl)
    sys.exit(1 if failed_count() else 0)


if __name__ == "__main__":
    main()

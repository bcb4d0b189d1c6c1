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


def main():
    onnxtl = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        test_parse_is_faithful(onnxtl, d)
        test_external(onnxtl, d)
        test_file_never_written(onnxtl, d)
        test_peak_memory(onnxtl)
    sys.exit(1 if failed_count() else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Bad-model corpus: each broken file must give exit status 1 and a single
stderr line naming the file and the problem (and the node, where there is
one) -- never a crash, a hang or a sanitizer report.

usage: bad_models.py ONNXTL [--workdir DIR]
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper


def base_graph(nodes=None, inits=None, outputs=("Y",)):
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "W")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "B")
    nodes = nodes if nodes is not None else [
        helper.make_node("Conv", ["X", "W", "B"], ["H"], name="conv_1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["H"], ["Y"], name="relu_1")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        inits if inits is not None else [w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def save(model, path):
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def raw_tensor(name, dims, raw):
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims)
    t.raw_data = raw
    return t


def external_tensor(name, location, offset=0, length=None):
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4, 3, 3, 3])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)),
                 ("length", str(length if length is not None else 4 * 108))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def bias():
    return numpy_helper.from_array(np.zeros(4, np.float32), "B")


def make_corpus(d):
    """Writes every case; returns (path, [expected message fragments])."""
    cases = []

    def case(name, expect, writer):
        folder = os.path.join(d, name)
        os.makedirs(folder)
        path = os.path.join(folder, "model.onnx")
        writer(path, folder)
        cases.append((name, path, expect))

    good = base_graph().SerializeToString()
    rng = random.Random(0)
    case("empty", ["empty"], lambda p, f: open(p, "wb").close())
    case("truncated", ["not a valid ONNX model"], lambda p, f: open(p, "wb").write(good[: len(good) // 2]))
    case("random_bytes", ["not"], lambda p, f: open(p, "wb").write(bytes(rng.randrange(256) for _ in range(4096))))
    case("git_lfs_pointer", ["Git LFS pointer"], lambda p, f: open(p, "w").write(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 102502400\n"))
    case("text_proto", ["text-format"], lambda p, f: open(p, "w").write(text_format.MessageToString(base_graph())))
    case("missing_initializer", ["conv_1", "'W' is not defined"],
         lambda p, f: save(base_graph(inits=[bias()]), p))
    case("raw_size_mismatch", ["'W'", "raw_data has 100 bytes"],
         lambda p, f: save(base_graph(inits=[raw_tensor("W", [4, 3, 3, 3], b"\0" * 100), bias()]), p))
    case("dims_overflow", ["'W'", "overflow"],
         lambda p, f: save(base_graph(inits=[raw_tensor("W", [1 << 40, 1 << 40, 8], b""), bias()]), p))
    case("negative_dims", ["'W'", "negative dimension"],
         lambda p, f: save(base_graph(inits=[raw_tensor("W", [-4, 3, 3, 3], b""), bias()]), p))
    case("cycle", ["cycle", "relu_"], lambda p, f: save(base_graph(nodes=[
        helper.make_node("Add", ["X", "B2"], ["A"], name="relu_a"),
        helper.make_node("Relu", ["A"], ["B2"], name="relu_b"),
        helper.make_node("Relu", ["A"], ["Y"], name="relu_c")]), p))
    case("unsupported_op", ["unsupported op 'LSTM'", "lstm_1"], lambda p, f: save(base_graph(nodes=[
        helper.make_node("LSTM", ["X", "W", "B"], ["Y"], name="lstm_1")]), p))
    case("undefined_output", ["'Z' is not produced"], lambda p, f: save(base_graph(outputs=("Y", "Z")), p))
    # Hostile sizes, refused before anything is allocated for them.
    case("constant_past_its_data", ["'huge'", "raw_data has 4 bytes"], lambda p, f: save(base_graph(nodes=[
        helper.make_node("Constant", [], ["huge"], name="huge_const",
                         value=raw_tensor("huge", [1 << 20, 1 << 20], b"\0" * 4)),
        helper.make_node("Add", ["X", "huge"], ["Y"], name="add_1")]), p))
    case("expand_past_memory", ["expand_1", "more than this machine's", "MiB of memory"], lambda p, f: save(base_graph(
        nodes=[helper.make_node("Expand", ["X", "shape"], ["Y"], name="expand_1")],
        inits=[numpy_helper.from_array(np.array([1 << 28, 3, 8, 8], np.int64), "shape")]), p))
    case("required_input_empty", ["Concat", "input 0 is required"], lambda p, f: save(base_graph(nodes=[
        helper.make_node("Concat", ["", "X"], ["Y"], name="concat_1", axis=1)]), p))

    def outside(p, f, location):
        with open(os.path.join(d, "outside.bin"), "wb") as o:
            o.write(b"\0" * 432)
        save(base_graph(inits=[external_tensor("W", location), bias()]), p)

    case("external_parent_dir", ["'W'", "inside the model's folder"], lambda p, f: outside(p, f, "../outside.bin"))
    case("external_absolute", ["'W'", "inside the model's folder"], lambda p, f: outside(p, f, os.path.join(d, "outside.bin")))

    def symlinked(p, f):
        outside(p, f, "link.bin")
        os.symlink(os.path.join(d, "outside.bin"), os.path.join(f, "link.bin"))

    case("external_symlink_out", ["'W'", "outside the model's folder"], symlinked)

    def past_end(p, f):
        with open(os.path.join(f, "w.bin"), "wb") as o:
            o.write(b"\0" * 500)
        save(base_graph(inits=[external_tensor("W", "w.bin", offset=100), bias()]), p)

    case("external_past_end", ["'W'", "past the end"], past_end)
    case("external_missing_file", ["'W'", "No such file"],
         lambda p, f: save(base_graph(inits=[external_tensor("W", "absent.bin"), bias()]), p))
    def nested_ifs(p, f, levels=1000):
        """If inside If's then_branch, 1000 deep: protobuf-c's recursion would go as deep as the file says."""
        inner = helper.make_graph([], "g", [], [])
        for _ in range(levels):
            inner = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=inner)], "g", [], [])
        save(helper.make_model(inner, opset_imports=[helper.make_opsetid("", 13)]), p)
    case("nested_too_deep", ["nest deeper than 100 levels"], nested_ifs)
    case("external_offset_overflow", ["'W'", "past the end"], lambda p, f: (
        open(os.path.join(f, "w.bin"), "wb").write(b"\0" * 432),
        save(base_graph(inits=[external_tensor("W", "w.bin", offset=(1 << 64) - 8), bias()]), p)))
    return cases


def check(onnxtl, name, path, expect):
    try:
        r = subprocess.run([onnxtl, "info", path], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return f"FAIL bad model {name}: timed out"
    lines = r.stderr.strip().splitlines()
    problems = []
    if r.returncode != 1:
        problems.append(f"exit status {r.returncode}, expected 1")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines, expected 1")
    msg = r.stderr.strip()
    for want in [path] + expect:
        if want not in msg:
            problems.append(f"message lacks '{want}'")
    if "Sanitizer" in msg or "runtime error" in msg:
        problems.append("sanitizer report")
    status = "FAIL" if problems else "PASS"
    detail = "; ".join(problems) + " -- " if problems else ""
    return f"{status} bad model {name}: {detail}{lines[0] if lines else '(no message)'}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnxtl")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="onnxtl-bad-")
    try:
        failed = 0
        for name, path, expect in make_corpus(d):
            line = check(a.onnxtl, name, path, expect)
            failed += line.startswith("FAIL")
            print(line, flush=True)
    finally:
        shutil.rmtree(d)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

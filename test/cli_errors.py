#!/usr/bin/python3
"""Wrong arguments and bad inputs on the command line: a clear one-line error
naming the file or option, exit status 2 for usage errors and 1 for bad data,
never a crash.

usage: cli_errors.py ONNXTL
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper


def tiny_model(path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def main():
    onnxtl = sys.argv[1]
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "tiny.onnx")
        tiny_model(model)
        good = os.path.join(d, "x.npy")
        np.save(good, np.array([[-1, 2, -3, 4]], np.float32))
        trunc = os.path.join(d, "trunc.npy")
        open(trunc, "wb").write(open(good, "rb").read()[:-5])
        wrong_rank = os.path.join(d, "rank.npy")
        np.save(wrong_rank, np.zeros((2, 2, 2), np.float32))
        wrong_type = os.path.join(d, "type.npy")
        np.save(wrong_type, np.zeros((1, 4), np.float64))
        out = os.path.join(d, "y.npy")
        cases = [
            ("no arguments", [], 2, ["usage"]),
            ("unknown command", ["frobnicate"], 2, ["unknown command 'frobnicate'"]),
            ("info without model", ["info"], 2, ["MODEL"]),
            ("info missing file", ["info", os.path.join(d, "absent.onnx")], 1, ["absent.onnx", "No such file"]),
            ("infer unknown option", ["infer", model, "--input", f"x={good}", "--frob"], 2, ["unknown option '--frob'"]),
            ("infer option without value", ["infer", model, "--input"], 2, ["--input needs a value"]),
            ("infer without inputs", ["infer", model], 2, ["--input"]),
            ("infer bad thread count", ["infer", model, "--input", f"x={good}", "--threads", "zero"], 2, ["--threads"]),
            ("infer truncated npy", ["infer", model, "--input", f"x={trunc}", "--output", out], 1, ["trunc.npy", "truncated"]),
            ("infer wrong rank", ["infer", model, "--input", f"x={wrong_rank}", "--output", out], 1, ["'x'", "rank 2"]),
            ("infer wrong type", ["infer", model, "--input", f"x={wrong_type}", "--output", out], 1, ["'x'", "float32"]),
            ("infer unknown input name", ["infer", model, "--input", f"q={good}", "--output", out], 1, ["'x' is not given"]),
            ("infer unknown output name", ["infer", model, "--input", f"x={good}", "--output", f"zz={out}"], 1, ["'zz'"]),
        ]
        for name, args, want_rc, fragments in cases:
            r = subprocess.run([onnxtl] + args, capture_output=True, text=True, timeout=60)
            problems = [] if r.returncode == want_rc else [f"exit {r.returncode}, expected {want_rc}"]
            problems += [f"lacks '{f}'" for f in fragments if f not in r.stderr]
            first = (r.stderr.strip().splitlines() or ["(no message)"])[0]
            print(f"{'FAIL' if problems else 'PASS'} cli {name}: {'; '.join(problems)} {first}")
            failed += bool(problems)
        r = subprocess.run([onnxtl, "infer", model, "--input", f"x={good}", "--output", out], capture_output=True, text=True)
        y = np.load(out) if r.returncode == 0 else None
        ok = y is not None and np.array_equal(y, np.maximum(np.load(good), 0))
        print(f"{'PASS' if ok else 'FAIL'} cli infer writes the model's output to .npy")
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""onnxtl's Winograd F(4x4, 3x3) on awkward shapes, against ONNX Runtime.

Each case is one 3x3 stride-1 convolution that the Winograd runs (64
channels or more, over 16 output tiles or more): output sizes that are not
multiples of the 4x4 tile, zero, asymmetric and two-pixel padding, no bias,
a fused ReLU, a fused residual (another tensor, and the convolution's own
input, which the sum must not overwrite while it is read), the fewest tiles
it takes, output channels that fill AVX2's vectors but not AVX-512's (80),
and batches whose tiles overflow one pass over the scratch (so the last
pass is partial).  Every
case runs on each kernel set the CPU has: AVX2, with oneDNN capped there
(ONEDNN_MAX_CPU_ISA, which caps onnxtl's kernels too), and AVX-512.
onnxtl's outputs must match ONNX Runtime 1.30's within 1e-4 * max|ref|, and
`info` must name the kernel set each run uses.  Sets the CPU lacks are
listed as SKIP.

usage: winograd_tests.py ONNXTL
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from layout_tests import infer_case, run_ort  # noqa: E402


def conv_model(path, n, c, oc, h, w, pads, bias=True, relu=False, residual=None, seed=0):
    """Conv3x3(x) [+ a skip tensor] [then Relu], x the input.  residual "other": the skip is a 1x1 Conv of the
    input, made first, so that the Add fuses into the 3x3 Conv; "own": the skip is the 3x3 Conv's own input,
    then itself a 1x1 Conv of the input (an activation, whose buffer the sum must not take over)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((oc, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32), "w")]
    nodes, x = [], "input"
    if residual:
        oh, ow = h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2
        assert (oh, ow) == (h, w) and (residual == "other" or c == oc), "the skip has the output's shape"
        inits.append(numpy_helper.from_array(rng.standard_normal((oc if residual == "other" else c, c, 1, 1))
                                             .astype(np.float32), "s"))
        nodes.append(helper.make_node("Conv", ["input", "s"], ["skip"]))
        x = "skip" if residual == "own" else x
    ins = [x, "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(oc).astype(np.float32), "b"))
        ins.append("b")
    nodes.append(helper.make_node("Conv", ins, ["y"], kernel_shape=[3, 3], pads=list(pads)))
    out = "y"
    if residual:
        nodes.append(helper.make_node("Add", ["y", "skip"], ["sum"]))
        out = "sum"
    if relu:
        nodes.append(helper.make_node("Relu", [out], ["out"]))
        out = "out"
    g = helper.make_graph(nodes, "winograd", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, c, h, w])],
                          [helper.make_empty_tensor_value_info(out)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    save(m, path)
    return out


# name, batch, channels in and out, height, width, pads (top, left, bottom, right), options
CASES = [
    ("13x11 output, edge tiles cut", 2, 64, 64, 13, 11, (1, 1, 1, 1), {}),
    ("no padding (8x8 output), no bias", 4, 96, 128, 10, 10, (0, 0, 0, 0), {"bias": False}),
    ("asymmetric padding", 4, 64, 80, 9, 12, (2, 0, 0, 1), {}),
    ("two-pixel padding, output larger than the input", 1, 64, 64, 12, 12, (2, 2, 2, 2), {}),
    ("fused ReLU", 4, 128, 64, 14, 14, (1, 1, 1, 1), {"relu": True}),
    ("fused residual Add, then ReLU", 2, 64, 64, 15, 15, (1, 1, 1, 1), {"relu": True, "residual": "other"}),
    ("the Conv's own input as the residual, over two passes", 2, 64, 64, 112, 112, (1, 1, 1, 1), {"residual": "own"}),
    ("16 tiles, one image", 1, 256, 256, 14, 14, (1, 1, 1, 1), {}),
    ("512 channels over 147 tiles: a partial second pass", 3, 512, 512, 28, 28, (1, 1, 1, 1), {}),
    ("64 channels over 1568 tiles: a partial second pass", 2, 64, 64, 112, 112, (1, 1, 1, 1), {"relu": True}),
]


def cpu_flags():
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


# The kernel sets: the oneDNN cap that selects each, and the CPU flags it needs.
KERNELS = [("avx2", "AVX2", {"avx2", "fma"}), ("avx512", "AVX512_CORE", {"avx512f", "avx512bw", "avx512vl", "avx512dq"})]


def main():
    onnxtl = sys.argv[1]
    flags = cpu_flags()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for i, (name, n, c, oc, h, w, pads, opts) in enumerate(CASES):
            model, x = os.path.join(tmp, f"case{i}.onnx"), os.path.join(tmp, f"x{i}.npy")
            out = conv_model(model, n, c, oc, h, w, pads, seed=i, **opts)
            np.save(x, np.random.default_rng(100 + i).standard_normal((n, c, h, w), dtype=np.float32))
            jobs.append((model, x, out, model + ".ref.npy", name))
        run_ort(tmp, jobs)
        for isa, cap, needs in KERNELS:
            if not needs <= flags:
                print(f"SKIP winograd {isa}: this CPU lacks {', '.join(sorted(needs - flags))}")
                continue
            env = dict(os.environ, ONEDNN_MAX_CPU_ISA=cap)
            info = subprocess.run([onnxtl, "info", jobs[0][0], "--device", "cpu", "--json"], capture_output=True,
                                  text=True, env=env)
            says = json.loads(info.stdout)["placement"]["winograd"] if info.returncode == 0 else info.stderr.strip()
            print(f"{'PASS' if says == isa else 'FAIL'} winograd {isa}: with oneDNN capped at {cap}, info says the "
                  f"Winograd kernels are {says}")
            failed += says != isa
            for model, x, y, ref, name in jobs:
                failed += not infer_case(onnxtl, model, x, y, ref, f"winograd {isa}: {name}", env=env)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Every op on every layout, against ONNX Runtime.

The CPU backend keeps 4-D activations channels-last after a convolution and
converts where a kernel needs ONNX order.  Each case here is a small graph
built with onnx.helper in which the op under test reads the outputs of
convolutions (so its inputs are stored channels-last) and, in a second
variant, feeds a convolution (so its output goes to a channels-last
consumer).  Every axis an op accepts is tried, negative ones included, and
every graph fusion (BatchNorm folding, Relu fusion, the residual Add,
broadcasting and out-of-order residuals that must stay unfused) has cases.
onnxtl's outputs must match ONNX Runtime 1.30 (optimisations off) within
1e-4 * max|ref|; integer outputs must be equal.

usage: layout_tests.py ONNXTL [--device cpu|cuda] [--only SUBSTRING] [--fallback OPS]
With --device cuda, nodes the CUDA backend does not run fall back to the CPU;
without a GPU the suite says so and skips.  --fallback sets
ONNXTL_FALLBACK_OPS, which places those ops on the CPU backend apart from the
rest, so that every case also crosses segment boundaries (host copies,
layouts converted at each end).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, C, H, W = 2, 3, 6, 5  # distinct sizes, so a mixed-up axis changes the result
TOL = 1e-4


class Graph:
    """A graph under construction: nodes, initializers and fresh names."""

    def __init__(self, opset):
        self.opset, self.nodes, self.inits, self.count = opset, [], [], 0
        self.rng = np.random.default_rng(7)

    def name(self, base):
        self.count += 1
        return f"{base}{self.count}"

    def const(self, value, dtype=np.float32):
        n = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), n))
        return n

    def node(self, op, inputs, outputs=1, **attrs):
        outs = [self.name(op.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(op), **attrs))
        return outs[0] if outputs == 1 else outs

    def conv(self, x, cin, cout, kernel=(3, 3), pads=(1, 1, 1, 1)):
        w = self.const(self.rng.standard_normal((cout, cin) + tuple(kernel)) * 0.3)
        b = self.const(self.rng.standard_normal(cout) * 0.1)
        return self.node("Conv", [x, w, b], kernel_shape=list(kernel), pads=list(pads))

    def model(self, outputs):
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [N, C, H, W])
        outs = [helper.make_empty_tensor_value_info(o) for o in outputs]
        g = helper.make_graph(self.nodes, "layout", [x], outs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)])
        m.ir_version = 8
        return m


def out_info(model, name):
    for v in list(model.graph.value_info) + list(model.graph.output):
        if v.name == name and v.type.tensor_type.HasField("shape"):
            t = v.type.tensor_type
            return t.elem_type, [d.dim_value for d in t.shape.dim]
    return None, None


def with_consumer(g, y):
    """Appends a Conv reading y when y is a 4-D float activation."""
    try:
        elem, dims = out_info(onnx.shape_inference.infer_shapes(g.model([y]), strict_mode=True), y)
    except Exception:  # noqa: BLE001  (onnx 1.12 knows opsets up to 17)
        return None
    if elem != TensorProto.FLOAT or not dims or len(dims) != 4 or 0 in dims:
        return None
    return g.conv(y, dims[1], 4, kernel=(1, 1), pads=(0, 0, 0, 0))


# Each case builder takes a Graph and returns the tensor under test.  a4 and
# b4 are two convolutions of the input with 4 output channels (channels-last
# on the CPU); c6 has 6 channels, for concatenations of different widths.
def a4(g):
    return g.conv("input", C, 4)


def b4(g):
    return g.conv("input", C, 4, kernel=(1, 1), pads=(0, 0, 0, 0))


def c6(g):
    return g.conv("input", C, 6)


def cases():
    out = []

    def add(name, build, opset=13):
        out.append((name, build, opset))

    for op in ("Relu", "Sigmoid", "Identity", "Dropout"):
        add(op, lambda g, op=op: g.node(op, [a4(g)]))
    add("Clip", lambda g: g.node("Clip", [a4(g), g.const(-0.3), g.const(0.4)]))
    add("LeakyRelu", lambda g: g.node("LeakyRelu", [a4(g)], alpha=0.2))
    add("LeakyRelu default alpha", lambda g: g.node("LeakyRelu", [a4(g)]))
    for op in ("Tanh", "Erf", "Exp", "Neg", "Abs", "Softplus", "Softsign", "Elu", "Selu", "Celu"):
        add(op, lambda g, op=op: g.node(op, [a4(g)]))
    add("HardSwish", lambda g: g.node("HardSwish", [a4(g)]), 14)
    add("HardSigmoid", lambda g: g.node("HardSigmoid", [a4(g)], alpha=0.3, beta=0.4))
    for approximate in ("none", "tanh"):
        add(f"Gelu {approximate}", lambda g, ap=approximate: g.node("Gelu", [a4(g)], approximate=ap), 20)
    add("Sqrt of a Sigmoid", lambda g: g.node("Sqrt", [g.node("Sigmoid", [a4(g)])]))
    add("Log of a Sigmoid", lambda g: g.node("Log", [g.node("Sigmoid", [a4(g)])]))
    add("Reciprocal of a Sigmoid", lambda g: g.node("Reciprocal", [g.node("Sigmoid", [a4(g)])]))
    add("Pow of a Sigmoid", lambda g: g.node("Pow", [g.node("Sigmoid", [a4(g)]), g.const(1.5)]))
    for op in ("Max", "Min", "Mean"):
        add(f"{op} of three", lambda g, op=op: g.node(op, [a4(g), b4(g), g.node("GlobalAveragePool", [a4(g)])]))
    for op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
        add(f"Where over {op}", lambda g, op=op: g.node("Where", [g.node(op, [a4(g), b4(g)]), a4(g), b4(g)]))
    add("Mod fmod", lambda g: g.node("Mod", [a4(g), g.const(0.7)], fmod=1))
    for axis in (-1, -2, -3, 1, 2, 3):
        add(f"LayerNormalization axis {axis}", lambda g, axis=axis: g.node(
            "LayerNormalization", [a4(g), g.const(g.rng.random((N, 4, H, W)[axis:]) + 0.5),
                                   g.const(g.rng.standard_normal((N, 4, H, W)[axis:]))], axis=axis), 17)
    for label, starts, ends, axes, steps in (("channels", [1], [3], [1], [1]), ("H reversed", [-1], [-7], [2], [-1]),
                                             ("W step 2", [0], [5], [-1], [2]), ("two axes", [1, 1], [5, 4], [2, 3], [2, 1]),
                                             ("past the end", [0], [100], [1], [1])):
        add(f"Slice {label}", lambda g, s=starts, e=ends, ax=axes, st=steps: g.node("Slice", [
            a4(g), g.const(s, np.int64), g.const(e, np.int64), g.const(ax, np.int64), g.const(st, np.int64)]))
    add("Expand a pooled [N,C,1,1]", lambda g: g.node("Expand", [g.node("GlobalAveragePool", [a4(g)]),
                                                                g.const([N, 4, H, W], np.int64)]))
    add("Expand over H (rows copied whole)", lambda g: g.node("Expand", [
        g.node("ReduceMean", [a4(g)], axes=[2], keepdims=1), g.const([N, 4, H, W], np.int64)]))
    add("Expand over W (rows of one value)", lambda g: g.node("Expand", [
        g.node("ReduceMean", [a4(g)], axes=[3], keepdims=1), g.const([1, 4, H, W], np.int64)]))
    # Past 256 KiB the strided copies run on every thread, each from its own first row.
    big = (N, 4, 7 * H, 97 * W)

    def large(g):
        return g.node("Tile", [a4(g), g.const([1, 1, 7, 97], np.int64)])
    for label, starts, ends, axes, steps in (("last axis, as attention splits QKV", [97], [2 * 97 + 3], [3], [1]),
                                             ("last axis reversed", [-2], [-400], [3], [-1]),
                                             ("H step 3", [1], [40], [2], [3])):
        add(f"Slice of a large tensor, {label}", lambda g, s=starts, e=ends, ax=axes, st=steps: g.node("Slice", [
            large(g), g.const(s, np.int64), g.const(e, np.int64), g.const(ax, np.int64), g.const(st, np.int64)]))
    add("Expand to a large tensor", lambda g: g.node("Expand", [
        g.node("ReduceMean", [a4(g)], axes=[2], keepdims=1), g.const([N, 4, big[2] * 97, W], np.int64)]))
    add("Transpose of a large tensor [1, 0, 2, 3]", lambda g: g.node("Transpose", [large(g)], perm=[1, 0, 2, 3]))
    add("Transpose of a large tensor [0, 3, 1, 2]", lambda g: g.node("Transpose", [large(g)], perm=[0, 3, 1, 2]))
    for op in ("ReduceMax", "ReduceMin", "ReduceSum", "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare"):
        for axes in ([1], [2, 3], [-1]):
            add(f"{op} axes {axes}", lambda g, op=op, axes=axes: g.node(op, [a4(g), g.const(axes, np.int64)], keepdims=1), 18)
    add("Einsum batched", lambda g: g.node("Einsum", [a4(g), g.node("Transpose", [b4(g)], perm=[0, 1, 3, 2])],
                                           equation="bchw,bcwk->bchk"), 12)
    for shape in ((4, 1, 1), (), (1, 4, 1, 1)):
        add(f"PRelu slope {shape}", lambda g, shape=shape: g.node("PRelu", [a4(g), g.const(g.rng.random(shape))]), 9)
    add("InstanceNormalization", lambda g: g.node("InstanceNormalization", [
        a4(g), g.const(g.rng.random(4) + 0.5), g.const(g.rng.standard_normal(4))], epsilon=1e-3))
    add("ImageScaler", lambda g: g.node("ImageScaler", [a4(g)], scale=0.5, bias=[0.1, 0.2, 0.3, 0.4]), 9)
    add("Split channels 1+3, second", lambda g: g.node("Split", [a4(g)], outputs=2, axis=1, split=[1, 3])[1], 11)
    add("Split H in halves, second", lambda g: g.node("Split", [a4(g)], outputs=2, axis=2)[1], 11)
    add("Split W by input, first", lambda g: g.node("Split", [a4(g), g.const([2, 3], np.int64)], outputs=2, axis=-1)[0])
    add("Split W num_outputs 2, second", lambda g: g.node("Split", [a4(g)], outputs=2, axis=3, num_outputs=2)[1], 18)
    add("Tile", lambda g: g.node("Tile", [a4(g), g.const([1, 2, 1, 3], np.int64)]))
    for op in ("ArgMax", "ArgMin"):
        for axis in (1, -1, 2):
            for keep in (0, 1):
                add(f"{op} axis {axis} keepdims {keep}", lambda g, op=op, axis=axis, keep=keep: g.node(
                    op, [a4(g)], axis=axis, keepdims=keep, select_last_index=1), 12)
    add("DepthToSpace DCR", lambda g: g.node("DepthToSpace", [a4(g)], blocksize=2, mode="DCR"))
    add("DepthToSpace CRD", lambda g: g.node("DepthToSpace", [a4(g)], blocksize=2, mode="CRD"))
    add("SpaceToDepth", lambda g: g.node("SpaceToDepth", [g.node("Pad", [a4(g), g.const([0, 0, 0, 1, 0, 0, 0, 0], np.int64)])],
                                         blocksize=2), 13)
    for mode in ("reflect", "edge"):
        add(f"Pad {mode}", lambda g, mode=mode: g.node("Pad", [a4(g), g.const([0, 0, 2, 1, 0, 0, 1, 3], np.int64)], mode=mode))
    add("Pad wrap", lambda g: g.node("Pad", [a4(g), g.const([0, 0, 2, 1, 0, 0, 1, 3], np.int64)], mode="wrap"), 19)
    for size in (1, 3, 5):  # ONNX Runtime refuses even sizes
        add(f"LRN size {size}", lambda g, size=size: g.node("LRN", [a4(g)], size=size, alpha=0.02, beta=0.6, bias=1.5))
    add("Clip opset 10", lambda g: g.node("Clip", [a4(g)], min=-0.3, max=0.4), 10)
    add("Cast to double and back", lambda g: g.node("Cast", [g.node("Cast", [a4(g)], to=TensorProto.DOUBLE)],
                                                    to=TensorProto.FLOAT))

    def batchnorm(g, x, c):
        r = g.rng
        return g.node("BatchNormalization", [x, g.const(r.random(c) + 0.5), g.const(r.standard_normal(c)),
                                             g.const(r.standard_normal(c) * 0.1), g.const(r.random(c) + 0.5)])
    add("BatchNormalization folded into Conv", lambda g: batchnorm(g, a4(g), 4))
    add("BatchNormalization after Relu", lambda g: batchnorm(g, g.node("Relu", [a4(g)]), 4))
    add("Conv + Relu fused", lambda g: g.node("Relu", [a4(g)]))

    for op in ("Add", "Sub", "Mul", "Div"):
        # A divisor near zero would turn rounding into large errors: Div divides
        # by a Sigmoid of the activation, which still runs channels-last.
        def d(g, x, op=op):
            return g.node("Sigmoid", [x]) if op == "Div" else x
        add(f"{op} of two convolutions", lambda g, op=op, d=d: g.node(op, [a4(g), d(g, b4(g))]))
        add(f"{op} then Relu (fused)", lambda g, op=op, d=d: g.node("Relu", [g.node(op, [a4(g), d(g, b4(g))])]))
        add(f"{op} with a pooled [N,C,1,1]", lambda g, op=op, d=d: g.node(
            op, [a4(g), d(g, g.node("GlobalAveragePool", [b4(g)]))]))
        add(f"{op} pooled [N,C,1,1] first", lambda g, op=op, d=d: g.node(
            op, [g.node("GlobalAveragePool", [b4(g)]), d(g, a4(g))]))
        add(f"{op} with a one-channel conv", lambda g, op=op, d=d: g.node(op, [a4(g), d(g, g.conv("input", C, 1))]))
        for shape in ((4, 1, 1), (W,), (), (1, 1, H, 1), (H, W), (1, 4, H, W)):
            add(f"{op} with a constant {shape}", lambda g, op=op, shape=shape: g.node(
                op, [a4(g), g.const(g.rng.random(shape) + 0.5)]))
        add(f"{op} constant (4,1,1) first", lambda g, op=op, d=d: g.node(
            op, [g.const(g.rng.random((4, 1, 1)) + 0.5), d(g, a4(g))]))
    add("Sum of three convolutions", lambda g: g.node("Sum", [a4(g), b4(g), g.conv("input", C, 4, kernel=(3, 1),
                                                                                        pads=(1, 0, 1, 0))]))
    add("Sum broadcasting", lambda g: g.node("Sum", [a4(g), g.node("GlobalMaxPool", [b4(g)]), g.const(np.ones(W))]))
    add("Sum of one input", lambda g: g.node("Sum", [a4(g)]))

    add("residual Add of two Conv", lambda g: g.node("Add", [g.conv(a4(g), 4, 4), b4(g)]))
    add("residual Add with skip first", lambda g: g.node("Add", [b4(g), g.conv(a4(g), 4, 4)]))
    add("residual Add then Relu", lambda g: g.node("Relu", [g.node("Add", [g.conv(a4(g), 4, 4), b4(g)])]))
    # the sum must not take over the buffer of the h the Conv reads
    add("residual Add of a Conv and its own input", lambda g: (lambda h: g.node("Add", [g.conv(h, 4, 4), h]))(a4(g)))
    add("residual Add of MaxPool skip", lambda g: g.node("Add", [
        g.conv(a4(g), 4, 4), g.node("MaxPool", [b4(g)], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]))
    add("residual Add of an earlier Add", lambda g: g.node("Add", [
        g.conv(a4(g), 4, 4), g.node("Add", [b4(g), g.conv("input", C, 4)])]))

    def regnet_order(g):  # the skip Conv comes after the Conv a fusion could take
        proj = b4(g)
        return g.node("Add", [proj, g.conv(g.node("Relu", [a4(g)]), 4, 4)])
    add("residual Add, skip computed later (RegNet)", regnet_order)
    add("residual Add broadcasting a pooled Conv", lambda g: g.node("Add", [
        g.conv(a4(g), 4, 4), g.conv(g.node("GlobalAveragePool", [b4(g)]), 4, 4, kernel=(1, 1), pads=(0, 0, 0, 0))]))
    add("residual Add broadcasting into a pooled Conv", lambda g: g.node("Add", [
        g.conv(g.node("GlobalAveragePool", [b4(g)]), 4, 4, kernel=(1, 1), pads=(0, 0, 0, 0)), g.conv(a4(g), 4, 4)]))

    def conv_of(g, x, cin, cout, group=1, **attrs):
        w = g.const(g.rng.standard_normal((cout, cin // group, 3, 3)) * 0.3)
        return g.node("Conv", [x, w, g.const(g.rng.standard_normal(cout) * 0.1)], group=group, **attrs)
    for label, attrs in (("dilated", {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
                         ("grouped", {"group": 2, "pads": [1, 1, 1, 1]}),
                         ("depthwise", {"group": 4, "pads": [1, 1, 1, 1]}),
                         ("asymmetric pads", {"pads": [0, 1, 2, 1]}),
                         ("SAME_UPPER strided", {"auto_pad": "SAME_UPPER", "strides": [2, 2]})):
        add(f"Conv {label} after a Conv", lambda g, attrs=attrs: conv_of(g, a4(g), 4, 4, **attrs))
        add(f"Conv {label} with a residual Add", lambda g, attrs=attrs: g.node("Add", [
            conv_of(g, a4(g), 4, 4, **attrs), g.node("MaxPool", [b4(g)], kernel_shape=[1, 1],
                                                     strides=attrs.get("strides", [1, 1]))]))

    # A 1x1 expansion, its activation, a 3x3 depthwise Conv and its own
    # (MobileNet's and EfficientNet's blocks), which the CPU runs as one.
    def pointwise(g, x, cin, cout, bias=True):
        w = g.const(g.rng.standard_normal((cout, cin, 1, 1)) * 0.5)
        return g.node("Conv", [x, w] + ([g.const(g.rng.standard_normal(cout) * 0.1)] if bias else []))

    def depthwise(g, x, c, stride, bias=True):
        w = g.const(g.rng.standard_normal((c, 1, 3, 3)) * 0.3)
        return g.node("Conv", [x, w] + ([g.const(g.rng.standard_normal(c) * 0.1)] if bias else []), group=c,
                      pads=[1, 1, 1, 1], strides=[stride, stride])
    acts = {"none": lambda g, x: x, "Relu": lambda g, x: g.node("Relu", [x]),
            "Swish": lambda g, x: g.node("Mul", [x, g.node("Sigmoid", [x])]),
            "HardSwish": lambda g, x: g.node("HardSwish", [x]),
            "Clip 0..6": lambda g, x: g.node("Clip", [x, g.const(0.0), g.const(6.0)])}
    for first, second, stride, width, bias in (("Relu", "Relu", 1, 16, True), ("Swish", "Swish", 2, 16, True),
                                               ("HardSwish", "HardSwish", 1, 12, True), ("Clip 0..6", "none", 2, 24, False),
                                               ("none", "Swish", 1, 8, True), ("Swish", "Swish", 2, 20, False)):
        add(f"1x1 Conv to {width} channels, {first}, depthwise 3x3 stride {stride}, {second}{'' if bias else ', no biases'}",
            lambda g, a=first, b=second, s=stride, c=width, bias=bias: acts[b](g, depthwise(
                g, acts[a](g, pointwise(g, a4(g), 4, c, bias)), c, s, bias)), opset=14)
    add("1x1 Conv whose output a depthwise Conv and the caller read", lambda g: g.node("Add", [
        g.conv(depthwise(g, pointwise(g, a4(g), 4, 8), 8, 1), 8, 4), g.conv(pointwise(g, a4(g), 4, 8), 8, 4)]))

    def conv_t(g, x, cin, cout, group=1, kernel=(3, 3), **attrs):
        w = g.const(g.rng.standard_normal((cin, cout // group) + tuple(kernel)) * 0.3)
        return g.node("ConvTranspose", [x, w, g.const(g.rng.standard_normal(cout) * 0.1)], group=group, **attrs)
    for label, attrs in (("plain", {}),
                         ("strided, padded, output_padding", {"strides": [2, 2], "pads": [1, 0, 1, 1],
                                                              "output_padding": [1, 0]}),
                         ("dilated", {"dilations": [2, 1]}), ("grouped", {"group": 2}),
                         ("SAME_UPPER", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
                         ("SAME_LOWER", {"auto_pad": "SAME_LOWER", "strides": [2, 3]}),
                         ("output_shape", {"strides": [2, 2], "output_shape": [12, 12]})):
        add(f"ConvTranspose {label}", lambda g, attrs=attrs: conv_t(g, a4(g), 4, 6, **attrs))
    add("ConvTranspose 1-D", lambda g: conv_t(g, g.node("Reshape", [a4(g), g.const([N, 4, H * W], np.int64)]), 4, 2,
                                              kernel=(3,), strides=[2]))

    for axis in (0, 1, 2, -1):
        add(f"GatherElements axis {axis}", lambda g, axis=axis: g.node("GatherElements", [
            a4(g), g.const(g.rng.integers(-(N, 4, H, W)[axis], (N, 4, H, W)[axis], (N, 4, 3, W)), np.int64)],
            axis=axis))
    add("GatherND pairs", lambda g: g.node("GatherND", [a4(g), g.const([[1, 2], [0, -1], [1, 0]], np.int64)]))
    add("GatherND batch_dims 1", lambda g: g.node("GatherND", [a4(g), g.const([[[3], [1]], [[0], [2]]], np.int64)],
                                                  batch_dims=1))
    for order in (0, 1):
        add(f"MaxPool Indices storage_order {order}", lambda g, order=order: g.node(
            "MaxPool", [a4(g)], outputs=2, kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1],
            storage_order=order)[1], 12)
    add("MaxPool on uint8", lambda g: g.node("Cast", [g.node("MaxPool", [g.node("Cast", [
        g.node("Relu", [a4(g)])], to=TensorProto.UINT8)], kernel_shape=[2, 2])], to=TensorProto.FLOAT), 12)
    for p in (1, 2, 3):
        add(f"LpPool p {p}", lambda g, p=p: g.node("LpPool", [a4(g)], kernel_shape=[3, 2], strides=[2, 1],
                                                   pads=[1, 0, 1, 1], p=p), 11)
    add("LpPool ceil_mode", lambda g: g.node("LpPool", [a4(g)], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), 18)

    def resize(g, x, scales=None, sizes=None, roi=None, **attrs):
        ins = [x, g.const(roi, np.float32) if roi is not None else "", g.const(scales, np.float32) if scales else "",
               g.const(sizes, np.int64) if sizes else ""]
        while not ins[-1]:
            ins.pop()
        return g.node("Resize", ins, **attrs)
    up, down = [1, 1, 2, 1.5], [1, 1, 0.5, 0.6]
    for coord in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn"):
        for near in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
            for label, sc in (("up", up), ("down", down)):
                old = coord == "tf_half_pixel_for_nn"  # deprecated from opset 13; opset 11 needs a roi
                add(f"Resize nearest {coord} {near} {label}", lambda g, c=coord, nm=near, sc=sc, old=old: resize(
                    g, a4(g), sc, roi=[] if old else None, mode="nearest", coordinate_transformation_mode=c,
                    nearest_mode=nm), 11 if old else 13)
    for coord in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"):
        for label, sc in (("up", up), ("down", down)):
            add(f"Resize linear {coord} {label}", lambda g, c=coord, sc=sc: resize(
                g, a4(g), sc, mode="linear", coordinate_transformation_mode=c))
            for a, exclude in ((-0.75, 0), (-0.5, 1)):
                add(f"Resize cubic {coord} a {a} exclude_outside {exclude} {label}",
                    lambda g, c=coord, sc=sc, a=a, ex=exclude: resize(
                        g, a4(g), sc, mode="cubic", coordinate_transformation_mode=c, cubic_coeff_a=a,
                        exclude_outside=ex))
    add("Resize linear half_pixel_symmetric", lambda g: resize(
        g, a4(g), [1, 1, 1.7, 0.8], mode="linear", coordinate_transformation_mode="half_pixel_symmetric"), 19)
    for mode in ("nearest", "linear"):
        add(f"Resize {mode} tf_crop_and_resize", lambda g, mode=mode: resize(
            g, a4(g), sizes=[N, 4, 7, 4], roi=[0, 0, -0.2, 0.1, 1, 1, 0.9, 1.3], mode=mode,
            coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-2.5))
    add("Resize linear to sizes", lambda g: resize(g, a4(g), sizes=[N, 4, 9, 7], mode="linear"))
    add("Resize nearest channels by 2", lambda g: resize(g, a4(g), [1, 2, 1, 1], mode="nearest"))
    for policy in ("not_larger", "not_smaller"):
        add(f"Resize sizes on axes, keep_aspect_ratio_policy {policy}", lambda g, p=policy: resize(
            g, a4(g), sizes=[8, 9], mode="linear", axes=[2, 3], keep_aspect_ratio_policy=p), 18)
    for mode in ("nearest", "linear"):
        add(f"Resize opset 10 {mode}", lambda g, mode=mode: g.node("Resize", [a4(g), g.const([1, 1, 1.5, 0.7], np.float32)],
                                                                  mode=mode), 10)
        add(f"Upsample opset 9 {mode}", lambda g, mode=mode: g.node("Upsample", [a4(g), g.const([1, 1, 2, 3], np.float32)],
                                                                    mode=mode), 9)
        add(f"Upsample opset 7 {mode}", lambda g, mode=mode: g.node("Upsample", [a4(g)], mode=mode,
                                                                    scales=[1.0, 1.0, 2.0, 1.5]), 7)

    # Activations a Conv takes in (Swish as Sigmoid times its input, HardSwish, Clip as ReLU6), and
    # look-alikes it must not: a Sigmoid of another tensor, a Clip with computed bounds.
    add("Conv then x * Sigmoid(x) (Swish)", lambda g: (lambda x: g.node("Mul", [x, g.node("Sigmoid", [x])]))(a4(g)))
    add("Conv then Sigmoid(x) * x (Swish)", lambda g: (lambda x: g.node("Mul", [g.node("Sigmoid", [x]), x]))(a4(g)))
    add("x * Sigmoid(y) stays apart", lambda g: g.node("Mul", [a4(g), g.node("Sigmoid", [b4(g)])]))
    add("Swish of a Slice (no Conv to take it)", lambda g: (lambda x: g.node("Mul", [x, g.node("Sigmoid", [x])]))(
        g.node("Slice", [a4(g), g.const([1], np.int64), g.const([5], np.int64), g.const([2], np.int64)])))
    add("Conv then HardSwish", lambda g: g.node("HardSwish", [a4(g)]), 14)
    add("Conv then Clip(0, 6)", lambda g: g.node("Clip", [a4(g), g.const(0.0), g.const(6.0)]), 13)
    add("Conv then Clip(-0.2, 0.3) opset 10", lambda g: g.node("Clip", [a4(g)], min=-0.2, max=0.3), 10)
    add("Conv then Clip with a computed bound", lambda g: g.node("Clip", [
        a4(g), g.node("ReduceMin", [b4(g)], keepdims=0), g.const(0.5)]), 13)
    add("Conv then Swish, used twice", lambda g: (lambda x: (lambda y: g.node("Add", [y, x]))(
        g.node("Mul", [x, g.node("Sigmoid", [x])])))(a4(g)))
    add("Conv dilated then HardSwish", lambda g: g.node("HardSwish", [conv_of(g, a4(g), 4, 4, dilations=[2, 2],
                                                                              pads=[2, 2, 2, 2])]), 14)

    add("MaxPool dilated", lambda g: g.node("MaxPool", [a4(g)], kernel_shape=[2, 2], dilations=[2, 1]))
    add("MaxPool", lambda g: g.node("MaxPool", [a4(g)], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    add("MaxPool ceil_mode", lambda g: g.node("MaxPool", [a4(g)], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1))
    for cip in (0, 1):
        add(f"AveragePool count_include_pad {cip}", lambda g, cip=cip: g.node(
            "AveragePool", [a4(g)], kernel_shape=[3, 2], pads=[1, 0, 1, 1], count_include_pad=cip))
    add("GlobalAveragePool", lambda g: g.node("GlobalAveragePool", [a4(g)]))
    add("GlobalMaxPool", lambda g: g.node("GlobalMaxPool", [a4(g)]))

    for op in ("Softmax", "LogSoftmax"):
        for opset in (11, 13):
            for axis in range(-4, 4):
                add(f"{op} axis {axis} opset {opset}", lambda g, op=op, axis=axis: g.node(op, [a4(g)], axis=axis), opset)

    axes_sets = [[0], [1], [2], [3], [-1], [-3], [2, 3], [1, 2, 3], [-4, -2], None]
    for axes in axes_sets:
        for keep in (0, 1):
            extra = {} if axes is None else {"axes": axes}
            add(f"ReduceMean axes {axes} keepdims {keep}", lambda g, extra=extra, keep=keep: g.node(
                "ReduceMean", [a4(g)], keepdims=keep, **extra))
            add(f"ReduceMean axes {axes} keepdims {keep} opset 18", lambda g, axes=axes, keep=keep: g.node(
                "ReduceMean", [a4(g)] + ([] if axes is None else [g.const(axes, np.int64)]), keepdims=keep), 18)

    for axis in range(-4, 5):
        add(f"Flatten axis {axis}", lambda g, axis=axis: g.node("Flatten", [a4(g)], axis=axis))
    for shape in ([N, -1], [0, 0, -1], [N, 4 * H, W, 1], [0, -1, W], [N * 4, H, W], [0, 2, 2, H * W], [-1]):
        add(f"Reshape to {shape}", lambda g, shape=shape: g.node("Reshape", [a4(g), g.const(shape, np.int64)]))

    def row(g):  # [N, 4, 1, W]: height squeezable, channels and width still mixed up in NHWC
        return g.conv("input", C, 4, kernel=(H, 1), pads=(0, 0, 0, 0))
    for axes in ([2], [-2]):
        add(f"Squeeze axes {axes}", lambda g, axes=axes: g.node("Squeeze", [row(g), g.const(axes, np.int64)]))
        add(f"Squeeze axes {axes} opset 11", lambda g, axes=axes: g.node("Squeeze", [row(g)], axes=axes), 11)
    for axes in ([0], [1], [2], [3], [4], [-1], [-5], [0, 5]):
        add(f"Unsqueeze axes {axes}", lambda g, axes=axes: g.node("Unsqueeze", [a4(g), g.const(axes, np.int64)]))
        add(f"Unsqueeze axes {axes} opset 11", lambda g, axes=axes: g.node("Unsqueeze", [a4(g)], axes=axes), 11)

    add("Shape", lambda g: g.node("Shape", [a4(g)]))
    for start, end in ((1, None), (-3, -1), (0, 2)):
        extra = {"start": start} if end is None else {"start": start, "end": end}
        add(f"Shape start {start} end {end}", lambda g, extra=extra: g.node("Shape", [a4(g)], **extra), 15)
    add("Shape then Reshape", lambda g: g.node("Reshape", [b4(g), g.node("Shape", [a4(g)])]))

    for axis in range(-4, 4):
        add(f"Gather axis {axis} indices [1,0]", lambda g, axis=axis: g.node(
            "Gather", [a4(g), g.const([1, 0], np.int64)], axis=axis))
        add(f"Gather axis {axis} scalar -1", lambda g, axis=axis: g.node(
            "Gather", [a4(g), g.const(-1, np.int64)], axis=axis))

    for axis in range(-4, 4):
        add(f"Concat axis {axis}", lambda g, axis=axis: g.node("Concat", [a4(g), b4(g)], axis=axis))
        add(f"Concat axis {axis} with the graph input", lambda g, axis=axis: g.node(
            "Concat", [g.conv("input", C, C), "input"], axis=axis))
        add(f"Concat axis {axis} with a constant", lambda g, axis=axis: g.node(
            "Concat", [a4(g), g.const(g.rng.random((N, 4, H, W)))], axis=axis))
    add("Concat channels 4+6+4", lambda g: g.node("Concat", [a4(g), c6(g), b4(g)], axis=1))
    add("Concat channels then Relu", lambda g: g.node("Relu", [g.node("Concat", [a4(g), c6(g)], axis=1)]))
    add("Concat of one input", lambda g: g.node("Concat", [a4(g)], axis=1))
    add("Concat with a pooled input on H", lambda g: g.node("Concat", [
        a4(g), g.node("ReduceMean", [b4(g)], axes=[2], keepdims=1)], axis=2))

    for perm in (None, [0, 2, 3, 1], [0, 3, 1, 2], [1, 0, 2, 3], [3, 2, 1, 0], [0, 1, 3, 2]):
        extra = {} if perm is None else {"perm": perm}
        add(f"Transpose perm {perm}", lambda g, extra=extra: g.node("Transpose", [a4(g)], **extra))

    for pads in ([0, 0, 1, 2, 0, 0, 2, 1], [0, 1, 0, 0, 0, 2, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0],
                 [0, 0, -1, 0, 0, 0, 0, -1]):
        add(f"Pad {pads}", lambda g, pads=pads: g.node("Pad", [a4(g), g.const(pads, np.int64), g.const(0.5)]))
        add(f"Pad {pads} opset 10", lambda g, pads=pads: g.node("Pad", [a4(g)], pads=pads, value=0.5), 10)

    add("MatMul by a constant", lambda g: g.node("MatMul", [a4(g), g.const(g.rng.standard_normal((W, 7)))]))
    add("MatMul constant first", lambda g: g.node("MatMul", [g.const(g.rng.standard_normal((7, H))), a4(g)]))
    add("MatMul of two convolutions", lambda g: g.node("MatMul", [
        a4(g), g.node("Transpose", [b4(g)], perm=[0, 1, 3, 2])]))
    add("Gemm after Flatten", lambda g: g.node("Gemm", [
        g.node("Flatten", [a4(g)]), g.const(g.rng.standard_normal((3, 4 * H * W))), g.const(np.ones(3))], transB=1))
    # Linear layers run on oneDNN's matmul with packed weights and C as its
    # bias row; the other Gemms (C per row, alpha) on sgemm.
    K = 4 * H * W
    for label, c, attrs in (("no C", None, {}), ("C [n]", (3,), {}), ("C [1, n]", (1, 3), {}), ("C scalar", (), {}),
                            ("C [1]", (1,), {}), ("C [m, n]", (N, 3), {}), ("C [m, 1]", (N, 1), {}),
                            ("beta 0.5", (3,), {"beta": 0.5}), ("beta 0", (3,), {"beta": 0.0}),
                            ("alpha 2", (3,), {"alpha": 2.0})):
        for trans in (0, 1):
            add(f"Gemm by a constant, {label}, transB {trans}", lambda g, c=c, attrs=attrs, trans=trans: g.node("Gemm", [
                g.node("Flatten", [a4(g)]), g.const(g.rng.standard_normal((3, K) if trans else (K, 3))),
                *([] if c is None else [g.const(g.rng.standard_normal(c))])], transB=trans, **attrs))
    add("Gemm by a computed matrix", lambda g: g.node("Gemm", [
        g.node("Flatten", [a4(g)]), g.node("Reshape", [b4(g), g.const([K, N], np.int64)]), g.const(np.ones(N))]))
    add("MatMul by a constant over [N, 4H, W]", lambda g: g.node("MatMul", [
        g.node("Reshape", [a4(g), g.const([N, 4 * H, W], np.int64)]), g.const(g.rng.standard_normal((W, 9)))]))
    # A Linear layer's bias Add, and the Gelu after it, fuse into the MatMul
    # (torch's nn.Linear over 3-D input: ViT, ConvNeXt); where the product is
    # read twice, or the bias is not a row, they run apart.  The weights keep
    # most outputs within 3, where Gelu's tanh form and erf's differ by more
    # than the tolerance.
    def linear(g, x, k, n, bias_first=False, bias_shape=None):
        y = g.node("MatMul", [x, g.const(g.rng.standard_normal((k, n)) * 0.6 / np.sqrt(k))])
        b = g.const(g.rng.standard_normal(bias_shape or (n,)))
        return g.node("Add", [b, y] if bias_first else [y, b])

    def rows(g):
        return g.node("Reshape", [a4(g), g.const([N, 4 * H, W], np.int64)])

    def erf_gelu(g, x):  # as torch exports nn.GELU
        e = g.node("Erf", [g.node("Div", [x, g.const(1.4142135381698608)])])
        return g.node("Mul", [g.node("Mul", [x, g.node("Add", [e, g.const(1.0)])]), g.const(0.5)])

    add("Linear over [N, 4H, W]: MatMul, then Add of a bias", lambda g: linear(g, rows(g), W, 9))
    add("Linear over [N, 4H, W]: Add of a bias, then MatMul (ViT's order)", lambda g: linear(g, rows(g), W, 9, True))
    add("Linear over [N, 4H, W] with torch's Gelu", lambda g: erf_gelu(g, linear(g, rows(g), W, 9, True)))
    for approximate in ("none", "tanh"):
        add(f"Linear over [N, 4H, W] with Gelu {approximate}", lambda g, ap=approximate: g.node(
            "Gelu", [linear(g, rows(g), W, 9)], approximate=ap), 20)
    add("Linear over a vector with Gelu", lambda g: g.node("Gelu", [linear(g, g.node("Reshape", [
        a4(g), g.const([-1], np.int64)]), N * 4 * H * W, 5)]), 20)
    add("Linear with a [1, n] bias", lambda g: linear(g, rows(g), W, 9, bias_shape=(1, 9)))
    add("Linear whose product is read twice", lambda g: g.node("Mul", [
        g.node("Add", [g.node("MatMul", [rows(g), g.const(g.rng.standard_normal((W, 9)))])] * 2), g.const(0.5)]))
    add("Linear then Relu", lambda g: g.node("Relu", [linear(g, rows(g), W, 9)]))
    add("Linear over [N, H, W, 4] (ConvNeXt's pointwise layer) with Gelu", lambda g: g.node("Transpose", [
        erf_gelu(g, linear(g, g.node("Transpose", [a4(g)], perm=[0, 2, 3, 1]), 4, 6))], perm=[0, 3, 1, 2]))
    return out


def build(tmp, i, name, builder, opset, consumer):
    g = Graph(opset)
    y = builder(g)
    if consumer:
        y = with_consumer(g, y)
        if y is None:
            return None
    path = os.path.join(tmp, f"case{i}{'c' if consumer else ''}.onnx")
    onnx.save(g.model([y]), path)
    return path, y


def run_ort(tmp, jobs):
    spec = os.path.join(tmp, "cases.json")
    with open(spec, "w") as f:
        json.dump([{"model": m, "inputs": {"input": x}, "outputs": {y: ref}} for m, x, y, ref, _ in jobs], f)
    subprocess.run([os.path.join(ROOT, "tools", "install_ort.sh")], check=True)
    subprocess.run(["node", os.path.join(ROOT, "test", "ort_run.js"), spec], check=True)


def compare(ours, ref):
    if ours.shape != ref.shape or ours.dtype.kind != ref.dtype.kind:
        return False, f"shape {ours.shape} {ours.dtype}, expected {ref.shape} {ref.dtype}"
    if ref.dtype.kind != "f":
        return bool(np.array_equal(ours, ref)), "integers equal" if np.array_equal(ours, ref) else "integers differ"
    err = float(np.abs(ours.astype(np.float64) - ref).max()) if ref.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    ok = bool(np.isfinite(ours).all()) and err <= TOL * max(scale, 1e-30)
    return ok, f"max|diff| {err:.3g}, relative {err / max(scale, 1e-30):.3g} (limit {TOL:g})"


def infer_case(onnxtl, model, x, y, ref, label, args=(), env=None):
    """Runs onnxtl infer on one case and prints its PASS or FAIL line: whether it passed, or None (nothing
    printed) where onnxtl says there is no CUDA GPU."""
    ours = model + ".out.npy"
    r = subprocess.run([onnxtl, "infer", model, "--input", f"input={x}", "--output", f"{y}={ours}", *args],
                       capture_output=True, text=True, env=env)
    if r.returncode and "no CUDA GPU" in r.stderr:
        return None
    if r.returncode:
        print(f"FAIL {label}: onnxtl exited {r.returncode}: {r.stderr.strip()[-300:]}")
        return False
    ok, detail = compare(np.load(ours), np.load(ref))
    print(f"{'PASS' if ok else 'FAIL'} {label}: {detail}", flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnxtl")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="")
    ap.add_argument("--fallback", default="", help="ONNXTL_FALLBACK_OPS for onnxtl's runs")
    a = ap.parse_args()
    if not os.path.exists(a.onnxtl):
        print(f"SKIP layout tests on {a.device}: {a.onnxtl} is not built")
        return 0
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        x = os.path.join(tmp, "x.npy")
        np.save(x, np.random.default_rng(3).standard_normal((N, C, H, W), dtype=np.float32))
        jobs = []
        for i, (name, builder, opset) in enumerate(cases()):
            if a.only not in name:
                continue
            for consumer in (False, True):
                built = build(tmp, i, name, builder, opset, consumer)
                if built:
                    label = f"{name}{', then a Conv' if consumer else ''}"
                    jobs.append((built[0], x, built[1], built[0] + ".ref.npy", label))
        run_ort(tmp, jobs)
        for model, _, y, ref, label in jobs:
            fallback = a.fallback if len(a.fallback) < 40 else f"{a.fallback.count(',') + 1} ops"
            label = f"layout {a.device}{' fallback ' + fallback if a.fallback else ''}: {label}"
            if os.path.exists(ref + ".err"):
                print(f"FAIL {label}: ONNX Runtime refused the case: {open(ref + '.err').read()[:200]}")
                failed += 1
                continue
            ok = infer_case(a.onnxtl, model, x, y, ref, label, ["--device", a.device],
                            dict(os.environ, ONNXTL_FALLBACK_OPS=a.fallback))
            if ok is None:
                print(f"SKIP layout tests on {a.device}: onnxtl finds no CUDA GPU")
                return 0
            failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

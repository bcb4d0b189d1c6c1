#!/usr/bin/python3
"""Export a torchvision classifier to ONNX and compute PyTorch reference outputs.

Random weights (fixed seed) unless --pretrained: this machine cannot download
weights.  BatchNorm running statistics are randomised too, so that folding
BatchNorm into Conv is exercised by the parity tests rather than being a no-op.

  export_torchvision.py --arch resnet50 --opset 13 [--no-fold] --out DIR
      writes DIR/<arch>_op<opset>_<fold|nofold>.onnx
  export_torchvision.py --arch resnet50 --reference --out DIR
      writes DIR/<arch>_input.npy (float32, batch 4) and DIR/<arch>_ref.npy
      (the float64 PyTorch output for that input)

--no-fold exports with do_constant_folding=False and TrainingMode.PRESERVE on
the eval-mode model, which keeps BatchNormalization nodes and the exporter's
Shape/Gather/Unsqueeze/Concat arithmetic in the graph.
"""
import argparse
import inspect
import os
import sys

import numpy as np
import torch
import torchvision


def input_size(arch):
    """The crop of the architecture's torchvision evaluation transform (224, 299, 384...)."""
    try:
        return torchvision.models.get_model_weights(arch).DEFAULT.transforms().crop_size[0]
    except (AttributeError, ValueError, KeyError):
        return 224


def build_model(arch, pretrained):
    torch.manual_seed(0)
    ctor = getattr(torchvision.models, arch)
    model = ctor(weights="DEFAULT") if pretrained else ctor()
    if not pretrained:
        gen = torch.Generator().manual_seed(1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)
    return model.eval()


def export(model, path, opset, fold, size):
    x = torch.randn(1, 3, size, size)
    mode = torch.onnx.TrainingMode.EVAL if fold else torch.onnx.TrainingMode.PRESERVE
    tmp = path + ".tmp"
    # Newer torch defaults to the dynamo exporter; the TorchScript one matches torch 1.13's files.
    extra = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    torch.onnx.export(model, x, tmp, opset_version=opset, do_constant_folding=fold,
                      training=mode, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, **extra)
    os.replace(tmp, path)


def reference(model, out_dir, arch, batch, size):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 3, size, size, generator=gen)
    with torch.no_grad():
        y = model.double()(x.double())
    np.save(os.path.join(out_dir, f"{arch}_input.npy"), x.numpy())
    np.save(os.path.join(out_dir, f"{arch}_ref.npy"), y.numpy())


def main():
    torch.set_num_threads(os.cpu_count() or 1)  # Debian's torch starts with one thread
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, help="torchvision model name, e.g. resnet50, vgg16")
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--no-fold", action="store_true", help="keep BatchNorm and shape arithmetic")
    ap.add_argument("--reference", action="store_true", help="write input and float64 output")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, help="input height and width (default: the crop of the architecture's "
                    "torchvision transform: 224, 299 for inception_v3, 384 for efficientnet_v2_s)")
    ap.add_argument("--pretrained", action="store_true", help="ImageNet weights (needs network)")
    ap.add_argument("--output", help="exact .onnx path (default: derived from the options)")
    ap.add_argument("--out", default=".", help="output folder")
    args = ap.parse_args()
    args.size = args.size or input_size(args.arch)
    os.makedirs(args.out, exist_ok=True)
    model = build_model(args.arch, args.pretrained)
    if args.reference:
        reference(model, args.out, args.arch, args.batch, args.size)
        return 0
    path = args.output or os.path.join(
        args.out, f"{args.arch}_op{args.opset}_{'nofold' if args.no_fold else 'fold'}.onnx")
    export(model, path, args.opset, not args.no_fold, args.size)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Export the small CNN that the classic Dogs-vs-Cats workflow trains from
scratch (about 76% there), with torch's default random initialisation from a
fixed seed, to ONNX for `onnxtl train`:

    input [N, 3, 64, 64]: Resize([64, 64]) then ToTensor(), no normalisation
    features: Conv(3->64), Conv(64->64), MaxPool, Conv(64->128), Conv(128->128),
              MaxPool, Conv(128->256), Conv(256->256), MaxPool, Conv(256->512),
              Conv(512->512), Conv(512->512), MaxPool; every Conv 3x3, padding
              1, followed by ReLU
    classifier: Linear(4*4*512, 1024), ReLU, Dropout(0.5), Linear(1024, 1024),
                ReLU, Dropout(0.5), Linear(1024, 2)

The Dropout nodes are kept (TrainingMode.TRAINING), so that training drops.

  export_small_cnn.py --out small_cnn.onnx [--seed 0] [--classes 2]
"""
import argparse

import torch
from torch import nn


def small_cnn(classes):
    layers, channels = [], 3
    for width, convs in ((64, 2), (128, 2), (256, 2), (512, 3)):
        for _ in range(convs):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(),
                         nn.Linear(4 * 4 * 512, 1024), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(1024, 1024), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(1024, classes))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", type=int, default=2)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = small_cnn(a.classes).train()
    torch.onnx.export(model, torch.zeros(1, 3, 64, 64), a.out, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)


if __name__ == "__main__":
    main()

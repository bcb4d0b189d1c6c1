#!/usr/bin/python3
"""The peer of `onnxtl train` for `make bench`, printing "<images> <seconds>".

small: one epoch of the small CNN (tools/export_small_cnn.py, the weights of
its ONNX file) on DATA_DIR/train (the folder onnxtl trains on, as one
unsplit <class>/*.jpg folder), as the classic workflow trains it in torch:
ImageFolder with Resize([64, 64]) and ToTensor(), a shuffling DataLoader,
Adam lr 1e-5, cross-entropy, dropout on.

finetune: one epoch of ResNet18's layer4 and fc (the weights of MODEL, which
`export` writes: torchvision's resnet18 with fc = Linear(512, 2), random
init) on DATA_DIR/train, the rest frozen and recomputed for every batch as
the book's script does: ImageFolder with torchvision's ImageNet evaluation
transform, BatchNorm frozen (eval mode), Adam lr 1e-5.

usage: bench_train.py small DATA_DIR MODEL THREADS BATCH
       bench_train.py finetune DATA_DIR MODEL THREADS BATCH
       bench_train.py export MODEL
"""
import os
import sys
import time

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torchvision import datasets, transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_small_cnn import small_cnn  # noqa: E402


def onnx_weights(model):
    return {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load(model).graph.initializer}


def epoch(net, params, data, transform, batch):
    ds = datasets.ImageFolder(os.path.join(data, "train"), transform)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=1)
    opt = torch.optim.Adam(params, lr=1e-5)
    start, n = time.time(), 0
    for x, y in loader:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        n += x.shape[0]
    print(n, f"{time.time() - start:.3f}")


def small(data, model, batch):
    net = small_cnn(2).train()
    net.load_state_dict(onnx_weights(model))
    epoch(net, net.parameters(), data, transforms.Compose([transforms.Resize([64, 64]), transforms.ToTensor()]), batch)


def resnet18():
    import torchvision
    return torchvision.models.resnet18(num_classes=2)


def finetune(data, model, batch):
    net = resnet18().eval()  # BatchNorm statistics frozen
    net.load_state_dict({**net.state_dict(), **onnx_weights(model)})
    for name, p in net.named_parameters():
        p.requires_grad = name.startswith(("layer4.", "fc."))
    params = [p for p in net.parameters() if p.requires_grad]
    transform = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    epoch(net, params, data, transform, batch)


def randomize_batchnorm(net):
    """Random BatchNorm parameters and statistics: the exporter merges initializers of equal values, and a fresh
    BatchNorm's weight and running variance (all ones) would become one tensor."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.1, 0.1)
    return net


def export(model):
    torch.manual_seed(0)
    net = randomize_batchnorm(resnet18())
    torch.onnx.export(net.eval(), torch.zeros(1, 3, 224, 224), model, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)


def main():
    if sys.argv[1] == "export":
        return export(sys.argv[2])
    data, model, threads, batch = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    (small if sys.argv[1] == "small" else finetune)(data, model, batch)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""End-to-end peers for `make bench`: JPEG files to backbone features.

  torch: torchvision ImageFolder + transforms + DataLoader + the same torch
         model (the exported weights), features at the classifier input.
  ort:   PIL + torchvision transforms, batches fed to ONNX Runtime 1.30 CPU
         (onnxruntime-node) running the exported model.
Prints "<peer> <images> <seconds> <img/s>".

usage: bench_pipelines.py torch|ort DATA_DIR ARCH MODEL THREADS BATCH
"""
import os
import struct
import subprocess
import sys
import time

import numpy as np
import torch
from torchvision import datasets, transforms

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
import export_torchvision  # noqa: E402

TRANSFORM = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])


def bench_torch(data, arch, threads, batch):
    torch.set_num_threads(threads)
    model = export_torchvision.build_model(arch, pretrained=False)
    if arch.startswith("resnet"):
        model.fc = torch.nn.Identity()
    else:
        model.classifier = torch.nn.Identity()
    ds = datasets.ImageFolder(data, TRANSFORM)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=threads)
    start, n = time.time(), 0
    with torch.no_grad():
        for x, _ in loader:
            model(x)
            n += x.shape[0]
    return n, time.time() - start


def bench_ort(data, model, threads, batch):
    ds = datasets.ImageFolder(data, TRANSFORM)
    node = subprocess.Popen(["node", os.path.join(os.path.dirname(__file__), "ort_features.js"), model,
                             str(batch), str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    start, n = time.time(), 0
    for b in range(0, len(ds), batch):
        x = np.stack([ds[i][0].numpy() for i in range(b, min(b + batch, len(ds)))])
        node.stdin.write(struct.pack("<I", x.shape[0]) + x.astype(np.float32).tobytes())
        node.stdin.flush()
        node.stdout.read(x.shape[0] * 1000 * 4)
        n += x.shape[0]
    node.stdin.close()
    node.wait()
    return n, time.time() - start


def main():
    peer, data, arch, model, threads, batch = sys.argv[1:7]
    threads, batch = int(threads), int(batch)
    n, secs = bench_torch(data, arch, threads, batch) if peer == "torch" else bench_ort(data, model, threads, batch)
    print(f"{peer} {n} {secs:.1f} {n / secs:.1f}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The peer of `onnxtl train` for `make bench`: one epoch of the small CNN
(tools/export_small_cnn.py, the weights of its ONNX file) on DATA_DIR/train
(the folder onnxtl trains on, as one unsplit <class>/*.jpg folder),
as the classic workflow trains it in torch: ImageFolder with Resize([64, 64])
and ToTensor(), a shuffling DataLoader, Adam lr 1e-5, cross-entropy, dropout
on.  Prints "<images> <seconds>".

usage: bench_train.py DATA_DIR MODEL THREADS BATCH
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


def main():
    data, model, threads, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    net = small_cnn(2).train()
    net.load_state_dict({t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
                         for t in onnx.load(model).graph.initializer})
    ds = datasets.ImageFolder(os.path.join(data, "train"),
                              transforms.Compose([transforms.Resize([64, 64]), transforms.ToTensor()]))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-5)
    start, n = time.time(), 0
    for x, y in loader:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        n += x.shape[0]
    print(n, f"{time.time() - start:.3f}")


if __name__ == "__main__":
    main()

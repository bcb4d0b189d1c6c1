#!/usr/bin/python3
"""PyTorch 1.13 CPU training the same head on the same features, as the peer
for fit-head in `make bench`: Adam lr 1e-5, batch 16, shuffled, cross entropy.
Prints the seconds the training loop took (loading the arrays not counted).

usage: bench_fit_head.py NPY_PREFIX linear|mlp EPOCHS THREADS
"""
import sys
import time

import numpy as np
import torch


def main():
    prefix, head, epochs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    x = torch.from_numpy(np.load(prefix + "_features.npy"))
    y = torch.from_numpy(np.load(prefix + "_labels.npy"))
    train = torch.from_numpy(np.load(prefix + "_splits.npy")) != 2
    x, y = x[train], y[train]
    d, c = x.shape[1], int(y.max()) + 1
    if head == "linear":
        model = torch.nn.Linear(d, c)
    else:
        model = torch.nn.Sequential(torch.nn.Linear(d, 4096), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                    torch.nn.Linear(4096, 4096), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                    torch.nn.Linear(4096, c))
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True)
    start = time.time()
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    print(f"{time.time() - start:.2f}")


if __name__ == "__main__":
    main()

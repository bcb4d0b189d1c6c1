#!/usr/bin/python3
"""Trainer parity with PyTorch: on the same features and the same initial
weights, with a fixed batch order, onnxtl fit-head's per-step losses and
final weights must match torch.optim.Adam, and SGD with momentum and weight
decay, within 1e-5 relative over at least 100 steps, for a linear head and a
small MLP head with dropout off, and for the MLP with dropout 0.5, torch
applying the masks that runtime/dropout.h's hash of (seed, step, layer,
index) gives.

With --device cuda the same comparisons run the GPU trainer (limit 1e-4:
cuBLAS sums in another order), and an MLP trained with dropout and shuffling
on the GPU must match the CPU trainer, which draws the same masks.  Skips,
saying so, without a GPU.

usage: trainer_parity.py ONNXTL SHARED_DATA [--device cuda]
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from extract_tests import model, subset  # noqa: E402

CASES = [  # (label, fit-head flags, torch optimizer factory)
    ("Adam lr 1e-4", ["--optim", "adam", "--lr", "1e-4"], lambda p: torch.optim.Adam(p, lr=1e-4)),
    ("SGD lr 1e-3 momentum 0.9 weight decay 1e-3", ["--optim", "sgd", "--lr", "1e-3", "--momentum", "0.9", "--weight-decay", "1e-3"],
     lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, weight_decay=1e-3)),
]
HEADS = [("linear", [], []), ("MLP 512-64-32-2", ["--head", "mlp", "--hidden", "64,32"], [64, 32])]
BATCH, EPOCHS, SEED = 16, 5, 11


def mix64(z):
    """splitmix64's finaliser (graph/mix64.h) on uint64 arrays."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
    return z ^ (z >> np.uint64(31))


def dropout_kept(seed, step, site, shape, ratio):
    """Which values dropout keeps, as runtime/dropout.h documents its draw:
    the hash of (seed, step, site, index) against the ratio."""
    with np.errstate(over="ignore"):
        salt = np.array([(step * 0x9e3779b97f4a7c15 + site) % 2**64], dtype=np.uint64)
        key = mix64(np.uint64(seed) ^ mix64(salt))
        u = (mix64(key + np.arange(np.prod(shape), dtype=np.uint64)) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return torch.from_numpy((u >= ratio).reshape(shape))


def torch_head(dims, init_dir):
    layers = []
    for i in range(len(dims) - 1):
        lin = torch.nn.Linear(dims[i], dims[i + 1])
        lin.weight.data = torch.from_numpy(np.load(os.path.join(init_dir, f"w{i}.npy")))
        lin.bias.data = torch.from_numpy(np.load(os.path.join(init_dir, f"b{i}.npy")))
        layers.append(lin)
    return torch.nn.ModuleList(layers)


def torch_forward(head, x, dropout, seed, step):
    """The head with inverted dropout after each hidden ReLU, on the masks onnxtl draws."""
    for site, lin in enumerate(head):
        x = lin(x)
        if site + 1 < len(head):
            x = torch.relu(x)
            if dropout:
                x = x * dropout_kept(seed, step, site, x.shape, dropout) / (1 - dropout)
    return x


def torch_train(x, y, dims, init_dir, make_opt, dropout=0.0, seed=0):
    head = torch_head(dims, init_dir)
    opt = make_opt(head.parameters())
    losses = []
    for _ in range(EPOCHS):
        for s in range(0, len(x), BATCH):
            opt.zero_grad()
            logits = torch_forward(head, torch.from_numpy(x[s:s + BATCH]), dropout, seed, len(losses))
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[s:s + BATCH]))
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return np.array(losses), [p.detach().numpy() for p in head.parameters()]


def no_gpu(stderr):
    return "no CUDA GPU" in stderr or "built without CUDA" in stderr


def weights_error(dir_a, dir_b, layers):
    err = 0.0
    for i in range(layers):
        for kind in "wb":
            a, b = np.load(os.path.join(dir_a, f"{kind}{i}.npy")), np.load(os.path.join(dir_b, f"{kind}{i}.npy"))
            err = max(err, float(np.max(np.abs(a - b)) / np.max(np.abs(b))))
    return err


def dropout_case(onnxtl, feats, d, device):
    """The same MLP with dropout and shuffling, trained on the GPU and on the CPU."""
    outs = {}
    for dev in ("cpu", device):
        outs[dev] = os.path.join(d, f"dropout_{dev}")
        os.makedirs(outs[dev], exist_ok=True)
        r = subprocess.run([onnxtl, "fit-head", feats, "-o", "none", "--quiet", "--head", "mlp", "--hidden", "64,32",
                            "--dropout", "0.5", "--lr", "1e-4", "--epochs", "3", "--seed", "7", "--keep", "last",
                            "--save-weights", outs[dev], "--device", dev], capture_output=True, text=True)
        if r.returncode:
            print(f"FAIL trainer parity {device} against cpu with dropout: {r.stderr.strip()}")
            return 1
    err = weights_error(outs[device], outs["cpu"], 3)
    ok = err <= 1e-4
    print(f"{'PASS' if ok else 'FAIL'} trainer parity MLP with dropout 0.5 and shuffling, {device} against cpu: "
          f"weights rel. error {err:.2e} (limit 1e-4)", flush=True)
    return not ok


def main():
    onnxtl, shared = sys.argv[1], sys.argv[2]
    device = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--device" else "cpu"
    limit = 1e-5 if device == "cpu" else 1e-4
    if not os.path.isdir(os.path.join(shared, "dogscats")):
        print(f"SKIP trainer parity: {shared}/dogscats is missing (real photos live in ../shared)")
        return 0
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        data = subset(shared, d, 200, 10)
        feats = os.path.join(d, "f.bin")
        subprocess.run([onnxtl, "extract", model(), data, "-o", feats, "--quiet"], check=True)
        subprocess.run([onnxtl, "features", feats, "--npy", os.path.join(d, "np")], check=True, stdout=subprocess.DEVNULL)
        x = np.load(os.path.join(d, "np_features.npy"))
        y = np.load(os.path.join(d, "np_labels.npy"))
        train = np.load(os.path.join(d, "np_splits.npy")) == 0
        x, y = np.ascontiguousarray(x[train]), y[train]
        for head_label, head_flags, hidden in HEADS:
            dims = [x.shape[1]] + hidden + [2]
            init = os.path.join(d, "init")
            os.makedirs(init, exist_ok=True)
            torch.manual_seed(3)
            for i, lin in enumerate(torch.nn.Linear(dims[k], dims[k + 1]) for k in range(len(dims) - 1)):
                np.save(os.path.join(init, f"w{i}.npy"), lin.weight.detach().numpy())
                np.save(os.path.join(init, f"b{i}.npy"), lin.bias.detach().numpy())
            # The MLP once more with dropout 0.5, torch applying the masks
            # dropout.h's documented hash gives for each step and layer.
            dropped = [("Adam lr 1e-4, dropout 0.5", CASES[0][1], CASES[0][2], 0.5)] if hidden else []
            for opt_label, opt_flags, make_opt, dropout in [c + (0.0,) for c in CASES] + dropped:
                out = os.path.join(d, "out")
                os.makedirs(out, exist_ok=True)
                log = os.path.join(d, "log.jsonl")
                r = subprocess.run([onnxtl, "fit-head", feats, "-o", os.path.join(d, "m.onnx"), "--quiet", "--no-shuffle",
                                    "--dropout", str(dropout), "--seed", str(SEED), "--keep", "last", "--batch", str(BATCH), "--epochs", str(EPOCHS),
                                    "--init-from", init, "--save-weights", out, "--log", log, "--device", device]
                                   + head_flags + opt_flags, capture_output=True, text=True)
                if r.returncode and no_gpu(r.stderr):
                    print(f"SKIP trainer parity on {device}: {r.stderr.strip()}")
                    return 0
                if r.returncode:
                    print(f"FAIL trainer parity {head_label} {opt_label}: {r.stderr.strip()}")
                    failed += 1
                    continue
                ours_loss = np.array([j["loss"] for j in map(json.loads, open(log)) if "step" in j])
                ref_loss, ref_params = torch_train(x, y, dims, init, make_opt, dropout, SEED)
                # relative to the loss scale: per-step ratios of near-zero float32 losses mean nothing
                loss_err = float(np.max(np.abs(ours_loss - ref_loss)) / np.max(np.abs(ref_loss)))
                w_err = 0.0
                for i in range(len(dims) - 1):
                    for kind, ref in (("w", ref_params[2 * i]), ("b", ref_params[2 * i + 1])):
                        ours = np.load(os.path.join(out, f"{kind}{i}.npy"))
                        w_err = max(w_err, float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref))))
                ok = len(ours_loss) == len(ref_loss) >= 100 and loss_err <= limit and w_err <= limit
                print(f"{'PASS' if ok else 'FAIL'} trainer parity {head_label}, {opt_label}{'' if device == 'cpu' else ' on ' + device}: "
                      f"{len(ours_loss)} steps, loss rel. error {loss_err:.2e}, weights rel. error {w_err:.2e} "
                      f"(limit {limit:g}); loss {ref_loss[0]:.4f} -> {ref_loss[-1]:.4f}", flush=True)
                failed += not ok
        if device != "cpu":
            failed += dropout_case(onnxtl, feats, d, device)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

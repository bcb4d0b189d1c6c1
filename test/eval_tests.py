#!/usr/bin/python3
"""eval's figures against the libraries users know them from, on real photos
sorted into seven classes: top-1 and top-5 as torchvision's reference scripts
compute them (torch.topk) from `onnxtl run`'s probabilities, the per-class
table as scikit-learn's classification_report prints it, and the expected
calibration error computed here with numpy.

usage: eval_tests.py ONNXTL SHARED_DATA
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch
from sklearn.metrics import classification_report

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from extract_tests import failed_count, model, report  # noqa: E402

CLASSES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]  # top-5 of 7 can miss


def seven_classes(shared, d, train, test):
    """Photos dealt round-robin into seven classes."""
    root = os.path.join(d, "data")
    photos = sorted(os.path.join(shared, "dogscats", "train", c, f) for c in ("cat", "dog")
                    for f in sorted(os.listdir(os.path.join(shared, "dogscats", "train", c)))[:(train + test) * 4])
    n = len(CLASSES)
    for i, p in enumerate(photos[:n * (train + test)]):
        split = "train" if i < n * train else "test"
        os.makedirs(os.path.join(root, split, CLASSES[i % n]), exist_ok=True)
        os.symlink(os.path.abspath(p), os.path.join(root, split, CLASSES[i % n], os.path.basename(p)))
    return root


def sh(*args):
    return subprocess.run(args, capture_output=True, text=True)


def fine_tune(onnxtl, data, d):
    feats, out = os.path.join(d, "f.bin"), os.path.join(d, "model.onnx")
    r1 = sh(onnxtl, "extract", model(), data, "-o", feats, "--quiet")
    r2 = sh(onnxtl, "fit-head", feats, "-o", out, "--epochs", "3", "--lr", "1e-3", "--quiet")
    report(r1.returncode == 0 and r2.returncode == 0, "a seven-class model: extract, then fit-head",
           (r1.stderr + r2.stderr).strip()[-200:])
    return out


def seven_class_model(onnxtl, shared, d):
    """A model fitted on photos dealt into seven classes, and their test folder."""
    data = seven_classes(shared, d, 10, 8)
    return fine_tune(onnxtl, data, d), os.path.join(data, "test")


def class_report_block(text):
    """The lines of eval's text from the table's header to the weighted average."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.split() == ["precision", "recall", "f1-score", "support"])
    end = next(i for i, l in enumerate(lines) if l.lstrip().startswith("weighted avg"))
    return "\n".join(lines[start:end + 1]) + "\n"


def main():
    onnxtl, shared = sys.argv[1], sys.argv[2]
    if not os.path.isdir(os.path.join(shared, "dogscats")):
        print(f"SKIP eval tests: {shared}/dogscats is missing")
        return 0
    with tempfile.TemporaryDirectory() as d:
        mdl, test = seven_class_model(onnxtl, shared, d)
        r = sh(onnxtl, "eval", mdl, test, "--json")
        ev = json.loads(r.stdout) if r.returncode == 0 else {}
        text = sh(onnxtl, "eval", mdl, test).stdout
        runs = [json.loads(l) for l in sh(onnxtl, "run", mdl, test, "--json", "--top", str(len(CLASSES))).stdout.splitlines()]
        if not ev or len(runs) != ev["images"]:
            report(False, "eval --json and run --json on the seven-class test folder", r.stderr.strip()[-200:])
            return 1
        names = ev["classes"]
        probs = np.array([[{p["class"]: p["probability"] for p in x["predictions"]}[c] for c in names] for x in runs])
        truth = np.array([names.index(os.path.basename(os.path.dirname(x["path"]))) for x in runs])

        _, top5 = torch.topk(torch.from_numpy(probs), 5, dim=1)
        hits = top5 == torch.from_numpy(truth)[:, None]
        acc1, acc5 = 100 * hits[:, :1].any(1).double().mean().item(), 100 * hits.any(1).double().mean().item()
        line = f"Acc@1 {acc1:.3f} Acc@5 {acc5:.3f}"
        report(abs(ev["top1"] * 100 - acc1) < 1e-3 and abs(ev["top5"] * 100 - acc5) < 1e-3 and text.startswith(line),
               "eval's top-1 and top-5 equal torch.topk's on run's probabilities, printed as torchvision's reference "
               "scripts print them", f"{line}; eval {ev['top1']:.4f} {ev['top5']:.4f}")

        by_path = {os.path.join(test, x["path"]): x for x in ev["predictions"]}
        y_true = [names.index(by_path[x["path"]]["label"]) for x in runs]
        y_pred = [names.index(by_path[x["path"]]["predicted"]) for x in runs]
        theirs = classification_report(y_true, y_pred, labels=list(range(len(names))), target_names=names, digits=4,
                                       zero_division=0)
        ours = class_report_block(text)
        report(ours == theirs,
               "eval's per-class table equals scikit-learn's classification_report, character for character",
               f"ours:\n{ours}theirs:\n{theirs}" if ours != theirs else f"{len(names)} classes, {len(y_true)} photos")
        sk = classification_report(y_true, y_pred, labels=list(range(len(names))), target_names=names,
                                   output_dict=True, zero_division=0)
        worst = max(abs(sk[c][k] - p[m]) for c, p in zip(names, ev["per_class"])
                    for k, m in (("precision", "precision"), ("recall", "recall"), ("f1-score", "f1")))
        report(worst < 1e-6 and abs(sk["macro avg"]["f1-score"] - ev["macro_avg"]["f1"]) < 1e-6 and
               abs(sk["weighted avg"]["f1-score"] - ev["weighted_avg"]["f1"]) < 1e-6,
               "eval --json's per-class, macro and weighted figures equal scikit-learn's", f"max |diff| {worst:.1e}")

        conf, right = probs.max(1), probs.argmax(1) == truth
        bins = np.minimum((conf * 10).astype(int), 9)
        ece = sum((bins == b).sum() / len(conf) * abs(right[bins == b].mean() - conf[bins == b].mean())
                  for b in range(10) if (bins == b).any())
        shown = re.search(r"expected calibration error \(10 bins\): ([0-9.]+)", text)
        report(abs(ev["ece"] - ece) < 1e-5 and shown and abs(float(shown.group(1)) - ece) < 1e-4,
               "eval's expected calibration error equals numpy's over 10 equal bins of run's probabilities",
               f"ece {ece:.6f}, eval {ev['ece']:.6f}")
    return 1 if failed_count() else 0


if __name__ == "__main__":
    sys.exit(main())

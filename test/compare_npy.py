#!/usr/bin/python3
"""Compares onnxtl's output with a reference: max |ours - ref| <= tol * max |ref|.

usage: compare_npy.py OURS.npy REF.npy [--rows N] [--tol 1e-4] [--label TEXT]
--rows compares only the first N rows of the reference (batch 1 against a batch-4 reference).
Prints one line with the measured error; exit status 1 when over tolerance.
"""
import argparse
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("ref")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    ours = np.load(a.ours).astype(np.float64)
    ref = np.load(a.ref).astype(np.float64)
    if a.rows:
        ref = ref[: a.rows]
    if ours.shape != ref.shape:
        print(f"FAIL {a.label}: shape {ours.shape}, expected {ref.shape}")
        return 1
    err = float(np.max(np.abs(ours - ref)))
    scale = float(np.max(np.abs(ref)))
    ok = np.isfinite(ours).all() and (err <= a.tol * scale if scale else err == 0)
    print(f"{'PASS' if ok else 'FAIL'} {a.label}: max|diff| {err:.3g}, max|ref| {scale:.3g}, "
          f"relative {err / scale if scale else err:.3g} (limit {a.tol:g}{'' if scale else '; all-zero reference: exact'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

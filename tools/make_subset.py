#!/usr/bin/python3
"""Builds a Dogs-vs-Cats ImageFolder (train/{cat,dog}, test/{cat,dog}) from
Microsoft's Kaggle zip (PetImages/Cat/*.jpg, PetImages/Dog/*.jpg).

usage: make_subset.py ZIP OUT_DIR TRAIN_PER_CLASS TEST_PER_CLASS
"""
import os
import sys
import zipfile


def main():
    zip_path, out, n_train, n_test = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with zipfile.ZipFile(zip_path) as z:
        for src, cls in (("Cat", "cat"), ("Dog", "dog")):
            names = sorted(n for n in z.namelist() if n.startswith(f"PetImages/{src}/") and n.endswith(".jpg"))
            for i, name in enumerate(names[: n_train + n_test]):
                split = "train" if i < n_train else "test"
                dst = os.path.join(out, split, cls, f"{cls}.{i}.jpg")
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with open(dst, "wb") as f:
                    f.write(z.read(name))


if __name__ == "__main__":
    main()

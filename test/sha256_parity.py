#!/usr/bin/python3
"""SHA-256 (which ties a features file to its exact model) against Python's
hashlib, for both implementations (portable, and SHA-NI where the CPU has it),
on files of every length around the 64-byte block and padding boundaries,
random megabytes, and a real exported model.

usage: sha256_parity.py TEST_HASH MODEL
"""
import hashlib
import os
import subprocess
import sys
import tempfile


def main():
    test_sha256, model = sys.argv[1], sys.argv[2]
    rng = __import__("random").Random(11)
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        files = []
        for n in list(range(0, 130)) + [1000, 4095, 4096, 65535, 65536, 65537, 3 << 20]:
            path = os.path.join(d, f"{n}.bin")
            with open(path, "wb") as f:
                f.write(bytes(rng.getrandbits(8) for _ in range(n)) if n < 70000 else os.urandom(n))
            files.append(path)
        if os.path.exists(model):
            files.append(model)
        out = subprocess.run([test_sha256] + files, capture_output=True, text=True, check=True).stdout.splitlines()
        bad = []
        for line, path in zip(out, files):
            portable, fast, _ = line.split(" ", 2)
            with open(path, "rb") as f:
                want = hashlib.sha256(f.read()).hexdigest()
            if portable != want or fast != want:
                bad.append(os.path.basename(path))
        ok = not bad and len(out) == len(files)
        print(f"{'PASS' if ok else 'FAIL'} sha256 portable and SHA-NI against hashlib: {len(files)} files "
              f"(0-129 bytes, block and page edges, 3 MiB, {os.path.basename(model)}){'; wrong: ' + ', '.join(bad) if bad else ''}")
        failed += not ok
    return failed


if __name__ == "__main__":
    sys.exit(main())

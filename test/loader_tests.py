#!/usr/bin/python3
"""The zero-copy loader: weights used where the file holds them, external
data mapped, aligned or not, and the model file never written.

Every output is compared with the torch reference that parity.py uses and
with the same model stored inline.

usage: loader_tests.py ONNXTL
"""
import hashlib
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from extract_tests import MODELS, failed_count, model, report  # noqa: E402


def infer(onnxtl, path, inp, out):
    return subprocess.run([onnxtl, "infer", path, "--input", f"input={inp}", "--output", out],
                          capture_output=True, text=True)


def against_reference(onnxtl, path, arch, d, label):
    """Runs path on the arch's reference input; returns the output, or None on failure."""
    out = os.path.join(d, "out.npy")
    r = infer(onnxtl, path, os.path.join(MODELS, f"{arch}_input.npy"), out)
    if r.returncode != 0:
        report(False, label, r.stderr.strip())
        return None
    r = subprocess.run([sys.executable, os.path.join(HERE, "compare_npy.py"), out,
                        os.path.join(MODELS, f"{arch}_ref.npy"), "--label", label], capture_output=True, text=True)
    print(r.stdout.strip(), flush=True)
    return np.load(out) if r.returncode == 0 else None


def save_external(src, d, one_file):
    m = onnx.load(src)
    path = os.path.join(d, "model.onnx")
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=one_file,
                    location="weights.bin", size_threshold=0)
    return path


def save_external_misaligned(src, d):
    """Each tensor one byte past a 4-byte boundary, so that none can be used in place."""
    m = onnx.load(src)
    with open(os.path.join(d, "odd.bin"), "wb") as f:
        for t in m.graph.initializer:
            if not t.HasField("raw_data"):
                continue
            f.write(b"\0" * (1 + (-(f.tell() + 1)) % 4))
            offset = f.tell()
            f.write(t.raw_data)
            t.ClearField("raw_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            for k, v in (("location", "odd.bin"), ("offset", str(offset)), ("length", str(f.tell() - offset))):
                e = t.external_data.add()
                e.key, e.value = k, v
    path = os.path.join(d, "model.onnx")
    onnx.save(m, path)
    return path


def test_external(onnxtl, d):
    arch = "resnet18"
    inline = against_reference(onnxtl, model(arch), arch, d, f"{arch} stored inline")
    cases = (("in one external file", lambda e: save_external(model(arch), e, True)),
             ("in a file per tensor", lambda e: save_external(model(arch), e, False)),
             ("in one external file, every tensor misaligned", lambda e: save_external_misaligned(model(arch), e)))
    for what, save in cases:
        e = tempfile.mkdtemp(dir=d)
        got = against_reference(onnxtl, save(e), arch, e, f"{arch} with its weights {what}")
        same = got is not None and inline is not None and np.array_equal(got, inline)
        report(same, f"{arch} with its weights {what} gives the inline model's output bit for bit")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def test_file_never_written(onnxtl, d):
    """BatchNorm folding rewrites the convolutions' weights where they lie: in a private mapping."""
    arch = "resnet18"
    path = model(arch, "nofold")
    before = sha256(path)
    got = against_reference(onnxtl, path, arch, d, f"{arch} with BatchNorm folded at load time")
    report(got is not None and sha256(path) == before,
           f"{arch}: folding BatchNorm into weights used in place leaves the model file as it was", f"sha256 {before[:16]}")


def peak_mib(args):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024


def test_peak_memory(onnxtl):
    path = model("vgg16")
    size = os.path.getsize(path) / 2**20
    code, peak = peak_mib([onnxtl, "info", path])
    # A loader that copies holds the weights at least once besides the file's pages (twice before this loader).
    report(code == 0 and peak < size / 2, "info on vgg16 peaks under half the model file's size: its weights "
           "are not copied where they are aligned", f"file {size:.0f} MiB, peak {peak:.0f} MiB")


def main():
    onnxtl = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        test_external(onnxtl, d)
        test_file_never_written(onnxtl, d)
        test_peak_memory(onnxtl)
    sys.exit(1 if failed_count() else 0)


if __name__ == "__main__":
    main()

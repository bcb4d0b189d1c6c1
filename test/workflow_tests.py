#!/usr/bin/python3
"""The whole workflow on real photos: extract, fit-head, eval, run; the
exported model checked by ONNX Runtime; bad features files and bad images.

usage: workflow_tests.py ONNXTL SHARED_DATA
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from PIL import Image
from torchvision import transforms

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from extract_tests import failed_count, grow_disk, model, report, small_disk, subset  # noqa: E402


def run(onnxtl, *args):
    return subprocess.run([onnxtl] + list(args), capture_output=True, text=True)


def epochs_of(stdout):
    """(train loss, test acc) per epoch line of fit-head."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("epoch ") and "train loss" in line:
            words = line.replace(",", "").split()
            out.append((float(words[words.index("loss") + 1]), float(words[-1])))
    return out


def ort_probabilities(model_path, images):
    """ONNX Runtime 1.30 (onnxruntime-node) on torchvision-preprocessed photos."""
    t = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    x = np.stack([t(Image.open(p).convert("RGB")).numpy() for p in images]).astype(np.float32)
    node = subprocess.run(["node", os.path.join(ROOT, "tools", "ort_features.js"), model_path, str(len(images)), "2"],
                          input=struct.pack("<I", len(images)) + x.tobytes(), capture_output=True)
    if node.returncode:
        raise RuntimeError(node.stderr.decode()[-300:])
    return np.frombuffer(node.stdout, np.float32).reshape(len(images), -1)


def exported_weights_intact(backbone, exported):
    """The loader parses without copying payloads; the export writes them back as the file had them."""
    theirs = {t.name: t for t in onnx.load(backbone).graph.initializer}
    ours = onnx.load(exported).graph.initializer
    kept = [t for t in ours if t.name in theirs]
    return kept and all(t.raw_data == theirs[t.name].raw_data and not t.UnknownFields() for t in kept) and \
        all(not t.UnknownFields() for t in ours)


def test_workflow(onnxtl, shared, d, arch="resnet18"):
    d = os.path.join(d, arch)
    os.makedirs(d)
    data = subset(shared, d, 150, 40)
    feats, mdl = os.path.join(d, "f.bin"), os.path.join(d, "model.onnx")
    r = run(onnxtl, "extract", model(arch), data, "-o", feats, "--quiet")
    report(r.returncode == 0, f"workflow {arch}: extract", r.stderr.strip()[-200:])
    r = run(onnxtl, "fit-head", feats, "-o", mdl, "--lr", "1e-3", "--epochs", "5", "--keep", "last",
            "--head-only", os.path.join(d, "head.onnx"))
    ep = epochs_of(r.stdout)
    # Random weights: ResNet18's features separate the photos a little, so its loss must fall; the
    # random MobileNet's are close to constant, so for the other backbones only the five epochs are checked.
    falls = ep and (ep[-1][0] < ep[0][0] or arch != "resnet18")
    report(r.returncode == 0 and len(ep) == 5 and falls,
           f"workflow {arch}: fit-head trains 5 epochs{', the loss falls' if arch == 'resnet18' else ''}",
           f"losses {[e[0] for e in ep]}; {r.stderr.strip()[-200:]}")
    report(r.returncode == 0 and exported_weights_intact(model(arch), mdl),
           f"workflow {arch}: the exported model holds the backbone's weights byte for byte and only ONNX's fields")
    r = run(onnxtl, "eval", mdl, os.path.join(data, "test"), "--json")
    ev = json.loads(r.stdout) if r.returncode == 0 else {}
    report(ev and ep and abs(ev["accuracy"] - ep[-1][1]) < 1e-9, f"workflow {arch}: eval agrees with fit-head's test accuracy",
           f"eval {ev.get('accuracy')}, fit-head {ep[-1][1] if ep else None}")
    r = run(onnxtl, "run", mdl, os.path.join(data, "test"))
    got = {}
    for line in r.stdout.splitlines():
        path, cls, _ = line.split("\t")
        got[os.path.relpath(path, os.path.join(data, "test"))] = cls
    same = ev and all(got.get(p["path"]) == p["predicted"] for p in ev["predictions"]) and len(got) == len(ev["predictions"])
    report(r.returncode == 0 and same, f"workflow {arch}: run agrees with eval image by image", f"{len(got)} images")
    images = sorted(os.path.join(data, "test", c, f) for c in ("cat", "dog") for f in os.listdir(os.path.join(data, "test", c)))[:24]
    r = run(onnxtl, "run", mdl, *images, "--json", "--top", "2")
    ours = np.array([[p["probability"] for p in sorted(json.loads(l)["predictions"], key=lambda q: q["class"])]
                     for l in r.stdout.splitlines()]) if r.returncode == 0 else None
    try:
        theirs = ort_probabilities(mdl, images)
        err = float(np.abs(ours - theirs).max()) if ours is not None else float("inf")
    except Exception as e:  # noqa: BLE001
        err, theirs = float("inf"), str(e)
    report(err <= 1e-4, f"workflow {arch}: ONNX Runtime 1.30 on the exported model gives onnxtl run's probabilities",
           f"{len(images)} photos, max |diff| {err:.2e} (limit 1e-4)")
    return feats, mdl


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def test_bad_inputs(onnxtl, shared, d, feats, mdl):
    blob = open(feats, "rb").read()
    bad = os.path.join(d, "bad.bin")
    open(bad, "wb").write(blob[:-777])
    r = run(onnxtl, "fit-head", bad, "-o", os.path.join(d, "x.onnx"))
    report(r.returncode == 1 and "truncated" in r.stderr and bad in r.stderr, "fit-head refuses a truncated features file",
           r.stderr.strip())
    # a NaN in the first row, with its checksum fixed so only the value is wrong
    hdr = struct.unpack_from("<8sIIQQQII", blob)
    rows_offset, dim, row_bytes = hdr[4], hdr[6], hdr[7]
    row = bytearray(blob[rows_offset:rows_offset + row_bytes])
    row[0:4] = struct.pack("<f", float("nan"))
    row[-4:] = struct.pack("<I", crc32c(bytes(row[:-4])))
    open(bad, "wb").write(blob[:rows_offset] + bytes(row) + blob[rows_offset + row_bytes:])
    r = run(onnxtl, "fit-head", bad, "-o", os.path.join(d, "x.onnx"))
    report(r.returncode == 1 and "non-finite" in r.stderr, "fit-head refuses non-finite features", r.stderr.strip())
    # an image path that leads outside the data folder, with both checksums fixed
    meta = blob[128:128 + hdr[3]]
    first = meta.split(b"\nimage=", 1)[1].split(b"\n", 1)[0].split(b"\t")[2]
    for hostile in (b"/" + b"x" * (len(first) - 1), (b"../" * len(first))[:len(first) - 1] + b"x"):
        altered = bytearray(blob)
        start = 128 + meta.index(b"\t" + first + b"\n") + 1
        altered[start:start + len(first)] = hostile
        struct.pack_into("<I", altered, 80, crc32c(bytes(altered[128:128 + hdr[3]])))
        struct.pack_into("<I", altered, 84, crc32c(bytes(altered[:84])))
        open(bad, "wb").write(bytes(altered))
        for cmd in (["features", bad], ["features", bad, "--npy", os.path.join(d, "x")],
                    ["fit-head", bad, "-o", os.path.join(d, "x.onnx")]):
            r = run(onnxtl, *cmd)
            report(r.returncode == 1 and bad in r.stderr and "not inside the data folder" in r.stderr,
                   f"{cmd[0]}{' --npy' if '--npy' in cmd else ''} refuses a features file whose image path "
                   f"{'is absolute' if hostile.startswith(b'/') else 'climbs out with ..'}", r.stderr.strip()[-160:])
    one = os.path.join(d, "one")
    os.makedirs(os.path.join(one, "cat"))
    src = os.path.join(os.path.abspath(shared), "dogscats", "train", "cat")
    for f in sorted(os.listdir(src))[:4]:
        os.symlink(os.path.join(src, f), os.path.join(one, "cat", f))
    run(onnxtl, "extract", model(), one, "-o", os.path.join(d, "one.bin"), "--quiet")
    r = run(onnxtl, "fit-head", os.path.join(d, "one.bin"), "-o", os.path.join(d, "x.onnx"))
    report(r.returncode == 1 and "only one class" in r.stderr, "fit-head refuses a features file with one class", r.stderr.strip())
    r = run(onnxtl, "fit-head", feats, "--frobnicate", "1")
    report(r.returncode == 2 and "unknown option '--frobnicate'" in r.stderr, "fit-head refuses unknown flags", r.stderr.strip().splitlines()[0])
    r = run(onnxtl, "fit-head", feats, "--backbone", os.path.join(ROOT, "build", "models", "resnet18_op17_nofold.onnx"))
    report(r.returncode == 1 and "not the model the features were extracted with" in r.stderr,
           "fit-head refuses a backbone other than the features' model", r.stderr.strip())
    good = sorted(os.path.join(src, f) for f in os.listdir(src))[:2]
    broken = os.path.join(d, "broken.jpg")
    open(broken, "wb").write(open(good[0], "rb").read()[:3000])
    r = run(onnxtl, "run", mdl, good[0], broken, good[1])
    report(r.returncode == 1 and "broken.jpg" in r.stderr and len(r.stdout.splitlines()) == 2,
           "run names a bad image, classifies the others and exits 1", r.stderr.strip().splitlines()[0] if r.stderr else "")


def test_fit_head_disk_full(onnxtl, d, feats):
    """fit-head writes its model to FILE.tmp and renames it: on a full disk the model already there stays whole."""
    with small_disk(d, "64m", "fit-head") as mnt:
        if mnt is None:
            return
        out, ref = os.path.join(mnt, "model.onnx"), os.path.join(d, "seed1.onnx")
        fit = ["fit-head", feats, "--epochs", "2", "--quiet"]
        first = run(onnxtl, *fit, "-o", out)
        kept = open(out, "rb").read() if first.returncode == 0 else b""
        r = run(onnxtl, *fit, "--seed", "1", "-o", out)  # a second 43 MiB model does not fit beside the first
        report(first.returncode == 0 and r.returncode == 1 and "No space left on device" in r.stderr and
               len(r.stderr.splitlines()) == 1 and open(out, "rb").read() == kept and
               not os.path.exists(out + ".tmp"),
               "fit-head on a full disk fails in one line, leaving the previous model whole and no temporary file",
               r.stderr.strip())
        grow_disk(mnt, "128m")
        r = run(onnxtl, *fit, "--seed", "1", "-o", out)
        run(onnxtl, *fit, "--seed", "1", "-o", ref)
        report(r.returncode == 0 and open(out, "rb").read() == open(ref, "rb").read(),
               "fit-head run again once there is space writes the model an uninterrupted run writes, byte for byte",
               r.stderr.strip()[-200:])


def main():
    onnxtl, shared = sys.argv[1], sys.argv[2]
    if not os.path.isdir(os.path.join(shared, "dogscats")):
        print(f"SKIP workflow tests: {shared}/dogscats is missing (real photos live in ../shared)")
        return 0
    subprocess.run([os.path.join(ROOT, "tools", "install_ort.sh")], check=True)
    with tempfile.TemporaryDirectory() as d:
        feats, mdl = test_workflow(onnxtl, shared, d)
        test_bad_inputs(onnxtl, shared, d, feats, mdl)
        test_fit_head_disk_full(onnxtl, d, feats)
        for arch in ("mobilenet_v3_large", "vit_b_16"):  # modern backbones, end to end
            test_workflow(onnxtl, shared, d, arch)
    return 1 if failed_count() else 0


if __name__ == "__main__":
    sys.exit(main())

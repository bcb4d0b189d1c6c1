#!/usr/bin/python3
"""Preprocessing parity: onnxtl's input tensor against torchvision's transform
(PIL) on real Dogs-vs-Cats photos of varied sizes, plus generated grayscale,
CMYK, progressive, tiny and large JPEGs.  Measured in [0,1] pixel units:
mean |diff| <= 0.002 and max |diff| <= 0.02, per transform variant.

usage: preprocess_parity.py DUMP_TOOL SHARED_DATA
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image
from torchvision import transforms

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
CAFFE = ([103.94, 116.78, 123.68], [1.0, 1.0, 1.0])  # BGR means of 0-255 pixels
RGB, BGR_255, HWC = {}, {"OTL_DUMP_CHANNELS": "bgr", "OTL_DUMP_SCALE": "255"}, {"OTL_DUMP_LAYOUT": "hwc"}
VARIANTS = [  # (label, resize, crop, mean, std, torchvision transform, onnxtl's channels/scale/layout)
    ("Resize(256)+CenterCrop(224)+ImageNet", "256", "224", IMAGENET,
     [transforms.Resize(256), transforms.CenterCrop(224)], RGB),
    ("CenterCrop(224) only", "none", "224", IMAGENET, [transforms.CenterCrop(224)], RGB),
    ("Resize([64,64]), mean=std=0.5", "64x64", "none", ([0.5] * 3, [0.5] * 3),
     [transforms.Resize([64, 64])], RGB),
    ("BGR 0-255 with Caffe's means", "256", "227", CAFFE, [transforms.Resize(256), transforms.CenterCrop(227)], BGR_255),
    ("channels-last output (NHWC models)", "256", "224", IMAGENET,
     [transforms.Resize(256), transforms.CenterCrop(224)], HWC),
]


def reference(img, tv, mean, std, pixels):
    """torchvision's tensor, then what the channel order, pixel scale and layout ask of it."""
    x = transforms.Compose(tv + [transforms.ToTensor()])(img).numpy().astype(np.float64)
    scale = 255.0 if pixels.get("OTL_DUMP_SCALE") == "255" else 1.0
    if pixels.get("OTL_DUMP_CHANNELS") == "bgr":
        x = x[::-1]
    x = (x * scale - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    return x.transpose(1, 2, 0) if pixels.get("OTL_DUMP_LAYOUT") == "hwc" else x


def pick_photos(shared, n=56):
    """Photos spread over the range of sizes found in the data set."""
    files = []
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            d = os.path.join(shared, "dogscats", split, cls)
            files += [os.path.join(d, f) for f in sorted(os.listdir(d))[:150]]
    sized = sorted((Image.open(f).size, f) for f in files)
    step = max(1, len(sized) // n)
    return [f for _, f in sized[::step]][:n]


def special_jpegs(src, d):
    img = Image.open(src).convert("RGB")
    out = []
    for name, im, kw in [
        ("gray.jpg", img.convert("L"), {}),
        ("cmyk.jpg", img.convert("CMYK"), {}),
        ("progressive.jpg", img, {"progressive": True}),
        ("tiny.jpg", img.resize((150, 100)), {}),
        ("large.jpg", img.resize((1600, 1200)), {"quality": 90}),
        ("portrait.jpg", img.transpose(Image.Transpose.ROTATE_90), {}),
    ]:
        p = os.path.join(d, name)
        im.save(p, **kw)
        out.append(p)
    return out


def main():
    tool, shared = sys.argv[1], sys.argv[2]
    if not os.path.isdir(os.path.join(shared, "dogscats")):
        print(f"SKIP preprocess parity: {shared}/dogscats is missing (real photos live in ../shared)")
        return 0
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        images = pick_photos(shared) + special_jpegs(pick_photos(shared, 3)[1], d)
        sizes = sorted({Image.open(f).size for f in images})
        for label, resize, crop, (mean, std), tv, pixels in VARIANTS:
            out = os.path.join(d, label.replace(" ", "_").replace("/", "_"))
            os.makedirs(out)
            subprocess.run([tool, out, resize, crop, ",".join(map(str, mean)), ",".join(map(str, std))] + images,
                           check=True, env=dict(os.environ, **pixels))
            # back to [0,1] pixel units: times std, over the pixel scale
            unit = np.array(std, np.float64) / (255.0 if pixels.get("OTL_DUMP_SCALE") == "255" else 1.0)
            unit = unit if pixels.get("OTL_DUMP_LAYOUT") == "hwc" else unit[:, None, None]
            worst, total, count, exact, errs = 0.0, 0.0, 0, 0, []
            for i, f in enumerate(images):
                err_file = os.path.join(out, f"{i}.err")
                if os.path.exists(err_file):
                    errs.append(f"{os.path.basename(f)}: {open(err_file).read().strip()}")
                    continue
                ours = np.load(os.path.join(out, f"{i}.npy")).astype(np.float64)
                ref = reference(Image.open(f).convert("RGB"), tv, mean, std, pixels)
                if ours.shape != ref.shape:
                    errs.append(f"{os.path.basename(f)}: shape {ours.shape} vs {ref.shape}")
                    continue
                diff = np.abs(ours - ref) * unit
                worst = max(worst, diff.max())
                total += diff.sum()
                count += diff.size
                exact += int(diff.max() < 1e-6)
            mean_diff = total / max(count, 1)
            ok = not errs and worst <= 0.02 and mean_diff <= 0.002
            print(f"{'PASS' if ok else 'FAIL'} preprocess {label}: {len(images)} images "
                  f"({len(sizes)} sizes, {exact} bit-exact), mean|diff| {mean_diff:.2e}, "
                  f"max|diff| {worst:.2e}" + (f"; errors: {errs[:3]}" if errs else ""))
            failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

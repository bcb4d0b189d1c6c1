#!/usr/bin/python3
"""Preprocessing parity: onnxtl's input tensor against torchvision's transform
(PIL) on real Dogs-vs-Cats photos of varied sizes, plus generated grayscale,
CMYK, progressive, tiny and large JPEGs.  Measured in [0,1] pixel units:
mean |diff| <= 0.002 and max |diff| <= 0.02, per transform variant.

Augmentation (train --augment): each image's RandomResizedCrop box and
flip, applied by torchvision (F.resized_crop, F.hflip) against onnxtl's
tensor, within the same bounds; and 4000 draws' scale, aspect ratio and
flip rate against torchvision's RandomResizedCrop.get_params'.

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


def augment_parity(tool, images, d):
    """onnxtl's augmented tensor against torchvision applying the same box and flip."""
    import torchvision.transforms.functional as F
    out = os.path.join(d, "augment")
    os.makedirs(out)
    env = dict(os.environ, OTL_DUMP_AUGMENT="flip,crop", OTL_DUMP_SEED="7")
    mean, std = IMAGENET
    subprocess.run([tool, out, "256", "224", ",".join(map(str, mean)), ",".join(map(str, std))] + images,
                   check=True, env=env)
    worst, flips, errs = 0.0, 0, []
    for i, f in enumerate(images):
        if not os.path.exists(os.path.join(out, f"{i}.box")):
            errs.append(os.path.basename(f))
            continue
        cropped, left, top, w, h, flipped = map(int, open(os.path.join(out, f"{i}.box")).read().split())
        img = F.resized_crop(Image.open(f).convert("RGB"), top, left, h, w, [224, 224],
                             transforms.InterpolationMode.BILINEAR)
        img = F.hflip(img) if flipped else img
        ref = reference(img, [], mean, std, RGB)
        ours = np.load(os.path.join(out, f"{i}.npy")).astype(np.float64)
        worst = max(worst, (np.abs(ours - ref) * np.array(std)[:, None, None]).max() if ours.shape == ref.shape else 1)
        flips += flipped
    ok = not errs and worst <= 0.02
    print(f"{'PASS' if ok else 'FAIL'} augment flip,crop: {len(images)} images, {flips} flipped, as torchvision's "
          f"resized_crop and hflip of the same boxes, max|diff| {worst:.2e}" + (f"; errors: {errs[:3]}" if errs else ""))
    return ok


def augment_draws(tool):
    """The boxes' scale and log aspect ratio, and the flip rate, over 4000 draws on a 500x375 photo, against
    torchvision's own RandomResizedCrop.get_params and RandomHorizontalFlip."""
    import torch
    env = dict(os.environ, OTL_DUMP_AUGMENT="flip,crop", OTL_DUMP_SEED="3", OTL_DUMP_DRAWS="4000 500x375")
    r = subprocess.run([tool, "x", "256", "224", "0", "1", "x"], capture_output=True, text=True, env=env, check=True)
    ours = np.array([list(map(int, line.split())) for line in r.stdout.splitlines()], np.float64)
    torch.manual_seed(0)
    img = Image.new("RGB", (500, 375))
    theirs = np.array([transforms.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(4000)],
                      np.float64)  # top, left, height, width
    scale = lambda w, h: w * h / (500 * 375)  # noqa: E731
    s_ours, s_theirs = scale(ours[:, 3], ours[:, 4]), scale(theirs[:, 3], theirs[:, 2])
    r_ours, r_theirs = np.log(ours[:, 3] / ours[:, 4]), np.log(theirs[:, 3] / theirs[:, 2])
    inside = (ours[:, 1] >= 0).all() and (ours[:, 2] >= 0).all() and (ours[:, 1] + ours[:, 3] <= 500).all() and \
        (ours[:, 2] + ours[:, 4] <= 375).all()
    flip = ours[:, 5].mean()
    ok = inside and abs(s_ours.mean() - s_theirs.mean()) < 0.02 and abs(s_ours.std() - s_theirs.std()) < 0.02 and \
        abs(r_ours.mean() - r_theirs.mean()) < 0.02 and abs(r_ours.std() - r_theirs.std()) < 0.02 and abs(flip - 0.5) < 0.03
    print(f"{'PASS' if ok else 'FAIL'} augment draws against torchvision's RandomResizedCrop over 4000 boxes: scale "
          f"mean {s_ours.mean():.3f} vs {s_theirs.mean():.3f}, sd {s_ours.std():.3f} vs {s_theirs.std():.3f}; log "
          f"ratio mean {r_ours.mean():.3f} vs {r_theirs.mean():.3f}, sd {r_ours.std():.3f} vs {r_theirs.std():.3f}; "
          f"flipped {flip:.3f}; boxes inside: {inside}")
    return ok


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
        failed += not augment_parity(tool, images, d)
        failed += not augment_draws(tool)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

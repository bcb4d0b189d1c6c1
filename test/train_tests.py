#!/usr/bin/python3
"""onnxtl train against torch, on real photos from ../shared.

* Step parity: the small CNN of tools/export_small_cnn.py trained from scratch
  at 64x64 with the same initial weights (read from the ONNX file), dropout
  off and the images in a fixed order: every step's loss and the final
  weights within 1e-4 relative of torch's, over 52 steps (batch 2), with SGD
  (momentum, weight decay) and Adam (weights within 1e-3 norm-wise there:
  see test_small_cnn for why no float32 Adam gets closer).
* ResNet18 fine-tuned whole with frozen BatchNorm: one step's gradients
  against torch.autograd in float64, then 8 SGD steps against torch.
* Fine-tuning on cached activations: ResNet18's layer4 and fc trained on
  the layer3 output that extract --cut cached, 52 steps of Adam and of SGD
  against torch on the same activations, and with AdamW, parameter groups,
  the cosine and step schedules and BatchNorm in train mode; --from on images takes the same
  steps; what a cache must match is refused in one line.
* VGG16's last convolution block and MLP classifier on cached pool4
  activations at 64x64, 52 Adam steps against torch.
* --head linear|mlp: a new classifier, initialised as nn.Linear, trained
  with layer4 as torch trains it; ONNX Runtime runs what it writes.
* --augment repeats whatever the number of decoders (its boxes are checked
  against torchvision in preprocess_parity.py).
* Resume: a run killed with SIGKILL and resumed ends as an uninterrupted
  one, byte for byte; a checkpoint of another run or a damaged one is refused.
* Gradients of every op with a backward pass, one SGD step on small models
  against torch.autograd: Conv with groups, strides, asymmetric padding and
  dilation, MaxPool with padding and ceil_mode, AveragePool with and
  without the pads counted, a broadcasting Add, GlobalAveragePool, Gemm with
  transB 0 and 1 and alpha, beta, Relu, Flatten, Reshape and Dropout.
* The trained model is standard ONNX: ONNX Runtime runs it and agrees with
  onnxtl within 1e-4.
* Dropout drops in training (with the mask torch's inverted dropout implies).
* A model it cannot train is refused in one line naming the node.

usage: train_tests.py ONNXTL SHARED_DATA
"""
import json
import os
import subprocess
import sys
import signal
import tempfile
import time

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from bench_train import randomize_batchnorm  # noqa: E402
from export_small_cnn import small_cnn  # noqa: E402
from extract_tests import failed_count, model, report, subset  # noqa: E402

MODELS = os.path.join(HERE, "..", "build", "models")
SMALL = ["--resize", "64x64", "--crop", "none", "--mean", "0,0,0", "--std", "1,1,1"]
BATCH = 2  # 26 photos, 4 epochs: 52 steps
torch.set_num_threads(2)


def sh(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True)


def small_cnn_path():
    path = os.path.join(MODELS, "small_cnn.onnx")
    if not os.path.exists(path):
        os.makedirs(MODELS, exist_ok=True)
        subprocess.run([sys.executable, os.path.join(HERE, "..", "tools", "export_small_cnn.py"), "--out", path],
                       check=True)
    return path


def weights(path):
    return {t.name: numpy_helper.to_array(t).copy() for t in onnx.load(path).graph.initializer}


def train_images(data, size=64):
    """ImageFolder's order (classes, then files, sorted), as Resize([size, size]) + ToTensor give them."""
    xs, ys = [], []
    root = os.path.join(data, "train")
    for label, cls in enumerate(sorted(os.listdir(root))):
        for f in sorted(os.listdir(os.path.join(root, cls))):
            img = Image.open(os.path.join(root, cls, f)).convert("RGB").resize((size, size), Image.BILINEAR)
            xs.append(np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0)
            ys.append(label)
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys)


def torch_steps(net, params, make_opt, x, y, batch, epochs):
    opt = make_opt(params)
    losses = []
    for _ in range(epochs):
        for s in range(0, len(x), batch):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x[s:s + batch]), y[s:s + batch])
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


def ours(onnxtl, mdl, data, out, *flags):
    log = out + ".log"
    r = sh(onnxtl, "train", mdl, data, "-o", out, "--no-shuffle", "--no-dropout", "--log", log, "--quiet", *flags)
    if r.returncode:
        return None, r.stderr.strip()
    steps = [json.loads(line) for line in open(log)]
    return [s["loss"] for s in steps if "step" in s], ""


def relative(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def torch_train(w0, make_opt, x, y, dtype):
    net = small_cnn(2).eval().to(dtype)  # eval: dropout off
    net.load_state_dict({k: torch.from_numpy(v).to(dtype) for k, v in w0.items()})
    losses = torch_steps(net, net.parameters(), make_opt, x.to(dtype), y, BATCH, 4)
    return losses, {k: v.detach().double().numpy() for k, v in net.state_dict().items()}


def norm_relative(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def test_small_cnn(onnxtl, shared, d):
    """SGD: losses and weights within 1e-4 of torch's.  Adam divides each gradient by its own running size, so
    where a gradient is near zero its update follows the last bits of the sums, which no two float32
    implementations share: torch in float32 itself strays from torch in float64 by 5-16% of what the 52 steps
    moved each tensor, and by how much depends on the CPU.  onnxtl's Adam must match torch's losses within 1e-4
    at every step, and its weights must stray from torch float64's no further than twice torch float32's own
    drift (or 10% of the update, whichever is more), tensor by tensor relative to the update; a wrong update
    (bias correction, epsilon) misses by a multiple of the update."""
    mdl = small_cnn_path()
    data = subset(shared, d, 13, 4)
    x, y = train_images(data)
    w0 = weights(mdl)
    for label, flags, make_opt in (
            ("Adam lr 1e-5", ["--optim", "adam", "--lr", "1e-5"], lambda p: torch.optim.Adam(p, lr=1e-5)),
            ("SGD lr 1e-3, momentum 0.9, weight decay 1e-3",
             ["--optim", "sgd", "--lr", "1e-3", "--momentum", "0.9", "--weight-decay", "1e-3"],
             lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, weight_decay=1e-3))):
        out = os.path.join(d, "trained.onnx")
        losses, err = ours(onnxtl, mdl, data, out, "--batch", str(BATCH), "--epochs", "4", *SMALL, *flags)
        ref, ref_w = torch_train(w0, make_opt, x, y, torch.float32)
        exact_w = torch_train(w0, make_opt, x, y, torch.float64)[1] if label.startswith("Adam") else None
        if losses is None or len(losses) != len(ref):
            report(False, f"train the small CNN ({label})", err or f"{len(losses)} steps, torch {len(ref)}")
            continue
        loss_rel = max(abs(a - b) / abs(b) for a, b in zip(losses, ref))
        trained = {k: v.astype(np.float64) for k, v in weights(out).items()}
        if label.startswith("SGD"):
            w_rel = max(relative(trained[k], ref_w[k]) for k in ref_w)
            detail, ok = f"weights within {w_rel:.2e} of torch's (limit 1e-4)", w_rel <= 1e-4
        else:
            def drift(w):  # the distance to float64's weights over how far training moved them, worst tensor
                return max(norm_relative(w[k], exact_w[k]) / norm_relative(exact_w[k], w0[k]) for k in exact_w
                           if np.any(exact_w[k] != w0[k]))
            ours_drift, limit = drift(trained), max(2 * drift(ref_w), 0.1)
            detail = (f"weights stray from torch float64's by {ours_drift:.1%} of the update, torch float32's by "
                      f"{drift(ref_w):.1%} (limit {limit:.1%})")
            ok = ours_drift <= limit
        report(len(losses) >= 50 and loss_rel <= 1e-4 and ok,
               f"the small CNN from scratch at 64x64, {label}: every step's loss and the final weights as torch's",
               f"{len(losses)} steps, losses within {loss_rel:.2e} (limit 1e-4), {detail}")


def resnet18_path():
    """torchvision's ResNet18 with fc = Linear(512, 2), random weights and BatchNorm statistics, at 64x64,
    exported with its BatchNormalization nodes."""
    path = os.path.join(MODELS, "resnet18_2class_64.onnx")
    if not os.path.exists(path):
        import torchvision
        torch.manual_seed(0)
        net = randomize_batchnorm(torchvision.models.resnet18(num_classes=2))
        torch.onnx.export(net.eval(), torch.zeros(1, 3, 64, 64), path, opset_version=17, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    return path


def resnet18_torch(onnx_w, dtype):
    import torchvision
    net = torchvision.models.resnet18(num_classes=2).eval()  # eval: BatchNorm statistics frozen
    state = net.state_dict()
    # the export names each parameter and buffer after the module that holds it
    net.load_state_dict({**state, **{k: torch.from_numpy(onnx_w[k]) for k in state if k in onnx_w}})
    missing = [k for k in state if k not in onnx_w and not k.endswith("num_batches_tracked")]
    return net.to(dtype), missing


def normalized(x):
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return (x - mean[:, None, None]) / std[:, None, None]


def test_resnet18_frozen_bn(onnxtl, shared, d):
    """ResNet18 fine-tuned whole with its BatchNorm statistics frozen (torch's eval mode): strided and 1x1
    Convs, BatchNormalization's scale and shift, residual Adds, GlobalAveragePool.  One SGD step's gradient
    against torch.autograd in float64, then 8 steps of SGD with momentum against torch.  (Longer runs part as
    torch float32 and float64 part: ReLU networks amplify the last bits, 1e-3 by step 50 here.)"""
    mdl = resnet18_path()
    onnx_w = weights(mdl)
    pre = ["--resize", "64x64", "--crop", "none"]
    one = subset(shared, os.path.join(d, "one"), 1, 1)
    x1, y1 = train_images(one)
    out = os.path.join(d, "resnet18_step.onnx")
    losses, err = ours(onnxtl, mdl, one, out, "--batch", "2", "--epochs", "1", "--optim", "sgd", "--lr", "1", *pre)
    net, missing = resnet18_torch(onnx_w, torch.float64)
    if losses is None or missing:
        report(False, "one SGD step through ResNet18", err or f"not in the ONNX file: {missing}")
        return
    loss = torch.nn.functional.cross_entropy(net(normalized(x1).double()), y1)
    loss.backward()
    stepped = weights(out)
    g_rel = max(relative(onnx_w[k] - stepped[k], p.grad.numpy()) for k, p in net.named_parameters())
    report(abs(losses[0] - loss.item()) <= 1e-5 * loss.item() and g_rel <= 1e-4,
           "ResNet18 with frozen BatchNorm: the gradient of every weight, BatchNorm's scale and shift included, "
           "against torch.autograd in float64", f"loss {losses[0]:.7f} vs {loss.item():.7f}, gradients within "
           f"{g_rel:.2e} (limit 1e-4)")
    data = subset(shared, d, 8, 2)
    x, y = train_images(data)
    out = os.path.join(d, "resnet18_trained.onnx")
    losses, err = ours(onnxtl, mdl, data, out, "--batch", "2", "--epochs", "1", "--optim", "sgd", "--lr", "1e-4",
                       "--momentum", "0.9", *pre)
    net, _ = resnet18_torch(onnx_w, torch.float32)
    ref = torch_steps(net, net.parameters(), lambda p: torch.optim.SGD(p, lr=1e-4, momentum=0.9), normalized(x), y, 2, 1)
    if losses is None or len(losses) != len(ref):
        report(False, "8 SGD steps of ResNet18", err)
        return
    trained = weights(out)
    loss_rel = max(abs(a - b) / abs(b) for a, b in zip(losses, ref))
    w_rel = max(relative(trained[k], v.detach().numpy()) for k, v in net.named_parameters())
    frozen = all(np.array_equal(trained[k], onnx_w[k]) for k in onnx_w if k.endswith(("running_mean", "running_var")))
    report(loss_rel <= 1e-4 and w_rel <= 1e-4 and frozen, "ResNet18 fine-tuned whole with frozen BatchNorm, SGD with "
           "momentum: every step's loss and the final weights as torch's in eval mode",
           f"{len(losses)} steps, losses within {loss_rel:.2e}, weights within {w_rel:.2e} (limit 1e-4), "
           f"statistics unchanged: {frozen}")


# Step parity is defined only away from ReLU's kink: a pre-activation within float32's error of zero may fall
# on either side in two implementations, and its gradient with it (one such value, 5e-9 of its ReLU's largest,
# moved ResNet18's layer4.0.conv1 gradient 1e-2 from torch's, and batch-2 training spread that to 2e-3 in the
# losses).  torch in float32 parts from its own float64 so too (VGG16's last block: 7e-5 in the losses, where
# onnxtl stayed within 5e-8 of float64), so the references on caches run in float64, and each case takes the
# first subset of the photos (13 training photos per class, then the next 13, ...) along whose torch steps
# every ReLU input stays at least RELU_MARGIN from zero, relative to the largest at that ReLU in that step.
# 1e-7 was too close: float32 sums over thousands of products err by about that much, and oneDNN's blocked
# kernels, summing in their own order, put a ReLU input 1.2e-7 of its largest from zero on the other side;
# 5e-7 leaves them five times that.
RELU_MARGIN = 5e-7
SUBSETS = 20


class relu_watch:
    """Within it, worst is the smallest |input| of any nn.ReLU that runs, relative to the largest in its input."""

    def __enter__(self):
        self.worst = 1.0
        self.hook = torch.nn.modules.module.register_module_forward_pre_hook(self.see)  # pre: torch's work in place
        return self

    def see(self, module, inp):
        if isinstance(module, torch.nn.ReLU):
            v = inp[0].detach().abs()
            self.worst = min(self.worst, float(v.min()) / max(float(v.max()), 1e-300))

    def __exit__(self, *exc):
        self.hook.remove()


class Caches:
    """extract --cut (at 64x64) of successive subsets of the photos, 13 training photos per class, each made once
    when first asked for: (data, feats, x, y), x the training rows as a tensor of `shape`, or None."""

    def __init__(self, onnxtl, shared, d, mdl, cut, name, shape):
        self.args, self.made = (onnxtl, shared, d, mdl, cut, name, shape), {}

    def __getitem__(self, i):
        if i not in self.made:
            self.made[i] = self.extract(i)
        return self.made[i]

    def extract(self, i):
        onnxtl, shared, d, mdl, cut, name, shape = self.args
        root = os.path.join(d, f"subset{i}")
        data, feats = subset(shared, root, 13, 2, 13 * i), os.path.join(root, name)
        r = sh(onnxtl, "extract", mdl, data, "--cut", cut, "--resize", "64x64", "--crop", "none", "-o", feats, "--quiet")
        r = r if r.returncode else sh(onnxtl, "features", feats, "--npy", os.path.join(root, "np"))
        if r.returncode:
            report(False, f"extract the output of {cut}", r.stderr.strip())
            return None
        x, y, split = (np.load(os.path.join(root, f"np_{k}.npy")) for k in ("features", "labels", "splits"))
        return data, feats, torch.from_numpy(x[split == 0].reshape(-1, *shape)), torch.from_numpy(y[split == 0])


def conditioned(caches, label, reference, margin=RELU_MARGIN):
    """The first cache along whose torch steps (reference(data, feats, x, y)) every ReLU input keeps `margin`
    from zero: (the cache, what reference returned), or (None, None) after reporting that none did."""
    for i in range(SUBSETS):
        cache = caches[i]
        if cache is None:
            return None, None
        with relu_watch() as watch:
            ref = reference(*cache)
        if watch.worst >= margin:
            return cache, ref
        print(f"({label}: along torch's steps on photos {13 * i + 1} to {13 * i + 13} a ReLU input came within "
              f"{watch.worst:.1e} of its largest of zero; the next 13)")
    report(False, f"{label}: photos along whose torch steps every ReLU input keeps {margin:g} of its largest "
           "from zero", f"none of {SUBSETS} subsets")
    return None, None


LAYER3 = "/layer3/layer3.1/relu_1/Relu_output_0"


def cached_layer3(onnxtl, shared, d):
    """ResNet18's layer3 output cached by extract --cut, for successive subsets of the photos: (model, Caches)."""
    mdl = resnet18_path()
    return mdl, Caches(onnxtl, shared, d, mdl, LAYER3, "layer3.bin", (256, 4, 4))


def resnet18_tail(onnx_w, dtype):
    """ResNet18 with the ONNX file's weights, and its layers after layer3."""
    net, _ = resnet18_torch(onnx_w, dtype)
    return net, torch.nn.Sequential(net.layer4, net.avgpool, torch.nn.Flatten(), net.fc)


def test_resnet18_layer4_cached(onnxtl, shared, d):
    """Fine-tuning on cached activations: ResNet18's layer4 and fc trained from layer3's output, which
    extract --cut computed once, against torch training the same parameters on the same activations (BatchNorm
    frozen), 52 steps of Adam lr 1e-5 and of SGD with momentum.  Nothing before the cut changes, and training
    from the images with --from takes the same steps as training from the cache."""
    mdl, caches = cached_layer3(onnxtl, shared, d)
    onnx_w = weights(mdl)
    tail_names = ("layer4.", "fc.")
    for label, flags, make_opt in (
            ("Adam lr 1e-5", ["--optim", "adam", "--lr", "1e-5"], lambda p: torch.optim.Adam(p, lr=1e-5)),
            ("SGD lr 1e-4, momentum 0.9", ["--optim", "sgd", "--lr", "1e-4", "--momentum", "0.9"],
             lambda p: torch.optim.SGD(p, lr=1e-4, momentum=0.9))):

        def reference(data, feats, x, y, make_opt=make_opt):
            net, tail = resnet18_tail(onnx_w, torch.float64)
            return net, torch_steps(tail, [*net.layer4.parameters(), *net.fc.parameters()], make_opt, x.double(), y,
                                    2, 4)

        cache, got = conditioned(caches, f"layer4 and fc, {label}", reference)
        if cache is None:
            continue
        net, ref = got
        out = os.path.join(d, "layer4.onnx")
        losses, err = ours(onnxtl, mdl, cache[1], out, "--batch", "2", "--epochs", "4", *flags)
        if losses is None or len(losses) != len(ref):
            report(False, f"train ResNet18's layer4 and fc on cached layer3 activations ({label})", err)
            continue
        trained = weights(out)
        loss_rel = max(abs(a - b) / abs(b) for a, b in zip(losses, ref))
        w_rel = max(relative(trained[k], v.detach().numpy()) for k, v in net.named_parameters() if k.startswith(tail_names))
        frozen = all(np.array_equal(trained[k], v) for k, v in onnx_w.items() if not k.startswith(tail_names))
        report(len(losses) >= 50 and loss_rel <= 1e-4 and w_rel <= 1e-4 and frozen,
               f"ResNet18's layer4 and fc on cached layer3 activations, {label}: every step's loss and the final "
               "weights as torch's, and nothing before the cut changed", f"{len(losses)} steps, losses within "
               f"{loss_rel:.2e}, weights within {w_rel:.2e} (limit 1e-4), frozen part unchanged: {frozen}")
    groups_and_schedules(onnxtl, d, mdl, caches, onnx_w)
    half_cache(onnxtl, d, mdl, caches, onnx_w)
    bn_train_mode(onnxtl, d, mdl, caches, onnx_w)
    if caches[0] is None:
        return
    data, feats, _, _ = caches[0]
    views_cache(onnxtl, d, mdl, data)
    # at extract's batch size (16), the frozen layers run on the images as they ran for the cache
    cached_losses, _ = ours(onnxtl, mdl, feats, os.path.join(d, "a.onnx"), "--batch", "16", "--epochs", "2")
    image_losses, err = ours(onnxtl, mdl, data, os.path.join(d, "b.onnx"), "--batch", "16", "--epochs", "2",
                             "--from", LAYER3, "--resize", "64x64", "--crop", "none")
    same = image_losses is not None and len(image_losses) == len(cached_losses) and \
        max(abs(a - b) / abs(b) for a, b in zip(image_losses, cached_losses)) <= 1e-6
    report(same, "train DATA_DIR --from TENSOR (the frozen layers run every epoch) takes the steps training on "
           "the cache takes", err or f"{image_losses[:3] if image_losses else None} vs {cached_losses[:3]}")


def half_cache(onnxtl, d, mdl, caches, onnx_w):
    """extract --dtype fp16: every value as numpy rounds it to float16, rows of half the size, and 52 Adam steps
    on the cache as torch takes them on the same rounded activations."""

    def reference(data, feats, x, y):
        net, tail = resnet18_tail(onnx_w, torch.float64)
        return torch_steps(tail, [*net.layer4.parameters(), *net.fc.parameters()],
                           lambda p: torch.optim.Adam(p, lr=1e-5), x.half().double(), y, 2, 4)

    cache, ref = conditioned(caches, "an fp16 cache", reference)
    if cache is None:
        return
    data, feats, _, _ = cache
    half = os.path.join(os.path.dirname(feats), "layer3_fp16.bin")
    r = sh(onnxtl, "extract", mdl, data, "--cut", LAYER3, "--resize", "64x64", "--crop", "none", "--dtype", "fp16",
           "-o", half, "--quiet")
    r = r if r.returncode else sh(onnxtl, "features", half, "--npy", os.path.join(os.path.dirname(feats), "np16"))
    if r.returncode:
        report(False, "extract --dtype fp16", r.stderr.strip())
        return
    full, halves = (np.load(os.path.join(os.path.dirname(feats), f"{k}_features.npy")) for k in ("np", "np16"))
    rounded = full.astype(np.float16).astype(np.float32)
    rows, dim = full.shape
    sizes = os.path.getsize(feats) - os.path.getsize(half)
    report(np.array_equal(halves, rounded) and sizes == rows * dim * 2,
           "extract --dtype fp16 stores every feature as numpy rounds it to float16, in rows half the size",
           f"{int((halves != rounded).sum())} of {halves.size} values differ; file {sizes} bytes smaller "
           f"(expected {rows * dim * 2})")
    out = os.path.join(d, "layer4_fp16.onnx")
    losses, err = ours(onnxtl, mdl, half, out, "--batch", "2", "--epochs", "4", "--optim", "adam", "--lr", "1e-5")
    if losses is None or len(losses) != len(ref):
        report(False, "train on an fp16 cache", err)
        return
    loss_rel = max(abs(a - b) / abs(b) for a, b in zip(losses, ref))
    report(len(losses) >= 50 and loss_rel <= 1e-4, "train on a cache extracted with --dtype fp16: every step's "
           "loss as torch's on the same activations rounded to float16", f"{len(losses)} steps, losses within "
           f"{loss_rel:.2e} (limit 1e-4)")


def views_cache(onnxtl, d, mdl, data):
    """extract --views 3 caches the augmented views train --augment draws in epochs 1 to 3: training layer4 and
    fc on that cache, shuffled, takes the steps training from the images with --from and --augment takes."""
    views = os.path.join(d, "layer3_views.bin")
    pre = ["--resize", "64x64", "--crop", "none"]
    r = sh(onnxtl, "extract", mdl, data, "--cut", LAYER3, *pre, "--views", "3", "--augment", "flip,crop", "--seed", "7",
           "--batch", "4", "-o", views, "--quiet")
    if r.returncode:
        report(False, "extract --views 3", r.stderr.strip())
        return
    log = os.path.join(d, "views.log")
    runs = []
    for source, flags in ((views, []), (data, ["--from", LAYER3, "--augment", "flip,crop", *pre])):
        r = sh(onnxtl, "train", mdl, source, "-o", os.path.join(d, "views.onnx"), "--batch", "4", "--epochs", "3",
               "--seed", "7", "--log", log, "--quiet", *flags)
        runs.append([json.loads(line)["loss"] for line in open(log) if '"step"' in line] if not r.returncode else None)
        if r.returncode:
            report(False, "train on the views of extract --views", r.stderr.strip())
            return
    cached, images = runs
    rel = max(abs(a - b) / abs(b) for a, b in zip(cached, images)) if len(cached) == len(images) else float("inf")
    report(len(cached) == len(images) > 0 and rel <= 1e-6, "train on a cache of extract --views 3 (each epoch the "
           "next view, shuffled) takes the steps of train --from --augment on the images",
           f"{len(cached)} steps, losses within {rel:.2e} (limit 1e-6)")


def groups_and_schedules(onnxtl, d, mdl, caches, onnx_w):
    """AdamW, SGD with weight decay, two parameter groups (layer4 at --lr-backbone, fc at --lr) and the cosine
    and step schedules, stepped each epoch, against torch.optim and torch.optim.lr_scheduler."""
    cases = (
        ("AdamW (decay 0.01), layer4 at 1e-5 and fc at 1e-4, cosine", ["--optim", "adamw", "--lr", "1e-4",
         "--lr-backbone", "1e-5", "--schedule", "cosine"],
         lambda g: torch.optim.AdamW(g, lr=1e-4), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4)),
        ("SGD (momentum 0.9, decay 1e-3), step every 2 epochs by 0.5", ["--optim", "sgd", "--lr", "1e-4",
         "--momentum", "0.9", "--weight-decay", "1e-3", "--schedule", "step", "--step-size", "2", "--gamma", "0.5"],
         lambda g: torch.optim.SGD(g, lr=1e-4, momentum=0.9, weight_decay=1e-3),
         lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5)))
    for label, flags, make_opt, make_schedule in cases:

        def reference(data, feats, x, y, flags=flags, make_opt=make_opt, make_schedule=make_schedule):
            x = x.double()
            net, tail = resnet18_tail(onnx_w, torch.float64)
            groups = [{"params": net.layer4.parameters()}, {"params": net.fc.parameters()}]
            if "--lr-backbone" in flags:
                groups[0]["lr"] = float(flags[flags.index("--lr-backbone") + 1])
            opt = make_opt(groups)
            schedule, ref = make_schedule(opt), []
            for _ in range(4):
                for s in range(0, len(x), 2):
                    opt.zero_grad()
                    loss = torch.nn.functional.cross_entropy(tail(x[s:s + 2]), y[s:s + 2])
                    loss.backward()
                    opt.step()
                    ref.append(loss.item())
                schedule.step()
            return net, ref

        cache, got = conditioned(caches, label, reference)
        if cache is None:
            continue
        net, ref = got
        out = os.path.join(d, "groups.onnx")
        losses, err = ours(onnxtl, mdl, cache[1], out, "--batch", "2", "--epochs", "4", *flags)
        if losses is None or len(losses) != len(ref):
            report(False, f"train ResNet18's layer4 and fc, {label}", err)
            continue
        trained = weights(out)
        loss_rel = max(abs(a - b) / abs(b) for a, b in zip(losses, ref))
        w_rel = max(relative(trained[k], v.detach().numpy()) for k, v in net.named_parameters()
                    if k.startswith(("layer4.", "fc.")))
        report(loss_rel <= 1e-4 and w_rel <= 1e-4, f"ResNet18's layer4 and fc on the cache, {label}: every step's "
               "loss and the final weights as torch's", f"{len(losses)} steps, losses within {loss_rel:.2e}, "
               f"weights within {w_rel:.2e} (limit 1e-4)")


def test_resume(onnxtl, shared, d):
    """train --resume after a SIGKILL: the small CNN with dropout and shuffling on, Adam, 3 epochs; the killed
    and resumed run ends with the model and checkpoint of an uninterrupted one, byte for byte.  A checkpoint of
    other options, a truncated one and a damaged one are refused in one line."""
    mdl, data = small_cnn_path(), subset(shared, d, 13, 2)
    args = ["train", mdl, data, *SMALL, "--epochs", "3", "--batch", "2", "--quiet"]
    whole, cut = os.path.join(d, "whole.onnx"), os.path.join(d, "cut.onnx")
    r = sh(onnxtl, *args, "-o", whole, "--log", whole + ".log")
    p = subprocess.Popen([onnxtl, *args, "-o", cut, "--log", cut + ".log"], stderr=subprocess.DEVNULL)
    def steps_after_checkpoint():  # logged steps of the epoch after the saved one, which a resume must not repeat
        lines = open(cut + ".log").read().splitlines() if os.path.exists(cut + ".log") else []
        return lines and lines[-1].startswith('{"step"') and any(x.startswith('{"epoch"') for x in lines)
    while p.poll() is None and not (os.path.exists(cut + ".state") and steps_after_checkpoint()):
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    killed = p.wait() == -signal.SIGKILL
    resumed = sh(onnxtl, *args, "-o", cut, "--resume", "--quiet", "--log", cut + ".log")
    after = resumed.stderr
    same = all(os.path.exists(f) and open(f, "rb").read() == open(w, "rb").read()
               for f, w in ((cut, whole), (cut + ".state", whole + ".state"), (cut + ".log", whole + ".log")))
    report(r.returncode == 0 and killed and resumed.returncode == 0 and same, "train --resume after a SIGKILL in "
           "epoch 2 or 3 writes the model, checkpoint and --log an uninterrupted run writes, byte for byte (each "
           "step logged once)", f"killed: {killed}, resumed: {resumed.returncode} {after.strip()[:200]}, "
           f"identical: {same}")
    damaged = os.path.join(d, "damaged.onnx")
    blob = open(whole + ".state", "rb").read()
    for label, content, extra, expect in (
            ("with another learning rate", blob, ["--lr", "1e-4"], "another lr"),
            ("truncated", blob[:len(blob) // 2], [], "truncated"),
            ("with a flipped bit", blob[:len(blob) // 2] + bytes([blob[len(blob) // 2] ^ 1]) + blob[len(blob) // 2 + 1:],
             [], "damaged")):
        open(damaged + ".state", "wb").write(content)
        r = sh(onnxtl, *args, "-o", damaged, "--resume", *extra)
        report(r.returncode == 1 and expect in r.stderr and len(r.stderr.strip().splitlines()) == 1 and
               not os.path.exists(damaged), f"train --resume refuses a checkpoint {label} in one line", r.stderr.strip())


def test_resume_counts_bad_images(onnxtl, shared, d):
    """A run resumed to train further epochs warns of the unreadable images and counts them, as the first did."""
    data = subset(shared, d, 3, 1)
    bad = os.path.join(data, "train", "cat", "broken.jpg")
    open(bad, "wb").write(b"not a jpeg")
    out = os.path.join(d, "more.onnx")
    args = ["train", small_cnn_path(), data, *SMALL, "--batch", "2", "-o", out, "--json"]
    runs = [sh(onnxtl, *args, "--epochs", "1"), sh(onnxtl, *args, "--epochs", "2", "--resume")]
    counts = [json.loads(r.stdout)["skipped"] if r.returncode == 0 else None for r in runs]
    warned = ["broken.jpg" in r.stderr for r in runs]
    report(counts == [1, 1] and warned == [True, True], "train --resume with more epochs warns of an unreadable "
           "image and counts it, as the run it resumes did", f"skipped {counts}, warned {warned}")


def test_new_head(onnxtl, shared, d):
    """--head linear: ResNet18's fc replaced by a new Linear(512, 2), initialised as nn.Linear does from the seed,
    trained with layer4 on the cached layer3 output against torch from the same initial head; the model written
    carries the class names, so onnxtl run names them.  --head mlp (Linear-ReLU-Dropout twice, then Linear)
    trains with its Dropout on, and ONNX Runtime runs what it writes as onnxtl does."""
    mdl, caches = cached_layer3(onnxtl, shared, d)
    if caches[0] is None:
        return
    onnx_w = weights(mdl)
    init = os.path.join(d, "init.onnx")
    # one epoch at a learning rate that leaves every weight as it was: the initial head, which the seed fixes
    r = sh(onnxtl, "train", mdl, caches[0][1], "--head", "linear", "--optim", "sgd", "--lr", "1e-30", "--epochs", "1",
           "-o", init, "--quiet")
    head0 = weights(init) if r.returncode == 0 else {}
    bound = 1 / np.sqrt(512)
    w0, b0 = head0.get("onnxtl_head.0.weight"), head0.get("onnxtl_head.0.bias")
    fair = w0 is not None and w0.shape == (2, 512) and np.abs(w0).max() <= bound and np.abs(w0).max() > 0.9 * bound
    if not fair:
        report(False, "train ResNet18's layer4 with a new linear head", r.stderr.strip() or f"{head0.keys()}")
        return

    def reference(data, feats, x, y):
        net, tail = resnet18_tail(onnx_w, torch.float64)
        net.fc.weight.data, net.fc.bias.data = torch.from_numpy(w0.astype(np.float64)), torch.from_numpy(b0.astype(np.float64))
        return net, torch_steps(tail, [*net.layer4.parameters(), *net.fc.parameters()],
                                lambda p: torch.optim.Adam(p, lr=1e-5), x.double(), y, 2, 4)

    cache, got = conditioned(caches, "--head linear", reference)
    if cache is None:
        return
    net, ref = got
    data, feats, _, _ = cache
    out = os.path.join(d, "new_head.onnx")
    losses, err = ours(onnxtl, mdl, feats, out, "--head", "linear", "--batch", "2", "--epochs", "4", "--lr", "1e-5")
    if losses is None or len(losses) != len(ref):
        report(False, "train ResNet18's layer4 with a new linear head", err or f"{len(losses)} steps, torch {len(ref)}")
        return
    trained = weights(out)
    loss_rel = max(abs(a - b) / abs(b) for a, b in zip(losses, ref))
    w_rel = max(relative(trained["onnxtl_head.0.weight"], net.fc.weight.detach().numpy()),
                relative(trained["layer4.1.conv2.weight"], net.layer4[1].conv2.weight.detach().numpy()))
    report(len(losses) == len(ref) and loss_rel <= 1e-4 and w_rel <= 1e-4, "--head linear: a new Linear(512, 2) "
           "as nn.Linear initialises it, trained with layer4 on the cache as torch trains it",
           f"{len(losses)} steps, losses within {loss_rel:.2e}, weights within {w_rel:.2e} (limit 1e-4)")
    r = sh(onnxtl, "train", mdl, data, "--from", LAYER3, "--head", "linear", "--resize", "64x64", "--crop", "none",
           "--epochs", "1", "--batch", "4", "-o", os.path.join(d, "images_head.onnx"), "--quiet")
    report(r.returncode == 0, "--head linear with --from on images: the frozen layers run by MODEL's session, the new "
           "head trained", r.stderr.strip())
    photo = os.path.join(data, "test", "dog", sorted(os.listdir(os.path.join(data, "test", "dog")))[0])
    r = sh(onnxtl, "run", out, photo)
    report(r.returncode == 0 and r.stdout.split("\t")[1] in ("cat", "dog"), "the model --head writes names the "
           "classes for onnxtl run", r.stdout.strip() or r.stderr.strip())
    mlp = os.path.join(d, "mlp.onnx")
    r = sh(onnxtl, "train", mdl, feats, "--head", "mlp", "--epochs", "1", "--batch", "4", "-o", mlp, "--quiet")
    r2 = sh(onnxtl, "train", mdl, feats, "--head", "mlp", "--epochs", "1", "--batch", "4", "-o", mlp + "2.onnx",
            "--no-dropout", "--quiet")
    dropped = r.returncode == 0 and r2.returncode == 0 and \
        not np.array_equal(weights(mlp)["onnxtl_head.2.weight"], weights(mlp + "2.onnx")["onnxtl_head.2.weight"])
    rel, err = ort_relative(onnxtl, d, mlp, "probabilities", np.random.default_rng(2).random((2, 3, 64, 64), np.float32))
    report(dropped and rel <= 1e-4, "--head mlp trains with its Dropout on, and ONNX Runtime runs the model it writes "
           "as onnxtl does", f"dropout changed the weights: {dropped}, ORT relative {rel:.2e} (limit 1e-4) {err}")


def bn_train_mode(onnxtl, d, mdl, caches, onnx_w):
    """--bn train: layer4's BatchNormalization on batch statistics with the running ones updated, as torch's train
    mode does, 56 steps of SGD with momentum (batch 4) against torch in float64: losses, weights and running statistics.  (torch in
    float32 itself parts from float64 by 2e-4 in the losses and 5e-4 in the weights here, 1e-3 at batch 2: its
    train-mode statistics are float sums; onnxtl sums them in double.)"""

    def reference(data, feats, x, y):
        net, tail = resnet18_tail(onnx_w, torch.float64)
        net.layer4.train()
        return net, torch_steps(tail, [*net.layer4.parameters(), *net.fc.parameters()],
                                lambda p: torch.optim.SGD(p, lr=1e-4, momentum=0.9), x.double(), y, 4, 8)

    # no subset of the first 20 keeps 5e-7 in train mode; at 1e-7 the first that does stays within 3e-7
    cache, got = conditioned(caches, "--bn train", reference, margin=1e-7)
    if cache is None:
        return
    net, ref = got
    out = os.path.join(d, "bn_train.onnx")
    losses, err = ours(onnxtl, mdl, cache[1], out, "--batch", "4", "--epochs", "8", "--bn", "train", "--optim", "sgd",
                       "--lr", "1e-4", "--momentum", "0.9")
    if losses is None or len(losses) != len(ref):
        report(False, "train ResNet18's layer4 with --bn train", err)
        return
    trained = weights(out)
    state = {k: v.numpy() for k, v in net.state_dict().items() if k.startswith("layer4.") and "running" in k}
    loss_rel = max(abs(a - b) / abs(b) for a, b in zip(losses, ref))
    w_rel = max(relative(trained[k], v.detach().numpy()) for k, v in net.named_parameters()
                if k.startswith(("layer4.", "fc.")))
    s_rel = max(relative(trained[k], v) for k, v in state.items())
    moved = max(relative(trained[k], onnx_w[k]) for k in state)
    report(len(losses) >= 50 and loss_rel <= 1e-4 and w_rel <= 1e-4 and s_rel <= 1e-4 and moved > 1e-3,
           "ResNet18's layer4 and fc on the cache with --bn train (torch's train mode): every step's loss, the final "
           "weights and the running statistics as torch's", f"{len(losses)} steps, losses within {loss_rel:.2e}, "
           f"weights within {w_rel:.2e}, {len(state)} running statistics within {s_rel:.2e} (limit 1e-4; they "
           f"moved {moved:.2e})")


def test_augment(onnxtl, shared, d):
    """--augment flip,crop (whose boxes test/preprocess_parity.py checks against torchvision): a run repeats
    byte for byte whatever the number of decoders, and it trains otherwise than without augmentation."""
    mdl, data = small_cnn_path(), subset(shared, d, 8, 1)
    runs = {}
    for label, extra in (("one decoder", ["--decoders", "1"]), ("two decoders", ["--decoders", "2"]), ("plain", [])):
        out = os.path.join(d, f"{label.replace(' ', '_')}.onnx")
        r = sh(onnxtl, "train", mdl, data, *SMALL, "--epochs", "2", "--batch", "4", "-o", out, "--quiet",
               *(["--augment", "flip,crop"] if label != "plain" else []), *extra)
        runs[label] = open(out, "rb").read() if r.returncode == 0 else r.stderr
    ok = runs["one decoder"] == runs["two decoders"] and runs["one decoder"] != runs["plain"]
    report(ok and all(isinstance(v, bytes) for v in runs.values()), "train --augment flip,crop repeats byte for byte "
           "with one or two decoders, and differs from training without it", str([len(v) for v in runs.values()]))


def vgg16_path():
    """torchvision's VGG16 for 64x64 inputs, random weights: its adaptive pooling (an identity at 224) dropped, so
    the classifier's first Linear takes the 512x2x2 that the last block gives; 2 classes.  Its zero biases are
    randomised: the exporter merges initializers of equal values, which would tie them into one tensor."""
    path = os.path.join(MODELS, "vgg16_2class_64.onnx")
    if not os.path.exists(path):
        torch.manual_seed(0)
        net = vgg16_64()
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.bias.data.uniform_(-0.05, 0.05)
        torch.onnx.export(net.eval(), torch.zeros(1, 3, 64, 64), path, opset_version=17, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    return path


def vgg16_64():
    import torchvision
    net = torchvision.models.vgg16(num_classes=2)
    net.avgpool = torch.nn.Identity()
    net.classifier[0] = torch.nn.Linear(512 * 2 * 2, 4096)
    return net


def test_vgg16_last_block_cached(onnxtl, shared, d):
    """VGG16's last convolution block and its MLP classifier (Linear-ReLU-Dropout x2, Linear) trained on the pool4
    output cached by extract --cut, at 64x64 to stay fast: 52 Adam steps (lr 1e-5, dropout off) against torch."""
    mdl = vgg16_path()
    onnx_w = weights(mdl)

    def vgg16_tail():
        net = vgg16_64().eval().double()  # eval: dropout off
        net.load_state_dict({k: torch.from_numpy(v) for k, v in onnx_w.items()})
        return net, torch.nn.Sequential(net.features[24:], torch.nn.Flatten(), net.classifier)

    caches = Caches(onnxtl, shared, d, mdl, "/features/features.23/MaxPool_output_0", "pool4.bin", (512, 4, 4))

    def reference(data, feats, x, y):
        net, tail = vgg16_tail()
        return net, torch_steps(tail, [*net.features[24:].parameters(), *net.classifier.parameters()],
                                lambda p: torch.optim.Adam(p, lr=1e-5), x.double(), y, 2, 4)

    # its classifier's ReLUs see 2 x 8192 inputs a step, the smallest of which is seldom 1e-7 of the largest
    cache, got = conditioned(caches, "VGG16's last block", reference, margin=1e-8)
    if cache is None:
        return
    net, ref = got
    out = os.path.join(d, "vgg.onnx")
    losses, err = ours(onnxtl, mdl, cache[1], out, "--batch", "2", "--epochs", "4")
    if losses is None or len(losses) != len(ref):
        report(False, "train VGG16's last block on the cached pool4 output", err or f"{len(losses)} steps, torch {len(ref)}")
        return
    trained_names = [k for k, _ in net.named_parameters() if k.startswith("classifier.") or
                     (k.startswith("features.") and int(k.split(".")[1]) >= 24)]
    trained = weights(out)
    state = dict(net.named_parameters())
    loss_rel = max(abs(a - b) / abs(b) for a, b in zip(losses, ref))
    # norm-wise: Adam moves a weight whose gradient is float32's noise by lr one way or the other (see
    # test_small_cnn), and the 4096x4096 Linear layer's two-row gradient sums have such elements
    w_rel = max(norm_relative(trained[k], state[k].detach().numpy()) for k in trained_names)
    frozen = all(np.array_equal(trained[k], v) for k, v in onnx_w.items() if k not in trained_names)
    report(len(losses) >= 50 and loss_rel <= 1e-4 and w_rel <= 1e-4 and frozen, "VGG16's last convolution block and "
           "MLP classifier on cached pool4 activations: every step's loss and the final weights as torch's",
           f"{len(losses)} steps, losses within {loss_rel:.2e}, weights within {w_rel:.2e} norm-wise (limit 1e-4), "
           f"{len(trained_names)} tensors trained, the rest unchanged: {frozen}")


def test_cache_refusals(onnxtl, shared, d):
    """What training on a cache refuses, in one line naming the file and what to do."""
    mdl, caches = cached_layer3(onnxtl, shared, d)
    if caches[0] is None:
        return
    data, feats, _, _ = caches[0]
    other = os.path.join(d, "other.onnx")
    m = onnx.load(mdl)
    m.doc_string = "another file"
    onnx.save(m, other)
    cases = (
        ((other, feats), "was extracted from", "a features file made from another model"),
        ((mdl, feats, "--from", "/layer4/layer4.1/relu_1/Relu_output_0"), "extract it with --cut",
         "--from other than the features' cut"),
        ((mdl, feats, "--resize", "64x64"), "fixes the preprocessing", "preprocessing options with a features file"),
        ((mdl, data, "--from", "/layer3/layer3.1/bn2/BatchNormalization_output_0", "--resize", "64x64", "--crop",
          "none"), "also read", "--from a tensor that a residual connection goes around"),
        ((mdl, feats, "--augment", "flip"), "--augment is for training on images", "--augment with a features file"),
        ((mdl, data, "--from", "nonesuch", "--resize", "64x64", "--crop", "none"), "has no tensor 'nonesuch'",
         "--from a tensor the model lacks"),
    )
    for args, expect, what in cases:
        out = os.path.join(d, "refused.onnx")
        r = sh(onnxtl, "train", *args, "-o", out, "--quiet")
        report(r.returncode == 1 and expect in r.stderr and len(r.stderr.strip().splitlines()) == 1 and
               not os.path.exists(out), f"train refuses {what} in one line", r.stderr.strip())


def op_model(path, conv, pool, trans_b):
    """input [N,3,16,16] -> Conv -> Relu -> Add(itself, its GlobalAveragePool: a broadcast Add) -> MaxPool or
    AveragePool -> Flatten -> Dropout -> Reshape -> Gemm -> logits [N,2]."""
    from onnx import TensorProto, helper
    rng = np.random.default_rng(7)
    groups, out_ch = conv["group"], conv["out"]
    w = (rng.standard_normal((out_ch, 3 // groups, 3, 3)) * 0.3).astype(np.float32)
    bias = (rng.standard_normal(out_ch) * 0.1).astype(np.float32)
    conv_attrs = {k: v for k, v in conv.items() if k != "out"}
    pool_op, pool = pool.get("op", "MaxPool"), {k: v for k, v in pool.items() if k != "op"}
    nodes = [helper.make_node("Conv", ["input", "w", "bias"], ["c"], kernel_shape=[3, 3], **conv_attrs),
             helper.make_node("Relu", ["c"], ["r0"]),
             helper.make_node("GlobalAveragePool", ["r0"], ["gap"]),
             helper.make_node("Add", ["r0", "gap"], ["r"]),
             helper.make_node(pool_op, ["r"], ["p"], **pool),
             helper.make_node("Flatten", ["p"], ["f"], axis=1),
             helper.make_node("Dropout", ["f", "ratio"], ["dr"]),
             helper.make_node("Reshape", ["dr", "shape"], ["h"])]
    g = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "bias"),
                           numpy_helper.from_array(np.array(0.5, np.float32), "ratio"),
                           numpy_helper.from_array(np.array([0, -1], np.int64), "shape")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m = onnx.shape_inference.infer_shapes(m)
    width = next(v for v in m.graph.value_info if v.name == "h").type.tensor_type.shape.dim[1].dim_value
    b = (rng.standard_normal((2, width) if trans_b else (width, 2)) * 0.1).astype(np.float32)
    c = (rng.standard_normal(2) * 0.1).astype(np.float32)
    g.node.append(helper.make_node("Gemm", ["h", "B", "C"], ["logits"], transB=trans_b, alpha=0.7, beta=1.3))
    g.initializer.extend([numpy_helper.from_array(b, "B"), numpy_helper.from_array(c, "C")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    pads = conv.get("pads", [0, 0, 0, 0])
    torch_pool = dict(kernel_size=pool["kernel_shape"], stride=pool.get("strides", 1), ceil_mode=bool(pool.get("ceil_mode")),
                      padding=pool.get("pads", [0, 0, 0, 0])[0])
    if pool_op == "AveragePool":
        torch_pool["count_include_pad"] = bool(pool.get("count_include_pad"))
    else:
        torch_pool["dilation"] = pool.get("dilations", [1, 1])[0]
    pool_fn = torch.nn.functional.max_pool2d if pool_op == "MaxPool" else torch.nn.functional.avg_pool2d

    def net(x, p):
        xp = torch.nn.functional.pad(x, (pads[1], pads[3], pads[0], pads[2]))
        h = torch.nn.functional.conv2d(xp, p["w"], p["bias"], stride=conv.get("strides", [1, 1]),
                                       dilation=conv.get("dilations", [1, 1]), groups=groups)
        h = torch.relu(h)
        h = pool_fn(h + h.mean((2, 3), keepdim=True), **torch_pool).flatten(1)
        return 0.7 * (h @ (p["B"].t() if trans_b else p["B"])) + 1.3 * p["C"]
    return net, {"w": w, "bias": bias, "B": b, "C": c}


OP_CASES = [
    ("Conv groups 3, stride 2, asymmetric padding, dilation 2; MaxPool 3/2 padded, ceil_mode; Gemm transB 1",
     {"group": 3, "out": 6, "strides": [2, 2], "pads": [1, 2, 2, 1], "dilations": [2, 2]},
     {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}, 1),
    ("Conv stride 1, padding 1; MaxPool 2/2; Gemm transB 0",
     {"group": 1, "out": 4, "pads": [1, 1, 1, 1]}, {"kernel_shape": [2, 2], "strides": [2, 2]}, 0),
    ("AveragePool 3/2 padded, pads counted",
     {"group": 1, "out": 4}, {"op": "AveragePool", "kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                              "count_include_pad": 1}, 1),
    ("AveragePool 3/2 padded, ceil_mode, pads not counted",
     {"group": 1, "out": 4}, {"op": "AveragePool", "kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                              "ceil_mode": 1}, 0),
    # oneDNN divides by the whole kernel where ceil_mode hangs a window past the pads: onnxtl's own kernel runs it
    ("AveragePool 3/2 padded, ceil_mode, pads counted",
     {"group": 1, "out": 4}, {"op": "AveragePool", "kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                              "ceil_mode": 1, "count_include_pad": 1}, 0),
    ("MaxPool 3/1 dilation 2, padded",
     {"group": 1, "out": 4}, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "dilations": [2, 2]}, 1),
]


def test_op_gradients(onnxtl, shared, d):
    data = subset(shared, os.path.join(d, "ops"), 2, 1)
    x, y = train_images(data, 16)
    for i, (label, conv, pool, trans_b) in enumerate(OP_CASES):
        path = os.path.join(d, f"ops{i}.onnx")
        net, p0 = op_model(path, conv, pool, trans_b)
        out = os.path.join(d, f"ops{i}_trained.onnx")
        losses, err = ours(onnxtl, path, data, out, "--batch", "4", "--epochs", "1", "--optim", "sgd", "--lr", "1",
                           "--resize", "16x16", "--crop", "none", "--mean", "0,0,0", "--std", "1,1,1")
        if losses is None:
            report(False, f"one SGD step through {label}", err)
            continue
        p = {k: torch.tensor(v.astype(np.float64), requires_grad=True) for k, v in p0.items()}
        loss = torch.nn.functional.cross_entropy(net(x.double(), p), y)
        loss.backward()
        trained = weights(out)
        rel = max(relative(p0[k] - trained[k], p[k].grad.numpy()) for k in p0)
        report(abs(losses[0] - loss.item()) <= 1e-5 * abs(loss.item()) and rel <= 1e-4,
               f"gradients through {label}, against torch.autograd in float64",
               f"loss {losses[0]:.7f} vs {loss.item():.7f}, gradients within {rel:.2e} (limit 1e-4)")


def ort_relative(onnxtl, d, mdl, output, x):
    """mdl's output on x from onnxtl infer against ONNX Runtime's: their relative difference (1.0 when either
    could not run) and what the two said on stderr."""
    xin, ours_out, ref_out = (os.path.join(d, f) for f in ("x.npy", "ours.npy", "ort.npy"))
    np.save(xin, x)
    r = sh(onnxtl, "infer", mdl, "--input", f"input={xin}", "--output", f"{output}={ours_out}")
    cases = os.path.join(d, "cases.json")
    json.dump([{"model": mdl, "inputs": {"input": xin}, "outputs": {output: ref_out}}], open(cases, "w"))
    o = sh("node", os.path.join(HERE, "ort_run.js"), cases)
    ok = r.returncode == 0 and o.returncode == 0 and os.path.exists(ref_out)
    rel = relative(np.load(ours_out), np.load(ref_out)) if ok else 1.0
    return rel, f"{r.stderr.strip()[:200]}{o.stderr.strip()[:200]}"


def test_ort_runs_trained(onnxtl, shared, d):
    trained = os.path.join(d, "trained.onnx")
    if not os.path.exists(trained):
        report(False, "ONNX Runtime runs the trained small CNN", "no trained model")
        return
    rel, err = ort_relative(onnxtl, d, trained, "logits", np.random.default_rng(1).random((2, 3, 64, 64), np.float32))
    report(rel <= 1e-4, "ONNX Runtime 1.30 runs the trained model and agrees with onnxtl",
           f"relative {rel:.2e} (limit 1e-4) {err}")


def test_dropout_drops(onnxtl, shared, d):
    """With dropout on, training differs from --no-dropout, and two runs with one seed are identical: for the
    small CNN (its Dropout says training_mode true) and for a Dropout with a ratio only (identity at inference)."""
    data = subset(shared, os.path.join(d, "drop"), 4, 1)
    ops = os.path.join(d, "drop_ops.onnx")
    op_model(ops, *OP_CASES[1][1:])
    for label, mdl, pre in (("the small CNN", small_cnn_path(), SMALL + ["--lr", "1e-4"]),
                            ("a ratio-only Dropout", ops, ["--resize", "16x16", "--crop", "none", "--lr", "1e-2"])):
        runs = []
        for flags in (["--seed", "3"], ["--seed", "3"], ["--seed", "3", "--no-dropout"]):
            log = os.path.join(d, f"drop{len(runs)}.log")
            r = sh(onnxtl, "train", mdl, data, "-o", os.path.join(d, "drop.onnx"), "--batch", "4", "--epochs", "1",
                   "--log", log, "--quiet", *pre, *flags)
            runs.append([json.loads(line)["loss"] for line in open(log) if '"step"' in line] if r.returncode == 0 else None)
        report(runs[0] is not None and runs[0] == runs[1] and runs[0] != runs[2],
               f"Dropout drops while training, reproducibly for a seed: {label}", f"{runs}")


def test_refusals(onnxtl, shared, d):
    from onnx import TensorProto, helper
    data = subset(shared, os.path.join(d, "refuse"), 2, 1)
    g = helper.make_graph([helper.make_node("Sigmoid", ["input"], ["s"]),
                           helper.make_node("GlobalAveragePool", ["s"], ["p"]),
                           helper.make_node("Flatten", ["p"], ["f"]),
                           helper.make_node("Gemm", ["f", "B"], ["logits"], transB=1)], "gap",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(np.ones((2, 3), np.float32), "B")])
    gap = os.path.join(d, "sigmoid.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), gap)
    r = sh(onnxtl, "train", gap, data, "-o", os.path.join(d, "x1.onnx"), "--resize", "8x8", "--crop", "none", "--quiet")
    report(r.returncode == 1 and "cannot train Sigmoid node 's'" in r.stderr and gap in r.stderr and
           len(r.stderr.strip().splitlines()) == 1 and not os.path.exists(os.path.join(d, "x1.onnx")),
           "a model with an op that has no gradient yet is refused in one line naming the node", r.stderr.strip())
    g = helper.make_graph([helper.make_node("Flatten", ["input"], ["f"]), helper.make_node("Transpose", ["Bt"], ["B"]),
                           helper.make_node("Gemm", ["f", "B"], ["logits"], transB=1)], "folded",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(np.ones((192, 2), np.float32), "Bt")])
    folded = os.path.join(d, "folded.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), folded)
    r = sh(onnxtl, "train", folded, data, "-o", os.path.join(d, "x2.onnx"), "--resize", "8x8", "--crop", "none")
    report(r.returncode == 1 and "only initializers are trained" in r.stderr and folded in r.stderr and
           not os.path.exists(os.path.join(d, "x2.onnx")),
           "a weight computed from an initializer (a Transpose the plan folds) is refused before training", r.stderr.strip())
    bad = os.path.join(d, "unreadable")
    for split in ("train/cat", "train/dog"):
        os.makedirs(os.path.join(bad, split))
        open(os.path.join(bad, split, "x.jpg"), "wb").write(b"not a jpeg")
    r = sh(onnxtl, "train", small_cnn_path(), bad, "-o", os.path.join(d, "x3.onnx"), *SMALL)
    report(r.returncode == 1 and "none of the 2 training images could be read" in r.stderr and
           not os.path.exists(os.path.join(d, "x3.onnx")), "training on images none of which can be read fails, "
           "writing nothing", r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "")
    r = sh(onnxtl, "train", model("resnet18"), data, "-o", os.path.join(d, "x.onnx"))
    report(r.returncode == 1 and "logits for the 2 classes" in r.stderr, "a model whose output is not one logit per "
           "class is refused, saying so", r.stderr.strip())
    r = sh(onnxtl, "train", small_cnn_path(), data, "--lr", "0")
    report(r.returncode == 2, "train --lr 0 is a usage error", r.stderr.strip()[:120])


def main():
    onnxtl, shared = sys.argv[1], sys.argv[2]
    if not os.path.isdir(os.path.join(shared, "dogscats")):
        print(f"SKIP train: {shared}/dogscats is missing")
        return 0
    with tempfile.TemporaryDirectory() as d:
        for test in (test_small_cnn, test_op_gradients, test_ort_runs_trained, test_resnet18_frozen_bn,
                     test_resnet18_layer4_cached, test_vgg16_last_block_cached, test_new_head, test_cache_refusals, test_resume, test_resume_counts_bad_images,
                     test_augment, test_dropout_drops, test_refusals):
            sub = d if test is test_ort_runs_trained else os.path.join(d, test.__name__)
            os.makedirs(sub, exist_ok=True)
            test(onnxtl, shared, d if test in (test_small_cnn, test_ort_runs_trained) else sub)
    return 1 if failed_count() else 0


if __name__ == "__main__":
    sys.exit(main())

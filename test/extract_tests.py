#!/usr/bin/python3
"""extract, features and merge on real photos: resuming after SIGKILL, bad
files in the data, shards, and damaged features files.

usage: extract_tests.py ONNXTL SHARED_DATA
"""
import contextlib
import fcntl
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = os.path.join(ROOT, "build", "models")
EXPORT = os.path.join(ROOT, "models", "export_torchvision.py")
failed = 0


def report(ok, what, detail=""):
    global failed
    failed += not ok
    print(f"{'PASS' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}", flush=True)


def failed_count():
    return failed


def model(arch="resnet18", fold="fold"):
    path = os.path.join(MODELS, f"{arch}_op17_{fold}.onnx")
    if not os.path.exists(path):
        extra = ["--no-fold"] if fold == "nofold" else []
        subprocess.run([sys.executable, EXPORT, "--arch", arch, "--opset", "17", "--out", MODELS] + extra,
                       check=True, stdout=subprocess.DEVNULL)
    return path


def subset(shared, d, per_class_train, per_class_test, skip=0):
    """d/data: the first photos of each class and split (past the first `skip` training ones), as links."""
    root = os.path.join(d, "data")
    for split, n, first in (("train", per_class_train, skip), ("test", per_class_test, 0)):
        for cls in ("cat", "dog"):
            os.makedirs(os.path.join(root, split, cls))
            src = os.path.join(os.path.abspath(shared), "dogscats", split, cls)
            for f in sorted(os.listdir(src))[first:first + n]:
                os.symlink(os.path.join(src, f), os.path.join(root, split, cls, f))
    return root


def run(onnxtl, *args, **kw):
    return subprocess.run([onnxtl] + list(args), capture_output=True, text=True, **kw)


def same_file(a, b):
    return os.path.exists(a) and os.path.exists(b) and open(a, "rb").read() == open(b, "rb").read()


def kill_after_rows(cmd, partial, rows, row_bytes):
    """Starts cmd, SIGKILLs it once the partial file holds more than `rows` new rows."""
    start = os.path.getsize(partial) if os.path.exists(partial) else 0
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline:
        size = os.path.getsize(partial) if os.path.exists(partial) else 0
        if size - max(start, 16384) > rows * row_bytes:
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    p.wait()
    return p.returncode == -signal.SIGKILL


def test_resume(onnxtl, data, d):
    m = model()
    ref = os.path.join(d, "ref.bin")
    r = run(onnxtl, "extract", m, data, "-o", ref, "--batch", "8", "--quiet")
    report(r.returncode == 0, "extract uninterrupted reference run", r.stderr.strip()[-200:])
    out = os.path.join(d, "resumed.bin")
    cmd = [onnxtl, "extract", m, data, "-o", out, "--batch", "8", "--quiet"]
    kills = sum(kill_after_rows(cmd, out + ".partial", 20, 512 * 4 + 16) for _ in range(2))
    report(kills == 2 and not os.path.exists(out) and os.path.exists(out + ".partial"),
           "extract killed twice with SIGKILL mid-run leaves only FILE.partial", f"{kills} kills")
    r = run(onnxtl, *cmd[1:])
    report(r.returncode == 0 and same_file(out, ref) and not os.path.exists(out + ".partial"),
           "extract resumed after SIGKILL equals an uninterrupted run byte for byte", r.stderr.strip()[-200:])
    r = run(onnxtl, "extract", m, data, "-o", out)
    report(r.returncode == 0 and "already complete" in r.stdout, "extract again on a complete file does nothing")
    r = run(onnxtl, "extract", m, data, "-o", out, "--mean", "0.5")
    report(r.returncode == 1 and "not made by this extraction" in r.stderr,
           "extract refuses to overwrite a file from other options", r.stderr.strip())
    return ref


def decompression_bomb(jpeg):
    """The photo with its frame header claiming 30000 x 30000 pixels (900 megapixels)."""
    b = bytearray(jpeg)
    i = min(k for k in (b.find(b"\xff\xc0"), b.find(b"\xff\xc2")) if k >= 0)
    b[i + 5:i + 9] = (30000).to_bytes(2, "big") * 2  # after the marker: length, precision, height, width
    return bytes(b)


def test_interrupt_and_lock(onnxtl, data, d, ref):
    m = model()
    out = os.path.join(d, "interrupted.bin")
    partial = out + ".partial"
    cmd = [onnxtl, "extract", m, data, "-o", out, "--batch", "8", "--quiet"]
    with open(partial, "wb") as held:  # another writer's lock, taken as extract takes it
        fcntl.lockf(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = run(onnxtl, *cmd[1:], timeout=60)
    report(r.returncode == 1 and f"process {os.getpid()}" in r.stderr and len(r.stderr.splitlines()) == 1,
           "a second extract onto an output being written refuses at once, naming the writer's process",
           r.stderr.strip())
    os.remove(partial)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline:
        if os.path.exists(partial) and os.path.getsize(partial) > 16384 + 20 * (512 * 4 + 16):
            p.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    err = p.communicate(timeout=120)[1]
    report(p.returncode == 1 and "run the same command again to resume" in err and os.path.exists(partial)
           and not os.path.exists(out), "extract stops on SIGINT after the batch in hand and says how to resume",
           err.strip()[-200:])
    r = run(onnxtl, *cmd[1:])
    report(r.returncode == 0 and same_file(out, ref), "extract resumed after SIGINT equals an uninterrupted run byte "
           "for byte", r.stderr.strip()[-200:])


@contextlib.contextmanager
def small_disk(d, size, what):
    """A tmpfs of size under d (None, after a SKIP line, where none can be mounted); grow it with grow_disk."""
    mnt = os.path.join(d, "small_disk")
    os.makedirs(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mnt], capture_output=True, text=True)
    if r.returncode:
        print(f"SKIP {what} on a full disk: cannot mount a small tmpfs here ({r.stderr.strip()})")
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt], check=False)


def grow_disk(mnt, size):
    subprocess.run(["mount", "-o", f"remount,size={size}", mnt], check=True)


def test_disk_full(onnxtl, data, d, ref):
    """extract onto a 96 KiB tmpfs runs out of space mid-run; once the tmpfs grows, the same command resumes."""
    with small_disk(d, "96k", "extract") as mnt:
        if mnt is None:
            return
        out = os.path.join(mnt, "full.bin")
        cmd = ["extract", model(), data, "-o", out, "--batch", "8", "--quiet"]
        r = run(onnxtl, *cmd)
        report(r.returncode == 1 and "No space left on device" in r.stderr and len(r.stderr.splitlines()) == 1
               and os.path.exists(out + ".partial") and not os.path.exists(out),
               "extract on a full disk fails in one line naming the cause, keeping FILE.partial", r.stderr.strip())
        grow_disk(mnt, "4m")
        r = run(onnxtl, *cmd)
        report(r.returncode == 0 and same_file(out, ref),
               "extract resumed once there is space equals an uninterrupted run byte for byte", r.stderr.strip()[-200:])


def test_many_entries(onnxtl, shared, d):
    """A class folder with 400,000 non-image files beside its photos: the scan's memory follows the images kept."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else d
    with tempfile.TemporaryDirectory(dir=base) as t:
        clean = subset(shared, t, 3, 0)
        crowded = subset(shared, os.path.join(t, "c"), 3, 0)
        junk = os.path.join(crowded, "train", "cat")
        for i in range(400_000):
            os.close(os.open(os.path.join(junk, f"notes-{i:06d}-" + "x" * 100 + ".txt"), os.O_CREAT | os.O_WRONLY))
        rss, codes = [], []
        for data in (clean, crowded):  # each run's own peak, from wait4
            p = subprocess.Popen([onnxtl, "extract", model(), data, "-o", os.path.join(t, f"{len(rss)}.bin"), "--quiet"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            codes.append(p.returncode)
            rss.append(usage.ru_maxrss / 1024)  # MiB
        report(codes == [0, 0] and rss[1] - rss[0] < 8, "extract's scan of 400,000 other files beside the photos "
               "stays within 8 MiB of the plain folder's peak memory (their names alone are 46 MiB)",
               f"peak {rss[0]:.0f} MiB, then {rss[1]:.0f} MiB, exit {codes}")


def make_bad_folder(shared, d):
    root = os.path.join(d, "bad")
    good_src = os.path.join(os.path.abspath(shared), "dogscats", "train")
    for cls in ("cat", "dog"):
        os.makedirs(os.path.join(root, cls))
        for f in sorted(os.listdir(os.path.join(good_src, cls)))[:6]:
            shutil.copy(os.path.join(good_src, cls, f), os.path.join(root, cls, f))
    jpeg = open(os.path.join(root, "cat", sorted(os.listdir(os.path.join(root, "cat")))[0]), "rb").read()
    cat = os.path.join(root, "cat")
    open(os.path.join(cat, "truncated.jpg"), "wb").write(jpeg[: len(jpeg) * 2 // 5])
    rng = random.Random(1)
    open(os.path.join(cat, "corrupt.jpg"), "wb").write(b"\xff\xd8" + bytes(rng.randrange(256) for _ in range(5000)))
    open(os.path.join(cat, "empty.jpg"), "wb").close()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(os.path.join(cat, "png_named.jpg"), format="PNG")
    os.symlink(os.path.join(d, "nowhere.jpg"), os.path.join(cat, "dangling.jpg"))
    open(os.path.join(cat, "bomb.jpg"), "wb").write(decompression_bomb(jpeg))
    open(os.path.join(cat, "tab\tname.jpg"), "wb").write(jpeg)  # readable, but its name cannot be recorded
    for junk in (".DS_Store", "Thumbs.db", "notes.txt"):
        open(os.path.join(cat, junk), "w").write("not an image\n")
    return root, ["truncated.jpg", "corrupt.jpg", "empty.jpg", "png_named.jpg", "dangling.jpg", "bomb.jpg"]


def test_bad_files(onnxtl, shared, d):
    root, bad = make_bad_folder(shared, d)
    out = os.path.join(d, "badfeat.bin")
    r = run(onnxtl, "extract", model(), root, "-o", out)
    warned = [b for b in bad if any(b in line and "warning" in line for line in r.stderr.splitlines())]
    report(r.returncode == 0 and len(warned) == len(bad), "extract skips each bad file with a warning naming it",
           f"warned about {len(warned)}/{len(bad)}: {[l for l in r.stderr.splitlines() if 'warning' in l][:5]}")
    report(any("tab\tname.jpg" in line and "cannot record" in line for line in r.stderr.splitlines()),
           "extract warns about an image whose name holds a tab, naming it",
           next((line for line in r.stderr.splitlines() if "name.jpg" in line), ""))
    report(any("bomb.jpg" in line and "--max-pixels" in line for line in r.stderr.splitlines()),
           "extract refuses a JPEG declaring 900 megapixels before decoding it, naming --max-pixels",
           next((line for line in r.stderr.splitlines() if "bomb.jpg" in line), ""))
    report("skipped 6 unreadable images" in r.stdout and "ignored 3 non-image files" in r.stdout and "rows: 12" in r.stdout,
           "extract summary counts skipped and ignored files", r.stdout.strip().splitlines()[-1] if r.stdout else "")
    r = run(onnxtl, "extract", model(), root, "-o", os.path.join(d, "strict.bin"), "--strict", "--quiet")
    report(r.returncode == 1 and "--strict" in r.stderr and any(b in r.stderr for b in bad),
           "extract --strict stops at a bad file with exit 1", r.stderr.strip().splitlines()[-1] if r.stderr else "")
    r = run(onnxtl, "extract", model(), os.path.join(d, "nowhere"))
    report(r.returncode == 1 and "not a folder" in r.stderr, "extract on a missing folder", r.stderr.strip())
    # Three batches in flight at once, each on its own session: the same rows, the same warnings, in order.
    out3 = os.path.join(d, "badfeat3.bin")
    r3 = run(onnxtl, "extract", model(), root, "-o", out3, "--streams", "3", "--batch", "2", "--decoders", "2",
             "--threads", "1")
    warnings1 = [l for l in run(onnxtl, "extract", model(), root, "-o", os.path.join(d, "badfeat1.bin"), "--batch", "2",
                                "--quiet").stderr.splitlines() if "warning" in l]
    warnings3 = [l for l in r3.stderr.splitlines() if "warning" in l]
    report(r3.returncode == 0 and same_file(out3, os.path.join(d, "badfeat1.bin")) and warnings3 == warnings1,
           "extract --streams 3 writes the rows and warnings of one stream, in order",
           f"{len(warnings3)} warnings; {r3.stderr.strip()[-200:] if r3.returncode else ''}")
    r = run(onnxtl, "extract", model(), root, "-o", os.path.join(d, "strict3.bin"), "--strict", "--quiet", "--streams", "3",
            "--batch", "2", "--threads", "1", timeout=120)
    report(r.returncode == 1 and "--strict" in r.stderr and os.path.exists(os.path.join(d, "strict3.bin.partial")),
           "extract --strict --streams 3 stops at the first bad file in order, keeping the rows before it",
           r.stderr.strip().splitlines()[-1] if r.stderr else "")


def test_streams(onnxtl, data, d, ref):
    out = os.path.join(d, "streams.bin")
    r = run(onnxtl, "extract", model(), data, "-o", out, "--batch", "8", "--streams", "3", "--threads", "1",
            "--decoders", "2", "--quiet")
    report(r.returncode == 0 and same_file(out, ref), "extract --streams 3 equals one stream byte for byte",
           r.stderr.strip()[-200:])


def test_shards(onnxtl, data, d, ref):
    m = model()
    shards = []
    for k in (1, 2, 3):
        out = os.path.join(d, f"shard{k}.bin")
        r = run(onnxtl, "extract", m, data, "-o", out, "--batch", "8", "--shard", f"{k}/3", "--quiet")
        shards.append(out)
        report(r.returncode == 0, f"extract --shard {k}/3", r.stderr.strip()[-200:])
    merged = os.path.join(d, "merged.bin")
    r = run(onnxtl, "merge", merged, *shards[::-1])
    report(r.returncode == 0 and same_file(merged, ref), "merge of 3 shards equals the unsharded run byte for byte",
           (r.stdout + r.stderr).strip())
    other = os.path.join(d, "other.bin")
    run(onnxtl, "extract", model("resnet18", "nofold"), data, "-o", other, "--shard", "2/3", "--quiet")
    r = run(onnxtl, "merge", os.path.join(d, "bad_merge.bin"), shards[0], other, shards[2])
    report(r.returncode == 1 and "different extractions" in r.stderr and not os.path.exists(os.path.join(d, "bad_merge.bin")),
           "merge refuses shards of different models", r.stderr.strip()[:200])
    r = run(onnxtl, "merge", os.path.join(d, "bad_merge.bin"), shards[0], shards[2])
    report(r.returncode == 1 and "missing" in r.stderr, "merge refuses a missing shard", r.stderr.strip())


def huge_values_model(path):
    """Pixels averaged per channel and scaled by 1e6: features float16 cannot hold."""
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Mul", ["f", "k"], ["big"]), helper.make_node("Gemm", ["big", "w", "b"], ["y"])]
    inits = [helper.make_tensor("k", TensorProto.FLOAT, [], [1e6]),
             helper.make_tensor("w", TensorProto.FLOAT, [2, 3], [0.0] * 6),
             helper.make_tensor("b", TensorProto.FLOAT, [2], [0.0] * 2)]
    graph = helper.make_graph(nodes, "huge", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224, 224])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_half(onnxtl, data, d, ref):
    """extract --dtype fp16: resumed after SIGKILL and merged from shards byte for byte as one run, every value
    numpy's float16 of the fp32 run's; a value beyond float16's range refused in one line."""
    m = model()
    whole = os.path.join(d, "half.bin")
    r = run(onnxtl, "extract", m, data, "-o", whole, "--batch", "8", "--dtype", "fp16", "--quiet")
    full = os.path.join(d, "np32")
    r = r if r.returncode else run(onnxtl, "features", ref, "--npy", full)
    r = r if r.returncode else run(onnxtl, "features", whole, "--npy", os.path.join(d, "np16"))
    if r.returncode:
        report(False, "extract --dtype fp16", r.stderr.strip()[-200:])
        return
    x32, x16 = np.load(full + "_features.npy"), np.load(os.path.join(d, "np16_features.npy"))
    report(np.array_equal(x16, x32.astype(np.float16).astype(np.float32)),
           "extract --dtype fp16 stores numpy's float16 rounding of the fp32 features", f"{x16.shape}")
    out = os.path.join(d, "half_resumed.bin")
    cmd = [onnxtl, "extract", m, data, "-o", out, "--batch", "8", "--dtype", "fp16", "--quiet"]
    killed = kill_after_rows(cmd, out + ".partial", 20, 512 * 2 + 16)
    r = run(onnxtl, *cmd[1:])
    report(killed and r.returncode == 0 and same_file(out, whole),
           "extract --dtype fp16 resumed after SIGKILL equals an uninterrupted run byte for byte", r.stderr.strip()[-200:])
    shards = [os.path.join(d, f"half{k}.bin") for k in (1, 2)]
    for k, s in enumerate(shards, 1):
        run(onnxtl, "extract", m, data, "-o", s, "--batch", "8", "--dtype", "fp16", "--shard", f"{k}/2", "--quiet")
    merged = os.path.join(d, "half_merged.bin")
    r = run(onnxtl, "merge", merged, *shards)
    report(r.returncode == 0 and same_file(merged, whole), "merge of fp16 shards equals the unsharded run byte for byte",
           (r.stdout + r.stderr).strip()[-200:])
    huge = os.path.join(d, "huge.onnx")
    huge_values_model(huge)
    out = os.path.join(d, "huge.bin")
    r = run(onnxtl, "extract", huge, data, "-o", out, "--dtype", "fp16", "--quiet")
    lines = r.stderr.strip().splitlines()
    report(r.returncode == 1 and len(lines) == 1 and "float16" in r.stderr and out in r.stderr and "--dtype fp32" in r.stderr,
           "extract --dtype fp16 refuses features beyond float16's range in one line", r.stderr.strip()[-300:])


def test_views(onnxtl, data, d, ref):
    """extract --views 2: two rows per training image, following each other; one plain row per test image, as
    the plain extraction's; resumed after SIGKILL and merged from shards byte for byte as one run; --augment and
    --seed without --views refused."""
    m = model()
    whole = os.path.join(d, "views.bin")
    args = ["--views", "2", "--batch", "5", "--quiet"]  # batches of 5 rows end mid-image
    r = run(onnxtl, "extract", m, data, "-o", whole, *args)
    r = r if r.returncode else run(onnxtl, "features", whole, "--npy", os.path.join(d, "npv"))
    if r.returncode:
        report(False, "extract --views 2", r.stderr.strip()[-200:])
        return
    load = lambda p, k: np.load(os.path.join(d, f"{p}_{k}.npy"))
    xv, sv, xr, sr = load("npv", "features"), load("npv", "splits"), load("np32", "features"), load("np32", "splits")
    paths = open(os.path.join(d, "npv_paths.txt")).read().split()
    train = np.flatnonzero(sv == 0)
    pairs = all(paths[i] == paths[i + 1] for i in train[::2]) and len(train) == 2 * int((sr == 0).sum())
    # the plain run's batches are of 8: its convolutions may take other algorithms, to the last bits
    test_rel = float(np.abs(xv[sv == 2] - xr[sr == 2]).max() / np.abs(xr[sr == 2]).max())
    report(pairs and not np.array_equal(xv[train[0]], xv[train[1]]) and test_rel <= 1e-5,
           "extract --views 2: two different rows per training image, one after the other, and the test images' "
           "rows as a plain extraction's", f"{len(train)} training rows for {int((sr == 0).sum())} images; test rows "
           f"within {test_rel:.1e} (limit 1e-5)")
    out = os.path.join(d, "views_resumed.bin")
    cmd = [onnxtl, "extract", m, data, "-o", out, *args]
    killed = kill_after_rows(cmd, out + ".partial", 21, 512 * 4 + 16)
    r = run(onnxtl, *cmd[1:])
    report(killed and r.returncode == 0 and same_file(out, whole),
           "extract --views 2 killed mid-image and resumed equals an uninterrupted run byte for byte",
           r.stderr.strip()[-200:])
    shards = [os.path.join(d, f"views{k}.bin") for k in (1, 2)]
    for k, s in enumerate(shards, 1):
        run(onnxtl, "extract", m, data, "-o", s, *args, "--shard", f"{k}/2")
    merged = os.path.join(d, "views_merged.bin")
    r = run(onnxtl, "merge", merged, *shards)
    report(r.returncode == 0 and same_file(merged, whole), "merge of --views shards equals the unsharded run byte for "
           "byte", (r.stdout + r.stderr).strip()[-200:])
    for flag in (["--augment", "flip"], ["--seed", "3"]):
        r = run(onnxtl, "extract", m, data, "-o", os.path.join(d, "x.bin"), *flag)
        report(r.returncode == 2 and "--views" in r.stderr, f"extract {flag[0]} without --views is refused",
               r.stderr.strip())


def test_damaged_files(onnxtl, d, ref):
    data = open(ref, "rb").read()
    cases = [("truncated", data[:-100], "truncated"), ("cut in the header", data[:60], "truncated"),
             ("flipped byte in a row", data[:-3000] + bytes([data[-3000] ^ 0x40]) + data[-2999:], "corrupt"),
             ("not a features file", b"\xff\xd8\xff\xe0" + data[4:], "not an onnxtl features file"),
             ("empty", b"", "empty")]
    for name, content, want in cases:
        p = os.path.join(d, "damaged.bin")
        open(p, "wb").write(content)
        r = run(onnxtl, "features", p)
        report(r.returncode == 1 and want in r.stderr and p in r.stderr and len(r.stderr.strip().splitlines()) == 1,
               f"features file {name} is refused", r.stderr.strip())
    r = run(onnxtl, "features", ref, "--npy", os.path.join(d, "np"))
    x = np.load(os.path.join(d, "np_features.npy")) if r.returncode == 0 else None
    labels = np.load(os.path.join(d, "np_labels.npy")) if r.returncode == 0 else None
    paths = open(os.path.join(d, "np_paths.txt")).read().split() if r.returncode == 0 else []
    ok = x is not None and x.shape[0] == len(paths) == labels.shape[0] and all(
        ("/cat/" in p) == (l == 0) for p, l in zip(paths, labels))
    report(ok, "features --npy writes features, labels and paths row for row", f"{None if x is None else x.shape}")


def main():
    onnxtl, shared = sys.argv[1], sys.argv[2]
    only = sys.argv[3] if len(sys.argv) > 3 else None  # "bad_files": the sanitizer subset
    if not os.path.isdir(os.path.join(shared, "dogscats")):
        print(f"SKIP extract tests: {shared}/dogscats is missing (real photos live in ../shared)")
        return 0
    with tempfile.TemporaryDirectory() as d:
        if only == "bad_files":
            test_bad_files(onnxtl, shared, d)
            return 1 if failed else 0
        data = subset(shared, d, 40, 12)
        ref = test_resume(onnxtl, data, d)
        test_interrupt_and_lock(onnxtl, data, d, ref)
        test_disk_full(onnxtl, data, d, ref)
        test_many_entries(onnxtl, shared, d)
        test_bad_files(onnxtl, shared, d)
        test_streams(onnxtl, data, d, ref)
        test_shards(onnxtl, data, d, ref)
        test_half(onnxtl, data, d, ref)
        test_views(onnxtl, data, d, ref)
        test_damaged_files(onnxtl, d, ref)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

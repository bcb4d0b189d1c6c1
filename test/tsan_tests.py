#!/usr/bin/python3
"""ThreadSanitizer over extract's threads: the decoder threads, the batch
consumers of --streams and the row writer's commit thread, on real photos,
through a normal run, a --strict stop at a bad file and a SIGINT.  Run on
build-tsan/onnxtl (make SANITIZE=thread) with --threads 1: OpenMP's runtime
is not instrumented, so TSan could not see its synchronisation, and its
worker threads are not what this checks.  Any report fails the run.

usage: tsan_tests.py ONNXTL SHARED_DATA
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "build", "models", "resnet18_op17_fold.onnx")
ENV = dict(os.environ, TSAN_OPTIONS="halt_on_error=1 exitcode=66")
failed = 0


def report(ok, label, detail=""):
    global failed
    failed += not ok
    print(f"{'PASS' if ok else 'FAIL'} tsan {label}{': ' + detail if detail else ''}", flush=True)


def photos(shared, d, n):
    root = os.path.join(d, "photos")
    for cls in ("cat", "dog"):
        os.makedirs(os.path.join(root, "train", cls))
        src = os.path.join(shared, "dogscats", "train", cls)
        for f in sorted(os.listdir(src))[:n]:
            shutil.copy(os.path.join(src, f), os.path.join(root, "train", cls, f))
    return root


def extract(onnxtl, data, out, *extra):
    return [onnxtl, "extract", MODEL, data, "-o", out, "--threads", "1", "--decoders", "3", "--streams", "2",
            "--batch", "4", "--quiet", *extra]


def clean(stderr):
    return "ThreadSanitizer" not in stderr


def main():
    onnxtl, shared = sys.argv[1], sys.argv[2]
    if not os.path.isdir(os.path.join(shared, "dogscats")):
        print(f"SKIP tsan tests: {shared}/dogscats is missing (real photos live in ../shared)")
        return 0
    if not os.path.exists(MODEL):
        subprocess.run([sys.executable, os.path.join(ROOT, "models", "export_torchvision.py"), "--arch", "resnet18",
                        "--opset", "17", "--out", os.path.dirname(MODEL)], check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as d:
        data = photos(shared, d, 12)
        r = subprocess.run(extract(onnxtl, data, os.path.join(d, "a.bin")), capture_output=True, text=True, env=ENV)
        report(r.returncode == 0 and clean(r.stderr), "extract with 3 decoders, 2 streams and the commit thread",
               r.stderr.strip()[-300:])
        open(os.path.join(data, "train", "cat", "zz_truncated.jpg"), "wb").write(b"\xff\xd8\xff\xe0" + b"\0" * 64)
        r = subprocess.run(extract(onnxtl, data, os.path.join(d, "b.bin"), "--strict"), capture_output=True, text=True,
                           env=ENV)
        report(r.returncode == 1 and clean(r.stderr), "extract --strict stopping its threads at a bad file",
               r.stderr.strip()[-300:])
        partial = os.path.join(d, "c.bin.partial")
        p = subprocess.Popen(extract(onnxtl, data, os.path.join(d, "c.bin")), stderr=subprocess.PIPE, text=True, env=ENV)
        deadline = time.time() + 300
        while p.poll() is None and time.time() < deadline and not (os.path.exists(partial) and os.path.getsize(partial) > 20000):
            time.sleep(0.05)
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        err = p.communicate(timeout=300)[1]
        report(p.returncode in (0, 1) and clean(err), "extract interrupted by SIGINT", err.strip()[-300:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

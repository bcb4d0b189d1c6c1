#!/usr/bin/python3
"""The HTML reports, opened as a user opens them: headless Chromium (Debian's
chromium package) renders eval --report and fit-head --report to PNG
screenshots.  Every figure in the page must equal eval --json's (or
fit-head --log's); the page must be self-contained (no script, nothing
fetched); Chromium must log no console message for it and every photo in it
must decode.

usage: report_tests.py ONNXTL SHARED_DATA
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from html.parser import HTMLParser

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from eval_tests import seven_class_model  # noqa: E402
from extract_tests import failed_count, report  # noqa: E402

CHROMIUM = shutil.which("chromium")
# Counts the photos that did not decode, once the page has loaded; only ever added to a copy of a report.
PROBE = ("<script>window.addEventListener('load', () => { const broken = [...document.images].filter("
         "i => !i.complete || i.naturalWidth === 0).length; document.title = 'images ' + document.images.length + "
         "' broken ' + broken; });</script>")


class Figures(HTMLParser):
    """data-figure="KEY" cells and their text; img sources; anything that would run or fetch."""

    def __init__(self):
        super().__init__()
        self.figures, self.images, self.external, self._key = {}, [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._key = a.get("data-figure")
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "script" or (tag == "link" and "href" in a) or (tag != "svg" and re.match(r"https?:", a.get("src", ""))):
            self.external.append(tag)

    def handle_data(self, data):
        if self._key:
            self.figures[self._key] = float(data)
            self._key = None


def chromium(*args):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--enable-logging=stderr", "--v=0", *args], capture_output=True, text=True, timeout=120)


def console_lines(stderr):
    return [l for l in stderr.splitlines() if ":CONSOLE" in l]


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    return struct.unpack(">II", head[16:24]) if head[:8] == b"\x89PNG\r\n\x1a\n" else (0, 0)


def check_page(path, d, label, want_images):
    """Renders path, checks its console and its photos; returns its figures."""
    page = Figures()
    page.feed(open(path, encoding="utf-8").read())
    report(not page.external and all(s.startswith("data:image/jpeg;base64,") for s in page.images),
           f"{label}: self-contained (no script, no fetched resource, photos as data: URIs)", f"{page.external}")
    shot = os.path.join(d, os.path.basename(path) + ".png")
    r = chromium("--window-size=1200,2400", f"--screenshot={shot}", f"file://{path}")
    w, h = png_size(shot) if os.path.exists(shot) else (0, 0)
    logs = os.path.join(os.path.dirname(HERE), "build", "test-logs")
    if os.path.exists(shot) and os.path.isdir(logs):
        shutil.copy(shot, logs)  # for a person to look at
    report(r.returncode == 0 and (w, h) == (1200, 2400) and os.path.getsize(shot) > 20000 and not console_lines(r.stderr),
           f"{label}: headless Chromium renders it to a PNG screenshot with no console message",
           f"{w}x{h}, {os.path.getsize(shot) if os.path.exists(shot) else 0} bytes; {console_lines(r.stderr)[:2]}")
    probed = os.path.join(d, "probed.html")
    with open(probed, "w", encoding="utf-8") as f:
        f.write(open(path, encoding="utf-8").read().replace("</body>", PROBE + "</body>"))
    title = re.search(r"<title>images (\d+) broken (\d+)", chromium("--virtual-time-budget=5000", "--dump-dom",
                                                                      f"file://{probed}").stdout)
    report(title and int(title.group(1)) == want_images and title.group(2) == "0",
           f"{label}: every photo in it decodes in Chromium", title.group(0)[7:] if title else "no probe result")
    return page.figures


def close(a, b):
    return abs(a - b) <= 5e-5


def test_eval_report(onnxtl, mdl, test, d):
    path = os.path.join(d, "eval.html")
    r = subprocess.run([onnxtl, "eval", mdl, test, "--json", "--report", path], capture_output=True, text=True)
    report(r.returncode == 0 and os.path.exists(path), "eval --report writes the report", r.stderr.strip()[-200:])
    if r.returncode:
        return
    ev = json.loads(r.stdout)
    wrong = sum(p["label"] != p["predicted"] for p in ev["predictions"])
    got = check_page(path, d, "eval report", min(wrong, 60))
    want = {"top1": ev["top1"], "top5": ev["top5"], "ece": ev["ece"]}
    for c in ev["per_class"]:
        want |= {f"precision:{c['class']}": c["precision"], f"recall:{c['class']}": c["recall"], f"f1:{c['class']}": c["f1"]}
    for avg in ("macro", "weighted"):
        want |= {f"{k}:{avg} avg": ev[f"{avg}_avg"][k] for k in ("precision", "recall", "f1")}
    want |= {f"confusion:{i}:{j}": v for i, row in enumerate(ev["confusion"]) for j, v in enumerate(row)}
    bad = [k for k, v in want.items() if k not in got or not close(got[k], v)]
    report(not bad and len(got) == len(want), f"eval report: its {len(want)} figures equal eval --json's",
           f"differing: {bad[:4]}")


def test_training_report(onnxtl, d):
    feats, path, log = os.path.join(d, "f.bin"), os.path.join(d, "training.html"), os.path.join(d, "log.jsonl")
    r = subprocess.run([onnxtl, "fit-head", feats, "-o", "none", "--head-only", os.path.join(d, "h.onnx"), "--epochs", "4",
                        "--lr", "1e-3", "--log", log, "--report", path, "--quiet"], capture_output=True, text=True)
    report(r.returncode == 0 and os.path.exists(path), "fit-head --log --report writes both", r.stderr.strip()[-200:])
    if r.returncode:
        return
    lines = [json.loads(l) for l in open(log)]
    epochs = [l for l in lines if "step" not in l]
    steps = [l for l in lines if "step" in l]
    report(len(epochs) == 4 and steps and [s["step"] for s in steps] == list(range(1, len(steps) + 1)) and
           all({"loss", "accuracy", "epoch"} <= s.keys() for s in steps) and
           all({"train_loss", "train_accuracy", "test_loss", "test_accuracy"} <= e.keys() for e in epochs),
           "fit-head --log writes a JSON line per step and per epoch", f"{len(steps)} steps, {len(epochs)} epochs")
    got = check_page(path, d, "fit-head report", 0)
    want = {f"{k}:{e['epoch']}": e[j] for e in epochs for k, j in
            (("train_loss", "train_loss"), ("train_accuracy", "train_accuracy"), ("eval_loss", "test_loss"),
             ("eval_accuracy", "test_accuracy"))}
    bad = [k for k, v in want.items() if k not in got or not close(got[k], v)]
    report(not bad, f"fit-head report: its {len(want)} figures equal fit-head --log's", f"differing: {bad[:4]}")


def main():
    onnxtl, shared = sys.argv[1], sys.argv[2]
    if not CHROMIUM:
        print("SKIP report tests: chromium is not installed (tools/install_deps.sh installs it)")
        return 0
    if not os.path.isdir(os.path.join(shared, "dogscats")):
        print(f"SKIP report tests: {shared}/dogscats is missing")
        return 0
    with tempfile.TemporaryDirectory() as d:
        mdl, test = seven_class_model(onnxtl, shared, d)
        test_eval_report(onnxtl, mdl, test, d)
        test_training_report(onnxtl, d)
    return 1 if failed_count() else 0


if __name__ == "__main__":
    sys.exit(main())

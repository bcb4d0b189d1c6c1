#!/usr/bin/python3
"""make install into a temporary DESTDIR, as a new user would use it:
examples/classify.c compiled with the installed onnxtl.pc against the
installed shared library must classify photos as `onnxtl run` does; the
library exports the public API only; the manual holds every --help text;
make uninstall removes every file install wrote.

usage: install_tests.py ONNXTL SHARED_DATA
"""
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from extract_tests import failed_count, model, report, subset  # noqa: E402

PREFIX = "/usr/local"


def sh(*args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def installed_files(dest):
    return sorted(os.path.relpath(os.path.join(r, f), dest) for r, _, fs in os.walk(dest) for f in fs)


def test_layout(dest):
    lib = os.path.join(dest, PREFIX[1:], "lib")
    want = ["bin/onnxtl", "include/onnxtl.h", "include/onnxtl_base.h", "lib/libonnxtl.a", "lib/libonnxtl.so",
            "lib/libonnxtl.so.0", "lib/libonnxtl.so.0.1.0", "lib/pkgconfig/onnxtl.pc", "share/man/man1/onnxtl.1"]
    got = [os.path.relpath(f, PREFIX[1:]) for f in installed_files(dest)]
    report(got == want, "make install DESTDIR=... PREFIX=/usr/local writes the CLI, both libraries, the headers, "
           "onnxtl.pc and the manual", f"{got}")
    so = os.path.join(lib, "libonnxtl.so")
    soname = [l.split("[")[1].rstrip("]") for l in sh("readelf", "-d", so).stdout.splitlines() if "SONAME" in l]
    report(soname == ["libonnxtl.so.0"] and os.readlink(so) == "libonnxtl.so.0" and
           os.readlink(os.path.join(lib, "libonnxtl.so.0")) == "libonnxtl.so.0.1.0",
           "libonnxtl.so carries the soname libonnxtl.so.0, linked to libonnxtl.so.0.1.0", f"soname {soname}")
    symbols = [l.split()[-1] for l in sh("nm", "-D", "--defined-only", so).stdout.splitlines()]
    others = [s for s in symbols if not s.startswith("onnxtl_")]
    report(symbols and not others, "libonnxtl.so exports the public onnxtl_ API and nothing else",
           f"{len(symbols)} symbols; others: {others[:5]}")


def fine_tuned_model(onnxtl, shared, d):
    data = subset(shared, d, 6, 3)
    feats, out = os.path.join(d, "f.bin"), os.path.join(d, "model.onnx")
    r1 = sh(onnxtl, "extract", model(), data, "-o", feats, "--quiet")
    r2 = sh(onnxtl, "fit-head", feats, "-o", out, "--epochs", "1", "--quiet")
    ok = r1.returncode == 0 and r2.returncode == 0
    report(ok, "a model to classify with: extract, then fit-head", (r1.stderr + r2.stderr).strip()[-200:])
    photos = sorted(os.path.join(data, "test", c, f) for c in ("cat", "dog") for f in os.listdir(os.path.join(data, "test", c)))
    return (out if ok else None), photos


def test_example(onnxtl, shared, dest, d):
    usr = os.path.join(dest, PREFIX[1:])
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(usr, "lib", "pkgconfig"))
    flags = sh("pkg-config", f"--define-variable=prefix={usr}", "--cflags", "--libs", "onnxtl", env=env)
    exe = os.path.join(d, "classify")
    r = sh("sh", "-c", f"cc {os.path.join(ROOT, 'examples', 'classify.c')} {flags.stdout.strip()} -o {exe}")
    report(flags.returncode == 0 and r.returncode == 0,
           "examples/classify.c compiles with cc $(pkg-config --cflags --libs onnxtl)",
           f"{flags.stdout.strip()} {flags.stderr.strip()} {r.stderr.strip()[-300:]}")
    if r.returncode:
        return
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(usr, "lib"))
    linked = [l for l in sh("ldd", exe, env=env).stdout.splitlines() if "libonnxtl" in l]
    report(len(linked) == 1 and usr in linked[0], "the example runs on the installed libonnxtl.so", linked[0].strip() if linked else "")
    mdl, photos = fine_tuned_model(onnxtl, shared, d)
    if not mdl:
        return
    ours = sh(exe, mdl, *photos, env=env)
    theirs = sh(onnxtl, "run", mdl, *photos, "--json", "--top", "1")
    got = [l.split("\t") for l in ours.stdout.splitlines()]
    want = [json.loads(l) for l in theirs.stdout.splitlines()]
    same = ours.returncode == 0 and len(got) == len(want) == len(photos) and all(
        g[0] == w["path"] and g[1] == w["predictions"][0]["class"] and
        abs(float(g[2]) - w["predictions"][0]["probability"]) <= 1e-5 for g, w in zip(got, want))
    # one photo a run against run's batches of 16: the probabilities may differ in the sixth digit
    report(same, "the example's top class for each photo equals onnxtl run's, its probability within 1e-5",
           f"{len(got)} photos; {ours.stderr.strip()[-200:]}")
    r = sh(exe, mdl, os.path.join(d, "absent.jpg"), env=env)
    report(r.returncode == 1 and "absent.jpg" in r.stderr, "the example names a photo it cannot read",
           r.stderr.strip())


def normalised(text):
    return [" ".join(l.split()) for l in text.splitlines() if l.strip()]


def test_manual(onnxtl, dest):
    page = os.path.join(dest, PREFIX[1:], "share", "man", "man1", "onnxtl.1")
    r = sh("man", "-l", page, env=dict(os.environ, MANWIDTH="200"))
    text = re.sub(".\b", "", r.stdout)  # the bold and underline man writes by overstriking
    rendered = set(normalised(text))
    top = sh(onnxtl, "--help").stdout
    commands = [l.split()[0] for l in top.split("commands:\n")[1].split("\n\n")[0].splitlines()
                if l.startswith("  ") and not l.startswith("   ")]
    texts = {"onnxtl --help": top} | {f"onnxtl {c} --help": sh(onnxtl, c, "--help").stdout for c in commands}
    headings = re.compile(r"^[a-z][a-z ]*:$")  # the top text's headings become the manual's sections
    missing = [(k, l) for k, t in texts.items() for l in normalised(t)[1:] if l not in rendered and not
               (k == "onnxtl --help" and (headings.match(l) or l == "usage: onnxtl COMMAND [options]"))]
    sections = [l for l in text.splitlines() if l and not l[0].isspace()]
    want = ["NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "COMMAND OPTIONS"]
    report(r.returncode == 0 and commands and not missing and all(w in sections for w in want),
           f"man onnxtl has the sections {', '.join(want)} and every line of onnxtl --help and of the "
           f"{len(commands)} commands' --help", f"first missing: {missing[:2]}; sections {sections[1:-1]}")


def main():
    onnxtl, shared = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as d:
        dest = os.path.join(d, "dest")
        r = sh("make", "-s", "-C", ROOT, "install", f"DESTDIR={dest}", f"PREFIX={PREFIX}")
        report(r.returncode == 0, "make install into a DESTDIR", r.stderr.strip()[-300:])
        test_layout(dest)
        test_manual(onnxtl, dest)
        if os.path.isdir(os.path.join(shared, "dogscats")):
            test_example(onnxtl, shared, dest, d)
        else:
            print(f"SKIP the installed example: {shared}/dogscats is missing")
        r = sh("make", "-s", "-C", ROOT, "uninstall", f"DESTDIR={dest}", f"PREFIX={PREFIX}")
        left = installed_files(dest)
        report(r.returncode == 0 and not left, "make uninstall removes every file make install wrote", f"left: {left}")
    sys.exit(1 if failed_count() else 0)


if __name__ == "__main__":
    main()

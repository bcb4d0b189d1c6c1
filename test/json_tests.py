#!/usr/bin/python3
"""--json on every command that prints results, checked against what other
tools say about the same files (the onnx package on the model, numpy on
`features --npy`'s arrays, the folder itself), and NO_COLOR on a terminal.

usage: json_tests.py ONNXTL SHARED_DATA
"""
import json
import os
import pty
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from extract_tests import failed_count, model, report, subset  # noqa: E402


def sh(*args):
    return subprocess.run(args, capture_output=True, text=True)


def parsed(r, lines=False):
    try:
        return [json.loads(l) for l in r.stdout.splitlines()] if lines else json.loads(r.stdout)
    except json.JSONDecodeError:
        return None


def test_info(onnxtl):
    path = model()
    info = parsed(sh(onnxtl, "info", path, "--json", "--device", "cpu"))
    m = onnx.load(path)
    weights = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
    nodes = {}
    for n in m.graph.node:
        nodes[n.op_type] = nodes.get(n.op_type, 0) + 1
    counted = {op: info["ops"].get(op, 0) + info["ops_removed"].get(op, 0) for op in nodes} if info else {}
    inits = {t.name for t in m.graph.initializer}
    inputs = [(i.name, [d.dim_value or None for d in i.type.tensor_type.shape.dim]) for i in m.graph.input if i.name not in inits]
    report(info and info["parameters"] == weights and counted == nodes and info["head_input"]["features"] == 512 and
           [(i["name"], i["dims"]) for i in info["inputs"]] == inputs and
           info["placement"]["on_device"] == info["placement"]["nodes"],
           "info --json: parameters, the op census and the inputs as the onnx package reads the file",
           f"{info and info['parameters']} parameters, onnx {weights}; ops {counted == nodes}")


def test_features(onnxtl, shared, d):
    data = subset(shared, d, 5, 2)
    feats = os.path.join(d, "f.bin")
    ex = parsed(sh(onnxtl, "extract", model(), data, "-o", feats, "--quiet", "--json"))
    on_disk = sum(len(fs) for _, _, fs in os.walk(data))
    report(ex and ex["images"] == on_disk == ex["extracted"] and ex["output"] == feats and ex["stats"]["rows"] == on_disk,
           "extract --json: the images of the folder, all extracted", f"{ex and ex['images']} of {on_disk}")
    prefix = os.path.join(d, "x")
    fe = parsed(sh(onnxtl, "features", feats, "--json", "--npy", prefix))
    x = np.load(prefix + "_features.npy")
    report(fe and fe["dim"] == x.shape[1] == 512 and fe["stats"]["rows"] == x.shape[0] and
           abs(fe["stats"]["min"] - x.min()) < 1e-6 and abs(fe["stats"]["max"] - x.max()) < 1e-6 and
           abs(fe["stats"]["mean"] - x.mean(dtype=np.float64)) < 1e-5 and fe["classes"] == ["cat", "dog"] and
           fe["stats"]["splits"]["train"] == {"cat": 5, "dog": 5},
           "features --json: rows, dim and value range as numpy finds them in the exported arrays",
           f"{fe and fe['stats']}")
    shards = [os.path.join(d, f"s{k}.bin") for k in (1, 2)]
    for k, s in enumerate(shards, 1):
        sh(onnxtl, "extract", model(), data, "-o", s, "--shard", f"{k}/2", "--quiet")
    me = parsed(sh(onnxtl, "merge", os.path.join(d, "m.bin"), *shards, "--json"))
    report(me and me["rows"] == on_disk and me["shards"] == 2, "merge --json: the shards and rows merged", f"{me}")
    out = os.path.join(d, "model.onnx")
    lines = parsed(sh(onnxtl, "fit-head", feats, "-o", out, "--epochs", "3", "--lr", "1e-3", "--json"), lines=True)
    ev = parsed(sh(onnxtl, "eval", out, os.path.join(data, "test"), "--json"))
    result = lines[-1] if lines else {}
    report(lines and [l.get("epoch") for l in lines[:-1]] == [1, 2, 3] and result.get("model") == out and ev and
           abs(result["eval_accuracy"] - ev["accuracy"]) < 1e-9,
           "fit-head --json: a line per epoch, then the result, whose test accuracy eval --json confirms",
           f"{len(lines or [])} lines; {result.get('eval_accuracy')} against {ev and ev['accuracy']}")


def stderr_on_terminal(args, env):
    """What a command writes to stderr when stderr is a terminal."""
    main, child = pty.openpty()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=child, env=env)
    os.close(child)
    out = b""
    try:
        while chunk := os.read(main, 4096):
            out += chunk
    except OSError:  # the terminal closes with the command
        pass
    p.wait()
    os.close(main)
    return out.decode(errors="replace")


def test_progress(onnxtl, shared, d):
    data = subset(shared, os.path.join(d, "p"), 20, 0)
    out = os.path.join(d, "p.bin")
    shown = stderr_on_terminal([onnxtl, "extract", model(), data, "-o", out, "--batch", "4"], dict(os.environ, TERM="xterm"))
    redraws = len(re.findall("\r(?!\n)", shown))  # a terminal turns each newline into \r\n
    report(redraws >= 2 and "img/s" in shown and "ETA" in shown and shown.count("\n") <= 4,
           "extract's progress on a terminal: one line redrawn in place, with a rate and an ETA",
           shown.replace("\r", "\\r")[-160:])


def test_no_color(onnxtl, d):
    args = [onnxtl, "info", os.path.join(d, "absent.onnx")]
    env = dict(os.environ, TERM="xterm")
    env.pop("NO_COLOR", None)
    coloured = stderr_on_terminal(args, env)
    plain = stderr_on_terminal(args, dict(env, NO_COLOR="1"))
    piped = sh(*args).stderr
    report("\x1b[" in coloured and "\x1b[" not in plain and "\x1b[" not in piped and "absent.onnx" in plain,
           "errors are coloured on a terminal, and not with NO_COLOR set or through a pipe", plain.strip())


def main():
    onnxtl, shared = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as d:
        test_info(onnxtl)
        if os.path.isdir(os.path.join(shared, "dogscats")):
            test_features(onnxtl, shared, d)
            test_progress(onnxtl, shared, d)
        else:
            print(f"SKIP --json on extract, features, merge and fit-head: {shared}/dogscats is missing")
        test_no_color(onnxtl, d)
    return 1 if failed_count() else 0


if __name__ == "__main__":
    sys.exit(main())

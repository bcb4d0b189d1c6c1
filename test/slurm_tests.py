#!/usr/bin/python3
"""The README's Slurm recipe, run for real: a single-node cluster from
Debian's packages (munged, slurmctld, slurmd), configured under a temporary
folder and listening on localhost only, runs tools/slurm_extract.sbatch as a
4-task job array and the merge as a job that depends on it.  The merged file
must equal an unsharded run's byte for byte.

Skips, saying why, where Slurm is not installed (tools/install_deps.sh slurm)
or cannot start.

usage: slurm_tests.py ONNXTL SHARED_DATA
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from extract_tests import failed_count, model, report, subset  # noqa: E402

SCRIPT = os.path.join(ROOT, "tools", "slurm_extract.sbatch")
TASKS = 4


def skip(why):
    print(f"SKIP slurm: {why}", flush=True)
    sys.exit(0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def slurm_conf(d, host):
    return f"""ClusterName=onnxtltest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d}/munge.sock
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=onnxtl Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    """munged, slurmctld and slurmd under d; every command gets SLURM_CONF."""

    def __init__(self, d):
        self.d = d
        self.env = dict(os.environ, SLURM_CONF=os.path.join(d, "slurm.conf"))

    def run(self, *args):
        return subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=60)

    def start(self):
        d = self.d
        for sub in ("state", "spool"):
            os.makedirs(os.path.join(d, sub))
        with open(self.env["SLURM_CONF"], "w") as f:
            f.write(slurm_conf(d, socket.gethostname().split(".")[0]))
        key = os.path.join(d, "munge.key")
        steps = [["mungekey", "--create", f"--keyfile={key}"],
                 ["munged", "--force", f"--key-file={key}", f"--socket={d}/munge.sock", f"--pid-file={d}/munged.pid",
                  f"--log-file={d}/munged.log", f"--seed-file={d}/munged.seed"],
                 ["slurmctld", "-f", self.env["SLURM_CONF"]],
                 ["slurmd", "-f", self.env["SLURM_CONF"]]]
        for step in steps:
            r = self.run(*step)
            if r.returncode != 0:
                return f"{step[0]} failed: {(r.stderr or r.stdout).strip()[-300:]}"
        for _ in range(60):
            r = self.run("sinfo", "-h", "-o", "%T")
            if r.returncode == 0 and r.stdout.strip() == "idle":
                return None
            time.sleep(0.5)
        return f"the node did not come up (sinfo: {(r.stdout + r.stderr).strip()}); {self.log_tail()}"

    def log_tail(self):
        tails = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = os.path.join(self.d, name)
            if os.path.exists(path):
                with open(path) as f:
                    tails.append(f"{name}: " + " | ".join(f.read().strip().splitlines()[-2:]))
        return "; ".join(tails)

    def stop(self):
        pids = []
        for name in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            try:
                with open(os.path.join(self.d, name)) as f:
                    pids.append(int(f.read().strip()))
            except (OSError, ValueError):
                pass
        self.run("scontrol", "shutdown")
        self.run("munged", "--stop", f"--socket={self.d}/munge.sock")
        deadline = time.time() + 15
        for pid in pids:  # the daemons save their state, then exit; whatever is left is killed
            while time.time() < deadline and alive(pid):
                time.sleep(0.2)
            if alive(pid):
                os.kill(pid, 9)

    def sbatch(self, *args):
        r = self.run("sbatch", "--parsable", *args)
        return r.stdout.strip().split(";")[0] if r.returncode == 0 else None, r.stderr.strip()

    def states(self, job):
        """JobState of every job (array tasks included) of job, until Slurm forgets them."""
        r = self.run("scontrol", "-o", "show", "job", job)
        return [w.split("=", 1)[1] for w in r.stdout.split() if w.startswith("JobState=")]

    def wait(self, jobs, limit=300):
        done = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
        states = {}
        deadline = time.time() + limit
        while time.time() < deadline:
            states = {j: self.states(j) for j in jobs}
            if all(s and all(x in done for x in s) for s in states.values()):
                break
            time.sleep(1)
        return states


def test_array_and_merge(onnxtl, cluster, data, d):
    m = model("resnet18")
    opts = ["--batch", "8", "--quiet"]
    ref = os.path.join(d, "unsharded.bin")
    r = subprocess.run([onnxtl, "extract", m, data, "-o", ref, "--threads", "1"] + opts, capture_output=True, text=True)
    report(r.returncode == 0, "slurm: the unsharded reference run", r.stderr.strip()[-200:])
    out = os.path.join(d, "features.bin")
    cluster.env["ONNXTL"] = os.path.abspath(onnxtl)
    array, err = cluster.sbatch(f"--array=1-{TASKS}", "--cpus-per-task=1", f"--chdir={d}",
                                f"--output={d}/extract-%a.log", SCRIPT, "extract", m, data, out, *opts)
    report(array is not None, f"slurm: sbatch accepts tools/slurm_extract.sbatch as a {TASKS}-task job array", err)
    if array is None:
        return
    merge, err = cluster.sbatch(f"--dependency=afterok:{array}", "--cpus-per-task=1", f"--chdir={d}", f"--output={d}/merge.log",
                                SCRIPT, "merge", out)
    report(merge is not None, "slurm: sbatch accepts the merge as a job depending on the array", err)
    states = cluster.wait([array] + ([merge] if merge else []))
    shards = sorted(f for f in os.listdir(d) if f.endswith(f"-of-{TASKS}.bin"))
    ok = all(s and set(s) == {"COMPLETED"} for s in states.values())
    report(ok and len(shards) == TASKS, f"slurm: the {TASKS} array tasks and the merge complete",
           f"states {states}, shard files {shards}" + ("" if ok else f"; {cluster.log_tail()}"))
    same = os.path.exists(out) and open(out, "rb").read() == open(ref, "rb").read()
    report(same, f"slurm: the merged file of {TASKS} shards equals the unsharded run byte for byte",
           f"{os.path.getsize(out) if os.path.exists(out) else 0} bytes")


def main():
    onnxtl, shared = sys.argv[1], sys.argv[2]
    missing = [t for t in ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo")
               if not shutil.which(t, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")]
    if missing:
        skip(f"{', '.join(missing)} not installed (tools/install_deps.sh slurm installs them)")
    if os.geteuid() != 0:
        skip("slurmd runs jobs as root here, so the test needs root")
    if not os.path.isdir(os.path.join(shared, "dogscats")):
        skip(f"{shared}/dogscats is missing")
    os.environ["PATH"] += ":/usr/sbin:/sbin"
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o700)  # munged refuses a key or socket others can reach
        cluster = Cluster(os.path.join(d, "slurm"))
        os.makedirs(cluster.d, mode=0o700)
        try:
            why = cluster.start()
            if why:
                skip(f"the single-node cluster could not start: {why}")
            data = subset(shared, d, 12, 4)
            test_array_and_merge(onnxtl, cluster, data, d)
        finally:
            cluster.stop()
    sys.exit(1 if failed_count() else 0)


if __name__ == "__main__":
    main()

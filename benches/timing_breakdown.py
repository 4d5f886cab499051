#!/usr/bin/env python3
"""Where runh's time goes, phase by phase: `sudo benches/timing_breakdown.py [-n N] [RUNH]`.

Runs N rounds of create / start / delete (separate calls, containerd's path) and N `run`s of
/bin/true with RUNH_TIMING=1, collects the phase lines every call prints (see
python/runh/timing.py), and prints the median and minimum of each phase. On a hybrid cgroup
host it re-runs itself in a private mount namespace with a fresh cgroup2 /sys/fs/cgroup, as
the benchmark harness does. The minimum is the figure to read on a loaded machine: the
phases are short and preemption only ever adds to them.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

from runh.bench import bundle, environment  # noqa: E402

LINE = re.compile(r"runh timing: (\w+): (.*?)\s+(-?[\d.]+) ms")


def collect(runh, n, work):
    root = os.path.join(work, "root")
    b = os.path.join(work, "b")
    os.makedirs(b)
    bundle.build_rootfs(os.path.join(work, "rootfs"))
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(bundle.base_config(os.path.join(work, "rootfs"), ["/bin/true"]), f)
    env = dict(os.environ, RUNH_TIMING="1")
    out = []

    def call(*args):
        # stderr to a file, not a pipe: the parked init inherits runh's stdio, so a pipe
        # would not reach EOF until the container exits.
        with tempfile.TemporaryFile("w+") as err:
            r = subprocess.run([runh, "--root", root, *args], cwd=b, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            err.seek(0)
            text = err.read()
        if r.returncode != 0:
            raise SystemExit(f"runh {' '.join(args)}: {text.strip()}")
        out.append(text)

    for i in range(n):
        call("create", "--pid-file", os.path.join(work, "pid"), f"t{i}")
        call("start", f"t{i}")
        with open(os.path.join(work, "pid")) as f:
            pid = int(f.read())
        try:
            os.waitpid(pid, 0)  # the container exited: reap it (we are its subreaper)
        except ChildProcessError:
            pass
        call("delete", "--force", f"t{i}")
        call("run", f"r{i}")
    return "".join(out)


def table(text):
    phases = {}
    for m in LINE.finditer(text):
        phases.setdefault((m[1], m[2]), []).append(float(m[3]))
    rows = []
    for (cmd, name), v in phases.items():
        rows.append(f"{cmd:7} {name:36} {statistics.median(v):8.3f} {min(v):8.3f}   n={len(v)}")
    return "command phase                                  median      min  (ms)\n" + "\n".join(rows)


def main(argv):
    n = 20
    if argv[:1] == ["-n"]:
        n, argv = int(argv[1]), argv[2:]
    runh = argv[0] if argv else os.path.join(HERE, "..", ".venv", "bin", "runh")
    if environment.cgroup_mode() != "v2" and not os.environ.get("RUNH_BREAKDOWN_NS"):
        os.environ["RUNH_BREAKDOWN_NS"] = "1"
        wrapped = environment.wrapper_argv([sys.executable, os.path.abspath(__file__), "-n", str(n), runh])
        return subprocess.call(wrapped)
    import ctypes

    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: inits come back to us
    work = tempfile.mkdtemp(prefix="rhtb")
    try:
        print(table(collect(runh, n, work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

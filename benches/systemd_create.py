"""`create` and `run` with --systemd-cgroup: runh, runc and crun side by side, in one
interleaved run, against a real systemd.

Run it where systemd manages the cgroups: in the guest, inside the namespaces of the
systemd that tests/systemd_guest.py boots,

    flock /work/vm.lock ../shared/vm/vm-run '.venv/bin/python tests/systemd_guest.py .venv/bin/python benches/systemd_create.py -n 7'

Each iteration times, for each runtime, `create` of a parked container (the container
is then deleted, untimed) and `run` of /bin/true (create + start + wait + delete), every
one in its own scope "runhbench.slice:<runtime><what>:<n>".

Fairness: the six timed calls of an iteration come in a shuffled order (seeded, --seed),
so that no runtime always follows the same one; and before every timed call the bench
waits, untimed, until systemd is idle: no job queued (ListJobs empty, through
`systemctl list-jobs`) and no unit of an earlier call left in runhbench.slice (its
cgroup directory gone), and then until the CPUs are quiet (at most 20% busy over 0.25 s,
from /proc/stat: the kernel frees a dead container's namespaces in its own workers). Without that wait, a call that came right after another
runtime's delete or run paid for systemd still stopping that one's scope (the guest has
2 emulated CPUs, and systemd's work is on them).

Prints medians and the ratios to runc and crun, and with -o the raw figures as JSON.
--timing K then makes K more runh create and run calls (untimed in the table) with
RUNH_TIMING=1 and prints the median of each phase. The guest is emulated and reads
binaries over 9p, so absolute times mean little; the ratios are what to read.
"""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

from bundle import build_bundle, build_rootfs, default_spec  # noqa: E402


def runtimes(runh):
    out = {"runh": runh}
    for name in ("runc", "crun"):
        p = shutil.which(name)
        if p:
            out[name] = p
    return out


SLICE_DIR = "/sys/fs/cgroup/runhbench.slice"


def wait_idle(timeout=60.0):
    """Until systemd has no job queued and runhbench.slice holds no unit (every earlier
    scope stopped and its cgroup removed); untimed, the same for every runtime. Returns
    the seconds waited."""
    t0 = time.monotonic()
    while True:
        left = [d for d in (os.listdir(SLICE_DIR) if os.path.isdir(SLICE_DIR) else [])
                if d.endswith((".scope", ".slice"))]
        if not left:
            jobs = subprocess.run(["systemctl", "list-jobs", "--no-legend"], capture_output=True,
                                  text=True).stdout.strip()
            if not jobs:
                return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"systemd not idle after {timeout:.0f} s: units {left}")
        time.sleep(0.05)


def _cpu_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]  # all, idle + iowait


def wait_quiet(busy=0.2, window=0.25, timeout=10.0):
    """Until the CPUs were at most `busy` busy over `window` seconds (or `timeout`): the
    kernel's own teardown of the last container (its namespaces are freed by kernel
    workers after the runtime has exited) and systemd's work after a stop use the same
    two emulated CPUs as the next call. Untimed, the same for every runtime."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        a = _cpu_ticks()
        time.sleep(window)
        b = _cpu_ticks()
        total, idle = b[0] - a[0], b[1] - a[1]
        if total and 1 - idle / total <= busy:
            return


def timed(argv, env=None):
    """Seconds the call took, after waiting for an idle systemd; with env, also its
    stderr (RUNH_TIMING's report)."""
    # stderr to a file, not a pipe: a created container's init keeps runh's stdio open.
    import tempfile

    wait_idle()
    wait_quiet()
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        rc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                            env=env).returncode
        dt = time.monotonic() - t0
        err.seek(0)
        text = err.read()
        if rc != 0:
            raise RuntimeError(f"{' '.join(argv)}: rc={rc} {text.strip()[:300]}")
    return (dt, text) if env is not None else dt


def set_scope(bundle, rt, what, i):
    # A new scope each time: the same name would race with the last one's stop.
    with open(f"{bundle}/config.json") as f:
        c = json.load(f)
    c["linux"]["cgroupsPath"] = f"runhbench.slice:{rt}{what}:{i}"
    with open(f"{bundle}/config.json", "w") as f:
        json.dump(c, f)


def one(rts, bundles, rt, what, i, env=None):
    """One timed call: create (then deleted, untimed) or run; its seconds (and stderr
    with env)."""
    base = [rts[rt], "--systemd-cgroup", "--root", f"/run/bench-{rt}"]
    set_scope(bundles[rt, what], rt, what, i)
    cid = f"b{i}" if what == "create" else f"b{i}r"
    out = timed(base + [what, "--bundle", bundles[rt, what], cid], env)
    if what == "create":
        subprocess.run(base + ["delete", "--force", cid], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return out


def make_bundles(work, rts):
    template = build_rootfs(f"{work}/_template")
    bundles = {}
    for rt in rts:
        for what, args in (("create", ["sleep", "1000"]), ("run", ["true"])):
            def ed(c, rt=rt, what=what):
                c["linux"]["cgroupsPath"] = f"runhbench.slice:{rt}{what}:x"
                c["linux"].pop("resources", None)  # crun's device filter is the same for all
                c["ociVersion"] = "1.0.2"  # crun 1.8 refuses versions it does not know
            bundles[rt, what] = build_bundle(f"{work}/{rt}-{what}", args=args, template=template,
                                             spec=default_spec("builtin"), edit=ed)
    return bundles


def bench(n, work, runh, warmup=1, seed=1):
    rts = runtimes(runh)
    bundles = make_bundles(work, rts)
    times = {rt: {"create": [], "run": []} for rt in rts}
    order = [(rt, what) for rt in rts for what in ("create", "run")]
    rng = random.Random(seed)
    for i in range(warmup + n):
        rng.shuffle(order)
        for rt, what in order:
            dt = one(rts, bundles, rt, what, i)
            if i >= warmup:
                times[rt][what].append(dt)
    return times


_PHASE = re.compile(r"runh timing: (\w+): (.+?)\s+([0-9.]+) ms")


def phases(k, work, runh, first=1000):
    """K runh create and run calls with RUNH_TIMING=1: {command: {phase: [ms, ...]}}."""
    rts = {"runh": runh}
    bundles = make_bundles(f"{work}/timing", rts)
    env = dict(os.environ, RUNH_TIMING="1")
    out = {}
    for i in range(first, first + k):
        for what in ("create", "run"):
            _, text = one(rts, bundles, "runh", what, i, env)
            for m in _PHASE.finditer(text):
                cmd, name, ms = m.group(1), m.group(2).strip(), float(m.group(3))
                out.setdefault(what, {}).setdefault(name, []).append(ms)
    return out


def phase_report(ph):
    lines = []
    for what, rows in ph.items():
        lines.append(f"runh {what} with RUNH_TIMING=1, median of {max(len(v) for v in rows.values())} "
                     f"(ms; phases in the order of their end):")
        for name, v in rows.items():
            lines.append(f"  {name:<30} {statistics.median(v):9.1f}  (min {min(v):.1f}, max {max(v):.1f})")
    return "\n".join(lines)


def report(times, bases=("runc", "crun")):
    bases = [b for b in bases if b in times]
    lines = [f"{'runtime':8} {'metric':7} {'median s':>9} {'min s':>8} {'max s':>8}"
             + "".join(f" {'vs ' + b:>8}" for b in bases)]
    ratios = {}
    for rt, m in times.items():
        for what, v in m.items():
            med = statistics.median(v)
            row = f"{rt:8} {what:7} {med:9.3f} {min(v):8.3f} {max(v):8.3f}"
            for b in bases:
                r = med / statistics.median(times[b][what])
                ratios[rt, what, b] = r
                row += f" {r:7.2f}x"
            lines.append(row)
    return "\n".join(lines), ratios


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10, help="timed iterations per runtime (default 10)")
    ap.add_argument("-w", type=int, default=1, help="untimed warm-up iterations (default 1)")
    ap.add_argument("--work", default="/tmp/rh-sd-bench")
    ap.add_argument("--runh", default=os.path.join(REPO, ".venv", "bin", "runh"))
    ap.add_argument("-o", help="write the raw times as JSON here")
    ap.add_argument("--seed", type=int, default=1, help="the shuffle's seed (default 1)")
    ap.add_argument("--timing", type=int, default=0, metavar="K",
                    help="then K runh create and run calls with RUNH_TIMING=1: phase medians")
    a = ap.parse_args()
    times = bench(a.n, a.work, a.runh, a.w, a.seed)
    text, _ = report(times)
    print(text, flush=True)
    ph = phases(a.timing, a.work, a.runh) if a.timing else {}
    if ph:
        print(phase_report(ph), flush=True)
    if a.o:
        with open(a.o, "w") as f:
            json.dump(dict(times, **({"runh_phases_ms": ph} if ph else {})), f, indent=1)


if __name__ == "__main__":
    main()

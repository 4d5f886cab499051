#!/usr/bin/env python3
"""runh vs runc on the same busybox bundle, in the same run (issue 2's numbers).

    sudo .venv/bin/python benches/run_vs_runc.py [-n 50] [--warmup 5]

1. `runh run` vs `runc run` of /bin/true, interleaved (the order alternates every
   iteration so drift and cache effects hit both alike), N runs after a warm-up:
   median, p95, and the ratio runh/runc of the medians (target: <= 0.8).
2. Per-call overhead: `runh state <missing id>` vs `/usr/bin/python3.11 -I -S -c pass`
   (the interpreter start that every runh call pays), interleaved the same way.

Prints a table and writes JSON to benches/results/run_vs_runc-<UTC time>.json.

--cgroup2-ns runs both runtimes inside a private mount namespace whose /sys/fs/cgroup is a
fresh cgroup2 mount (as `runh bench` does on hybrid hosts), i.e. with production's cgroup
v2 shape. On this hybrid host's v1 hierarchies both runtimes pay the kernel's attach grace
period (~7 ms: the first cgroup.procs write after a quiet spell waits for RCU), which v2
avoids with CLONE_INTO_CGROUP; run both modes to see each.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

import bundle as bundlemod  # noqa: E402

SYSPY = "/usr/bin/python3.11"
_NS_ENV = "RUNH_RUN_VS_RUNC_NS"


def timed(argv):
    t0 = time.perf_counter_ns()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    dt = (time.perf_counter_ns() - t0) / 1e6
    return dt, r


def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def summary(xs):
    return {"n": len(xs), "median_ms": statistics.median(xs), "p95_ms": p95(xs),
            "mean_ms": statistics.fmean(xs), "min_ms": min(xs), "max_ms": max(xs)}


def interleave(cases, n, warmup, check):
    """cases: {name: argv_factory(i)}; returns {name: [ms...]}."""
    names = list(cases)
    times = {k: [] for k in names}
    for i in range(warmup + n):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            dt, r = timed(cases[name](i))
            check(name, i, r)
            if i >= warmup:
                times[name].append(dt)
    return times


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runh", default=os.path.join(REPO, ".venv", "bin", "runh"))
    ap.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--cgroup2-ns", action="store_true",
                    help="run inside a private mount namespace with a fresh cgroup2 /sys/fs/cgroup")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("run as root: it starts real containers")
    if args.cgroup2_ns and not os.environ.get(_NS_ENV):
        from runh.bench.environment import wrapper_argv

        rest = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--cgroup2-ns"]
        return subprocess.call(wrapper_argv([sys.executable, os.path.abspath(__file__),
                                             "--cgroup2-ns", *rest]),
                               env=dict(os.environ, **{_NS_ENV: "1"}))
    cgroups = "cgroup2 namespace" if os.environ.get(_NS_ENV) else "host"

    load_before = os.getloadavg()
    base = tempfile.mkdtemp(prefix="rhb-", dir="/tmp")  # short: notify.sock must fit 108 bytes
    try:
        b = bundlemod.build_bundle(os.path.join(base, "b"), args=["/bin/true"])
        roots = {"runh": os.path.join(base, "rh"), "runc": os.path.join(base, "rc")}
        for r in roots.values():
            os.makedirs(r)
        bins = {"runh": args.runh, "runc": args.runc}

        def run_case(name):
            return lambda i: [bins[name], "--root", roots[name], "run", "--bundle", b, f"{name}{i}"]

        def check(name, i, r):
            if r.returncode != 0:
                raise SystemExit(f"{name} failed (iteration {i}): {r.stderr.decode().strip()}")

        run_times = interleave({"runh run": run_case("runh"), "runc run": run_case("runc")},
                               args.n, args.warmup, check)

        def state_check(name, i, r):
            if name.startswith("runh") and b"does not exist" not in r.stderr:
                raise SystemExit(f"runh state: unexpected {r.returncode} {r.stderr!r}")

        call_times = interleave({
            "runh state <missing>": lambda i: [args.runh, "--root", roots["runh"], "state", "nope"],
            "python3.11 -I -S -c pass": lambda i: [SYSPY, "-I", "-S", "-c", "pass"],
        }, args.n, args.warmup, state_check)
    finally:
        for name, root in (("runh", os.path.join(base, "rh")), ("runc", os.path.join(base, "rc"))):
            if os.path.isdir(root):
                for cid in os.listdir(root):
                    subprocess.run([args.runh if name == "runh" else args.runc, "--root", root,
                                    "delete", "--force", cid], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)

    results = {k: summary(v) for k, v in {**run_times, **call_times}.items()}
    ratio = results["runh run"]["median_ms"] / results["runc run"]["median_ms"]
    overhead = results["runh state <missing>"]["median_ms"] - \
        results["python3.11 -I -S -c pass"]["median_ms"]

    print(f"{'case':<28} {'median ms':>10} {'p95 ms':>10} {'min ms':>10}")
    for k, s in results.items():
        print(f"{k:<28} {s['median_ms']:>10.2f} {s['p95_ms']:>10.2f} {s['min_ms']:>10.2f}")
    print(f"runh/runc run (medians): {ratio:.2f}x  (target <= 0.80: "
          f"{'met' if ratio <= 0.8 else 'NOT met'})")
    print(f"runh per-call cost above a bare interpreter start: {overhead:.2f} ms")
    print(f"cgroups: {cgroups}")
    print(f"load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cpus (figures are unreliable when it exceeds the cpus)")

    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n": args.n, "warmup": args.warmup, "interleaved": True,
        # Other work on the machine skews every figure: the load average says how much.
        "machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "versions": {"runh": version([args.runh, "--version"]), "runh_commit": commit,
                     "runc": version([args.runc, "--version"])},
        "cgroups": cgroups, "results": results, "ratio_runh_over_runc": ratio,
        "overhead_over_interpreter_ms": overhead,
        "raw_ms": {**run_times, **call_times},
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"run_vs_runc-{doc['when'].replace(':', '')}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

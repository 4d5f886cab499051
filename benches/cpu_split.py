#!/usr/bin/env python3
"""Where a `run`'s CPU goes: user and kernel time per container, runtimes side by side.

    sudo .venv/bin/python benches/cpu_split.py [-n 30] [-c 1,8] [-r crun -r runc -r runh=PATH]

Each round starts C `<runtime> run` of /bin/true at once (C from -c; 1 is one at a time)
and waits for them all: the round's wall time, and the CPU per process from wait4's rusage
(the runtime and what it reaped: its init and the container). For each runh the same
rounds also start its interpreter bare (`python3 -I -S -c pass`, the flags the launcher
gives it): the floor under runh's `create` and `run`. Runtimes take turns in each round,
so that drift hits all alike. Medians of N rounds after a warm-up of 3.

Then, when perf is installed, N more rounds one at a time under `perf record -e cpu-clock
-F 2000` split that CPU into kernel and user time by where each sample's instruction
pointer was. rusage cannot: with tick-based accounting (CONFIG_TICK_CPU_ACCOUNTING, HZ=250
on this host) its user/system split is a ratio of 4 ms ticks, noise for a 10 ms process,
while its total is the scheduler's exact runtime. cpu-clock is a software event, so it
samples in VMs that have no hardware counters; at 2 kHz it adds ~1% here (20 kHz doubled
the times).

Why: the kernel's share of a container's start (namespaces, mounts, pivot_root, the
cgroup, the execs) is the same for every runtime, and throughput with C > cores is CPU
per container. Split this way, a runtime's figures show how much of its cost is its own
code and how much is the kernel's (benches/results/issue16/README.md, final12).

On a hybrid cgroup host the script re-runs itself, as `runh bench` does, in a private
mount namespace whose /sys/fs/cgroup is a fresh cgroup2 mount (crun refuses hybrid hosts).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

from runh.bench import environment, report  # noqa: E402
from runh.bench.bundle import Bundles  # noqa: E402

NS_ENV = "RUNH_CPU_SPLIT_NS"
INTERPRETER_ARGS = ("-I", "-S", "-c", "pass")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="cpu_split.py", description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--iterations", type=int, default=30)
    p.add_argument("-w", "--warmup", type=int, default=3)
    p.add_argument("-c", "--concurrency", default="1,8", help="comma-separated (default 1,8)")
    p.add_argument("-r", "--runtime", action="append", metavar="NAME[=PATH]",
                   help="repeatable; default runh (this venv's), crun, runc: those found")
    a = p.parse_args(argv)
    a.concurrency = [int(c) for c in a.concurrency.split(",") if c.strip()]
    if a.iterations < 1 or a.warmup < 0 or not a.concurrency or min(a.concurrency) < 1:
        p.error("iterations and concurrency must be positive, warm-up non-negative")
    return a


def median(xs):
    return report.percentile(sorted(xs), 0.5)


class Case:
    """One thing to start C times a round: a runtime's `run`, or a runh's interpreter."""

    def __init__(self, name, argv_for, cleanup=None):
        self.name, self.argv_for, self.cleanup = name, argv_for, cleanup
        self.rows = {}  # concurrency -> [(wall ms, user ms, sys ms per process)]


PERF_HZ = 2000


def round_of(case, c, seq, workdir, null, perf=None):
    """Start c at once, wait for all: (wall ms, CPU ms per process); with perf (its
    path, c 1) the one run goes under perf record and the row is (kernel ms, user ms)."""
    # Named as runh bench names its ids (the tests look for leftovers by this shape).
    argvs = [case.argv_for(f"b{os.getpid()}-{seq}c{i}") for i in range(c)]
    data = os.path.join(workdir, "perf.data")
    if perf:
        argvs = [[perf, "record", "-q", "-e", "cpu-clock", "-F", str(PERF_HZ), "-o", data, "--", *argvs[0]]]
    # CLOEXEC: each child gets its own as fd 2 (dup2 clears the flag), not all of them.
    errs = [os.open(os.path.join(workdir, f"err{i}"), os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            for i in range(c)]
    try:
        t0 = time.perf_counter()
        pids = [os.posix_spawn(a[0], a, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1),
            (os.POSIX_SPAWN_DUP2, err, 2)]) for a, err in zip(argvs, errs)]
        cpu = 0.0
        failed = []
        for argv, pid, err in zip(argvs, pids, errs):
            _, status, ru = os.wait4(pid, 0)
            cpu += ru.ru_utime + ru.ru_stime
            if status:
                os.lseek(err, 0, os.SEEK_SET)
                failed.append((argv, status, os.read(err, 2000).decode(errors="replace").strip()))
        wall = (time.perf_counter() - t0) * 1e3
    finally:
        for err in errs:
            os.close(err)
    if failed:
        if case.cleanup:
            for argv, _, _ in failed:
                case.cleanup(argv[-1])
        argv, status, err = failed[0]
        raise RuntimeError(f"{case.name}: {' '.join(argv)}: status {status:#x}: {err[-300:]}")
    if perf:
        return kernel_user(perf, data)
    return wall, cpu * 1e3 / c


def kernel_user(perf, data):
    """(kernel ms, user ms) of a perf.data of cpu-clock samples: a sample whose ip is in
    the kernel's half of the address space is kernel time. perf's own samples before its
    exec of the command (comm "perf-exec" or "perf") are not the command's."""
    import subprocess
    out = subprocess.run([perf, "script", "-i", data, "-F", "comm,ip"], capture_output=True,
                         text=True, check=True).stdout
    kernel = user = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] in ("perf-exec", "perf"):
            continue
        if int(parts[-1], 16) >= 1 << 63:
            kernel += 1
        else:
            user += 1
    return kernel * 1e3 / PERF_HZ, user * 1e3 / PERF_HZ


def cases_for(specs, workdir, bundle):
    out = []
    for rt in environment.parse_runtimes(specs or ["runh", "crun", "runc"]):
        if rt.status != "ok":
            if rt.explicit:
                sys.exit(f"cpu_split.py: runtime {rt.name}: {rt.error}")
            continue
        root = os.path.join(workdir, f"root-{len(out)}")
        os.makedirs(root)

        def argv_for(cid, path=rt.path, root=root):
            return [path, "--root", root, "run", "-b", bundle, cid]

        def cleanup(cid, path=rt.path, root=root):
            if os.path.exists(os.path.join(root, cid)):
                os.spawnv(os.P_WAIT, path, [path, "--root", root, "delete", "--force", cid])
        out.append(Case(rt.name, argv_for, cleanup))
        interp = environment.interpreter(rt)
        if interp:
            out.append(Case(f"{rt.name}'s python3 -I -S", lambda _cid, p=interp: [p, *INTERPRETER_ARGS]))
    return out


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("cpu_split.py: needs root (it runs containers)")
    if environment.cgroup_mode() == "hybrid" and not os.environ.get(NS_ENV):
        wrapped = environment.wrapper_argv([sys.executable, os.path.abspath(__file__), *argv])
        if wrapped:
            os.environ[NS_ENV] = "1"
            os.execv(wrapped[0], wrapped)
    workdir = tempfile.mkdtemp(prefix="rhcpu-")
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        bundle = Bundles(workdir).make("true")
        cases = cases_for(args.runtime, workdir, bundle)
        perf = shutil.which("perf")
        phases = [(c, None) for c in args.concurrency] + ([(1, perf)] if perf else [])
        seq = 0
        for c, wrap in phases:
            for i in range(args.warmup + args.iterations):
                for case in cases:
                    seq += 1
                    row = round_of(case, c, seq, workdir, null, wrap)
                    if i >= args.warmup:
                        case.rows.setdefault("perf" if wrap else c, []).append(row)
        print(f"{'':28} {'C':>3} {'wall ms':>9} {'cpu/run':>9}"
              f"   (medians of {args.iterations} rounds; CPU from wait4, per process)")
        for c in args.concurrency:
            for case in cases:
                rows = case.rows[c]
                print(f"{case.name[:28]:28} {c:>3} {median([r[0] for r in rows]):9.2f} {median([r[1] for r in rows]):9.2f}")
        if perf:
            print(f"\n{'':28} {'C':>3} {'kernel':>9} {'user':>9} {'kernel %':>9}"
                  f"   (ms per run, means of {args.iterations} runs under perf record -e cpu-clock -F {PERF_HZ})")
            for case in cases:
                rows = case.rows["perf"]
                # Means: one sample is 0.5 ms, so a median of per-run counts is quantised.
                k, u = sum(r[0] for r in rows) / len(rows), sum(r[1] for r in rows) / len(rows)
                print(f"{case.name[:28]:28} {1:>3} {k:9.2f} {u:9.2f} {100 * k / ((k + u) or 1):8.0f}%")
        else:
            print("(perf not installed: no kernel/user split; apt-get install linux-perf)")
    except RuntimeError as e:
        sys.exit(f"cpu_split.py: {e}")
    finally:
        os.close(null)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

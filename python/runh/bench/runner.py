"""The benchmark driver: options, the interleaved loop, progress, cleanup, outputs."""

import argparse
import os
import platform
import shutil
import signal
import sys
import tempfile
import time

from . import environment, harness, report, scenarios
from .bundle import Bundles, BundleError


# What a scenario step may raise for one runtime: reported as FAILED, the others go on.
FAILURES = (harness.RuntimeFailed, harness.ScenarioFailed, OSError, ValueError, TimeoutError)


class UsageFailure(Exception):
    """Bad options or nothing to measure: a one-line message and exit status 2."""


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="runh bench",
        description="Measure container start-up of runh against runc, crun and any "
                    "runc-compatible runtime, interleaved on one bundle.")
    p.add_argument("-r", "--runtime", action="append", metavar="NAME[=PATH]",
                   help="runtime to measure (repeatable): a name looked up on PATH, a path, "
                        "or NAME=PATH; default: " + ", ".join(environment.DEFAULT_RUNTIMES)
                        + " (those found)")
    p.add_argument("-b", "--baseline", metavar="NAME",
                   help="runtime the ratios are taken against (default: runc if measured, "
                        "else the first)")
    p.add_argument("-n", "--iterations", type=int, default=30, metavar="N",
                   help="measured iterations per scenario and runtime (default 30)")
    p.add_argument("-w", "--warmup", type=int, default=3, metavar="N",
                   help="unmeasured warm-up iterations first (default 3)")
    p.add_argument("-s", "--scenarios", default=",".join(scenarios.DEFAULT), metavar="LIST",
                   help="comma-separated, from: " + ", ".join(scenarios.ALL)
                        + " (default: all)")
    p.add_argument("-c", "--concurrency", type=int, default=8, metavar="N",
                   help="containers started at once in the concurrent scenario (default 8)")
    p.add_argument("--rounds", type=int, metavar="N",
                   help="measured rounds of the concurrent scenario (default: iterations/5, at least 3)")
    p.add_argument("--probes", type=int, default=10, metavar="N",
                   help="ExecSync probes per pod in the cri scenario (default 10)")
    p.add_argument("--rss-iterations", type=int, default=3, metavar="N",
                   help="extra untimed iterations that measure peak RSS through GNU time "
                        "(default 3; 0 to skip)")
    p.add_argument("--bundle", metavar="DIR",
                   help="measure this bundle instead of the built-in busybox one")
    p.add_argument("-o", "--output", default="bench-results", metavar="DIR",
                   help="directory for results.json, results.png and results.txt "
                        "(default ./bench-results)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--timeout", type=float, default=harness.DEFAULT_TIMEOUT, metavar="S",
                   help="kill a runtime call after S seconds (default 30)")
    p.add_argument("--no-cgroup2-ns", action="store_true",
                   help="on a hybrid/v1 host, do not move into a private cgroup2 mount namespace")
    p.add_argument("--state-dir", metavar="DIR",
                   help="make the runtimes' --root dirs in a new temp dir under DIR (e.g. /dev/shm: "
                        "tmpfs, as /run is on systemd hosts) instead of under the bundle's temp dir")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    if a.iterations < 1 or a.warmup < 0 or a.concurrency < 1 or a.probes < 1 \
            or (a.rounds is not None and a.rounds < 1):
        p.error("iterations, concurrency and rounds must be positive, warm-up non-negative")
    names = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    bad = [s for s in names if s not in scenarios.ALL]
    if bad or not names:
        p.error(f"unknown scenario(s): {', '.join(bad) or '(none)'}; choose from {', '.join(scenarios.ALL)}")
    a.scenarios = names
    if a.rounds is None:
        a.rounds = max(3, a.iterations // 5)
    return a


class Progress:
    """A one-line progress bar on stderr, redrawn at most 20 times a second; silent when
    stderr is not a terminal (logs stay clean) or with --quiet."""

    def __init__(self, total, enabled):
        self.total, self.done = total, 0
        self.enabled = enabled and sys.stderr.isatty()
        self._last = 0.0
        self._t0 = time.monotonic()

    def tick(self, label, n=1):
        self.done += n
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.05 and self.done < self.total):
            return
        self._last = now
        width = 30
        frac = self.done / self.total if self.total else 1
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} {now - self._t0:5.0f}s  {label:<28.28}")
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\r" + " " * 80 + "\r")
            sys.stderr.flush()


class Context:
    def __init__(self, workdir, spawner, bundles, args):
        self.workdir = workdir
        self.spawner = spawner
        self.bundles = bundles
        self.timeout = args.timeout
        self.concurrency = args.concurrency
        self.probes = args.probes
        self.rss_pass = False
        self.runtimes = []  # the usable runtimes, for scenarios that set up all at once (cri)


def _cleanup(runtimes, spawner, workdir):
    """Delete every container still registered, reap, and remove the temp dir.

    Runs with SIGINT ignored, so a second Ctrl-C cannot strand containers half-deleted.
    Returns a list of problems (reported, never raised).
    """
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    problems = []
    try:
        for rt in runtimes:
            for cid, pid in list(rt.live.items()):
                if spawner is not None and rt.root and rt.state_exists(cid):
                    r = spawner.run(rt.argv("delete", "--force", cid))
                    if not r.ok and rt.state_exists(cid):
                        problems.append(f"{rt.name}: delete --force {cid}: {r.stderr.strip()[-200:]}")
                if pid:
                    # The init was re-parented to us (subreaper): it is ours to kill and reap.
                    try:
                        with open(f"/proc/{pid}/stat") as f:
                            ours = f.read().rsplit(")", 1)[1].split()[1] == str(os.getpid())
                        if ours:
                            os.kill(pid, signal.SIGKILL)
                            os.waitpid(pid, 0)
                    except (FileNotFoundError, ProcessLookupError, ChildProcessError):
                        pass
                rt.live.pop(cid, None)
        harness.reap_strays()
        if spawner is not None:
            spawner.close()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
            if os.path.exists(workdir):
                problems.append(f"could not remove {workdir}")
    finally:
        signal.signal(signal.SIGINT, old)
    return problems


def _sigterm(*_):
    raise KeyboardInterrupt


# A runh's floor: its interpreter starting and doing nothing, with the flags its
# launcher passes (rust/launcher/src/python.rs).
INTERPRETER_ARGS = ("-I", "-S", "-c", "pass")


def _time_interpreters(spawner, interps, into, rss=False):
    """One bare start of each runh's interpreter; the wall times (ms), or with rss=True
    the peak RSS (KiB, through GNU time, as the scenarios' own), go to into[runtime
    name]. Taken in every round of every scenario, beside the runtimes' calls, so that
    the floor is measured under the same host load as what stands on it (this host's load
    moved it from 8.2 to 10.1 ms median within one 25 s run)."""
    for name, argv in interps:
        r = spawner.run(argv, rss=rss)
        if not r.ok:
            raise harness.RuntimeFailed(argv, harness.describe_status(r.status), r.stderr)
        if into is not None:
            into.setdefault(name, []).append(r.maxrss_kib if rss else r.ms)


def _interpreter_meta(interps, per_scenario, peak_rss):
    """meta["interpreter_start"]: per runh runtime, its interpreter's bare start over all
    rounds, the median within each scenario's rounds, and its peak RSS."""
    out = {}
    for name, argv in interps:
        every = [v for got in per_scenario.values() for v in got.get(name, [])]
        st = report.summarize(every)
        if st is None:
            continue
        rss = report.summarize([v for v in peak_rss.get(name, []) if v is not None])
        st.update(argv=argv, samples=every, per_scenario={
            sc: report.summarize(got[name])["median"] for sc, got in per_scenario.items() if got.get(name)},
            peak_rss_kib=rss["median"] if rss else None)
        out[name] = st
    return out


def run_bench(args, cgroup_note, host_mode):
    runtimes = environment.parse_runtimes(args.runtime)
    bad = [rt for rt in runtimes if rt.status != "ok" and rt.explicit]
    if bad:
        # A path the user named and that does not exist is a typo: stop before spending
        # minutes measuring the others. Missing default runtimes are only reported.
        raise UsageFailure("; ".join(f"runtime {rt.name}: {rt.error}" for rt in bad))
    for rt in runtimes:
        if rt.status == "ok":
            environment.probe_version(rt)
    usable = [rt for rt in runtimes if rt.status == "ok"]
    # Before any call is timed (the warm-up reads them back): see drop_page_cache.
    page_cache_dropped = environment.drop_page_cache(
        sorted({f for rt in usable for f in environment.executables(rt)}))
    if not usable:
        raise UsageFailure("no runtime to measure: " + "; ".join(rt.error for rt in runtimes))
    names = [rt.name for rt in usable]
    baseline = args.baseline or ("runc" if "runc" in names else names[0])
    if baseline not in names:
        raise UsageFailure(f"baseline {baseline} is not among the measured runtimes ({', '.join(names)})")

    # Make the outputs' directory first: failing there after the run would waste it.
    json_path, png_path, txt_path = report.output_paths(args.output)
    workdir = spawner = statedir = None
    samples, failures = {}, {}
    scs, closing = [], []
    interps = [(rt.name, [p, *INTERPRETER_ARGS]) for rt in usable
               if (p := environment.interpreter(rt))]
    interp_samples, interp_rss, interp_note = {}, {}, None
    signal.signal(signal.SIGTERM, _sigterm)
    interrupted = False
    load_before = os.getloadavg()[0]
    try:
        workdir = tempfile.mkdtemp(prefix="rhb-")
        harness.set_subreaper()
        spawner = harness.Spawner(workdir, args.timeout)
        bundles = Bundles(workdir, args.bundle)
        ctx = Context(workdir, spawner, bundles, args)
        ctx.runtimes = usable
        # Every runtime writes its state under --root on each call: a few files per
        # create, whose cost depends on the filesystem (0.1-0.9 ms per file on this
        # host's ext4 /run, ~0.08 ms on tmpfs). --state-dir puts every root on the same one.
        statedir = tempfile.mkdtemp(prefix="rhb-state-", dir=args.state_dir) if args.state_dir else workdir
        for rt in usable:
            rt.root = os.path.join(statedir, f"r{rt.index}")
            os.makedirs(rt.root)
        scs = [scenarios.ALL[n](ctx) for n in args.scenarios]
        rounds = {sc.name: (args.rounds if sc.name == "concurrent" else args.iterations) for sc in scs}
        rss_n = args.rss_iterations if spawner.time_bin else 0
        total = sum((rounds[sc.name] + args.warmup + (rss_n if sc.rss_metrics else 0)) * len(usable)
                    for sc in scs)
        progress = Progress(total, not args.quiet)
        for sc in scs:
            sc.prepare()
            fails = failures.setdefault(sc.name, {})
            got = samples.setdefault(sc.name, {})
            active = []
            for rt in usable:
                try:
                    sc.setup(rt)
                    active.append(rt)
                except FAILURES as e:
                    fails[rt.name] = f"setup: {e}"
                    sc.teardown(rt)
            n = rounds[sc.name]
            timed_end = args.warmup + n
            extra = rss_n if sc.rss_metrics else 0
            if sc.rss_metrics and not spawner.time_bin and args.rss_iterations:
                sc.notes.append("peak RSS not measured: GNU time not found (/usr/bin/time)")
            elif extra:
                sc.notes.append(harness.RSS_NOTE + f", {extra} untimed runs")
            for i in range(timed_end + extra):
                ctx.rss_pass = i >= timed_end
                if interps:
                    try:
                        if ctx.rss_pass:
                            _time_interpreters(spawner, interps, interp_rss, rss=True)
                        else:
                            _time_interpreters(spawner, interps, interp_samples.setdefault(sc.name, {})
                                               if i >= args.warmup else None)
                    except FAILURES as e:
                        interps, interp_note = [], f"interpreter start not measured: {e}"
                for rt in list(active):
                    try:
                        m = sc.measure(rt)
                    except FAILURES as e:
                        # Report it and drop the runtime from this scenario; the others go on.
                        fails[rt.name] = (f"warm-up {i + 1}" if i < args.warmup else f"iteration {i - args.warmup + 1}") + f": {e}"
                        active.remove(rt)
                        _cleanup_one(rt, spawner)
                        progress.tick(f"{sc.name} {rt.name} FAILED", timed_end + extra - i)
                        continue
                    if i >= args.warmup:
                        per = got.setdefault(rt.name, {})
                        for k, v in m.items():
                            # Timed runs give the timings, RSS runs only the peak RSS.
                            if (k in sc.rss_metrics) == ctx.rss_pass:
                                # A list is several samples of one iteration (cri's probes).
                                if isinstance(v, list):
                                    per.setdefault(k, []).extend(v)
                                else:
                                    per.setdefault(k, []).append(v)
                    progress.tick(f"{sc.name} {rt.name}")
            for rt in active:
                sc.teardown(rt)
            closing += sc.close() or []
            harness.reap_strays()
        progress.close()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        problems = closing
        for sc in scs:
            problems += sc.close() or []  # after an interrupt; a no-op for those closed
        problems += _cleanup(usable, spawner, workdir)
        if statedir and statedir != workdir:
            shutil.rmtree(statedir, ignore_errors=True)
            if os.path.exists(statedir):
                problems.append(f"could not remove {statedir}")
    for p in problems:
        print(f"runh bench: cleanup: {p}", file=sys.stderr)
    if interrupted:
        print("\nrunh bench: interrupted; containers deleted, temp dir removed", file=sys.stderr)
        return 130

    meta = {
        "iterations": args.iterations,
        "warmup": args.warmup,
        "concurrency": args.concurrency,
        "concurrent_rounds": args.rounds,
        "cri_probes_per_pod": args.probes,
        "rss_iterations": args.rss_iterations,
        "interleaved": True,
        "page_cache_dropped": page_cache_dropped,
        "interpreter_start": _interpreter_meta(interps, interp_samples, interp_rss),
        "interpreter_note": interp_note,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"kernel": platform.system() + " " + platform.release(), "cpus": os.cpu_count(),
                 "python": platform.python_version(),
                 # Other work on the machine shows up as spread (p95, max): record it.
                 "loadavg_1m_before": load_before, "loadavg_1m_after": os.getloadavg()[0]},
        "cgroup": {"host_mode": host_mode, "private_cgroup2_namespace": host_mode != "v2" and
                   os.environ.get(environment.NS_ENV) is not None
                   and os.environ.get(environment.NS_KIND_ENV) != "v1",
                   # "cgroup2" (a fresh cgroup2 /sys/fs/cgroup) or "v1" (the cgroup2 mount hidden)
                   "private_namespace": os.environ.get(environment.NS_KIND_ENV), "note": cgroup_note},
        "bundle": args.bundle or "built-in busybox-static",
        "state_dir": {"path": args.state_dir or "(the bench's temp dir)",
                      "fstype": _fstype(args.state_dir or tempfile.gettempdir())},
        "runtimes": {rt.name: rt.as_json() for rt in runtimes},
    }
    doc = report.build(meta, scs, samples, failures, baseline)
    text = report.table(doc)
    print(text)
    report.write_json(doc, json_path)
    report.write_text(text, txt_path)
    outputs = [json_path, txt_path]
    if not args.no_plot:
        if report.plot(doc, png_path):
            outputs.insert(1, png_path)
        else:
            print("runh bench: no plot (matplotlib not installed or nothing measured)", file=sys.stderr)
    print("wrote " + ", ".join(outputs))
    return 0


def _fstype(path):
    """The type of the filesystem holding path, from /proc/self/mountinfo (longest mount
    point that is a prefix of it)."""
    path, best, kind = os.path.realpath(path), -1, "?"
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                mnt = left.split()[4]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > best:
                    best, kind = len(mnt), right.split()[0]
    except OSError:
        pass
    return kind


def _cleanup_one(rt, spawner):
    """After a failed measurement: delete that runtime's containers before going on."""
    for cid, pid in list(rt.live.items()):
        if rt.state_exists(cid):
            spawner.run(rt.argv("delete", "--force", cid))
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        rt.live.pop(cid, None)
    harness.reap_strays()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    in_ns = os.environ.get(environment.NS_ENV)
    try:
        mode = environment.cgroup_mode()
    except OSError:
        mode = "none"
    # The cri scenario wants every cgroup controller (see environment.NS_V1_SCRIPT).
    kind = "v1" if all(scenarios.ALL[n].host_cgroups for n in args.scenarios) else "cgroup2"
    if in_ns and os.environ.get(environment.NS_KIND_ENV) == "v1":
        host_mode, note = in_ns, (f"{in_ns} cgroup host: every runtime ran in a private mount "
                                  "namespace without the host's cgroup2 mount: pure cgroup v1")
    elif in_ns:
        host_mode, note = in_ns, (f"{in_ns} cgroup host: every runtime ran in a private mount "
                                  "namespace with a fresh cgroup2 /sys/fs/cgroup")
    elif mode == "v2":
        host_mode, note = mode, "pure cgroup v2 host: runtimes ran as they are"
    elif args.no_cgroup2_ns or (mode == "v1" and kind == "v1"):
        host_mode, note = mode, f"{mode} cgroup host, run as is" + (
            " (--no-cgroup2-ns): crun may refuse it" if mode == "hybrid" else "")
    else:
        if os.geteuid() == 0:
            status = environment.rerun_in_namespace(argv if argv is not None else sys.argv[1:], mode, kind)
            if status is not None:
                return status
        host_mode, note = mode, f"{mode} cgroup host; could not make a private mount namespace (need root and unshare)"
    try:
        return run_bench(args, note, host_mode)
    except (UsageFailure, BundleError) as e:
        print(f"runh bench: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

"""seccomp figures. Not a test: prints medians. Targets: ≤ 1 ms to compile the Docker
default profile, ≤ 0.1 ms for a cached load (`<root>/.cache/seccomp/`), and `runh run`
with the default profile within 1.1x of `runh run` without one.

    .venv/bin/python benches/seccomp_bench.py [N] [--run [ITERATIONS]]

--run adds the container figures through the benchmark harness (`runh bench -s
run,run-seccomp`, with RUNH_BENCH_SECCOMP pointing at the Docker default profile): runh,
runc and crun interleaved on one bundle, inside a private cgroup2 mount namespace on a
hybrid host, config without linux.resources; results under benches/results/seccomp-run/.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from runh import _core

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "tests", "fixtures", "seccomp_default_amd64.json")


def timeit(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t)
    return statistics.median(out) / 1e6, min(out) / 1e6


def run_figures(iterations):
    """`runh run` with and without the default profile, beside runc and crun (the harness)."""
    out = os.path.join(HERE, "results", "seccomp-run")
    env = dict(os.environ, RUNH_BENCH_SECCOMP=os.path.abspath(FIXTURE))
    cmd = [sys.executable, "-m", "runh.bench", "-s", "run,run-seccomp", "-n", str(iterations),
           "-o", out, "--no-plot", "-q"]
    print("$", " ".join(cmd), "(RUNH_BENCH_SECCOMP=tests/fixtures/seccomp_default_amd64.json)", flush=True)
    subprocess.run(cmd, env=env, check=True)
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    print(f"\n{'runtime':8} {'run ms':>8} {'run+seccomp ms':>15} {'ratio':>6}")
    for rt, med in _medians(res).items():
        a, b = med.get("run"), med.get("run-seccomp")
        if a and b:
            print(f"{rt:8} {a:8.2f} {b:15.2f} {b / a:6.3f}")


def _medians(res):
    """{runtime: {scenario: median wall ms}} from the harness's results.json."""
    out = {}
    for name, sc in res.get("scenarios", {}).items():
        for rt, m in ((sc.get("metrics") or {}).get("wall") or {}).get("runtimes", {}).items():
            if m.get("median") is not None:
                out.setdefault(rt, {})[name] = m["median"]
    return out


def main():
    args = [a for a in sys.argv[1:] if a != "--run"]
    if "--run" in sys.argv[1:]:
        i = sys.argv.index("--run")
        nxt = sys.argv[i + 1] if i + 1 < len(sys.argv) else ""
        iterations = int(nxt) if nxt.isdigit() else 30
        if nxt.isdigit():
            args.remove(nxt)
    else:
        iterations = 0
    n = int(args[0]) if args else 2000
    raw = json.dumps(json.load(open(FIXTURE))).encode()
    prog = _core.seccomp_compile(raw)
    root = tempfile.mkdtemp(prefix="runh-seccomp-bench-")
    try:
        med, best = timeit(lambda: _core.seccomp_compile(raw), n)
        print(f"compile default profile ({len(raw)} B JSON -> {len(prog) // 8} insns): median {med:.3f} ms, min {best:.3f} ms")
        _core.seccomp_compile_cached(raw, root)
        med, best = timeit(lambda: _core.seccomp_compile_cached(raw, root), n)
        print(f"cached load (hit):                              median {med:.3f} ms, min {best:.3f} ms")
        # A miss every time: a fresh root per call (includes mkdir + write + rename).
        roots = [os.path.join(root, f"r{i}") for i in range(200)]
        it = iter(roots)
        med, best = timeit(lambda: _core.seccomp_compile_cached(raw, next(it)), len(roots))
        print(f"cache miss (compile + store):                   median {med:.3f} ms, min {best:.3f} ms")
    finally:
        shutil.rmtree(root)
    if iterations:
        run_figures(iterations)


if __name__ == "__main__":
    main()

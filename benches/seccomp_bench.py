"""seccomp generator figures: compile the Docker default profile, and fetch it from the
cache (`<root>/.cache/seccomp/`). Not a test: prints medians; targets are ≤ 1 ms for a
compile and ≤ 0.1 ms for a cached load.

    .venv/bin/python benches/seccomp_bench.py [N]
"""
import json
import os
import shutil
import statistics
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


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
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


if __name__ == "__main__":
    main()

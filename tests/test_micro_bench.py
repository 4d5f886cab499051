"""The pytest-benchmark suite (benches/micro, `make bench-micro`) still runs: each benchmark
once, as a test, in its own pytest process (its conftest would shadow this suite's).
A change to what a benchmark calls (the launcher's argv rules broke one once, unseen,
because only `make bench-micro` ran it) fails here, in `make test`."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_micro_benchmarks_run():
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--benchmark-disable", os.path.join(REPO, "benches", "micro")],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]

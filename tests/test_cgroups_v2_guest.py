"""cgroup v2 proven in the pure-v2 guest through runh itself: one vm-run runs
tests/cgroupv2_checks.py, which drives real runh containers (run, create/start, update,
pause/resume, events, kill --all, delete) on busybox bundles and prints one CHECK line per
check; each becomes a test here (`pytest -m cgroupv2` runs them alone; ~2-3 min, most of
it Python start-up in the emulated guest)."""

import os
import subprocess

import pytest

from conftest import REPO, vm_run_path

pytestmark = pytest.mark.cgroupv2

CHECKS = ["memory_oom", "pids_max", "cpu_max", "cpuset", "freeze", "kill_all", "devices",
          "update_memory", "stats_move", "features", "exec_cgroup"]
_results = {}


def _guest_results():
    if "out" not in _results:
        vm = vm_run_path()
        if vm is None:
            pytest.skip("no ../shared/vm/vm-run")
        py = os.path.join(REPO, ".venv", "bin", "python")
        cmd = f"timeout 400 {py} -u tests/cgroupv2_checks.py"
        env = dict(os.environ, VM_TIMEOUT="500")
        p = subprocess.run([vm, "-C", REPO, cmd], capture_output=True, text=True, timeout=600,
                           env=env)
        _results["out"] = p.stdout + p.stderr
        _results["lines"] = {}
        for line in p.stdout.splitlines():
            if line.startswith("CHECK "):
                _, name, verdict, rest = (line.split(" ", 3) + [""])[:4]
                _results["lines"][name] = (verdict, rest)
    return _results


@pytest.mark.parametrize("name", CHECKS)
def test_v2_in_guest(name):
    r = _guest_results()
    if name not in r["lines"]:
        pytest.fail(f"no result for {name}; guest output:\n{r['out'][-3000:]}")
    verdict, detail = r["lines"][name]
    print(f"{name}: {verdict} {detail}")
    if verdict == "SKIP":
        pytest.skip(detail)
    assert verdict == "PASS", detail

"""One boot of the guest (../shared/vm/vm-run) per area of checks.

The guest is emulated and slow (about 5 s to boot, 3 s per Python start), so each area
(cgroup v2, systemd, the LSMs, CRIU, ...) runs all of its checks in one boot: a script
inside the guest prints one line per check,

    CHECK <name> PASS|FAIL|SKIP <seconds> <detail>

and a pytest module turns each line into a test through `guest_result`. The first test of
an area boots the guest; the others read the cached lines.
"""

import os
import subprocess

import pytest

from conftest import REPO, vm_run_path

_cache = {}


def _with_kernel_args(vm, kernel_args):
    """A copy of vm-run (under the repo's build/, written afresh each time) whose guest
    kernel command line starts with `kernel_args`: vm-run's own is fixed and has no knob
    for it. The one substitution is checked, so a changed vm-run fails loudly."""
    with open(vm) as f:
        text = f.read()
    marker = '-append "console=ttyS0 '
    if text.count(marker) != 1:
        pytest.fail(f"{vm}: cannot add kernel arguments (no single {marker!r})")
    path = os.path.join(REPO, "build", "vm-run-kernel-args")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text.replace(marker, f'-append "{kernel_args} console=ttyS0 '))
    os.chmod(path, 0o755)
    return path


def run_checks(script, timeout=400, env=None, kernel_args=None):
    """Run `script` (a path relative to the repo, started with the venv's python, with
    any arguments) in one guest boot; {name: (verdict, detail)} plus the raw output,
    cached per script. kernel_args: more on the guest's kernel command line (e.g. to
    boot with SELinux)."""
    if script not in _cache:
        vm = vm_run_path()
        if vm is None:
            pytest.skip("no ../shared/vm/vm-run")
        if kernel_args:
            vm = _with_kernel_args(vm, kernel_args)
        py = os.path.join(REPO, ".venv", "bin", "python")
        cmd = f"timeout {timeout} {py} -u {script}"
        venv = dict(os.environ, VM_TIMEOUT=str(timeout + 100), **(env or {}))
        p = subprocess.run([vm, "-C", REPO, cmd], capture_output=True, text=True,
                           timeout=timeout + 200, env=venv)
        lines = {}
        for line in p.stdout.splitlines():
            if line.startswith("CHECK "):
                _, name, verdict, rest = (line.split(" ", 3) + [""])[:4]
                lines[name] = (verdict, rest)
        _cache[script] = {"out": p.stdout + p.stderr, "lines": lines}
    return _cache[script]


def guest_result(script, name, **kw):
    """Assert the check `name` of `script` passed in the guest (skip if it skipped)."""
    r = run_checks(script, **kw)
    if name not in r["lines"]:
        pytest.fail(f"no result for {name}; guest output:\n{r['out'][-3000:]}")
    verdict, detail = r["lines"][name]
    print(f"{name}: {verdict} {detail}")
    if verdict == "SKIP":
        pytest.skip(detail)
    assert verdict == "PASS", detail

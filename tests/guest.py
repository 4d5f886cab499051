"""One boot of the guest (../shared/vm/vm-run) per area of checks.

The guest is emulated and slow (about 5 s to boot, 3 s per Python start), so each area
(cgroup v2, systemd, the LSMs, CRIU, ...) runs all of its checks in one boot: a script
inside the guest prints one line per check,

    CHECK <name> PASS|FAIL|SKIP <seconds> <detail>

and a pytest module turns each line into a test through `guest_result`. The first test of
an area boots the guest; the others read the cached lines.
"""

import os
import selectors
import signal
import subprocess
import time

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


# Seconds without one byte on the guest's console (kernel messages, the script's lines):
# a hung guest. shared/vm/README.md: "One run in many hung once at its first `runc run`
# and never reproduced"; a CI run on 2026-12-03 lost its whole systemd area (16 minutes)
# that way or to a host that stole 30-40% of the CPU, and the same checks then passed in
# 11.5 minutes. A hung guest is stopped after this much silence and booted once more.
# Longer than any one check may take, silent, in any area (systemd_checks.py gives
# containerd's and podman's 600 s).
SILENCE = 660


def _session(sid):
    """Pids in session `sid`: vm-run (its leader), `timeout` (which makes its own process
    group, not its own session) and qemu. Only what this module started is in it."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # a zombie is already gone
                pids.append(int(d))
    return pids


def _stop(p):
    """Stop a guest run and everything it started: TERM (timeout passes it on to qemu),
    then KILL what is left after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        for pid in _session(p.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + wait
        while time.monotonic() < end and _session(p.pid):
            p.poll()
            time.sleep(0.2)
        if not _session(p.pid):
            break
    p.wait()


def boot_once(argv, timeout, env=None, silence=SILENCE):
    """Run `argv` (vm-run and its command), reading its output as it comes: (output, why)
    where why is None, or says how the run was cut short (`silence` seconds without
    output, or `timeout` in all)."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
    out, why = bytearray(), None
    end = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                why = f"no status after {timeout} s"
                break
            if not sel.select(min(silence, left)):
                if left > silence:
                    why = f"no output for {silence} s"
                    break
                continue
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
    p.stdout.close()
    if why:
        _stop(p)
    else:
        p.wait()
    return out.decode(errors="replace"), why


def run_checks(script, timeout=400, env=None, kernel_args=None, silence=SILENCE):
    """Run `script` (a path relative to the repo, started with the venv's python, with
    any arguments) in one guest boot; {name: (verdict, detail)} plus the raw output,
    cached per script. kernel_args: more on the guest's kernel command line (e.g. to
    boot with SELinux). A guest that hangs (`silence`) is booted a second time."""
    if script not in _cache:
        vm = vm_run_path()
        if vm is None:
            pytest.skip("no ../shared/vm/vm-run")
        if kernel_args:
            vm = _with_kernel_args(vm, kernel_args)
        py = os.path.join(REPO, ".venv", "bin", "python")
        cmd = f"timeout {timeout} {py} -u {script}"
        venv = dict(os.environ, VM_TIMEOUT=str(timeout + 100), **(env or {}))
        outs = []
        for attempt in (1, 2):
            out, why = boot_once([vm, "-C", REPO, cmd], timeout + 200, venv, silence)
            outs.append(out + (f"\n[guest.py: boot {attempt} stopped: {why}]\n" if why else ""))
            if why is None or not why.startswith("no output"):
                break
        lines = {}
        for line in outs[-1].splitlines():
            if line.startswith("CHECK "):
                _, name, verdict, rest = (line.split(" ", 3) + [""])[:4]
                lines[name] = (verdict, rest)
        _cache[script] = {"out": "".join(outs), "lines": lines}
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

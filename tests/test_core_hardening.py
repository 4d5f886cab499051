"""Regression tests for the core's hardening (issue 17 items 3, 5, 6, 7, 8; issue 10 items 2
and 5), each named after what it guards. create and run are Python's; exec runs on the
native launcher and, with RUNH_PYTHON_ONLY=1, on the Python path: both are tested where
both exist. runc 1.1.5 is the reference where it is right."""

import json
import re
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import Runner, edit_config, sh

HERE = os.path.dirname(os.path.abspath(__file__))
PATHS = {"native": {}, "python": {"RUNH_PYTHON_ONLY": "1"}}
ALL_HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def _env(path):
    return dict(os.environ, **PATHS[path])


# ---------------------------------------------------------------- 17.3: protocol limits

def test_hooks_get_whole_state_with_1mib_annotation(runh, ctx, make_bundle):
    """A 1 MiB annotation reaches every hook kind whole and as valid JSON (the state
    crosses the sync socket for createContainer and startContainer)."""
    logdir = ctx.path("log")
    os.makedirs(logdir)
    big = "".join(chr(0x41 + i % 26) for i in range(1 << 20))

    def edit(c):
        c["process"]["args"] = ["true"]
        c["annotations"] = {"big": big}
        c["mounts"].append({"destination": "/log", "type": "bind", "source": logdir, "options": ["rbind"]})
        c["hooks"] = {k: [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {'/log' if k == 'startContainer' else logdir}/{k}.json"]}]
                      for k in ALL_HOOKS}
    b = make_bundle(edit=edit)
    cid = ctx.new_id()
    r = runh("run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr[-2000:]
    for k in ALL_HOOKS:
        with open(os.path.join(logdir, f"{k}.json")) as f:
            state = json.load(f)
        assert state["annotations"]["big"] == big, k
        assert state["id"] == cid, k


# ---------------------------------------------------------------- 17.5: reaped pids

HOOK_CLAIM = r"""
import json, os, sys, time
state = json.load(sys.stdin)
first = state["pid"] - 1  # init's first process, which forked it and was reaped by runh
out = sys.argv[1]
if os.path.exists(f"/proc/{first}"):
    open(out, "w").write("busy"); sys.exit(1)
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(first - 1))
pid = os.fork()
if pid == 0:
    os.setsid()
    os.closerange(0, 1024)
    time.sleep(30)
    os._exit(0)
open(out, "w").write(str(pid))
sys.exit(1)  # fail the create: runh cleans up
"""


def test_create_error_never_kills_a_reused_pid(runh, ctx, make_bundle):
    """init forks (a new time namespace); runh reaps the first process on `Pid`. A
    prestart hook gives that pid to a bystander and fails the create: the cleanup must
    not SIGKILL the bystander."""
    hook = ctx.path("claim.py")
    with open(hook, "w") as f:
        f.write(HOOK_CLAIM)
    for attempt in range(10):
        out = ctx.path(f"claimed{attempt}")

        def edit(c):
            c["process"]["args"] = ["true"]
            c["linux"]["namespaces"].append({"type": "time"})
            c["hooks"] = {"prestart": [{"path": sys.executable, "args": ["python3", hook, out]}]}
        b = make_bundle(edit=edit)
        cid = ctx.new_id()
        r = runh("create", "--bundle", b, cid)
        assert r.returncode != 0
        claimed = open(out).read() if os.path.exists(out) else "busy"
        if claimed == "busy":
            continue
        bystander = int(claimed)
        try:
            time.sleep(0.1)
            try:
                alive = open(f"/proc/{bystander}/stat").read().split()[2] != "Z"
            except OSError:
                alive = False
        finally:
            try:
                os.kill(bystander, 9)
            except ProcessLookupError:
                pass
        assert alive, f"runh's cleanup killed pid {bystander}, which it had already reaped"
        return
    pytest.skip("could not place a bystander on the reaped pid (busy machine)")


# ---------------------------------------------------------------- 17.6: exec --ignore-paused

def test_ignore_paused_process_runs_nothing_outside_the_freezer(runh, ctx, make_bundle):
    """exec --ignore-paused into a paused container: the process joins the frozen cgroup
    before it runs, so nothing of it (nor a process it forks) runs until resume."""
    rootfs = ctx.path("out")
    os.makedirs(rootfs)

    def edit(c):
        c["process"]["args"] = ["sleep", "1000"]
        c["mounts"].append({"destination": "/out", "type": "bind", "source": rootfs, "options": ["rbind"]})
    b = make_bundle(edit=edit)
    cid = ctx.new_id()
    assert runh("run", "-d", "--bundle", b, cid).returncode == 0
    try:
        if runh("pause", cid).returncode != 0:
            pytest.skip("pause does not work on this host")
        for i in range(10):
            r = runh("exec", "-d", "--ignore-paused", cid, "sh", "-c", f"touch /out/ran{i}; (touch /out/forked{i}) &")
            assert r.returncode == 0, r.stderr
        time.sleep(0.5)
        ran = [n for n in os.listdir(rootfs) if n.startswith(("ran", "forked"))]
        assert ran == [], f"ran while the container was paused: {ran}"
        assert runh("resume", cid).returncode == 0
        deadline = time.time() + 5
        while len([n for n in os.listdir(rootfs) if n.startswith("ran")]) < 10 and time.time() < deadline:
            time.sleep(0.05)
        assert len([n for n in os.listdir(rootfs) if n.startswith("ran")]) == 10
    finally:
        if runh.state(cid)["status"] == "paused":
            runh("resume", cid)
        runh("delete", "--force", cid)


# ---------------------------------------------------------------- 17.8: pre-5.8 setns

@pytest.mark.parametrize("path", sorted(PATHS))
def test_exec_joins_the_pid_namespace_without_pidfd_setns(runh, ctx, make_bundle, path):
    """On 5.3-5.7 kernels setns() takes no pidfd: exec falls back to /proc/<pid>/ns/*.
    tests/attack/old_setns.c makes this kernel answer as those do."""
    tool = ctx.path("old_setns")
    subprocess.run(["gcc", "-static", "-O2", "-o", tool, os.path.join(HERE, "attack", "old_setns.c")], check=True)
    b = make_bundle(args=["sleep", "1000"])
    cid = ctx.new_id()
    assert runh("run", "-d", "--bundle", b, cid).returncode == 0
    try:
        r = subprocess.run([tool, *runh.argv("exec", cid, "sh", "-c", "echo $$; readlink /proc/self/ns/pid; readlink /proc/1/ns/pid")],
                           capture_output=True, text=True, env=_env(path), timeout=30)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.split()
        assert lines[1] == lines[2], r.stdout  # in the container's pid namespace
    finally:
        runh("delete", "--force", cid)


# ---------------------------------------------------------------- 17.7: masked paths

def _fake_dev_null(c):
    c["process"]["args"] = ["sh", "-c", "cat /proc/timer_list; echo END"]
    c["mounts"] = [m for m in c["mounts"] if m["destination"] != "/dev"]
    c["linux"]["maskedPaths"] = ["/proc/timer_list"]


def _plant_dev_null(b):
    dev = os.path.join(b, "rootfs", "dev")
    os.makedirs(dev, exist_ok=True)
    if os.path.lexists(os.path.join(dev, "null")):
        os.unlink(os.path.join(dev, "null"))
    os.symlink("/proc/keys", os.path.join(dev, "null"))


def _masked_view(runner, ctx, b):
    cid = ctx.new_id()
    try:
        r = runner("run", "--bundle", b, cid)
    finally:
        runner("delete", "--force", cid)
    return r


def test_masked_paths_use_only_the_null_device(runh, ctx, make_bundle):
    """An image's /dev/null that is a symlink to /proc/keys (no fresh /dev mount) must
    not become what masks /proc/timer_list (CVE-2025-31133)."""
    b = make_bundle(edit=_fake_dev_null)
    _plant_dev_null(b)
    r = _masked_view(runh, ctx, b)
    # Refused, or masked by the real null device: never the host's keyrings.
    assert "keyring" not in r.stdout and "_ses" not in r.stdout, r.stdout
    if r.returncode == 0:
        assert r.stdout.strip() == "END", r.stdout


@pytest.mark.runc
@pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed")
def test_masked_paths_same_as_runc(runh, ctx, make_bundle):
    b = make_bundle(edit=_fake_dev_null)
    _plant_dev_null(b)
    runc = Runner(shutil.which("runc"), ctx.path("runc-root"))
    for runner in (runc, runh):
        r = _masked_view(runner, ctx, b)
        assert "keyring" not in r.stdout and "_ses" not in r.stdout, (runner.path, r.stdout)


# ---------------------------------------------------------------- 10.2: /proc as a symlink

@pytest.mark.parametrize("dest", ["proc", "sys"])
def test_proc_and_sys_must_be_plain_directories(runh, ctx, make_bundle, dest):
    """rootfs/proc -> ../../../.. once put procfs over the container's root; refused, as
    runc does ("must be mounted on ordinary directory"), and nothing is left."""
    b = make_bundle(args=["true"])
    target = os.path.join(b, "rootfs", dest)
    if os.path.isdir(target) and not os.path.islink(target):
        os.rmdir(target)
    os.symlink("../../../..", target)
    cid = ctx.new_id()
    r = runh("run", "--bundle", b, cid)
    runh("delete", "--force", cid)
    assert r.returncode != 0
    assert f"/{dest}" in r.stderr and "symlink" in r.stderr, r.stderr


@pytest.mark.runc
@pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed")
def test_proc_symlink_refused_like_runc(ctx, make_bundle):
    b = make_bundle(args=["true"])
    os.rmdir(os.path.join(b, "rootfs", "proc"))
    os.symlink("../../../..", os.path.join(b, "rootfs", "proc"))
    runc = Runner(shutil.which("runc"), ctx.path("runc-root"))
    cid = ctx.new_id()
    r = runc("run", "--bundle", b, cid)
    runc("delete", "--force", cid)
    assert r.returncode != 0


# ---------------------------------------------------------------- 10.5: sysctl

def _host(key):
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()


@pytest.mark.parametrize("key,drop,word", [
    ("fs.mqueue.queues_max", "ipc", "ipc"),
    ("kernel.shmmni", "ipc", "ipc"),
    ("net.ipv4.ip_forward", "network", "network"),
    ("kernel.domainname", "uts", "uts"),
    ("vm.swappiness", None, "separate kernel namespace"),
])
def test_sysctl_needs_its_namespace(runh, ctx, make_bundle, key, drop, word):
    """A sysctl is refused before anything is created unless the container has the
    namespace it belongs to; the host's value stays as it was."""
    before = _host(key)
    new = str(int(before) + 1) if before.isdigit() else "x"

    def edit(c):
        c["process"]["args"] = ["true"]
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != drop]
        c["linux"]["sysctl"] = {key: new}
        if drop == "uts":
            c.pop("hostname", None)
    b = make_bundle(edit=edit)
    cid = ctx.new_id()
    try:
        r = runh("run", "--bundle", b, cid)
        after = _host(key)
    finally:
        if _host(key) != before:  # a runtime without the check changed the host's: undo
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(before)
    assert r.returncode != 0
    assert key in r.stderr and word in r.stderr, r.stderr
    assert after == before
    assert not os.path.exists(os.path.join(ctx.root, cid))


def test_sysctl_hostname_must_agree(runh, ctx, make_bundle):
    def edit(c):
        c["process"]["args"] = ["true"]
        c["hostname"] = "one"
        c["linux"]["sysctl"] = {"kernel.hostname": "two"}
    r = runh("run", "--bundle", make_bundle(edit=edit), ctx.new_id())
    assert r.returncode != 0 and "conflicts with hostname" in r.stderr, r.stderr


def test_sysctl_in_own_namespace_is_set(runh, ctx, make_bundle):
    def edit(c):
        c["process"]["args"] = sh("cat /proc/sys/fs/mqueue/queues_max")
        c["linux"]["sysctl"] = {"fs.mqueue.queues_max": "77"}
    before = _host("fs.mqueue.queues_max")
    r = runh("run", "--bundle", make_bundle(edit=edit), ctx.new_id())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "77"
    assert _host("fs.mqueue.queues_max") == before


# ---------------------------------------------------------------- closed standard streams

def test_closed_stdin_becomes_dev_null_not_a_runtime_fd(runh, ctx, run_in):
    """runh started with fd 0 closed: the first fd the runtime or runh-init opens would
    land on 0 and be the container's stdin (a host directory, a socket, the init's exec
    object). Both programs open /dev/null on a closed 0-2 before anything else, as std's
    start does (runh-core's rt.rs: they are #![no_main] and do it themselves), so the
    container reads /dev/null."""
    r = run_in(*sh("ls -lL /proc/self/fd/0"), stdin=None, preexec_fn=lambda: os.close(0))
    assert r.returncode == 0, r.stderr
    assert re.search(r"^c.*\b1,\s+3\b", r.stdout), r.stdout

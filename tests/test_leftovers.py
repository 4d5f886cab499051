"""Nothing is left behind: after failures at each stage, after force-deletes, after the
runh process itself is killed. Also checks that the leftovers checker itself sees what
it must (so a green run means something)."""

import os
import signal
import subprocess
import sys
import time

from conftest import clean_leftovers, find_leftovers, sh


def _nothing_left(ctx):
    found = find_leftovers(ctx.token, ctx.root)
    assert not found, found


def test_checker_sees_mounts_and_processes(ctx):
    """The checker finds a mount and a process carrying the token, and cleans both."""
    m = ctx.path("mnt")
    os.makedirs(m)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", m], check=True)
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100)", ctx.token])
    # Popen returns once exec closed its CLOEXEC pipe, a moment before the kernel has set
    # up the new argv: /proc/<pid>/cmdline is empty in that window.
    deadline = time.time() + 5
    while time.time() < deadline and not open(f"/proc/{p.pid}/cmdline").read():
        time.sleep(0.01)
    try:
        found = find_leftovers(ctx.token, ctx.root)
        assert m in found.get("mounts", []), found
        assert p.pid in found.get("procs", []), found
        clean_leftovers(found, ctx.root)
        assert p.wait(timeout=5) == -signal.SIGKILL
        _nothing_left(ctx)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        subprocess.run(["umount", m], capture_output=True)


def test_run_removes_everything(run_in, ctx):
    r = run_in("true")
    assert r.returncode == 0, r.stderr
    # run deletes the container itself: no `delete` needed.
    assert not os.listdir(ctx.root)
    _nothing_left(ctx)


def test_failed_setup_leaves_nothing(runh, ctx, make_bundle):
    b = make_bundle(args=["true"], edit=lambda c: c["mounts"].append(
        {"destination": "/mnt/x", "type": "nosuchfs", "source": "none"}))
    cid = ctx.new_id()
    r = runh("create", "--bundle", b, cid)
    assert r.returncode != 0
    assert "does not exist" in runh("state", cid).stderr
    _nothing_left(ctx)


def test_failed_exec_leaves_nothing_after_delete(runh, ctx, make_bundle):
    b = make_bundle(args=["/no/such/binary"])
    cid = ctx.new_id()
    r = runh("create", "--bundle", b, cid)
    if r.returncode == 0:  # exec errors may surface at start
        r = runh("start", cid)
        assert r.returncode != 0
        runh("delete", "--force", cid)
    _nothing_left(ctx)


def test_many_containers(runh, ctx, make_bundle):
    b = make_bundle(args=["sleep", "100"])
    ids = [ctx.new_id() for _ in range(8)]
    try:
        for cid in ids:
            assert runh("create", "--bundle", b, cid).returncode == 0
        for cid in ids[::2]:
            assert runh("start", cid).returncode == 0
        for cid in ids:
            assert runh("kill", cid, "KILL").returncode == 0
        for cid in ids:
            runh.wait_status(cid, "stopped")
            assert runh("delete", cid).returncode == 0
    finally:
        for cid in ids:
            runh("delete", "--force", cid)
    _nothing_left(ctx)


def test_runh_killed_during_run(runh, ctx, make_bundle):
    b = make_bundle(args=["sleep", "100"])
    cid = ctx.new_id()
    p = runh.popen("run", "--bundle", b, cid, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        runh.wait_status(cid, "running", timeout=10)
        p.kill()
        p.wait()
        r = runh("delete", "--force", cid)
        assert r.returncode == 0, r.stderr
        deadline = time.time() + 5
        while time.time() < deadline and find_leftovers(ctx.token, ctx.root):
            time.sleep(0.05)
        _nothing_left(ctx)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        runh("delete", "--force", cid)


def test_delete_force_parked_init(runh, ctx, make_bundle):
    b = make_bundle(args=sh("exit 0"))
    cid = ctx.new_id()
    pf = ctx.path("pid")
    assert runh("create", "--bundle", b, "--pid-file", pf, cid).returncode == 0
    pid = int(open(pf).read())
    assert runh("delete", "--force", cid).returncode == 0
    deadline = time.time() + 5
    while time.time() < deadline and os.path.exists(f"/proc/{pid}") \
            and "Z" not in open(f"/proc/{pid}/stat").read().split()[2]:
        time.sleep(0.02)
    _nothing_left(ctx)


def test_checker_sees_a_leaked_container(runh, ctx, make_bundle):
    """A created-but-never-deleted container is found (state dir and parked init, the
    latter through its root mount) and cleaned."""
    b = make_bundle(args=["sleep", "100"])
    cid = ctx.new_id()
    pf = ctx.path("pid")
    assert runh("create", "--bundle", b, "--pid-file", pf, cid).returncode == 0
    pid = int(open(pf).read())
    found = find_leftovers(ctx.token, ctx.root)
    assert os.path.join(ctx.root, cid) in found.get("state", []), found
    assert pid in found.get("procs", []), found
    clean_leftovers(found, ctx.root)
    _nothing_left(ctx)

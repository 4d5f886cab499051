"""Cgroups through the CLI on this host (hybrid → v1): limits land in the files, pause and
resume, update, ps and kill --all over every process, events --stats, delete leaves no
cgroup behind."""

import json
import os
import time

import pytest

from conftest import edit_config, sh

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _limits(token):
    def edit(c):
        c["linux"]["cgroupsPath"] = f"/runh-test-{token}"
        c["linux"]["resources"] = {"memory": {"limit": 64 << 20},
                                   "cpu": {"shares": 512, "quota": 50000, "period": 100000},
                                   "pids": {"limit": 40}}
    return edit


@pytest.fixture
def started(runh, ctx, make_bundle):
    b = make_bundle(args=sh("sleep 300 & sleep 300 & exec sleep 300"), edit=_limits(ctx.token))
    cid = ctx.new_id()
    r = runh("create", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    r = runh("start", cid)
    assert r.returncode == 0, r.stderr
    yield cid
    runh("delete", "--force", cid)


def _v1(token, ctrl, f):
    with open(f"/sys/fs/cgroup/{ctrl}/runh-test-{token}/{f}") as fh:
        return fh.read().strip()


def _ps(runh, cid):
    r = runh("ps", "--format", "json", cid)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_limits_pause_update_ps_kill_all_delete(runh, ctx, started):
    cid, tok = started, ctx.token
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("v1 host checks")
    assert _v1(tok, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert _v1(tok, "cpu", "cpu.shares") == "512"
    assert _v1(tok, "cpu", "cpu.cfs_quota_us") == "50000"
    assert _v1(tok, "pids", "pids.max") == "40"
    deadline = time.time() + 5
    while len(_ps(runh, cid)) < 3 and time.time() < deadline:
        time.sleep(0.05)
    pids = _ps(runh, cid)
    assert len(pids) == 3
    assert runh.state(cid)["pid"] in pids

    assert runh("pause", cid).returncode == 0
    assert runh.state(cid)["status"] == "paused"
    assert _v1(tok, "freezer", "freezer.state") == "FROZEN"
    assert runh("pause", cid).returncode != 0
    assert runh("resume", cid).returncode == 0
    assert runh.state(cid)["status"] == "running"

    r = runh("update", "--resources", "-", cid, input=json.dumps({"memory": {"limit": 128 << 20}}))
    assert r.returncode == 0, r.stderr
    assert _v1(tok, "memory", "memory.limit_in_bytes") == str(128 << 20)
    r = runh("update", "--pids-limit", "30", "--memory", "96m", cid)
    assert r.returncode == 0, r.stderr
    assert _v1(tok, "pids", "pids.max") == "30"
    assert _v1(tok, "memory", "memory.limit_in_bytes") == str(96 << 20)

    r = runh("events", "--stats", cid)
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["type"] == "stats" and ev["id"] == cid
    assert ev["data"]["pids"] == {"current": 3, "limit": 30}
    assert ev["data"]["memory"]["usage"]["limit"] == 96 << 20

    assert runh("kill", "--all", cid, "KILL").returncode == 0
    runh.wait_status(cid, "stopped")
    for p in pids:
        assert not os.path.exists(f"/proc/{p}") or "Z" in open(f"/proc/{p}/stat").read().split()[2]
    assert runh("delete", cid).returncode == 0
    for ctrl in ("memory", "cpu", "pids", "freezer", "devices"):
        assert not os.path.exists(f"/sys/fs/cgroup/{ctrl}/runh-test-{tok}")


def test_delete_force_of_paused_container_removes_everything(runh, ctx, started):
    cid, tok = started, ctx.token
    assert runh("pause", cid).returncode == 0
    r = runh("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    assert runh("state", cid).returncode != 0
    for ctrl in ("memory", "cpu", "pids", "freezer"):
        assert not os.path.exists(f"/sys/fs/cgroup/{ctrl}/runh-test-{tok}")


def test_default_cgroup_path_is_own_cgroup_plus_id(runh, ctx, make_bundle):
    b = make_bundle(args=["sleep", "30"])
    cid = ctx.new_id()
    r = runh("create", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    try:
        pid = runh.state(cid)["pid"]
        with open(f"/proc/{pid}/cgroup") as f:
            lines = dict(line.rstrip("\n").split(":", 2)[1:] for line in f)
        with open("/proc/self/cgroup") as f:
            own = dict(line.rstrip("\n").split(":", 2)[1:] for line in f)
        assert lines["pids"] == own["pids"].rstrip("/") + "/" + cid
        assert lines["memory"] == own["memory"].rstrip("/") + "/" + cid
    finally:
        assert runh("delete", "--force", cid).returncode == 0
    assert not os.path.exists(f"/sys/fs/cgroup/pids{own['pids'].rstrip('/')}/{cid}")


def test_systemd_form_without_the_flag_is_a_clear_error(runh, ctx, make_bundle):
    b = make_bundle(args=["true"],
                    edit=lambda c: c["linux"].__setitem__("cgroupsPath", "system.slice:runh:x"))
    r = runh("run", "--bundle", b, ctx.new_id())
    assert r.returncode != 0 and "needs --systemd-cgroup" in r.stderr


def test_events_reports_oom_and_ends_with_init(runh, ctx, make_bundle):
    """`runh events` (no --stats): a first stats line, an "oom" line when the memory limit
    kills the container's process (inotify on v2, eventfd on v1: no polling), and exit
    once init has exited (pidfd)."""
    import subprocess

    def edit(c):
        c["linux"]["cgroupsPath"] = f"/runh-test-{ctx.token}"
        mem = {"limit": 32 << 20}
        if os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") or \
                os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            mem["swap"] = 32 << 20  # no swap beyond the limit, so the OOM killer must act
        c["linux"]["resources"] = {"memory": mem}

    b = make_bundle(args=["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"], edit=edit)
    cid = ctx.new_id()
    r = runh("create", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    ev = subprocess.Popen(runh.argv("events", "--interval", "10m", cid), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(ev.stdout.readline())
        assert first["type"] == "stats" and first["id"] == cid
        r = runh("start", cid)
        assert r.returncode == 0, r.stderr
        out, err = ev.communicate(timeout=30)
    finally:
        if ev.poll() is None:
            ev.kill()
            ev.wait()
        runh("delete", "--force", cid)
    lines = [json.loads(x) for x in out.splitlines()]
    assert ev.returncode == 0, err
    assert {"type": "oom", "id": cid} in lines, (lines, err)


def test_update_of_device_rules_keeps_linux_devices(runh, ctx, make_bundle):
    """update --resources with "devices" replaces the rules; the container's own
    linux.devices (kept in state.json) stay allowed, as at create."""
    if not os.path.isdir("/sys/fs/cgroup/devices"):
        pytest.skip("v1 devices controller")

    def edit(c):
        c["linux"]["cgroupsPath"] = f"/runh-test-{ctx.token}"
        c["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                  "fileMode": 0o666, "uid": 0, "gid": 0}]

    b = make_bundle(args=["sleep", "300"], edit=edit)
    cid = ctx.new_id()
    r = runh("create", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    try:
        listed = _v1(ctx.token, "devices", "devices.list").splitlines()
        assert "c 10:229 rwm" in listed
        r = runh("update", "--resources", "-", cid, input=json.dumps(
            {"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"},
                         {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "w"}]}))
        assert r.returncode == 0, r.stderr
        listed = _v1(ctx.token, "devices", "devices.list").splitlines()
        assert "c 10:229 rwm" in listed and "c 1:11 rw" in listed and "c 1:3 rwm" in listed
    finally:
        runh("delete", "--force", cid)


def _alive(pid):
    """Running, not gone nor a zombie (the orphan is re-parented to pytest, a subreaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("rt", ["runh", "runc"])
def test_kill_all_of_stopped_container_reaches_what_init_left(runh, ctx, make_bundle, rt):
    """A container without its own PID namespace (a pod sharing one): its init exits and
    leaves a child in the cgroup. `kill --all` of the now stopped container must signal
    it and succeed, as runc does: containerd's shim calls exactly that when a shared-PID
    pod's container exits, to kill its orphans (tests/test_cri.py)."""
    import shutil
    import subprocess
    if rt == "runc" and not shutil.which("runc"):
        pytest.skip("runc not installed")
    binary = runh.path if rt == "runh" else shutil.which("runc")

    def edit(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
        c["linux"]["cgroupsPath"] = f"/runh-test-{ctx.token}-{rt}"
    b = make_bundle(args=sh(f"sleep 4{ctx.token[-4:]} & exit 0"), edit=edit)
    cid = ctx.new_id()
    argv = [binary, "--root", ctx.root]
    orphan = None
    try:
        assert subprocess.run([*argv, "create", "--bundle", b, cid], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        assert subprocess.run([*argv, "start", cid]).returncode == 0
        deadline = time.time() + 5
        while time.time() < deadline:
            st = json.loads(subprocess.run([*argv, "state", cid], capture_output=True).stdout)
            procs = []
            for top in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup"):
                f = f"{top}/runh-test-{ctx.token}-{rt}/cgroup.procs"
                if os.path.exists(f):
                    with open(f) as fh:
                        procs = [int(p) for p in fh.read().split()]
                    break
            if st["status"] == "stopped" and procs:
                orphan = procs[0]
                break
            time.sleep(0.02)
        assert orphan, "init did not exit leaving its child in the cgroup"
        r = subprocess.run([*argv, "kill", "--all", cid, "KILL"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        deadline = time.time() + 5
        while _alive(orphan) and time.time() < deadline:
            time.sleep(0.02)
        assert not _alive(orphan), f"orphan {orphan} still alive after kill --all"
        # Nothing left to signal: still no error.
        r = subprocess.run([*argv, "kill", "--all", cid, "KILL"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run([*argv, "delete", "--force", cid], capture_output=True)

"""Rootless: an unprivileged user, created for the test with subordinate id ranges, runs
`runh --root $XDG_RUNTIME_DIR/runh run` on a bundle of its own from `runh spec --rootless`.
The user, its ranges and its files are removed afterwards."""

import json
import os
import pwd
import shutil
import subprocess

import pytest

from conftest import RUNH

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="needs root to create a user")
SUB_START = 400000


def _drop_sub_entries(name):
    for f in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(f) as fh:
                lines = fh.readlines()
        except FileNotFoundError:
            continue
        with open(f, "w") as fh:
            fh.writelines(l for l in lines if not l.startswith(name + ":"))


def _kill_uid(uid):
    """SIGKILL, by pid, every process of the test's own temporary user."""
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.stat(f"/proc/{p}").st_uid == uid:
                    os.kill(int(p), 9)
            except OSError:
                pass


@pytest.fixture
def user(ctx):
    name = "rh" + ctx.token[-8:]
    subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/bin/sh", "-K", "SUB_UID_COUNT=0",
                    "-K", "SUB_GID_COUNT=0", name], check=True, capture_output=True)
    pw = pwd.getpwnam(name)
    try:
        for f in ("/etc/subuid", "/etc/subgid"):
            with open(f, "a") as fh:
                fh.write(f"{name}:{SUB_START}:65536\n")
        home = ctx.path("home")
        os.makedirs(os.path.join(home, "run"))
        os.chmod(ctx.dir, 0o755)
        for d in (home, os.path.join(home, "run")):
            os.chown(d, pw.pw_uid, pw.pw_gid)
            os.chmod(d, 0o700)
        yield pw, home
    finally:
        # Whatever the user still runs goes first, then the user and its ranges.
        _kill_uid(pw.pw_uid)
        subprocess.run(["userdel", name], capture_output=True)
        _drop_sub_entries(name)
        shutil.rmtree(ctx.path("home"), ignore_errors=True)


def _as_user(pw, home, cmd, **kw):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, "XDG_RUNTIME_DIR": os.path.join(home, "run")}
    return subprocess.run(cmd, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=env,
                          cwd=home, capture_output=True, text=True, timeout=60, **kw)


def _bundle(pw, home, rootfs_template, args, edit=None):
    from bundle import build_rootfs

    b = os.path.join(home, "bundle")
    os.makedirs(b)
    build_rootfs(os.path.join(b, "rootfs"), template=rootfs_template)
    for dirpath, dirs, files in os.walk(home):
        for n in dirs + files:
            os.lchown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid)
    os.lchown(b, pw.pw_uid, pw.pw_gid)
    r = _as_user(pw, home, [RUNH, "spec", "--rootless", "--bundle", b])
    assert r.returncode == 0, r.stderr
    path = os.path.join(b, "config.json")
    with open(path) as f:
        c = json.load(f)
    c["process"]["terminal"] = False
    c["process"]["args"] = args
    if edit:
        edit(c)
    with open(path, "w") as f:
        json.dump(c, f)
    return b


def _run(pw, home, b, cid):
    root = os.path.join(home, "run", "runh")
    r = _as_user(pw, home, [RUNH, "--root", root, "run", "--bundle", b, cid])
    leftover = os.path.exists(os.path.join(root, cid))
    if leftover:
        _as_user(pw, home, [RUNH, "--root", root, "delete", "--force", cid])
    assert not leftover, "run left its state behind"
    return r


def test_rootless_spec_matches_runc_shape(user, rootfs_template):
    pw, home = user
    b = _bundle(pw, home, rootfs_template, ["true"])
    with open(os.path.join(b, "config.json")) as f:
        c = json.load(f)
    ns = [n["type"] for n in c["linux"]["namespaces"]]
    assert "user" in ns and "network" not in ns
    assert c["linux"]["uidMappings"] == [{"containerID": 0, "hostID": pw.pw_uid, "size": 1}]
    assert c["linux"]["gidMappings"] == [{"containerID": 0, "hostID": pw.pw_gid, "size": 1}]
    assert "resources" not in c["linux"]
    sys_mount = next(m for m in c["mounts"] if m["destination"] == "/sys")
    assert sys_mount["type"] == "none" and "rbind" in sys_mount["options"]
    assert not any(o.startswith(("uid=", "gid=")) for m in c["mounts"] for o in m.get("options", []))


def test_rootless_run_single_id(user, ctx, rootfs_template):
    pw, home = user
    b = _bundle(pw, home, rootfs_template,
                ["sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/setgroups; touch /dev/shm/x && ls -ln /dev/shm/x"])
    r = _run(pw, home, b, ctx.new_id())
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(pw.pw_uid), "1"]
    assert lines[2] == "deny"  # a one-id gid map written by the user itself


def test_rootless_run_subordinate_range(user, ctx, rootfs_template):
    if not shutil.which("newuidmap"):
        pytest.skip("newuidmap (uidmap package) not installed")
    pw, home = user
    maps = [{"containerID": 0, "hostID": pw.pw_uid, "size": 1},
            {"containerID": 1, "hostID": SUB_START, "size": 65536}]

    def edit(c):
        c["linux"]["uidMappings"] = maps
        c["linux"]["gidMappings"] = [dict(m, hostID=pw.pw_gid) if m["containerID"] == 0 else m for m in maps]
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["mounts"].append({"destination": "/mnt", "type": "bind", "source": os.path.join(home, "share"),
                            "options": ["rbind"]})
    share = os.path.join(home, "share")
    os.makedirs(share)
    os.chmod(share, 0o777)
    b = _bundle(pw, home, rootfs_template, ["sh", "-c", "id -u; cat /proc/self/uid_map; touch /mnt/f"], edit)
    r = _run(pw, home, b, ctx.new_id())
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "1000"
    assert [l.split() for l in lines[1:3]] == [["0", str(pw.pw_uid), "1"], ["1", str(SUB_START), "65536"]]
    st = os.stat(os.path.join(share, "f"))
    assert (st.st_uid, st.st_gid) == (SUB_START + 999, SUB_START + 999)


def test_rootless_limits_need_a_delegated_cgroup(user, ctx, rootfs_template):
    pw, home = user
    b = _bundle(pw, home, rootfs_template, ["true"],
                lambda c: c["linux"].update(resources={"pids": {"limit": 10}}))
    r = _run(pw, home, b, ctx.new_id())
    assert r.returncode != 0
    assert "rootless" in r.stderr and "pids" in r.stderr, r.stderr


def test_rootless_map_outside_its_ranges_fails_clearly(user, ctx, rootfs_template):
    if not shutil.which("newuidmap"):
        pytest.skip("newuidmap (uidmap package) not installed")
    pw, home = user
    bad = [{"containerID": 0, "hostID": 0, "size": 1}]  # host root: not the user's to map
    b = _bundle(pw, home, rootfs_template, ["true"],
                lambda c: c["linux"].update(uidMappings=bad))
    r = _run(pw, home, b, ctx.new_id())
    assert r.returncode != 0 and "newuidmap" in r.stderr, r.stderr

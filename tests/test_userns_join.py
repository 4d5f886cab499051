"""A new user namespace together with namespaces joined by path (runc's order: join the
paths first, as host root, then create the user namespace and the rest in it)."""

import os
import shutil
import subprocess

import pytest

from conftest import run_container, sh

BASE = 200000


def _config(joins, new=("pid", "mount", "ipc", "uts")):
    def edit(c):
        c["linux"]["namespaces"] = [{"type": t} for t in new] + [{"type": "user"}] + joins
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": BASE, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": BASE, "size": 65536}]
        c["linux"].pop("sysctl", None)
    return edit


@pytest.fixture
def netns(ctx):
    path = ctx.path("netns")
    open(path, "w").close()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    yield path
    subprocess.run(["umount", path], check=False)


def _ino(link):
    return int(link.strip().split("[")[1].rstrip("]"))


def test_new_userns_joins_netns_by_path(runh, ctx, make_bundle, netns):
    b = make_bundle(args=sh("readlink /proc/self/ns/net; cat /proc/self/uid_map; id -u"),
                    edit=_config([{"type": "network", "path": netns}]))
    r = run_container(runh, ctx, b)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().split("\n")
    assert _ino(lines[0]) == os.stat(netns).st_ino
    assert lines[1].split() == ["0", str(BASE), "65536"]
    assert lines[2] == "0"


def test_new_userns_joins_other_containers_namespaces(runh, ctx, make_bundle):
    a = make_bundle(args=["sleep", "100"])
    ida = ctx.new_id()
    pf = ctx.path("a.pid")
    assert runh("create", "--bundle", a, "--pid-file", pf, ida).returncode == 0
    try:
        pid = int(open(pf).read())
        joins = [{"type": n, "path": f"/proc/{pid}/ns/{f}"}
                 for n, f in (("network", "net"), ("cgroup", "cgroup"))]
        def edit(c):
            _config(joins)(c)
            # A cgroup filesystem of a cgroup namespace that another user namespace owns
            # is refused by the kernel: this test is about the joins.
            c["mounts"] = [m for m in c["mounts"] if m["type"] != "cgroup"]
        b = make_bundle(args=sh("for n in net cgroup user; do readlink /proc/self/ns/$n; done; "
                                "grep CapEff /proc/self/status"),
                        edit=edit)
        r = run_container(runh, ctx, b)
        assert r.returncode == 0, r.stderr
        got = r.stdout.split()
        assert got[:2] == [os.readlink(f"/proc/{pid}/ns/{n}") for n in ("net", "cgroup")]
        assert got[2] != os.readlink("/proc/self/ns/user")
        assert int(got[4], 16) != 0  # root of the new user namespace keeps its capabilities
    finally:
        runh("delete", "--force", ida)


def test_exec_joins_them_too(runh, ctx, make_bundle, netns):
    b = make_bundle(args=["sleep", "100"], edit=_config([{"type": "network", "path": netns}]))
    cid = ctx.new_id()
    assert runh("run", "-d", "--bundle", b, cid).returncode == 0
    try:
        r = runh("exec", cid, "sh", "-c", "readlink /proc/self/ns/net; id -u; grep CapEff /proc/self/status")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.split("\n")
        assert _ino(lines[0]) == os.stat(netns).st_ino
        assert lines[1] == "0"
    finally:
        runh("delete", "--force", cid)


def test_bad_path_leaves_nothing(runh, ctx, make_bundle):
    b = make_bundle(args=["true"], edit=_config([{"type": "network", "path": ctx.path("no-such-ns")}]))
    r = run_container(runh, ctx, b)
    assert r.returncode != 0 and "no-such-ns" in r.stderr, r.stderr
    assert len(r.stderr.strip().split("\n")) == 1
    assert os.listdir(ctx.root) == []


@pytest.mark.runc
@pytest.mark.skipif(shutil.which("runc") is None, reason="runc not installed")
def test_same_as_runc(runh, ctx, rootfs_template, netns):
    """runc 1.1.5 joins the same way, with the same view from inside. One difference, on
    purpose: runc 1.1.5 fails its sysfs mount here (the joined network namespace belongs
    to the host's user namespace: EPERM) where runh binds the host's /sys, as both do
    without a network namespace; so both get that bind in the config itself."""
    from test_parity import same_as_runc
    ino = os.stat(netns).st_ino
    def edit(c):
        _config([{"type": "network", "path": netns}])(c)
        c["process"]["args"] = sh("readlink /proc/self/ns/net; cat /proc/self/uid_map; id -u")
        c["process"]["terminal"] = False
        for m in c["mounts"]:
            if m["type"] == "sysfs":
                m.update(type="bind", source="/sys", options=["rbind", "nosuid", "noexec", "nodev", "ro"])
    same_as_runc(runh, ctx, rootfs_template, edit,
                 check=lambda out: out.split()[0] == f"net:[{ino}]" and out.split()[1:] == ["0", str(BASE), "65536", "0"])


def test_net_device_moves_into_the_new_netns_init_made(runh, ctx, make_bundle):
    """A new network namespace that init unshares (after the joins and the user
    namespace): runh moves the device once init has made it, not into the host's."""
    from test_parity import _Veth
    v = _Veth(ctx)
    try:
        uts = ctx.path("utsns")
        open(uts, "w").close()
        subprocess.run(["unshare", f"--uts={uts}", "true"], check=True)
        try:
            def edit(c):
                _config([{"type": "uts", "path": uts}], new=("pid", "mount", "ipc", "network"))(c)
                c["linux"]["netDevices"] = {v.a: {"name": "ctr0"}}
                c.pop("hostname", None)  # the joined UTS namespace is the host user namespace's
            b = make_bundle(args=sh("ls /sys/class/net | sort; readlink /proc/self/ns/uts"), edit=edit)
            r = run_container(runh, ctx, b)
            assert r.returncode == 0, r.stderr
            assert r.stdout.split()[:2] == ["ctr0", "lo"]
            assert _ino(r.stdout.split()[2]) == os.stat(uts).st_ino
            assert not v.exists(v.a)
        finally:
            subprocess.run(["umount", uts], check=False)
    finally:
        v.close()

"""Namespaces seen from inside a container: new ones, omitted ones, and joining one by path."""

import os
import subprocess

import pytest

from conftest import sh

NS_FILES = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
            "cgroup": "cgroup"}


def _with_namespaces(types, extra=None):
    def edit(c):
        c["linux"]["namespaces"] = [{"type": t} for t in types] + (extra or [])
    return edit


def _ns_inode(link):
    # "net:[4026531840]" -> 4026531840
    return int(link.strip().split("[")[1].rstrip("]"))


def test_pid_1(run_in):
    r = run_in(*sh("echo $$; cat /proc/1/comm; exit 0"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "sh"]


def test_hostname_in_own_uts(run_in, ctx):
    name = "h" + ctx.token[-6:]
    r = run_in("hostname", edit=lambda c: c.update(hostname=name))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == name
    assert os.uname().nodename != name


def test_own_net_ns_has_only_lo(run_in):
    r = run_in(*sh("tail -n +3 /proc/net/dev | cut -d: -f1"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["lo"]


@pytest.mark.parametrize("ns", sorted(NS_FILES))
def test_new_namespace(run_in, ns):
    r = run_in("readlink", f"/proc/self/ns/{NS_FILES[ns]}",
               edit=_with_namespaces(sorted(NS_FILES)))
    assert r.returncode == 0, r.stderr
    host = os.readlink(f"/proc/self/ns/{NS_FILES[ns]}")
    assert r.stdout.strip() != host, f"{ns} namespace not new"


@pytest.mark.parametrize("ns", ["network", "ipc", "uts", "cgroup"])
def test_omitted_namespace_is_the_hosts(run_in, ns):
    types = [t for t in sorted(NS_FILES) if t != ns]

    def edit(c):
        _with_namespaces(types)(c)
        if ns == "uts":  # a hostname needs a private UTS namespace
            c.pop("hostname", None)
            c.pop("domainname", None)
        if ns == "network":  # net.* sysctls need a private net namespace
            c["linux"].pop("sysctl", None)
    r = run_in("readlink", f"/proc/self/ns/{NS_FILES[ns]}", edit=edit)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == os.readlink(f"/proc/self/ns/{NS_FILES[ns]}")


def test_join_netns_by_path(run_in, ctx):
    """A persistent net ns (as `ip netns add` makes) joined through namespaces[].path."""
    path = ctx.path("netns")
    open(path, "w").close()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    try:
        ino = os.stat(path).st_ino
        r = run_in("readlink", "/proc/self/ns/net", edit=_with_namespaces(
            ["pid", "ipc", "uts", "mount"], [{"type": "network", "path": path}]))
        assert r.returncode == 0, r.stderr
        assert _ns_inode(r.stdout) == ino
    finally:
        subprocess.run(["umount", path], check=False)


def test_join_other_containers_namespaces(runh, ctx, make_bundle):
    a = make_bundle(args=["sleep", "100"])
    ida = ctx.new_id()
    pf = ctx.path("a.pid")
    r = runh("create", "--bundle", a, "--pid-file", pf, ida)
    assert r.returncode == 0, r.stderr
    try:
        pid = int(open(pf).read())
        b = make_bundle(args=sh("for n in net ipc uts; do readlink /proc/self/ns/$n; done"),
                        edit=_with_namespaces(["pid", "mount"], [
                            {"type": "network", "path": f"/proc/{pid}/ns/net"},
                            {"type": "ipc", "path": f"/proc/{pid}/ns/ipc"},
                            {"type": "uts", "path": f"/proc/{pid}/ns/uts"}]))
        idb = ctx.new_id()
        r = runh("run", "--bundle", b, idb)
        runh("delete", "--force", idb)
        assert r.returncode == 0, r.stderr
        want = [os.readlink(f"/proc/{pid}/ns/{n}") for n in ("net", "ipc", "uts")]
        assert r.stdout.split() == want
    finally:
        runh("delete", "--force", ida)


def test_bad_namespace_path(run_in, ctx):
    r = run_in("true", edit=_with_namespaces(
        ["pid", "mount"], [{"type": "network", "path": ctx.path("no-such-ns")}]))
    assert r.returncode != 0
    assert r.stderr.strip()

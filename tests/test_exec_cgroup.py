"""exec --cgroup (runc's flag): the process goes into an existing cgroup below the
container's, given as [<controller>[,<controller>...]:]<path>, repeatable. On this hybrid
host that is v1 (the pure v2 case is tests/cgroupv2_checks.py check_exec_cgroup). A
missing cgroup, a path that climbs out with "..", or an unknown controller fail before any
process is started. The sub-cgroups made here are inside the container's own cgroup, which
`delete` removes with its children."""

import json
import os

import pytest

from test_exec import running  # noqa: F401  (fixture)


def _paths(runh, cid):
    with open(os.path.join(runh.root, cid, "state.json")) as f:
        cg = json.load(f)["cgroup"]
    if not cg or cg.get("version") != 1:
        pytest.skip("needs the host's v1 hierarchies (the v2 case runs in the guest)")
    return cg["paths"]


def _own_cgroups(runh, cid, *flags):
    r = runh("exec", *flags, cid, "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    return {c: path for line in r.stdout.split() for _, cs, path in [line.split(":", 2)] for c in cs.split(",")}


def test_controller_sub_cgroup(runh, running):  # noqa: F811
    cid, _, _ = running()
    paths = _paths(runh, cid)
    os.mkdir(paths["pids"] + "/sub")
    before = _own_cgroups(runh, cid)
    got = _own_cgroups(runh, cid, "--cgroup", "pids:sub")
    # Only the named controller moves (relative to the container's cgroup namespace root).
    assert got["pids"] == before["pids"].rstrip("/") + "/sub"
    assert got["memory"] == before["memory"]


def test_every_controller_needs_the_sub_cgroup(runh, running):  # noqa: F811
    """Without a controller the path applies to all, and each must exist (runc)."""
    cid, _, _ = running()
    paths = _paths(runh, cid)
    os.mkdir(paths["pids"] + "/sub")
    r = runh("exec", "--cgroup", "sub", cid, "true")
    assert r.returncode == 1
    assert "does not exist" in r.stderr and "/sub" in r.stderr, r.stderr
    for d in sorted(set(paths.values())):
        if not os.path.isdir(d + "/sub"):
            os.mkdir(d + "/sub")
        if os.path.exists(d + "/cpuset.cpus"):
            # A new v1 cpuset has no cpus or mems, and takes no process until given some.
            for f in ("cpuset.cpus", "cpuset.mems"):
                with open(f"{d}/{f}") as src, open(f"{d}/sub/{f}", "w") as dst:
                    dst.write(src.read())
    got = _own_cgroups(runh, cid, "--cgroup", "sub")
    assert all(p.endswith("/sub") for c, p in got.items() if c in paths), got


@pytest.mark.parametrize("value,error", [
    ("../..", "must not leave the container's cgroup"),
    ("nosuch:sub", "no such controller: nosuch"),
    (":sub", "invalid --cgroup argument"),
    ("missing", "does not exist"),
])
def test_bad_values(runh, running, value, error):  # noqa: F811
    cid, _, _ = running()
    _paths(runh, cid)
    r = runh("exec", "--cgroup", value, cid, "true")
    assert r.returncode == 1
    assert error in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1  # one line

"""The cgroup manager library on this host (hybrid: everything through v1), with cgroups of
our own named runh-test-<token>, and the pure translation of LinuxResources to files.
No container is needed: a sleeping child stands in for the container's processes."""

import os
import signal
import subprocess
import time

import pytest

from runh import cgroups
from runh.cgroups import base, v1, v2

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def test_shares_and_weights_convert_like_runc():
    assert base.shares_to_weight(2) == 1
    assert base.shares_to_weight(1024) == 39
    assert base.shares_to_weight(262144) == 10000
    assert base.blkio_to_io_weight(10) == 1
    assert base.blkio_to_io_weight(1000) == 10000
    assert base.swap_to_v2(200, 100) == 100
    assert base.swap_to_v2(-1, 100) == -1
    assert base.swap_to_v2(0, -1) == -1
    assert base.swap_to_v2(None, 100) is None


def test_v2_resource_writes():
    res = {"memory": {"limit": 33554432, "reservation": 1 << 20, "swap": 67108864},
           "cpu": {"shares": 1024, "quota": 20000, "period": 100000, "cpus": "1", "mems": "0"},
           "pids": {"limit": 10},
           "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]},
           "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
           "unified": {"memory.high": "50000000"}}
    w = dict(v2.resource_writes(res))
    assert w["memory.max"] == "33554432"
    assert w["memory.low"] == "1048576"
    assert w["memory.swap.max"] == "33554432"
    assert w["cpu.weight"] == "39"
    assert w["cpu.max"] == "20000 100000"
    assert w["cpuset.cpus"] == "1"
    assert w["pids.max"] == "10"
    assert w["io.weight"] == "default 4950"
    assert w["io.max"] == "8:0 rbps=1000"
    assert w["hugetlb.2MB.max"] == "0"
    assert w["memory.high"] == "50000000"
    # pids.limit 0 writes nothing (runc 1.1's reading: test_parity_cli), -1 is "max".
    assert dict(v2.resource_writes({"memory": {"limit": -1}, "pids": {"limit": 0}})) == {
        "memory.max": "max", "memory.swap.max": "max"}
    assert dict(v2.resource_writes({"pids": {"limit": -1}})) == {"pids.max": "max"}


def test_v1_resource_writes_order_memory_and_swap():
    grow = v1.resource_writes({"memory": {"limit": 200, "swap": 400}}, current_limit=100)
    assert [f for f, _ in grow["memory"]] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    shrink = v1.resource_writes({"memory": {"limit": 50, "swap": 60}}, current_limit=100)
    assert [f for f, _ in shrink["memory"]] == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]


def test_device_rules_last_match_wins_order():
    rules = base.device_rules({"devices": [{"allow": True, "type": "c", "major": 10, "minor": 200,
                                            "access": "rw"}]},
                              [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229}])
    assert rules[0] == {"allow": False, "type": "a", "major": None, "minor": None, "access": "rwm"}
    assert rules[1]["minor"] == 200 and rules[-1]["minor"] == 229
    assert v1._rule_text(rules[2]) == "c *:* m"


def test_paths_absolute_relative_default(ctx):
    assert cgroups.resolve("/sys/fs/cgroup/pids", cgroups.inner_path({"cgroupsPath": "/a/b/../c"}, "x")) \
        == "/sys/fs/cgroup/pids/a/c"
    assert cgroups.inner_path({"cgroupsPath": "rel/x"}, "x") == "rel/x"
    assert cgroups.inner_path({}, "myid") == "myid"
    with pytest.raises(Exception, match="needs --systemd-cgroup"):
        cgroups.inner_path({"cgroupsPath": "system.slice:runh:abc"}, "x")
    m = cgroups.manager_for({"cgroupsPath": f"/runh-test-{ctx.token}"}, "x")
    if m.version == 1:
        assert m.paths["memory"] == f"/sys/fs/cgroup/memory/runh-test-{ctx.token}"
        own = cgroups.own_cgroups()["memory"].rstrip("/")
        rel = cgroups.manager_for({}, f"runh-test-{ctx.token}")
        assert rel.paths["memory"] == f"/sys/fs/cgroup/memory{own}/runh-test-{ctx.token}"
    st = m.to_state()
    assert cgroups.manager_from_state(st).to_state() == st


@pytest.fixture
def manager(ctx):
    m = cgroups.manager_for({"cgroupsPath": f"/runh-test-{ctx.token}/ctr"}, "x")
    m.create()
    procs = []
    yield m, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    m.remove()
    cgroups._fs.remove([os.path.dirname(d) for d in getattr(m, "paths", {}).values()]
                       if m.version == 1 else [os.path.dirname(m.path)])


def _spawn(m, procs, cmd="sleep 60"):
    # The child joins before it execs, so that nothing it forks starts outside.
    p = subprocess.Popen(["/bin/busybox", "sh", "-c", cmd], start_new_session=True,
                         preexec_fn=lambda: m.add(os.getpid()))
    procs.append(p)
    return p


@pytest.mark.skipif(cgroups.mode() == "unified", reason="v1 host checks (v2 runs in the guest)")
def test_v1_limits_land_in_files(manager):
    m, procs = manager
    m.apply({"memory": {"limit": 64 << 20, "swap": 128 << 20},
             "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
             "pids": {"limit": 20}}, devices=[])
    rd = lambda ctrl, f: open(f"{m.paths[ctrl]}/{f}").read().strip()  # noqa: E731
    assert rd("memory", "memory.limit_in_bytes") == str(64 << 20)
    assert rd("memory", "memory.memsw.limit_in_bytes") == str(128 << 20)
    assert rd("cpu", "cpu.shares") == "512"
    assert rd("cpu", "cpu.cfs_quota_us") == "50000"
    assert rd("cpuset", "cpuset.cpus") == "0"
    assert rd("pids", "pids.max") == "20"
    assert "c 1:3 rwm" in rd("devices", "devices.list")
    assert "a *:* rwm" not in rd("devices", "devices.list")
    # update: a live change, growing memory past the old memsw
    p = _spawn(m, procs)
    m.update({"memory": {"limit": 256 << 20, "swap": 512 << 20}, "pids": {"limit": 5}})
    assert rd("memory", "memory.limit_in_bytes") == str(256 << 20)
    assert rd("pids", "pids.max") == "5"
    assert m.pids() == [p.pid]
    s = m.stats()
    assert s["pids"] == {"current": 1, "limit": 5}
    assert s["memory"]["usage"]["limit"] == 256 << 20


@pytest.mark.skipif(cgroups.mode() == "unified", reason="v1 host checks (v2 runs in the guest)")
def test_v1_freeze_thaw_kill_all(manager):
    m, procs = manager
    m.apply({}, devices=[])
    p = _spawn(m, procs, "sleep 60 & sleep 60 & wait")
    deadline = time.time() + 5
    while len(m.pids()) < 3 and time.time() < deadline:
        time.sleep(0.01)
    assert len(m.pids()) == 3
    m.freeze()
    assert m.is_frozen()
    m.thaw()
    assert not m.is_frozen()
    m.kill_all(signal.SIGKILL)
    assert p.wait(timeout=5) == -9
    deadline = time.time() + 5
    while m.pids() and time.time() < deadline:
        time.sleep(0.01)
    assert m.pids() == []


def test_device_rules_merge_like_the_v1_kernel():
    def rule(allow, t, major, minor, access):
        return {"allow": allow, "type": t, "major": major, "minor": minor, "access": access}

    # Separate r and w allows for one device become one rw exception (O_RDWR works).
    got = base.merge_device_rules([rule(False, "a", None, None, "rwm"), rule(True, "c", 1, 11, "r"),
                                   rule(True, "c", 1, 11, "w"), rule(True, "c", 1, 11, "m")])
    assert got == [rule(False, "a", None, None, "rwm"), rule(True, "c", 1, 11, "rwm")]
    # A deny with the default (deny) takes bits away; the last bit gone drops the entry.
    got = base.merge_device_rules([rule(False, "a", None, None, "rwm"), rule(True, "c", 1, 11, "rw"),
                                   rule(False, "c", 1, 11, "w"), rule(True, "c", 1, 3, "r"),
                                   rule(False, "c", 1, 3, "r")])
    assert got == [rule(False, "a", None, None, "rwm"), rule(True, "c", 1, 11, "r")]
    # "a" resets: allow-all then denies are deny exceptions; the earlier allow is gone.
    got = base.merge_device_rules([rule(True, "c", 1, 11, "r"), rule(True, "a", None, None, "rwm"),
                                   rule(False, "b", 8, None, "w")])
    assert got == [rule(True, "a", None, None, "rwm"), rule(False, "b", 8, None, "w")]
    # Through device_rules: the usual config (deny all first) keeps the defaults.
    rules = base.device_rules({"devices": [{"allow": False, "access": "rwm"},
                                           {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "r"},
                                           {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "w"}]})
    assert rule(True, "c", 5, 1, "rw") in rules and rule(True, "c", 1, 3, "rwm") in rules
    assert [r for r in rules if r["type"] == "a"] == [rule(False, "a", None, None, "rwm")]


def test_rdma_writes_v1_and_v2():
    res = {"rdma": {"mlx5_1": {"hcaHandles": 3}, "mlx4_0": {"hcaHandles": 2, "hcaObjects": 2000}}}
    want = [("rdma.max", "mlx4_0 hca_handle=2 hca_object=2000"),
            ("rdma.max", "mlx5_1 hca_handle=3 hca_object=max")]
    assert [x for x in v2.resource_writes(res) if x[0] == "rdma.max"] == want
    assert v1.resource_writes(res)["rdma"] == want


def test_features_cgroup_truthful():
    import json

    from conftest import RUNH

    out = subprocess.run([RUNH, "features"], capture_output=True, text=True, check=True).stdout
    cg = json.loads(out)["linux"]["cgroup"]
    rdma = os.path.isdir("/sys/fs/cgroup/rdma") if cgroups.mode() != "unified" else \
        "rdma" in open("/sys/fs/cgroup/cgroup.controllers").read().split()
    assert cg == {"v1": True, "v2": True, "systemd": True, "systemdUser": True, "rdma": rdma}

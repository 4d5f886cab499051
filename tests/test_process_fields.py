"""process.scheduler, process.ioPriority, process.execCPUAffinity, linux.personality and
the time namespace with linux.timeOffsets, seen from inside the container."""

import os

import pytest

from conftest import run_container, sh


def _set(**process):
    return lambda c: c["process"].update(process)


def test_time_namespace_offsets(run_in):
    day = 86400

    def edit(c):
        c["linux"]["namespaces"].append({"type": "time"})
        c["linux"]["timeOffsets"] = {"boottime": {"secs": 10 * day}, "monotonic": {"secs": day}}
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    r = run_in(*sh("cat /proc/uptime; echo $$; readlink /proc/self/ns/time"), edit=edit)
    assert r.returncode == 0, r.stderr
    up, pid, ns = r.stdout.split("\n")[:3]
    assert 10 * day <= float(up.split()[0]) - host < 10 * day + 30
    assert pid == "1"  # a pid namespace asked with it is still the container's own
    assert ns != os.readlink("/proc/self/ns/time")


def test_time_namespace_without_offsets(run_in):
    r = run_in(*sh("readlink /proc/self/ns/time"),
               edit=lambda c: c["linux"]["namespaces"].append({"type": "time"}))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() != os.readlink("/proc/self/ns/time")


@pytest.mark.parametrize("domain,machine", [("LINUX32", "i686"), ("LINUX", os.uname().machine)])
def test_personality(run_in, domain, machine):
    r = run_in("uname", "-m", edit=lambda c: c["linux"].update(personality={"domain": domain}))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == machine


def _sched(r):
    fields = dict(l.split(":", 1) for l in r.stdout.splitlines() if ":" in l)
    return {k.strip(): v.strip() for k, v in fields.items()}


def test_scheduler_batch_nice(run_in):
    r = run_in(*sh("grep -E '^policy|^prio' /proc/self/sched; cut -d' ' -f19 /proc/self/stat"),
               edit=_set(scheduler={"policy": "SCHED_BATCH", "nice": 7}))
    assert r.returncode == 0, r.stderr
    s = _sched(r)
    assert s["policy"] == "3" and r.stdout.split()[-1] == "7"


def test_scheduler_idle_reset_on_fork(run_in):
    # (SCHED_FIFO/RR need an rt_runtime budget in the container's cgroup on this
    # CONFIG_RT_GROUP_SCHED host, which a new cgroup does not get: EPERM, as with runc.)
    r = run_in(*sh("grep -E '^policy' /proc/self/sched; sh -c 'grep -E ^policy /proc/self/sched'"),
               edit=_set(scheduler={"policy": "SCHED_IDLE", "flags": ["SCHED_FLAG_RESET_ON_FORK"]}))
    assert r.returncode == 0, r.stderr
    policies = [l.split(":")[1].strip() for l in r.stdout.splitlines()]
    # reset-on-fork resets only real-time policies and negative nice: IDLE is inherited.
    assert policies == ["5", "5"]


@pytest.mark.parametrize("cls,prio,want", [("IOPRIO_CLASS_IDLE", 0, "idle"),
                                           ("IOPRIO_CLASS_BE", 3, "best-effort: prio 3"),
                                           ("IOPRIO_CLASS_RT", 5, "realtime: prio 5")])
def test_io_priority(run_in, cls, prio, want):
    r = run_in("ionice", edit=_set(ioPriority={"class": cls, "priority": prio}))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == want


@pytest.mark.skipif(os.cpu_count() < 2, reason="needs two CPUs")
def test_exec_cpu_affinity_final(run_in):
    r = run_in(*sh("grep Cpus_allowed_list /proc/self/status"),
               edit=_set(execCPUAffinity={"initial": "0", "final": "1"}))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "1"


def test_exec_cpu_affinity_initial_applies_to_init(runh, ctx, make_bundle):
    b = make_bundle(args=["true"], edit=_set(execCPUAffinity={"initial": "0"}))
    cid = ctx.new_id()
    assert runh("create", "--bundle", b, cid).returncode == 0
    try:
        pid = runh.state(cid)["pid"]
        assert os.sched_getaffinity(pid) == {0}
    finally:
        runh("delete", "--force", cid)


@pytest.mark.parametrize("edit,msg", [
    (_set(scheduler={"policy": "SCHED_NOPE"}), "process.scheduler.policy"),
    (_set(ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 9}), "process.ioPriority.priority"),
    (_set(execCPUAffinity={"final": "3-1"}), "execCPUAffinity.final"),
    (lambda c: c["linux"].update(personality={"domain": "PDP11"}), "personality"),
    (lambda c: c["linux"].update(timeOffsets={"realtime": {"secs": 1}}), "timeOffsets"),
])
def test_bad_values_fail_create(runh, ctx, make_bundle, edit, msg):
    def both(c):
        edit(c)
        c["linux"]["namespaces"].append({"type": "time"})
    b = make_bundle(args=["true"], edit=both)
    r = run_container(runh, ctx, b)
    assert r.returncode != 0 and msg in r.stderr, r.stderr
    assert os.listdir(ctx.root) == []

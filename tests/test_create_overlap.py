"""create's work done while init sets up (Container's on_setup): the cgroup's limits and
the final record. What must hold: the limits are in place before any create hook runs and
before create returns; a cpuset keeps the old order (written before init exists); the
record is the final one with no temp file left, also when init forks into a pid namespace
joined by path after the record was prepared."""

import contextlib
import json
import os

from conftest import read, sh

HOOK = r"""
import json, sys
state = json.load(sys.stdin)
pid = state["pid"]
out = {}
for line in open(f"/proc/{pid}/cgroup"):
    _, ctrl, path = line.rstrip("\n").split(":", 2)
    if ctrl in ("pids", ""):
        base = "/sys/fs/cgroup/pids" if ctrl == "pids" else "/sys/fs/cgroup/unified"
        try:
            out[ctrl or "unified"] = open(f"{base}{path}/pids.max").read().strip()
        except OSError:
            pass
open(sys.argv[1], "w").write(json.dumps(out))
"""


@contextlib.contextmanager
def _created(runh, ctx, bundle):
    """`create` the bundle (which must succeed); yields the init's pid from the pid file,
    then force-deletes the container."""
    cid = ctx.new_id()
    pf = ctx.path(f"{cid}.pid")
    try:
        r = runh("create", "--bundle", bundle, "--pid-file", pf, cid)
        assert r.returncode == 0, r.stderr
        yield int(read(pf))
    finally:
        runh("delete", "--force", cid)


def _pids_max(cid_pid):
    for line in read(f"/proc/{cid_pid}/cgroup").splitlines():
        _, ctrl, path = line.split(":", 2)
        if ctrl == "pids":
            return read(f"/sys/fs/cgroup/pids{path}/pids.max").strip()
        if ctrl == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            return read(f"/sys/fs/cgroup{path}/pids.max").strip()
    return None


def test_limits_are_written_before_the_create_hooks(runh, ctx, make_bundle):
    hook = ctx.path("hook.py")
    with open(hook, "w") as f:
        f.write(HOOK)
    out = ctx.path("seen.json")

    def edit(c):
        c["linux"].setdefault("resources", {})["pids"] = {"limit": 77}
        c["hooks"] = {"createRuntime": [{"path": "/usr/bin/python3", "args": ["python3", hook, out]}]}
    with _created(runh, ctx, make_bundle(args=["sleep", "100"], edit=edit)) as pid:
        assert json.loads(read(out)).get("pids") == "77"
        assert _pids_max(pid) == "77"


def test_record_is_final_and_no_temp_file_is_left(runh, ctx, make_bundle):
    b = make_bundle(args=["sleep", "100"])
    cid = ctx.new_id()
    try:
        assert runh("create", "--bundle", b, cid).returncode == 0
        d = os.path.join(ctx.root, cid)
        assert [n for n in os.listdir(d) if n.endswith(".tmp")] == []
        rec = json.loads(read(os.path.join(d, "state.json")))
        assert rec["pid"] > 0 and "creating" not in rec and rec["starttime"]
        # The config snapshot, also written while init sets up.
        assert read(os.path.join(d, "config.json")) == read(os.path.join(b, "config.json"))
        assert json.loads(runh("state", cid).stdout)["status"] == "created"
    finally:
        runh("delete", "--force", cid)


def test_init_forked_after_the_record_was_prepared(runh, ctx, make_bundle):
    """A pid namespace joined by path: init forks once setup has begun, so the prepared
    record names the wrong pid; the record written instead names the fork."""
    a = make_bundle(args=["sleep", "100"])
    ida = ctx.new_id()
    pfa = ctx.path("a.pid")
    assert runh("create", "--bundle", a, "--pid-file", pfa, ida).returncode == 0
    try:
        apid = int(read(pfa))

        def edit(c):
            for n in c["linux"]["namespaces"]:
                if n["type"] == "pid":
                    n["path"] = f"/proc/{apid}/ns/pid"
        b = make_bundle(args=sh("sleep 100"), edit=edit)
        idb = ctx.new_id()
        pfb = ctx.path("b.pid")
        try:
            r = runh("create", "--bundle", b, "--pid-file", pfb, idb)
            assert r.returncode == 0, r.stderr
            d = os.path.join(ctx.root, idb)
            assert [n for n in os.listdir(d) if n.endswith(".tmp")] == []
            rec = json.loads(read(os.path.join(d, "state.json")))
            assert rec["pid"] == int(read(pfb))
            assert os.readlink(f"/proc/{rec['pid']}/ns/pid") == os.readlink(f"/proc/{apid}/ns/pid")
        finally:
            runh("delete", "--force", idb)
    finally:
        runh("delete", "--force", ida)


def test_cpuset_keeps_the_initial_affinity(runh, ctx, make_bundle):
    """A cpuset is written before init exists: written later it could reset the
    affinity init sets first (execCPUAffinity.initial)."""
    ncpu = os.cpu_count()

    def edit(c):
        c["linux"].setdefault("resources", {})["cpu"] = {"cpus": f"0-{ncpu - 1}"}
        c["process"]["execCPUAffinity"] = {"initial": "0"}
    with _created(runh, ctx, make_bundle(args=["sleep", "100"], edit=edit)) as pid:
        assert os.sched_getaffinity(pid) == {0}


def test_pid_file_written_while_init_sets_up(runh, ctx, make_bundle):
    """The pid file's temp file is made during setup and named in the first record; once
    create is done the pid file holds the pid, no temp file is left beside it, and the
    final record no longer names it (so delete stays on the native path)."""
    d = ctx.path("pids")
    os.makedirs(d)
    pf = os.path.join(d, "init.pid")
    b = make_bundle(args=["sleep", "100"])
    cid = ctx.new_id()
    try:
        assert runh("create", "--bundle", b, "--pid-file", pf, cid).returncode == 0
        assert os.listdir(d) == ["init.pid"]
        rec = json.loads(read(os.path.join(ctx.root, cid, "state.json")))
        assert int(read(pf)) == rec["pid"] and "made" not in rec
    finally:
        runh("delete", "--force", cid)


def test_pid_file_error_leaves_nothing(runh, ctx, make_bundle):
    pf = ctx.path("no-such-dir/init.pid")
    b = make_bundle(args=["sleep", "100"])
    cid = ctx.new_id()
    r = runh("create", "--bundle", b, "--pid-file", pf, cid)
    assert r.returncode != 0 and "write pid file" in r.stderr and "no-such-dir" in r.stderr, r.stderr
    assert os.listdir(ctx.root) == []

"""runc parity of the lifecycle commands, hooks, resources and `features` (issue 11's
remaining items), each tested on its own and, where runc 1.1.5 already behaves right,
differentially against it (the same call under both, the same outcome).

Where runh deliberately differs from runc, the test says so and why."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import RUNH, Runner, find_leftovers, read, sh

HAVE_RUNC = shutil.which("runc") is not None
needs_runc = pytest.mark.skipif(not HAVE_RUNC, reason="runc not installed")
PATHS = {"native": {}, "python": {"RUNH_PYTHON_ONLY": "1"}}


def runc_runner(ctx):
    return Runner(shutil.which("runc"), ctx.path("runc-root"))


def _env(extra):
    return dict(os.environ, **extra)


def _runtimes(ctx, runh):
    """(name, runner) for runh and, if installed, runc, each with its own root."""
    out = [("runh", runh)]
    if HAVE_RUNC:
        out.append(("runc", runc_runner(ctx)))
    return out


def _mounted(controller):
    """Is a v1 hierarchy with `controller` mounted (/proc/self/mountinfo)?"""
    for line in read("/proc/self/mountinfo").splitlines():
        pre, _, post = line.partition(" - ")
        f = post.split()
        if f and f[0] == "cgroup" and controller in f[2].split(","):
            return True
    return False


# ---------------------------------------------------------------- create/state

@pytest.mark.parametrize("path", PATHS)
def test_state_after_create_is_never_creating(runh, ctx, make_bundle, path):
    """Once create has returned, state says created, never creating (30 in a row)."""
    b = make_bundle(args=["sleep", "60"])
    env = _env(PATHS[path])
    for i in range(30):
        cid = ctx.new_id("s")
        r = runh("create", "--bundle", b, cid, env=env)
        assert r.returncode == 0, r.stderr
        try:
            st = runh("state", cid, env=env)
            assert st.returncode == 0, st.stderr
            assert json.loads(st.stdout)["status"] == "created", (i, st.stdout)
        finally:
            assert runh("delete", "--force", cid).returncode == 0


# ---------------------------------------------------------------- --root length

@pytest.mark.parametrize("runtime", ["native", "python", "runc"])
def test_any_root_length_works(runh, ctx, make_bundle, runtime):
    """A 200-character --root and a 64-character id: notify.sock's path is far longer
    than sun_path's 108 bytes, and every command still works (runc has no socket there)."""
    if runtime == "runc" and not HAVE_RUNC:
        pytest.skip("runc not installed")
    root = ctx.path("")
    root = root + "r" * (200 - len(root))
    cid = ctx.token + "-" + "i" * (63 - len(ctx.token))
    assert len(root) == 200 and len(cid) == 64
    run = runc_runner(ctx) if runtime == "runc" else runh
    env = _env(PATHS.get(runtime, {}))
    b = make_bundle(args=["sleep", "60"])

    def call(*a):
        return run(*a, root=root, env=env)

    r = call("create", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    try:
        assert json.loads(call("state", cid).stdout)["status"] == "created"
        assert call("start", cid).returncode == 0
        assert json.loads(call("state", cid).stdout)["status"] == "running"
        r = call("exec", cid, "echo", "in")
        assert r.returncode == 0 and r.stdout == "in\n", r.stderr
        assert call("kill", cid, "KILL").returncode == 0
        run.root = root
        run.wait_status(cid, "stopped")
        r = call("delete", cid)
        assert r.returncode == 0, r.stderr
    finally:
        call("delete", "--force", cid)
    assert not os.path.exists(os.path.join(root, cid))


# ---------------------------------------------------------------- --log, --log-format

BAD_LOG = "/nonexistent/runh-parity/log"


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("argv", [["list"], ["state", "x"], ["start", "x"], ["kill", "x", "KILL"],
                                  ["delete", "x"], ["exec", "x", "true"], ["create", "--bundle", "B", "ID"]])
def test_log_that_cannot_be_opened_fails_at_once(runh, ctx, make_bundle, argv, path, fmt):
    b = make_bundle(args=["true"])
    cid = ctx.new_id()
    argv = [b if a == "B" else cid if a == "ID" else a for a in argv]
    r = runh("--log", BAD_LOG, "--log-format", fmt, *argv, env=_env(PATHS[path]))
    assert r.returncode == 1
    assert r.stderr == f"runh: open {BAD_LOG}: no such file or directory\n"
    assert r.stdout == ""
    assert not os.listdir(ctx.root)  # nothing created (the leftovers check: no cgroup)


@needs_runc
def test_log_that_cannot_be_opened_differential(ctx):
    """runc fails the same calls with the same reason (in its own logrus stderr form)."""
    r = runc_runner(ctx)("--log", BAD_LOG, "list")
    assert r.returncode == 1 and f"open {BAD_LOG}: no such file or directory" in r.stderr


def test_log_is_created_as_runc_does(runh, ctx):
    log = ctx.path("new.log")
    assert runh("--log", log, "list").returncode == 0
    assert os.path.isfile(log) and os.stat(log).st_mode & 0o777 == 0o644


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("argv", [["list"], ["state", "x"], ["create", "--bundle", "B", "ID"]])
def test_unknown_log_format_fails_at_once(runh, ctx, make_bundle, argv, path):
    b = make_bundle(args=["true"])
    argv = [b if a == "B" else ctx.new_id() if a == "ID" else a for a in argv]
    log = ctx.path("log")
    r = runh("--log", log, "--log-format", "yaml", *argv, env=_env(PATHS[path]))
    assert r.returncode == 1
    assert r.stderr == "runh: invalid log-format: yaml\n"
    assert not os.listdir(ctx.root) and not os.path.exists(log)
    if HAVE_RUNC:
        rc = runc_runner(ctx)("--log-format", "yaml", "list")
        assert rc.returncode == 1 and "invalid log-format: yaml" in rc.stderr


# ---------------------------------------------------------------- hooks

def _hooks_edit(ctx, hooks):
    def edit(c):
        c["process"]["args"] = ["true"]
        c["hooks"] = hooks
    return edit


def _marker(path, line, fail=False):
    return {"path": "/bin/sh", "args": ["sh", "-c", f"echo {line} >> {path}" + ("; exit 3" if fail else "")],
            "env": ["PATH=/bin:/usr/bin"]}


def test_poststart_and_poststop_run_on_after_a_failure(runh, ctx, make_bundle):
    """runtime.md: a failing poststart/poststop hook is a warning, and the hooks after it
    still run. (runc 1.1 stops at the first, and kills the container on a poststart one:
    runh follows the spec here.)"""
    out = ctx.path("order")
    hooks = {k: [_marker(out, f"{k}1", fail=True), _marker(out, f"{k}2", fail=True),
                 _marker(out, f"{k}3")] for k in ("poststart", "poststop")}
    b = make_bundle(edit=_hooks_edit(ctx, hooks))
    log = ctx.path("log.json")
    cid = ctx.new_id()
    r = runh("--log", log, "--log-format", "json", "run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    assert read(out).split() == ["poststart1", "poststart2", "poststart3",
                                 "poststop1", "poststop2", "poststop3"]
    warnings = [json.loads(x) for x in read(log).splitlines()]
    warnings = [w["msg"] for w in warnings if w["level"] == "warning"]
    assert len(warnings) == 4, warnings
    assert [w.split()[:3] for w in warnings] == [["error", "running", k] for k in
                                                 ("poststart", "poststart", "poststop", "poststop")]
    assert "#0" in warnings[0] and "#1" in warnings[1]


def test_hook_without_env_inherits_runh_environment(runh, ctx, make_bundle):
    """A hook with no `env` gets runh's environment (runc and crun: Go's and C's exec
    with a nil environment); one with `env` gets exactly that."""
    results = {}
    for name, runner in _runtimes(ctx, runh):
        d = ctx.path(f"env-{name}")
        os.makedirs(d)
        kinds = ("prestart", "createRuntime", "poststart", "poststop")
        hooks = {k: [{"path": "/bin/sh", "args": ["sh", "-c", f"env > {d}/{k}"]}] for k in kinds}
        hooks["poststop"].append({"path": "/bin/sh", "args": ["sh", "-c", f"env > {d}/given"],
                                  "env": ["ONLY=1"]})
        b = make_bundle(edit=_hooks_edit(ctx, hooks), name=f"b-{name}")
        cid = ctx.new_id(name)
        r = runner("run", "--bundle", b, cid, env=_env({"PARITY_HOOK_VAR": "v 1"}))
        runner("delete", "--force", cid)
        assert r.returncode == 0, (name, r.stderr)
        results[name] = {k: "PARITY_HOOK_VAR=v 1" in read(f"{d}/{k}").splitlines() for k in kinds}
        given = dict(x.split("=", 1) for x in read(f"{d}/given").splitlines())
        given.pop("PWD", None)  # sh sets it
        assert given.get("ONLY") == "1" and "PARITY_HOOK_VAR" not in given, (name, given)
    assert all(results["runh"].values()), results
    if "runc" in results:
        assert results["runc"] == results["runh"]


# ---------------------------------------------------------------- resources

def _v1(controller, cid):
    own = {}
    for line in read("/proc/self/cgroup").splitlines():
        _, cs, p = line.split(":", 2)
        for c in cs.split(","):
            own[c] = p
    return f"/sys/fs/cgroup/{controller}{own.get(controller, '/').rstrip('/')}/{cid}"


v1_host = pytest.mark.skipif(os.path.exists("/sys/fs/cgroup/cgroup.controllers"),
                             reason="a cgroup v1 (or hybrid) host (the v2 side runs in the guest)")


@v1_host
def test_pids_limit_zero_writes_nothing(runh, ctx, make_bundle):
    """pids.limit 0 writes nothing (runc 1.1's reading: `PidsLimit != 0`), at create and
    on update; a negative limit is "max". The same sequence under runc gives the same
    pids.max at every step."""
    seen = {}
    for name, runner in _runtimes(ctx, runh):
        b = make_bundle(args=["sleep", "60"], name=f"b-{name}", edit=lambda c: c["linux"].update(
            resources={"pids": {"limit": 0}}))
        cid = ctx.new_id(name)
        assert runner("run", "-d", "--bundle", b, cid).returncode == 0
        try:
            f = _v1("pids", cid) + "/pids.max"
            steps = [read(f).strip()]
            for lim in (100, 0, -1):
                r = runner("update", "--resources", "-", cid, input=json.dumps({"pids": {"limit": lim}}))
                assert r.returncode == 0, (name, r.stderr)
                steps.append(read(f).strip())
            seen[name] = steps
        finally:
            runner("delete", "--force", cid)
    assert seen["runh"] == ["max", "100", "100", "max"]
    if "runc" in seen:
        assert seen["runc"] == seen["runh"]


UNMOUNTED = [
    ("hugetlb", {"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 20}]}),
    ("net_cls", {"network": {"classID": 1}}),
    ("net_prio", {"network": {"priorities": [{"name": "lo", "priority": 1}]}}),
]


@v1_host
@pytest.mark.parametrize("controller,resources", UNMOUNTED, ids=[c for c, _ in UNMOUNTED])
def test_limit_for_an_unmounted_controller_is_an_error(runh, ctx, make_bundle, controller, resources):
    """A limit for a v1 controller this host has not mounted fails create, naming the
    controller, and leaves nothing behind; runc 1.1.5 fails it too ("cannot set <c>
    limit")."""
    if _mounted(controller):
        pytest.skip(f"{controller} is mounted here")
    for name, runner in _runtimes(ctx, runh):
        b = make_bundle(args=["true"], name=f"b-{name}",
                        edit=lambda c: c["linux"].update(resources=resources))
        cid = ctx.new_id(name)
        r = runner("create", "--bundle", b, cid)
        runner("delete", "--force", cid)
        assert r.returncode == 1, (name, r.stderr)
        assert f"cannot set {controller} limit" in r.stderr, (name, r.stderr)
        if name == "runh":
            assert r.stderr.count("\n") == 1
            assert not os.listdir(ctx.root)
    assert not find_leftovers(ctx.token, ctx.root)


@v1_host
def test_limit_for_an_unmounted_controller_is_an_error_on_update(runh, ctx, make_bundle):
    if _mounted("net_cls"):
        pytest.skip("net_cls is mounted here")
    b = make_bundle(args=["sleep", "60"])
    cid = ctx.new_id()
    assert runh("run", "-d", "--bundle", b, cid).returncode == 0
    try:
        r = runh("update", "--resources", "-", cid, input=json.dumps({"network": {"classID": 1}}))
        assert r.returncode == 1 and "cannot set net_cls limit" in r.stderr, r.stderr
    finally:
        runh("delete", "--force", cid)


# ---------------------------------------------------------------- hybrid hosts

hybrid = pytest.mark.skipif(not os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers"),
                            reason="a hybrid host (cgroup2 at /sys/fs/cgroup/unified)")


def _cgroup_lines(runner, cid):
    st = json.loads(runner("state", cid).stdout)
    return read(f"/proc/{st['pid']}/cgroup").replace(cid, "ID").splitlines()


@hybrid
def test_hybrid_host_joins_name_systemd_and_unified(runh, ctx, make_bundle):
    """On a hybrid host the container also joins name=systemd (if mounted) and the cgroup2
    tree at the same path as its v1 controllers: /proc/<pid>/cgroup is the same line for
    line as under runc. Those directories are recorded in state.json before they are made
    (recorded before made) and removed by delete (the leftovers check)."""
    lines = {}
    for name, runner in _runtimes(ctx, runh):
        b = make_bundle(args=["sleep", "60"], name=f"b-{name}")
        cid = ctx.new_id(name)
        assert runner("run", "-d", "--bundle", b, cid).returncode == 0
        try:
            lines[name] = _cgroup_lines(runner, cid)
            if name == "runh":
                with open(os.path.join(runh.root, cid, "state.json")) as f:
                    paths = json.load(f)["cgroup"]["paths"]
                assert paths[""] == f"/sys/fs/cgroup/unified/{cid}"
                if os.path.exists("/sys/fs/cgroup/systemd/cgroup.procs"):
                    assert paths["name=systemd"] == f"/sys/fs/cgroup/systemd/{cid}"
                # exec'd processes join them too (seen from the host: the container has
                # a cgroup namespace of its own)
                pf = ctx.path("exec.pid")
                r = runh("exec", "-d", "--pid-file", pf, cid, "sleep", "30")
                assert r.returncode == 0, r.stderr
                got = read(f"/proc/{int(read(pf))}/cgroup").replace(cid, "ID").splitlines()
                assert got == lines["runh"]
        finally:
            runner("delete", "--force", cid)
        assert not os.path.exists(f"/sys/fs/cgroup/unified/{cid}")
        assert not os.path.exists(f"/sys/fs/cgroup/systemd/{cid}")
    assert "0::/ID" in lines["runh"]
    if os.path.exists("/sys/fs/cgroup/systemd/cgroup.procs"):
        assert any(x.endswith(":name=systemd:/ID") for x in lines["runh"])
    if "runc" in lines:
        assert lines["runh"] == lines["runc"]


@hybrid
def test_hybrid_create_killed_leaves_what_delete_removes(runh, ctx, make_bundle):
    """state.json names the unified and name=systemd directories while "creating": a
    create cut short after making them leaves a record that delete --force finishes."""
    b = make_bundle(args=["sleep", "60"])
    cid = ctx.new_id()
    for d in ("unified", "systemd"):
        if os.path.exists(f"/sys/fs/cgroup/{d}/cgroup.procs"):
            os.mkdir(f"/sys/fs/cgroup/{d}/{cid}")
    sdir = os.path.join(runh.root, cid)
    os.makedirs(sdir, mode=0o700)
    from runh.cgroups import v1  # the manager's record, as create writes it first

    m = v1.V1Manager.for_path(cid)
    m.owned = None
    with open(os.path.join(sdir, "state.json"), "w") as f:
        json.dump({"ociVersion": "1.0.2", "id": cid, "pid": 0, "starttime": None, "bundle": b,
                   "rootfs": b + "/rootfs", "created": "2024-01-01T00:00:00Z", "owner": "",
                   "annotations": {}, "cgroup": m.to_state(), "creating": True}, f)
    os.chmod(os.path.join(sdir, "state.json"), 0o600)
    r = runh("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(f"/sys/fs/cgroup/unified/{cid}")
    assert not os.path.exists(f"/sys/fs/cgroup/systemd/{cid}")


# ---------------------------------------------------------------- features

def _features(runh):
    r = runh("features")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _runs(runh, ctx, make_bundle, edit):
    b = make_bundle(args=["true"], edit=edit)
    cid = ctx.new_id("f")
    try:
        return runh("run", "--bundle", b, cid)
    finally:
        runh("delete", "--force", cid)


def _tmpfs_with(opts):
    def edit(c):
        c["mounts"].append({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": opts})
    return edit


def _bind_with(ctx, opts):
    src = ctx.path("bind-src")
    os.makedirs(src, exist_ok=True)

    def edit(c):
        c["mounts"].append({"destination": "/mnt", "type": "bind", "source": src, "options": opts})
    return edit


# Options that only mean something on a bind mount (with rbind: a plain mount of a tmpfs
# with MS_REMOUNT has nothing to remount); idmap/ridmap need a user namespace's maps and
# are exercised by tests/test_idmap_mounts.py.
_ON_A_BIND = {"bind", "rbind", "remount"}
_ELSEWHERE = {"idmap", "ridmap"}


def test_features_every_mount_option_listed_is_accepted(runh, ctx, make_bundle):
    failed = {}
    for opt in _features(runh)["mountOptions"]:
        if opt in _ELSEWHERE:
            continue
        edit = _bind_with(ctx, ["rbind", opt]) if opt in _ON_A_BIND else _tmpfs_with([opt])
        r = _runs(runh, ctx, make_bundle, edit)
        if r.returncode != 0:
            failed[opt] = r.stderr.strip()
    assert not failed, failed


def test_features_lists_every_mount_option_that_works(runh, ctx, make_bundle):
    """runc's names (its `features`, or a fixed list without runc) that runh does not list
    are refused, never silently taken: on a tmpfs an unknown name would go to the
    filesystem as data, and tmpfs refuses it."""
    listed = set(_features(runh)["mountOptions"])
    candidates = {"tmpcopyup", "acl", "noacl", "lazytime", "nolazytime", "nosymfollow", "symfollow",
                  "dirsync", "iversion", "noiversion", "silent", "loud"}
    if HAVE_RUNC:
        candidates |= set(json.loads(subprocess.run(["runc", "features"], capture_output=True,
                                                    text=True).stdout)["mountOptions"])
    works = [o for o in sorted(candidates - listed)
             if _runs(runh, ctx, make_bundle, _tmpfs_with([o])).returncode == 0]
    assert not works, f"work but are not in features: {works}"


def test_features_every_namespace_listed_is_accepted(runh, ctx, make_bundle):
    failed = {}
    for ns in _features(runh)["linux"]["namespaces"]:
        def edit(c, ns=ns):
            lin = c["linux"]
            if not any(n["type"] == ns for n in lin["namespaces"]):
                lin["namespaces"].append({"type": ns})
            if ns == "user":
                lin["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
                lin["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        r = _runs(runh, ctx, make_bundle, edit)
        if r.returncode != 0:
            failed[ns] = r.stderr.strip()
    assert not failed, failed
    assert set(_features(runh)["linux"]["namespaces"]) == {
        "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"}


def test_features_every_hook_listed_runs(runh, ctx, make_bundle):
    hooks = _features(runh)["hooks"]
    out = ctx.path("hooks")
    os.makedirs(out)

    def edit(c):
        c["mounts"].append({"destination": "/out", "type": "bind", "source": out, "options": ["rbind"]})
        c["hooks"] = {k: [{"path": "/bin/sh", "args": ["sh", "-c", f"touch {'/out' if k == 'startContainer' else out}/{k}"]}]
                      for k in hooks}
    r = _runs(runh, ctx, make_bundle, edit)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == sorted(hooks)


def _seccomp(**profile):
    def edit(c):
        c["linux"]["seccomp"] = dict({"defaultAction": "SCMP_ACT_ALLOW"}, **profile)
    return edit


def test_features_every_seccomp_item_listed_is_accepted(runh, ctx, make_bundle):
    """Each action (on a syscall `true` never makes), arch, operator and supported flag
    that features lists: a container with it runs."""
    sc = _features(runh)["linux"]["seccomp"]
    assert sc["enabled"]
    import socket

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(ctx.path("agent.sock"))
    listener.listen(8)
    failed = {}
    try:
        cases = []
        for a in sc["actions"]:
            extra = {"listenerPath": ctx.path("agent.sock")} if a == "SCMP_ACT_NOTIFY" else {}
            cases.append((a, _seccomp(syscalls=[{"names": ["acct"], "action": a}], **extra)))
        for arch in sc["archs"]:
            cases.append((arch, _seccomp(architectures=[arch], syscalls=[
                {"names": ["acct"], "action": "SCMP_ACT_ERRNO"}])))
        for op in sc["operators"]:
            arg = {"index": 0, "value": 1, "op": op}
            if op == "SCMP_CMP_MASKED_EQ":
                arg["valueTwo"] = 1
            cases.append((op, _seccomp(syscalls=[{"names": ["acct"], "action": "SCMP_ACT_ERRNO",
                                                  "args": [arg]}])))
        for flag in sc.get("supportedFlags") or ():
            cases.append((flag, _seccomp(flags=[flag], syscalls=[
                {"names": ["acct"], "action": "SCMP_ACT_ERRNO"}])))
        for what, edit in cases:
            r = _runs(runh, ctx, make_bundle, edit)
            if r.returncode != 0:
                failed[what] = r.stderr.strip()
    finally:
        listener.close()
    assert not failed, failed


def test_features_lists_every_seccomp_arch_that_works(runh, ctx, make_bundle):
    """An architecture runh's generator does not know is refused (runc's libseccomp knows
    more: MIPS, PPC, S390), never silently left out of the filter."""
    listed = set(_features(runh)["linux"]["seccomp"]["archs"])
    candidates = {"SCMP_ARCH_MIPS", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390X", "SCMP_ARCH_RISCV64"}
    works = [a for a in sorted(candidates - listed)
             if _runs(runh, ctx, make_bundle, _seccomp(architectures=["SCMP_ARCH_X86_64", a])).returncode == 0]
    assert not works, f"work but are not in features: {works}"

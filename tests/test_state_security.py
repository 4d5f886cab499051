"""What a config author, a local user and a damaged state dir can make runh do: the
regressions of issue 10 (items 3, 4, 6, 9, 10) and issue 17 (items 4, 9), one test per
fault, named after what it guards. Where the native launcher runs the command too
(start, kill, delete, state, exec), each test runs in both modes (RUNH_PYTHON_ONLY=1 is
the Python path). `RUNH=<another build> pytest tests/test_state_security.py` shows which
of them that build has (see docs/SECURITY.md).

Crash safety (SIGKILL during create and start) is tests/test_crash_safety.py's."""

import fcntl
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import REPO, RUNH, Runner, read
from test_launcher import MODES, _env

sys.path.insert(0, os.path.join(REPO, "python"))

from runh import cgroups  # noqa: E402
from runh.cgroups import _fs  # noqa: E402,F401  (cgroups._fs)
from runh.errors import ConfigError  # noqa: E402

CG = "/sys/fs/cgroup"
NOBODY = 65534


def one_line_error(r, *words):
    """A failed call that said one line (no traceback) naming each of `words`."""
    assert r.returncode != 0, r.stdout
    assert r.stderr.startswith("runh: ") and r.stderr.count("\n") == 1, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def _start(runh, ctx, bundle, mode="python"):
    cid = ctx.new_id()
    r = runh("create", "--bundle", bundle, cid)
    assert r.returncode == 0, r.stderr
    r = runh("start", cid, env=_env(mode))
    assert r.returncode == 0, r.stderr
    return cid


def _cgroup_dirs(runh, cid):
    with open(os.path.join(runh.root, cid, "state.json")) as f:
        cg = json.load(f).get("cgroup") or {}
    return [cg["path"]] if cg.get("version") == 2 else sorted(set((cg.get("paths") or {}).values()))


# ---------------------------------------------------------------- 10.3 cgroupsPath

ESCAPES = {
    # Relative to the caller's cgroup: enough ".." to climb out of /sys/fs/cgroup/<ctrl>.
    "relative": "../../../../../../../../../../..{host}/sub",
    "absolute": "/../../../../../..{host}/sub",
}


@pytest.mark.parametrize("kind", list(ESCAPES))
def test_cgroups_path_cannot_leave_the_cgroup_filesystem(runh, ctx, make_bundle, kind):
    """A cgroupsPath that climbs out of its hierarchy is refused in one line, and nothing
    is made or written outside /sys/fs/cgroup (today's main made the host dir and wrote
    limits into host files) nor inside it."""
    host = ctx.path("host")
    os.makedirs(host)
    with open(os.path.join(host, "pids.max"), "w") as f:
        f.write("precious\n")
    path = ESCAPES[kind].format(host=host)

    def edit(c):
        c["linux"]["cgroupsPath"] = path
        c["linux"].setdefault("resources", {})["pids"] = {"limit": 20}

    b = make_bundle(args=["true"], edit=edit)
    cid = ctx.new_id()
    r = runh("create", "--bundle", b, cid)
    try:
        one_line_error(r, "linux.cgroupsPath", "leaves the cgroup hierarchy")
        assert sorted(os.listdir(host)) == ["pids.max"] and read(os.path.join(host, "pids.max")) == "precious\n"
        assert os.listdir(runh.root) == []
    finally:
        if r.returncode == 0:
            runh("delete", "--force", cid)
        _remove_clamped(host + "/sub")


def _remove_clamped(path):
    """What a runtime that clamps ".." at the hierarchy's root (today's main, for an
    absolute path) makes: <hierarchy>/tmp/<token>/... Removed up to its first part."""
    parts = path.strip("/").split("/")
    for top in {os.path.realpath(os.path.join(CG, e)) for e in os.listdir(CG)}:
        for n in range(len(parts), 0, -1):
            try:
                os.rmdir(os.path.join(top, *parts[:n]))
            except OSError:
                pass


@pytest.mark.parametrize("mode", MODES)
def test_delete_never_acts_on_a_state_files_paths_outside_the_cgroup_fs(runh, ctx, make_bundle, mode):
    """Defence in depth: a state.json whose cgroup paths name host directories (it is
    root's, but the checks do not trust where a path came from) makes delete refuse in
    one line; the host directories stay (today's main removed them, both paths)."""
    cid = _start(runh, ctx, make_bundle(args=["true"]))
    runh.wait_status(cid, "stopped")
    path = os.path.join(runh.root, cid, "state.json")
    with open(path) as f:
        good = json.load(f)
    victims = [ctx.path(f"victim{i}") for i in range(2)]
    for v in victims:
        os.makedirs(v)
    bad = dict(good, cgroup={"version": 1, "paths": {"pids": victims[0], "memory": CG + "/../../" + victims[1]}})
    try:
        with open(path, "w") as f:
            json.dump(bad, f)
        r = runh("delete", cid, env=_env(mode))
        one_line_error(r, "outside the cgroup filesystem")
        assert all(map(os.path.isdir, victims))
    finally:
        with open(path, "w") as f:
            json.dump(good, f)
        runh("delete", "--force", cid)


def test_cgroup_paths_and_file_names_checked_at_every_write():
    """The chokepoint under every manager: a directory outside the cgroup filesystem, or
    a file name that is a path (hugetlb.<pageSize>, unified's keys come from configs), is
    refused before any syscall."""
    for bad in ("/tmp/x", "/sys/fs/cgroupx/a", "/sys/fs/cgroup/../../tmp", "/sys/fs/cgroup/a/./b",
                "/sys/fs/cgroup//a", "sys/fs/cgroup/a"):
        with pytest.raises(ConfigError, match="outside the cgroup filesystem"):
            cgroups.check_inside(bad)
        with pytest.raises(ConfigError):
            cgroups._fs.write(bad, [("pids.max", "1")])
        with pytest.raises(ConfigError):
            cgroups._fs.create([bad])
        with pytest.raises(ConfigError):
            cgroups._fs.remove([bad])
    for name in ("../../../tmp/x", "a/b", "..", ""):
        with pytest.raises(ConfigError, match="not a file of the cgroup directory"):
            cgroups._fs.write(CG + "/pids", [(name, "1")])
    from runh.cgroups import v2

    for key in ("cgroup.procs", "cgroup.threads", "cgroup.kill", "cgroup.subtree_control", "../x", "a/b"):
        with pytest.raises(ConfigError, match="linux.resources.unified: invalid key"):
            v2.resource_writes({"unified": {key: "1"}})
    assert v2.resource_writes({"unified": {"cgroup.max.depth": "2", "memory.high": "1"}}) == \
        [("cgroup.max.depth", "2"), ("memory.high", "1")]
    assert cgroups.resolve(CG + "/pids", "a/../b", "/own") == CG + "/pids/own/b"
    assert cgroups.resolve(CG + "/pids", "/a/b/../c") == CG + "/pids/a/c"
    with pytest.raises(ConfigError, match="leaves the cgroup hierarchy"):
        cgroups.resolve(CG + "/pids", "../../x", "/own")


# ---------------------------------------------------------------- 10.4 config.json read

def _limit_memory():
    # 1 GiB of address space: a reader without a cap fails in a second or two (a
    # MemoryError) instead of taking the machine's memory.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize("what", ["dev-zero", "fifo", "huge-sparse", "over-cap", "directory"])
def test_config_read_is_bounded(runh, ctx, make_bundle, what):
    """config.json is read only if it is a regular file of at most 4 MiB: /dev/zero, a
    FIFO or a huge file get one line at once (today's main read /dev/zero until a
    MemoryError traceback, and blocked on a FIFO)."""
    b = make_bundle(args=["true"])
    cfg = os.path.join(b, "config.json")
    os.unlink(cfg)
    if what == "dev-zero":
        os.symlink("/dev/zero", cfg)
    elif what == "fifo":
        os.mkfifo(cfg)
    elif what == "huge-sparse":
        with open(cfg, "wb") as f:
            f.truncate(3 << 30)
    elif what == "over-cap":
        with open(cfg, "wb") as f:
            f.write(b" " * ((4 << 20) + 1) + b"{}")
    else:
        os.mkdir(cfg)
    cid = ctx.new_id()
    t0 = time.time()
    r = runh("create", "--bundle", b, cid, timeout=30, preexec_fn=_limit_memory)
    one_line_error(r, "config.json")
    assert time.time() - t0 < 10
    assert os.listdir(runh.root) == []


@pytest.mark.parametrize("mode", MODES)
def test_exec_process_file_read_is_bounded(runh, ctx, make_bundle, mode):
    cid = _start(runh, ctx, make_bundle(args=["sleep", "100"]))
    try:
        for target in ("/dev/zero",):
            link = ctx.path(f"process-{mode}.json")
            os.symlink(target, link)
            r = runh("exec", "--process", link, cid, timeout=30, env=_env(mode), preexec_fn=_limit_memory)
            one_line_error(r, "process file", "not a regular file")
    finally:
        runh("delete", "--force", cid)


# ---------------------------------------------------------------- 10.6 state is root's

def _modes_of(sdir):
    return {n: stat.S_IMODE(os.lstat(os.path.join(sdir, n)).st_mode) for n in os.listdir(sdir)}


def _as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_state_is_readable_by_root_alone(runh, ctx, make_bundle):
    """The root and state dir 0700, state.json and config.json 0600 (runc and
    crun's modes; the dir itself is the lock, no file of its own): another user reads neither the annotations (which may carry
    secrets) nor the pid, and state/ps/events --stats fail for them (today's main: 0711
    and 0644, and all three answered)."""
    b = make_bundle(args=["sleep", "100"], edit=lambda c: c.update(annotations={"token": "s3cr3t"}))
    runh = Runner(runh.path, ctx.path("fresh-root"))  # one runh makes
    cid = _start(runh, ctx, b)
    try:
        sdir = os.path.join(runh.root, cid)
        assert stat.S_IMODE(os.stat(runh.root).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(sdir).st_mode) == 0o700
        modes = _modes_of(sdir)
        assert {n: m for n, m in modes.items() if n != "notify.sock"} == \
            {"state.json": 0o600, "config.json": 0o600}, modes
        for argv in (["state", cid], ["ps", cid], ["events", "--stats", cid], ["list"]):
            r = runh(*argv, preexec_fn=_as_nobody, timeout=30)
            assert "s3cr3t" not in r.stdout + r.stderr and cid not in r.stdout, (argv, r.stdout)
            if argv[0] != "list":
                assert r.returncode != 0 and r.stdout == "", (argv, r.stdout)
    finally:
        runh("delete", "--force", cid)


def _default_root(ctx, *args):
    """`runh args` without --root; output through files (a parked init holds them)."""
    with open(ctx.path("out"), "w+") as out, open(ctx.path("err"), "w+") as err:
        rc = subprocess.run([RUNH, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                            timeout=60).returncode
        err.seek(0)
        return rc, err.read()


def test_default_root_is_readable_by_root_alone(ctx, make_bundle):
    """The same for the default root, /run/runh (podman never passes --root); a root an
    older runh made 0711 is tightened."""
    b = make_bundle(args=["true"])
    cid = ctx.new_id()
    rc, err = _default_root(ctx, "create", "--bundle", b, cid)
    try:
        assert rc == 0, err
        assert stat.S_IMODE(os.stat("/run/runh").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(f"/run/runh/{cid}").st_mode) == 0o700
        assert _modes_of(f"/run/runh/{cid}")["state.json"] == 0o600
    finally:
        _default_root(ctx, "delete", "--force", cid)


# ---------------------------------------------------------------- 10.9 damaged state

DAMAGE = {"garbage": b"x", "truncated": b'{"ociVersion": "1.3.0", "id": ', "empty": b"", "missing": None,
          "not-an-object": b"[]"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_state_is_listed_and_never_deleted_silently(runh, ctx, make_bundle, damage, mode):
    """With state.json corrupt, truncated or gone, `list` still shows the container and
    delete, with or without --force, exits non-zero in one line and leaves the state dir,
    the init and the cgroups as they were (today's main hid it from list and "deleted"
    it, exit 0, leaving its init and cgroups for good). Put back, delete removes all."""
    cid = _start(runh, ctx, make_bundle(args=["sleep", "100"]))
    sdir = os.path.join(runh.root, cid)
    path = os.path.join(sdir, "state.json")
    with open(path, "rb") as f:
        good = f.read()
    pid = json.loads(good)["pid"]
    dirs = _cgroup_dirs(runh, cid)
    try:
        os.unlink(path)
        if DAMAGE[damage] is not None:
            with open(path, "wb") as f:
                f.write(DAMAGE[damage])
        r = runh("list", "--format", "json")
        assert r.returncode == 0, r.stderr
        assert [(s["id"], s["status"], s["pid"]) for s in json.loads(r.stdout)] == [(cid, "unknown", 0)]
        for argv in (["delete", cid], ["delete", "--force", cid]):
            r = runh(*argv, env=_env(mode))
            one_line_error(r, cid)
            assert os.path.isdir(sdir) and os.path.exists(f"/proc/{pid}") and all(map(os.path.isdir, dirs))
        r = runh("state", cid, env=_env(mode))
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr
    finally:
        with open(path, "wb") as f:
            f.write(good)
    r = runh("delete", "--force", cid, env=_env(mode))
    assert (r.returncode, r.stderr) == (0, "")
    assert not os.path.exists(sdir) and not any(map(os.path.isdir, dirs))


# ---------------------------------------------------------------- 10.10 the smaller ones

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cmd", ["start", "delete", "kill", "state"])
def test_dot_id_touches_nothing_in_the_root(runh, ctx, cmd, mode):
    """`start .` (and delete, kill, state) is an invalid id, in one line, and leaves no
    `lock` in the root (today's native path made one there)."""
    os.makedirs(runh.root, exist_ok=True)
    r = runh(cmd, ".", env=_env(mode))
    one_line_error(r, "invalid container id")
    assert os.listdir(runh.root) == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cmd", ["state", "delete", "start", "kill"])
def test_id_with_control_characters_is_a_one_line_error(runh, ctx, cmd, mode):
    r = runh(cmd, "bad\nid\x1b[2J", env=_env(mode))
    one_line_error(r, "invalid container id format", "bad\\nid\\x1b")


@pytest.mark.parametrize("field", ["relative-cwd", "env-without-equals"])
def test_create_refuses_what_runc_refuses_in_process(runh, ctx, make_bundle, field):
    def edit(c):
        if field == "relative-cwd":
            c["process"]["cwd"] = "tmp"
        else:
            c["process"]["env"].append("JUSTANAME")
    b = make_bundle(args=["true"], edit=edit)
    r = runh("create", "--bundle", b, ctx.new_id())
    one_line_error(r, "process.cwd" if field == "relative-cwd" else "process.env[")
    assert os.listdir(runh.root) == []


@pytest.mark.parametrize("mode", MODES)
def test_exec_refuses_env_without_equals(runh, ctx, make_bundle, mode):
    cid = _start(runh, ctx, make_bundle(args=["sleep", "100"]))
    try:
        r = runh("exec", "--env", "JUSTANAME", cid, "true", env=_env(mode))
        one_line_error(r, "JUSTANAME", "KEY=VALUE")
        p = ctx.path(f"p-{mode}.json")
        with open(p, "w") as f:
            json.dump({"args": ["true"], "cwd": "/", "env": ["PATH=/bin", "NOEQ"]}, f)
        one_line_error(runh("exec", "--process", p, cid, env=_env(mode)), "NOEQ")
    finally:
        runh("delete", "--force", cid)


def _foreign_cgroup(cid, populated):
    """runh's default cgroup for `cid` made beforehand, as another runtime's container
    with the same id (and runc's default path) would have it: [dirs], and a process in
    it when `populated` (a sleep: the other runtime's workload)."""
    m = cgroups.manager_for({}, cid)
    dirs = m._dirs()
    m.create()
    proc = None
    if populated:
        proc = subprocess.Popen(["sleep", "300"], preexec_fn=lambda: m.add(os.getpid()))
    return m, dirs, proc


def _remove_foreign(m, dirs, proc):
    if proc is not None:
        proc.kill()
        proc.wait()
    for d in dirs:
        deadline = time.time() + 5
        while os.path.isdir(d):
            try:
                os.rmdir(d)
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)


@pytest.mark.parametrize("mode", MODES)
def test_foreign_cgroup_is_never_joined_signalled_or_removed(runh, ctx, make_bundle, mode):
    """A cgroup that already holds another's processes at runh's path for this id: create
    refuses it (runc 1.2 does too), so a `delete --force` of the id never kills the
    stranger nor removes its cgroup (today's main joined it, and its delete --force
    killed the other runtime's workload)."""
    cid = ctx.new_id()
    m, dirs, stranger = _foreign_cgroup(cid, populated=True)
    try:
        b = make_bundle(args=["sleep", "100"])
        r = runh("create", "--bundle", b, cid)
        if r.returncode == 0:
            runh("start", cid)
        runh("delete", "--force", cid, env=_env(mode))
        one_line_error(r, "is not empty", "linux.cgroupsPath")
        assert stranger.poll() is None, "the other runtime's process was killed"
        assert all(map(os.path.isdir, dirs))
        assert os.listdir(runh.root) == []
    finally:
        runh("delete", "--force", cid)
        _remove_foreign(m, dirs, stranger)


@pytest.mark.parametrize("mode", MODES)
def test_delete_keeps_a_cgroup_it_did_not_make(runh, ctx, make_bundle, mode):
    """An empty cgroup made by someone else is used, but not removed by delete."""
    cid = ctx.new_id()
    m, dirs, _ = _foreign_cgroup(cid, populated=False)
    try:
        b = make_bundle(args=["true"])
        r = runh("create", "--bundle", b, cid)
        assert r.returncode == 0, r.stderr
        runh("start", cid)
        runh.wait_status(cid, "stopped")
        r = runh("delete", cid, env=_env(mode))
        assert (r.returncode, r.stderr) == (0, "")
        assert all(map(os.path.isdir, dirs))
    finally:
        runh("delete", "--force", cid)
        _remove_foreign(m, dirs, None)


@pytest.mark.parametrize("mode", MODES)
def test_delete_removes_the_parent_cgroups_it_made(runh, ctx, make_bundle, mode):
    """cgroupsPath /<a>/<b>/<c>: create makes <a> and <b> too (recorded before made),
    and delete removes them with <c> when they are empty (today's main left them)."""
    path = f"/{ctx.token}-p/mid/leaf"
    b = make_bundle(args=["true"], edit=lambda c: c["linux"].update(cgroupsPath=path))
    cid = ctx.new_id()
    assert runh("create", "--bundle", b, cid).returncode == 0
    tops = [d.rsplit("/mid/leaf", 1)[0] for d in _cgroup_dirs(runh, cid)]
    assert tops and all(map(os.path.isdir, tops))
    runh("start", cid)
    runh.wait_status(cid, "stopped")
    r = runh("delete", cid, env=_env(mode))
    assert (r.returncode, r.stderr) == (0, "")
    assert [t for t in tops if os.path.exists(t)] == []


# ---------------------------------------------------------------- 17.4 exec's config

SECCOMP = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO"}]}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("change", ["seccomp-removed", "bundle-config-gone"])
def test_exec_uses_the_config_the_container_was_created_with(runh, ctx, make_bundle, mode, change):
    """exec'd processes get the seccomp filter and process defaults of the config at
    create, whatever happened to the bundle since (today's main read the bundle's
    current config.json: Seccomp 0 once the filter was edited out, and no exec at all
    once it was gone). runc keeps its own copy too (test_exec_seccomp_after_edit_as_runc)."""
    def edit(c):
        c["linux"]["seccomp"] = SECCOMP
        c["process"]["env"].append("FROM_CREATE=1")
    b = make_bundle(args=["sleep", "100"], edit=edit)
    cid = _start(runh, ctx, b)
    try:
        cfg = os.path.join(b, "config.json")
        if change == "seccomp-removed":
            with open(cfg) as f:
                c = json.load(f)
            del c["linux"]["seccomp"]
            c["process"]["env"] = ["PATH=/bin"]
            with open(cfg, "w") as f:
                json.dump(c, f)
        else:
            os.unlink(cfg)
        r = runh("exec", cid, "sh", "-c", "grep Seccomp: /proc/self/status; echo $FROM_CREATE", env=_env(mode))
        assert (r.returncode, r.stdout, r.stderr) == (0, "Seccomp:\t2\n1\n", "")
    finally:
        runh("delete", "--force", cid)


@pytest.mark.runc
@pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed")
def test_exec_seccomp_after_edit_as_runc(runh, ctx, rootfs_template):
    """The differential: runc's exec'd process keeps the filter of create too."""
    import bundle as bundlemod
    from conftest import Runner

    def edit(c):
        c["process"]["args"] = ["sleep", "1000"]
        c["linux"]["seccomp"] = SECCOMP
    got = {}
    for name, runner in (("runc", Runner(shutil.which("runc"), ctx.path("runc-root"))), ("runh", runh)):
        b = bundlemod.build_bundle(ctx.path(f"bundle-{name}"), spec=bundlemod.default_spec("runc"),
                                   template=rootfs_template, edit=edit)
        cid = ctx.new_id(name)
        try:
            assert runner("run", "-d", "--bundle", b, cid).returncode == 0
            bundlemod.edit_config(b, lambda c: c["linux"].pop("seccomp"))
            got[name] = runner("exec", cid, "grep", "Seccomp:", "/proc/self/status").stdout
        finally:
            runner("delete", "--force", cid)
    assert got == {"runc": "Seccomp:\t2\n", "runh": "Seccomp:\t2\n"}


# ---------------------------------------------------------------- 17.9 the pid file

def _spawn_as_pid(argv, want, err, env=None):
    """Run argv as pid `want` (ns_last_pid), so that a name derived from the pid can be
    planted beforehand; (finished Popen, whether it got that pid)."""
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(want - 1))
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    p.wait(timeout=60)
    return p, p.pid == want


def _pid_ahead(n):
    """A pid n past the last one handed out, wrapped the way the kernel wraps: past
    pid_max, allocation restarts above RESERVED_PIDS (300). Without the wrap, a long
    suite that brought the counter near pid_max (32768 on CI) wrote an out-of-range
    value to ns_last_pid and failed with EINVAL."""
    pid_max = int(read("/proc/sys/kernel/pid_max"))
    want = int(read("/proc/sys/kernel/ns_last_pid")) + n
    if want >= pid_max:
        want = 301 + (want - pid_max) % (pid_max - 301)
    return want


def _attack_pid_file(ctx, argv_for, env=None):
    """Plant a symlink at the temp name a pid file writer that uses `<file>.tmp<pid>`
    would open, aimed at a victim file, and run argv_for(pid_file) as that pid: the
    victim must come through unchanged. Returns the finished Popen (tries a few pids)."""
    victim = ctx.path("victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    for attempt in range(10):
        pid_file = ctx.path(f"shared/pid{attempt}")
        os.makedirs(os.path.dirname(pid_file), exist_ok=True)
        want = _pid_ahead(300 + 50 * attempt)
        planted = f"{pid_file}.tmp{want}"
        os.symlink(victim, planted)
        with open(ctx.path(f"err{attempt}"), "w+") as err:
            p, hit = _spawn_as_pid(argv_for(pid_file), want, err, env)
            err.seek(0)
            text = err.read()
        if os.path.lexists(planted):
            os.unlink(planted)
        if not hit:
            continue
        assert read(victim) == "precious\n", "the pid file writer followed a planted symlink"
        assert [n for n in os.listdir(os.path.dirname(pid_file)) if "tmp" in n] == []
        return p, pid_file, text
    pytest.skip("could not get the wanted pid (busy machine)")


def test_create_pid_file_temp_cannot_be_planted(runh, ctx, make_bundle):
    """The pid file's temp file: a random name, O_EXCL|O_NOFOLLOW (today's main opened
    `<file>.tmp<pid>` with O_TRUNC, following a planted symlink: root truncated the
    victim and wrote the pid into it)."""
    b = make_bundle(args=["true"])
    cids = []

    def argv(pid_file):
        cids.append(ctx.new_id())
        return runh.argv("create", "--bundle", b, "--pid-file", pid_file, cids[-1])
    try:
        p, pid_file, err = _attack_pid_file(ctx, argv)
        assert p.returncode == 0, err
        assert read(pid_file).isdigit()
    finally:
        for cid in cids:
            runh("delete", "--force", cid)


@pytest.mark.parametrize("mode", MODES)
def test_exec_pid_file_temp_cannot_be_planted(runh, ctx, make_bundle, mode):
    cid = _start(runh, ctx, make_bundle(args=["sleep", "100"]))
    try:
        p, pid_file, err = _attack_pid_file(
            ctx, lambda pf: runh.argv("exec", "--detach", "--pid-file", pf, cid, "true"), env=_env(mode))
        assert p.returncode == 0, err
        assert read(pid_file).isdigit()
    finally:
        runh("delete", "--force", cid)


@pytest.fixture
def full_dir(ctx):
    """A directory on a full 4 KiB tmpfs: creating a file works, writing to it fails."""
    d = ctx.path("full")
    os.makedirs(d)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", d], check=True)
    try:
        fd = os.open(os.path.join(d, "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"x" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield d
    finally:
        subprocess.run(["umount", d], check=True)


@pytest.mark.parametrize("mode", MODES)
def test_pid_file_temp_removed_when_its_write_fails(runh, ctx, make_bundle, full_dir, mode):
    """A pid file that cannot be written: one-line error, no temp file left (today's
    main left `<file>.tmp<pid>`), and neither the container (create) nor the exec'd
    process lives on."""
    b = make_bundle(args=["sleep", "100"])
    cid = ctx.new_id()
    r = runh("create", "--bundle", b, "--pid-file", os.path.join(full_dir, "pid"), cid)
    one_line_error(r, "pid")
    assert os.listdir(full_dir) == ["filler"] and os.listdir(runh.root) == []
    cid = _start(runh, ctx, b)
    try:
        r = runh("exec", "--detach", "--pid-file", os.path.join(full_dir, "pid"), cid, "sleep", "100",
                 env=_env(mode))
        one_line_error(r, "pid file")
        assert os.listdir(full_dir) == ["filler"]
        ps = runh("ps", "--format", "json", cid)
        assert len(json.loads(ps.stdout)) == 1, ps.stdout  # the init alone
    finally:
        runh("delete", "--force", cid)

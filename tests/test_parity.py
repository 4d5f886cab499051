"""runc and crun parity (issue 11): each behaviour where runh differed from runc or from the
runtime-spec, tested on its own, and against Debian's runc 1.1.5 wherever that runc
already behaves right (`same_as_runc`: the same bundle under both, the same output).

Where runh deliberately differs from runc, the test says so and why."""

import os
import shutil
import subprocess
import time

import pytest

import bundle as bundlemod
from conftest import Runner, sh

HAVE_RUNC = shutil.which("runc") is not None
needs_runc = [pytest.mark.runc, pytest.mark.skipif(not HAVE_RUNC, reason="runc not installed")]


def runc_marks(f):
    for m in needs_runc:
        f = m(f)
    return f


def _runc_bundle(ctx, rootfs_template, edit, name="bundle"):
    """A bundle from runc's default spec (so that only the runtimes differ), without
    resources (crun-style probes are not the point here)."""
    def e(c):
        c["linux"].pop("resources", None)
        edit(c)
    return bundlemod.build_bundle(ctx.path(name), spec=bundlemod.default_spec("runc"),
                                  template=rootfs_template, edit=e)


def run_under(runner, ctx, bundle, name):
    cid = ctx.new_id(name)
    try:
        return runner("run", "--bundle", bundle, cid)
    finally:
        runner("delete", "--force", cid)


def same_as_runc(runh, ctx, rootfs_template, edit, check=None, prepare=None):
    """Run the bundle under runc, then under runh (each its own copy: a runtime may
    create mount points in the rootfs): both must succeed with the same stdout.
    `check(stdout)` asserts what that output must be; `prepare(bundle)` changes each
    rootfs before its run. Returns runh's result."""
    out = {}
    runc = Runner(shutil.which("runc"), ctx.path("runc-root"))
    for name, runner in (("runc", runc), ("runh", runh)):
        b = _runc_bundle(ctx, rootfs_template, edit, name=f"bundle-{name}")
        if prepare:
            prepare(b)
        out[name] = run_under(runner, ctx, b, name)
        assert out[name].returncode == 0, f"{name}: {out[name].stderr}"
        if check and name == "runc":
            # The oracle itself shows the behaviour (check asserts, or returns False).
            assert check(out[name].stdout) is not False, out[name].stdout
    assert out["runh"].stdout == out["runc"].stdout
    return out["runh"]


def _args(script):
    def e(c):
        c["process"]["args"] = sh(script)
    return e


def _chain(*edits):
    def e(c):
        for f in edits:
            f(c)
    return e


def _userns(c, host=100000):
    """A new user namespace: container root is host uid/gid `host`."""
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host, "size": 65536}]
    c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host, "size": 65536}]


# ---------------------------------------------------------------- namespaces

@runc_marks
def test_new_network_namespace_has_lo_up(runh, ctx, rootfs_template):
    def check(out):
        flags = int(out.split()[0], 16)
        assert flags & 0x1, out  # IFF_UP
    same_as_runc(runh, ctx, rootfs_template, _args("cat /sys/class/net/lo/flags"), check)


def test_lo_up_answers_on_127_0_0_1(run_in):
    r = run_in(*sh("nc -l -p 4711 >/dev/null & sleep 0.2; "
                   "echo x | nc -w 1 127.0.0.1 4711 && echo CONNECTED"))
    assert r.returncode == 0, r.stderr
    assert "CONNECTED" in r.stdout


NS_FILES = {"cgroup": "cgroup", "ipc": "ipc", "mount": "mnt", "network": "net", "pid": "pid",
            "time": "time", "user": "user", "uts": "uts"}


def _shared_mounts(c):
    """What a config without a mount namespace of its own may not have (each would be a
    mount in runh's mount namespace): mounts, masked and read-only paths, a read-only
    root, rootfsPropagation; and sysctl (written through /proc/sys, which needs a mount)."""
    c["mounts"] = []
    c["root"]["readonly"] = False
    c["linux"]["maskedPaths"] = []
    c["linux"]["readonlyPaths"] = []
    c["linux"].pop("rootfsPropagation", None)
    c["linux"].pop("sysctl", None)


def _create_and_look(runh, ctx, b):
    """create the bundle; (the parked init's pid, {ns: inode}, host mountinfo before and
    while it exists). The caller starts or deletes it."""
    before = open("/proc/self/mountinfo").read()
    cid = ctx.new_id()
    r = runh("create", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    pid = runh.state(cid)["pid"]
    ns = {t: os.readlink(f"/proc/{pid}/ns/{n}") for t, n in NS_FILES.items()}
    return cid, pid, ns, before, open("/proc/self/mountinfo").read()


def test_every_namespace_type_is_inherited(runh, ctx, make_bundle):
    """linux.namespaces empty: the container is in runh's namespace of every type, the
    mount namespace included (runtime-spec: an unlisted type is inherited); nothing is
    mounted on the host, and the process runs chrooted in the rootfs."""
    def e(c):
        _shared_mounts(c)
        c["linux"]["namespaces"] = []
        c.pop("hostname", None)
        c.pop("domainname", None)
        c["process"]["args"] = sh("ls / > /seen; test -e /work && echo HOST-VISIBLE >> /seen; "
                                  "echo ok > /dev/null && echo DEVNULL >> /seen")
    b = make_bundle(edit=e)
    cid, pid, ns, before, during = _create_and_look(runh, ctx, b)
    try:
        for t, n in NS_FILES.items():
            assert ns[t] == os.readlink(f"/proc/self/ns/{n}"), t
        assert during == before
        assert os.readlink(f"/proc/{pid}/root") == os.path.join(b, "rootfs")
        r = runh("start", cid)
        assert r.returncode == 0, r.stderr
        runh.wait_status(cid, "stopped")
    finally:
        runh("delete", "--force", cid)
    seen = open(os.path.join(b, "rootfs", "seen")).read().split()
    assert "bin" in seen and "HOST-VISIBLE" not in seen and "DEVNULL" in seen, seen
    assert open("/proc/self/mountinfo").read() == before


def test_mount_namespace_inherited_refuses_mounts(run_in):
    """A config without a mount namespace of its own that has mounts is refused before
    anything is made: runc 1.1.5 and crun 1.8.1 make those mounts in their own (the
    host's) mount namespace, where they outlive the container."""
    def e(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "mount"]
        _shared_mounts(c)
        c["mounts"] = [{"destination": "/proc", "type": "proc", "source": "proc"}]
    r = run_in("true", edit=e)
    assert r.returncode != 0
    assert "mounts:" in r.stderr and "no mount namespace of its own" in r.stderr


@pytest.mark.parametrize("field", ["maskedPaths", "readonlyPaths", "readonly", "rootfsPropagation",
                                   "sysctl"])
def test_mount_namespace_inherited_refuses_what_would_mount(run_in, field):
    def e(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "mount"]
        _shared_mounts(c)
        if field == "readonly":
            c["root"]["readonly"] = True
        elif field == "rootfsPropagation":
            c["linux"]["rootfsPropagation"] = "private"
        elif field == "sysctl":
            c["linux"]["sysctl"] = {"kernel.shm_rmid_forced": "1"}
        else:
            c["linux"][field] = ["/proc/kcore"]
    r = run_in("true", edit=e)
    assert r.returncode != 0
    assert field in r.stderr and "no mount namespace of its own" in r.stderr, r.stderr


def test_joining_runh_own_mount_namespace_mounts_nothing(runh, ctx, make_bundle):
    """A mount namespace joined by path that is runh's own ("/proc/self/ns/mnt", read by
    runh and by init alike) is sharing it, as if "mount" were left out: no pivot_root
    there (it would move the root of every process in it) and nothing mounted; with
    mounts in the config it is refused. All of it runs in a private mount namespace, so
    that a runh without this fix (main) wrecks only that one, never the host's."""
    def e(c):
        _shared_mounts(c)
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "mount"]
        c["linux"]["namespaces"].append({"type": "mount", "path": "/proc/self/ns/mnt"})
        c["process"]["args"] = ["true"]
    b = make_bundle(edit=e)
    b2 = make_bundle(edit=lambda c: (e(c), c["mounts"].append(
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})))
    d = ctx.path("out")
    os.makedirs(d)
    script = rf"""
R="{runh.path} --root {runh.root}"
cat /proc/self/mountinfo > {d}/before
$R create --bundle {b} {ctx.token}-a || exit 1
pid=$($R state {ctx.token}-a | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
cat /proc/self/mountinfo > {d}/during
readlink /proc/$pid/root > {d}/root
readlink /proc/$pid/ns/mnt /proc/self/ns/mnt > {d}/ns
$R delete --force {ctx.token}-a
$R run --bundle {b2} {ctx.token}-b 2> {d}/err2; echo $? > {d}/rc2
$R delete --force {ctx.token}-b 2>/dev/null
cat /proc/self/mountinfo > {d}/after
"""
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    read = lambda n: open(os.path.join(d, n)).read()  # noqa: E731
    assert read("during") == read("before") == read("after")
    assert read("root").strip() == os.path.join(b, "rootfs")
    mnt = read("ns").split()
    assert len(mnt) == 2 and mnt[0] == mnt[1]
    assert read("rc2").strip() != "0" and "no mount namespace of its own" in read("err2")


def test_exec_without_mount_namespace_enters_the_rootfs(runh, ctx, make_bundle):
    """exec joins no mount namespace then (it is runh's): it enters the init's root."""
    def e(c):
        _shared_mounts(c)
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "mount"]
        c["process"]["args"] = ["sleep", "100"]
    b = make_bundle(edit=e)
    cid = ctx.new_id()
    try:
        r = runh("run", "-d", "--bundle", b, cid)
        assert r.returncode == 0, r.stderr
        for env in ({}, {"RUNH_PYTHON_ONLY": "1"}):  # the native launcher's exec, and Python's
            r = runh("exec", cid, "sh", "-c", "ls /; test -e /work && echo HOST-VISIBLE; pwd",
                     env=dict(os.environ, **env))
            assert r.returncode == 0, r.stderr
            assert "bin" in r.stdout.split() and "HOST-VISIBLE" not in r.stdout
    finally:
        runh("delete", "--force", cid)


# ---------------------------------------------------------------- mounts and rootfs

def _root_line(mountinfo):
    for line in mountinfo.splitlines():
        f = line.split()
        if len(f) > 5 and f[4] == "/":
            return f
    raise AssertionError(f"no / in {mountinfo}")


@pytest.mark.parametrize("prop", ["unbindable", "runbindable"])
def test_rootfs_propagation_unbindable(run_in, prop):
    """runc 1.1.5 and crun 1.8.1 fail here (EINVAL at the rootfs bind onto itself): runh
    binds the rootfs while / is rslave, and makes / unbindable last, after the read-only
    paths (binds of a path onto itself, which an unbindable / would refuse too)."""
    r = run_in("cat", "/proc/self/mountinfo",
               edit=lambda c: c["linux"].update(rootfsPropagation=prop))
    assert r.returncode == 0, r.stderr
    assert "unbindable" in _root_line(r.stdout)[6:], r.stdout
    sys_ro = [l for l in r.stdout.splitlines() if l.split()[4] == "/proc/sys"]
    assert sys_ro and "ro" in sys_ro[0].split()[5].split(","), r.stdout


REC_OPTS = ["rro", "rnosuid", "rnodev", "rnoexec", "rnoatime", "rnodiratime", "rnosymfollow"]


def _rec_edit(opts, kind="bind"):
    """/t and /t/sub are tmpfs; /u binds the tree (rootfs/t, relative to the bundle, is
    seen with both mounts in the container's mount namespace) with `opts`."""
    def e(c):
        c["mounts"] += [
            {"destination": "/t", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/t/sub", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/u", "type": kind, "source": "rootfs/t", "options": ["rbind"] + opts},
        ]
        c["process"]["args"] = sh("grep ' /u' /proc/self/mountinfo | cut -d' ' -f5,6")
    return e


@runc_marks
def test_recursive_mount_options_reach_every_submount(runh, ctx, rootfs_template):
    def check(out):
        lines = dict(l.split() for l in out.splitlines())
        assert set(lines) == {"/u", "/u/sub"}, out
        for opts in lines.values():
            assert set(opts.split(",")) >= {"ro", "nosuid", "nodev", "noexec", "noatime",
                                            "nodiratime", "nosymfollow"}, out
    same_as_runc(runh, ctx, rootfs_template, _rec_edit(REC_OPTS), check)


def test_recursive_options_clear_and_atime(run_in):
    """The clearing forms undo the setting ones (later options win), and an access-time
    option replaces the whole access-time field (rstrictatime after rnoatime)."""
    r = run_in(edit=_rec_edit(["rro", "rnosuid", "rnoatime", "rrw", "rsuid", "rstrictatime"]))
    assert r.returncode == 0, r.stderr
    for line in r.stdout.splitlines():
        opts = set(line.split()[1].split(","))
        assert "rw" in opts and "nosuid" not in opts and "noatime" not in opts, r.stdout
        assert "relatime" not in opts, r.stdout  # strictatime shows as neither


def test_recursive_options_on_a_tmpfs(run_in):
    """runc 1.1.5 applies the recursive options to bind mounts only (an `rro` tmpfs stays
    writable there); runh applies them to every mount, so `rro` means read-only."""
    def e(c):
        c["mounts"].append({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                            "options": ["rro"]})
        c["process"]["args"] = sh("touch /t/x && echo WROTE; grep ' /t ' /proc/self/mountinfo")
    r = run_in(edit=e)
    assert r.returncode == 0, r.stderr
    assert "WROTE" not in r.stdout and " ro," in r.stdout, r.stdout


def test_recursive_mount_options_listed_in_features(runh):
    import json
    r = runh("features")
    assert r.returncode == 0, r.stderr
    assert set(REC_NAMES) <= set(json.loads(r.stdout)["mountOptions"])


REC_NAMES = ["rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec", "rnoatime",
             "ratime", "rrelatime", "rnorelatime", "rnodiratime", "rdiratime", "rstrictatime",
             "rnostrictatime", "rnosymfollow", "rsymfollow"]


def _tmpfs_edit(options):
    def e(c):
        c["mounts"] += [{"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                         "options": options},
                        {"destination": "/fresh", "type": "tmpfs", "source": "tmpfs"}]
        c["process"]["args"] = sh("stat -c %a /data /fresh")
    return e


def _chmod_data(mode):
    def prepare(b):
        os.makedirs(os.path.join(b, "rootfs", "data"))
        os.chmod(os.path.join(b, "rootfs", "data"), mode)
    return prepare


@runc_marks
def test_tmpfs_keeps_mode_of_covered_dir(runh, ctx, rootfs_template):
    """Without mode=, a tmpfs over an existing directory takes its mode (a new one keeps
    tmpfs's 1777), as runc."""
    same_as_runc(runh, ctx, rootfs_template, _tmpfs_edit(["nosuid"]),
                 lambda out: out.split() == ["1713", "1777"], prepare=_chmod_data(0o1713))


def test_tmpfs_explicit_mode_wins(runh, ctx, make_bundle):
    """An explicit mode= wins over the covered directory's (runc 1.2+; runc 1.1.5 chmods
    the tmpfs to the directory's mode after mounting, over the option)."""
    b = make_bundle(edit=_tmpfs_edit(["mode=700"]))
    _chmod_data(0o1713)(b)
    cid = ctx.new_id()
    r = runh("run", "--bundle", b, cid)
    runh("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["700", "1777"]


def test_readonly_rootfs_without_proc(run_in):
    """The read-only remount goes through the mount's fd (mount_setattr), not through
    /proc/self/fd: a config without a /proc mount works (runc 1.1.5 fails it too, for
    want of /proc/self/fd when closing fds)."""
    def e(c):
        c["root"]["readonly"] = True
        c["mounts"] = [m for m in c["mounts"] if m["destination"] != "/proc"]
        c["linux"]["maskedPaths"] = []
        c["linux"]["readonlyPaths"] = []
        c["linux"].pop("sysctl", None)
    r = run_in(*sh("test -e /proc/self || echo NOPROC; touch /x 2>/dev/null || echo RO"), edit=e)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["NOPROC", "RO"]


def _hidden_source(ctx):
    """A bind source that the container's mapped root cannot reach (a 0700 directory of
    host root on the way), with a directory `inner` in it and a file under `inner`."""
    top = ctx.path("closed")
    os.makedirs(os.path.join(top, "sub", "inner"))
    os.chmod(top, 0o700)
    with open(os.path.join(top, "sub", "inner", "under"), "w") as f:
        f.write("UNDER-THE-MOUNT\n")
    os.chmod(ctx.dir, 0o755)
    return os.path.join(top, "sub")


def _userns_bind(source, script, caps=()):
    def e(c):
        _userns(c)
        c["mounts"].append({"destination": "/sec", "type": "bind", "source": source,
                            "options": ["rbind"]})
        for k in c["process"]["capabilities"]:
            c["process"]["capabilities"][k] += list(caps)
        c["process"]["args"] = sh(script)
    return e


def _mapped_rootfs(b):
    os.chmod(b, 0o755)
    os.makedirs(os.path.join(b, "rootfs", "sec"), exist_ok=True)


@runc_marks
def test_bind_source_the_container_root_cannot_open_still_mounts(runh, ctx, rootfs_template):
    """runh opens the source with host privileges when init (the mapped root) may not,
    as runc and crun do; before, "open source: permission denied"."""
    src = _hidden_source(ctx)
    same_as_runc(runh, ctx, rootfs_template, _userns_bind(src, "ls /sec; grep -c ' /sec ' /proc/self/mountinfo"),
                 lambda out: out.split() == ["inner", "1"], prepare=_mapped_rootfs)


class _WithHostMount(Runner):
    """Each call in a private mount namespace where a tmpfs covers `under` (what the
    container must not be able to uncover); nothing of it outlives the call."""

    def __init__(self, base, under):
        super().__init__(base.path, base.root)
        self.under = under

    def argv(self, *args, root=None):
        script = 'mount -t tmpfs tmpfs "$0" && exec "$@"'
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, self.under,
                *super().argv(*args, root=root)]


@runc_marks
def test_bind_source_opened_by_runh_keeps_submounts_locked(runh, ctx, rootfs_template):
    """The attack: the source opened by runh is copied in the container's mount
    namespace, as runc does, where the mounts under it are locked: the container's root
    cannot unmount one to read what it covers. A copy taken in runh's own namespace (the
    first version of this change) let it."""
    src = _hidden_source(ctx)
    inner = os.path.join(src, "inner")
    script = "umount /sec/inner 2>/dev/null && echo UNMOUNTED; cat /sec/inner/under 2>/dev/null; echo end"
    out = {}
    for name, path in (("runc", shutil.which("runc")), ("runh", runh.path)):
        b = _runc_bundle(ctx, rootfs_template, _userns_bind(src, script, ["CAP_SYS_ADMIN"]), f"b-{name}")
        _mapped_rootfs(b)
        runner = _WithHostMount(Runner(path, ctx.path(f"root-{name}")), inner)
        out[name] = run_under(runner, ctx, b, name)
        assert out[name].returncode == 0, out[name].stderr
    assert out["runc"].stdout.split() == ["end"]
    assert out["runh"].stdout == out["runc"].stdout


def test_idmapped_rbind_keeps_submounts_locked(runh, ctx, make_bundle):
    """The same attack on an idmapped rbind (runh makes it detached, as above): its copy is
    taken in the container's mount namespace too, so the mounts under it stay locked.
    (Found while doing the above: idmap.rs cloned in runh's namespace.)"""
    top = ctx.path("open")
    os.makedirs(os.path.join(top, "sub", "inner"))
    with open(os.path.join(top, "sub", "inner", "under"), "w") as f:
        f.write("UNDER-THE-MOUNT\n")
    os.chmod(ctx.dir, 0o755)
    script = "umount /sec/inner 2>/dev/null && echo UNMOUNTED; cat /sec/inner/under 2>/dev/null; echo end"

    def e(c):
        _userns_bind(os.path.join(top, "sub"), script, ["CAP_SYS_ADMIN"])(c)
        c["mounts"][-1]["options"] = ["rbind", "idmap"]
    b = make_bundle(edit=e)
    _mapped_rootfs(b)
    runner = _WithHostMount(runh, os.path.join(top, "sub", "inner"))
    r = run_under(runner, ctx, b, "runh")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["end"], r.stdout


@runc_marks
def test_create_container_hooks_see_the_mounts(runh, ctx, rootfs_template):
    """createContainer runs after the mounts are set up, before pivot_root, in the
    container's namespaces (runtime-spec): it sees every mount of the config under the
    rootfs, and /dev populated, as runc's does."""
    hook = ctx.path("hook.sh")
    with open(hook, "w") as f:
        f.write('#!/bin/sh\nr="$(pwd)"\nout="$1"\n'
                'while read a b c d mp rest; do case "$mp" in "$r"*) echo "${mp#$r}";; esac; done '
                '< /proc/self/mountinfo | sort > "$out"\n'
                'ls "$r/dev" | sort >> "$out"\n')
    os.chmod(hook, 0o755)
    seen = {}
    for name, path in (("runc", shutil.which("runc")), ("runh", runh.path)):
        out = ctx.path(f"seen-{name}")

        def e(c):
            c["hooks"] = {"createContainer": [{"path": hook, "args": ["hook.sh", out]}]}
            c["process"]["args"] = ["true"]
        b = _runc_bundle(ctx, rootfs_template, e, f"b-{name}")
        r = run_under(Runner(path, ctx.path(f"root-{name}")), ctx, b, name)
        assert r.returncode == 0, r.stderr
        seen[name] = open(out).read().split()
    assert {"/proc", "/dev", "/dev/pts", "/dev/shm", "/sys", "null", "ptmx"} <= set(seen["runc"]), seen
    assert seen["runh"] == seen["runc"]


@runc_marks
def test_missing_cwd_is_created(runh, ctx, rootfs_template):
    def check(out):
        assert out.split()[0] == "/no/such/dir", out
        assert out.split()[1].startswith("drwxr-xr-x"), out
    e = _chain(lambda c: c["process"].update(cwd="/no/such/dir"), _args("pwd; ls -ld /no/such/dir"))
    same_as_runc(runh, ctx, rootfs_template, e, check)


@runc_marks
def test_missing_cwd_is_created_with_a_readonly_rootfs(runh, ctx, rootfs_template):
    """Made before / turns read-only, as runc does."""
    e = _chain(lambda c: c["process"].update(cwd="/made/here"), lambda c: c["root"].update(readonly=True),
               _args("pwd; touch x 2>/dev/null || echo RO"))
    same_as_runc(runh, ctx, rootfs_template, e, lambda out: out.split() == ["/made/here", "RO"])


def test_missing_cwd_stays_inside_rootfs(runh, ctx, make_bundle):
    """A cwd through a symlink that points out of the rootfs is created inside it."""
    outside = ctx.path("outside")
    b = make_bundle(args=["pwd"], edit=lambda c: c["process"].update(cwd="/escape/x"))
    os.symlink(outside, os.path.join(b, "rootfs", "escape"))
    cid = ctx.new_id()
    r = runh("run", "--bundle", b, cid)
    runh("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(outside)
    assert os.path.isdir(os.path.join(b, "rootfs", outside.lstrip("/"), "x"))


# ---------------------------------------------------------------- devices

@runc_marks
def test_devices_outside_dev_and_trailing_slash(runh, ctx, rootfs_template):
    def e(c):
        c["linux"]["devices"] = [
            {"path": "/opt/dev/null2", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666},
            {"path": "/dev/zero2/", "type": "c", "major": 1, "minor": 5, "fileMode": 0o644},
        ]
        c["process"]["args"] = sh("stat -c '%n %F %t:%T %a' /opt/dev/null2 /dev/zero2")

    def check(out):
        assert out.splitlines() == ["/opt/dev/null2 character special file 1:3 666",
                                    "/dev/zero2 character special file 1:5 644"], out
    same_as_runc(runh, ctx, rootfs_template, e, check)


def test_device_over_another_file_is_refused(runh, ctx, make_bundle):
    """The runtime-spec: a file already at a device's path that is not that device is an
    error (runc 1.1.5 silently keeps the file)."""
    b = make_bundle(args=["true"], edit=lambda c: c["linux"].update(devices=[
        {"path": "/etc/passwd", "type": "c", "major": 1, "minor": 3}]))
    cid = ctx.new_id()
    r = runh("run", "--bundle", b, cid)
    runh("delete", "--force", cid)
    assert r.returncode != 0
    assert "/etc/passwd" in r.stderr and "not this device" in r.stderr


def test_device_already_there_is_kept(runh, ctx, make_bundle):
    """The same device already at the path (a /dev that is not a fresh tmpfs) is kept."""
    def e(c):
        c["mounts"] = [m for m in c["mounts"] if m["destination"] != "/dev"]
        c["linux"]["devices"] = [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]
    b = make_bundle(args=sh("stat -c '%t:%T' /dev/null"), edit=e)
    os.makedirs(os.path.join(b, "rootfs", "dev"), exist_ok=True)
    os.mknod(os.path.join(b, "rootfs", "dev", "null"), 0o20666, os.makedev(1, 3))
    cid = ctx.new_id()
    r = runh("run", "--bundle", b, cid)
    runh("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1:3"]


@pytest.mark.parametrize("via_dev", [True, False])
def test_device_path_never_binds_a_host_file(runh, ctx, make_bundle, via_dev):
    """The attack: in a user namespace mknod is refused, and the device is bound from the
    host instead. A config naming a host file as a device path must not get that file
    into the container (on main, "/dev/../<host file>" passed the /dev check and the host
    file was bound): only a host node of the same type and number is bound (the path's,
    or udev's /dev/char/M:m), else the create fails."""
    secret = ctx.path("secret")
    with open(secret, "w") as f:
        f.write("HOST-SECRET\n")
    os.chmod(secret, 0o644)
    path = ("/dev/.." if via_dev else "") + secret

    def e(c):
        _userns(c)
        c["linux"]["devices"] = [{"path": path, "type": "c", "major": 1, "minor": 3}]
        c["process"]["args"] = sh(f"stat -c '%F %t:%T' {secret}; cat {secret}")
    b = make_bundle(edit=e)
    os.chmod(ctx.dir, 0o755)
    os.chmod(b, 0o755)
    # The container's root may create the device's directories, as in a real image.
    os.chown(os.path.join(b, "rootfs"), 100000, 100000)
    os.chown(os.path.join(b, "rootfs", "tmp"), 100000, 100000)
    cid = ctx.new_id()
    r = runh("run", "--bundle", b, cid)
    runh("delete", "--force", cid)
    assert "HOST-SECRET" not in r.stdout + r.stderr
    if r.returncode == 0:  # bound from the host's null device
        assert r.stdout.split() == ["character", "special", "file", "1:3"], r.stdout
    else:
        assert "no such device 1:3" in r.stderr, r.stderr


# ---------------------------------------------------------------- runtime-spec 1.3 fields

# (linux.memoryPolicy, what /proc/self/numa_maps then shows as the policy). Node 0 is
# the one node every machine has; MPOL_WEIGHTED_INTERLEAVE needs Linux 6.9.
MPOL_CASES = [
    ({"mode": "MPOL_DEFAULT"}, "default"),
    ({"mode": "MPOL_LOCAL"}, "local"),
    ({"mode": "MPOL_PREFERRED", "nodes": "0"}, "prefer:0"),
    ({"mode": "MPOL_BIND", "nodes": "0"}, "bind:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}, "bind=static:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]}, "bind=relative:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}, "bind=balancing:0"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0"}, "interleave:0"),
    ({"mode": "MPOL_PREFERRED_MANY", "nodes": "0"}, "prefer (many):0"),
    ({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "0"}, "weighted interleave:0"),
]
NUMA_POLICY = "head -1 /proc/self/numa_maps | cut -d' ' -f2-"


def _policy(line):
    """numa_maps' policy field (it may hold spaces: "prefer (many):0"), ends before the
    next key=value."""
    words = []
    for w in line.split():
        if "=" in w and not w.startswith(("bind=", "interleave=", "prefer")):
            break
        words.append(w)
    return " ".join(words)


@pytest.mark.parametrize("mpol,shown", MPOL_CASES, ids=[c[1] for c in MPOL_CASES])
def test_memory_policy_applies_to_the_process_and_exec(runh, ctx, make_bundle, mpol, shown):
    """set_mempolicy in init before Ready (the policy is inherited across execve) and in
    every exec'd process, as runc 1.2+ (runc 1.1.5 has no memoryPolicy)."""
    if not os.path.exists("/proc/self/numa_maps"):
        pytest.skip("no /proc/self/numa_maps (a kernel without NUMA)")

    def e(c):
        c["linux"]["memoryPolicy"] = mpol
        c["process"]["args"] = sh(NUMA_POLICY + "; sleep 100")
    b = make_bundle(edit=e)
    cid = ctx.new_id()
    out = ctx.path("out")
    try:
        with open(out, "w") as f:
            r = runh("run", "-d", "--bundle", b, cid, stdout=f, stderr=subprocess.STDOUT)
        if r.returncode != 0 and "WEIGHTED" in mpol["mode"] and "invalid argument" in open(out).read():
            pytest.skip("MPOL_WEIGHTED_INTERLEAVE needs Linux 6.9")
        assert r.returncode == 0, open(out).read()
        r = runh("exec", cid, "sh", "-c", NUMA_POLICY)
        assert r.returncode == 0, r.stderr
        assert _policy(r.stdout) == shown, r.stdout
        deadline = time.time() + 10
        while not open(out).read() and time.time() < deadline:
            time.sleep(0.02)
        assert _policy(open(out).read()) == shown
    finally:
        runh("delete", "--force", cid)


@pytest.mark.parametrize("mpol,why", [
    ({"mode": "MPOL_BOGUS"}, "linux.memoryPolicy.mode"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_BOGUS"]}, "linux.memoryPolicy.flags"),
    ({"mode": "MPOL_BIND"}, "needs at least one node"),
    ({"mode": "MPOL_LOCAL", "nodes": "0"}, "takes no nodes"),
    ({"mode": "MPOL_BIND", "nodes": "0-x"}, "invalid node list"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]},
     "exclude each other"),
    # A node this machine does not have: the kernel's answer, at create.
    ({"mode": "MPOL_BIND", "nodes": "1000"}, "set linux.memoryPolicy"),
], ids=["mode", "flag", "no-node", "local-with-node", "syntax", "static+relative", "absent-node"])
def test_memory_policy_invalid_is_refused(run_in, mpol, why):
    r = run_in("true", edit=lambda c: c["linux"].update(memoryPolicy=mpol))
    assert r.returncode != 0
    assert why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_memory_policy_listed_in_features(runh):
    import json
    r = runh("features")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["linux"]["memoryPolicy"]
    assert set(got["modes"]) == {m["mode"] for m, _ in MPOL_CASES}
    assert set(got["flags"]) == {"MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"}


def test_scheduler_deadline_applies(run_in):
    sched = {"policy": "SCHED_DEADLINE", "runtime": 1000000, "deadline": 5000000, "period": 10000000}
    # (dl.runtime in /proc/self/sched is what is left of the current period.)
    r = run_in("grep", "-E", "^policy", "/proc/self/sched",
               edit=lambda c: c["process"].update(scheduler=sched))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split(":")[1].strip() == "6", r.stdout  # SCHED_DEADLINE


@pytest.mark.parametrize("sched,why", [
    ({"runtime": 10000000, "deadline": 5000000, "period": 10000000}, "runtime <= deadline <= period"),
    ({"runtime": 1000000, "deadline": 20000000, "period": 10000000}, "runtime <= deadline <= period"),
    ({"runtime": 1000000}, "deadline is required"),
    ({"runtime": 500, "deadline": 5000000}, "1024 ns"),
    ({"runtime": 1000000, "deadline": 1000000, "period": 10 ** 13}, "sched_deadline_period_max_us"),
    ({"policy": "SCHED_OTHER", "runtime": 1000000}, "only be set for SCHED_DEADLINE"),
    ({"policy": "SCHED_FIFO", "priority": 0}, "1..99"),
    ({"policy": "SCHED_BATCH", "priority": 3}, "SCHED_FIFO and SCHED_RR"),
], ids=["runtime>deadline", "deadline>period", "no-deadline", "tiny-runtime", "long-period",
        "other-with-runtime", "fifo-priority-0", "batch-with-priority"])
def test_scheduler_invalid_is_refused_at_create(runh, ctx, make_bundle, sched, why):
    """The spec's (and sched_setattr(2)'s) rules for runtime, deadline and period, and
    runc's for priority: refused by create with the field named, rather than by the
    kernel at start."""
    full = {"policy": "SCHED_DEADLINE", **sched}
    b = make_bundle(args=["true"], edit=lambda c: c["process"].update(scheduler=full))
    cid = ctx.new_id()
    r = runh("create", "--bundle", b, cid)
    runh("delete", "--force", cid)
    assert r.returncode != 0
    assert "process.scheduler." in r.stderr and why in r.stderr, r.stderr


class _Veth:
    """A veth pair on the host: `a` (with addresses) goes into a container, `b` stays.
    (This host's kernel has veth but no dummy; tests/netdev_checks.py uses a dummy in the
    guest.) Removed afterwards if still here; the end moved into a container goes with
    its network namespace, and takes its peer along (a veth pair dies together)."""

    def __init__(self, ctx, tag="v"):
        self.a, self.b = f"{ctx.token[-8:]}{tag}a", f"{ctx.token[-8:]}{tag}b"
        ip = lambda *a: subprocess.run(["ip", *a], check=True, capture_output=True)  # noqa: E731
        ip("link", "add", self.a, "type", "veth", "peer", "name", self.b)
        ip("addr", "add", "10.77.0.1/24", "dev", self.a)
        ip("addr", "add", "10.77.0.9/24", "dev", self.a)
        ip("addr", "add", "fd00:77::1/64", "dev", self.a, "nodad")
        ip("link", "set", self.b, "up")
        ip("addr", "add", "10.77.0.2/24", "dev", self.b)

    def exists(self, name):
        return os.path.exists(f"/sys/class/net/{name}")

    def close(self):
        for n in (self.a, self.b):
            subprocess.run(["ip", "link", "del", n], capture_output=True)


@pytest.fixture
def veth(ctx):
    v = _Veth(ctx)
    yield v
    v.close()


def _net_devices(devs, script, caps=()):
    def e(c):
        c["linux"]["netDevices"] = devs
        for k in c["process"]["capabilities"]:
            c["process"]["capabilities"][k] += list(caps)
        c["process"]["args"] = sh(script)
    return e


def test_net_device_moved_renamed_with_its_addresses_and_up(runh, ctx, make_bundle, veth):
    script = ("ip -o link show ctr0 | grep -o 'UP,LOWER_UP'; "
              "ip -o addr show ctr0 | grep -v fe80 | awk '{print $3, $4}'; "
              "ping -c1 -W5 10.77.0.2 >/dev/null && echo PING-OK; "
              "cat /sys/class/net/lo/operstate /sys/class/net/lo/flags")
    b = make_bundle(edit=_net_devices({veth.a: {"name": "ctr0"}}, script, ["CAP_NET_RAW"]))
    cid = ctx.new_id()
    r = runh("run", "--bundle", b, cid)
    runh("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:5] == ["UP,LOWER_UP", "inet 10.77.0.1/24", "inet 10.77.0.9/24",
                         "inet6 fd00:77::1/64", "PING-OK"], r.stdout
    # The spec: runh does not move it back. A veth (virtual) dies with the namespace.
    assert not veth.exists(veth.a) and not veth.exists("ctr0")


def test_net_device_keeps_its_name_without_one(run_in, veth):
    r = run_in(edit=_net_devices({veth.a: {}}, "ls /sys/class/net | sort"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == sorted([veth.a, "lo"])


def test_net_device_name_template(run_in, veth):
    r = run_in(edit=_net_devices({veth.a: {"name": "eth%d"}}, "ls /sys/class/net | sort"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["eth0", "lo"]


def test_net_device_stays_in_a_joined_namespace_after_delete(runh, ctx, make_bundle, veth):
    """Joined by path (a namespace that outlives the container): the device is moved
    there, and stays there after delete, as the spec says (no move back)."""
    path = ctx.path("netns")
    open(path, "w").close()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    try:
        def e(c):
            _net_devices({veth.a: {"name": "inside0"}}, "ls /sys/class/net | sort")(c)
            c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
            c["linux"]["namespaces"].append({"type": "network", "path": path})
        b = make_bundle(edit=e)
        cid = ctx.new_id()
        r = runh("run", "--bundle", b, cid)
        runh("delete", "--force", cid)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["inside0", "lo"]
        left = subprocess.run(["nsenter", f"--net={path}", "ip", "-o", "link", "show", "inside0"],
                              capture_output=True, text=True)
        assert left.returncode == 0 and "inside0" in left.stdout and not veth.exists(veth.a)
    finally:
        subprocess.run(["umount", path], capture_output=True)


@pytest.mark.parametrize("case", ["no-such-interface", "bad-name", "slash", "too-long", "two-same",
                                  "lo", "no-netns", "second-missing"])
def test_net_devices_refused_before_anything_moves(runh, ctx, make_bundle, veth, case):
    devs, edit_ns, why = {
        "no-such-interface": ({"nosuch0": {}}, None, 'no interface "nosuch0" on the host'),
        "bad-name": ({veth.a: {"name": "a b"}}, None, "not a valid interface name"),
        "slash": ({veth.a: {"name": "x/y"}}, None, "not a valid interface name"),
        "too-long": ({veth.a: {"name": "x" * 16}}, None, "not a valid interface name"),
        "two-same": ({veth.a: {"name": "c0"}, veth.b: {"name": "c0"}}, None, 'named "c0"'),
        "lo": ({veth.a: {"name": "lo"}}, None, 'named "lo"'),
        "no-netns": ({veth.a: {}}, "drop", "no network namespace of its own"),
        "second-missing": ({veth.a: {}, "nosuch1": {}}, None, 'no interface "nosuch1"'),
    }[case]

    def e(c):
        c["linux"]["netDevices"] = devs
        if edit_ns == "drop":
            c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
            c["linux"].pop("sysctl", None)
    b = make_bundle(args=["true"], edit=e)
    cid = ctx.new_id()
    r = runh("create", "--bundle", b, cid)
    runh("delete", "--force", cid)
    assert r.returncode != 0
    assert "linux.netDevices" in r.stderr and why in r.stderr, r.stderr
    assert veth.exists(veth.a) and veth.exists(veth.b)  # nothing moved


def test_net_device_name_taken_in_the_joined_namespace(runh, ctx, make_bundle, veth):
    """A name already used in a namespace joined by path is refused before the move."""
    path = ctx.path("netns")
    open(path, "w").close()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    try:
        subprocess.run(["nsenter", f"--net={path}", "ip", "link", "add", "taken0", "type", "veth",
                        "peer", "name", "taken1"], check=True)

        def e(c):
            c["linux"]["netDevices"] = {veth.a: {"name": "taken0"}}
            c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
            c["linux"]["namespaces"].append({"type": "network", "path": path})
        b = make_bundle(args=["true"], edit=e)
        cid = ctx.new_id()
        r = runh("create", "--bundle", b, cid)
        runh("delete", "--force", cid)
        assert r.returncode != 0 and 'already has an interface "taken0"' in r.stderr, r.stderr
        assert veth.exists(veth.a)
    finally:
        subprocess.run(["umount", path], capture_output=True)


def test_net_devices_listed_in_features(runh):
    import json
    r = runh("features")
    assert json.loads(r.stdout)["linux"]["netDevices"] == {"enabled": True}


@runc_marks
def test_intel_rdt_without_resctrl_is_refused(runh, ctx, rootfs_template):
    """This host has no resctrl: create fails with a line naming linux.intelRdt and
    leaves nothing, as runc 1.1.5 fails (main ignored the field and ran)."""
    from runh import intelrdt
    if intelrdt.mountpoint():
        pytest.skip("resctrl is mounted here")

    def e(c):
        c["linux"]["intelRdt"] = {"closID": "grp", "l3CacheSchema": "L3:0=f"}
        c["process"]["args"] = ["true"]
    runc = Runner(shutil.which("runc"), ctx.path("runc-root"))
    for name, runner in (("runc", runc), ("runh", runh)):
        b = _runc_bundle(ctx, rootfs_template, e, f"b-{name}")
        r = run_under(runner, ctx, b, name)
        assert r.returncode != 0, f"{name} ran"
        assert os.listdir(runner.root) == [], name
    assert "linux.intelRdt" in r.stderr and "resctrl" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


class _FakeResctrl:
    """runh.intelrdt against a directory standing for a mounted resctrl (no machine of
    this project has RDT): what it makes, writes and removes there."""

    def __init__(self, ctx, monkeypatch):
        import runh.intelrdt as rdt
        self.rdt = rdt
        self.root = ctx.path("resctrl")
        os.makedirs(self.root)
        monkeypatch.setattr(rdt, "mountpoint", lambda: self.root)

    def p(self, *parts):
        return os.path.join(self.root, *parts)


def test_intel_rdt_group_of_the_container(ctx, monkeypatch):
    f = _FakeResctrl(ctx, monkeypatch)
    rec, tasks = f.rdt.prepare({"l3CacheSchema": "L3:0=f", "memBwSchema": "MB:0=20",
                                "schemata": ["L2:0=3"]}, "c1")
    assert rec == {"dir": f.p("c1"), "created": True, "mon": None}
    assert tasks == [f.p("c1", "tasks")]
    assert open(f.p("c1", "schemata")).read() == "L3:0=f\nMB:0=20\nL2:0=3\n"
    os.unlink(f.p("c1", "schemata"))
    f.rdt.remove(rec)
    assert not os.path.exists(f.p("c1"))


def test_intel_rdt_clos_is_never_removed(ctx, monkeypatch):
    f = _FakeResctrl(ctx, monkeypatch)
    os.makedirs(f.p("shared", "mon_groups"))
    rec, tasks = f.rdt.prepare({"closID": "shared", "enableMonitoring": True}, "c2")
    assert rec == {"dir": f.p("shared"), "created": False, "mon": f.p("shared", "mon_groups", "c2")}
    assert tasks == [f.p("shared", "tasks"), f.p("shared", "mon_groups", "c2", "tasks")]
    f.rdt.remove(rec)
    assert os.path.isdir(f.p("shared")) and not os.path.exists(rec["mon"])
    # The root CLOS ("/"), and a pre-configured one that is missing.
    rec, tasks = f.rdt.prepare({"closID": "/"}, "c3")
    assert rec["dir"] == f.root and tasks == [f.root + "/tasks"]
    with pytest.raises(Exception, match="must exist"):
        f.rdt.prepare({"closID": "absent"}, "c4")


@pytest.mark.parametrize("rdt,why", [
    ({"closID": "../escape"}, "closID"),
    ({"closID": "a/b"}, "closID"),
    ({"closID": "info"}, "closID"),
    ({"closID": ""}, "closID"),
    ({"memBwSchema": "L3:0=f"}, "memBwSchema"),
    ({"l3CacheSchema": "L3:0=f\nMB:0=1"}, "l3CacheSchema"),
    ({"schemata": ["L3:0=f\n"]}, "schemata"),
])
def test_intel_rdt_invalid_is_refused_before_anything(ctx, monkeypatch, rdt, why):
    f = _FakeResctrl(ctx, monkeypatch)
    with pytest.raises(Exception, match=why):
        f.rdt.prepare(rdt, "c5")
    assert os.listdir(f.root) == []


def test_intel_rdt_listed_in_features(runh):
    import json
    r = runh("features")
    assert json.loads(r.stdout)["linux"]["intelRdt"] == {"enabled": True, "schemata": True,
                                                        "monitoring": True}

"""runh-init's exec object (rust/src/initexe.rs): every process runh puts in a container
before its execve runs runh-init through a read-only detached bind of the installed file
(or, where that could be undone or is refused, a sealed memfd copy of it), so its
/proc/<pid>/exe is never a writable host file (CVE-2019-5736), the bind shows in no
mountinfo, and the parked init keeps little memory.

The attack itself (a container process racing for /proc/<pid>/exe and writing through a
kept fd) is tests/test_exe_overwrite.py, run against both objects."""

import errno
import fcntl
import hashlib
import os
import time

import pytest

from conftest import REPO

INIT = os.path.join(REPO, "python", "runh", "runh-init")
FORCE_MEMFD = dict(os.environ, RUNH_INIT_MEMFD="1")
F_GET_SEALS, ALL_SEALS = 1034, 0x1 | 0x2 | 0x4 | 0x8  # SEAL, SHRINK, GROW, WRITE
# The parked init's VmRSS (issue 16): 1404 KiB before its text was dropped at park.
PARKED_VMRSS_MAX_KIB = 700


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k.startswith(("Vm", "Rss")):
                out[k] = int(v.split()[0])
    return out


def _mountinfo(pid="self"):
    with open(f"/proc/{pid}/mountinfo") as f:
        return f.read()


def _refuses_writes(path):
    """Opening `path` O_WRONLY and O_RDWR fails; the errnos."""
    errs = []
    for mode in (os.O_WRONLY, os.O_RDWR):
        try:
            fd = os.open(path, mode)
        except OSError as e:
            errs.append(e.errno)
        else:
            os.close(fd)
            raise AssertionError(f"{path} opened with mode {mode:#o}")
    return errs


def _create(runh, ctx, make_bundle, env=None, edit=None, args=("true",)):
    b = make_bundle(args=list(args), edit=edit)
    cid = ctx.new_id()
    r = runh("create", "--bundle", b, cid, env=env)
    assert r.returncode == 0, r.stderr
    return cid, runh.state(cid)["pid"]


def test_installed_init_is_a_root_owned_file_only_root_writes():
    st = os.stat(INIT)
    assert st.st_uid == 0 and st.st_mode & 0o022 == 0 and st.st_mode & 0o111


def test_parked_init_runs_a_read_only_bind_of_the_installed_file(runh, ctx, make_bundle):
    """Zero-copy: the exe is the installed file's inode, on a detached read-only mount
    that no mountinfo shows. A fd kept on it still refuses writes after the init has
    exec'd on (the CVE-2019-5736 reopen), with EROFS."""
    before = _sha(INIT)
    # Other work on the machine mounts too: look for a mount of runh-init, not for change.
    assert "runh-init" not in _mountinfo()
    cid, pid = _create(runh, ctx, make_bundle)
    kept = None
    try:
        assert os.readlink(f"/proc/{pid}/exe") == "/"  # a detached mount's root
        st, inst = os.stat(f"/proc/{pid}/exe"), os.stat(INIT)
        assert (st.st_dev, st.st_ino) == (inst.st_dev, inst.st_ino)
        assert set(_refuses_writes(f"/proc/{pid}/exe")) <= {errno.EROFS, errno.ETXTBSY}
        kept = os.open(f"/proc/{pid}/exe", os.O_PATH)
        assert "runh-init" not in _mountinfo() and "runh-init" not in _mountinfo(pid)
        assert runh("start", cid).returncode == 0
        runh.wait_status(cid, "stopped")
        # Nothing executes the file any more: only the read-only mount refuses now.
        assert _refuses_writes(f"/proc/self/fd/{kept}") == [errno.EROFS, errno.EROFS]
    finally:
        if kept is not None:
            os.close(kept)
        runh("delete", "--force", cid)
    assert "runh-init" not in _mountinfo()
    assert _sha(INIT) == before


def test_forced_memfd_fallback_is_sealed(runh, ctx, make_bundle):
    """The fallback (rootless, kernels without the mount API, privileged configs), forced
    by the tests' knob: a memfd copy sealed against writes, growth, shrinking and seals."""
    cid, pid = _create(runh, ctx, make_bundle, env=FORCE_MEMFD)
    try:
        assert os.readlink(f"/proc/{pid}/exe").startswith("/memfd:runh-init")
        fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY)
        try:
            assert fcntl.fcntl(fd, F_GET_SEALS) & ALL_SEALS == ALL_SEALS
            assert os.fstat(fd).st_size == os.stat(INIT).st_size
        finally:
            os.close(fd)
        assert _refuses_writes(f"/proc/{pid}/exe")
        assert runh("start", cid).returncode == 0
    finally:
        runh("delete", "--force", cid)


def _add_caps(caps, sets=("bounding", "effective", "permitted")):
    def edit(c):
        for s in sets:
            c["process"]["capabilities"][s] = sorted(set(c["process"]["capabilities"].get(s, [])) | set(caps))
    return edit


@pytest.mark.parametrize("sets", [("bounding", "effective", "permitted"), ("inheritable",)],
                         ids=["bounding", "inheritable"])
def test_config_with_cap_sys_admin_gets_the_memfd(runh, ctx, make_bundle, sets):
    """CAP_SYS_ADMIN could clear a detached mount's read-only flag by path (initexe.rs
    says how): such a config's init runs from the sealed memfd instead (inheritable
    alone too: a file's inheritable caps make it permitted past the bounding set)."""
    cid, pid = _create(runh, ctx, make_bundle, edit=_add_caps(["CAP_SYS_ADMIN"], sets))
    try:
        assert os.readlink(f"/proc/{pid}/exe").startswith("/memfd:runh-init")
    finally:
        runh("delete", "--force", cid)


@pytest.mark.parametrize("caps", [[], ["--cap", "CAP_SYS_ADMIN"]], ids=["bind", "memfd"])
def test_exec_process_before_its_execve_refuses_writes(runh, ctx, make_bundle, caps):
    """An exec'd process is caught before its execve: exec --ignore-paused into a paused
    container (Python's exec path) freezes it right after Ready, still runh-init. Its exe
    is the read-only bind and refuses writes, also through a fd kept past its execve; an
    exec with CAP_SYS_ADMIN of its own gets the sealed memfd."""
    b = make_bundle(args=["sleep", "1000"])
    cid = ctx.new_id()
    assert runh("run", "-d", "--bundle", b, cid).returncode == 0
    kept = None
    try:
        if runh("pause", cid).returncode != 0:
            pytest.skip("pause does not work on this host")
        pf = ctx.path("exec.pid")
        r = runh("exec", "-d", "--ignore-paused", "--pid-file", pf, *caps, cid, "true")
        assert r.returncode == 0, r.stderr
        with open(pf) as f:
            pid = int(f.read())
        if caps:
            assert os.readlink(f"/proc/{pid}/exe").startswith("/memfd:runh-init")
            fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY)
            try:
                assert fcntl.fcntl(fd, F_GET_SEALS) & ALL_SEALS == ALL_SEALS
            finally:
                os.close(fd)
            return
        assert os.readlink(f"/proc/{pid}/exe") == "/"
        assert set(_refuses_writes(f"/proc/{pid}/exe")) <= {errno.EROFS, errno.ETXTBSY}
        kept = os.open(f"/proc/{pid}/exe", os.O_PATH)
        assert runh("resume", cid).returncode == 0
        deadline = time.time() + 5
        while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
            time.sleep(0.02)
        assert _refuses_writes(f"/proc/self/fd/{kept}") == [errno.EROFS, errno.EROFS]
    finally:
        if kept is not None:
            os.close(kept)
        if runh.state(cid)["status"] == "paused":
            runh("resume", cid)
        runh("delete", "--force", cid)


@pytest.mark.parametrize("env", [None, FORCE_MEMFD], ids=["bind", "memfd"])
def test_parked_init_vmrss(runh, ctx, make_bundle, env):
    """runh-init drops its read-only text before it parks (issue 16: VmRSS <= 700 KiB on
    the static-glibc build, 1404 KiB before); start still runs the container."""
    cid, pid = _create(runh, ctx, make_bundle, env=env)
    try:
        st = _status(pid)
        assert st["VmRSS"] <= PARKED_VMRSS_MAX_KIB, st
        assert runh("start", cid).returncode == 0
        runh.wait_status(cid, "stopped")
    finally:
        runh("delete", "--force", cid)


@pytest.mark.parametrize("mode", [0o775, 0o757])
def test_a_writable_installed_init_is_refused(runh, ctx, make_bundle, mode):
    """A runh-init that a group or others can write is never run, nor copied: create fails
    in one line naming it."""
    old = os.stat(INIT).st_mode & 0o7777
    b = make_bundle(args=["true"])
    cid = ctx.new_id()
    try:
        os.chmod(INIT, mode)
        r = runh("create", "--bundle", b, cid)
    finally:
        os.chmod(INIT, old)
    if r.returncode == 0:
        runh("delete", "--force", cid)
    assert r.returncode != 0
    assert "runh-init" in r.stderr and "refusing to run it" in r.stderr, r.stderr


def test_an_installed_init_of_another_owner_is_refused(runh, ctx, make_bundle):
    """A runh-init owned by a user who owns neither runh's code nor the call is refused."""
    st = os.stat(INIT)
    b = make_bundle(args=["true"])
    cid = ctx.new_id()
    try:
        os.chown(INIT, 54321, st.st_gid)
        os.chmod(INIT, st.st_mode & 0o7777)  # keep the mode exact
        r = runh("create", "--bundle", b, cid)
    finally:
        os.chown(INIT, st.st_uid, st.st_gid)
        os.chmod(INIT, st.st_mode & 0o7777)
    if r.returncode == 0:
        runh("delete", "--force", cid)
    assert r.returncode != 0
    assert "runh-init" in r.stderr and "refusing to run it" in r.stderr, r.stderr



def test_an_init_owned_like_runh_itself_is_run(runh, ctx, make_bundle):
    """`make build` by a developer, runh run with sudo: runh-init owned by the owner of
    `_core` (who could change runh itself) is trusted like the code already running."""
    core = os.path.join(os.path.dirname(INIT), "_core.abi3.so")
    owners = {p: os.stat(p) for p in (INIT, core)}
    b = make_bundle(args=["true"])
    cid = ctx.new_id()
    try:
        for p, st in owners.items():
            os.chown(p, 54321, st.st_gid)
            os.chmod(p, st.st_mode & 0o7777)
        r = runh("create", "--bundle", b, cid)
    finally:
        for p, st in owners.items():
            os.chown(p, st.st_uid, st.st_gid)
            os.chmod(p, st.st_mode & 0o7777)
    try:
        assert r.returncode == 0, r.stderr
    finally:
        runh("delete", "--force", cid)

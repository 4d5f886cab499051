"""linux.seccomp in real containers, under runh and under Debian's runc (libseccomp 2.5.4)
side by side: the same bundle, the same expectations.

The probe is a tiny static C program (`scall NR [ARGS...]`, built once per session with
gcc) that makes one raw syscall and prints its result and errno, so that each check reads
the errno itself rather than busybox's wording. Its calls are chosen so that, without a
filter and with CAP_SYS_ADMIN, they succeed (or fail differently): an EPERM seen under the
profile is the profile's doing, not a missing capability.
"""

import ctypes
import errno
import fcntl
import json
import os
import platform
import select
import shutil
import socket
import struct
import subprocess
import threading

import pytest

from conftest import REPO, Runner, run_container

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64",
                                reason="syscall numbers and the fixture profile are x86_64's")

DEFAULT_PROFILE = os.path.join(REPO, "tests", "fixtures", "seccomp_default_amd64.json")
RUNC = shutil.which("runc") or "/usr/sbin/runc"

# x86_64 syscall numbers used by the probes.
NR = {"mount": 165, "sethostname": 170, "keyctl": 250, "unshare": 272, "mkdir": 83,
      "mkdirat": 258, "getpid": 39}
CLONE_NEWNS = 0x20000
KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING = 0, -2

SCALL_C = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long a[6] = {0};
    for (int i = 2; i < argc && i < 8; i++) a[i - 2] = strtol(argv[i], 0, 0);
    errno = 0;
    long r = syscall(strtol(argv[1], 0, 0), a[0], a[1], a[2], a[3], a[4], a[5]);
    printf("nr=%s ret=%ld errno=%d\n", argv[1], r, r < 0 ? errno : 0);
    return 0;
}
"""


@pytest.fixture(scope="session")
def scall(tmp_path_factory):
    gcc = shutil.which("gcc")
    if not gcc:
        pytest.skip("gcc is needed to build the syscall probe")
    d = tmp_path_factory.mktemp("scall")
    src, out = d / "scall.c", d / "scall"
    src.write_text(SCALL_C)
    r = subprocess.run([gcc, "-static", "-O1", "-o", str(out), str(src)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build a static probe: {r.stderr[-300:]}")
    return str(out)


def default_profile():
    with open(DEFAULT_PROFILE) as f:
        p = json.load(f)
    p.pop("_comment", None)
    return p


@pytest.fixture(params=["runh", "runc"])
def runtime(request, runh, ctx):
    """The runtime under test: runh, or runc with its own root in the test's dir."""
    if request.param == "runc":
        if not os.access(RUNC, os.X_OK):
            pytest.skip("runc not installed")
        return Runner(RUNC, ctx.path("runc-root"))
    return runh


@pytest.fixture
def bundle_with(make_bundle, scall):
    """bundle_with(args, seccomp=profile|None, edit=fn): a bundle with the probe in /bin."""
    def make(args, seccomp=None, edit=None, sys_admin=False):
        def full(c):
            linux = c.setdefault("linux", {})
            if seccomp is not None:
                linux["seccomp"] = seccomp
            else:
                linux.pop("seccomp", None)
            if sys_admin:
                for k in ("bounding", "effective", "permitted"):
                    c["process"]["capabilities"][k] = sorted(set(c["process"]["capabilities"][k])
                                                             | {"CAP_SYS_ADMIN"})
            if edit:
                edit(c)
        b = make_bundle(args=list(args), edit=full)
        shutil.copy2(scall, os.path.join(b, "rootfs", "bin", "scall"))
        return b
    return make


def probes(*calls):
    """A shell script that runs each (name, args...) through the probe."""
    lines = [" ".join(["scall", str(NR[c[0]]), *map(str, c[1:])]) for c in calls]
    return ["/bin/sh", "-c", "; ".join(lines) + "; grep '^Seccomp:' /proc/self/status"]


def parse(out):
    """{syscall name: (ret, errno)} from the probe's lines, and the Seccomp mode."""
    names = {str(v): k for k, v in NR.items()}
    res, mode = {}, None
    for line in out.splitlines():
        if line.startswith("nr="):
            f = dict(kv.split("=", 1) for kv in line.split())
            res[names[f["nr"]]] = (int(f["ret"]), int(f["errno"]))
        elif line.startswith("Seccomp:"):
            mode = int(line.split()[1])
    return res, mode


DENIED = [("unshare", CLONE_NEWNS), ("mount", 0, 0, 0, 0, 0),
          ("keyctl", KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 1)]


def test_default_profile_denies_with_eperm(runtime, ctx, bundle_with):
    """Docker's default profile: unshare, mount and keyctl get EPERM even with
    CAP_SYS_ADMIN, where without the profile they succeed or fail otherwise."""
    free = run_container(runtime, ctx, bundle_with(probes(*DENIED), sys_admin=True))
    assert free.returncode == 0, free.stderr
    res, mode = parse(free.stdout)
    assert mode == 0, free.stdout
    assert res["unshare"] == (0, 0), free.stdout
    assert res["mount"][1] not in (0, errno.EPERM), free.stdout  # EFAULT: NULL arguments
    assert res["keyctl"][0] > 0, free.stdout

    r = run_container(runtime, ctx, bundle_with(probes(*DENIED), seccomp=default_profile(), sys_admin=True))
    assert r.returncode == 0, r.stderr
    res, mode = parse(r.stdout)
    assert mode == 2, r.stdout
    for name in ("unshare", "mount", "keyctl"):
        assert res[name] == (-1, errno.EPERM), f"{name}: {r.stdout}"


def test_default_profile_ordinary_work(runtime, ctx, bundle_with):
    script = ("set -e; ls / >/dev/null; echo data > /dev/shm/f; cat /dev/shm/f; ps >/dev/null; "
              "sh -c 'exit 3' || echo child=$?; date +%s >/dev/null; sleep 0; id -u; "
              "grep '^Seccomp:' /proc/self/status")
    r = run_container(runtime, ctx, bundle_with(["/bin/sh", "-c", script], seccomp=default_profile()))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["data", "child=3", "0", "Seccomp:", "2"], r.stdout


def test_without_no_new_privileges_as_a_user(runtime, ctx, bundle_with):
    """noNewPrivileges false: the filter is loaded while init still has CAP_SYS_ADMIN
    (before the switch to uid 1000 and the capability drop), so this must work."""
    def edit(c):
        c["process"]["noNewPrivileges"] = False
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
    r = run_container(runtime, ctx, bundle_with(probes(("unshare", CLONE_NEWNS)), seccomp=default_profile(),
                                                edit=edit))
    assert r.returncode == 0, r.stderr
    res, mode = parse(r.stdout)
    assert mode == 2 and res["unshare"] == (-1, errno.EPERM), r.stdout
    r = run_container(runtime, ctx, bundle_with(["/bin/sh", "-c", "id -u; grep NoNewPrivs /proc/self/status"],
                                                seccomp=default_profile(), edit=edit))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1000", "NoNewPrivs:", "0"], r.stdout


def _allow_all_but(rules, **extra):
    p = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
         "syscalls": rules}
    p.update(extra)
    return p


def test_errno_rule_returns_errno_ret(runtime, ctx, bundle_with):
    prof = _allow_all_but([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}])
    r = run_container(runtime, ctx, bundle_with(["/bin/sh", "-c", "mkdir /tmp/x; echo rc=$?"], seccomp=prof))
    assert r.returncode == 0, r.stderr
    assert "Function not implemented" in r.stderr and "rc=1" in r.stdout, (r.stdout, r.stderr)
    # Argument rules: mkdirat with a specific mode only (scall passes dirfd, path, mode).
    prof = _allow_all_but([{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
                            "args": [{"index": 2, "value": 0o123, "op": "SCMP_CMP_EQ"}]}])
    r = run_container(runtime, ctx, bundle_with(probes(("mkdirat", -100, 0, 0o123)), seccomp=prof))
    res, _ = parse(r.stdout)
    assert res["mkdirat"] == (-1, 77), r.stdout
    r = run_container(runtime, ctx, bundle_with(probes(("mkdirat", -100, 0, 0o124)), seccomp=prof))
    res, _ = parse(r.stdout)
    assert res["mkdirat"] == (-1, errno.EFAULT), r.stdout  # NULL path: the rule did not match


def test_default_errno_ret(runtime, ctx, bundle_with):
    """defaultAction ERRNO with defaultErrnoRet: everything not allowed fails with it."""
    prof = default_profile()
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO"
    prof["defaultErrnoRet"] = 95
    for rule in prof["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n != "getpid"]
    prof["syscalls"] = [r for r in prof["syscalls"] if r["names"]]
    r = run_container(runtime, ctx, bundle_with(probes(("getpid",)), seccomp=prof))
    assert r.returncode == 0, r.stderr
    res, _ = parse(r.stdout)
    assert res["getpid"] == (-1, 95), r.stdout


def test_kill_process_rule(runtime, ctx, bundle_with):
    prof = _allow_all_but([{"names": ["sethostname"], "action": "SCMP_ACT_KILL_PROCESS"}])
    r = run_container(runtime, ctx, bundle_with(["hostname", "foo"], seccomp=prof))
    assert r.returncode == 128 + 31, (r.returncode, r.stderr)  # SIGSYS


def test_bad_profile_fails_create(runtime, ctx, bundle_with):
    prof = _allow_all_but([{"names": ["mkdir"], "action": "SCMP_ACT_NO_SUCH"}])
    r = run_container(runtime, ctx, bundle_with(["true"], seccomp=prof))
    assert r.returncode != 0
    if runtime.path != RUNC:
        assert "linux.seccomp.syscalls[0].action" in r.stderr, r.stderr


def test_cache_entry_under_root(runh, ctx, bundle_with):
    """The compiled filter is cached under --root and reused while the root holds a
    container; it goes with the root's last container, because containerd expects its
    --root to be empty once every container is deleted (clients-check ctr-no-leftovers)."""
    holder = ctx.new_id("holder")
    r = runh("create", "--bundle", bundle_with(["sleep", "100"]), holder)
    assert r.returncode == 0, r.stderr
    try:
        b = bundle_with(["true"], seccomp=default_profile())
        for _ in range(2):  # miss, then hit
            r = run_container(runh, ctx, b)
            assert r.returncode == 0, r.stderr
        entries = os.listdir(os.path.join(ctx.root, ".cache", "seccomp"))
        assert len(entries) == 1 and entries[0].split("-")[1] == "x86_64", entries
        assert runh("list", "-q").stdout.split() == [holder]  # the cache is no container
    finally:
        runh("delete", "--force", holder)
    assert os.listdir(ctx.root) == [], os.listdir(ctx.root)


@pytest.mark.parametrize("flags", [["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                    "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                                   ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]])
def test_filter_flags(runtime, ctx, bundle_with, flags):
    """Flags are passed to seccomp(2) and the filter still enforces; WAIT_KILLABLE_RECV
    without a NOTIFY rule is dropped (the kernel takes it only with a listener)."""
    if runtime.path == RUNC:
        pytest.skip("runc 1.1.5 refuses linux.seccomp.flags (\"seccomp flags are not yet "
                    "supported by runc\"); flag support came in runc 1.2")
    prof = default_profile()
    prof["flags"] = flags
    r = run_container(runtime, ctx, bundle_with(probes(("unshare", CLONE_NEWNS)), seccomp=prof, sys_admin=True))
    assert r.returncode == 0, r.stderr
    res, mode = parse(r.stdout)
    assert mode == 2 and res["unshare"] == (-1, errno.EPERM), r.stdout


# ------------------------------------------------------------------ SCMP_ACT_NOTIFY

# linux/seccomp.h: struct seccomp_notif is 80 bytes, seccomp_notif_resp 24; the ioctls are
# _IOWR('!', 0|1, size).
NOTIF_SIZE, RESP_SIZE = 80, 24
SECCOMP_IOCTL_NOTIF_RECV = (3 << 30) | (NOTIF_SIZE << 16) | (ord("!") << 8) | 0
SECCOMP_IOCTL_NOTIF_SEND = (3 << 30) | (RESP_SIZE << 16) | (ord("!") << 8) | 1


class Agent(threading.Thread):
    """A seccomp agent at `path`: receives the listener fd and the state JSON, then answers
    every notified syscall with `answer(nr) -> (val, error)`."""

    def __init__(self, path, answer):
        super().__init__(daemon=True)
        self.answer = answer
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.sock.settimeout(30)
        self.state, self.fds, self.seen, self.error = None, 0, [], None
        self.stop = threading.Event()

    def run(self):
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(30)
                msg, fds, _, _ = socket.recv_fds(conn, 1 << 16, 4)
                self.fds = len(fds)
                self.state = json.loads(msg)
            for fd in fds[1:]:
                os.close(fd)
            self.serve(fds[0])
        except Exception as e:  # reported by the test
            self.error = e

    def serve(self, fd):
        try:
            p = select.poll()
            p.register(fd, select.POLLIN)
            while not self.stop.is_set():
                ev = p.poll(100)
                if not ev:
                    continue
                if ev[0][1] & (select.POLLHUP | select.POLLERR):
                    return  # every filtered process is gone
                buf = bytearray(NOTIF_SIZE)  # the kernel wants it zeroed
                try:
                    fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, buf, True)
                except OSError as e:
                    if e.errno in (errno.EINTR, errno.ENOENT):
                        continue
                    raise
                nid, pid, _flags, nr = struct.unpack_from("=QIIi", buf)
                self.seen.append(nr)
                val, error = self.answer(nr)
                resp = bytearray(struct.pack("=QqiI", nid, val, error, 0))
                try:
                    fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, resp, True)
                except OSError as e:
                    if e.errno != errno.ENOENT:  # the caller died meanwhile
                        raise
        finally:
            os.close(fd)

    def close(self):
        self.stop.set()
        self.join(10)
        self.sock.close()


@pytest.mark.parametrize("outcome", ["success", "errno"])
def test_notify_listener(runtime, ctx, bundle_with, outcome):
    """A NOTIFY rule on mkdir: the agent gets the listener fd and the container process
    state at listenerPath, and its answer is what mkdir returns in the container (the
    rootfs is read-only, so "made" can only come from the agent)."""
    path = ctx.path("agent.sock")
    want = {"success": (0, 0), "errno": (0, -errno.EXDEV)}[outcome]
    agent = Agent(path, lambda nr: want)
    agent.start()
    prof = _allow_all_but([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
                          listenerPath=path, listenerMetadata="meta-1")
    b = bundle_with(["/bin/sh", "-c", "mkdir /tmp/x && echo made; test -d /tmp/x || echo absent"], seccomp=prof,
                    edit=lambda c: c.setdefault("annotations", {}).update({"a.b": "c"}))
    try:
        r = run_container(runtime, ctx, b)
    finally:
        agent.close()
    assert agent.error is None, repr(agent.error)
    assert r.returncode == 0, r.stderr
    if outcome == "success":
        assert r.stdout.split() == ["made", "absent"], (r.stdout, r.stderr)
    else:
        assert r.stdout.split() == ["absent"] and "Invalid cross-device link" in r.stderr, (r.stdout, r.stderr)
    assert agent.seen and set(agent.seen) <= {NR["mkdir"], NR["mkdirat"]}, agent.seen
    s = agent.state
    assert agent.fds == 1
    assert s["fds"] == ["seccompFd"] and s["metadata"] == "meta-1", s
    assert s["pid"] > 0 and s["state"]["pid"] == s["pid"], s
    assert s["state"]["bundle"] == b and s["state"]["status"] in ("creating", "created"), s
    assert s["state"]["id"].startswith(ctx.token) and s["state"]["annotations"] == {"a.b": "c"}, s
    assert s["ociVersion"], s


def test_notify_without_listener_path_fails(runtime, ctx, bundle_with):
    prof = _allow_all_but([{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}])
    r = run_container(runtime, ctx, bundle_with(["true"], seccomp=prof))
    assert r.returncode != 0

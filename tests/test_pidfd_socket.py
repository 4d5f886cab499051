"""--pidfd-socket (runc 1.2) for create, run and exec: the caller's AF_UNIX socket receives
one SCM_RIGHTS fd, a pidfd of the container's init (create, run) or of the exec'd process,
so that the caller holds the process itself, with no pid-reuse race. A socket that cannot
be connected fails the call before any process exists.

Debian's runc (1.1.5) predates the flag, so these tests check the kernel's view of the fd
(its fdinfo names the pid) and use it (pidfd_send_signal) rather than compare with runc.
"""

import os
import signal

import pytest

from conftest import sh
from test_exec import running  # noqa: F401  (fixture)
from test_tty import _listener


def _pidfd_pid(fd):
    """The pid a pidfd refers to, from its fdinfo ("Pid:" line, Linux 5.4+)."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("Pid:"):
                return int(line.split()[1])
    raise AssertionError(f"fd {fd} is not a pidfd")


def _received(thread, got):
    thread.join(timeout=30)
    assert "fd" in got, got
    return got["fd"]


@pytest.mark.parametrize("command", ["create", "run"])
def test_init_pidfd(runh, ctx, make_bundle, command):
    b = make_bundle(args=["sleep", "1000"])
    cid, sock = ctx.new_id(), ctx.path("pidfd.sock")
    thread, got = _listener(sock)
    args = ["run", "-d"] if command == "run" else ["create"]
    try:
        r = runh(*args, "--pidfd-socket", sock, "--bundle", b, cid)
        assert r.returncode == 0, r.stderr
        fd = _received(thread, got)
        try:
            assert _pidfd_pid(fd) == runh.state(cid)["pid"]
            # The fd is a working handle: a signal through it stops the container.
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            runh.wait_status(cid, "stopped")
        finally:
            os.close(fd)
    finally:
        runh("delete", "--force", cid)


@pytest.mark.parametrize("detach", [True, False], ids=["detached", "foreground"])
def test_exec_pidfd(runh, ctx, running, detach):  # noqa: F811
    cid, init, _ = running()
    sock, pid_file = ctx.path("pidfd.sock"), ctx.path("exec.pid")
    thread, got = _listener(sock)
    flags = ["-d", "--pid-file", pid_file] if detach else []
    r = runh("exec", "--pidfd-socket", sock, *flags, cid, *sh("sleep 0.2; exit 3"))
    assert r.returncode == (0 if detach else 3), r.stderr
    fd = _received(thread, got)
    try:
        if detach:
            # The exec'd process, not the init: the pid runh reported in the pid file.
            with open(pid_file) as f:
                assert _pidfd_pid(fd) == int(f.read()) != init
        else:
            assert _pidfd_pid(fd) in (-1, 0) or _pidfd_pid(fd) != init  # exited by now
    finally:
        os.close(fd)


def test_unconnectable_socket_fails_cleanly(runh, ctx, running, make_bundle):  # noqa: F811
    """Nothing is started when the socket cannot be connected (the leftovers check would
    see a container or process)."""
    missing = ctx.path("no-such.sock")
    cid, _, _ = running()
    r = runh("exec", "--pidfd-socket", missing, cid, "true")
    assert r.returncode == 1
    assert "pidfd socket" in r.stderr and missing in r.stderr, r.stderr
    b = make_bundle(args=["true"])
    other = ctx.new_id()
    r = runh("create", "--pidfd-socket", missing, "--bundle", b, other)
    assert r.returncode == 1
    assert "pidfd socket" in r.stderr, r.stderr
    assert runh("state", other).returncode == 1

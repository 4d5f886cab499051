"""Terminals: exec with a console socket (the pty master over SCM_RIGHTS), consoleSize, and
the foreground pty proxy of `run`/`exec -t` (raw mode, window size at start and on SIGWINCH,
the exit status passed through), driven from a pty made with pty.fork as a user's terminal."""

import fcntl
import json
import os
import pty
import select
import socket
import struct
import termios
import threading
import time

import pytest

from conftest import sh


def _listener(path):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    got = {}

    def accept():
        srv.settimeout(30)
        try:
            conn, _ = srv.accept()
            msg, fds, _, _ = socket.recv_fds(conn, 64, 1)
            got["fds"], got["fd"], got["payload"] = fds, fds[0], msg
            conn.close()
        except OSError as e:
            got["err"] = e
        finally:
            srv.close()

    t = threading.Thread(target=accept)
    t.start()
    return t, got


def _read_until_eof(fd, timeout=20):
    out = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if not r:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: the slave side is closed
            break
        if not data:
            break
        out += data
    return out


def _winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@pytest.fixture
def running(runh, ctx, make_bundle):
    made = []

    def make():
        b = make_bundle(args=["sleep", "1000"])
        cid = ctx.new_id()
        r = runh("run", "-d", "--bundle", b, cid)
        assert r.returncode == 0, r.stderr
        made.append(cid)
        return cid

    yield make
    for cid in made:
        runh("delete", "--force", cid)


def test_exec_console_socket(runh, ctx, running):
    cid = running()
    path = ctx.path("console.sock")
    t, got = _listener(path)
    p = {"args": ["sh", "-c", "tty; stty size; echo hi; exit 4"], "cwd": "/", "terminal": True,
         "env": ["PATH=/bin"], "consoleSize": {"height": 30, "width": 100}}
    pf = ctx.path("process.json")
    with open(pf, "w") as f:
        json.dump(p, f)
    r = runh("exec", "--process", pf, "--detach", "--console-socket", path,
             "--pid-file", ctx.path("pid"), cid)
    t.join()
    assert r.returncode == 0, r.stderr
    assert "fd" in got, got
    assert got["payload"].startswith(b"/dev/pts/")
    out = _read_until_eof(got["fd"]).decode()
    os.close(got["fd"])
    assert out.splitlines()[0].startswith("/dev/pts/"), out
    assert "30 100" in out  # consoleSize honoured
    assert "hi" in out
    # `exec -t` from flags with a console socket works too
    path = ctx.path("console2.sock")
    t, got = _listener(path)
    r = runh("exec", "-t", "-d", "--console-socket", path, cid, "sh", "-c", "echo flags-tty")
    t.join()
    assert r.returncode == 0, r.stderr
    assert b"flags-tty" in _read_until_eof(got["fd"])
    os.close(got["fd"])


def test_detached_tty_needs_socket(runh, running):
    cid = running()
    r = runh("exec", "-t", "-d", cid, "true")
    assert r.returncode != 0


def _in_pty(argv, rows=24, cols=80, interact=None, timeout=30):
    """Run argv with a new pty as its controlling terminal and stdio; returns (output,
    exit status, termios flags seen while it ran, termios after)."""
    pid, master = pty.fork()
    if pid == 0:
        try:
            _winsize(0, rows, cols)
            os.execv(argv[0], argv)
        finally:
            os._exit(99)
    seen = {}
    out = b""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    break
                if not data:
                    break
                out += data
                if interact:
                    interact(master, out, seen)
        _, status = os.waitpid(pid, 0)
        after = termios.tcgetattr(master)
    finally:
        os.close(master)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(status), seen, after


def _check_raw(master, out, seen):
    if b"READY" in out and "lflag" not in seen:
        seen["lflag"] = termios.tcgetattr(master)[3]


def test_run_foreground_terminal(runh, ctx, make_bundle):
    b = make_bundle(args=sh("tty; stty size; echo READY; sleep 0.3; exit 3"), terminal=True)
    cid = ctx.new_id()
    out, code, seen, after = _in_pty(runh.argv("run", "--bundle", b, cid), rows=33, cols=111,
                                     interact=_check_raw)
    assert code == 3, out
    assert "/dev/pts/0" in out
    assert "33 111" in out
    # runh's terminal was raw while the container ran (the container's pty echoes), and
    # is restored afterwards.
    assert not seen["lflag"] & (termios.ICANON | termios.ECHO)
    assert after[3] & termios.ICANON
    assert not os.path.exists(os.path.join(runh.root, cid))  # deleted after the run


def test_exec_foreground_tty_and_sigwinch(runh, running):
    cid = running()

    def interact(master, out, seen):
        if b"FIRST" in out and "resized" not in seen:
            seen["resized"] = True
            _winsize(master, 50, 132)  # the kernel sends SIGWINCH to runh (foreground)
            time.sleep(0.3)
            os.write(master, b"go\r")

    script = "stty size; echo FIRST; read x; stty size; exit 6"
    out, code, seen, _ = _in_pty(runh.argv("exec", "-t", cid, "sh", "-c", script), rows=40, cols=90,
                                 interact=interact)
    assert code == 6, out
    assert "40 90" in out
    assert "50 132" in out

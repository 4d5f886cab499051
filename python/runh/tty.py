"""Foreground processes: signal forwarding, and the pty proxy for `run`/`exec -t` without a
console socket.

With process.terminal and no --console-socket, runh is the console socket's listener
itself: the core sends the pty master to a private socket made here, and runh copies bytes
between its own stdio and the master, with its terminal in raw mode (the container's line
discipline does the editing and echo), the window size copied on start and on every
SIGWINCH, and the process's exit status as runh's. Nothing here is on the hot path: it is
imported only by a foreground exec, or a run with a terminal.
"""

import posix as os

import _signal

# termios/ioctl numbers (asm-generic, x86_64 and aarch64 alike).
_TIOCGWINSZ = 0x5413
_TIOCSWINSZ = 0x5414


def exit_status(status):
    """A wait status the shell way: the code, or 128+N if killed by signal N."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 255


def wait(pid):
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 255
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            return exit_status(status)


class Forwarder:
    """Handlers that pass signals on to the process. Installed before the process exists
    (so none is lost); what arrives before `set_pid` is held and delivered then (the
    process may already run, and print, before the core returns its pid)."""

    def __init__(self, names):
        self.pid = None
        self.pending = []
        for name in names:
            n = getattr(_signal, name, None)
            if n is not None:
                _signal.signal(n, self._handler)

    def _handler(self, signum, frame):
        if self.pid is None:
            self.pending.append(signum)
            return
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def set_pid(self, pid):
        self.pid = pid
        while self.pending:
            self._handler(self.pending.pop(0), None)


class ConsoleListener:
    """A private AF_UNIX listener that receives the pty master (one SCM_RIGHTS fd), as a
    --console-socket caller would."""

    def __init__(self):
        import _socket

        self.dir = f"/tmp/runh-tty-{os.getpid()}-{os.urandom(4).hex()}"
        os.mkdir(self.dir, 0o700)
        self.path = self.dir + "/console.sock"
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def receive(self):
        """The master fd sent by the core (it is queued on the socket already)."""
        import _socket

        fd, _ = self.sock._accept()  # _socket's own accept: (fd, address)
        conn = _socket.socket(fileno=fd)
        try:
            _, anc, _, _ = conn.recvmsg(64, _socket.CMSG_SPACE(4))
        finally:
            conn.close()
        for level, kind, data in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
                return int.from_bytes(data[:4], "little")
        from runh.errors import SyncError

        raise SyncError("no pty master received on the console socket")

    def close(self):
        self.sock.close()
        for p in (self.path,):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass


def _copy_winsize(src, dst):
    import fcntl

    try:
        ws = fcntl.ioctl(src, _TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, _TIOCSWINSZ, ws)
    except OSError:
        pass


def terminal_size(fd):
    """(rows, cols) of the terminal on fd, or None if it is not a terminal."""
    import fcntl

    try:
        ws = fcntl.ioctl(fd, _TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None
    rows, cols = int.from_bytes(ws[0:2], "little"), int.from_bytes(ws[2:4], "little")
    return (rows, cols) if rows and cols else None


def copy_size_to(master):
    """Before start: the pty gets runh's terminal size (the container may ask at once)."""
    if os.isatty(0):
        _copy_winsize(0, master)


def _write_all(fd, data):
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            import select

            select.select([], [fd], [])
            continue
        data = data[n:]


def proxy(master, pid):
    """Copy stdin→master and master→stdout until process `pid` (our child) has exited and
    the master is drained; return its exit status. stdin, if a terminal, is raw meanwhile."""
    import select
    import termios

    stdin, stdout = 0, 1
    saved = None
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        raw = termios.tcgetattr(stdin)
        # cfmakeraw
        raw[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR
                    | termios.IGNCR | termios.ICRNL | termios.IXON)
        raw[1] &= ~termios.OPOST
        raw[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
        raw[2] &= ~(termios.CSIZE | termios.PARENB)
        raw[2] |= termios.CS8
        raw[6][termios.VMIN] = 1
        raw[6][termios.VTIME] = 0
        termios.tcsetattr(stdin, termios.TCSANOW, raw)
        _copy_winsize(stdin, master)
        _signal.signal(_signal.SIGWINCH, lambda s, f: _copy_winsize(stdin, master))
    pidfd = os.pidfd_open(pid)
    os.set_blocking(master, False)
    p = select.poll()
    p.register(master, select.POLLIN)
    p.register(pidfd, select.POLLIN)
    stdin_open = True
    try:
        p.register(stdin, select.POLLIN)
    except (OSError, ValueError):
        stdin_open = False
    status = None
    try:
        while True:
            for fd, ev in p.poll():
                if fd == master:
                    try:
                        data = os.read(master, 65536)
                    except BlockingIOError:
                        continue
                    except OSError:  # EIO: every slave fd is closed
                        data = b""
                    if data:
                        _write_all(stdout, data)
                    else:
                        p.unregister(master)
                elif fd == stdin:
                    data = os.read(stdin, 65536) if ev & (select.POLLIN | select.POLLHUP) else b""
                    if data:
                        _write_all(master, data)
                    else:
                        p.unregister(stdin)
                        stdin_open = False
                elif fd == pidfd:
                    status = wait(pid)
                    p.unregister(pidfd)
            if status is not None:
                # The process is gone: drain what it wrote (its children may keep the
                # slave open; stop at the first empty read).
                while True:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        break
                    if not data:
                        break
                    _write_all(stdout, data)
                return status
    finally:
        os.close(pidfd)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            _signal.signal(_signal.SIGWINCH, _signal.SIG_DFL)


def foreground_exec(c, process, command, o, forward):
    """`runh exec` without --detach: start the process, forward signals to it (or proxy a
    pty), return its exit status."""
    from runh.cli.exec_ import build_process, sub_cgroups

    if process is None:
        process = build_process(c, o, command)
    # With --process, the file decides (runc ignores -t then), and with a pty the window
    # size is the pty's business: SIGWINCH is not passed on.
    terminal = _terminal(process) if o["process"] else bool(o["tty"])
    fw = Forwarder([n for n in forward if n != "SIGWINCH" or not terminal])
    listener = None
    if terminal and not o["console_socket"]:
        listener = ConsoleListener()
    try:
        pid = c.exec(process, console_socket=o["console_socket"] or (listener and listener.path),
                     pidfd_socket=o["pidfd_socket"], pid_file=o["pid_file"], preserve_fds=o["preserve_fds"],
                     ignore_paused=o["ignore_paused"], cgroup=sub_cgroups(o["cgroup"]))
        fw.set_pid(pid)
        if listener is None:
            return wait(pid)
        master = listener.receive()
        listener.close()
        listener = None
        try:
            return proxy(master, pid)
        finally:
            os.close(master)
    finally:
        if listener is not None:
            listener.close()


def _terminal(process):
    from runh.jsonio import loads

    return bool(loads(process).get("terminal"))

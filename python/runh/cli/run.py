"""runh run: create and start a container; in the foreground, wait for it and return its status."""

from runh.cli._table import (BUNDLE, CONSOLE_SOCKET, NO_NEW_KEYRING, NO_PIVOT, PID_FILE,
                             PIDFD_SOCKET, PRESERVE_FDS, opt)

HELP = "create and run a container"
DESCRIPTION = """Create and start <container-id> from the bundle. In the foreground, signals
received by runh are forwarded to the container, runh exits with the container's exit status
(128+N if killed by signal N) and deletes it unless --keep is given."""
OPTIONS = (BUNDLE, CONSOLE_SOCKET, PIDFD_SOCKET,
           opt("--detach", "-d", kind="flag", help="detach from the container's process"),
           opt("--keep", kind="flag", help="do not delete the container after it exits"),
           PID_FILE, NO_PIVOT, NO_NEW_KEYRING, PRESERVE_FDS,
           opt("--no-subreaper", kind="flag", help="disable the use of the subreaper used to reap reparented processes"))
ARGS = (("container-id", True),)

# Signals a foreground `run` passes on to the container instead of acting on them itself.
_FORWARD = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH",
            "SIGCONT", "SIGALRM", "SIGPWR", "SIGURG", "SIGVTALRM", "SIGPROF", "SIGIO")


def run(g, o, args):
    from runh.container import Container
    from runh.errors import UsageError

    if o["detach"] and o["keep"]:
        raise UsageError("--detach and --keep cannot both be set")
    listener = None
    if not o["detach"] and not o["console_socket"] and _wants_terminal(o["bundle"]):
        # A foreground terminal: runh receives the pty master itself and proxies it.
        from runh.tty import ConsoleListener

        listener = ConsoleListener()
    # Without a pty to receive first, the container is started by create itself, under
    # the lock create holds (Container.create's `start`); the foreground's signal
    # handlers are installed just before, so that no signal is lost between start and
    # wait.
    start = None if listener else (_started if o["detach"] else _forwarding)
    try:
        c = Container.create(args[0], bundle=o["bundle"], root=g.root, pid_file=o["pid_file"],
                             console_socket=o["console_socket"] or (listener and listener.path),
                             pidfd_socket=o["pidfd_socket"],
                             no_pivot=o["no_pivot"], no_new_keyring=o["no_new_keyring"],
                             preserve_fds=o["preserve_fds"], detach=o["detach"],
                             systemd_cgroup=g.systemd_cgroup, start=start)
        master = listener.receive() if listener else None
    finally:
        if listener:
            listener.close()
    if master is not None:
        return _run_terminal(c, master, o)
    if o["detach"]:
        return 0
    status = c.wait()
    if not o["keep"]:
        _cleanup(c)
    return status


def _wants_terminal(bundle):
    """process.terminal of the bundle's config; parsed only if the word appears at all."""
    import posix

    path = (bundle or posix.getcwd()).rstrip("/") + "/config.json"
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return False  # create reports it
    if b'"terminal"' not in raw:
        return False
    from runh.jsonio import loads

    try:
        return bool((loads(raw).get("process") or {}).get("terminal"))
    except ValueError:
        return False


def _run_terminal(c, master, o):
    from runh import tty

    try:
        tty.copy_size_to(master)
        try:
            c.start()
        except BaseException:
            _cleanup(c)
            raise
        # The container's pty has its own line discipline: ^C arrives as a byte and the
        # container's foreground group gets the SIGINT; runh forwards only what is sent
        # to runh itself (kill), and SIGWINCH becomes a window-size copy.
        fw = tty.Forwarder([n for n in _FORWARD if n != "SIGWINCH"])
        fw.set_pid(c.pid)
        status = tty.proxy(master, c.pid)
    finally:
        import posix

        posix.close(master)
    if not o["keep"]:
        _cleanup(c)
    return status


def _started(c):
    pass


def _forwarding(c):
    """Forward the signals runh receives to the container's init from here on."""
    import _signal

    def forward(signum, frame):
        try:
            c._signal(signum)
        except Exception:
            pass  # already gone: waitpid returns

    for name in _FORWARD:
        n = getattr(_signal, name, None)
        if n is not None:
            _signal.signal(n, forward)


def _cleanup(c):
    try:
        c.delete(force=True)
    except Exception:
        pass

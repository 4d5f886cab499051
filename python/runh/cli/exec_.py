"""runh exec: run a new process inside a running container (runc's man/runc-exec.8.md).

containerd always calls `exec --process P.json --detach --pid-file F [--console-socket S] ID`;
a shell user calls `exec [-t] ID ARGS...`. Without --process, the process is the container's
config.json process with ARGS and the flags applied, as runc builds it.
"""

from runh.cli._table import CONSOLE_SOCKET, PID_FILE, PIDFD_SOCKET, PRESERVE_FDS, opt

HELP = "execute new process inside the container"
DESCRIPTION = """Run <command> inside the running container <container-id>. The process joins every
namespace and the cgroup of the container. In the foreground, runh forwards signals to it and
exits with its exit status (128+N if killed by signal N)."""
OPTIONS = (
    CONSOLE_SOCKET,
    PIDFD_SOCKET,
    opt("--cwd", help="current working directory in the container"),
    opt("--env", "-e", kind="multi", help="set environment variables"),
    opt("--tty", "-t", kind="flag", help="allocate a pseudo-TTY"),
    opt("--user", "-u", help="UID (format: <uid>[:<gid>])"),
    opt("--additional-gids", "-g", kind="multi", help="additional gids"),
    opt("--process", "-p", help="path to the process.json"),
    opt("--detach", "-d", kind="flag", help="detach from the container's process"),
    PID_FILE,
    opt("--process-label", help="set the asm process label for the process commonly used with selinux"),
    opt("--apparmor", help="set the apparmor profile for the process"),
    opt("--no-new-privs", kind="flag", help="set the no new privileges value for the process"),
    opt("--cap", "-c", kind="multi", help="add a capability to the bounding set for the process"),
    PRESERVE_FDS,
    opt("--cgroup", help="run the process in an (existing) sub-cgroup(s) (not supported yet)"),
    opt("--ignore-paused", kind="flag", help="allow exec in a paused container"),
    opt("--no-subreaper", kind="flag", help="ignored (runh exec never becomes a subreaper)"),
)
ARGS = (("container-id", True), ("command", "*"))

# Signals a foreground exec passes on to the process (as `run` does to the container).
_FORWARD = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH",
            "SIGCONT", "SIGALRM", "SIGPWR", "SIGURG", "SIGVTALRM", "SIGPROF", "SIGIO")


def _user(proc, text):
    from runh.errors import UsageError

    uid, _, gid = text.partition(":")
    try:
        proc.setdefault("user", {})["uid"] = int(uid)
        if gid:
            proc["user"]["gid"] = int(gid)
    except ValueError:
        raise UsageError(f"parsing {text} as uid[:gid] failed: not a number") from None


def build_process(bundle, o, command):
    """The process JSON (bytes) from the flags, on top of the config's process (runc's
    getProcess): args replaced, --cwd replaces, --env appends, --cap adds to every set."""
    from runh.errors import ConfigError, UsageError
    from runh.jsonio import dumps, loads
    from runh.state import join

    if not command:
        raise UsageError("exec: no command given (args must not be empty)")
    try:
        with open(join(bundle, "config.json"), "rb") as f:
            proc = loads(f.read()).get("process") or {}
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the container's config.json: {e}") from None
    proc["args"] = list(command)
    proc["terminal"] = bool(o["tty"])
    proc.pop("consoleSize", None)
    if o["tty"] and not o["detach"] and not o["console_socket"]:
        # The size must be on the pty before the process runs (it may ask at once):
        # runh-init sets consoleSize before execve; SIGWINCH keeps it current later.
        from runh.tty import terminal_size

        size = terminal_size(0)
        if size:
            proc["consoleSize"] = {"height": size[0], "width": size[1]}
    if o["cwd"]:
        proc["cwd"] = o["cwd"]
    proc.setdefault("cwd", "/")
    if o["env"]:
        proc["env"] = list(proc.get("env") or []) + list(o["env"])
    if o["user"]:
        _user(proc, o["user"])
    if o["additional_gids"]:
        user = proc.setdefault("user", {})
        try:
            user["additionalGids"] = list(user.get("additionalGids") or []) + [int(g) for g in o["additional_gids"]]
        except ValueError:
            raise UsageError("--additional-gids takes numbers") from None
    if o["cap"]:
        c = proc.get("capabilities") or {}
        # As runc (checked against 1.1.5 by tests/test_exec_runc_diff.py): the cap joins
        # the bounding, effective and permitted sets, and the ambient set only when the
        # process has inheritable caps (ambient needs inheritable); never inheritable.
        names = [n.upper() if n.upper().startswith("CAP_") else "CAP_" + n.upper() for n in o["cap"]]
        sets = ["bounding", "effective", "permitted"] + (["ambient"] if c.get("inheritable") else [])
        for s in sets:
            c[s] = list(c.get(s) or []) + names
        proc["capabilities"] = c
    if o["no_new_privs"]:
        proc["noNewPrivileges"] = True
    if o["apparmor"]:
        proc["apparmorProfile"] = o["apparmor"]
    if o["process_label"]:
        proc["selinuxLabel"] = o["process_label"]
    return dumps(proc).encode()


def run(g, o, args):
    from runh.container import Container
    from runh.errors import NotSupported, UsageError

    if o["pidfd_socket"]:
        raise NotSupported("--pidfd-socket is not supported yet")
    if o["cgroup"]:
        raise NotSupported("exec --cgroup is not supported yet")
    if o["preserve_fds"] < 0:
        raise UsageError("--preserve-fds must be >= 0")
    c = Container.load(args[0], g.root)
    if o["process"]:
        if len(args) > 1:
            raise UsageError("exec: --process and a command cannot both be given")
        try:
            with open(o["process"], "rb") as f:
                process = f.read()
        except OSError as e:
            from runh.errors import ConfigError

            raise ConfigError(f"cannot read process file {o['process']}: {e.strerror}", e.errno) from None
    else:
        process = None  # built after the state checks (it needs the bundle)

    if o["detach"]:
        # containerd's shim: the process must outlive runh; it is reparented to the
        # caller's subreaper when runh exits.
        if process is None:
            process = build_process((c._state or {}).get("bundle", ""), o, args[1:])
        c.exec(process, console_socket=o["console_socket"], pid_file=o["pid_file"],
               preserve_fds=o["preserve_fds"], ignore_paused=o["ignore_paused"])
        return 0

    from runh import tty

    return tty.foreground_exec(c, process, args[1:], o, _FORWARD)

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
    opt("--cgroup", kind="multi",
        help="run the process in an (existing) sub-cgroup: [<controller>[,<controller>...]:]<path>"),
    opt("--ignore-paused", kind="flag", help="allow exec in a paused container"),
    opt("--no-subreaper", kind="flag", help="ignored (runh exec never becomes a subreaper)"),
)
ARGS = (("container-id", True), ("command", "*"))

# Signals a foreground exec passes on to the process (as `run` does to the container).
_FORWARD = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH",
            "SIGCONT", "SIGALRM", "SIGPWR", "SIGURG", "SIGVTALRM", "SIGPROF", "SIGIO")


def _ids(text, what):
    """Non-negative numbers: runc's `--user uid[:gid]` and `--additional-gids`."""
    from runh.errors import UsageError

    try:
        ids = [int(t) for t in text]
    except ValueError:
        ids = [-1]
    if any(i < 0 or i > 0xFFFFFFFF for i in ids):
        raise UsageError(what) from None
    return ids


def sub_cgroups(values):
    """`--cgroup` values ([ctrl[,ctrl...]:]path, repeatable, as runc's) as
    {controller or "": path}."""
    from runh.errors import UsageError

    out = {}
    for v in values:
        ctrls, sep, path = v.partition(":")
        keys = [c.strip() for c in ctrls.split(",")] if sep else [""]
        if not sep:
            path = v
        for k in keys:
            if (sep and not k) or k in out:
                raise UsageError(f"invalid --cgroup argument: {v}")
            out[k] = path
    return out


def build_process(c, o, command):
    """The process JSON (bytes) from the flags, on top of the process of the config the
    container `c` was created with (runc's getProcess). The rule is the core's
    `exec::process_from_config`, which the native launcher uses too: args replaced, --cwd
    replaces, --env appends, --cap adds to every set but inheritable."""
    from runh.container import _core
    from runh.errors import UsageError

    if not command:
        raise UsageError("exec: no command given (args must not be empty)")
    config = c.config()
    size = None
    if o["tty"] and not o["detach"] and not o["console_socket"]:
        # The size must be on the pty before the process runs (it may ask at once):
        # runh-init sets consoleSize before execve; SIGWINCH keeps it current later.
        from runh.tty import terminal_size

        size = terminal_size(0) or None
    uid = gid = None
    if o["user"]:
        u, sep, g = o["user"].partition(":")
        ids = _ids([u, g] if sep else [u], f"parsing {o['user']} as uid[:gid] failed: not a number")
        uid, gid = ids[0], (ids[1] if sep else None)
    gids = _ids(o["additional_gids"], "--additional-gids takes numbers") if o["additional_gids"] else []
    return _core().exec_process(
        config, list(command), terminal=bool(o["tty"]), console_size=size, cwd=o["cwd"] or None,
        env=list(o["env"]), uid=uid, gid=gid, additional_gids=gids, caps=list(o["cap"]),
        no_new_privileges=bool(o["no_new_privs"]), apparmor=o["apparmor"] or None,
        selinux_label=o["process_label"] or None)


def run(g, o, args):
    from runh.container import Container, check_preserve_fds
    from runh.errors import UsageError

    check_preserve_fds(o["preserve_fds"])
    c = Container.load(args[0], g.root)
    if o["process"]:
        if len(args) > 1:
            raise UsageError("exec: --process and a command cannot both be given")
        from runh.spec import read_json_file

        process = read_json_file(o["process"], "process file")
    else:
        process = None  # built after the state checks (it needs the bundle)

    if o["detach"]:
        # containerd's shim: the process must outlive runh; it is reparented to the
        # caller's subreaper when runh exits.
        if process is None:
            process = build_process(c, o, args[1:])
        c.exec(process, console_socket=o["console_socket"], pidfd_socket=o["pidfd_socket"],
               pid_file=o["pid_file"], preserve_fds=o["preserve_fds"],
               ignore_paused=o["ignore_paused"], cgroup=sub_cgroups(o["cgroup"]))
        return 0

    from runh import tty

    return tty.foreground_exec(c, process, args[1:], o, _FORWARD)

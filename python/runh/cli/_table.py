"""Options declared as data: one table per command, read by two parsers.

The fast parser (`_argv.py`) walks these tables for well-formed input without importing
anything; the click fallback (`_click.py`) builds click commands from the same tables for
--help, unknown flags and missing arguments. Texts follow runc's man pages (man/runc-*.8.md).

An option is a tuple (name, aliases, kind, default, help); kind is "flag", "str", "int" or "multi" (repeatable, a tuple).
Positionals are (name, required) with required one of True, False, "*" (any number).
"""


def opt(name, *aliases, kind="str", default=None, help=""):
    if kind == "flag" and default is None:
        default = False
    elif kind == "multi":
        default = ()
    return (name, aliases, kind, default, help)


def dest(name):
    return name.lstrip("-").replace("-", "_")


GLOBAL_OPTIONS = (
    opt("--debug", kind="flag", help="enable debug logging"),
    opt("--log", help="set the log file to write runh logs to (default is '/dev/stderr')"),
    opt("--log-format", default="text", help="set the log format ('text' (default), or 'json')"),
    opt("--root", default="/run/runh",
        help="root directory for storage of container state (this should be located in tmpfs)"),
    opt("--criu", default="criu", help="path to the criu binary used for checkpoint and restore"),
    opt("--systemd-cgroup", kind="flag",
        help="enable systemd cgroup support, expects cgroupsPath to be of form "
             '"slice:prefix:name" for e.g. "system.slice:runh:434234" (cgroup v2 only)'),
    opt("--rootless", default="auto", help="ignore cgroup permission errors ('true', 'false', or 'auto')"),
)

# command name -> module under runh.cli (kept here so the fast path imports one module only)
COMMANDS = {
    "bench": "bench",
    "checkpoint": "checkpoint",
    "create": "create",
    "delete": "delete",
    "events": "events",
    "exec": "exec_",
    "features": "features",
    "kill": "kill",
    "list": "list_",
    "pause": "pause",
    "ps": "ps",
    "restore": "restore",
    "resume": "resume",
    "run": "run",
    "spec": "spec",
    "start": "start",
    "state": "state",
    "update": "update",
}

# Options shared by create and run (runc's man pages runc-create.8 / runc-run.8).
BUNDLE = opt("--bundle", "-b", help="path to the root of the bundle directory, defaults to the current directory")
CONSOLE_SOCKET = opt("--console-socket",
                     help="path to an AF_UNIX socket which will receive a file descriptor "
                          "referencing the master end of the console's pseudoterminal")
PID_FILE = opt("--pid-file", help="specify the file to write the process id to")
NO_PIVOT = opt("--no-pivot", kind="flag",
               help="do not use pivot root to jail process inside rootfs; use when rootfs is on a ramdisk")
NO_NEW_KEYRING = opt("--no-new-keyring", kind="flag",
                     help="do not create a new session keyring for the container")
PRESERVE_FDS = opt("--preserve-fds", kind="int", default=0,
                   help="pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N in total)")
PIDFD_SOCKET = opt("--pidfd-socket", help="path to an AF_UNIX socket which will receive a pidfd of the process")

# Options shared by checkpoint and restore (runc's man pages runc-checkpoint.8 / runc-restore.8).
IMAGE_PATH = opt("--image-path", default="", help="path for criu image files (default ./checkpoint)")
WORK_PATH = opt("--work-path", default="", help="path for saving work files and logs (default: the image path)")
CRIU_COMMON = (
    opt("--tcp-established", kind="flag", help="allow open tcp connections"),
    opt("--ext-unix-sk", kind="flag", help="allow external unix sockets"),
    opt("--shell-job", kind="flag", help="allow shell jobs"),
    opt("--file-locks", kind="flag", help="handle file locks, for safety"),
    opt("--manage-cgroups-mode", default="", help="cgroups mode: 'soft' (default), 'full', 'strict' or 'ignore'"),
    opt("--empty-ns", kind="multi", help="create a namespace, but don't restore its properties (network only)"),
    opt("--auto-dedup", kind="flag", help="enable auto deduplication of memory images"),
    opt("--lazy-pages", kind="flag", help="use userfaultfd to lazily restore memory pages"),
)

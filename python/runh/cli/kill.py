"""runh kill: send a signal to the container's init (or, with --all, to all its processes)."""

from runh.cli._table import opt

HELP = "kill sends the specified signal (default: SIGTERM) to the container's init process"
DESCRIPTION = """Send [signal] (a number, a name like KILL, or SIGKILL; default SIGTERM) to the
init process of <container-id>."""
OPTIONS = (opt("--all", "-a", kind="flag", help="send the specified signal to all processes inside the container"),)
ARGS = (("container-id", True), ("signal", False))


def run(g, o, args):
    from runh import signals
    from runh.container import Container

    sig = signals.parse(args[1]) if len(args) > 1 else 15
    Container.load(args[0], g.root).kill(sig, all=o["all"])
    return 0

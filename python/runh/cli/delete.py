"""runh delete: remove a created or stopped container (--force: kill it first)."""

from runh.cli._table import opt

HELP = "delete any resources held by the container often used with detached container"
DESCRIPTION = "Delete the resources held by <container-id>: its state, its init if still parked."
OPTIONS = (opt("--force", "-f", kind="flag",
               help="forcibly deletes the container if it is still running (uses SIGKILL)"),)
ARGS = (("container-id", True),)


def run(g, o, args):
    from runh.container import Container
    from runh.errors import ContainerNotFound

    # Not Container.load: delete reads the state under its lock, and removes a container
    # whose state.json is unreadable.
    try:
        Container(args[0], g.root).delete(force=o["force"])
    except ContainerNotFound:
        # As runc: --force of a container that is not there succeeds. podman relies on
        # it: after `checkpoint` has removed the container, it still deletes it --force.
        if not o["force"]:
            raise
    return 0

"""runh pause: freeze every process of the container (cgroup.freeze on v2, the v1 freezer)."""

HELP = "pause suspends all processes inside the container"
DESCRIPTION = """The pause command suspends all processes in the instance of the container.
Use runh list to identify instances of containers and their current status."""
OPTIONS = ()
ARGS = (("container-id", True),)


def run(g, o, args):
    from runh.cli import _freezer

    _freezer.set_frozen(args[0], g.root, True)
    return 0

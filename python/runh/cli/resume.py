"""runh resume: thaw a paused container."""

HELP = "resumes all processes that have been previously paused"
DESCRIPTION = """The resume command resumes all processes in the instance of the container.
Use runh list to identify instances of containers and their current status."""
OPTIONS = ()
ARGS = (("container-id", True),)


def run(g, o, args):
    from runh.cli import _freezer

    _freezer.set_frozen(args[0], g.root, False)
    return 0

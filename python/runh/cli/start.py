"""runh start: run the user process of a created container."""

HELP = "executes the user defined process in a created container"
DESCRIPTION = "The start command executes the user defined process in a created container."
OPTIONS = ()
ARGS = (("container-id", True),)


def run(g, o, args):
    from runh.container import Container

    Container.load(args[0], g.root).start()
    return 0

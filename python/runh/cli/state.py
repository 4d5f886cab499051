"""runh state: print the container's state as JSON (runtime-spec state, runc's layout)."""

HELP = "output the state of a container"
DESCRIPTION = "The state command outputs current state information for the instance of a container."
OPTIONS = ()
ARGS = (("container-id", True),)


def run(g, o, args):
    import sys

    from runh.container import Container

    state = Container.load(args[0], g.root).state()
    from runh.jsonio import dumps

    # runc prints json.MarshalIndent(state, "", "  ") plus a newline.
    sys.stdout.write(dumps(state, "  ") + "\n")
    return 0

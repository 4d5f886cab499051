"""runh checkpoint: save a running container's processes with CRIU (runh.criu.dump).
`checkpoint --help` exits 0: CRI-O probes for checkpoint support with it."""

from runh.cli._table import CRIU_COMMON, IMAGE_PATH, WORK_PATH, opt

HELP = "checkpoint a running container"
DESCRIPTION = """Save the state of the running container <container-id> with CRIU (criu(8),
3.11 or newer, driven through `criu swrk`) into --image-path, to be restored later with
`runh restore`. Unless --leave-running or --pre-dump is given, the container is stopped
and deleted once its images are written. Directories runh makes for images are 0700:
they hold the container's memory."""
OPTIONS = (
    IMAGE_PATH, WORK_PATH,
    opt("--parent-path", default="", help="path for previous criu image files in pre-dump, relative to --image-path"),
    opt("--leave-running", kind="flag", help="leave the process running after checkpointing"),
    opt("--pre-dump", kind="flag", help="dump container's memory information only, leave the container running after this"),
    opt("--status-fd", kind="int", default=-1, help="criu writes \\0 to this FD once lazy-pages is ready"),
    opt("--page-server", default="", help="ADDRESS:PORT of the page server"),
) + CRIU_COMMON
ARGS = (("container-id", True),)


def run(g, o, args):
    from runh.container import Container
    from runh.criu.dump import checkpoint
    from runh.criu.plan import Options

    c = Container.load(args[0], g.root)
    checkpoint(c, Options(**o), criu=g.criu)
    return 0

"""runh checkpoint: save a running container's processes with CRIU (runh.criu.dump).
`checkpoint --help` exits 0: CRI-O probes for checkpoint support with it."""

from runh.cli._table import opt

HELP = "checkpoint a running container"
DESCRIPTION = """Save the state of the running container <container-id> with CRIU (criu(8),
3.11 or newer, driven through `criu swrk`) into --image-path, to be restored later with
`runh restore`. Unless --leave-running or --pre-dump is given, the container is stopped
and deleted once its images are written. Directories runh makes for images are 0700:
they hold the container's memory."""
OPTIONS = (
    opt("--image-path", default="", help="path for saving criu image files (default ./checkpoint)"),
    opt("--work-path", default="", help="path for saving work files and logs (default: the image path)"),
    opt("--parent-path", default="", help="path for previous criu image files in pre-dump, relative to --image-path"),
    opt("--leave-running", kind="flag", help="leave the process running after checkpointing"),
    opt("--tcp-established", kind="flag", help="allow open tcp connections"),
    opt("--ext-unix-sk", kind="flag", help="allow external unix sockets"),
    opt("--shell-job", kind="flag", help="allow shell jobs"),
    opt("--lazy-pages", kind="flag", help="use userfaultfd to lazily restore memory pages"),
    opt("--status-fd", kind="int", default=-1, help="criu writes \\0 to this FD once lazy-pages is ready"),
    opt("--page-server", default="", help="ADDRESS:PORT of the page server"),
    opt("--file-locks", kind="flag", help="handle file locks, for safety"),
    opt("--pre-dump", kind="flag", help="dump container's memory information only, leave the container running after this"),
    opt("--manage-cgroups-mode", default="", help="cgroups mode: 'soft' (default), 'full', 'strict' or 'ignore'"),
    opt("--empty-ns", kind="multi", help="create a namespace, but don't restore its properties (network only)"),
    opt("--auto-dedup", kind="flag", help="enable auto deduplication of memory images"),
)
ARGS = (("container-id", True),)


def run(g, o, args):
    from runh.container import Container
    from runh.criu.dump import Options, checkpoint

    c = Container.load(args[0], g.root)
    checkpoint(c, Options(**o), criu=g.criu)
    return 0

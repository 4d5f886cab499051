"""runh restore: not supported (no CRIU integration). `checkpoint --help` exits 0: CRI-O
probes for checkpoint support with it, and reads the error of the real call."""

from runh.cli._stub import not_implemented

HELP = "restore a running container (not supported)"
DESCRIPTION = "runh does not support restore: it has no CRIU integration."
OPTIONS = ()
ARGS = (("container-id", True), ("options", "*"))
run = not_implemented("restore")

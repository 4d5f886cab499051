"""runh update: placeholder until its owner lands it; exits 1 with a clear message."""

from runh.cli._stub import not_implemented

HELP = "update (not implemented yet)"
DESCRIPTION = "runh update is not implemented yet."
OPTIONS = ()
ARGS = (("container-id", True), ("args", "*"))
run = not_implemented("update")

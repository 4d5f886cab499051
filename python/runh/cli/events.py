"""runh events: placeholder until its owner lands it; exits 1 with a clear message."""

from runh.cli._stub import not_implemented

HELP = "events (not implemented yet)"
DESCRIPTION = "runh events is not implemented yet."
OPTIONS = ()
ARGS = (("container-id", True), ("args", "*"))
run = not_implemented("events")

"""runh ps: the processes of a container (json: an array of pids)."""

from runh.cli._table import opt

HELP = "ps displays the processes running inside a container"
DESCRIPTION = """Show the processes of <container-id>; with --format table, ps(1) is run with
[ps options] (default -ef) and filtered to the container's processes."""
OPTIONS = (opt("--format", "-f", default="table", help="select one of: table or json"),)
ARGS = (("container-id", True), ("ps-options", "*"))


def run(g, o, args):
    import sys

    from runh.container import Container
    from runh.errors import ContainerNotRunning, UsageError

    if o["format"] not in ("table", "json"):
        raise UsageError(f"invalid format option: {o['format']}")
    c = Container.load(args[0], g.root)
    if c.status() not in ("created", "running", "paused"):
        raise ContainerNotRunning(c.id)
    pids = c.pids()
    if o["format"] == "json":
        from runh.jsonio import dumps

        sys.stdout.write(dumps(pids) + "\n")
        return 0
    import subprocess

    ps_args = args[1:] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise UsageError("ps output has no PID column: pass ps options that print one")
    col = header.index("PID")
    keep = set(pids)
    sys.stdout.write(lines[0] + "\n")
    for line in lines[1:]:
        f = line.split()
        if len(f) > col and f[col].isdigit() and int(f[col]) in keep:
            sys.stdout.write(line + "\n")
    return 0

"""runh list: the containers under --root."""

from runh.cli._table import opt

HELP = "lists containers started by runh with the given root"
DESCRIPTION = "The list command lists containers started by runh with the given root."
OPTIONS = (opt("--format", "-f", default="table", help="select one of: table or json"),
           opt("--quiet", "-q", kind="flag", help="display only container IDs"))
ARGS = ()


def run(g, o, args):
    import sys

    from runh.container import Container
    from runh.errors import UsageError

    if o["format"] not in ("table", "json"):
        raise UsageError(f"invalid format option: {o['format']}")
    cs = Container.list(g.root)
    if o["quiet"]:
        sys.stdout.write("".join(c.id + "\n" for c in cs))
        return 0
    states = [c.state() for c in cs]
    if o["format"] == "json":
        from runh.jsonio import dumps

        sys.stdout.write(dumps(states) + "\n")
        return 0
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]) for s in states]
    # Go's tabwriter as runc configures it: min width 12, padding 1.
    widths = [max(12, max(len(r[i]) for r in rows) + 1) for i in range(6)]
    for r in rows:
        sys.stdout.write("".join(v.ljust(w) for v, w in zip(r[:-1], widths)) + r[-1] + "\n")
    return 0

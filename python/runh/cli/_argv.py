"""The fast argv parser: walks the option tables; returns None when in doubt.

None means "let click handle it": --help, unknown flags, a missing value or argument, bad
integers. Both `--flag X` and `--flag=X` are accepted (CRI-O's conmon passes the `=` form), and
options may follow positionals (except after `--`, and for commands with "*" positionals,
whose trailing words are passed on verbatim, as `ps ID -ef`).
"""

from runh.cli._table import dest


class Globals:
    """Parsed global flags (attributes named after the flags)."""

    def __init__(self, table):
        for o in table:
            setattr(self, dest(o[0]), o[3])
        self.version = False


def _index(table):
    idx = {}
    for o in table:
        idx[o[0]] = o
        for a in o[1]:
            idx[a] = o
    return idx


def _take(idx, argv, i, values):
    """Parse the option at argv[i] into values; return the next index, or -1 if not understood."""
    a = argv[i]
    name, eq, val = a.partition("=")
    o = idx.get(name)
    if o is None:
        return -1
    kind = o[2]
    if kind == "flag":
        if eq:
            low = val.lower()
            if low in ("true", "1"):
                values[dest(o[0])] = True
            elif low in ("false", "0"):
                values[dest(o[0])] = False
            else:
                return -1
        else:
            values[dest(o[0])] = True
        return i + 1
    if not eq:
        if i + 1 >= len(argv):
            return -1
        i += 1
        val = argv[i]
    if kind == "int":
        if not val.lstrip("-").isdigit():
            return -1
        val = int(val)
    elif kind == "multi":  # repeatable (exec --env/--cap/--additional-gids): a tuple
        val = values[dest(o[0])] + (val,)
    values[dest(o[0])] = val
    return i + 1


def parse_globals(argv, table):
    """Returns (Globals, index of the command word) or None."""
    g = Globals(table)
    idx = _index(table)
    v = g.__dict__
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-") or a == "-":
            return g, i
        if a in ("-v", "--version"):
            g.version = True
            return g, i
        i = _take(idx, argv, i, v)
        if i < 0:
            return None
    return None  # no command: click prints the usage


def parse_command(argv, mod):
    """Parse a command's own argv against its module tables: (options dict, positionals)."""
    table = mod.OPTIONS
    idx = _index(table)
    values = {dest(o[0]): o[3] for o in table}
    args = []
    positionals = mod.ARGS
    varargs = bool(positionals) and positionals[-1][1] == "*"
    fixed = len(positionals) - (1 if varargs else 0)
    i = 0
    while i < len(argv):
        a = argv[i]
        if varargs and len(args) >= fixed:
            # Passed on as they are, a `--` too (as runc does): exec's command, ps options.
            args.extend(argv[i:])
            break
        if a == "--":
            args.extend(argv[i + 1 :])
            break
        if a.startswith("-") and a != "-":
            i = _take(idx, argv, i, values)
            if i < 0:
                return None
            continue
        args.append(a)
        i += 1
    required = sum(1 for p in positionals if p[1] is True)
    if len(args) < required or (not varargs and len(args) > len(positionals)):
        return None
    return values, args

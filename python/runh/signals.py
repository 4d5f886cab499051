"""Signal names and numbers, from the C-level `_signal` module.

`import signal` costs 3.1 ms here (it builds IntEnum classes, which pulls in `enum`);
`_signal` is already loaded by the interpreter and has the same constants as plain ints.
"""

import _signal

from runh.errors import UsageError


def _table():
    names = {}
    for k in dir(_signal):
        if k.startswith("SIG") and not k.startswith(("SIG_", "SIGRT")):
            names[k] = getattr(_signal, k)
    return names


def parse(text):
    """A signal given as a number ("9"), a name ("KILL", "kill") or a SIG-name ("SIGKILL"),
    or SIGRTMIN+n / RTMAX-n. Returns its number; UsageError on anything else."""
    s = text.strip()
    if s[:1] == "+" and s[1:].isdigit():
        s = s[1:]  # as Go's strconv.Atoi, which runc uses
    if s.isdigit():
        n = int(s)
        if 0 < n <= _signal.SIGRTMAX:
            return n
        raise UsageError(f"invalid signal: {text}")
    up = s.upper()
    if not up.startswith("SIG"):
        up = "SIG" + up
    n = _table().get(up)
    if n is not None:
        return n
    for base, sign in (("SIGRTMIN", 1), ("SIGRTMAX", -1)):
        if up == base:
            return getattr(_signal, base)
        for op in ("+", "-"):
            if up.startswith(base + op) and up[len(base) + 1 :].isdigit():
                off = int(up[len(base) + 1 :])
                n = getattr(_signal, base) + (off if op == "+" else -off)
                if _signal.SIGRTMIN <= n <= _signal.SIGRTMAX:
                    return n
    raise UsageError(f"invalid signal: {text}")


def name(n):
    for k, v in _table().items():
        if v == n:
            return k
    return str(n)

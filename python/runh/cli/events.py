"""runh events: container stats and OOM notifications as JSON lines (runc-events.8).

`--stats` prints one {"type":"stats","id":..,"data":{..}} object, in runc's shape, and
exits. Without it, stats are printed every --interval, and an {"type":"oom"} event as soon
as the cgroup's OOM-kill count grows (checked every 100 ms), until the container stops.
"""

from runh.cli._table import opt

HELP = "display container events such as OOM notifications, cpu, memory, and IO usage statistics"
DESCRIPTION = """The events command displays information about the container. By default the
information is displayed once every 5 seconds."""
OPTIONS = (
    opt("--interval", default="5s", help="set the stats collection interval"),
    opt("--stats", kind="flag", help="display the container's stats then exit"),
)
ARGS = (("container-id", True),)


def _seconds(text):
    """Go duration strings as runc takes them: 5s, 500ms, 1m, 1m30s, 2h."""
    from runh.errors import UsageError

    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    total, num, i, t = 0.0, "", 0, text.strip()
    while i < len(t):
        if t[i].isdigit() or t[i] == ".":
            num += t[i]
            i += 1
            continue
        for u in ("ns", "us", "µs", "ms", "s", "m", "h"):
            if t.startswith(u, i) and num:
                total += float(num) * units[u]
                num, i = "", i + len(u)
                break
        else:
            raise UsageError(f"invalid interval: {text}")
    if num or total <= 0:
        raise UsageError(f"invalid interval: {text}")
    return total


def _emit(obj):
    import json
    import sys

    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def run(g, o, args):
    import time

    from runh import state as st
    from runh.container import Container
    from runh.errors import ContainerNotRunning, NotSupported

    cid = args[0]
    interval = _seconds(o["interval"])
    c = Container.load(cid, g.root)
    if c.status() == st.STOPPED:
        raise ContainerNotRunning(cid)
    cg = c.cgroup()
    if cg is None:
        raise NotSupported("this container was created without a cgroup; no events")
    if o["stats"]:
        _emit({"type": "stats", "id": cid, "data": cg.stats()})
        return 0
    ooms = cg.oom_count()
    next_stats = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_stats:
            if not cg.exists():
                return 0
            _emit({"type": "stats", "id": cid, "data": cg.stats()})
            next_stats = now + interval
        n = cg.oom_count()
        if n > ooms:
            _emit({"type": "oom", "id": cid})
            ooms = n
        c._state = st.read_state(g.root, cid) if __import__("os").path.isdir(c.dir) else None
        if c._state is None or c.status() == st.STOPPED:
            return 0
        time.sleep(min(0.1, max(0.0, next_stats - time.monotonic())))

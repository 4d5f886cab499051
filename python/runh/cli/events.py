"""runh events: container stats and OOM notifications as JSON lines (runc-events.8).

`--stats` prints one {"type":"stats","id":..,"data":{..}} object, in runc's shape, and
exits. Without it, stats are printed every --interval, and an {"type":"oom"} event as soon
as the kernel reports an OOM kill in the cgroup (inotify on memory.events / a v1
eventfd, no polling), until the container's init exits.
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
    return _follow(c, cg, cid, interval)


def _follow(c, cg, cid, interval):
    """Stats every `interval`, an "oom" event as it happens, until the container's init
    exits. Sleeps in select() on two fds: the cgroup's OOM notification (inotify on v2,
    eventfd on v1: runh.cgroups.notify) and a pidfd of init (readable when it exits), so
    nothing is polled. Falls back to checking every 100 ms where either is unavailable."""
    import os
    import select
    import time

    from runh import state as st
    from runh.cgroups.notify import OomWatch

    try:
        watch = OomWatch(cg)
    except OSError:
        watch = None
    try:
        pidfd = os.pidfd_open(c.pid)
    except (OSError, AttributeError):
        pidfd = None
    # A pidfd opened after init died (and its pid reused) would watch the wrong process:
    # the state check after opening tells them apart (it checks the start time).
    if c.status() == st.STOPPED:
        pidfd = None
    ooms = cg.oom_count()
    fds = [f for f in (watch, pidfd) if f is not None]
    try:
        next_stats = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_stats:
                if not cg.exists():
                    return 0
                _emit({"type": "stats", "id": cid, "data": cg.stats()})
                next_stats = now + interval
            wait = max(0.0, next_stats - time.monotonic())
            if watch is None or pidfd is None:
                wait = min(wait, 0.1)
            ready = select.select(fds, [], [], wait)[0] if fds else time.sleep(wait) or []
            if watch is not None:
                if watch in ready and watch.fired():
                    _emit({"type": "oom", "id": cid})
            else:
                n = cg.oom_count()
                if n > ooms:
                    _emit({"type": "oom", "id": cid})
                    ooms = n
            if pidfd is not None:
                if pidfd in ready:
                    if watch is not None and watch.fired():  # an OOM that killed init
                        _emit({"type": "oom", "id": cid})
                    return 0
            else:
                c._state = st.read_state(c.root, cid) if os.path.isdir(c.dir) else None
                if c._state is None or c.status() == st.STOPPED:
                    return 0
    finally:
        if watch is not None:
            watch.close()
        if pidfd is not None:
            os.close(pidfd)

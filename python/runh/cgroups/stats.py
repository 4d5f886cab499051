"""`events --stats` data in runc's JSON shape (runc types/events.go, mirrored by
containerd's go-runc events.go): cpu.usage/throttling, memory.usage/swap/kernel/raw,
pids, blkio, hugetlb. Only read when asked for, never on the create/start path.
"""
import posix as os  # not `os`: see runh/state.py

from runh.cgroups._fs import read

_BIG = 1 << 62  # v1 reports "unlimited" as a huge page-aligned number


def _kv(text):
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def _int(text, default=0):
    t = text.strip()
    if t in ("", "max"):
        return default
    try:
        return int(t)
    except ValueError:
        return default


def _entry(limit, usage, max_=0, failcnt=0):
    e = {"limit": limit, "failcnt": failcnt}
    if usage:
        e["usage"] = usage
    if max_:
        e["max"] = max_
    return e


def _io_entries(text, ops):
    """v2 io.stat lines "maj:min rbytes=.. wbytes=.." → runc blkio entries."""
    out = {k: [] for k in set(ops.values())}
    for line in text.splitlines():
        dev, *fields = line.split()
        major, minor = (int(x) for x in dev.split(":"))
        for f in fields:
            k, _, v = f.partition("=")
            if k in ops:
                key, op = ops[k]
                out.setdefault(key, []).append(
                    {"major": major, "minor": minor, "op": op, "value": int(v)})
    return out


def v2_stats(path):
    data = {}
    cpu = _kv(read(path, "cpu.stat", ""))
    data["cpu"] = {
        "usage": {"total": cpu.get("usage_usec", 0) * 1000,
                  "kernel": cpu.get("system_usec", 0) * 1000,
                  "user": cpu.get("user_usec", 0) * 1000},
        "throttling": {"periods": cpu.get("nr_periods", 0),
                       "throttledPeriods": cpu.get("nr_throttled", 0),
                       "throttledTime": cpu.get("throttled_usec", 0) * 1000},
    }
    raw = _kv(read(path, "memory.stat", ""))
    mem_max = _int(read(path, "memory.max", "max"), 0)
    usage = _int(read(path, "memory.current", "0"))
    events = _kv(read(path, "memory.events", ""))
    data["memory"] = {
        "cache": raw.get("file", 0),
        "usage": _entry(mem_max, usage, _int(read(path, "memory.peak", "0")), events.get("max", 0)),
        "swap": _entry(_int(read(path, "memory.swap.max", "max"), 0),
                       _int(read(path, "memory.swap.current", "0"))),
        "kernel": _entry(0, raw.get("kernel", 0)),
        "kernelTCP": _entry(0, raw.get("sock", 0)),
        "raw": raw,
    }
    data["pids"] = {"current": _int(read(path, "pids.current", "0")),
                    "limit": _int(read(path, "pids.max", "max"), 0)}
    ops = {"rbytes": ("ioServiceBytesRecursive", "Read"), "wbytes": ("ioServiceBytesRecursive", "Write"),
           "rios": ("ioServicedRecursive", "Read"), "wios": ("ioServicedRecursive", "Write")}
    data["blkio"] = {k: v for k, v in _io_entries(read(path, "io.stat", ""), ops).items() if v}
    data["hugetlb"] = {}
    for name in _listdir(path):
        if name.startswith("hugetlb.") and name.endswith(".current"):
            size = name[len("hugetlb."):-len(".current")]
            ev = _kv(read(path, f"hugetlb.{size}.events", ""))
            data["hugetlb"][size] = _entry(0, _int(read(path, name, "0")), 0, ev.get("max", 0))
    return data


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def v1_stats(paths):
    data = {}
    cpu_dir, acct = paths.get("cpu"), paths.get("cpuacct")
    usage = {}
    if acct:
        usage["total"] = _int(read(acct, "cpuacct.usage", "0"))
        per = read(acct, "cpuacct.usage_percpu", "").split()
        if per:
            usage["percpu"] = [int(x) for x in per]
        st = _kv(read(acct, "cpuacct.stat", ""))
        tick = 10_000_000  # USER_HZ=100: ns per clock tick
        usage["kernel"] = st.get("system", 0) * tick
        usage["user"] = st.get("user", 0) * tick
    thr = _kv(read(cpu_dir, "cpu.stat", "")) if cpu_dir else {}
    data["cpu"] = {"usage": usage,
                   "throttling": {"periods": thr.get("nr_periods", 0),
                                  "throttledPeriods": thr.get("nr_throttled", 0),
                                  "throttledTime": thr.get("throttled_time", 0)}}
    m = paths.get("memory")
    if m:
        raw = _kv(read(m, "memory.stat", ""))

        def ent(prefix):
            lim = _int(read(m, prefix + "limit_in_bytes", "0"))
            return _entry(0 if lim >= _BIG else lim, _int(read(m, prefix + "usage_in_bytes", "0")),
                          _int(read(m, prefix + "max_usage_in_bytes", "0")),
                          _int(read(m, prefix + "failcnt", "0")))

        data["memory"] = {"cache": raw.get("total_cache", raw.get("cache", 0)),
                          "usage": ent("memory."), "swap": ent("memory.memsw."),
                          "kernel": ent("memory.kmem."), "kernelTCP": ent("memory.kmem.tcp."),
                          "raw": raw}
    p = paths.get("pids")
    if p:
        data["pids"] = {"current": _int(read(p, "pids.current", "0")),
                        "limit": _int(read(p, "pids.max", "max"), 0)}
    b = paths.get("blkio")
    data["blkio"] = {}
    if b:
        for f, key in (("blkio.throttle.io_service_bytes_recursive", "ioServiceBytesRecursive"),
                       ("blkio.throttle.io_serviced_recursive", "ioServicedRecursive")):
            entries = []
            for line in read(b, f, "").splitlines():
                parts = line.split()
                if len(parts) == 3 and ":" in parts[0]:
                    major, minor = (int(x) for x in parts[0].split(":"))
                    entries.append({"major": major, "minor": minor, "op": parts[1],
                                    "value": int(parts[2])})
            if entries:
                data["blkio"][key] = entries
    data["hugetlb"] = {}
    return data

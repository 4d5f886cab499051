"""runh update: change a running container's cgroup limits (runc-update.8)."""

from runh.cli._table import opt

HELP = "update container resource constraints"
DESCRIPTION = """The data format for the --resources file (or "-" for stdin) is a
LinuxResources JSON object (config.json's linux.resources). The per-field flags override
the matching values of that document."""
OPTIONS = (
    opt("--resources", "-r", help='path to the file containing the resources to update or "-" to read from the standard input'),
    opt("--blkio-weight", kind="int", help="specifies per cgroup weight, range is from 10 to 1000"),
    opt("--cpu-period", help="CPU CFS period to be used for hardcapping (in usecs). 0 to use system default"),
    opt("--cpu-quota", help="CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period"),
    opt("--cpu-burst", help="CPU CFS hardcap burst limit (in usecs). Allowed accumulated cpu time additionally for burst a given period"),
    opt("--cpu-rt-period", help="CPU realtime period to be used for hardcapping (in usecs). 0 to use system default"),
    opt("--cpu-rt-runtime", help="CPU realtime hardcap limit (in usecs). Allowed cpu time in a given period"),
    opt("--cpu-share", help="CPU shares (relative weight vs. other containers)"),
    opt("--cpu-idle", help="set cgroup SCHED_IDLE or not, 0: default behavior, 1: SCHED_IDLE"),
    opt("--cpuset-cpus", help="CPU(s) to use"),
    opt("--cpuset-mems", help="Memory node(s) to use"),
    opt("--kernel-memory", help="(obsoleted; do not use)"),
    opt("--kernel-memory-tcp", help="(obsoleted; do not use)"),
    opt("--memory", help="Memory limit (in bytes)"),
    opt("--memory-reservation", help="Memory reservation or soft_limit (in bytes)"),
    opt("--memory-swap", help="Total memory usage (memory + swap); set '-1' to enable unlimited swap"),
    opt("--pids-limit", kind="int", help="Maximum number of pids allowed in the container"),
    opt("--l3-cache-schema", help="The string of Intel RDT/CAT L3 cache schema (not supported)"),
    opt("--mem-bw-schema", help="The string of Intel RDT/MBA memory bandwidth schema (not supported)"),
)
ARGS = (("container-id", True),)

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}


def _bytes(flag, v):
    """runc accepts "-1" and human sizes (e.g. 100m) for the memory flags."""
    t = v.strip().lower()
    if t == "-1":
        return -1
    n = t.rstrip("bkmgt")
    try:
        return int(float(n) * _UNITS[t[len(n):]])
    except (ValueError, KeyError):
        from runh.errors import UsageError

        raise UsageError(f"invalid value for {flag}: {v}") from None


def _int(flag, v):
    try:
        return int(v)
    except ValueError:
        from runh.errors import UsageError

        raise UsageError(f"invalid value for {flag}: {v}") from None


def resources_from(o, stdin=None):
    """The LinuxResources dict: the --resources document with the flags laid over it."""
    import json

    res = {}
    if o.get("resources"):
        from runh.errors import ConfigError

        try:
            if o["resources"] == "-":
                import sys

                text = (stdin or sys.stdin).read()
            else:
                with open(o["resources"]) as f:
                    text = f.read()
            res = json.loads(text) if text.strip() else {}
        except (OSError, ValueError) as e:
            raise ConfigError(f"--resources: {e}") from None
        if not isinstance(res, dict):
            raise ConfigError("--resources: want a LinuxResources JSON object")
    mem, cpu = res.setdefault("memory", {}) or {}, res.setdefault("cpu", {}) or {}
    res["memory"], res["cpu"] = mem, cpu
    for flag, key in (("memory", "limit"), ("memory_reservation", "reservation"),
                      ("memory_swap", "swap"), ("kernel_memory", "kernel"),
                      ("kernel_memory_tcp", "kernelTCP")):
        if o.get(flag) is not None:
            mem[key] = _bytes("--" + flag.replace("_", "-"), o[flag])
    for flag, key in (("cpu_period", "period"), ("cpu_quota", "quota"), ("cpu_burst", "burst"),
                      ("cpu_rt_period", "realtimePeriod"), ("cpu_rt_runtime", "realtimeRuntime"),
                      ("cpu_share", "shares"), ("cpu_idle", "idle")):
        if o.get(flag) is not None:
            cpu[key] = _int("--" + flag.replace("_", "-"), o[flag])
    if o.get("cpuset_cpus") is not None:
        cpu["cpus"] = o["cpuset_cpus"]
    if o.get("cpuset_mems") is not None:
        cpu["mems"] = o["cpuset_mems"]
    if o.get("pids_limit") is not None:
        res["pids"] = {"limit": o["pids_limit"]}
    if o.get("blkio_weight") is not None:
        res.setdefault("blockIO", {})["weight"] = o["blkio_weight"]
    if o.get("l3_cache_schema") or o.get("mem_bw_schema"):
        from runh.errors import NotSupported

        raise NotSupported("Intel RDT (--l3-cache-schema, --mem-bw-schema) is not supported")
    return {k: v for k, v in res.items() if v not in ({}, None)}


def run(g, o, args):
    from runh import state as st
    from runh.container import Container
    from runh.errors import ContainerNotFound, ContainerNotRunning, NotSupported

    res = resources_from(o)
    c = Container.load(args[0], g.root)
    with st.Lock(c.dir) as lk:
        if lk is None:
            raise ContainerNotFound(args[0])
        c._state = st.read_state(g.root, args[0])
        if c.status() not in (st.CREATED, st.RUNNING, st.PAUSED):
            raise ContainerNotRunning(args[0])
        cg = c.cgroup()
        if cg is None:
            raise NotSupported("this container was created without a cgroup; cannot update it")
        cg.update(res)
    return 0

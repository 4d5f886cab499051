"""The cgroup v1 manager: one directory per controller hierarchy (hybrid and legacy hosts).

Hierarchies are found by listing /sys/fs/cgroup (one scandir; no mountinfo parse); a
co-mount such as "cpu,cpuacct" appears as symlinks, resolved so each directory is made
once. Controllers whose hierarchy is not mounted are skipped, as runc does.
"""
import posix

from runh.cgroups import CGROUP_ROOT, _fs, check_inside, isdir, normpath, procs_in, resolve
from runh.cgroups.base import Manager, device_rules, rdma_writes, signal_each

CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
               "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc")


def hierarchies():
    """{controller: mount directory} for the v1 hierarchies mounted under CGROUP_ROOT."""
    out = {}
    with posix.scandir(CGROUP_ROOT) as it:
        for e in it:
            for c in e.name.split(","):
                if c in CONTROLLERS:
                    out[c] = _resolve(e.path)
    return out


def _resolve(path):
    """A co-mount's symlink (cpu -> cpu,cpuacct) to its directory; no os.path.realpath,
    which would import os."""
    try:
        target = posix.readlink(path)
    except OSError:  # EINVAL: not a symlink
        return path
    return normpath(target if target.startswith("/") else path.rsplit("/", 1)[0] + "/" + target)


def resource_writes(res, update=False, current_limit=None):
    """{controller: [(file, value)]} for a LinuxResources dict."""
    res = res or {}
    w = {}
    mem = res.get("memory") or {}
    m = []
    limit, swap = mem.get("limit"), mem.get("swap")
    # limit_in_bytes <= memsw.limit_in_bytes at every moment: when growing, raise memsw
    # first; when shrinking, lower the limit first.
    pair = []
    if limit:  # 0 is unset, as runc reads it (a 0-byte limit would OOM-kill the init)
        pair.append(("memory.limit_in_bytes", str(limit)))
    if swap:
        pair.append(("memory.memsw.limit_in_bytes", str(swap)))
    grow = current_limit is not None and (
        limit == -1 or (current_limit != -1 and limit > current_limit))
    if len(pair) == 2 and grow:
        pair.reverse()
    m += pair
    if mem.get("reservation") is not None:
        m.append(("memory.soft_limit_in_bytes", str(mem["reservation"])))
    if mem.get("kernel") is not None:
        m.append(("memory.kmem.limit_in_bytes", str(mem["kernel"])))
    if mem.get("kernelTCP") is not None:
        m.append(("memory.kmem.tcp.limit_in_bytes", str(mem["kernelTCP"])))
    if mem.get("swappiness") is not None and 0 <= mem["swappiness"] <= 100:
        m.append(("memory.swappiness", str(mem["swappiness"])))
    if mem.get("disableOOMKiller"):
        m.append(("memory.oom_control", "1"))
    if mem.get("useHierarchy") is not None:
        m.append(("memory.use_hierarchy", "1" if mem["useHierarchy"] else "0"))
    if m:
        w["memory"] = m
    cpu = res.get("cpu") or {}
    c = []
    if cpu.get("shares"):
        c.append(("cpu.shares", str(cpu["shares"])))
    if cpu.get("period"):
        c.append(("cpu.cfs_period_us", str(cpu["period"])))
    if cpu.get("quota") is not None:
        c.append(("cpu.cfs_quota_us", str(cpu["quota"] if cpu["quota"] > 0 else -1)))
    if cpu.get("burst") is not None:
        c.append(("cpu.cfs_burst_us", str(cpu["burst"])))
    if cpu.get("realtimePeriod"):
        c.append(("cpu.rt_period_us", str(cpu["realtimePeriod"])))
    if cpu.get("realtimeRuntime") is not None:
        c.append(("cpu.rt_runtime_us", str(cpu["realtimeRuntime"])))
    if cpu.get("idle") is not None:
        c.append(("cpu.idle", str(cpu["idle"])))
    if c:
        w["cpu"] = c
    cs = []
    if cpu.get("cpus"):
        cs.append(("cpuset.cpus", cpu["cpus"]))
    if cpu.get("mems"):
        cs.append(("cpuset.mems", cpu["mems"]))
    if cs:
        w["cpuset"] = cs
    pids = res.get("pids") or {}
    if pids.get("limit") is not None:
        w["pids"] = [("pids.max", "max" if pids["limit"] <= 0 else str(pids["limit"]))]
    bio = res.get("blockIO") or {}
    b = []
    if bio.get("weight"):
        b.append(("blkio.weight", str(bio["weight"])))
    if bio.get("leafWeight"):
        b.append(("blkio.leaf_weight", str(bio["leafWeight"])))
    for d in bio.get("weightDevice") or ():
        if d.get("weight"):
            b.append(("blkio.weight_device", f"{d['major']}:{d['minor']} {d['weight']}"))
        if d.get("leafWeight"):
            b.append(("blkio.leaf_weight_device", f"{d['major']}:{d['minor']} {d['leafWeight']}"))
    for key, f in (("throttleReadBpsDevice", "read_bps_device"),
                   ("throttleWriteBpsDevice", "write_bps_device"),
                   ("throttleReadIOPSDevice", "read_iops_device"),
                   ("throttleWriteIOPSDevice", "write_iops_device")):
        for d in bio.get(key) or ():
            b.append((f"blkio.throttle.{f}", f"{d['major']}:{d['minor']} {d.get('rate', 0)}"))
    if b:
        w["blkio"] = b
    h = [(f"hugetlb.{x['pageSize']}.limit_in_bytes", str(x["limit"]))
         for x in res.get("hugepageLimits") or ()]
    if h:
        w["hugetlb"] = h
    net = res.get("network") or {}
    if net.get("classID") is not None:
        w["net_cls"] = [("net_cls.classid", str(net["classID"]))]
    if net.get("priorities"):
        w["net_prio"] = [("net_prio.ifpriomap", f"{p['name']} {p['priority']}")
                         for p in net["priorities"]]
    r = rdma_writes(res)
    if r:
        w["rdma"] = r
    if res.get("unified"):
        from runh.errors import ConfigError

        raise ConfigError("linux.resources.unified: needs a cgroup v2 host")
    return w


def _rule_text(r):
    maj = "*" if r["major"] is None else r["major"]
    mnr = "*" if r["minor"] is None else r["minor"]
    if r["type"] == "a":
        return "a"
    return f"{r['type']} {maj}:{mnr} {r['access']}"


class V1Manager(Manager):
    version = 1

    def __init__(self, paths):
        for d in paths.values():
            check_inside(d)
        self.paths = paths  # {controller: absolute directory}

    @classmethod
    def for_path(cls, inner):
        own = {}
        if not inner.startswith("/"):
            from runh.cgroups import own_cgroups

            own = own_cgroups()
        return cls({ctrl: resolve(mnt, inner, own.get(ctrl, "/")) for ctrl, mnt in hierarchies().items()})

    def to_state(self):
        return {"version": 1, "paths": self.paths, **self._state_extra()}

    def _dirs(self):
        return sorted(set(self.paths.values()))

    def exists(self):
        return any(isdir(p) for p in self.paths.values())

    def create(self):
        _fs.create(self._dirs())
        cs = self.paths.get("cpuset")
        if cs:
            # A new v1 cpuset is empty and refuses tasks until cpus and mems are set: copy
            # them down from the nearest ancestor that has them (runc does the same).
            self._fill_cpuset(cs)

    def _fill_cpuset(self, path):
        mnt = _resolve(CGROUP_ROOT + "/cpuset")
        chain = []
        p = path
        while p != mnt and p.startswith(mnt):
            chain.append(p)
            p = p.rsplit("/", 1)[0]
        for d in reversed(chain):
            parent = d.rsplit("/", 1)[0]
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not _fs.read(d, f, "").strip():
                    _fs.write(d, [(f, _fs.read(parent, f).strip())])

    def apply(self, resources, devices=(), update=False):
        cur = None
        mem = (resources or {}).get("memory") or {}
        if "memory" in self.paths and mem.get("limit") is not None and mem.get("swap"):
            cur = int(_fs.read(self.paths["memory"], "memory.limit_in_bytes", "-1"))
            cur = -1 if cur >= 1 << 62 else cur
        for ctrl, writes in resource_writes(resources, update, cur).items():
            d = self.paths.get(ctrl)
            if d:
                _fs.write(d, writes)
        d = self.paths.get("devices")
        if d and (not update or (resources or {}).get("devices")):
            writes = []
            for r in device_rules(resources, self._keep_devices(devices, update)):
                writes.append(("devices.allow" if r["allow"] else "devices.deny", _rule_text(r)))
            _fs.write(d, writes)

    def clone_target(self):
        return None, [d + "/cgroup.procs" for d in self._dirs()]

    def sub_target(self, sub):
        from runh.cgroups.base import sub_dir
        from runh.errors import ConfigError

        unknown = sorted(set(sub) - set(self.paths) - {""})
        if unknown:
            raise ConfigError(f"--cgroup: no such controller: {', '.join(unknown)}")
        dirs = {sub_dir(d, sub.get(c, sub.get("", ""))) for c, d in self.paths.items()}
        return None, [d + "/cgroup.procs" for d in sorted(dirs)]

    def add(self, pid):
        for d in self._dirs():
            _fs.write(d, [("cgroup.procs", str(pid))])

    def freeze(self):
        _fs.freeze(self.paths["freezer"], False, True)

    def thaw(self):
        _fs.freeze(self.paths["freezer"], False, False)

    def is_frozen(self):
        d = self.paths.get("freezer")
        return bool(d) and _fs.read(d, "freezer.state", "THAWED").strip() != "THAWED"

    def pids(self):
        return procs_in(self.paths.get("pids") or self.paths.get("freezer") or self._dirs()[0])

    def kill_all(self, sig=9, skip=()):
        if not self.owns_all():
            return False
        # No cgroup.kill on v1: freeze so that nothing forks between listing and
        # signalling, signal every pid, thaw so that the signals are delivered.
        fz = self.paths.get("freezer")
        if fz:
            self.freeze()
        try:
            signal_each(self.pids(), sig, skip)
        finally:
            if fz:
                self.thaw()
        return True

    def oom_count(self):
        d = self.paths.get("memory")
        if not d:
            return 0
        for line in _fs.read(d, "memory.oom_control", "").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def stats(self):
        from runh.cgroups.stats import v1_stats

        return v1_stats(self.paths)

"""The cgroup v2 manager: one directory under the unified mount.

create() enables every available controller in each ancestor's cgroup.subtree_control
(what runc does), so that the container's directory gets the interface files; apply()
translates LinuxResources into one batch of writes; the device rules become an eBPF
program attached by the Rust core.
"""

from runh.cgroups import CGROUP_ROOT, _fs, check_inside, isdir, procs_in, resolve
from runh.cgroups.base import (Manager, blkio_to_io_weight, device_rules, num, rdma_writes, signal_each,
                               shares_to_weight, swap_to_v2)


# The cgroup core files that are limits (cgroup-v2.rst), the only cgroup.* keys a config
# may set through linux.resources.unified.
_UNIFIED_CORE_LIMITS = ("cgroup.max.depth", "cgroup.max.descendants")


def resource_writes(res, update=False):
    """[(file, value)] for a LinuxResources dict, in the order they must be written."""
    res = res or {}
    w = []
    mem = res.get("memory") or {}
    limit = mem.get("limit")
    if limit:  # 0 is unset, as runc reads it (a 0-byte limit would OOM-kill the init)
        w.append(("memory.max", num(limit)))
    if mem.get("reservation") is not None:
        w.append(("memory.low", num(mem["reservation"])))
    swap = swap_to_v2(mem.get("swap"), limit)
    if swap is not None:
        w.append(("memory.swap.max", num(swap)))
    cpu = res.get("cpu") or {}
    if cpu.get("shares"):
        w.append(("cpu.weight", str(shares_to_weight(cpu["shares"]))))
    quota, period = cpu.get("quota"), cpu.get("period")
    if quota is not None or period:
        q = "max" if quota is None or quota <= 0 else str(quota)
        w.append(("cpu.max", f"{q} {period}" if period else q))
    if cpu.get("burst") is not None:
        w.append(("cpu.max.burst", str(cpu["burst"])))
    if cpu.get("idle") is not None:
        w.append(("cpu.idle", str(cpu["idle"])))
    if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
        from runh.errors import ConfigError

        raise ConfigError("linux.resources.cpu.realtime*: not supported on cgroup v2")
    if cpu.get("cpus"):
        w.append(("cpuset.cpus", cpu["cpus"]))
    if cpu.get("mems"):
        w.append(("cpuset.mems", cpu["mems"]))
    pids = res.get("pids") or {}
    if pids.get("limit"):  # 0 writes nothing, as runc reads it; negative: "max"
        lim = pids["limit"]
        w.append(("pids.max", "max" if lim < 0 else str(lim)))
    bio = res.get("blockIO") or {}
    if bio.get("weight"):
        w.append(("io.weight", f"default {blkio_to_io_weight(bio['weight'])}"))
    for d in bio.get("weightDevice") or ():
        if d.get("weight"):
            w.append(("io.weight", f"{d['major']}:{d['minor']} {blkio_to_io_weight(d['weight'])}"))
    for key, io_key in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                        ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for d in bio.get(key) or ():
            rate = d.get("rate") or 0
            w.append(("io.max", f"{d['major']}:{d['minor']} {io_key}={rate if rate else 'max'}"))
    for h in res.get("hugepageLimits") or ():
        w.append((f"hugetlb.{h['pageSize']}.max", num(h["limit"])))
    w += rdma_writes(res)
    for k, v in (res.get("unified") or {}).items():
        # A controller's file, never a path, nor a cgroup core file but the two limits:
        # {"cgroup.procs": "1"} would move the host's init into the container's cgroup,
        # where delete --force kills everything.
        if "/" in k or k.startswith(".") or (k.startswith("cgroup.") and k not in _UNIFIED_CORE_LIMITS):
            from runh.errors import ConfigError

            raise ConfigError(f"linux.resources.unified: invalid key {k!r}")
        w.append((k, v))
    return w


class V2Manager(Manager):
    version = 2
    limits_while_in = True  # the device filter is replaced in one bpf(2) attach

    def __init__(self, path):
        self.path = check_inside(path)  # absolute directory under CGROUP_ROOT

    @classmethod
    def for_path(cls, inner):
        own = "/"
        if not inner.startswith("/"):
            from runh.cgroups import own_cgroups

            own = own_cgroups().get("", "/")
        return cls(resolve(CGROUP_ROOT, inner, own))

    def _dirs(self):
        return [self.path]

    def to_state(self):
        return {"version": 2, "path": self.path, **self._state_extra()}

    def exists(self):
        return isdir(self.path)

    def create(self):
        _fs.create([self.path])
        # Enable controllers top-down in each ancestor; a write the kernel already holds
        # is a no-op. Where an ancestor has processes of its own (the "no internal
        # processes" rule) the batch fails; then enable one by one and keep what works.
        rel = self.path[len(CGROUP_ROOT):].strip("/").split("/")
        cur = CGROUP_ROOT
        for part in rel:
            avail = _fs.read(cur, "cgroup.controllers", "").split()
            if avail:
                try:
                    _fs.write(cur, [("cgroup.subtree_control", " ".join("+" + c for c in avail))])
                except Exception:
                    for c in avail:
                        try:
                            _fs.write(cur, [("cgroup.subtree_control", "+" + c)])
                        except Exception:
                            pass
            cur = cur + "/" + part

    def precheck(self, resources):
        """A linux.resources.unified key of a controller this cgroup cannot have is an
        error naming the key (runc: "can't set: controller not available"), before
        anything is made: available is what the nearest existing ancestor lists (create()
        enables all of those down to the container's cgroup)."""
        unified = (resources or {}).get("unified") or {}
        if not unified:
            return
        d = self.path.rpartition("/")[0] or CGROUP_ROOT
        while d != CGROUP_ROOT and not isdir(d):
            d = d.rpartition("/")[0]
        avail = set(_fs.read(d, "cgroup.controllers", "").split())
        for k in unified:
            ctrl = k.partition(".")[0]
            if ctrl != "cgroup" and ctrl not in avail:
                from runh.errors import ConfigError

                raise ConfigError(f"linux.resources.unified: {k!r} cannot be set: "
                                  f"controller {ctrl!r} is not available in {d}")

    def apply(self, resources, devices=(), update=False):
        self.precheck(resources)
        _fs.write(self.path, resource_writes(resources, update))
        # The device filter is built on create, and on update only when devices are given.
        if not update or (resources or {}).get("devices"):
            rules = device_rules(resources, self._keep_devices(devices, update))
            _fs.devices_v2(self.path, [(r["allow"], r["type"], r["major"], r["minor"], r["access"])
                                       for r in rules])

    def clone_target(self):
        return self.path, []

    def sub_target(self, sub):
        from runh.cgroups.base import sub_dir
        from runh.errors import ConfigError

        if set(sub) - {""}:
            raise ConfigError("--cgroup: cgroup v2 has one hierarchy, give a path without controllers")
        return sub_dir(self.path, sub.get("", "")), []

    def add(self, pid):
        _fs.write(self.path, [("cgroup.procs", str(pid))])

    def freeze(self):
        _fs.freeze(self.path, True, True)

    def thaw(self):
        _fs.freeze(self.path, True, False)

    def is_frozen(self):
        return _fs.read(self.path, "cgroup.freeze", "0").strip() == "1"

    def pids(self):
        return procs_in(self.path)

    def kill_all(self, sig=9, skip=()):
        if not self.owns_all():
            return False
        if not (sig == 9 and _fs.kill(self.path)):
            signal_each(self.pids(), sig, skip)
        return True

    def oom_count(self):
        ev = _kv(_fs.read(self.path, "memory.events", ""))
        return ev.get("oom_kill", 0)

    def stats(self):
        from runh.cgroups.stats import v2_stats

        return v2_stats(self.path)


def _kv(text):
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out

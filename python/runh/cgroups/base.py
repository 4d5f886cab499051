"""The cgroup manager interface, and what v1 and v2 share (OCI value conversions, the
default device rules).

A manager owns one container's cgroup (one directory on v2, one per hierarchy on v1):
claim() and record it, create() before the init is cloned, apply() the config's
resources, give create the placement (clone_target), then freeze/thaw, pids, kill_all,
stats, and remove() on delete.

Ownership: a container's cgroup directory may exist before create (made by an admin, or
by another runtime that uses the same default path, `/<id>`). claim() refuses one that
holds processes (runc 1.2 does too) and notes which directories this container makes:
only those are ever removed, and the cgroup is signalled as a whole (kill --all, delete
--force) only when every one of its directories is the container's own.
"""


class Manager:
    version = 0
    # True: create(pid) is called with the init's pid right after the clone (from the
    # core's on_pid, once the pid is recorded), and init is not cloned into
    # clone_target() (a systemd scope must be started with its first process); False:
    # create() before the clone.
    placed_by_pid = False
    # True: apply() may run while init is in the cgroup, setting up (create's on_setup).
    # Not on v1, whose device rules go in as "deny all, then allow each", a window in
    # which init's own open of /dev/null fails with EPERM.
    limits_while_in = False
    # linux.devices as (type, major, minor) dicts: kept in state.json so that an `update`
    # that replaces the device rules keeps the container's own devices usable.
    devices = ()

    def _keep_devices(self, devices, update):
        if not update:
            self.devices = [{"type": d.get("type", "c"), "major": d.get("major"),
                             "minor": d.get("minor")} for d in devices or ()]
            return devices
        return devices or self.devices

    def _devices_state(self):
        return {"devices": list(self.devices)} if self.devices else {}

    # Directories this container made (see the module doc); all of them unless claim()
    # found some in place. Kept in state.json as "owned".
    owned = None

    def _dirs(self):
        """Every directory of the cgroup (sorted, once each)."""
        raise NotImplementedError

    def claim(self):
        """Before anything is recorded or made: refuse a cgroup that already holds
        processes, and remember which directories this container will make: its own
        directories that do not exist yet, and the missing ancestors mkdir -p makes
        for them (removed again on delete when nothing else is left in them)."""
        from runh.cgroups import CGROUP_ROOT, isdir, procs_in

        owned = []
        for d in self._dirs():
            if not isdir(d):
                p = d
                while p != CGROUP_ROOT and not isdir(p) and p not in owned:
                    owned.append(p)
                    p = p.rpartition("/")[0]
                continue
            n = len(procs_in(d))
            if n:
                from runh.errors import ConfigError

                raise ConfigError(f"linux.cgroupsPath: cgroup {d} is not empty ({n} processes): "
                                  "refusing to put the container into a cgroup it does not own")
        self.owned = owned

    def set_owned(self, saved):
        """From state.json; a state written before "owned" existed: all (runh made them)."""
        if saved is None:
            self.owned = None
            return
        from runh.cgroups import check_inside

        leaves = self._dirs()
        self.owned = [check_inside(d) for d in saved
                      if any(d == x or x.startswith(d + "/") for x in leaves)]

    def owned_dirs(self):
        """The container's own directories that it made (removed with what is below)."""
        return self._dirs() if self.owned is None else [d for d in self._dirs() if d in self.owned]

    def owned_parents(self):
        """Ancestors it made for them, deepest first (removed only if empty)."""
        if self.owned is None:
            return []
        leaves = set(self._dirs())
        return sorted((d for d in self.owned if d not in leaves), key=len, reverse=True)

    def owns_all(self):
        """Is every directory of the cgroup this container's own? Only then are all the
        processes in it the container's to signal."""
        return self.owned is None or set(self.owned) >= set(self._dirs())

    def remove(self):
        """Remove the directories this container made (its own with any child cgroups;
        ancestors only if nothing else is in them)."""
        from runh.cgroups import _fs

        _fs.remove(self.owned_dirs())
        _fs.prune(self.owned_parents())

    def _state_extra(self):
        out = self._devices_state()
        if self.owned is not None:
            out["owned"] = list(self.owned)
        return out

    # --- life cycle
    def precheck(self, resources):
        """Before anything is recorded or made: refuse resources this host cannot apply
        (ConfigError naming the controller or key)."""

    def create(self):
        """Make the cgroup directories (and on v2 enable controllers in the ancestors)."""
        raise NotImplementedError

    def apply(self, resources, devices=(), update=False):
        """Write config.json's linux.resources; `devices` is linux.devices (allowed rwm)."""
        raise NotImplementedError

    def update(self, resources):
        """`runh update`: apply a LinuxResources document to a live container."""
        self.apply(resources, update=True)

    def clone_target(self):
        """(cgroup_dir, cgroup_procs) for runh._core.create: the v2 directory for
        clone3(CLONE_INTO_CGROUP), or the v1 cgroup.procs files to write the init pid into."""
        raise NotImplementedError

    def sub_target(self, sub):
        """clone_target() for `exec --cgroup`: `sub` maps a controller (v1 only) or ""
        (every controller) to an existing cgroup below the container's, as a relative
        path ("" or "/" is the container's own)."""
        raise NotImplementedError

    def add(self, pid):
        """Move a process in (exec'd processes, and the fallback when clone3 is refused)."""
        raise NotImplementedError

    def to_state(self):
        """A JSON-able dict for state.json; manager_from_state() rebuilds the manager."""
        raise NotImplementedError

    # --- operations on a live container
    def freeze(self):
        raise NotImplementedError

    def thaw(self):
        raise NotImplementedError

    def is_frozen(self):
        raise NotImplementedError

    def pids(self):
        """Every pid in the container's cgroup and its descendants."""
        raise NotImplementedError

    def kill_all(self, sig=9, skip=()):
        """Signal every process but the pids in `skip` (the caller signals those itself);
        SIGKILL uses cgroup.kill where the kernel has it (which skips nothing). False,
        with nothing signalled, when the cgroup is not the container's alone
        (owns_all): the caller signals the container's own process tree instead."""
        raise NotImplementedError

    def stats(self):
        """runc's `events --stats` "data" object."""
        raise NotImplementedError

    def oom_count(self):
        """How many OOM kills the cgroup has seen (for `events` "oom" notifications)."""
        raise NotImplementedError

    def exists(self):
        raise NotImplementedError


# Devices a container may always use, as runc and crun allow them: the standard character
# devices, any pty, and mknod of anything (mknod alone grants no access).
DEFAULT_DEVICES = [
    {"allow": True, "type": "c", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},  # null
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},  # zero
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},  # full
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},  # random
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},  # urandom
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},  # tty
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # ptmx
    {"allow": True, "type": "c", "major": 136, "minor": None, "access": "rwm"},  # pts/*
]


def device_rules(resources, devices=()):
    """The effective rule list: deny all, the config's linux.resources.devices, then the
    defaults and linux.devices (each allowed rwm), in that order (last match wins), merged
    by merge_device_rules. The defaults come after the config's rules, as runc orders
    them, so the usual leading "deny all" of a config does not take /dev/null away from
    the container."""
    rules = [{"allow": False, "type": "a", "major": None, "minor": None, "access": "rwm"}]
    for r in (resources or {}).get("devices") or ():
        rules.append({"allow": bool(r.get("allow")), "type": r.get("type") or "a",
                      "major": r.get("major"), "minor": r.get("minor"),
                      "access": r.get("access") or "rwm"})
    rules += [dict(d) for d in DEFAULT_DEVICES]
    for d in devices or ():
        if d.get("type") == "p":  # fifos are not subject to the device controller
            continue
        rules.append({"allow": True, "type": d.get("type", "c")[0].replace("u", "c"),
                      "major": d.get("major"), "minor": d.get("minor"), "access": "rwm"})
    return merge_device_rules([_wild(r) for r in rules])


def merge_device_rules(rules):
    """The rule list reduced as the v1 kernel reduces it (devcgroup_update_access), and as
    runc's emulator does for v2, so that v1 and v2 decide alike: an "a" rule sets the
    default and drops every exception; a rule against the default adds its access bits to
    the exception with the same type:major:minor; a rule with the default takes its bits
    away. Separate "r" and "w" allows for one device thus become one "rw" exception, and
    O_RDWR (the kernel asks for r|w at once, and a rule grants only if it covers every
    bit) is allowed. Result: the default rule first, then the exceptions, whose order no
    longer matters (they all allow, or all deny)."""
    default = False
    exc = {}
    for r in rules:
        if r["type"] == "a":  # the kernel reads only the "a": all devices, all access
            default, exc = bool(r["allow"]), {}
            continue
        key = (r["type"], r["major"], r["minor"])
        bits = set(r["access"] or "rwm")
        if bool(r["allow"]) != default:
            exc[key] = exc.get(key, set()) | bits
        elif key in exc:
            exc[key] -= bits
            if not exc[key]:
                del exc[key]
    out = [{"allow": default, "type": "a", "major": None, "minor": None, "access": "rwm"}]
    for (t, major, minor), bits in exc.items():
        out.append({"allow": not default, "type": t, "major": major, "minor": minor,
                    "access": "".join(c for c in "rwm" if c in bits)})
    return out


def _wild(r):
    for k in ("major", "minor"):
        if r[k] is not None and r[k] < 0:
            r[k] = None
    return r


def shares_to_weight(shares):
    """cpu.shares [2, 262144] → cpu.weight [1, 10000], the linear map runc and crun use."""
    if not shares:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight):
    """blkio.weight [10, 1000] → io.weight [1, 10000]."""
    if not weight:
        return 0
    return 1 + ((weight - 10) * 9999) // 990


def swap_to_v2(swap, memory):
    """OCI memory.swap is memory+swap (v1's memsw); v2's memory.swap.max is swap alone.
    Returns None for "leave unset", -1 for "max"."""
    from runh.errors import ConfigError

    if memory == -1 and not swap:
        return -1
    if swap is None or swap == 0:
        return None
    if swap == -1:
        return -1
    if not memory or memory == -1:
        raise ConfigError("linux.resources.memory.swap: a swap limit needs a memory limit")
    if swap < memory:
        raise ConfigError("linux.resources.memory.swap: memory+swap limit must be >= memory limit")
    return swap - memory


def num(v):
    """An OCI limit as a cgroup v2 value: -1 (or any negative) is "max"."""
    return "max" if v is not None and v < 0 else str(v)


def rdma_writes(res):
    """linux.resources.rdma {device: {hcaHandles, hcaObjects}} → rdma.max lines (the same
    file on v1 and v2); an omitted limit is "max"."""
    out = []
    for dev, lim in sorted((res.get("rdma") or {}).items()):
        lim = lim or {}
        h, o = lim.get("hcaHandles"), lim.get("hcaObjects")
        if h is None and o is None:
            continue
        out.append(("rdma.max", f"{dev} hca_handle={'max' if h is None else h} "
                                f"hca_object={'max' if o is None else o}"))
    return out


def sub_dir(top, rel):
    """The existing directory `rel` below the cgroup directory `top` (exec --cgroup)."""
    from runh.cgroups import isdir
    from runh.errors import ConfigError

    parts = [p for p in rel.split("/") if p and p != "."]
    if ".." in parts:
        raise ConfigError(f"--cgroup {rel}: must not leave the container's cgroup")
    d = "/".join([top.rstrip("/")] + parts)
    if not isdir(d):
        raise ConfigError(f"--cgroup {rel}: cgroup {d} does not exist")
    return d


def signal_each(pids, sig, skip=()):
    """kill(2) each pid but those in skip; one already gone is not an error."""
    import posix

    for pid in pids:
        if pid in skip:
            continue
        try:
            posix.kill(pid, sig)
        except ProcessLookupError:
            pass

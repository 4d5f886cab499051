"""The systemd cgroup driver (`--systemd-cgroup`): the container's cgroup is a transient
unit that systemd makes, over its D-Bus API, as runc's systemd driver does.

Naming (runc's): linux.cgroupsPath "slice:prefix:name" is the scope `prefix-name.scope`
in `slice` (a name ending in ".slice" is a slice unit instead, and the prefix is
ignored); an empty cgroupsPath is "system.slice:runh:<id>" ("user.slice" for a user's
manager). Slice names nest with dashes as systemd nests them: "a-b.slice" is
/a.slice/a-b.slice.

Making it: StartTransientUnit with Delegate=yes and PIDs=[the init's pid] (a scope needs
its first process: the core calls `create(pid)` right after the clone, before init gets
its plan), no default dependencies, accounting on, and the limits systemd knows as unit
properties (`unit_properties`); then runh waits for the job, and writes every limit to
the cgroup's files as the v2 manager does (what systemd has no property for, and the
exact values where systemd rounds, as runc does after its unit exists). A slice unit has
no process to start with: it is made before the clone, and init is cloned into it.

Only pure cgroup v2: on hybrid and legacy hosts --systemd-cgroup is refused with one line
(runc would use systemd there too, but runh's v1 manager is cgroupfs only).

D-Bus (runh.cgroups._dbus over libsystemd's sd-bus) is loaded only by create, update and
delete of a systemd container; pause/resume, ps, events, kill --all and status read and write the
unit's cgroup files, as runc does.
"""
from runh.cgroups import CGROUP_ROOT, isdir
from runh.cgroups.base import blkio_to_io_weight, shares_to_weight, swap_to_v2
from runh.cgroups.v2 import V2Manager
from runh.errors import RunhError

DEFAULT_PREFIX = "runh"
ANNOTATION = "org.systemd.property."
# How long runh waits for systemd's answer to a call, and for a start or stop job to
# end (runc waits 30 s for a job as well).
JOB_TIMEOUT = 30.0
_INFINITY = (1 << 64) - 1  # systemd's "infinity" (UINT64_MAX) for limits
_UNIT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\")
_PATH_FORM = '"slice:prefix:name" (for example "system.slice:runh:ID")'


def _config_error(msg):
    from runh.errors import ConfigError

    return ConfigError(msg)


def _valid_unit(unit):
    return (len(unit) <= 255 and set(unit) <= _UNIT_CHARS and not unit.startswith(".")
            and unit not in (".scope", "-.scope"))


def expand_slice(slice_name):
    """The cgroup path of a slice: "a-b-c.slice" is "/a.slice/a-b.slice/a-b-c.slice",
    "-.slice" the root. Dashes at either end or doubled, slashes, and names that are not
    "*.slice" are errors."""
    base = slice_name[:-len(".slice")]
    if not slice_name.endswith(".slice") or not base or not _valid_unit(slice_name):
        raise _config_error(f"invalid slice name {slice_name!r}")
    if base == "-":
        return "/"
    path, prefix = "", ""
    for part in base.split("-"):
        if not part:
            raise _config_error(f"invalid slice name {slice_name!r}")
        path += "/" + prefix + part + ".slice"
        prefix += part + "-"
    return path


def unit_names(cgroups_path, container_id, user=False):
    """(slice, unit) for linux.cgroupsPath; ConfigError naming it and the form expected."""
    from runh.errors import ConfigError

    def bad(why):
        return _config_error(f"linux.cgroupsPath {cgroups_path!r}: {why}; with --systemd-cgroup "
                             f"it must have the form {_PATH_FORM}")

    if not cgroups_path:
        slice_name, prefix, name = "", DEFAULT_PREFIX, container_id
    else:
        parts = cgroups_path.split(":")
        if len(parts) != 3:
            raise bad(f"{len(parts)} part{'s' if len(parts) > 1 else ''}, not 3")
        slice_name, prefix, name = parts
        if not name:
            raise bad("the name is empty")
    slice_name = slice_name or ("user.slice" if user else "system.slice")
    unit = name if name.endswith(".slice") else f"{prefix}-{name}.scope"
    try:
        expand_slice(slice_name)
        if unit.endswith(".slice"):
            expand_slice(unit)
    except ConfigError as e:
        raise bad(str(e)) from None
    if not _valid_unit(unit) or unit == "-.slice":
        raise bad(f"invalid unit name {unit!r} (letters, digits and \":-_.\\\" only)")
    return slice_name, unit


# ---------------------------------------------------------------- unit properties

def _limit(v):
    """An OCI byte/count limit as systemd's: negative is infinity."""
    return _INFINITY if v < 0 else v


def range_to_bits(text, what):
    """A cpuset list ("0-2,7") as systemd's AllowedCPUs/AllowedMemoryNodes bytes: bit n of
    byte n // 8 for CPU n (little-endian, as systemd's cpu_set_from_dbus reads it)."""
    bits = 0
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            lo, _, hi = part.partition("-")
            lo, hi = int(lo), int(hi or lo)
            if lo < 0 or hi < lo or hi > 65535:
                raise ValueError
            for n in range(lo, hi + 1):
                bits |= 1 << n
    except ValueError:
        raise _config_error(f"{what}: invalid cpuset list {text!r}") from None
    if not bits:
        raise _config_error(f"{what}: empty cpuset list {text!r}")
    return bits.to_bytes((bits.bit_length() + 7) // 8, "little")


def _cpu_quota(props, quota, period):
    """CPUQuotaPeriodUSec and CPUQuotaPerSecUSec, as runc sets them: systemd keeps the
    quota as a share of a second in whole percent, so it is rounded up to 10 ms per second
    (the exact cpu.max is written to the file afterwards)."""
    if period:
        props.append(("CPUQuotaPeriodUSec", ("t", period)))
    if quota or period:
        per_sec = _INFINITY
        if quota and quota > 0:
            per_sec = quota * 1000000 // (period or 100000)
            if per_sec % 10000:
                per_sec = (per_sec // 10000 + 1) * 10000
        props.append(("CPUQuotaPerSecUSec", ("t", per_sec)))


_UNIFIED_MEMORY = {"memory.high": "MemoryHigh", "memory.low": "MemoryLow", "memory.min": "MemoryMin",
                   "memory.max": "MemoryMax", "memory.swap.max": "MemorySwapMax"}


def _unified_properties(props, unified):
    """linux.resources.unified entries systemd has a property for (runc's list); the
    others are only written to the files."""
    for k, v in (unified or {}).items():
        what = f"linux.resources.unified[{k!r}]"
        v = str(v).strip()
        try:
            if k == "cpu.max":
                f = v.split()
                if not 1 <= len(f) <= 2:
                    raise ValueError
                quota = 0 if f[0] == "max" else int(f[0])
                _cpu_quota(props, quota, int(f[1]) if len(f) == 2 else 100000)
            elif k == "cpu.weight":
                props.append(("CPUWeight", ("t", int(v))))
            elif k in ("cpuset.cpus", "cpuset.mems"):
                name = "AllowedCPUs" if k == "cpuset.cpus" else "AllowedMemoryNodes"
                props.append((name, ("ay", range_to_bits(v, what))))
            elif k in _UNIFIED_MEMORY:
                props.append((_UNIFIED_MEMORY[k], ("t", _INFINITY if v == "max" else int(v))))
            elif k == "pids.max":
                props.append(("TasksMax", ("t", _INFINITY if v == "max" else int(v))))
        except ValueError:
            raise _config_error(f"{what}: invalid value {v!r}") from None


def unit_properties(res):
    """[(name, (signature, value))]: the limits of a LinuxResources dict that systemd
    manages as unit properties (cgroup v2 names, systemd.resource-control(5))."""
    res = res or {}
    props = []
    mem = res.get("memory") or {}
    limit = mem.get("limit")
    if limit:
        props.append(("MemoryMax", ("t", _limit(limit))))
    if mem.get("reservation"):
        props.append(("MemoryLow", ("t", _limit(mem["reservation"]))))
    swap = swap_to_v2(mem.get("swap"), limit)
    if swap is not None:
        props.append(("MemorySwapMax", ("t", _limit(swap))))
    cpu = res.get("cpu") or {}
    if cpu.get("shares"):
        props.append(("CPUWeight", ("t", shares_to_weight(cpu["shares"]))))
    _cpu_quota(props, cpu.get("quota") or 0, cpu.get("period") or 0)
    if cpu.get("cpus"):
        props.append(("AllowedCPUs", ("ay", range_to_bits(cpu["cpus"], "linux.resources.cpu.cpus"))))
    if cpu.get("mems"):
        props.append(("AllowedMemoryNodes", ("ay", range_to_bits(cpu["mems"], "linux.resources.cpu.mems"))))
    pids = (res.get("pids") or {}).get("limit")
    if pids:
        props.append(("TasksMax", ("t", _limit(pids))))
    weight = (res.get("blockIO") or {}).get("weight")
    if weight:
        props.append(("IOWeight", ("t", blkio_to_io_weight(weight))))
    _unified_properties(props, res.get("unified"))
    return props


def annotation_properties(annotations):
    """`org.systemd.property.<Name>` annotations as unit properties, as runc reads them:
    the value in GVariant text format (`uint64 123`, `'inactive-or-failed'`), and a name
    ending in a lower-case letter + "Sec" (TimeoutStopSec) becomes the "USec" property
    with the value in microseconds."""
    props = []
    for key, text in (annotations or {}).items():
        if not key.startswith(ANNOTATION):
            continue
        name = key[len(ANNOTATION):]
        if len(name) < 3 or not (name.isascii() and name.isalpha()):
            raise _config_error(f"annotations[{key!r}]: a systemd property name is 3 or more letters")
        from runh.cgroups._gvariant import GVariantError, parse

        try:
            sig, value = parse(text)
        except GVariantError as e:
            raise _config_error(f"annotations[{key!r}]: {text!r}: {e}") from None
        if name.endswith("Sec") and name[-4].islower():
            if sig not in ("y", "n", "q", "i", "u", "x", "t", "d"):
                raise _config_error(f"annotations[{key!r}]: {text!r}: a number of seconds is expected")
            name, sig, value = name[:-3] + "USec", "t", int(value * 1000000)
        props.append((name, (sig, value)))
    return props


# ---------------------------------------------------------------- the manager

def _owner_uid():
    """The uid whose manager runh talks to: 0 for the system's; a user's own otherwise,
    also as root of a user namespace (rootless podman runs runh there), where it is the
    outside uid that 0 maps to."""
    import posix

    euid = posix.geteuid()
    if euid != 0:
        return euid
    try:
        with open("/proc/self/uid_map") as f:
            first = f.read().split()
    except OSError:
        return 0
    if len(first) >= 3 and first[0] == "0" and first[2] != "4294967295":
        return int(first[1])
    return 0


def _mark(phase):
    import sys

    t = sys.modules.get("runh.timing")  # RUNH_TIMING only
    if t is not None:
        t.mark(phase)


def _dbus_error(e, what):
    from runh.errors import SyscallError

    return SyscallError(f"systemd: {what}: {e}", getattr(e, "errno", 0) or 0)


# prefetch()'s connection being made: (uid, lock released when done, [Connection or error]).
_pending = None


def prefetch():
    """Load the D-Bus client (libsystemd) and connect to the manager in a thread, now, so
    that both overlap create's config load (the core releases the GIL meanwhile); the
    first _connect() for that uid takes the connection (or raises its error). Only on a
    pure cgroup v2 host (elsewhere for_config refuses at once). `_thread`, not
    `threading` (~1 ms and 4 modules more under -I -S)."""
    global _pending
    from runh import cgroups

    if _pending is not None or cgroups.mode() != "unified":
        return
    import _thread

    # Every extension module that create or the thread will need is loaded here, first:
    # the thread's dlopen of libsystemd (and its 6 libraries, BIND_NOW) holds the dynamic
    # loader's lock until it is done, so an extension imported meanwhile by the config
    # load (_json, for runh.jsonio) waited for all of it. Measured in the emulated guest
    # (a thread loading libsystemd, then `import _json` here): the import took 29-736 ms,
    # up to the whole load (739 ms); loaded first, 0. In the guest benchmark create's
    # config load+validate took 1.13-1.26 s against 0.39-0.44 s inside `run`, whose
    # console check had loaded _json before this thread started. The thread then imports
    # nothing, so it never takes the GIL from the config load for an import either.
    from runh import jsonio  # noqa: F401  (_json)
    from runh import _core  # noqa: F401  (SdBus; create needs it anyway)
    from runh.cgroups import _dbus  # noqa: F401

    uid, lock, box = _owner_uid(), _thread.allocate_lock(), []

    def run():
        try:
            box.append(_connect_now(uid))
        except BaseException as e:  # re-raised by _connect, in the caller's thread
            box.append(e)
        finally:
            lock.release()

    lock.acquire()
    _pending = (uid, lock, box)
    _thread.start_new_thread(run, ())


# One connection per manager for the whole process: `run` starts and later stops its
# unit over the same one (a connection costs a connect and an AUTH round trip).
_open = {}


def _connect(uid):
    """The connection to uid's manager (0: the system's); NotSupported when none runs."""
    global _pending
    conn = _open.get(uid)
    if conn is None:
        if _pending is not None and _pending[0] == uid:
            _, lock, box = _pending
            _pending = None
            lock.acquire()
            if isinstance(box[0], BaseException):
                raise box[0]
            conn = box[0]
        else:
            conn = _connect_now(uid)
        _open[uid] = conn
    return conn


def _disconnect(uid):
    conn = _open.pop(uid, None)
    if conn is not None:
        conn.close()


def _connect_now(uid):
    from runh.cgroups import _dbus

    where = _dbus.SYSTEM_SOCKET if uid == 0 else _dbus.user_socket(uid)
    try:
        return _dbus.Connection(where, uid=uid, timeout=JOB_TIMEOUT)
    except (FileNotFoundError, ConnectionRefusedError):
        from runh.errors import NotSupported

        who = "systemd is not running (no " + where + ")" if uid == 0 else \
            f"no systemd user manager for uid {uid} (no {where})"
        raise NotSupported(f"--systemd-cgroup: {who}") from None
    except (OSError, ValueError) as e:  # sd-bus's errors are OSErrors (a refused AUTH: EPERM)
        raise _dbus_error(e, f"connect to {where}") from None


class SystemdManager(V2Manager):
    """A container's cgroup as a systemd unit; the cgroup files are the v2 manager's.

    Ownership (integ's Manager.owned/owns_all): the unit's directory is the container's
    own once runh has started the unit, and nothing else ever is (the slices above it are
    systemd's). The record in state.json names the unit, and the Description runh gives
    it (with a random token), before StartTransientUnit is sent: a runh killed before it
    records "started" leaves a unit that `delete` recognises as its own by that
    Description, and a unit of the same name that runh did not start (another container's
    scope, a system slice named by a config) never has it: such a unit is never stopped,
    reset, signalled as a whole or removed."""

    limits_while_in = False  # its limits go to systemd too: kept in their old place

    def __init__(self, path, unit, slice_name, uid=0, properties=(), started=False, description=""):
        super().__init__(path)  # check_inside: the path is under /sys/fs/cgroup
        self.unit = unit
        self.slice = slice_name
        self.uid = uid  # whose manager: 0 the system's, else that user's `systemd --user`
        self.started = started  # did this container's create start the unit?
        self.description = description
        self.owned = [path] if started else []
        self._checked = started
        self.properties = list(properties)  # only at create: limits and annotations
        self._conn = None
        # A scope is started with its first process, the init, right after the clone
        # (a slice has none: it is started before, and init is cloned into it).
        self.placed_by_pid = unit.endswith(".scope")

    @classmethod
    def for_config(cls, linux, container_id, annotations=None):
        from runh import cgroups

        if cgroups.mode() != "unified":
            from runh.errors import NotSupported

            raise NotSupported(f"--systemd-cgroup: runh's systemd cgroup driver needs a pure cgroup v2 "
                               f"host, and this one is {cgroups.mode()} (run without --systemd-cgroup)")
        uid = _owner_uid()
        slice_name, unit = unit_names((linux or {}).get("cgroupsPath") or "", container_id, user=uid != 0)
        # Checked here, before anything is made; annotations last: they override.
        props = unit_properties((linux or {}).get("resources")) + annotation_properties(annotations)
        conn, top = None, ""
        if uid != 0:
            # A user's units live below its manager's own cgroup, e.g.
            # /user.slice/user-1000.slice/user@1000.service.
            from runh.cgroups._dbus import MANAGER_IFACE, DBusError

            conn = _connect(uid)
            try:
                top = conn.get(MANAGER_IFACE, "ControlGroup").rstrip("/")
            except (DBusError, OSError) as e:
                _disconnect(uid)
                raise _dbus_error(e, "get the manager's ControlGroup") from None
        parent = expand_slice(slice_name)
        import posix

        m = cls(CGROUP_ROOT + top + ("" if parent == "/" else parent) + "/" + unit, unit, slice_name,
                uid, props, description=f"runh container {container_id} {posix.urandom(8).hex()}")
        m._conn = conn
        return m

    def claim(self):
        """The base check (a cgroup at the unit's path that holds processes, such as an
        active unit of that name, is refused before anything is recorded), then nothing
        is the container's own until its unit is started."""
        super().claim()
        if not self.placed_by_pid and isdir(self.path):
            # An active slice (its cgroup exists) that nothing configured, e.g. one
            # `systemctl start x.slice` made, is "pristine" to systemd, which would let
            # StartTransientUnit take it over (runc does that), and `delete` would then
            # stop it. runh makes only slices that do not exist yet.
            raise _config_error(f"linux.cgroupsPath: the slice unit {self.unit} exists already "
                                f"({self.path}): refusing to take over a unit runh did not start")
        self.owned = []

    def owns_all(self):
        """Did this container start the unit? A record without "started" (a create killed
        between StartTransientUnit and its record, or one that failed) asks systemd once
        whether a unit of that name carries this container's Description."""
        if not self._checked:
            self._checked = True
            if self._is_ours():
                self.started, self.owned = True, [self.path]
        return self.started

    def _is_ours(self):
        from runh.cgroups._dbus import DBusError
        from runh.errors import NotSupported

        if not self.description:
            return False
        try:
            obj = self._bus().call("GetUnit", "s", (self.unit,))[0]
            return self._bus().get("org.freedesktop.systemd1.Unit", "Description", path=obj) == self.description
        except DBusError as e:
            if e.name == "org.freedesktop.systemd1.NoSuchUnit":
                return False
            raise _dbus_error(e, f"look up unit {self.unit}") from None
        except NotSupported:
            return False  # no systemd: no unit either
        except OSError as e:
            raise _dbus_error(e, f"look up unit {self.unit}") from None

    # systemd removes a scope's cgroup by itself once its last process is gone, so the
    # directory can vanish between two steps of kill or delete: its files then fail with
    # ENODEV (or ENOENT), which means there is nothing left to do.
    def kill_all(self, sig=9, skip=()):
        try:
            return super().kill_all(sig, skip)
        except (OSError, RunhError) as e:
            if getattr(e, "errno", 0) not in (2, 19):
                raise
            return True

    def pids(self):
        try:
            return super().pids()
        except OSError as e:
            if e.errno not in (2, 19):
                raise
            return []

    def to_state(self):
        out = super().to_state()
        out["systemd"] = {"unit": self.unit, "slice": self.slice, "uid": self.uid,
                          "started": self.started, "description": self.description}
        return out

    # --- D-Bus
    def _bus(self):
        if self._conn is None:
            self._conn = _connect(self.uid)
        return self._conn

    def _call(self, what, member, sig=None, body=()):
        from runh.cgroups._dbus import DBusError

        try:
            return self._bus().call(member, sig, body)
        except (DBusError, OSError) as e:
            raise _dbus_error(e, what) from None

    def _wait(self, job, what):
        try:
            result = self._bus().wait_job(job, JOB_TIMEOUT)
        except TimeoutError:
            from runh.errors import SyscallError

            raise SyscallError(f"systemd: {what}: no answer from systemd in {JOB_TIMEOUT:.0f} s", 110) from None
        except OSError as e:
            raise _dbus_error(e, what) from None
        return result

    def close(self):
        """Drop the connection: the process's shared one stays open for the next call."""
        self._conn = None

    # --- life cycle
    def create(self, pid=None):
        """Start the unit (a scope with `pid` in it, or a slice) and wait for its job. The
        caller has recorded the unit's name and Description (to_state) already."""
        from runh.cgroups._dbus import DBusError

        if self.placed_by_pid:
            props = [("Slice", ("s", self.slice)), ("Delegate", ("b", True)), ("PIDs", ("au", [pid]))]
        else:
            props = [("Wants", ("as", [self.slice]))]
        props += [("MemoryAccounting", ("b", True)), ("CPUAccounting", ("b", True)),
                  ("IOAccounting", ("b", True)), ("TasksAccounting", ("b", True)),
                  ("DefaultDependencies", ("b", False))]
        # The Description last, after the annotations: it is how `delete` knows the unit.
        props += self.properties + [("Description", ("s", self.description))]
        what = f"start unit {self.unit}"
        self._bus()
        _mark("systemd: connected")
        for attempt in (1, 2):
            try:
                job = self._bus().call("StartTransientUnit", "ssa(sv)a(sa(sv))",
                                       (self.unit, "replace", props, []))[0]
                break
            except DBusError as e:
                if e.name != "org.freedesktop.systemd1.UnitExists" or attempt == 2:
                    raise _dbus_error(e, what) from None
                # A unit of that name is left over (a failed or stopping one): clear it
                # and try once more, as runc does.
                self._reset_failed()
            except OSError as e:
                raise _dbus_error(e, what) from None
        # The unit is this container's from here on, whatever its job's end.
        self.started, self.owned, self._checked = True, [self.path], True
        _mark("systemd: StartTransientUnit answered")
        result = self._wait(job, what)
        _mark("systemd: job done")
        if result != "done":
            from runh.errors import SyscallError

            raise SyscallError(f"systemd: {what}: the job ended {result!r} (see journalctl -u {self.unit})")

    def update(self, resources):
        """The unit's properties first (so systemd keeps them), then the files."""
        props = unit_properties(resources)
        if props:
            self._call(f"set properties of unit {self.unit}", "SetUnitProperties", "sba(sv)",
                       (self.unit, True, props))
        super().update(resources)

    def _reset_failed(self):
        from runh.cgroups._dbus import DBusError

        try:
            self._bus().call("ResetFailedUnit", "s", (self.unit,))
        except (DBusError, OSError):
            pass  # not failed, or already gone

    def remove(self):
        """Stop the unit (systemd removes its cgroup), clear it if it failed, and remove
        what is left of its directory: only a unit this container started (owns_all)."""
        from runh.cgroups._dbus import DBusError

        if not self.owns_all():
            return
        what = f"stop unit {self.unit}"
        try:
            job = self._bus().call("StopUnit", "ss", (self.unit, "replace"))[0]
        except DBusError as e:
            if e.name != "org.freedesktop.systemd1.NoSuchUnit":
                raise _dbus_error(e, what) from None
            job = None
        except OSError as e:
            raise _dbus_error(e, what) from None
        if job is not None:
            self._wait(job, what)
        self._reset_failed()
        self.close()
        super().remove()

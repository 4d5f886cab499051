"""linux.intelRdt through the resctrl filesystem (runtime-spec config-linux.md "IntelRdt"),
done as runc does it. Imported only by configs that have intelRdt.

create: `prepare` checks everything, then makes or finds the CLOS directory (closID, or
the container's id when it has none), writes the schemata, and the MON group with
enableMonitoring; the core then writes the init's pid to their `tasks` files (with the
cgroup.procs files, before init is sent its plan), and state.json records what was made.
delete: `remove` takes away what create made: the MON group, and the CLOS directory when
runh created it (never a closID's: it is the config's, and may be shared).

Where no resctrl is mounted (this development machine) create fails with a line naming
linux.intelRdt and nothing is made: that path is tested (tests/test_parity.py). The rest
runs only on hardware with RDT and a mounted resctrl, which no test machine of this
project has: it follows the kernel's documented interface (Documentation/filesystems/
resctrl.rst) and runc's manager, and is untested.

Differences from the spec's letter, as in runc: with a closID whose directory exists, the
schemata are written, not compared with the ones there (a read-back differs from what
was written in form, not meaning: leading zeros, cache ids' order)."""

import posix as os  # as runh.state: `os` costs 0.9 ms under -I -S

from runh.errors import ConfigError, SyscallError

FIELD = "linux.intelRdt"
# Names the kernel keeps at the top of resctrl.
_RESERVED = ("info", "mon_groups", "mon_data")


def mountpoint():
    """Where resctrl is mounted in runh's mount namespace, or None."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                if post.split(" ", 1)[0] == "resctrl":
                    return pre.split(" ")[4]
    except OSError:
        pass
    return None


def _check(rdt):
    if not isinstance(rdt, dict):
        raise ConfigError(f"{FIELD} must be an object")
    clos = rdt.get("closID")
    if clos is not None and (not isinstance(clos, str) or not clos or clos in (".", "..")
                             or (clos != "/" and "/" in clos) or "\n" in clos or "\0" in clos
                             or clos in _RESERVED):
        raise ConfigError(f"{FIELD}.closID {clos!r} is not a name for a resctrl group")
    lines = []
    for key, prefix in (("l3CacheSchema", "L3"), ("memBwSchema", "MB")):
        v = rdt.get(key)
        if v in (None, ""):
            continue
        if not isinstance(v, str) or "\n" in v or not v.startswith(prefix):
            raise ConfigError(f"{FIELD}.{key} must be one line starting with {prefix}:")
        lines.append(v)
    for v in rdt.get("schemata") or []:
        if not isinstance(v, str) or "\n" in v:
            raise ConfigError(f"{FIELD}.schemata: each entry must be one line")
        if v:
            lines.append(v)
    return clos, lines


def _syscall(e, what):
    return SyscallError(f"{FIELD}: {what}: {os.strerror(e.errno).lower()}", e.errno)


def prepare(rdt, container_id, note=lambda record: None):
    """Check, then make what the container needs; returns the record for state.json
    ({"dir", "created", "mon"}) and the `tasks` files to write the init's pid to.
    `note(record)` is called with the record as it will be before each directory is made
    (recorded before made: a create killed at any instant leaves `delete` its name)."""
    clos, lines = _check(rdt)
    root = mountpoint()
    if root is None:
        raise ConfigError(f"{FIELD} is set, but no resctrl filesystem is mounted "
                          "(Intel RDT not supported or not enabled on this host)")
    if clos == "/":
        group = root
    else:
        group = root.rstrip("/") + "/" + (clos or container_id)
    record = {"dir": group, "created": False, "mon": None}
    try:
        if clos is not None and not lines:
            # A pre-configured CLOS: it must be there.
            try:
                os.stat(group)
            except OSError as e:
                raise _syscall(e, f"the CLOS {group} must exist when no schemata are given") from None
        else:
            if clos is None:
                note(dict(record, created=True))
            try:
                os.mkdir(group, 0o755)
                record["created"] = clos is None
                record["made"] = True
            except FileExistsError:
                if clos is None:
                    note(record)  # not ours: delete must leave it
                    raise ConfigError(f"{FIELD}: {group} already exists") from None
        if lines:
            try:
                with open(group + "/schemata", "w") as f:
                    f.write("\n".join(lines) + "\n")
            except OSError as e:
                raise _syscall(e, f"write {group}/schemata") from None
        tasks = [group + "/tasks"]
        if rdt.get("enableMonitoring"):
            mon = group + "/mon_groups/" + container_id
            note(dict(record, mon=mon))
            try:
                os.mkdir(mon, 0o755)
            except OSError as e:
                raise _syscall(e, f"make the MON group {mon}") from None
            record["mon"] = mon
            tasks.append(mon + "/tasks")
    except BaseException:
        remove(record, also_made=True)
        raise
    record.pop("made", None)
    return record, tasks


def remove(record, also_made=False):
    """Undo `prepare` (delete, or a create that failed). Best effort: what is gone is
    gone; a group the kernel refuses to remove is reported."""
    if not record:
        return
    paths = [record.get("mon")]
    if record.get("created") or (also_made and record.get("made")):
        paths.append(record.get("dir"))
    for p in paths:
        if p:
            try:
                os.rmdir(p)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise _syscall(e, f"remove {p}") from None

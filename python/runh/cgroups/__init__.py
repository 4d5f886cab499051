"""Cgroups: one Manager interface (base.py) with a cgroup v2 (v2.py) and a v1 (v1.py)
implementation, and the choice between them.

The host's mode is detected from two stat calls (no mountinfo parse): "unified" when
/sys/fs/cgroup is cgroup2, "hybrid" when cgroup2 sits at /sys/fs/cgroup/unified beside v1
controller mounts, "legacy" otherwise. On hybrid hosts everything uses v1, like runc: the
unified tree there usually has no controllers bound (here only hugetlb).

Import cost matters (create, delete, kill --all pay it): this package imports `posix`, not
`os` (0.8 ms under -I -S, see runh/state.py); the few path helpers it needs are below.
"""
import posix

_S_IFMT, _S_IFDIR = 0o170000, 0o040000


def exists(path):
    try:
        posix.stat(path)
        return True
    except OSError:
        return False


def isdir(path):
    try:
        return posix.stat(path).st_mode & _S_IFMT == _S_IFDIR
    except OSError:
        return False


def normpath(path):
    """What os.path.normpath does, for the absolute and relative cgroup paths used here."""
    out = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not path.startswith("/"):
                out.append(part)
            continue
        out.append(part)
    joined = "/".join(out)
    return "/" + joined if path.startswith("/") else (joined or ".")


def walk_dirs(top):
    """top and every directory below it (cgroup trees have no symlinks)."""
    out = [top]
    i = 0
    while i < len(out):
        try:
            with posix.scandir(out[i]) as it:
                out += [e.path for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            pass
        i += 1
    return out

CGROUP_ROOT = "/sys/fs/cgroup"

_mode = None


def mode():
    """"unified", "hybrid" or "legacy"."""
    global _mode
    if _mode is None:
        if exists(CGROUP_ROOT + "/cgroup.controllers"):
            _mode = "unified"
        elif exists(CGROUP_ROOT + "/unified/cgroup.controllers"):
            _mode = "hybrid"
        else:
            _mode = "legacy"
    return _mode


def own_cgroups():
    """{controller or "" (v2): path} from /proc/self/cgroup; relative cgroupsPath values
    and the default path are resolved against these, as runc does."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(","):
                out[c] = path
    return out


def inner_path(linux, container_id):
    """The cgroup path inside each hierarchy, as the config gives it: an absolute
    cgroupsPath from the hierarchy's root, a relative one (or, without one, the container
    id) from the caller's own cgroup; `resolve` turns it into a directory."""
    path = (linux or {}).get("cgroupsPath") or ""
    if ":" in path and not path.startswith("/"):
        from runh.errors import ConfigError

        raise ConfigError(f"linux.cgroupsPath {path!r}: the systemd \"slice:prefix:name\" form "
                          "needs --systemd-cgroup")
    return path or container_id


def resolve(mount, inner, own="/"):
    """The directory of the cgroup path `inner` in the hierarchy mounted at `mount`: an
    absolute `inner` from the hierarchy's root, a relative one from `own` (the caller's
    cgroup in that hierarchy, as /proc/self/cgroup names it). ".." is resolved lexically
    (cgroupfs has no symlinks) and may not climb above the hierarchy's root: a relative
    `../../../../tmp/x` would otherwise name a host directory (runc keeps such paths inside
    by rewriting them; runh refuses them). ConfigError names the config field."""
    parts = []
    for p in ((inner if inner.startswith("/") else own + "/" + inner)).split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                from runh.errors import ConfigError

                raise ConfigError(f"linux.cgroupsPath {inner!r}: leaves the cgroup hierarchy {mount}")
            parts.pop()
            continue
        parts.append(p)
    return check_inside("/".join([mount.rstrip("/")] + parts))


def check_inside(path):
    """`path` if it is a directory of the cgroup filesystem: CGROUP_ROOT or below it,
    absolute, with no "", "." or ".." part. Every cgroup directory that runh makes, writes,
    signals, reads or removes passes here (each manager's constructor, and every function of
    _fs, which all file operations of every manager go through), whether it came from a
    config, a state file or a manager's own arithmetic. A new manager (systemd's) gets the
    same guarantee by doing its cgroupfs work through _fs, or by calling this on each
    directory first. ConfigError otherwise; a string check, no syscall."""
    if path != CGROUP_ROOT:
        rest = path[len(CGROUP_ROOT) + 1:] if path.startswith(CGROUP_ROOT + "/") else None
        if rest is None or any(p in ("", ".", "..") for p in rest.split("/")):
            from runh.errors import ConfigError

            raise ConfigError(f"cgroup path {path!r} is outside the cgroup filesystem {CGROUP_ROOT}")
    return path


def procs_in(path):
    """The pids in the cgroup directory `path` and every cgroup below it."""
    out = []
    for d in walk_dirs(path):
        try:
            with open(d + "/cgroup.procs", "rb") as f:
                out += [int(p) for p in f.read().split()]
        except OSError:  # removed meanwhile, or no such file
            pass
    return out


def manager_for(linux, container_id, systemd=False, annotations=None):
    """The manager for a container about to be created, from config.json's `linux` (and,
    with --systemd-cgroup, its `annotations`: org.systemd.property.*)."""
    if systemd:
        from runh.cgroups.systemd import SystemdManager

        return SystemdManager.for_config(linux, container_id, annotations)
    path = inner_path(linux, container_id)
    if mode() == "unified":
        from runh.cgroups.v2 import V2Manager

        return V2Manager.for_path(path)
    from runh.cgroups.v1 import V1Manager

    return V1Manager.for_path(path)


def manager_from_state(saved):
    """Rebuild the manager from what `to_state()` saved in the container's state.json."""
    if not saved:
        return None
    if saved.get("systemd"):
        from runh.cgroups.systemd import SystemdManager

        sd = saved["systemd"]
        m = SystemdManager(saved["path"], sd["unit"], sd["slice"], sd.get("uid", 0),
                           started=bool(sd.get("started")), description=sd.get("description", ""))
    elif saved.get("version") == 2:
        from runh.cgroups.v2 import V2Manager

        m = V2Manager(saved["path"])
    else:
        from runh.cgroups.v1 import V1Manager

        m = V1Manager(saved["paths"])
    m.devices = saved.get("devices") or []
    m.set_owned(saved.get("owned"))
    return m

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
    """The cgroup path inside each hierarchy: absolute cgroupsPath as given; a relative one
    (or, without one, the container id) under the caller's own cgroup."""
    path = (linux or {}).get("cgroupsPath") or ""
    if ":" in path and not path.startswith("/"):
        from runh.errors import ConfigError

        raise ConfigError(f"linux.cgroupsPath {path!r}: the systemd \"slice:prefix:name\" form "
                          "needs --systemd-cgroup")
    if not path:
        path = container_id
    return normpath(path) if path.startswith("/") else path


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
                           started=bool(sd.get("started")))
    elif saved.get("version") == 2:
        from runh.cgroups.v2 import V2Manager

        m = V2Manager(saved["path"])
    else:
        from runh.cgroups.v1 import V1Manager

        m = V1Manager(saved["paths"])
    m.devices = saved.get("devices") or []
    return m

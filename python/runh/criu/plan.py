"""What CRIU must be told about a container, from its config: the mounts that come from
the host (external mounts), the namespaces it joined by path, and which paths stay on the
host side of a checkpoint.

CRIU dumps everything it finds in the container's mount namespace, but it cannot dump a
mount whose source is outside it (a bind mount of a host directory, a masked path's
/dev/null, a device bound from the host): those are declared external. At dump time
`ext_mnt` maps the mountpoint to a key; at restore it maps the key to the host source
that CRIU binds there. runh's key is the config's own destination (normalised), so
restore needs no look into a container that does not exist yet.
"""

import posix as os

from runh.state import join as st_join
from runh.errors import ConfigError, NotSupported

# The devices runh always makes (rust/src/devices.rs DEFAULT_DEVICES): bind-mounted from
# the host where mknod is refused (a user namespace), so external like linux.devices.
DEFAULT_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")
# Namespaces CRIU takes as external (a file given back at restore as inherit_fd), and
# those it can join by path (join_ns); a cgroup namespace by path it cannot handle.
_EXTERNAL = {"network": "net", "pid": "pid"}
_JOIN = {"ipc": "ipc", "uts": "uts", "mount": "mnt", "user": "user", "time": "time"}
CLONE_NEWNET = 0x40000000
# CRIU options the host's administrator sets for runh's dumps and restores (CRIU reads
# it if it exists; its settings win over the RPC's), as runc reads /etc/criu/runc.conf.
# runc also takes another file from the annotation org.criu.config; runh does not: the
# config's author would choose a file of CRIU options (action scripts among them) that
# CRIU, as root on the host, obeys.
CONFIG_FILE = "/etc/criu/runh.conf"


class Options:
    """The CRIU flags of runc's checkpoint and restore (each command sets its own), as
    runh.cli parses them."""

    image_path = "checkpoint"
    work_path = parent_path = page_server = None
    leave_running = tcp_established = ext_unix_sk = shell_job = file_locks = False
    pre_dump = auto_dedup = lazy_pages = False
    manage_cgroups_mode = ""
    empty_ns = ()
    status_fd = -1

    def __init__(self, **kw):
        for k, v in kw.items():
            if not hasattr(Options, k):
                raise TypeError(f"unknown option {k}")
            setattr(self, k, v)


def normdest(path):
    from runh.spec import normpath

    return normpath("/" + path)


def _mounts(config, kinds):
    for m in config.get("mounts") or ():
        opts = m.get("options") or ()
        kind = "bind" if ("bind" in opts or "rbind" in opts or m.get("type") == "bind") else m.get("type")
        if kind in kinds and m.get("destination"):
            yield m


def bind_mounts(config):
    return list(_mounts(config, ("bind",)))


def check_cgroup_mounts(config):
    """On a cgroup v1 host without a cgroup namespace, runh's "cgroup" mount is a tmpfs
    of host hierarchies bind-mounted at the container's cgroup: not handled yet."""
    from runh import cgroups

    nss = {n.get("type") for n in (config.get("linux") or {}).get("namespaces") or ()}
    if cgroups.mode() != "unified" and "cgroup" not in nss and any(_mounts(config, ("cgroup",))):
        raise NotSupported("checkpoint/restore of a \"cgroup\" mount on a cgroup v1 host "
                           "needs a cgroup namespace (linux.namespaces: cgroup)")


def devices(config):
    out = list(DEFAULT_DEVICES)
    for d in (config.get("linux") or {}).get("devices") or ():
        if d.get("path") and normdest(d["path"]) not in out:
            out.append(normdest(d["path"]))
    return out


def masked_files(config, root):
    """linux.maskedPaths that are files in the container (bound over with /dev/null;
    directories get a tmpfs, which CRIU dumps itself). `root`: a path to the container's
    root, e.g. /proc/<pid>/root."""
    out = []
    for p in (config.get("linux") or {}).get("maskedPaths") or ():
        path = resolve(root, p)
        try:
            st = os.stat(root + path)
        except OSError:
            continue
        if (st.st_mode & 0o170000) != 0o040000:
            out.append(path)
    return out


def resolve(root, path, _depth=0):
    """`path` with the symlinks inside the container resolved as the container would
    (absolute links against `root`), as runh's mounts resolved it (RESOLVE_IN_ROOT):
    the mountpoint CRIU sees. `root` is a host path to the container's root."""
    parts = [p for p in normdest(path).split("/") if p]
    done = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        cur = "/" + "/".join(done + [name])
        try:
            target = os.readlink(root + cur)
        except OSError:  # not a link, or absent: taken as it is
            done.append(name)
            continue
        hops += 1
        if hops > 40:
            raise ConfigError(f"{path}: too many levels of symbolic links in the container")
        if target.startswith("/"):
            done = []
        parts = [p for p in target.split("/") if p and p != "."] + parts
    return "/" + "/".join(done)


def dump_ext_mounts(config, pid):
    """ext_mnt of a dump: {mountpoint in the container: key}."""
    root = f"/proc/{pid}/root"
    out = []
    for m in bind_mounts(config):
        out.append({"key": resolve(root, m["destination"]), "val": normdest(m["destination"])})
    for p in masked_files(config, root):
        out.append({"key": p, "val": "/dev/null"})
    for d in devices(config):
        out.append({"key": resolve(root, d), "val": d})
    return _unique(out)


def restore_ext_mounts(config, bundle):
    """ext_mnt of a restore: {key: host source}."""
    out = []
    for m in bind_mounts(config):
        src = m.get("source") or ""
        if not src.startswith("/"):
            src = bundle.rstrip("/") + "/" + src  # relative to the bundle, as at create
        out.append({"key": normdest(m["destination"]), "val": src})
    for d in devices(config):  # /dev/null among them: the masked files' key
        out.append({"key": d, "val": d})
    return _unique(out)


def _unique(entries):
    seen, out = set(), []
    for e in entries:
        if e["key"] not in seen:
            seen.add(e["key"])
            out.append(e)
    return out


def namespaces(config):
    return [(n.get("type"), n.get("path")) for n in (config.get("linux") or {}).get("namespaces") or ()]


def dump_externals(config):
    """`external` entries for the namespaces joined by path that CRIU must not dump
    (a pod's network or pid namespace): "net[<inode>]:extRootNetNS"."""
    out = []
    for kind, path in namespaces(config):
        if path and kind in _EXTERNAL:
            try:
                ino = os.stat(path).st_ino
            except OSError as e:
                raise ConfigError(f"linux.namespaces: {kind} namespace {path}: {e.strerror}", e.errno) from None
            out.append(f"{_EXTERNAL[kind]}[{ino}]:{_key(kind)}")
    return out


def _key(kind):
    name = _EXTERNAL[kind]
    return "extRoot" + name[0].upper() + name[1:] + "NS"


def restore_namespaces(config):
    """(inherit: [(key, path)], join_ns: [{ns, ns_file}]) for the namespaces given by path."""
    inherit, join = [], []
    for kind, path in namespaces(config):
        if not path:
            continue
        if kind in _EXTERNAL:
            inherit.append((_key(kind), path))
        elif kind in _JOIN:
            join.append({"ns": _JOIN[kind], "ns_file": path})
        else:
            raise NotSupported(f"restore: CRIU cannot join a {kind} namespace given by path ({path})")
    return inherit, join


def empty_ns(names):
    """--empty-ns values to CRIU's clone-flag mask. As runc, the network namespace is
    always restored empty (runh does not manage network devices: the caller's network
    set-up does), and "network" is the only name accepted."""
    mask = CLONE_NEWNET
    for n in names:
        if n != "network":
            raise ConfigError(f"--empty-ns: namespace {n!r} is not supported (only \"network\")")
    return mask


def config_of(c):
    """The config the container runs with, parsed (its bundle's config.json)."""
    from runh.jsonio import loads

    path = st_join((c._state or {}).get("bundle", ""), "config.json")
    try:
        with open(path, "rb") as f:
            return loads(f.read())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the container's config.json: {e}") from None

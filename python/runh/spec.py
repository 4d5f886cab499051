"""config.json: load and validate a bundle's config, and the default spec of `runh spec`."""

# `posix` and state's path helpers, not `os`: importing os costs 0.9 ms under -I -S here
# (0.5 ms of it _collections_abc), 10% of a whole `runh create`.
import posix as os

from runh.state import isdir, join

from runh.errors import ConfigError

CONFIG_FILE = "config.json"
# The most runh reads of a config.json or process.json. Real ones are KBs (a pod's, with
# its env, mounts and a seccomp profile: 10-40 KB); execve caps argv+env at ~2 MB. Without
# a cap, config.json as a symlink to /dev/zero (or a huge file) read until memory ran out.
JSON_MAX = 4 << 20


def read_json_file(path, what, limit=JSON_MAX):
    """The bytes of a regular file of at most `limit` bytes, read through one fd (fstat
    of what was opened, so no swap between check and read); ConfigError (one line)
    otherwise. O_NONBLOCK: a FIFO would block the open itself."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}", e.errno) from None
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000:
            raise ConfigError(f"{what} {path} is not a regular file")
        if st.st_size > limit:
            raise ConfigError(f"{what} {path} is {st.st_size} bytes, more than runh reads ({limit})")
        chunks, n = [], 0
        while True:
            b = os.read(fd, limit + 1 - n)
            if not b:
                break
            chunks.append(b)
            n += len(b)
            if n > limit:  # grew since fstat
                raise ConfigError(f"{what} {path} is more than runh reads ({limit} bytes)")
        return b"".join(chunks)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}", e.errno) from None
    finally:
        os.close(fd)


def load_config(bundle):
    """Read, parse and validate <bundle>/config.json. Returns (raw bytes, parsed dict).

    The raw bytes go to the Rust core unchanged (it parses them with serde); the dict is what
    Python needs (root.path, process.terminal, annotations, ociVersion)."""
    path = join(bundle, CONFIG_FILE)
    try:
        os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"JSON specification file {CONFIG_FILE} not found in bundle {bundle}", 2) from None
    except OSError:
        pass  # read_json_file words it
    raw = read_json_file(path, CONFIG_FILE)
    from runh.jsonio import loads

    try:
        config = loads(raw)
    except ValueError as e:
        raise ConfigError(f"config.json: invalid JSON: {e}") from None
    validate(config)
    return raw, config


def validate(config):
    """Raise ConfigError naming the JSON path of the first problem in config."""
    from runh._validate import validate as fast

    if fast(config):
        _check_process(config.get("process"))
        return
    from runh.schema import explain

    raise ConfigError(explain(config) or "config.json: does not match the runtime-spec schema")


def _check_process(p):
    """What the schema leaves open and runc refuses (as runh's exec does, in the core):
    a cwd that is not absolute (it would be taken relative to wherever init stands), and
    an env entry without "=" (no variable)."""
    if not isinstance(p, dict):
        return
    cwd = p.get("cwd")
    if isinstance(cwd, str) and not cwd.startswith("/"):
        raise ConfigError(f"config.json: process.cwd: {cwd!r} is not an absolute path")
    for i, e in enumerate(p.get("env") or ()):
        if isinstance(e, str) and "=" not in e:
            raise ConfigError(f"config.json: process.env[{i}]: {e!r} is not KEY=VALUE")


def rootfs_path(bundle, config):
    """Absolute root.path (relative paths are relative to the bundle); it must be a directory."""
    path = config["root"]["path"]
    if not path.startswith("/"):
        path = join(bundle, path)
    path = normpath(path)
    if not isdir(path):
        raise ConfigError(f"rootfs ({path}) does not exist (root.path in config.json)", 2)
    return path


def normpath(path):
    """os.path.normpath for absolute paths: drop empty and "." parts, resolve ".." lexically."""
    if not path.startswith("/"):
        import os.path

        return os.path.normpath(path)
    parts = []
    for p in path.split("/"):
        if p == "..":
            if parts:
                parts.pop()
        elif p and p != ".":
            parts.append(p)
    return "/" + "/".join(parts)


_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_spec(rootless=False):
    """The config `runh spec` writes: runc's defaults, at runtime-spec 1.3.0."""
    from runh import SPEC_VERSION

    spec = {
        "ociVersion": SPEC_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(_CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runh",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
    if rootless:
        _to_rootless(spec)
    return spec


def _to_rootless(spec):
    # As `runc spec --rootless`: a user namespace mapping the caller to root, no network
    # namespace (it would have no usable network), no cgroup device rules, /sys bind-mounted
    # (sysfs cannot be mounted without owning a network namespace), no gid= on devpts.
    linux = spec["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    linux.pop("resources", None)
    mounts = []
    for m in spec["mounts"]:
        if m["destination"] == "/sys":
            m = {"destination": "/sys", "type": "none", "source": "/sys",
                 "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
        elif m["destination"] == "/sys/fs/cgroup":
            # runc keeps it, but a cgroup v1 mount fails in a user namespace (EBUSY/EPERM
            # here); the rbind of /sys above already shows the host's cgroup tree.
            continue
        elif m.get("options"):
            # As runc: uid=/gid= name host ids the user namespace may not map.
            m = dict(m, options=[o for o in m["options"] if not o.startswith(("gid=", "uid="))])
        mounts.append(m)
    spec["mounts"] = mounts

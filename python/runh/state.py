"""Container state on disk: `<root>/<id>/state.json`, its lock, and status derivation.

Layout of a state dir:
  state.json   written atomically (tmp + rename) once create succeeded; absent while creating
  notify.sock  the socket the parked init listens on; present exactly while the container is
               "created" (removed once start released init)
  lock         flock'ed by create/start/kill/delete on this id, so they serialise
Status is never stored: it is derived from the recorded init pid and its start time
(field 22 of /proc/<pid>/stat), so a reused pid is never mistaken for the container.
"""

# `posix`, not `os`: with -I -S the interpreter has not imported os, and importing it costs
# 0.8 ms here, more than all of runh's own modules on the `state` path. posix has every
# call needed; the three path helpers below replace os.path.
import posix as os

from runh.errors import ContainerNotFound, UsageError

DEFAULT_ROOT = "/run/runh"
STATE_FILE = "state.json"
NOTIFY_SOCK = "notify.sock"
LOCK_FILE = "lock"

CREATING, CREATED, RUNNING, STOPPED, PAUSED = "creating", "created", "running", "stopped", "paused"

_ID_EXTRA = frozenset("_+-.")


def join(a, b):
    """os.path.join for two parts."""
    if b.startswith("/"):
        return b
    return a + b if a.endswith("/") else a + "/" + b


def isdir(path):
    try:
        return (os.stat(path).st_mode & 0o170000) == 0o040000
    except (FileNotFoundError, NotADirectoryError):
        return False


def exists(path):
    try:
        os.stat(path)
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False


def validate_id(container_id):
    """runc's rule: ^[\\w+-.]+$ (ASCII word chars), and neither "." nor ".." nor a path."""
    if not container_id or container_id in (".", ".."):
        raise UsageError(f"invalid container id format: {container_id!r}")
    for c in container_id:
        if not (c.isascii() and (c.isalnum() or c in _ID_EXTRA)):
            raise UsageError(f"invalid container id format: {container_id}")
    if ".." in container_id:
        raise UsageError(f"invalid container id format: {container_id}")
    return container_id


def state_dir(root, container_id):
    return join(root, validate_id(container_id))


def proc_start_time(pid):
    """Start time of pid in clock ticks since boot (field 22 of /proc/<pid>/stat) and its
    state letter; (None, None) if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None, None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(b")") + 2 :].split()
    return int(rest[19]), rest[0].decode()


def _tmp_name(path):
    """A temp file beside path, named unpredictably: the pid file's directory may be
    shared, and a name another user can guess is a name they can plant a symlink at."""
    d, sep, base = path.rpartition("/")
    return f"{d}{sep}.{base}.{os.urandom(8).hex()}.tmp"


def write_new(path, data, mode=0o644):
    """Create path with data: O_EXCL and O_NOFOLLOW (never through a planted file or
    symlink); removed again if the write fails."""
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def write_atomic(path, data, mode=0o644):
    """Write bytes to path via a new temp file in the same directory (write_new) and
    rename(2): a reader sees the old or the new content, never a part. The temp file
    is removed on any failure."""
    tmp = _tmp_name(path)
    write_new(tmp, data, mode)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def is_tmp(name):
    """A temp file of write_atomic's (a write that was cut short leaves one)."""
    return name.startswith(".") and name.endswith(".tmp")


class Lock:
    """flock on <state_dir>/lock; a context manager. Serialises lifecycle calls on one id."""

    def __init__(self, sdir):
        self.path = join(sdir, LOCK_FILE)
        self.fd = -1

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            return None  # state dir vanished: the caller sees ContainerNotFound next
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the flock
            self.fd = -1


def read_state(root, container_id):
    """The recorded state dict of a container; ContainerNotFound if there is none."""
    sdir = state_dir(root, container_id)
    try:
        with open(join(sdir, STATE_FILE), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if isdir(sdir):
            return None  # creating: dir made, state.json not written yet
        raise ContainerNotFound(container_id) from None
    except NotADirectoryError:
        raise ContainerNotFound(container_id) from None
    from runh.jsonio import loads

    try:
        return loads(data)
    except ValueError as e:  # (UnicodeDecodeError included) a torn or foreign file
        from runh.errors import InvalidState

        raise InvalidState(f"container {container_id}: cannot read {STATE_FILE}: {e}") from None


def status_of(sdir, st):
    """Derive the status from a state dict (None = still creating)."""
    if st is None:
        return CREATING
    pid = st.get("pid", 0)
    if pid <= 0:
        return STOPPED
    start, letter = proc_start_time(pid)
    if start is None or start != st.get("starttime") or letter in ("Z", "X", "x"):
        return STOPPED
    if exists(join(sdir, NOTIFY_SOCK)):
        return CREATED
    # Paused is the freezer's state, not the process's: one small read of
    # cgroup.freeze (v2) or freezer.state (v1).
    if st.get("cgroup"):
        from runh.cgroups import manager_from_state

        if manager_from_state(st["cgroup"]).is_frozen():
            return PAUSED
    return RUNNING

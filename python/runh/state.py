"""Container state on disk: `<root>/<id>/`, its lock, and status derivation.

Layout of a state dir (the root and every state dir 0700, every file in it 0600: pids,
bundle paths, cgroup paths and annotations, which may carry secrets, are root's alone):
  state.json   the record, always written atomically (random temp name, O_EXCL, rename).
               Recorded before made: create writes it, with "creating": true and no pid,
               before it makes any cgroup, adds the init's pid and start time as soon as
               the core has cloned it, and drops "creating" once the container is set up
               and parked. So a create killed at any instant leaves a record of everything
               it made, and `delete` can finish the job. restore records the same way,
               and while "creating" also "mounts" (mount points in this dir, detached by
               delete, never emptied) and "made" (paths outside it that it added).
  config.json  the config the container was created with (exec reads it, not the
               bundle's, which may have changed or gone since)
  notify.sock  the socket the parked init listens on, until start releases it
The dir itself is the lock: create/start/kill/delete/pause/update flock an fd of it, so
they serialise; create holds it from the state dir's birth to its last write. (A `lock`
file in it, which runh made before, cost one more inode per create on the state root's
file system, and one more unlink per delete: 0.02 ms idle, up to 0.9 ms when the ext4
/run here shares the disk with other jobs; a dir made by that runh may still have one,
which delete removes with the rest.)
Status is never stored: it is derived from the recorded init pid and its start time
(field 22 of /proc/<pid>/stat), so a reused pid is never mistaken for the container, and
"created" from the init really listening on notify.sock (not the file's presence alone:
a start killed after the handshake leaves the file, with the workload running).
"""

# `posix`, not `os`: with -I -S the interpreter has not imported os, and importing it costs
# 0.8 ms here, more than all of runh's own modules on the `state` path. posix has every
# call needed; the three path helpers below replace os.path.
import posix as os

from runh.errors import ContainerNotFound, UsageError

DEFAULT_ROOT = "/run/runh"
STATE_FILE = "state.json"
NOTIFY_SOCK = "notify.sock"
LOCK_FILE = "lock"  # the lock file of state dirs made before the dir itself was the lock

CREATING, CREATED, RUNNING, STOPPED, PAUSED = "creating", "created", "running", "stopped", "paused"
# `list` shows a container whose state.json cannot be read with this status (and pid 0):
# hiding it would hide what is left of it.
UNKNOWN = "unknown"

DIR_MODE = 0o700  # the root and each state dir, as runc and crun
FILE_MODE = 0o600  # state.json, config.json

# The state dirs whose lock this process holds (Lock adds and removes them): there, a
# record still marked "creating" is a create that died, not one in progress.
_held = set()

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
            # repr's escapes when it has control characters: the error stays one line.
            shown = container_id if container_id.isprintable() else repr(container_id)[1:-1]
            raise UsageError(f"invalid container id format: {shown}")
    if ".." in container_id:
        raise UsageError(f"invalid container id format: {container_id}")
    return container_id


def rfc3339(ns=None):
    """UTC RFC 3339 with nanoseconds, as Go's time.RFC3339Nano prints it (trailing zeros
    kept): the record's "created". Here rather than in runh.log, which create would
    import for this alone: one module less on create and run, 0.10 ms CPU (in-process,
    medians of 300 fresh interpreters; the module's fixed cost of an import is most of
    it). `time` is built in and loaded at start-up."""
    import time

    if ns is None:
        ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + ".%09dZ" % frac


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


def tmp_name(path):
    """A temp file beside path, named unpredictably: the pid file's directory may be
    shared, and a name another user can guess is a name they can plant a symlink at."""
    d, sep, base = path.rpartition("/")
    return f"{d}{sep}.{base}.{os.urandom(8).hex()}.tmp"


def write_new(path, data, mode=FILE_MODE):
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


def write_atomic(path, data, mode=FILE_MODE, exchange=False):
    """Write bytes to path via a new temp file in the same directory (write_new) and
    rename(2): a reader sees the old or the new content, never a part. The temp file
    is removed on any failure.

    `exchange` (state.json, in runh's own 0700 dir): replace an existing file with
    renameat2(RENAME_EXCHANGE) and unlink the temp name, which then holds the old record.
    A plain rename over an existing file makes ext4 (auto_da_alloc) start writeback of the
    new file's data inside rename(2): 0.24-0.98 ms median per replace here (benches/micro
    test_state_write_atomic[rename], three runs on a 2-core host whose disk other jobs
    share; mean up to 1.0 ms) against 0.04-0.15 ms with the exchange; create writes
    state.json twice (the second is a replace). Readers see the old
    or the new record as before (the exchange is atomic); a kill between the exchange and
    the unlink leaves a temp file, which is_tmp names and delete removes with the dir."""
    commit_atomic(prepare_atomic(path, data, mode), path, exchange)


def prepare_atomic(path, data, mode=FILE_MODE):
    """write_atomic's first half, for a writer with time to spare before the write is
    due (create, while init sets up): the new content in a temp file beside path.
    Returns the temp file's name for commit_atomic; a caller that drops it unlinks it
    (or, in a state dir, leaves it to go with the dir: is_tmp)."""
    tmp = tmp_name(path)
    write_new(tmp, data, mode)
    return tmp


def commit_atomic(tmp, path, exchange=False):
    """write_atomic's second half: tmp (from prepare_atomic) becomes path."""
    try:
        if exchange and _rename_exchange(tmp, path):
            try:
                os.unlink(tmp)
            except OSError:
                pass  # the old record under a temp name: delete removes it with the dir
            return
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _rename_exchange(src, dst):
    """renameat2(RENAME_EXCHANGE) through the core (Python has no renameat2); False when
    dst does not exist yet. Only create and the other state writers call it, which have
    the core loaded already."""
    import runh._core as core

    return core.rename_exchange(src, dst)


def is_tmp(name):
    """A temp file of write_atomic's (a write that was cut short leaves one)."""
    return name.startswith(".") and name.endswith(".tmp")


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Lock:
    """flock on the state dir (an fd of it); a context manager. Serialises lifecycle calls
    on one id (the native launcher, rust/launcher/src/state.rs, takes the same flock).
    `dir_fd`: lock this fd of the state dir (create: a dir removed and made again
    meanwhile is not the one it made); it stays the caller's to close."""

    def __init__(self, sdir, dir_fd=None):
        self.sdir = sdir
        self.dir_fd = dir_fd
        self.fd = -1

    def __enter__(self):
        if self.dir_fd is None:
            try:
                self.fd = os.open(self.sdir, _DIR_FLAGS)
            except (FileNotFoundError, NotADirectoryError):
                return None  # state dir vanished: the caller sees ContainerNotFound next
        else:
            self.fd = self.dir_fd
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_EX)
        _held.add(self.sdir)
        return self

    def __exit__(self, *exc):
        if self.fd >= 0:
            _held.discard(self.sdir)
            if self.fd == self.dir_fd:
                import fcntl

                fcntl.flock(self.fd, fcntl.LOCK_UN)  # the fd is the caller's
            else:
                os.close(self.fd)  # closing releases the flock
            self.fd = -1


def locked_by_other(sdir):
    """Does another process hold the state dir's lock (a create in progress)? One open
    and a non-blocking flock (of the dir, or of the `lock` file a runh before this one
    made and locked)."""
    import fcntl

    for path, flags in ((sdir, _DIR_FLAGS), (join(sdir, LOCK_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)):
        try:
            fd = os.open(path, flags)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
    return False


def nothing_made(sdir):
    """Is the state dir as create leaves it before its record is written (the lock and
    temp files at most)? Then nothing else of the container can exist."""
    try:
        return all(n == LOCK_FILE or is_tmp(n) for n in os.listdir(sdir))
    except FileNotFoundError:
        return True
    except OSError:
        return False


def parked(sdir):
    """Is the init parked, listening on notify.sock for `start`? A non-blocking connect:
    refused once init has accepted start's byte (it closes the listening socket then), so
    a `start` killed after the handshake leaves a running container, not a "created" one
    that nobody can start. init takes a connection that sends no byte for a probe and goes
    on waiting. (_socket, not socket: 0.25 ms against 3 ms, paid only by created ones.)"""
    import _socket

    path, dfd = join(sdir, NOTIFY_SOCK), None
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC)
    try:
        if len(path.encode()) >= 108:
            # Longer than sun_path (a long --root): through an O_PATH fd of the state dir,
            # as the core does (clone::UnixAddr).
            dfd = os.open(sdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            path = f"/proc/self/fd/{dfd}/{NOTIFY_SOCK}"
        s.connect(path)
        return True
    except BlockingIOError:  # its backlog is full: still listening
        return True
    except OSError:  # ECONNREFUSED: nobody listens any more; ENOENT
        return False
    finally:
        s.close()
        if dfd is not None:
            os.close(dfd)


def read_state(root, container_id):
    """The recorded state dict of a container; None while its dir has no state.json and
    nothing else but the lock (a create before its first write, or one killed then);
    ContainerNotFound if there is no dir; InvalidState if state.json cannot be read, or
    is missing from a dir that has more in it (it was written before anything else, and
    is removed after everything else)."""
    sdir = state_dir(root, container_id)
    path = join(sdir, STATE_FILE)
    data, err = _read(path)
    if data is None and err is None:
        if not isdir(sdir):
            raise ContainerNotFound(container_id)
        if nothing_made(sdir):
            return None
        data, err = _read(path)  # a create may have written it since the first look
        if data is None and err is None:
            err = "it is missing"
    from runh.errors import InvalidState

    if data is not None:
        from runh.jsonio import loads

        try:
            state = loads(data)
            if isinstance(state, dict):
                return state
            err = "not a JSON object"
        except ValueError as e:  # (UnicodeDecodeError included) a torn or foreign file
            err = str(e)
    raise InvalidState(f"container {container_id}: cannot read {STATE_FILE}: {err}")


def _read(path):
    """(bytes, None), (None, None) if there is no such file, or (None, why)."""
    try:
        with open(path, "rb") as f:
            return f.read(), None
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except OSError as e:
        return None, e.strerror


def status_of(sdir, st):
    """Derive the status from a state dict (None: no state.json yet)."""
    if st is None or st.get("creating"):
        # The record of a create that has not finished: in progress while its creator
        # holds the lock, else dead (it was killed), and then nothing will ever run.
        return CREATING if sdir not in _held and locked_by_other(sdir) else STOPPED
    pid = st.get("pid", 0)
    if not isinstance(pid, int) or pid <= 0:
        return STOPPED
    start, letter = proc_start_time(pid)
    if start is None or start != st.get("starttime") or letter in ("Z", "X", "x"):
        return STOPPED
    if exists(join(sdir, NOTIFY_SOCK)) and parked(sdir):
        return CREATED
    # Paused is the freezer's state, not the process's: one small read of
    # cgroup.freeze (v2) or freezer.state (v1).
    if st.get("cgroup"):
        from runh.cgroups import manager_from_state

        try:
            if manager_from_state(st["cgroup"]).is_frozen():
                return PAUSED
        except OSError:  # the cgroup is being removed (ENODEV): not frozen
            pass
    return RUNNING

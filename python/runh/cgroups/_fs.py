"""The cgroupfs operations, done by the Rust core (runh._core.cgroup_*).

Every call here crosses into Rust once per cgroup directory: a create with memory, cpu and
pids limits on v2 is one `cgroup_write` call with a handful of (file, value) pairs. The
pure-Python fallbacks keep the manager usable with an extension built before the
cgroup functions were registered; they do the same writes, one syscall each.

Every function checks its directory with runh.cgroups.check_inside first, and `write` its
file names, so that no manager, config value or state file can make runh write, make or
remove anything outside the cgroup filesystem.
"""
import posix as os  # not `os` (0.8 ms under -I -S); the fallbacks that need os import it

from runh.cgroups import check_inside

try:
    from runh import _core as _c

    _HAVE_CORE = hasattr(_c, "cgroup_write")
except ImportError:  # extension not built (pure-Python unit tests)
    _c = None
    _HAVE_CORE = False


def _err(what, e):
    from runh.errors import SyscallError

    return SyscallError(f"{what}: {os.strerror(e.errno).lower()}", e.errno)


def write(dir, pairs):
    """Write each (file, value) in order into the cgroup directory `dir`."""
    if not pairs:
        return
    check_inside(dir)
    for name, _ in pairs:
        # An interface file of this directory (hugetlb.<pageSize>.max, unified's keys
        # come from the config): never a path.
        if "/" in name or name in ("", ".", "..") or "\0" in name:
            from runh.errors import ConfigError

            raise ConfigError(f"cgroup file name {name!r}: not a file of the cgroup directory")
    if _HAVE_CORE:
        return _c.cgroup_write(dir, pairs)
    for name, value in pairs:
        path = f"{dir}/{name}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as e:
            raise _err(f"open {path}", e) from None
        try:
            os.write(fd, value.encode())
        except OSError as e:
            raise _err(f"write {value!r} to {path}", e) from None
        finally:
            os.close(fd)


def read(dir, name, default=None):
    """Read an interface file; `default` when it does not exist (controller absent)."""
    check_inside(dir)
    try:
        with open(f"{dir}/{name}") as f:
            return f.read()
    except FileNotFoundError:
        if default is None:
            raise
        return default


def create(paths):
    for p in paths:
        check_inside(p)
    if _HAVE_CORE:
        return _c.cgroup_create(list(paths))
    import os

    for p in paths:
        try:
            os.makedirs(p, exist_ok=True)
        except OSError as e:
            raise _err(f"create cgroup {p}", e) from None


def remove(paths, timeout_ms=2000):
    for p in paths:
        check_inside(p)
    if _HAVE_CORE:
        return _c.cgroup_remove(list(paths), timeout_ms)
    import os
    import time

    for p in paths:
        for root, dirs, _ in os.walk(p, topdown=False):
            for d in dirs:
                _rmdir(os.path.join(root, d), timeout_ms, time)
        _rmdir(p, timeout_ms, time)


def prune(paths):
    """rmdir each path if it is empty (an ancestor the container made: another
    container's cgroup may be in it now, and is never touched)."""
    for p in paths:
        check_inside(p)
        try:
            os.rmdir(p)
        except OSError:  # ENOTEMPTY, EBUSY, ENOENT: not ours to remove now
            pass


def _rmdir(p, timeout_ms, time):
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            os.rmdir(p)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != 16 or time.monotonic() > deadline:  # EBUSY: a task is exiting
                raise _err(f"remove cgroup {p}", e) from None
            time.sleep(0.002)


def freeze(dir, v2, frozen, timeout_ms=5000):
    check_inside(dir)
    if _HAVE_CORE:
        return _c.cgroup_freeze(dir, v2, frozen, timeout_ms)
    import time

    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        if v2:
            write(dir, [("cgroup.freeze", "1" if frozen else "0")])
            done = f"frozen {int(frozen)}" in read(dir, "cgroup.events").splitlines()
        else:
            want = "FROZEN" if frozen else "THAWED"
            write(dir, [("freezer.state", want)])
            done = read(dir, "freezer.state").strip() == want
        if done:
            return
        if time.monotonic() > deadline:
            from runh.errors import SyscallError

            raise SyscallError(f"{'freeze' if frozen else 'thaw'} {dir}: timed out", 110)
        time.sleep(0.001)


def kill(dir):
    """cgroup.kill (v2, kernel >= 5.14); False when the kernel has no such file."""
    check_inside(dir)
    if _HAVE_CORE:
        return _c.cgroup_kill(dir)
    try:
        write(dir, [("cgroup.kill", "1")])
        return True
    except Exception as e:
        if getattr(e, "errno", 0) == 2:
            return False
        raise


def devices_v2(dir, rules):
    check_inside(dir)
    if not _HAVE_CORE:
        from runh.errors import NotSupported

        raise NotSupported("the cgroup v2 device filter needs runh._core with cgroup support")
    return _c.cgroup_devices_v2(dir, rules)

"""What restore records beyond create's record, and its undoing: "mounts" (mount points
in the state dir) and "made" (paths outside it that it added). `delete` calls these for a
record that names them (runh.container imports this module only then), checkpoint's
cleanup and restore's undo too.
"""

import posix as os  # not `os`: see runh/state.py

from runh import state as st
from runh.container import _remove_dir
from runh.errors import SyscallError

# umount2(2) flags: lazily, and never through a symlink.
_MNT_DETACH, _UMOUNT_NOFOLLOW = 2, 8


def detach_mounts(sdir, names):
    """Detach what is mounted on the state dir's entries `names` (a record's "mounts":
    restore's bind of the rootfs that CRIU takes as its root), then remove each mount
    point with rmdir alone. Never recursively: until it is detached, a mount point shows
    a host tree (the rootfs), which must not be emptied with the state dir. The mount
    may be in another mount namespace (restore's own, where it dies with that
    namespace's last process): here it is then a plain empty dir. ctypes only for
    records that name mounts."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for name in names:
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name:
            continue  # only an entry of the state dir itself
        path = st.join(sdir, name)
        while libc.umount2(path.encode(), _MNT_DETACH | _UMOUNT_NOFOLLOW) == 0:
            pass  # binds stacked on one mount point come off one by one
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise SyscallError(f"remove mount point {path}: {os.strerror(e.errno).lower()}", e.errno) from None


def remove_made(paths):
    """Remove the files and directory trees named by a record's "made": what the
    container's making added outside the state dir (restore's work dir, or CRIU's log
    in an existing one), recorded before it was made. A symlink found in a path's place
    is removed, never followed."""
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/"):
            continue
        try:
            os.unlink(path)
        except IsADirectoryError:
            _remove_dir(path)
        except FileNotFoundError:
            pass

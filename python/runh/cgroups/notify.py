"""OOM notifications without polling, for `runh events`.

cgroup v2: an inotify watch on memory.events; the kernel raises IN_MODIFY on that file
whenever one of its counters changes (cgroup-v2.rst, "memory.events"), and the caller then
compares oom_kill with the last value. cgroup v1: an eventfd registered through
cgroup.event_control against memory.oom_control; the kernel signals it on every OOM in the
cgroup (cgroup-v1/memory.rst, "Memory thresholds" / "OOM Control").

Either way the caller gets one fd to select() on, so `events` sleeps until something
happens instead of reading memory.events every 100 ms. Only `events` imports this module
(ctypes, for inotify: the stdlib has no binding); nothing on the create/start path does.
"""
import os

_IN_MODIFY = 0x2
_IN_CLOEXEC = os.O_CLOEXEC
_IN_NONBLOCK = os.O_NONBLOCK


class OomWatch:
    """fileno() becomes readable on (possible) OOM; fired() drains it and says whether an
    OOM kill happened since the last call."""

    def __init__(self, manager):
        self.manager = manager
        self._fds = []
        self._count = manager.oom_count()
        if manager.version == 2:
            self._fd = self._inotify(manager.path + "/memory.events")
        else:
            self._fd = self._eventfd(manager.paths["memory"])

    def _inotify(self, path):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(_IN_CLOEXEC | _IN_NONBLOCK)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._fds.append(fd)
        if libc.inotify_add_watch(fd, os.fsencode(path), _IN_MODIFY) < 0:
            e = ctypes.get_errno()
            self.close()
            raise OSError(e, f"inotify_add_watch {path}")
        return fd

    def _eventfd(self, mem_dir):
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._fds.append(efd)
        try:
            ofd = os.open(mem_dir + "/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
            self._fds.append(ofd)
            ctl = os.open(mem_dir + "/cgroup.event_control", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(ctl, f"{efd} {ofd}".encode())
            finally:
                os.close(ctl)
        except OSError:
            self.close()
            raise
        return efd

    def fileno(self):
        return self._fd

    def fired(self):
        """True when the OOM-kill count grew (v2), or the eventfd was signalled (v1)."""
        try:
            got = os.read(self._fd, 4096)
        except BlockingIOError:
            got = b""
        n = self.manager.oom_count()
        grew = n > self._count
        self._count = max(n, self._count)
        if self.manager.version == 1:
            # The eventfd counts OOM events itself; oom_kill (kernel >= 4.13) may lag it.
            return bool(got) or grew
        return grew

    def close(self):
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

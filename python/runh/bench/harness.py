"""Runs runtime binaries and measures them: spawn, wait4 rusage, timeouts, cleanup.

Each runtime call is one posix_spawn (glibc uses CLONE_VFORK, so the harness's own fork
cost is small and the same for every runtime) timed with perf_counter_ns from just before
the reaping wait4. Peak RSS is measured in separate, untimed calls (see RSS_NOTE).

The harness makes itself a child subreaper, like containerd's shim: a container init left
behind by `create` is re-parented to it, so `wait` is a plain wait4 on the init's pid and
no stray process is left unreaped.
"""

import os
import select
import signal
import time

PR_SET_CHILD_SUBREAPER = 36
DEFAULT_TIMEOUT = 30.0


class ScenarioFailed(Exception):
    """A scenario step failed outside a runtime call (e.g. a CRI call through containerd):
    the runtime is reported FAILED for that scenario, as for RuntimeFailed."""


class RuntimeFailed(Exception):
    """A runtime call exited non-zero, was killed, or timed out; carries its stderr tail."""

    def __init__(self, argv, status, stderr):
        self.argv = argv
        self.status = status
        self.stderr = stderr.strip()
        tail = self.stderr.splitlines()[-1] if self.stderr else ""
        # argv is [runtime, "--root", ROOT, command, ..., id]: name the command and the id.
        cmd = argv[3] if len(argv) > 4 and argv[1] == "--root" else ""
        super().__init__(f"{os.path.basename(argv[0])} {cmd} {argv[-1]}: {status}"
                         + (f": {tail}" if tail else ""))


# Why peak RSS is not taken from our own wait4: a child's ru_maxrss includes the peak RSS
# of the image it had before execve, and a child of this interpreter starts as a copy (or,
# with posix_spawn's vfork, a share) of it: every runtime then "peaks" at the Python
# process's ~13 MiB (measured: posix_spawn of busybox true reports 8-13 MiB, 110 MiB after
# the parent allocates 100 MiB). GNU time forks from a ~1.3 MiB image, so its %M is the
# runtime's own peak (floor about 1.3 MiB). busybox's `time` vforks from a 5 MiB image.
RSS_NOTE = "peak RSS via GNU time %M (wait4 ru_maxrss of the runtime and the children it reaped)"


def find_gnu_time():
    for path in ("/usr/bin/time", "/bin/time"):
        if os.access(path, os.X_OK):
            return path
    return None


def set_subreaper():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_strays(keep=()):
    """Reap every exited child except the pids in `keep` (their status is still wanted)."""
    while True:
        try:
            # waitid with WNOWAIT peeks first, so a kept pid is never consumed here.
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid == 0:
            return
        if info.si_pid in keep:
            return
        try:
            os.waitpid(info.si_pid, 0)
        except ChildProcessError:
            pass


def describe_status(status):
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    return f"status {status:#x}"


class Result:
    __slots__ = ("argv", "status", "ns", "maxrss_kib", "stderr")

    def __init__(self, argv, status, ns, maxrss_kib, stderr):
        self.argv, self.status, self.ns, self.maxrss_kib, self.stderr = argv, status, ns, maxrss_kib, stderr

    @property
    def ok(self):
        return os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0

    @property
    def ms(self):
        return self.ns / 1e6

    def check(self):
        if not self.ok:
            raise RuntimeFailed(self.argv, describe_status(self.status), self.stderr)
        return self


class Spawner:
    """Spawns commands with stdin and stdout on /dev/null and stderr into a scratch file."""

    def __init__(self, workdir, timeout=DEFAULT_TIMEOUT):
        self.timeout = timeout
        self.time_bin = find_gnu_time()
        self.env = dict(os.environ)
        self._null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self._errdir = workdir
        self._errfiles = []

    def close(self):
        for fd in self._errfiles:
            os.close(fd)
        self._errfiles.clear()
        os.close(self._null)

    def _errfile(self, slot):
        while len(self._errfiles) <= slot:
            path = os.path.join(self._errdir, f"stderr.{len(self._errfiles)}")
            self._errfiles.append(os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600))
        fd = self._errfiles[slot]
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def _read_err(self, slot):
        fd = self._errfiles[slot]
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 65536).decode(errors="replace")

    def spawn(self, argv, slot=0, rss=False):
        """Start argv; returns (pid, start_ns). Pair with finish().

        With rss=True the call goes through GNU time, whose %M is the wait4 ru_maxrss of
        a child it forked from its own small image (see RSS_NOTE); its wall time is then
        not a fair timing and the caller records only the RSS.
        """
        err = self._errfile(slot)
        if rss:
            argv = [self.time_bin, "-f", "%M", "-o", self._rss_path(slot), *argv]
        actions = [
            (os.POSIX_SPAWN_DUP2, self._null, 0),
            (os.POSIX_SPAWN_DUP2, self._null, 1),
            (os.POSIX_SPAWN_DUP2, err, 2),
        ]
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, self.env, file_actions=actions)
        return pid, t0

    def finish(self, argv, pid, t0, slot=0, deadline=None, rss=False):
        """Wait for pid (killing it at the deadline) and return its Result."""
        deadline = deadline or (time.monotonic() + self.timeout)
        timed_out = not _wait_pid(pid, deadline)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status, ru = os.wait4(pid, 0)
        t1 = time.perf_counter_ns()
        stderr = self._read_err(slot)
        if timed_out:
            stderr += f"\n(timed out after {self.timeout:.0f} s)"
        maxrss = None
        if rss:
            try:
                with open(self._rss_path(slot)) as f:
                    maxrss = int(f.read().split()[-1])
            except (OSError, ValueError, IndexError):
                pass
        return Result(argv, status, t1 - t0, maxrss, stderr)

    def run(self, argv, slot=0, rss=False):
        pid, t0 = self.spawn(argv, slot, rss)
        return self.finish(argv, pid, t0, slot, rss=rss)

    def _rss_path(self, slot):
        return os.path.join(self._errdir, f"maxrss.{slot}")


def _wait_pid(pid, deadline):
    """Block until pid exits or the deadline passes; True if it exited.

    A pidfd polled with a timeout gives a bounded wait without signals; its cost (two
    syscalls) is the same for every runtime.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return True  # already reaped or not ours: wait4 will tell
    try:
        p = select.poll()
        p.register(pidfd, select.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if p.poll(left * 1000):
                return True
    finally:
        os.close(pidfd)


def wait_exit(pid, timeout):
    """Wait for a process that is ours by re-parenting (a container init) and reap it."""
    deadline = time.monotonic() + timeout
    try:
        if not _wait_pid(pid, deadline):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return
    except ChildProcessError:
        pass
    # Not our child (the runtime kept it elsewhere): poll until it is gone or a zombie.
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except (FileNotFoundError, ProcessLookupError):
            return
        time.sleep(0.0005)
    raise TimeoutError(f"process {pid} still running after {timeout:.0f} s")


def proc_status(pid, fields=("VmRSS", "RssAnon")):
    """Read kB fields from /proc/<pid>/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in fields:
                out[key] = int(rest.split()[0])
    return out

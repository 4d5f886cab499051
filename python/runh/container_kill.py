"""Signalling a container's processes: `kill` (and run's forwarding of the signals it
receives), `kill --all`, and, for a container without a cgroup of its own, its process
tree from /proc (ps, delete --force). Kept out of runh.container, which every create and
run imports (see runh.container_exec).
"""

import posix as os  # not `os`: see runh/state.py

from runh import state as st
from runh.container import _pidfd
from runh.errors import ContainerNotRunning


def signal_container(c, sig, all=False):
    """Container._signal of `c` (under kill's lock, or run's own container): the init
    through a pidfd, with `all` every process of the container first."""
    import _signal

    s = c._state or {}
    status = c.status()
    if all and status == st.STOPPED:
        # As runc: --all of a stopped container signals what is left in its cgroup, and
        # is no error when nothing is. Processes outlive init where the container shares
        # a PID namespace (a pod's); containerd's shim kills them this way when init exits.
        cg = c.cgroup()
        if cg is not None and cg.exists():
            cg.kill_all(sig)
        return
    if status not in (st.CREATED, st.RUNNING, st.PAUSED):
        raise ContainerNotRunning(c.id)
    fd = _pidfd(s["pid"], s.get("starttime"))
    if fd is None:
        raise ContainerNotRunning(c.id)
    try:
        cg = c.cgroup() if all else None
        # Every process in the cgroup, also those that left init's process tree
        # (cgroup.kill for SIGKILL on v2); init once, through its pidfd below.
        if all and not (cg is not None and cg.kill_all(sig, skip=(s["pid"],))):
            signal_tree(s["pid"], sig)  # no cgroup of the container's own
        _signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        raise ContainerNotRunning(c.id) from None
    finally:
        os.close(fd)


def descendants(pid):
    """pid and every descendant, from /proc (used until the cgroup code gives the member list)."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return sorted(out)


def signal_tree(pid, sig):
    """Signal pid's descendants (not pid: the caller signals it through its pidfd),
    children first, so that init does not reap them into orphans unsignalled."""
    for p in reversed(descendants(pid)):
        if p != pid:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

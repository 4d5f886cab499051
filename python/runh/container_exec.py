"""Container.exec's body: start a process in a running container.

Only the Python `runh exec` runs it (the native launcher runs the plain form itself), so
it is kept out of runh.container, which every create and run imports. With the
signalling (runh.container_kill), restore's records (runh.criu.records) and the rootless
cgroup (runh.cgroups.rootless), this took runh.container from 56 to 45 KB of bytecode:
0.02-0.05 ms CPU less per create and run (`import runh.cli.create, runh.container` in
fresh -I -S interpreters, in-process CPU, medians/quartiles/mins of 400 interleaved
rounds, at load 3.7); in the emulated guest, ~200 times that.
"""

import posix as os  # not `os`: see runh/state.py

from runh import state as st
from runh.container import _SIGKILL, _core, _listen_fds, _pidfd, _warn_unknown_caps, _write_pid_file
from runh.errors import ConfigError, InvalidState, SyscallError


def exec_process(c, process, console_socket=None, pid_file=None, preserve_fds=0,
                 ignore_paused=False, pidfd_socket=None, cgroup=None):
    """Container.exec (see there) of the container `c`."""
    c._state = st.read_state(c.root, c.id)
    s = c._state or {}
    status = c.status()
    if status in (st.STOPPED, st.CREATING):
        raise InvalidState("cannot exec in a stopped container")
    if status == st.PAUSED and not ignore_paused:
        raise InvalidState("cannot exec in a paused container (use --ignore-paused to override)")
    fd = _pidfd(s["pid"], s.get("starttime"))
    if fd is None:
        raise InvalidState("cannot exec in a stopped container")
    try:
        if b"capabilities" in process:  # cheap test; the parse only when caps are listed
            from runh.jsonio import loads

            try:
                _warn_unknown_caps(loads(process).get("capabilities"))
            except (ValueError, AttributeError):
                pass  # malformed: the core reports it as "invalid process"
        listen = _listen_fds()
        if listen:
            process = _with_listen_env(process, listen)
        config = c.config()
        cg = c.cgroup()
        if cgroup and cg is None:
            raise ConfigError("--cgroup: the container has no cgroup")
        cg_dir, cg_procs = (cg.sub_target(cgroup) if cgroup else cg.clone_target()) if cg else (None, [])
        # Paused (frozen=True): the process joins the frozen cgroup itself, after it has
        # reported and before any step of its own, and exec returns then (exec.rs).
        pid = _core().exec(process, fd, s["pid"], config=config, root=c.root,
                           console_socket=console_socket, pidfd_socket=pidfd_socket,
                           preserve_fds=listen + preserve_fds, fix_listen_pid=bool(listen),
                           cgroup_dir=cg_dir, cgroup_procs=cg_procs,
                           seccomp_state=_seccomp_state(config, s, status),
                           frozen=status == st.PAUSED)
    finally:
        os.close(fd)
    if pid_file:
        try:
            _write_pid_file(pid_file, pid)
        except SyscallError:
            # Nobody would know the process's pid: it must not outlive the failure.
            try:
                os.kill(pid, _SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
            raise
    return pid


def _seccomp_state(config, s, status):
    """The container state for a seccomp agent when an exec'd process gets its own
    listener (the core adds the exec'd pid); None, after one bytes search, without a
    listenerPath in the config."""
    if b"listenerPath" not in config:
        return None
    from runh.jsonio import dumps

    state = {"ociVersion": s.get("ociVersion", ""), "id": s.get("id", ""), "status": status,
             "bundle": s.get("bundle", "")}
    if s.get("annotations"):
        state["annotations"] = s["annotations"]
    return dumps(state).encode()


def _with_listen_env(process, n):
    """The process JSON with LISTEN_FDS=n and a LISTEN_PID that the core replaces by the
    process's own pid in the container."""
    from runh.jsonio import dumps, loads

    p = loads(process)
    env = [e for e in p.get("env") or [] if not e.startswith(("LISTEN_FDS=", "LISTEN_PID="))]
    p["env"] = env + [f"LISTEN_FDS={n}", "LISTEN_PID=1"]
    return dumps(p).encode()

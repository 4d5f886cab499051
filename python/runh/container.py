"""runh.Container: the container lifecycle as a library (the CLI is a thin layer over it).

    c = Container.create("id", bundle="/b", root="/run/runh", pid_file="/b/pid")
    c.start(); c.kill(15); c.delete(force=True)

Kernel work is in the Rust core (`runh._core`); this module owns the state directory, its
lock, status derivation and race-free signalling (pidfds, checked against the recorded start
time so that a reused pid is never signalled).
"""

import posix as os  # not `os`: see runh/state.py (0.8 ms with -I -S)
import sys

from runh import state as st
from runh.errors import (ConfigError, ContainerExists, ContainerNotFound, ContainerNotRunning,
                         InvalidState, NotSupported, RunhError, SyscallError, UsageError)

_SIGKILL = 9
# runc's pid files are 0666 less the umask (and so are the native launcher's).
PID_FILE_MODE = 0o666


def _core():
    import runh._core as core  # the Rust extension; loaded only by commands that need it

    return core


def _warn_unknown_caps(caps):
    """runc (1.1+) ignores capability names it or the kernel does not know, with one
    warning (so configs written for newer kernels still run); runh does the same. One
    call into the core (a few us) for configs that list capabilities."""
    if not caps:
        return
    names = [n for v in caps.values() if isinstance(v, list) for n in v if isinstance(n, str)]
    unknown = _core().unknown_capabilities(names)
    if unknown:
        from runh.log import logger

        logger.warn("ignoring unknown or unavailable capabilities: [%s]" % " ".join(unknown))


# create/run use posix and these two helpers, not os: importing os costs 0.9 ms under -I -S
# here (10% of a `runh create`), and nothing else on their path needs it.
def _abspath(path):
    from runh.spec import normpath

    return normpath(path if path.startswith("/") else st.join(os.getcwd(), path))


def _makedirs(path, mode=0o711):
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    except FileNotFoundError:  # a parent is missing too: rare, let os do the walk
        import os as _os

        _os.makedirs(path, mode=mode, exist_ok=True)


def _mark(phase):
    """End of a start-up phase, for RUNH_TIMING/--debug (runh.timing is loaded only then;
    otherwise this is one dict lookup)."""
    t = sys.modules.get("runh.timing")
    if t is not None:
        t.mark(phase)


def _pidfd(pid, starttime):
    """A pidfd for pid if it is still the process recorded at create, else None."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    # The pidfd pins this process: if its start time still matches now, it is ours.
    start, letter = st.proc_start_time(pid)
    if start != starttime or letter in ("Z", "X", "x"):
        os.close(fd)
        return None
    return fd


def _wait_pidfd(fd, timeout_ms=10_000):
    """Wait until the process behind fd has exited (pidfd polls readable); True if it did."""
    import select

    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(timeout_ms))


def _descendants(pid):
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


class Container:
    """One container under a state root. Obtain with Container.load or Container.create."""

    def __init__(self, container_id, root=st.DEFAULT_ROOT, state=None):
        self.id = st.validate_id(container_id)
        self.root = root
        self.dir = st.join(root, container_id)
        self._state = state

    # --- lookup -------------------------------------------------------------------------
    @classmethod
    def load(cls, container_id, root=st.DEFAULT_ROOT):
        c = cls(container_id, root)
        c._state = st.read_state(root, container_id)
        return c

    @classmethod
    def list(cls, root=st.DEFAULT_ROOT):
        """Every container under root, sorted by id (a missing root is an empty list)."""
        try:
            names = sorted(os.listdir(root))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name[0] == ".":  # runh's own files (the seccomp cache), never a container id
                continue
            try:
                out.append(cls.load(name, root))
            except (ContainerNotFound, UsageError, InvalidState):
                continue
        return out

    @property
    def pid(self):
        return (self._state or {}).get("pid", 0)

    def status(self):
        return st.status_of(self.dir, self._state)

    def state(self):
        """The runtime-spec state (plus runc's fields), as `runh state` prints it."""
        s = self._state or {}
        status = self.status()
        out = {
            "ociVersion": s.get("ociVersion", ""),
            "id": self.id,
            "pid": s.get("pid", 0) if status in (st.CREATED, st.RUNNING, st.PAUSED) else 0,
            "status": status,
            "bundle": s.get("bundle", ""),
            "rootfs": s.get("rootfs", ""),
            "created": s.get("created", ""),
            "owner": s.get("owner", ""),
        }
        if s.get("annotations"):
            out["annotations"] = s["annotations"]
        return out

    # --- create / start -----------------------------------------------------------------
    @classmethod
    def create(cls, container_id, bundle=None, root=st.DEFAULT_ROOT, pid_file=None,
               console_socket=None, no_pivot=False, no_new_keyring=False, preserve_fds=0,
               detach=True, systemd_cgroup=False, log=None, pidfd_socket=None):
        """Create the container: init is cloned, set up, and parked until start."""
        from runh.spec import load_config, rootfs_path
        from runh.log import rfc3339

        c = cls(container_id, root)
        bundle = _abspath(bundle or os.getcwd())
        # Everything checkable is checked before anything exists on disk.
        raw, config = load_config(bundle)
        rootfs = rootfs_path(bundle, config)
        _mark("config load+validate")
        process = config.get("process")
        if process is None:
            raise ConfigError("config.json: process: is required to create a container")
        if process.get("terminal") and not console_socket:
            if detach:
                raise ConfigError("cannot allocate tty if runh will detach without setting console socket")
            raise NotSupported("process.terminal without --console-socket in the foreground "
                               "needs a pty proxy, which runh does not have yet")
        if console_socket and not process.get("terminal"):
            raise ConfigError("cannot use console socket if runh will not detach or allocate tty")
        if preserve_fds < 0:
            raise UsageError("--preserve-fds must be >= 0")
        _warn_unknown_caps(process.get("capabilities"))
        listen = _listen_fds()
        if listen:
            # Socket activation, as runc: fds 3..3+N go to the process first (then the
            # --preserve-fds ones), with LISTEN_FDS=N and LISTEN_PID (init sets it to its
            # own pid). Re-serializing the config costs only these callers.
            from runh.jsonio import dumps

            env = [e for e in process.get("env") or [] if not e.startswith(("LISTEN_FDS=", "LISTEN_PID="))]
            process["env"] = env + [f"LISTEN_FDS={listen}", "LISTEN_PID=1"]
            raw = dumps(config).encode()
            preserve_fds += listen

        _makedirs(root)
        try:
            os.mkdir(c.dir, 0o711)
        except FileExistsError:
            raise ContainerExists(container_id) from None
        pid = 0
        cg = None
        try:
            with st.Lock(c.dir):
                _mark("state dir+lock")
                # The cgroup exists and holds its limits before init is cloned into it.
                from runh import cgroups

                linux = config.get("linux") or {}
                cg = cgroups.manager_for(linux, container_id, systemd_cgroup, config.get("annotations"))
                if os.geteuid() != 0 and not systemd_cgroup:  # a user's systemd delegates
                    cg = _rootless_cgroup(cg, linux)
                cg_dir, cg_procs, on_cloned = None, [], None
                if cg is not None:
                    _record_cgroup(c.dir, cg)
                    if cg.needs_pid:
                        on_cloned = _placer(cg, linux, c.dir)
                    else:
                        cg.create()
                        if systemd_cgroup:  # a slice unit: recorded again, as started
                            _record_cgroup(c.dir, cg)
                        cg.apply(linux.get("resources"), linux.get("devices"))
                        cg_dir, cg_procs = cg.clone_target()
                _mark("cgroup")
                hooks, on_hooks = config.get("hooks"), None
                if hooks:  # runh.hooks (and subprocess) only for configs that have hooks
                    from runh import hooks as hk

                    if hk.wanted_at_create(hooks):
                        on_hooks = hk.Create(hooks, {
                            "ociVersion": config["ociVersion"], "id": container_id,
                            "status": "creating", "bundle": bundle,
                            "annotations": config.get("annotations") or {}})
                pid = _core().create(raw, bundle, c.dir, no_pivot=no_pivot,
                                     no_new_keyring=no_new_keyring, preserve_fds=preserve_fds,
                                     console_socket=console_socket, pidfd_socket=pidfd_socket,
                                     cgroup_dir=cg_dir,
                                     cgroup_procs=cg_procs, root=root,
                                     seccomp_state=_seccomp_state(config, container_id, bundle),
                                     on_hooks=on_hooks, on_cloned=on_cloned,
                                     fix_listen_pid=bool(listen))
                _mark("core create returned")
                starttime, _ = st.proc_start_time(pid)
                state = {
                    "ociVersion": config["ociVersion"],
                    "id": container_id,
                    "pid": pid,
                    "starttime": starttime,
                    "bundle": bundle,
                    "rootfs": rootfs,
                    "created": rfc3339(),
                    "owner": "",
                    "annotations": config.get("annotations") or {},
                    "cgroup": cg.to_state() if cg is not None else None,
                }
                if hooks and hk.for_state(hooks):
                    state["hooks"] = hk.for_state(hooks)  # poststart/poststop, run later
                from runh.jsonio import dumps

                st.write_atomic(st.join(c.dir, st.STATE_FILE), dumps(state))
                c._state = state
                if pid_file:
                    # Atomic, so a caller polling for the file never reads a partial pid.
                    st.write_atomic(_abspath(pid_file), str(pid), PID_FILE_MODE)
                _mark("state.json+pid file")
        except BaseException:
            if pid > 0:
                try:
                    os.kill(pid, _SIGKILL)  # still our child: the pid cannot have been reused
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
            if cg is not None:
                try:
                    if cg.exists():
                        cg.kill_all(_SIGKILL)
                except RunhError:
                    pass
                try:
                    cg.remove()
                except RunhError:
                    pass
            _remove_dir(c.dir)
            _release_root(c.root)
            raise
        return c

    def cgroup(self):
        """The container's cgroup manager (None for state written without one). Without
        state.json (a create that died), the record create made before the cgroup."""
        from runh.cgroups import manager_from_state

        saved = (self._state or {}).get("cgroup")
        if saved is None and not self._state:
            try:
                with open(st.join(self.dir, CGROUP_RECORD), "rb") as f:
                    from runh.jsonio import loads

                    saved = loads(f.read())
            except (OSError, ValueError):
                pass
        return manager_from_state(saved)

    def start(self):
        """Release the parked init; it execs the container's process."""
        with st.Lock(self.dir) as lk:
            if lk is None:
                raise ContainerNotFound(self.id)
            self._state = st.read_state(self.root, self.id)
            status = self.status()
            if status != st.CREATED:
                if status == st.STOPPED:
                    raise InvalidState("cannot start a container that has stopped")
                raise InvalidState(f"cannot start an already running container")
            _mark("lock+state read")
            _core().start(self.dir)
            _mark("start handshake (init exec'd)")
            try:
                os.unlink(st.join(self.dir, st.NOTIFY_SOCK))
            except FileNotFoundError:
                pass
            later = self._state.get("hooks")
            if later and later.get("poststart"):
                from runh import hooks as hk

                hk.run_warn("poststart", later, hk.state_bytes(self.state()))

    # --- exec -------------------------------------------------------------------------
    def exec(self, process, console_socket=None, pid_file=None, preserve_fds=0,
             ignore_paused=False, pidfd_socket=None, cgroup=None):
        """Start `process` (the runtime-spec process JSON, bytes) in the running container
        and return its pid once it has exec'd; it is this process's child (wait for it, or
        leave it to the caller's subreaper). No lock is held: runc's exec takes none either,
        and a long `exec` must not block kill/delete. `cgroup` ({controller or "": path},
        `exec --cgroup`) puts it in an existing cgroup below the container's."""
        self._state = st.read_state(self.root, self.id)
        s = self._state or {}
        status = self.status()
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
            try:
                with open(st.join(s.get("bundle", ""), "config.json"), "rb") as f:
                    config = f.read()  # for linux.seccomp, which exec'd processes get too
            except OSError as e:
                raise ConfigError(f"cannot read the container's config.json: {e.strerror}", e.errno) from None
            cg = self.cgroup()
            if cgroup and cg is None:
                raise ConfigError("--cgroup: the container has no cgroup")
            cg_dir, cg_procs = (cg.sub_target(cgroup) if cgroup else cg.clone_target()) if cg else (None, [])
            joins = [cg_dir + "/cgroup.procs"] if cg_dir else list(cg_procs)
            if status == st.PAUSED:
                # A child cloned into the frozen cgroup would freeze before it could
                # report: it joins once it has exec'd, and then freezes until resume.
                cg_dir, cg_procs = None, []
            pid = _core().exec(process, fd, s["pid"], config=config, root=self.root,
                               console_socket=console_socket, pidfd_socket=pidfd_socket,
                               preserve_fds=listen + preserve_fds, fix_listen_pid=bool(listen),
                               cgroup_dir=cg_dir, cgroup_procs=cg_procs,
                               seccomp_state=_exec_seccomp_state(config, s, status))
            if status == st.PAUSED:
                from runh.cgroups import _fs

                for f in joins:
                    _fs.write(f.rpartition("/")[0], [("cgroup.procs", str(pid))])
        finally:
            os.close(fd)
        if pid_file:
            path = _abspath(pid_file)
            try:
                st.write_atomic(path, str(pid), PID_FILE_MODE)
            except OSError as e:
                # Nobody would know the process's pid: it must not outlive the failure.
                try:
                    os.kill(pid, _SIGKILL)
                    os.waitpid(pid, 0)
                except OSError:
                    pass
                raise SyscallError(f"write pid file {path}: {os.strerror(e.errno).lower()}", e.errno) from None
        return pid

    # --- signals ------------------------------------------------------------------------
    def kill(self, sig=15, all=False):
        with st.Lock(self.dir) as lk:
            if lk is None:
                raise ContainerNotFound(self.id)
            self._state = st.read_state(self.root, self.id)
            self._signal(sig, all)

    def _signal(self, sig, all=False):
        import _signal

        s = self._state or {}
        if self.status() not in (st.CREATED, st.RUNNING, st.PAUSED):
            raise ContainerNotRunning(self.id)
        fd = _pidfd(s["pid"], s.get("starttime"))
        if fd is None:
            raise ContainerNotRunning(self.id)
        try:
            cg = self.cgroup() if all else None
            if cg is not None:
                # Every process in the cgroup, also those that left init's process tree
                # (cgroup.kill for SIGKILL on v2); init once, through its pidfd below.
                cg.kill_all(sig, skip=(s["pid"],))
            elif all:
                # No cgroup recorded: signal the process tree (children first, so init
                # does not reap them into orphans unsignalled).
                for p in reversed(_descendants(s["pid"])):
                    if p != s["pid"]:
                        try:
                            os.kill(p, sig)
                        except ProcessLookupError:
                            pass
            _signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            raise ContainerNotRunning(self.id) from None
        finally:
            os.close(fd)

    # --- delete -------------------------------------------------------------------------
    def delete(self, force=False):
        with st.Lock(self.dir) as lk:
            if lk is None:
                raise ContainerNotFound(self.id)
            try:
                self._state = st.read_state(self.root, self.id)
            except InvalidState:
                self._state = {}  # unreadable state: nothing to signal, just remove it
            status = self.status()
            _mark("lock+state read")
            s = self._state or {}
            if status in (st.RUNNING, st.PAUSED) and not force:
                raise InvalidState(f"cannot delete container {self.id} that is not stopped: {status}")
            if status in (st.CREATED, st.RUNNING, st.PAUSED) or (status == st.CREATING and force):
                fd = _pidfd(s.get("pid", 0), s.get("starttime")) if s.get("pid") else None
                if fd is not None:
                    import _signal

                    try:
                        cg = self.cgroup() if force else None
                        if cg is not None:
                            cg.kill_all(_SIGKILL)
                        elif force:
                            for p in reversed(_descendants(s["pid"])):
                                if p != s["pid"]:
                                    try:
                                        os.kill(p, _SIGKILL)
                                    except ProcessLookupError:
                                        pass
                        _signal.pidfd_send_signal(fd, _SIGKILL)
                        _wait_pidfd(fd)
                    except ProcessLookupError:
                        pass
                    finally:
                        os.close(fd)
            elif status == st.CREATING:
                raise InvalidState(f"cannot delete container {self.id} that is being created")
            _mark("init killed")
            cg = self.cgroup()
            if cg is not None:
                # Init is gone; anything left in the cgroup (e.g. a daemonized child without
                # a pid namespace) dies with the container, then the cgroup is removed (a
                # systemd unit is stopped even when its cgroup is already gone).
                if cg.exists() and cg.pids():
                    cg.kill_all(_SIGKILL)
                cg.remove()
            later = s.get("hooks")
            final = dict(self.state(), status=st.STOPPED, pid=0) if later else None
            _mark("cgroup removed")
            _remove_dir(self.dir)
            _release_root(self.root)
            _mark("state dir removed")
            if later and later.get("poststop"):
                from runh import hooks as hk

                hk.run_warn("poststop", later, hk.state_bytes(final))

    # --- processes ----------------------------------------------------------------------
    def pids(self):
        if self.status() not in (st.CREATED, st.RUNNING, st.PAUSED):
            return []
        cg = self.cgroup()
        return sorted(cg.pids()) if cg is not None else _descendants(self.pid)

    def wait(self):
        """Wait for init (a child of this process, as in `run`); return its exit status the
        shell way: the code, or 128+signal if it was killed."""
        while True:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                return 255
            if os.WIFEXITED(status):
                return os.WEXITSTATUS(status)
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)


def _seccomp_state(config, container_id, bundle):
    """The state a seccomp agent at linux.seccomp.listenerPath receives (the core adds the
    pid), as runc sends it: status "creating". None, at no cost, without a listenerPath."""
    seccomp = (config.get("linux") or {}).get("seccomp") or {}
    if not seccomp.get("listenerPath"):
        return None
    from runh.jsonio import dumps

    state = {"ociVersion": config.get("ociVersion", ""), "id": container_id, "status": "creating",
             "bundle": bundle}
    if config.get("annotations"):
        state["annotations"] = config["annotations"]
    return dumps(state).encode()


def _exec_seccomp_state(config, s, status):
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


def _listen_fds():
    """How many fds systemd socket activation passed to this process (LISTEN_FDS, valid
    only when LISTEN_PID is our pid, as sd_listen_fds() checks); 0 if none."""
    env = os.environ
    n, who = env.get(b"LISTEN_FDS"), env.get(b"LISTEN_PID")
    if not n or not n.isdigit() or who != str(os.getpid()).encode():
        return 0
    return int(n)


def _with_listen_env(process, n):
    """The process JSON with LISTEN_FDS=n and a LISTEN_PID that the core replaces by the
    process's own pid in the container."""
    from runh.jsonio import dumps, loads

    p = loads(process)
    env = [e for e in p.get("env") or [] if not e.startswith(("LISTEN_FDS=", "LISTEN_PID="))]
    p["env"] = env + [f"LISTEN_FDS={n}", "LISTEN_PID=1"]
    return dumps(p).encode()


# Written before the cgroup (or systemd unit) is made, so that `delete --force` finds it
# if this create dies before state.json exists; one small write (~30 us on tmpfs).
CGROUP_RECORD = "cgroup.json"


def _record_cgroup(sdir, cg):
    from runh.jsonio import dumps

    st.write_atomic(st.join(sdir, CGROUP_RECORD), dumps(cg.to_state()), 0o600)


def _placer(cg, linux, sdir):
    """on_cloned for the core: a systemd scope is started with the init's pid in it, right
    after the clone (then recorded again, now as started: runh's to stop), and then gets
    the limits written to its files."""

    def place(pid):
        cg.create(pid)
        _record_cgroup(sdir, cg)
        cg.apply(linux.get("resources"), linux.get("devices"))

    return place


def _rootless_cgroup(cg, linux):
    """An unprivileged caller gets a cgroup only where a delegated tree lets it make one
    (as runc's rootless mode): otherwise none, and limits it asked for are an error."""
    from runh.errors import SyscallError

    try:
        cg.create()
        cg.remove()
        return cg
    except (SyscallError, OSError) as e:
        if getattr(e, "errno", 0) not in (1, 13, 30):  # EPERM, EACCES, EROFS
            raise
    res = {k: v for k, v in (linux.get("resources") or {}).items() if v and k != "devices"}
    if res:
        raise ConfigError("rootless container: linux.resources (" + ", ".join(sorted(res)) +
                          ") needs a cgroup, and no delegated cgroup is writable by this user")
    return None


def _remove_dir(path):
    """Remove a directory tree of plain files and directories (a state dir, the cache).
    By hand rather than shutil.rmtree: importing shutil costs ~1 ms under -I -S."""
    try:
        for name in os.listdir(path):
            sub = st.join(path, name)
            try:
                os.unlink(sub)
            except IsADirectoryError:
                _remove_dir(sub)
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _release_root(root):
    """Drop the seccomp filter cache (<root>/.cache) once the last container of this root
    is gone.

    containerd's shim (and clients-check's ctr-no-leftovers) expect `--root` to be empty
    after every container is deleted, so a cache that outlived its containers would look
    like leaked state. The cache still serves while any container of the root exists (a
    node's pods), which is when profiles repeat. A create racing with this removal loses
    only its cache write, which seccomp/cache.rs treats as non-fatal. Cost: one listdir of
    the root per delete."""
    try:
        if os.listdir(root) == [".cache"]:
            _remove_dir(st.join(root, ".cache"))
    except (FileNotFoundError, NotADirectoryError):
        pass


__all__ = ["Container", "RunhError"]

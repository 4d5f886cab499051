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
from runh.errors import (ConfigError, ContainerExists, ContainerNotFound,
                         InvalidState, NotSupported, RunhError, SyscallError, UsageError)

_SIGKILL = 9
# What start's handshake gets from an init that is no longer parked: ENOENT, EPIPE,
# ECONNRESET, ECONNREFUSED.
_NOT_LISTENING = (2, 32, 104, 111)
# runc's pid files are 0666 less the umask (and so are the native launcher's).
PID_FILE_MODE = 0o666
# The config a container was created with, in its state dir (see runh/state.py).
CONFIG_SNAPSHOT = "config.json"


# fds a process can have at most (the kernel's nr_open ceiling): --preserve-fds beyond it
# names fds that cannot exist (and overflowed the core's int, a traceback).
_MAX_FDS = 1 << 20


def check_preserve_fds(n):
    if n < 0:
        raise UsageError("--preserve-fds must be >= 0")
    if n > _MAX_FDS:
        raise UsageError(f"--preserve-fds {n}: more fds than a process can have")


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


class Container:
    """One container under a state root. Obtain with Container.load or Container.create."""

    def __init__(self, container_id, root=st.DEFAULT_ROOT, state=None):
        self.id = st.validate_id(container_id)
        self.root = root
        self.dir = st.join(root, container_id)
        self._state = state
        self._broken = None  # why state.json could not be read (list shows such a one)

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
            except (ContainerNotFound, UsageError):
                continue  # deleted meanwhile, or not a container's dir
            except (InvalidState, ConfigError, OSError) as e:
                # Shown, not hidden: what is left of it is still on the host.
                c = cls(name, root)
                c._broken = str(e)
                out.append(c)
        return out

    @property
    def pid(self):
        return (self._state or {}).get("pid", 0)

    def status(self):
        if self._broken:
            return st.UNKNOWN
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
               detach=True, systemd_cgroup=False, log=None, pidfd_socket=None, start=None):
        """Create the container: init is cloned, set up, and parked until start.

        `start` (run): a callable; then, still under the lock create took, start(c) is
        called and the container is started at once (a failure of either is create's
        failure: everything recorded is undone). The container is this process's from
        the state dir's birth, so start's own lock, state.json read and status probe
        (a connect to notify.sock, with the `_socket` import) are skipped: 0.44 ms min,
        0.57 median in a fresh process here (30 runs at load 6), and 30 syscalls of the
        1212 of a `run` (strace -f -c), the init's wake-up for the probe among them."""
        from runh.spec import load_config, rootfs_path

        st.validate_id(container_id)
        bundle = _abspath(bundle or os.getcwd())
        if systemd_cgroup:
            from runh.cgroups import systemd

            systemd.prefetch()  # D-Bus import and connection, in a thread, meanwhile
        # Everything checkable is checked before anything exists on disk.
        raw, config = load_config(bundle)
        original = raw  # the state dir's config.json: exec's defaults, without create's LISTEN_*
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
        check_preserve_fds(preserve_fds)
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

        def make(c):
            c._create_locked(config, raw, original, bundle, rootfs, pid_file, console_socket,
                             pidfd_socket, no_pivot, no_new_keyring, preserve_fds, listen, systemd_cgroup)
            if start is not None:
                start(c)
                c._start_locked()

        return cls._new(container_id, root, make)

    @classmethod
    def _new(cls, container_id, root, make):
        """Make the state dir of a new container and hold its lock while make(c) records
        and makes the container (create, and runh.criu's restore); if make fails, or is
        interrupted, everything recorded is undone (_undo_create). Returns the container."""
        c = cls(container_id, root)
        _make_root(root)
        try:
            os.mkdir(c.dir, st.DIR_MODE)
        except FileExistsError:
            raise ContainerExists(container_id) from None
        # The lock is taken through an fd of the dir just made: if a delete removed it
        # before the lock was ours (it looks like a create that died), the open fails
        # rather than lock a dir another create made meanwhile.
        try:
            dfd = os.open(c.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise InvalidState(f"container {container_id} was deleted while it was being created") from None
        try:
            with st.Lock(c.dir, dir_fd=dfd) as lk:
                if lk is None:
                    raise ContainerNotFound(container_id)
                _mark("state dir+lock")
                try:
                    make(c)
                except BaseException:
                    c._undo_create()
                    raise
        finally:
            os.close(dfd)
        return c

    def _record(self, state):
        """Write state.json (atomically) and keep it as this container's state."""
        st.write_atomic(st.join(self.dir, st.STATE_FILE), _dumps(state), exchange=True)
        self._state = state

    def _create_locked(self, config, raw, original, bundle, rootfs, pid_file, console_socket,
                       pidfd_socket, no_pivot, no_new_keyring, preserve_fds, listen, systemd_cgroup):
        """create's work under the lock; returns the init's pid. Recorded before made:
        each thing is in state.json before it exists (the cgroup before it is made; the
        init as soon as it is cloned, by its cgroup or by its pid), so that wherever
        this is cut short (a SIGKILL, a failure), `delete` finds all of it."""
        container_id = self.id
        linux = config.get("linux") or {}
        cg = self._claim_cgroup(linux, systemd_cgroup, config.get("annotations"))
        hooks, on_hooks = config.get("hooks"), None
        if hooks:  # runh.hooks (and subprocess) only for configs that have hooks
            from runh import hooks as hk

            if hk.wanted_at_create(hooks):
                on_hooks = hk.Create(hooks, {
                    "ociVersion": config["ociVersion"], "id": container_id,
                    "status": "creating", "bundle": bundle,
                    "annotations": config.get("annotations") or {}})
        # The pid file's temp file is written while init sets up (on_setup) and renamed
        # into place once init is ready: its name is in the first record ("made"), so
        # that a create killed in between leaves nothing `delete` does not remove.
        pid_tmp = st.tmp_name(_abspath(pid_file)) if pid_file else None
        state = self._record_first(config, original, bundle, rootfs, cg, snapshot=False,
                                   made=[pid_tmp] if pid_tmp else None)
        if cg is not None and os.geteuid() != 0 and not systemd_cgroup:  # a user's systemd delegates
            from runh.cgroups.rootless import delegated

            cg = delegated(cg, linux)
            if cg is None:
                state["cgroup"] = None
                self._record(state)
        # The cgroup exists before init is cloned into it; its limits are written while
        # init sets up (on_setup), unless init's own first steps depend on them.
        defer_limits = False
        if cg is not None and not cg.placed_by_pid:
            defer_limits = cg.limits_while_in and not _limits_before_init(linux)
            if defer_limits:
                cg.create()
            else:
                _make_cgroup(cg, linux, state)
            cg_dir, cg_procs = cg.clone_target()
        else:
            cg_dir, cg_procs = None, []
        if linux.get("intelRdt") is not None:
            # resctrl (runh.intelrdt): the core writes the pid to its tasks files.
            from runh import intelrdt

            def note(record):
                state["intelRdt"] = record
                self._record(state)

            state["intelRdt"], tasks = intelrdt.prepare(linux["intelRdt"], container_id, note)
            cg_procs = list(cg_procs) + tasks
        _mark("cgroup")

        place = cg is not None and cg.placed_by_pid

        def on_pid(pid):
            # Called by the core right after clone (and again if init forks into a pid
            # namespace joined by path): from here on `delete` can find the process.
            nonlocal place
            state["pid"], state["starttime"] = pid, st.proc_start_time(pid)[0]
            self._record(state)
            if place:
                # A systemd scope is started with the init in it (its name and
                # Description are in the record already), then gets the limits written
                # to its files. The fork into a pid namespace stays in the scope.
                place = False
                try:
                    cg.create(pid)
                    cg.apply(linux.get("resources"), linux.get("devices"))
                finally:
                    state["cgroup"] = cg.to_state()  # "started": written with the final record
                _mark("systemd: limits written")

        prepared = {}

        def on_setup(pid):
            # While init execs, makes its namespaces and mounts (another core), runh
            # writes the cgroup's limits, as runc does when init reaches its hooks point
            # (before any hook runs), and the final record's file, so that what is left
            # once init is ready is the rename. Measured in fresh processes (private
            # cgroup2 namespace, ext4 state root): see benches/results/issue16.
            if defer_limits:
                cg.apply(linux.get("resources"), linux.get("devices"))
                state["cgroup"] = cg.to_state()
            _mark("cgroup limits")
            self._write_snapshot(original)
            if pid_tmp:
                _pid_file_io(pid_file, st.write_new, pid_tmp, str(pid), PID_FILE_MODE)
            final = dict(state, pid=pid, starttime=st.proc_start_time(pid)[0])
            del final["creating"]
            final.pop("made", None)  # the pid file's temp file: renamed before this commits
            path = st.join(self.dir, st.STATE_FILE)
            prepared["record"] = (pid, final, st.prepare_atomic(path, _dumps(final)), pid_tmp)

        # In a cgroup all its own, the init is recorded already: everything in that
        # cgroup is the container's, and delete kills it all (a child still outside it,
        # on v1 before its cgroup.procs write, reads EOF from a dead runh and exits). A
        # pid record is one more state.json write (0.9 ms on ext4: the rename over an
        # existing file flushes it; 0.06 ms on tmpfs, as /run is): only for a container
        # without such a cgroup (rootless, or one it did not make) is it worth it, and
        # with the systemd driver, whose unit is made there.
        needs_pid = systemd_cgroup or cg is None or not cg.owns_all()
        pid = _core().create(raw, bundle, self.dir, no_pivot=no_pivot,
                             no_new_keyring=no_new_keyring, preserve_fds=preserve_fds,
                             console_socket=console_socket, pidfd_socket=pidfd_socket,
                             cgroup_dir=cg_dir,
                             cgroup_procs=cg_procs, root=self.root,
                             seccomp_state=_seccomp_state(config, container_id, bundle),
                             on_hooks=on_hooks, on_pid=on_pid if needs_pid else None,
                             on_setup=on_setup, fix_listen_pid=bool(listen))
        _mark("core create returned")
        self._record_made(state, pid, pid_file, prepared.get("record"), pid_tmp)
        _mark("state.json+pid file")
        return pid

    def _claim_cgroup(self, linux, systemd_cgroup, annotations=None):
        """The manager of the cgroup this container will get, claimed: a cgroup that
        holds processes is refused, and the dirs it will make are noted as its own."""
        from runh import cgroups

        cg = cgroups.manager_for(linux, self.id, systemd_cgroup, annotations)
        if cg is not None:
            cg.precheck(linux.get("resources"))  # limits this host cannot apply
            cg.claim()  # refuses a cgroup that holds processes; notes which dirs are ours
        return cg

    def _record_first(self, config, original, bundle, rootfs, cg, snapshot=True, made=None):
        """The first record of a container being made (create, restore), written before
        anything but the state dir exists: "creating", no pid, the claimed cgroup, the
        hooks that run later; then the config snapshot (exec's processes get the config
        as it was now, seccomp, personality and process defaults, whatever becomes of
        the bundle), unless the caller writes it later (`snapshot` False: create, while
        init sets up; nothing reads it before create is done). Returns the state dict
        the caller goes on recording into."""
        state = {
            "ociVersion": config["ociVersion"],
            "id": self.id,
            "pid": 0,
            "starttime": None,
            "bundle": bundle,
            "rootfs": rootfs,
            "created": st.rfc3339(),
            "owner": "",
            "annotations": config.get("annotations") or {},
            "cgroup": cg.to_state() if cg is not None else None,
            "creating": True,
        }
        if made:
            state["made"] = made
        hooks = config.get("hooks")
        if hooks:  # runh.hooks only for configs that have hooks
            from runh import hooks as hk

            later = hk.for_state(hooks)
            if later:
                state["hooks"] = later  # poststart/poststop, run later
        self._record(state)
        if snapshot:
            self._write_snapshot(original)
        return state

    def _write_snapshot(self, original):
        st.write_new(st.join(self.dir, CONFIG_SNAPSHOT), original)

    def _record_made(self, state, pid, pid_file, prepared=None, pid_tmp=None):
        """The last record of a container being made: its init (pid and start time), no
        longer "creating"; and the pid file, which a failure after this still undoes
        (the record names the init, and _undo_create kills it). `prepared`: (pid, record,
        temp file, pid file's temp file) written ahead (create's on_setup), used if it is
        this init's: the pid file is renamed into place, then the record committed (its
        first version names the pid file's temp file, which is gone by then)."""
        if prepared is not None and prepared[0] == pid:
            if pid_tmp:
                _pid_file_io(pid_file, st.commit_atomic, pid_tmp, _abspath(pid_file))
            st.commit_atomic(prepared[2], st.join(self.dir, st.STATE_FILE), exchange=True)
            self._state = prepared[1]
            return
        # init forked into a pid namespace after the record was prepared (or there was
        # none): the prepared files name the wrong pid.
        for tmp in (prepared[2] if prepared else None, pid_tmp):
            if tmp:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        state["pid"], state["starttime"] = pid, st.proc_start_time(pid)[0]
        del state["creating"]
        if pid_tmp:  # create's own "made" (restore's stays: its files live on)
            state.pop("made", None)
        self._record(state)
        if pid_file:
            _write_pid_file(pid_file, pid)

    def _undo_create(self):
        """A create that failed: remove what its record names, under its lock. What a
        SIGKILL leaves is removed the same way by `delete` (_remove_recorded)."""
        pid = (self._state or {}).get("pid")
        try:
            self._remove_recorded(force=True)
        except BaseException:
            pass  # the first error is the one to report; the record stays for `delete`
        else:
            _release_root(self.root)
        if pid:
            try:
                os.waitpid(pid, os.WNOHANG)  # our child, if the core had returned it
            except ChildProcessError:
                pass

    def _remove_recorded(self, force):
        """Kill the recorded init (if it is still that process) and whatever is in the
        container's own cgroup, remove the cgroup directories it made, what else the
        record names ("made": files and dirs outside the state dir, "mounts": mount
        points in it), then the state dir: state.json last, so that until then a killed
        delete can be run again."""
        s = self._state or {}
        fd = _pidfd(s.get("pid"), s.get("starttime")) if s.get("pid") else None
        cg = self.cgroup()
        if fd is not None:
            import _signal

            try:
                if force and not (cg is not None and cg.kill_all(_SIGKILL)):
                    from runh.container_kill import signal_tree

                    signal_tree(s["pid"], _SIGKILL)  # not the container's own cgroup (or none)
                _signal.pidfd_send_signal(fd, _SIGKILL)
                _wait_pidfd(fd)
            except ProcessLookupError:
                pass
            finally:
                os.close(fd)
        _mark("init killed")
        if cg is not None:
            # Init is gone; anything left in the cgroup (e.g. a daemonized child without
            # a pid namespace) dies with the container, then the cgroup is removed.
            if cg.exists() and cg.pids():
                cg.kill_all(_SIGKILL)  # nothing, if the cgroup is not the container's alone
            # The directories this container made (none left: a no-op); a systemd unit
            # is stopped and cleared even when systemd has removed its cgroup already.
            cg.remove()
        if s.get("intelRdt"):
            from runh import intelrdt

            intelrdt.remove(s["intelRdt"])
        _mark("cgroup removed")
        if s.get("made") or s.get("mounts"):  # restore's records alone have these
            from runh.criu import records

            if s.get("made"):
                records.remove_made(s["made"])
            if s.get("mounts"):
                records.detach_mounts(self.dir, s["mounts"])
        _remove_state_dir(self.dir)
        _mark("state dir removed")

    def config(self):
        """The config.json the container was created with (its state dir's copy): exec'd
        processes get its linux.seccomp, personality and process defaults, whatever has
        become of the bundle since. A container made by a runh without the copy: the
        bundle's."""
        path = st.join(self.dir, CONFIG_SNAPSHOT)
        if not st.exists(path):
            path = st.join((self._state or {}).get("bundle", ""), "config.json")
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ConfigError(f"cannot read the container's config.json: {e.strerror}", e.errno) from None

    def cgroup(self):
        """The container's cgroup manager (None for state written without one)."""
        from runh.cgroups import manager_from_state

        return manager_from_state((self._state or {}).get("cgroup"))

    def start(self):
        """Release the parked init; it execs the container's process."""
        with st.Lock(self.dir) as lk:
            if lk is None:
                raise ContainerNotFound(self.id)
            self._state = st.read_state(self.root, self.id)
            self._check_startable()
            _mark("lock+state read")
            self._start_locked()

    def _start_locked(self):
        """start's handshake and what follows, under the lock, of a created container."""
        try:
            _core().start(self.dir)
        except SyscallError as e:
            # Refused, or reset with our byte unread: init had taken another start's
            # byte already (one killed after sending it, whose start goes on). Not
            # created any more: runc's words for what it is.
            # Only the handshake's own errors: one that init reported after taking
            # the byte (an unloaded AppArmor profile is ENOENT too) is the answer.
            if (e.errno in _NOT_LISTENING and str(e).startswith(_core().START_HANDSHAKE)
                    and not st.parked(self.dir)):
                self._check_startable()
            raise
        _mark("start handshake (init exec'd)")
        try:
            os.unlink(st.join(self.dir, st.NOTIFY_SOCK))
        except FileNotFoundError:
            pass
        later = self._state.get("hooks")
        if later and later.get("poststart"):
            from runh import hooks as hk

            hk.run_warn("poststart", later, hk.state_bytes(self.state()))

    def _check_startable(self):
        status = self.status()
        if status != st.CREATED:
            if status == st.STOPPED:
                raise InvalidState("cannot start a container that has stopped")
            raise InvalidState("cannot start an already running container")

    # --- exec -------------------------------------------------------------------------
    def exec(self, process, console_socket=None, pid_file=None, preserve_fds=0,
             ignore_paused=False, pidfd_socket=None, cgroup=None):
        """Start `process` (the runtime-spec process JSON, bytes) in the running container
        and return its pid once it has exec'd; it is this process's child (wait for it, or
        leave it to the caller's subreaper). No lock is held: runc's exec takes none either,
        and a long `exec` must not block kill/delete. `cgroup` ({controller or "": path},
        `exec --cgroup`) puts it in an existing cgroup below the container's."""
        # The body is runh.container_exec's: only the Python `runh exec` (the launcher
        # runs the plain one itself) pays for its code, and create does not (see there).
        from runh.container_exec import exec_process

        return exec_process(self, process, console_socket, pid_file, preserve_fds, ignore_paused,
                            pidfd_socket, cgroup)

    # --- signals ------------------------------------------------------------------------
    def kill(self, sig=15, all=False):
        with st.Lock(self.dir) as lk:
            if lk is None:
                raise ContainerNotFound(self.id)
            self._state = st.read_state(self.root, self.id)
            self._signal(sig, all)

    def _signal(self, sig, all=False):
        """Signal the init (through a pidfd), or with `all` every process of the container;
        kill's work under its lock, and run's forwarding."""
        from runh.container_kill import signal_container

        signal_container(self, sig, all)


    # --- delete -------------------------------------------------------------------------
    def delete(self, force=False):
        """Remove the container: refused while it runs (unless force), and refused, with
        the state dir kept, when its record is unreadable or missing: then nobody can
        tell what of it is left, and reporting success would hide it."""
        with st.Lock(self.dir) as lk:
            if lk is None:
                raise ContainerNotFound(self.id)
            try:
                self._state = st.read_state(self.root, self.id)
            except InvalidState as e:
                raise InvalidState(f"{e}; {_LOST}") from None
            if self._state is None:
                # No record, and nothing else (read_state): a create killed before it
                # wrote one.
                _remove_state_dir(self.dir)
                _release_root(self.root)
                return
            status = self.status()  # a record still "creating" is a create that died: stopped
            _mark("lock+state read")
            if status in (st.RUNNING, st.PAUSED) and not force:
                raise InvalidState(f"cannot delete container {self.id} that is not stopped: {status}")
            s = self._state
            later = s.get("hooks")
            final = dict(self.state(), status=st.STOPPED, pid=0) if later else None
            self._remove_recorded(force=force or status == st.CREATED or bool(s.get("creating")))
            _release_root(self.root)
            if later and later.get("poststop"):
                from runh import hooks as hk

                hk.run_warn("poststop", later, hk.state_bytes(final))

    # --- processes ----------------------------------------------------------------------
    def pids(self):
        if self.status() not in (st.CREATED, st.RUNNING, st.PAUSED):
            return []
        cg = self.cgroup()
        if cg is not None:
            return sorted(cg.pids())
        from runh.container_kill import descendants

        return descendants(self.pid)

    def wait(self):
        """Wait for init (a child of this process, as in `run`); return its exit status the
        shell way: the code, or 128+signal if it was killed."""
        while True:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                return 255
            _mark("container exited")
            if os.WIFEXITED(status):
                return os.WEXITSTATUS(status)
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)


def _limits_before_init(linux):
    """Whether the cgroup's limits must be written before init is cloned into it: a
    cpuset written later would reset the CPU affinity init sets first (procattr's
    execCPUAffinity.initial), so configs with one keep the old order."""
    res = linux.get("resources") or {}
    cpu = res.get("cpu") or {}
    return bool(cpu.get("cpus") or cpu.get("mems")
                or any(k.startswith("cpuset.") for k in res.get("unified") or {}))


def _dumps(obj):
    from runh.jsonio import dumps

    return dumps(obj)


def _make_cgroup(cg, linux, state):
    """Make the claimed cgroup with the config's limits (state["cgroup"] gains
    linux.devices, which update keeps; the caller's next record writes it)."""
    cg.create()
    cg.apply(linux.get("resources"), linux.get("devices"))
    state["cgroup"] = cg.to_state()


def _pid_file_io(pid_file, fn, *args):
    """fn(*args), an OSError worded as a pid file error, as _write_pid_file words it."""
    try:
        fn(*args)
    except OSError as e:
        path = _abspath(pid_file)
        raise SyscallError(f"write pid file {path}: {os.strerror(e.errno).lower()}", e.errno) from None


def _write_pid_file(pid_file, pid):
    """Atomic (a caller polling for the file never reads a partial pid), through a temp
    file with a random name and O_EXCL|O_NOFOLLOW (state.write_atomic): the directory may
    be shared with users who could plant a symlink at a predictable name."""
    path = _abspath(pid_file)
    try:
        st.write_atomic(path, str(pid), PID_FILE_MODE)
    except OSError as e:
        raise SyscallError(f"write pid file {path}: {os.strerror(e.errno).lower()}", e.errno) from None


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


def _listen_fds():
    """How many fds systemd socket activation passed to this process (LISTEN_FDS, valid
    only when LISTEN_PID is our pid, as sd_listen_fds() checks); 0 if none."""
    env = os.environ
    n, who = env.get(b"LISTEN_FDS"), env.get(b"LISTEN_PID")
    if not n or not n.isdigit() or who != str(os.getpid()).encode():
        return 0
    return int(n)


# delete's words when it cannot know what of a container is left.
_LOST = ("cannot tell what of the container is left (its init, its cgroups), so it is not removed: "
         "restore state.json, or remove the state dir by hand once those are gone")


def _make_root(root):
    """The state root, 0700 (runc and crun's mode: nobody else lists the container ids).
    A root that an older runh made 0711 is tightened; any other existing directory is
    left as its owner made it (--root may name a shared one: the state dirs in it are
    0700 themselves)."""
    try:
        os.mkdir(root, st.DIR_MODE)
        return
    except FileExistsError:
        s = os.stat(root)
        if s.st_uid == os.geteuid() and s.st_mode & 0o7777 == 0o711:
            os.chmod(root, st.DIR_MODE)
    except FileNotFoundError:  # a parent is missing too: rare, let os do the walk
        import os as _os

        _os.makedirs(root, mode=st.DIR_MODE, exist_ok=True)


def _remove_state_dir(path):
    """Remove a state dir: everything but state.json and the lock first, then state.json,
    then the lock, then the dir. A delete killed part way leaves the record, and the
    next delete finishes the job; a dir without state.json is never one with more than
    the lock in it (state.nothing_made)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    last = [n for n in (st.STATE_FILE, st.LOCK_FILE) if n in names]
    for name in [n for n in names if n not in last] + last:
        sub = st.join(path, name)
        try:
            os.unlink(sub)
        except IsADirectoryError:
            _remove_dir(sub)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


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

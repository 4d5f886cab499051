"""runh._core: the Rust core of runh (built from rust/ by maturin).

Process creation and the create/start handshake, plus the cgroup and seccomp kernel work
(their functions are registered by rust/src/cgroups/py.rs and rust/src/seccomp/py.rs).

Every function raises the `runh.errors` classes (SdBus: OSError), each with `.errno` set:
SyscallError (a system call failed; the message names what was being done, e.g.
``mount proc to /proc: operation not permitted``), ConfigError (the config asks for
something impossible or unsupported), ExecError (the container's program cannot be
executed), SyncError (runh-init died or broke the protocol). Errors that happen inside the
container's init are sent back over the sync socket and raised here with the same text.
"""

from typing import Any

NOTIFY_SOCK: str
# The prefix of the context of start's own handshake errors (clone::start_refused).
START_HANDSHAKE: str
"""File name of the socket, inside the state dir, on which a created init waits for start."""

def create(
    config: bytes,
    bundle: str,
    state_dir: str,
    *,
    no_pivot: bool = False,
    no_new_keyring: bool = False,
    preserve_fds: int = 0,
    console_socket: str | None = None,
    cgroup_dir: str | None = None,
    cgroup_procs: list[str] = [],
    root: str | None = None,
    seccomp_state: bytes | None = None,
    on_hooks: "Callable[[int], bytes] | None" = None,
    on_pid: "Callable[[int], None] | None" = None,
    fix_listen_pid: bool = False,
) -> int:
    """Create a container and return its init's pid once the init is set up and parked.

    config: the raw config.json bytes, already validated by the caller. root.path is
        resolved against `bundle` (and symlinks in it resolved).
    state_dir: an existing directory; `<state_dir>/notify.sock` is created and the init
        listens on it until `start`. The path must fit in sockaddr_un (107 bytes).
    no_pivot: MS_MOVE + chroot instead of pivot_root (rootfs on a ramfs).
    no_new_keyring: keep the caller's session keyring instead of a new anonymous one.
    preserve_fds: fds 3 .. 3+N-1 of the caller are passed into the container as they are.
    fix_listen_pid: the caller was socket-activated (LISTEN_FDS, counted in preserve_fds
        and put in process.env by it): init sets LISTEN_PID in the process's environment
        to its own pid (1 with a new pid namespace; runc always writes 1).
    console_socket: with process.terminal, the AF_UNIX path to which the pty master is
        sent (one message, one SCM_RIGHTS fd, payload the slave's name like
        b"/dev/pts/0"). Required when process.terminal is true, refused otherwise.
    cgroup_dir: a cgroup v2 directory: the init is cloned straight into it
        (clone3 CLONE_INTO_CGROUP), so not a page of it is charged elsewhere; on kernels
        without that, its cgroup.procs is written instead.
    cgroup_procs: cgroup.procs files (cgroup v1 hierarchies) that the init's pid is
        written to before it starts any setup.
    root: the state root (--root); linux.seccomp is compiled here, before clone, through
        the cache at `<root>/.cache/seccomp/` (None: compiled without a cache). A bad
        profile raises ConfigError naming the JSON path. runh-init loads the filter after
        `start`: last before execve with noNewPrivileges, else before the user/capability
        change (seccomp(2) then needs CAP_SYS_ADMIN, as in runc).
    seccomp_state: the runtime-spec state JSON without pid (status "creating"), needed
        only when linux.seccomp.listenerPath is set: the listener path is connected here
        and, after the filter is loaded, the agent receives the container process state
        (this state plus the pid, fds ["seccompFd"], metadata = listenerMetadata) with the
        SCMP_ACT_NOTIFY fd in SCM_RIGHTS. SCMP_ACT_NOTIFY without listenerPath raises
        ConfigError.
    on_hooks: given only for configs with prestart/createRuntime/createContainer/
        startContainer hooks: init then stops once the namespaces exist and the mounts are
        in place (before pivot_root) and on_hooks(init_pid) is called, with the GIL, in
        this process; it runs the runtime-namespace hooks and returns the state JSON
        (compact, status "creating") that init feeds to createContainer (run then) and
        startContainer (run after `start`, status "created"). An exception it raises is
        re-raised by create unchanged, after the init is killed.
    on_pid: called with the init's pid (with the GIL) right after clone, before anything
        else is done with the child, and again if init forks into a pid namespace joined
        by path: the caller records it in the state dir, so that a create killed at any
        later instant leaves a process that `delete` finds (the systemd cgroup driver
        then starts the container's scope with that pid). An exception it raises is
        re-raised by create unchanged, after the child is killed.

    With process.args[0] resolved against the container's PATH inside the container, a
    missing program fails here with ExecError
    ``exec: "NAME": executable file not found in $PATH``. Namespaces without a path are
    created by clone; with a path they are joined by the init (a pid namespace by path
    costs one more fork, and the returned pid is then the forked one's). A new user
    namespace needs linux.uidMappings/gidMappings mapping containerID 0: they are
    written (directly as root or for a one-id map of the caller's own ids, else through
    newuidmap/newgidmap) before init is exec'd. A new time namespace (with
    linux.timeOffsets) also makes init fork once, and this process becomes a child
    subreaper so that the returned pid is still its child. A user namespace joined by
    path is joined first and no maps are written; clone then creates no namespace, init
    unshares the new ones after the setns (so that namespace owns them; a new pid
    namespace costs init one fork). Idmapped bind mounts (mounts[].uidMappings/
    gidMappings, options idmap/ridmap) are built detached in this process (open_tree +
    mount_setattr, with the container's user namespace or a throwaway one) and attached
    by init; a config with unknown capability names is accepted (they are ignored).

    On any failure nothing is left behind: the child is killed and reaped, notify.sock
    removed; every mount was made in the child's own mount namespace. The returned pid is
    the caller's child: the caller (or its subreaper, once the caller exits) reaps it.
    """

def start(state_dir: str) -> None:
    """Release the init parked by `create` and return once it has exec'd the program.

    Connects to `<state_dir>/notify.sock` and sends one byte; the init then sets user,
    groups, capabilities, umask and no_new_privs, marks every fd above 3+preserve_fds
    close-on-exec and execs. EOF on the connection means the exec succeeded; otherwise the
    init's error is raised (ExecError for a program that cannot be executed; the init then
    exits 127). notify.sock is removed in both cases, so a second start raises
    SyscallError (ENOENT, or ECONNREFUSED if the init died).
    """

def unknown_capabilities(names: list[str]) -> list[str]:
    """The names in `names` that runh does not know or that the running kernel lacks
    (above /proc/sys/kernel/cap_last_cap), sorted, once each. create ignores them (they
    are left out of every set) and warns "ignoring unknown or unavailable capabilities:
    [A B]", as runc 1.1.5 does."""

def core_features() -> str:
    """The `linux` members of `runh features` that the core decides, as JSON: today
    {"memoryPolicy": {"modes": [...], "flags": [...]}, "netDevices": {"enabled": true}}:
    the MPOL_* names that linux.memoryPolicy takes, and linux.netDevices."""

def lsm_enabled() -> tuple[bool, bool]:
    """(AppArmor enabled, SELinux enabled) in the running kernel: AppArmor's module
    parameter reads Y; selinuxfs is mounted at /sys/fs/selinux and a policy is loaded.
    `features` reports them; create and exec refuse a profile or label otherwise."""

def mount_option_names() -> list[str]:
    """Every mounts[].options name the core takes (runc's names: flags, propagation, the
    recursive mount_setattr ones, idmap/ridmap), sorted: `runh features`' mountOptions."""

def launcher_parse(argv: list[str]) -> tuple[str, str, str] | None:
    """The native call the launcher (rust/launcher/src/args.rs) makes for `runh ARGV...`:
    (kind, root, id), or None when it hands the argv to Python. benches/micro times it."""

def rename_exchange(src: str, dst: str) -> bool:
    """renameat2(src, dst, RENAME_EXCHANGE); False when dst does not exist (nothing done).
    Raises SyscallError otherwise. runh.state.write_atomic's replace of state.json."""

class SdBus:
    """A D-Bus connection through libsystemd's sd-bus (dlopen'ed at first use;
    rust/src/cgroups/sdbus.rs): to a peer's socket (systemd's private one), or with
    hello=True to a bus daemon. OSError (errno) for every failure; values map as
    jeepney's did: a variant is (signature, value), a struct a tuple, ay bytes, a{..} a
    dict."""

    def __init__(self, path: str, timeout: float = 30.0, hello: bool = False) -> None: ...
    def send(self, dest: str, path: str, iface: str, member: str, sig: str | None,
             body: tuple[Any, ...], expect_reply: bool = True) -> int:
        """Send a method call; its cookie (the serial its reply names)."""
    def next(self, timeout: float) -> tuple[str, int, str | None, str | None, str | None, tuple[Any, ...]] | None:
        """The next message within timeout seconds, or None: (kind: "return", "error",
        "signal" or "call", reply_cookie, member, error_name, error_message, body)."""
    def close(self) -> None: ...


def timings() -> list[tuple[str, int]]:
    """The phase marks of the last `create`/`start` in this process, and clears them:
    (phase, CLOCK_MONOTONIC ns at its end), the core's own ("core: ...") and runh-init's
    setup phases ("init: ...", sent back over the sync socket). runh.timing prints them
    for RUNH_TIMING=1 / --debug."""

def exec(
    process: bytes,
    pidfd: int,
    init_pid: int,
    *,
    config: bytes | None = None,
    root: str | None = None,
    console_socket: str | None = None,
    preserve_fds: int = 0,
    fix_listen_pid: bool = False,
    cgroup_dir: str | None = None,
    cgroup_procs: list[str] = [],
    seccomp_state: bytes | None = None,
    frozen: bool = False,
) -> int:
    """Start a process in a running container; return its pid once it has exec'd.

    process: the runtime-spec process JSON (args, env, cwd, user, capabilities, rlimits,
        noNewPrivileges, terminal, consoleSize, oomScoreAdj, scheduler, ioPriority,
        execCPUAffinity: initial once in the cgroup, final just before execve).
    pidfd: a pidfd of the container's init, already checked against its start time by the
        caller; init_pid: its pid. The process joins every namespace of the init that
        differs from the caller's: a user namespace first (then it becomes the
        namespace's root before the user/capability steps), a time namespace too. An
        unprivileged caller (rootless) joins a container's pid namespace from inside its
        user namespace with one more fork, and becomes a child subreaper
        (PR_SET_CHILD_SUBREAPER, for the rest of its life) so the returned pid is still
        its child.
    config: the container's config.json; its linux.seccomp is applied as at create
        (compiled through the cache under `root`), and its linux.personality.
    seccomp_state: the container's runtime-spec state JSON without pid, needed only with
        linux.seccomp.listenerPath: the exec'd process's filter has a listener of its own,
        sent to the agent as at create with pid = the exec'd process's pid.
    console_socket: with process.terminal, where the pty master goes (as for create).
    preserve_fds: fds 3 .. 3+N-1 of the caller are passed on; fix_listen_pid: LISTEN_PID
        in process.env is set to the process's own pid in the container.
    cgroup_dir / cgroup_procs: as for create.

    The caller's pid namespace is joined only for the clone (pid_for_children) and left at
    once; the child execs runh-init (read-only: initexe.rs) before joining anything else.
    The returned pid is the caller's child. Errors as for create/start (ExecError for a
    program that cannot be executed); on failure the child is killed and reaped.
    """

# cgroups (rust/src/cgroups/py.rs) and seccomp (rust/src/seccomp/py.rs) functions are
# declared by their owners below this line.

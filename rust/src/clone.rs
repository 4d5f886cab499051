//! The parent side of `create` and `start`, run in the runh process.
//!
//! create: parse the config, make the sync socketpair, the notify socket and the runh-init
//! memfd, then one clone3 with the CLONE_NEW* flags (and CLONE_INTO_CGROUP when a cgroup
//! v2 dir is given). The child is a copy-on-write image of the Python process: it must not
//! allocate or touch Python objects (every page it writes is copied and charged to the
//! container's memory cgroup, runc #1980), so everything it needs — fd numbers, argv — is
//! prepared before clone, and it only clears CLOEXEC on three fds and execveat()s the
//! memfd. All container setup then happens in runh-init, which reports back on the sync
//! socket.
//!
//! start: connect to `<state_dir>/notify.sock` and send one byte; init answers with an
//! error, or execs, which closes the (CLOEXEC) connection: EOF means success.
use crate::caps;
use crate::error::{Error, Kind, Result};
use crate::namespaces;
use crate::spec::Spec;
use crate::sync::{self, Msg, Plan};
use std::ffi::CString;
use std::os::fd::RawFd;

pub const NOTIFY_SOCK: &str = "notify.sock";

pub struct CreateOptions<'a> {
    pub config: &'a [u8],
    pub bundle: &'a str,
    pub state_dir: &'a str,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    /// LISTEN_FDS was passed: LISTEN_PID becomes the process's pid (sync::Plan).
    pub fix_listen_pid: bool,
    pub console_socket: Option<&'a str>,
    /// `--pidfd-socket`: where a pidfd of the init goes (see `send_pidfd`).
    pub pidfd_socket: Option<&'a str>,
    /// cgroup v2 directory to clone the init straight into.
    pub cgroup_dir: Option<&'a str>,
    /// cgroup.procs files (v1 hierarchies) the init pid is written to before setup.
    pub cgroup_procs: &'a [String],
    /// The state root (`--root`): compiled seccomp filters are cached under it.
    pub root: Option<&'a str>,
    /// The runtime-spec state of the container without its pid, as JSON: sent to the
    /// seccomp agent at `linux.seccomp.listenerPath` (only needed when that is set).
    pub seccomp_state: Option<&'a [u8]>,
    /// Called with the init's pid when init reaches the hooks point (namespaces made,
    /// rootfs mounted, before pivot_root): runs prestart/createRuntime and returns the
    /// state JSON (status "creating") for init's createContainer/startContainer hooks.
    /// None: init does not stop there (no such hooks in the config).
    pub on_hooks: Option<&'a (dyn Fn(i32) -> Result<Vec<u8>> + Sync)>,
    /// Called with the init's pid right after the clone, before the cgroup.procs writes
    /// and the Plan: the systemd cgroup driver starts the container's unit with this pid
    /// (systemd moves the process into it) and writes the limits there, while init waits
    /// for its Plan. A cgroup namespace is then unshared by init, after the move.
    pub on_cloned: Option<&'a (dyn Fn(i32) -> Result<()> + Sync)>,
}

/// fds owned by create (and exec); closed on every path.
#[derive(Default)]
pub(crate) struct Fds(Vec<RawFd>);

impl Fds {
    pub(crate) fn keep(&mut self, fd: RawFd) -> RawFd {
        self.0.push(fd);
        fd
    }
    /// The sync socketpair (parent's end, child's end), both CLOEXEC and owned here.
    pub(crate) fn sync_pair(&mut self) -> Result<(RawFd, RawFd)> {
        let mut sv = [0; 2];
        if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) } < 0 {
            return Err(Error::last_os("create the sync socketpair"));
        }
        Ok((self.keep(sv[0]), self.keep(sv[1])))
    }
    /// Close one of ours early (e.g. the child's ends once it has them).
    pub(crate) fn close(&mut self, fd: RawFd) {
        if fd >= 0 && self.0.contains(&fd) {
            unsafe { libc::close(fd) };
            self.0.retain(|f| *f != fd);
        }
    }
}

impl Drop for Fds {
    fn drop(&mut self) {
        for fd in &self.0 {
            unsafe { libc::close(*fd) };
        }
    }
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::config(format!("path contains a NUL byte: {s:?}")))
}

fn sockaddr(path: &str, what: &str) -> Result<(libc::sockaddr_un, libc::socklen_t)> {
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let b = path.as_bytes();
    if b.len() >= addr.sun_path.len() {
        return Err(Error::from_errno(libc::ENAMETOOLONG, format!("{what} {path}")));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + b.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

fn unix_socket(kind: libc::c_int) -> Result<RawFd> {
    let fd = unsafe { libc::socket(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        Err(Error::last_os("create unix socket"))
    } else {
        Ok(fd)
    }
}

fn connect(fd: RawFd, path: &str, what: &str) -> Result<()> {
    let (addr, len) = sockaddr(path, what)?;
    loop {
        if unsafe { libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len) } == 0 {
            return Ok(());
        }
        let e = Error::last_os(format!("connect to {what} {path}"));
        if e.errno != libc::EINTR {
            return Err(e);
        }
    }
}

/// A new CLOEXEC stream socket connected to `path` (closed again on failure).
pub(crate) fn connect_unix(path: &str, what: &str) -> Result<RawFd> {
    let fd = unix_socket(libc::SOCK_STREAM)?;
    if let Err(e) = connect(fd, path, what) {
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok(fd)
}

/// `--pidfd-socket` (runc 1.2): a pidfd of the new process goes to the AF_UNIX socket at
/// this path, so the caller holds the process itself, with no pid-reuse race. The socket
/// is connected before the process is started (a bad path fails with nothing to undo);
/// the pidfd is sent once the process exists.
pub(crate) fn connect_pidfd_socket(path: Option<&str>, fds: &mut Fds) -> Result<Option<RawFd>> {
    path.map(|p| connect_unix(p, "pidfd socket").map(|fd| fds.keep(fd))).transpose()
}

/// Send a pidfd of `pid` on a socket from `connect_pidfd_socket`; on failure the process
/// is killed and reaped (nobody would hold it).
pub(crate) fn send_pidfd(sock: Option<RawFd>, pid: i32) -> Result<()> {
    let Some(sock) = sock else { return Ok(()) };
    let r = (|| {
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
        if pidfd < 0 {
            return Err(Error::last_os("pidfd_open"));
        }
        let r = crate::tty::send_fd(sock, pidfd, b"pidfd").map_err(|e| Error::from_errno(e.errno, "send the pidfd to the pidfd socket"));
        unsafe { libc::close(pidfd) };
        r
    })();
    if r.is_err() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
        reap(pid);
    }
    r
}

/// Checks that need no process, so a bad config fails before anything is cloned.
fn precheck(spec: &Spec, ns: &namespaces::Plan, opts: &CreateOptions) -> Result<()> {
    let p = spec.process.as_ref().ok_or_else(|| Error::config("process is required to create a container"))?;
    if p.args.is_empty() {
        return Err(Error::config("process.args must not be empty"));
    }
    if let Some(c) = &p.capabilities {
        caps::Sets::from_spec(c)?;
    }
    for r in &p.rlimits {
        crate::process::rlimit_resource(&r.kind).ok_or_else(|| Error::config(format!("unknown rlimit type {:?}", r.kind)))?;
    }
    if spec.hostname.as_deref().is_some_and(|h| !h.is_empty()) && !ns.has(libc::CLONE_NEWUTS) {
        return Err(Error::config("unable to set hostname without a private UTS namespace"));
    }
    if spec.domainname.as_deref().is_some_and(|h| !h.is_empty()) && !ns.has(libc::CLONE_NEWUTS) {
        return Err(Error::config("unable to set domainname without a private UTS namespace"));
    }
    if !ns.has(libc::CLONE_NEWNS) {
        return Err(Error::config("a mount namespace is required (linux.namespaces has no \"mount\")"));
    }
    if p.terminal && opts.console_socket.is_none() {
        return Err(Error::config("process.terminal is true but no console socket was given"));
    }
    if !p.terminal && opts.console_socket.is_some() {
        return Err(Error::config("a console socket was given but process.terminal is false"));
    }
    Ok(())
}

fn rootfs_path(spec: &Spec, bundle: &str) -> Result<String> {
    let root = spec.root.as_ref().map(|r| r.path.as_str()).unwrap_or("");
    if root.is_empty() {
        return Err(Error::config("root.path is required"));
    }
    let joined = if root.starts_with('/') { root.to_string() } else { format!("{}/{}", bundle.trim_end_matches('/'), root) };
    // realpath: R2's rootfs code binds it, and a symlinked rootfs must mean its target.
    std::fs::canonicalize(&joined)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::ENOENT), format!("rootfs {joined}")))
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Everything the child uses, prepared before clone (by create and by exec).
pub(crate) struct ChildPlan {
    pub(crate) memfd: RawFd,
    /// fds the child passes into init: CLOEXEC is cleared on them in the child only.
    pub(crate) pass: [RawFd; 4],
    pub(crate) argv: [*const libc::c_char; 3],
    pub(crate) envp: [*const libc::c_char; 1],
    pub(crate) sync_fd: RawFd,
    /// A new user namespace: wait for the parent's `IdsMapped`, then become its root.
    pub(crate) wait_ids: bool,
}

/// Report a failure on the sync socket in the protocol's encoding, from a stack buffer.
unsafe fn child_fail(sync_fd: RawFd, ctx: &[u8]) -> ! {
    let errno = *libc::__errno_location();
    let mut buf = [0u8; 64];
    let n = 6 + ctx.len().min(58);
    buf[0] = 5; // TAG_ERROR
    buf[1] = 0; // Kind::Syscall
    buf[2..6].copy_from_slice(&errno.to_le_bytes());
    buf[6..n].copy_from_slice(&ctx[..n - 6]);
    libc::send(sync_fd, buf.as_ptr().cast(), n, libc::MSG_NOSIGNAL);
    libc::_exit(127);
}

/// In the child after clone: no allocation, no locks, only async-signal-safe calls.
fn child(c: &ChildPlan) -> ! {
    unsafe {
        if c.wait_ids {
            // Until the maps exist our uid is unmapped here, and an exec by an unmapped
            // uid drops every capability: wait, then become the namespace's root (raw
            // syscalls: glibc's wrappers would try to sync threads this copy lacks).
            let mut b = [0u8; 8];
            let n = libc::recv(c.sync_fd, b.as_mut_ptr().cast(), b.len(), 0);
            if n != 1 || b[0] != sync::IDS_MAPPED {
                libc::_exit(1);
            }
            if libc::syscall(libc::SYS_setresgid, 0, 0, 0) < 0 {
                child_fail(c.sync_fd, b"setresgid 0 in the user namespace");
            }
            if libc::syscall(libc::SYS_setresuid, 0, 0, 0) < 0 {
                child_fail(c.sync_fd, b"setresuid 0 in the user namespace");
            }
        }
        for fd in c.pass {
            if fd >= 0 {
                libc::fcntl(fd, libc::F_SETFD, 0);
            }
        }
        libc::syscall(libc::SYS_execveat, c.memfd, c"".as_ptr(), c.argv.as_ptr(), c.envp.as_ptr(), libc::AT_EMPTY_PATH);
        child_fail(c.sync_fd, b"execveat runh-init");
    }
}

/// clone3 with a fallback to clone(2). Returns (pid, whether CLONE_INTO_CGROUP applied).
/// `what` names the error ("clone the container init").
pub(crate) fn spawn(flags: u64, cgroup_fd: Option<RawFd>, c: &ChildPlan, what: &'static str) -> Result<(libc::pid_t, bool)> {
    // Signals blocked across clone: a handler of Python's must not run in the child
    // (it would write Python's wakeup fd and touch its memory). init unblocks them.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let mut args = CloneArgs { flags, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    let mut into_cgroup = cgroup_fd.is_some();
    let mut pid = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if pid == 0 {
        child(c);
    }
    if pid < 0 {
        let errno = unsafe { *libc::__errno_location() };
        // ENOSYS: pre-5.3 kernel or a seccomp filter (older Docker profiles) that blocks
        // clone3; E2BIG/EINVAL: a kernel without CLONE_INTO_CGROUP (pre-5.7). Then plain
        // clone, fork-like (no CLONE_VM, no new stack), and cgroup placement by writing
        // cgroup.procs instead. Other errors (EBUSY for a cgroup with controllers in
        // the wrong mode, EPERM) are real.
        if matches!(errno, libc::ENOSYS | libc::E2BIG | libc::EINVAL) {
            into_cgroup = false;
            let f = (flags & !(libc::CLONE_NEWCGROUP as u64)) | libc::SIGCHLD as u64;
            pid = unsafe { libc::syscall(libc::SYS_clone, f, 0usize, 0usize, 0usize, 0usize) };
            if pid == 0 {
                child(c);
            }
        }
    }
    let e = if pid < 0 { Some(Error::last_os(what)) } else { None };
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    match e {
        Some(e) => Err(e),
        None => Ok((pid as libc::pid_t, into_cgroup)),
    }
}

pub(crate) fn reap(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || unsafe { *libc::__errno_location() } != libc::EINTR {
            return status;
        }
    }
}

fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status}")
    }
}

/// Create the container: returns the init's pid once it is set up and parked.
/// On failure nothing is left: the child is killed and reaped, notify.sock removed.
pub fn create(opts: &CreateOptions) -> Result<i32> {
    crate::timing::reset();
    crate::timing::mark("core: entered");
    let spec: Spec = sync::parse_config(opts.config)?;
    let ns = namespaces::Plan::from_spec(&spec)?;
    precheck(&spec, &ns, opts)?;
    crate::userns::precheck(&spec)?;
    crate::idmap::precheck(&spec)?;
    crate::procattr::Attrs::from_spec(&spec)?;
    let rootfs = rootfs_path(&spec, opts.bundle)?;
    crate::timing::mark("core: config parse+checks");
    // Compiled here, before anything is cloned: a bad profile fails create at once, and the
    // parent's cache makes the common case one file read (benches/seccomp_bench.py).
    let seccomp = match spec.linux.as_ref().and_then(|l| l.seccomp.as_ref()) {
        Some(v) => Some(crate::seccomp::compile_for_create(v, opts.root.map(std::path::Path::new))?),
        None => None,
    };
    crate::timing::mark("core: seccomp compile/cache");

    let mut fds = Fds::default();
    let (parent_sync, child_sync) = fds.sync_pair()?;

    let notify_path = format!("{}/{}", opts.state_dir.trim_end_matches('/'), NOTIFY_SOCK);
    let notify = fds.keep(unix_socket(libc::SOCK_STREAM)?);
    let (addr, len) = sockaddr(&notify_path, "socket path")?;
    if unsafe { libc::bind(notify, &addr as *const _ as *const libc::sockaddr, len) } < 0 {
        return Err(Error::last_os(format!("bind {notify_path}")));
    }
    let notify_cpath = cstr(&notify_path)?;
    let result = connect_pidfd_socket(opts.pidfd_socket, &mut fds).and_then(|pidfd_socket| {
        let pid = create_bound(opts, &spec, &ns, rootfs, seccomp, &mut fds, parent_sync, child_sync, notify)?;
        send_pidfd(pidfd_socket, pid).map(|_| pid)
    });
    if result.is_err() {
        unsafe { libc::unlink(notify_cpath.as_ptr()) };
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn create_bound(
    opts: &CreateOptions,
    spec: &Spec,
    ns: &namespaces::Plan,
    rootfs: String,
    seccomp: Option<crate::seccomp::Compiled>,
    fds: &mut Fds,
    parent_sync: RawFd,
    child_sync: RawFd,
    notify: RawFd,
) -> Result<i32> {
    if unsafe { libc::listen(notify, 1) } < 0 {
        return Err(Error::last_os("listen on notify.sock"));
    }
    let console = match opts.console_socket {
        Some(path) => {
            let fd = fds.keep(unix_socket(libc::SOCK_STREAM)?);
            connect(fd, path, "console socket")?;
            Some(fd)
        }
        None => None,
    };
    // SCMP_ACT_NOTIFY: connect to the agent now, from the host (see seccomp/notify.rs).
    let seccomp_json = spec.linux.as_ref().and_then(|l| l.seccomp.as_ref());
    let str_field = |k: &str| seccomp_json.and_then(|v| v.get(k)).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    let listener = match &seccomp {
        Some(c) if c.uses_notify => {
            let path = str_field("listenerPath")
                .ok_or_else(|| Error::config("linux.seccomp.listenerPath is required when SCMP_ACT_NOTIFY is used"))?;
            let fd = fds.keep(unix_socket(libc::SOCK_STREAM)?);
            connect(fd, path, "seccomp listenerPath")?;
            Some(fd)
        }
        _ => None,
    };
    crate::timing::mark("core: sockets");
    let memfd = fds.keep(crate::memfd::init_fd()?);
    crate::timing::mark("core: init memfd");

    // fds 0..3+preserve_fds belong to the container; ours go above them, as
    // CLOEXEC copies in the parent that the child alone makes inheritable.
    let base = 3 + opts.preserve_fds.max(0);
    let dup_high = |fd: RawFd| -> Result<RawFd> {
        let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, base) };
        if d < 0 {
            Err(Error::last_os("dup fd for init"))
        } else {
            Ok(d)
        }
    };
    let init_sync = fds.keep(dup_high(child_sync)?);
    let init_notify = fds.keep(dup_high(notify)?);
    let init_console = match console {
        Some(fd) => fds.keep(dup_high(fd)?),
        None => -1,
    };
    let init_listener = match listener {
        Some(fd) => fds.keep(dup_high(fd)?),
        None => -1,
    };
    let cgroup_fd = match opts.cgroup_dir {
        Some(dir) => {
            let c = cstr(dir)?;
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(Error::last_os(format!("open cgroup {dir}")));
            }
            Some(fds.keep(fd))
        }
        None => None,
    };

    let arg0 = c"runh-init";
    let arg1 = CString::new(init_sync.to_string()).unwrap();
    let cp = ChildPlan {
        memfd,
        pass: [init_sync, init_notify, init_console, init_listener],
        argv: [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()],
        envp: [std::ptr::null()],
        sync_fd: init_sync,
        wait_ids: crate::userns::new_userns(spec),
    };
    // A cgroup namespace made by clone is rooted where the child starts: only right when
    // it starts in the container's cgroup. Otherwise init unshares it after placement.
    let wants_cgroupns = ns.clone_flags & libc::CLONE_NEWCGROUP as u64 != 0;
    let mut flags = ns.clone_time_flags();
    if cgroup_fd.is_none() {
        flags &= !(libc::CLONE_NEWCGROUP as u64);
    }
    // A new time namespace (and a new pid namespace with it) is unshared by init, which
    // then forks (userns.rs says why). That fork, like the one into a pid namespace
    // joined by path, orphans the container's init: as a subreaper this process can
    // still reap it (`run` waits for it); `create` exits and it moves on to our parent's.
    let new_time = crate::userns::new_timens(spec);
    if new_time {
        flags &= !((libc::CLONE_NEWPID | 0x80) as u64);
    }
    if ns.init_forks(new_time) {
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    let current = std::cell::Cell::new(0);
    let (pid, into_cgroup) = spawn(flags, cgroup_fd, &cp, "clone the container init")?;
    crate::timing::mark("core: clone3");

    let setup = (|| -> Result<i32> {
        // Close the child's ends now, so that init's exit reads as EOF.
        for fd in [child_sync, init_sync, init_notify, init_console, init_listener] {
            if fd >= 0 {
                unsafe { libc::close(fd) };
                fds.0.retain(|f| *f != fd);
            }
        }
        if let Some(placed) = opts.on_cloned {
            placed(pid)?;
        }
        let mut procs: Vec<String> = opts.cgroup_procs.to_vec();
        if let (Some(dir), false) = (opts.cgroup_dir, into_cgroup) {
            procs.push(format!("{}/cgroup.procs", dir.trim_end_matches('/')));
        }
        for f in &procs {
            std::fs::write(f, pid.to_string())
                .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), format!("add init to {f}")))?;
        }
        if cp.wait_ids {
            crate::userns::write_maps(pid, spec)?;
            sync::send(parent_sync, &Msg::IdsMapped)?;
        }
        // After the maps: an idmapped mount may use the container's user namespace.
        let idmapped = crate::idmap::prepare(spec, opts.bundle, pid)?;
        let plan = Plan {
            rootfs,
            bundle: opts.bundle.to_string(),
            no_pivot: opts.no_pivot,
            no_new_keyring: opts.no_new_keyring,
            preserve_fds: opts.preserve_fds.max(0),
            notify_fd: init_notify,
            console_fd: console.map(|_| init_console),
            unshare_cgroupns: wants_cgroupns && (!into_cgroup || ns.joins_user()),
            config_len: 0,
            hooks_sync: opts.on_hooks.is_some(),
            fix_listen_pid: opts.fix_listen_pid,
            seccomp_len: seccomp.as_ref().map_or(0, |c| c.program.len()),
            seccomp_flags: seccomp.as_ref().map_or(0, |c| c.flags),
            seccomp_listener_fd: listener.map(|_| init_listener),
            seccomp_state: match listener {
                Some(_) => Some(crate::seccomp::notify::process_state(
                    opts.seccomp_state.unwrap_or(b"{}"),
                    pid,
                    str_field("listenerMetadata"),
                )?),
                None => None,
            },
        };
        sync::send_plan(parent_sync, &plan, opts.config)?;
        crate::timing::mark("core: plan sent");
        if let Some(c) = &seccomp {
            sync::send_seccomp(parent_sync, &c.program)?;
        }
        crate::idmap::send(parent_sync, &idmapped)?;
        drop(idmapped);
        let mut init_pid = pid;
        loop {
            match sync::recv(parent_sync)? {
                Some(Msg::Ready) => {
                    crate::timing::mark("core: ready received");
                    return Ok(init_pid);
                }
                Some(Msg::Times(t)) => crate::timing::add_init(&t),
                Some(Msg::Hooks) => {
                    let run = opts.on_hooks.ok_or_else(|| Error::sync("init stopped for hooks that were not asked for"))?;
                    let state = run(init_pid)?;
                    sync::send(parent_sync, &Msg::HooksDone(state))?;
                }
                Some(Msg::Pid(p)) => {
                    // init forked into a pid namespace joined by path; the first child
                    // exits at once and its pid is no longer the container's.
                    reap(pid);
                    init_pid = p;
                    current.set(p);
                }
                Some(other) => return Err(other.into_error("ready")),
                None => {
                    let st = if init_pid == pid { describe_status(reap(pid)) } else { "gone".into() };
                    return Err(Error::sync(format!("container init exited during setup ({st})")));
                }
            }
        }
    })();
    if setup.is_err() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
        reap(pid);
        if current.get() > 0 {
            // The forked init (our child again, through the subreaper).
            unsafe { libc::kill(current.get(), libc::SIGKILL) };
            reap(current.get());
        }
        let _ = spec; // spec is only needed for precheck; kept borrowed for clarity
    }
    setup.map_err(|mut e| {
        if e.kind == Kind::Syscall && e.context.is_empty() {
            e.context = "container init".into();
        }
        e
    })
}

/// Release a parked init: returns once it has exec'd the container's process.
pub fn start(state_dir: &str) -> Result<()> {
    crate::timing::reset();
    let path = format!("{}/{}", state_dir.trim_end_matches('/'), NOTIFY_SOCK);
    let fd = unix_socket(libc::SOCK_STREAM)?;
    let fds = Fds(vec![fd]);
    connect(fd, &path, "container init at")?;
    crate::timing::mark("core: connected to init");
    let go = [1u8];
    if unsafe { libc::send(fd, go.as_ptr().cast(), 1, libc::MSG_NOSIGNAL) } < 0 {
        return Err(Error::last_os("signal container init to start"));
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n == 0 {
            break;
        }
        if n < 0 {
            let e = Error::last_os("wait for container init to exec");
            if e.errno == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        buf.extend_from_slice(&chunk[..n as usize]);
    }
    crate::timing::mark("core: EOF (init exec'd)");
    drop(fds);
    // init closed its listening socket on accept: nothing will listen on this path
    // again, whatever the outcome, so a second start fails with ENOENT.
    if let Ok(c) = CString::new(path) {
        unsafe { libc::unlink(c.as_ptr()) };
    }
    if buf.is_empty() {
        return Ok(());
    }
    Err(Msg::decode(&buf)?.into_error("exec"))
}

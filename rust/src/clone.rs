//! The parent side of `create` and `start`, run in the runh process.
//!
//! create: parse the config, make the sync socketpair, the notify socket and runh-init's
//! exec object (initexe.rs), then one clone3 with the CLONE_NEW* flags (and CLONE_INTO_CGROUP when a cgroup
//! v2 dir is given). The child is a copy-on-write image of the Python process: it must not
//! allocate or touch Python objects (every page it writes is copied and charged to the
//! container's memory cgroup, runc #1980), so everything it needs — fd numbers, argv — is
//! prepared before clone, and it only clears CLOEXEC on three fds and execveat()s
//! runh-init. All container setup then happens in runh-init, which reports back on the sync
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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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
    /// Called with the init's pid as soon as it exists (right after clone, and again when
    /// init forks into a pid namespace joined by path), before anything else is done with
    /// it: the caller records it, so that a runh killed at any later instant leaves a
    /// process `delete` can find. An error tears the child down.
    pub on_pid: Option<&'a (dyn Fn(i32) -> Result<()> + Sync)>,
    /// Called with the init's pid once init has all it needs (plan, seccomp program,
    /// idmapped mounts) and is setting up in its own process, before any message of its
    /// is read: the caller's work that need only be done before init is ready (cgroup
    /// limits, as runc sets them when init reaches its hooks point; the final record
    /// prepared). Done here, it runs on one core while init's exec, namespaces and mounts
    /// run on another, instead of before the clone. An error tears the child down.
    pub on_setup: Option<&'a (dyn Fn(i32) -> Result<()> + Sync)>,
}

use crate::fd::owned;

/// The sync socketpair (parent's end, child's end), both CLOEXEC.
pub(crate) fn sync_pair() -> Result<(OwnedFd, OwnedFd)> {
    let mut sv = [0; 2];
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) } < 0 {
        return Err(Error::last_os("create the sync socketpair"));
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) })
}

/// The fds a clone child passes into runh-init: CLOEXEC copies placed at or above `base`
/// (fds below it are the container's: stdio and the preserved ones), made inheritable by
/// the child alone. The parent's copies close when this is dropped, right after clone.
pub(crate) struct Passed {
    base: RawFd,
    fds: Vec<OwnedFd>,
    /// Their numbers, for the child (which may not allocate) and for the plan.
    pub(crate) raw: Vec<RawFd>,
}

impl Passed {
    pub(crate) fn new(preserve_fds: i32) -> Passed {
        Passed { base: 3 + preserve_fds.max(0), fds: Vec::new(), raw: Vec::new() }
    }
    /// A copy of `fd` for the child; returns its number there.
    pub(crate) fn add(&mut self, fd: BorrowedFd) -> Result<RawFd> {
        let d = owned(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, self.base) }, || "dup an fd for runh-init".into())?;
        let n = d.as_raw_fd();
        self.fds.push(d);
        self.raw.push(n);
        Ok(n)
    }
    pub(crate) fn add_opt(&mut self, fd: Option<&OwnedFd>) -> Result<Option<RawFd>> {
        fd.map(|f| self.add(f.as_fd())).transpose()
    }
}

/// A child of this process, reaped at most once. After `reap` its pid may be anyone's,
/// so `kill` does nothing then: an error path never signals a reused pid.
pub(crate) struct Child {
    pub(crate) pid: libc::pid_t,
    reaped: bool,
}

impl Child {
    pub(crate) fn new(pid: libc::pid_t) -> Child {
        Child { pid, reaped: false }
    }
    /// waitpid once; the status (0 if it was reaped before).
    pub(crate) fn reap(&mut self) -> i32 {
        if self.reaped {
            return 0;
        }
        self.reaped = true;
        reap(self.pid)
    }
    /// SIGKILL and reap, unless already reaped (an unreaped child, even a zombie, still
    /// holds its pid).
    pub(crate) fn kill(&mut self) {
        if !self.reaped {
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            self.reap();
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

/// The AF_UNIX address of `<dir>/<name>`, whatever `dir`'s length. sun_path holds 108
/// bytes, and a state dir under a long `--root` (containerd's
/// `/run/containerd/runc/<namespace>` with a 64-character id) does not fit: such a path
/// goes through `/proc/self/fd/<n>/<name>`, `n` an O_PATH fd of `dir` that `UnixAddr`
/// keeps open until the bind or connect is done. A path that fits is used as is (no
/// extra syscall on the common path).
pub struct UnixAddr {
    addr: libc::sockaddr_un,
    len: libc::socklen_t,
    _dir: Option<OwnedFd>,
}

impl UnixAddr {
    pub fn in_dir(dir: &str, name: &str, what: &str) -> Result<UnixAddr> {
        let path = format!("{}/{name}", dir.trim_end_matches('/'));
        if let Ok((addr, len)) = sockaddr(&path, what) {
            return Ok(UnixAddr { addr, len, _dir: None });
        }
        let c = cstr(dir)?;
        let fd = owned(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) }, || {
            format!("open {what} directory {dir}")
        })?;
        let (addr, len) = sockaddr(&format!("/proc/self/fd/{}/{name}", fd.as_raw_fd()), what)?;
        Ok(UnixAddr { addr, len, _dir: Some(fd) })
    }

    pub fn bind(&self, fd: BorrowedFd) -> libc::c_int {
        unsafe { libc::bind(fd.as_raw_fd(), &self.addr as *const _ as *const libc::sockaddr, self.len) }
    }

    pub fn connect(&self, fd: BorrowedFd) -> libc::c_int {
        unsafe { libc::connect(fd.as_raw_fd(), &self.addr as *const _ as *const libc::sockaddr, self.len) }
    }
}

fn unix_socket(kind: libc::c_int) -> Result<OwnedFd> {
    owned(unsafe { libc::socket(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0) }, || "create unix socket".into())
}

fn connect(fd: BorrowedFd, path: &str, what: &str) -> Result<()> {
    let (addr, len) = sockaddr(path, what)?;
    loop {
        if unsafe { libc::connect(fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, len) } == 0 {
            return Ok(());
        }
        let e = Error::last_os(format!("connect to {what} {path}"));
        if e.errno != libc::EINTR {
            return Err(e);
        }
    }
}

/// A new CLOEXEC stream socket connected to `path`.
pub(crate) fn connect_unix(path: &str, what: &str) -> Result<OwnedFd> {
    let fd = unix_socket(libc::SOCK_STREAM)?;
    connect(fd.as_fd(), path, what)?;
    Ok(fd)
}

/// A directory opened to clone into (CLONE_INTO_CGROUP).
pub(crate) fn open_dir(dir: &str, what: &str) -> Result<OwnedFd> {
    let c = cstr(dir)?;
    owned(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) }, || format!("open {what} {dir}"))
}

/// `--pidfd-socket` (runc 1.2): a pidfd of the new process goes to the AF_UNIX socket at
/// this path, so the caller holds the process itself, with no pid-reuse race. The socket
/// is connected before the process is started (a bad path fails with nothing to undo);
/// the pidfd is sent once the process exists.
pub(crate) fn connect_pidfd_socket(path: Option<&str>) -> Result<Option<OwnedFd>> {
    path.map(|p| connect_unix(p, "pidfd socket")).transpose()
}

/// Send a pidfd of `child` on a socket from `connect_pidfd_socket`; on failure the process
/// is killed and reaped (nobody would hold it).
pub(crate) fn send_pidfd(sock: Option<&OwnedFd>, child: &mut Child) -> Result<()> {
    let Some(sock) = sock else { return Ok(()) };
    let r = owned(unsafe { libc::syscall(libc::SYS_pidfd_open, child.pid, 0) } as libc::c_int, || "pidfd_open".into()).and_then(|pidfd| {
        crate::tty::send_fd(sock.as_raw_fd(), pidfd.as_raw_fd(), b"pidfd")
            .map_err(|e| Error::from_errno(e.errno, "send the pidfd to the pidfd socket"))
    });
    if r.is_err() {
        child.kill();
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
    if !ns.private_mount_ns()? {
        // Runs in runh's mount namespace (runtime-spec: an unlisted type is inherited).
        crate::rootfs::check_shared(spec)?;
    }
    crate::sysctl::precheck(spec, ns)?;
    crate::network::precheck(spec, ns)?;
    crate::lsm::precheck(spec)?;
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
pub(crate) struct ChildPlan<'a> {
    /// runh-init to execveat: the read-only detached bind or the sealed memfd (initexe.rs).
    pub(crate) init_exe: RawFd,
    /// fds the child passes into init (`Passed::raw`): CLOEXEC is cleared in the child only.
    pub(crate) pass: &'a [RawFd],
    pub(crate) argv: [*const libc::c_char; 3],
    pub(crate) envp: [*const libc::c_char; 1],
    pub(crate) sync_fd: RawFd,
    /// A new user namespace: wait for the parent's `IdsMapped`, then become its root.
    pub(crate) wait_ids: bool,
    /// The parent's end of the sync socket (-1: none), closed first in the child: its
    /// copy would keep the socket open, and a child waiting for `IdsMapped` from a parent
    /// that was killed would wait forever instead of reading EOF.
    pub(crate) parent_end: RawFd,
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
        if c.parent_end >= 0 {
            libc::close(c.parent_end);
        }
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
        for &fd in c.pass {
            if fd >= 0 {
                libc::fcntl(fd, libc::F_SETFD, 0);
            }
        }
        libc::syscall(libc::SYS_execveat, c.init_exe, c"".as_ptr(), c.argv.as_ptr(), c.envp.as_ptr(), libc::AT_EMPTY_PATH);
        child_fail(c.sync_fd, b"execveat runh-init");
    }
}

/// The stack of a child that shares our memory until its exec (`clone3_vfork`).
struct VforkStack {
    base: *mut libc::c_void,
    size: usize,
}

impl Drop for VforkStack {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.base, self.size) };
    }
}

/// A stack for a vfork-style clone, when the child may have one: it must not wait for
/// us before its exec (`wait_ids`: the parent writes the maps meanwhile, and a vfork
/// parent is suspended until the exec), and only on x86_64, where the trampoline is.
fn vfork_stack(c: &ChildPlan) -> Option<VforkStack> {
    if c.wait_ids || !cfg!(target_arch = "x86_64") {
        return None;
    }
    const SIZE: usize = 128 * 1024; // the child's frames are small: a few KiB are touched
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    (base != libc::MAP_FAILED).then_some(VforkStack { base, size: SIZE })
}

/// The vfork child's first Rust frame, on its own stack.
extern "C" fn vfork_child(c: *const ChildPlan) -> ! {
    child(unsafe { &*c })
}

/// clone3 with CLONE_VM|CLONE_VFORK: the child runs on `stack` in our address space until
/// its exec, and we resume once it has exec'd (or exited). A fork-like clone copies the
/// page tables of this whole process (the interpreter, ~10 MB resident) and write-protects
/// them: the exec then tears that copy down on init's critical path, and every page this
/// process writes afterwards (refcounts, the allocator) takes a copy-on-write fault, ~3 µs
/// each on this VM; create took ~250 such faults after the clone. The child touches only
/// its stack and, through libc, errno (ours; we are suspended). Signals are blocked.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_vfork(args: &mut CloneArgs, stack: &VforkStack, c: &ChildPlan) -> libc::c_long {
    args.flags |= (libc::CLONE_VM | libc::CLONE_VFORK) as u64;
    args.stack = stack.base as u64;
    args.stack_size = stack.size as u64;
    let ret: libc::c_long;
    // In the child, clone3 returns 0 with the stack pointer at the top of `stack` and every
    // other register as in the parent: r12 and r13 carry the plan and the entry point.
    std::arch::asm!(
        "syscall",
        "test rax, rax",
        "jnz 2f",
        "xor ebp, ebp",
        "and rsp, -16",
        "mov rdi, r12",
        "call r13",
        "ud2",
        "2:",
        inlateout("rax") libc::SYS_clone3 => ret,
        in("rdi") args as *const CloneArgs,
        in("rsi") std::mem::size_of::<CloneArgs>(),
        in("r12") c as *const ChildPlan,
        in("r13") vfork_child as extern "C" fn(*const ChildPlan) -> !,
        lateout("rcx") _,
        lateout("r11") _,
    );
    if ret < 0 {
        *libc::__errno_location() = -ret as i32;
        // Without CLONE_VM|CLONE_VFORK for the fallbacks below.
        args.flags &= !((libc::CLONE_VM | libc::CLONE_VFORK) as u64);
        args.stack = 0;
        args.stack_size = 0;
        return -1;
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_vfork(_: &mut CloneArgs, _: &VforkStack, _: &ChildPlan) -> libc::c_long {
    unreachable!("vfork_stack gives no stack here")
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
    let mut pid = -1;
    if let Some(stack) = vfork_stack(c) {
        pid = unsafe { clone3_vfork(&mut args, &stack, c) };
        drop(stack); // the child has exec'd (or exited): its stack is ours again
    }
    if pid < 0 {
        // No vfork-style clone (or it failed): the fork-like one, then the fallbacks.
        pid = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    }
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

    let notify_path = format!("{}/{}", opts.state_dir.trim_end_matches('/'), NOTIFY_SOCK);
    let notify = unix_socket(libc::SOCK_STREAM)?;
    if UnixAddr::in_dir(opts.state_dir, NOTIFY_SOCK, "socket path")?.bind(notify.as_fd()) < 0 {
        return Err(Error::last_os(format!("bind {notify_path}")));
    }
    let notify_cpath = cstr(&notify_path)?;
    let result = connect_pidfd_socket(opts.pidfd_socket).and_then(|pidfd_socket| {
        let mut init = create_bound(opts, &spec, &ns, rootfs, seccomp, notify)?;
        send_pidfd(pidfd_socket.as_ref(), &mut init).map(|_| init.pid)
    });
    if result.is_err() {
        unsafe { libc::unlink(notify_cpath.as_ptr()) };
    }
    result
}

fn create_bound(
    opts: &CreateOptions,
    spec: &Spec,
    ns: &namespaces::Plan,
    rootfs: String,
    seccomp: Option<crate::seccomp::Compiled>,
    notify: OwnedFd,
) -> Result<Child> {
    if unsafe { libc::listen(notify.as_raw_fd(), 1) } < 0 {
        return Err(Error::last_os("listen on notify.sock"));
    }
    let console = opts.console_socket.map(|path| connect_unix(path, "console socket")).transpose()?;
    // SCMP_ACT_NOTIFY: connect to the agent now, from the host (see seccomp/notify.rs).
    let seccomp_json = spec.linux.as_ref().and_then(|l| l.seccomp.as_ref());
    let listener = crate::seccomp::notify::connect_listener(seccomp.as_ref().is_some_and(|c| c.uses_notify), seccomp_json)?;
    crate::timing::mark("core: sockets");
    let (init_exe, _) = crate::initexe::open(crate::initexe::needs_memfd(spec, None))?;
    crate::timing::mark("core: init exe");

    let (parent_sync, child_sync) = sync_pair()?;
    let mut passed = Passed::new(opts.preserve_fds);
    let init_sync = passed.add(child_sync.as_fd())?;
    drop(child_sync);
    let init_notify = passed.add(notify.as_fd())?;
    drop(notify);
    let init_console = passed.add_opt(console.as_ref())?;
    let init_listener = passed.add_opt(listener.as_ref())?;
    let cgroup_fd = opts.cgroup_dir.map(|dir| open_dir(dir, "cgroup")).transpose()?;

    let arg0 = c"runh-init";
    let arg1 = CString::new(init_sync.to_string()).unwrap();
    // A user namespace init makes itself is mapped later, at its `Msg::UserNs`.
    let wait_ids = crate::userns::new_userns(spec) && !ns.late_userns();
    let cp = ChildPlan {
        init_exe: init_exe.as_raw_fd(),
        pass: &passed.raw,
        argv: [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()],
        envp: [std::ptr::null()],
        sync_fd: init_sync,
        wait_ids,
        parent_end: parent_sync.as_raw_fd(),
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
    // Until it execs runh-init the child's exe is the host's runh (or interpreter). It is
    // then pid 1 of a new, empty pid namespace, or in runh's own: nothing of a container
    // can see it. A pid namespace joined by path is entered by runh-init later, after the
    // exec of runh-init (read-only) and non-dumpable (namespaces::fork_into_pid_namespace).
    let (pid, into_cgroup) = spawn(flags, cgroup_fd.as_ref().map(|f| f.as_raw_fd()), &cp, "clone the container init")?;
    crate::timing::mark("core: clone3");
    // The child has its copies: close ours, so that init's exit reads as EOF.
    drop(passed);
    let mut first = Child::new(pid);
    // The container's init: the clone child, or its fork (`Msg::Pid`).
    let mut forked: Option<Child> = None;

    let setup = (|| -> Result<()> {
        if let Some(f) = opts.on_pid {
            f(pid)?;
        }
        let mut procs: Vec<String> = opts.cgroup_procs.to_vec();
        if let (Some(dir), false) = (opts.cgroup_dir, into_cgroup) {
            procs.push(format!("{}/cgroup.procs", dir.trim_end_matches('/')));
        }
        for f in &procs {
            std::fs::write(f, pid.to_string())
                .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), format!("add init to {f}")))?;
        }
        // After the maps: an idmapped mount may use the container's user namespace, and
        // net devices move into the network namespace it owns.
        let after_maps = || -> Result<_> {
            let idmapped = crate::idmap::prepare(spec, opts.bundle, pid)?;
            move_net_devices(spec, ns, pid)?;
            Ok(idmapped)
        };
        let mut idmapped = None;
        if !ns.late_userns() {
            if wait_ids {
                crate::userns::write_maps(pid, spec)?;
                sync::send(parent_sync.as_raw_fd(), &Msg::IdsMapped)?;
            }
            idmapped = Some(after_maps()?);
        }
        let plan = Plan {
            rootfs,
            bundle: opts.bundle.to_string(),
            no_pivot: opts.no_pivot,
            no_new_keyring: opts.no_new_keyring,
            preserve_fds: opts.preserve_fds.max(0),
            notify_fd: init_notify,
            console_fd: init_console,
            unshare_cgroupns: wants_cgroupns && (!into_cgroup || ns.init_unshares()),
            config_len: 0,
            hooks_sync: opts.on_hooks.is_some(),
            fix_listen_pid: opts.fix_listen_pid,
            seccomp_len: seccomp.as_ref().map_or(0, |c| c.program.len()),
            seccomp_flags: seccomp.as_ref().map_or(0, |c| c.flags),
            seccomp_listener_fd: init_listener,
            seccomp_state: match listener {
                Some(_) => Some(crate::seccomp::notify::process_state(
                    opts.seccomp_state.unwrap_or(b"{}"),
                    pid,
                    crate::seccomp::notify::field(seccomp_json, "listenerMetadata"),
                )?),
                None => None,
            },
            cgroup2_bind: cgroup2_bind(spec, pid),
        };
        let sync_fd = parent_sync.as_raw_fd();
        sync::send_plan(sync_fd, &plan, opts.config)?;
        crate::timing::mark("core: plan sent");
        sync::send_seccomp(sync_fd, seccomp.as_ref().map_or(&[][..], |c| &c.program))?;
        if ns.late_userns() {
            // init has joined the paths and made the user namespace (namespaces.rs).
            match sync::recv(sync_fd)? {
                Some(Msg::UserNs) => {}
                Some(other) => return Err(other.into_error("user namespace made")),
                None => return Err(Error::sync(format!("container init exited during setup ({})", describe_status(first.reap())))),
            }
            crate::userns::write_maps(pid, spec)?;
            idmapped = Some(after_maps()?);
            sync::send(sync_fd, &Msg::IdsMapped)?;
        }
        let idmapped = idmapped.unwrap_or_default();
        crate::idmap::send(sync_fd, &idmapped)?;
        drop(idmapped);
        if let Some(f) = opts.on_setup {
            f(pid)?;
            crate::timing::mark("core: on_setup done");
        }
        // Closing the detached bind's fd dissolves the mount, and the kernel then waits
        // for an expedited RCU grace period before close returns (namespace_unlock): a
        // sleep, up to ~0.5 ms a create with eight at once here (sched_switch profile).
        // Paid now, it overlaps init's mounts, which this process waits for next; at the
        // end of `create` it lay between Ready and the state write. init has its own
        // reference through the exec, so the file it runs from is unaffected.
        drop(init_exe);
        loop {
            let init_pid = forked.as_ref().map_or(pid, |c| c.pid);
            match sync::recv(sync_fd)? {
                Some(Msg::Ready) => {
                    crate::timing::mark("core: ready received");
                    return Ok(());
                }
                Some(Msg::Times(t)) => crate::timing::add_init(&t),
                Some(Msg::Hooks) => {
                    let run = opts.on_hooks.ok_or_else(|| Error::sync("init stopped for hooks that were not asked for"))?;
                    let state = run(init_pid)?;
                    sync::send(sync_fd, &Msg::HooksDone(state))?;
                }
                Some(Msg::MountSource(i)) => {
                    // A bind source init may not open: ours, by index (mounts.rs).
                    match crate::mounts::host_source(spec, opts.bundle, i, init_pid) {
                        Ok(fd) => crate::tty::send_fd(sync_fd, fd.as_raw_fd(), b"mount source")?,
                        Err(e) => sync::send(sync_fd, &Msg::from_error(&e))?,
                    }
                }
                Some(Msg::Pid(p)) if forked.is_none() => {
                    // init forked into a pid namespace joined by path; the first child
                    // exits at once. Reaped here, so its pid is never signalled again
                    // (`Child`), and the new one is recorded before anything else.
                    first.reap();
                    forked = Some(Child::new(p));
                    if let Some(f) = opts.on_pid {
                        f(p)?;
                    }
                }
                Some(other) => return Err(other.into_error("ready")),
                None => {
                    let st = if forked.is_none() { describe_status(first.reap()) } else { "gone".into() };
                    return Err(Error::sync(format!("container init exited during setup ({st})")));
                }
            }
        }
    })();
    match setup {
        Ok(()) => Ok(forked.unwrap_or(first)),
        Err(mut e) => {
            first.kill();
            if let Some(mut c) = forked {
                c.kill(); // our child again, through the subreaper
            }
            if e.kind == Kind::Syscall && e.context.is_empty() {
                e.context = "container init".into();
            }
            Err(e)
        }
    }
}

/// linux.netDevices into the container's network namespace, once it exists: the one
/// clone made, or the one init will join by path (network.rs; the precheck refused the
/// case where init itself makes it later).
fn move_net_devices(spec: &Spec, ns: &namespaces::Plan, pid: libc::pid_t) -> Result<()> {
    if spec.linux.as_ref().and_then(|l| l.net_devices.as_ref()).is_none() {
        return Ok(());
    }
    let path = match ns.join.iter().find(|(f, _)| *f == libc::CLONE_NEWNET) {
        Some((_, p)) => p.clone(),
        None => format!("/proc/{pid}/ns/net"),
    };
    let c = cstr(&path)?;
    let fd = owned(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }, || format!("open the network namespace {path}"))?;
    crate::network::move_devices(spec, fd.as_raw_fd())
}

/// Where a "cgroup" mount binds from when the kernel refuses a cgroup2 mount (mounts.rs):
/// the container's own cgroup, read here, in runh's cgroup namespace, from the placed
/// child. Init cannot find it itself: in a cgroup namespace of its own it reads "0::/",
/// which would be the whole host hierarchy. None off cgroup v2, or with no such mount.
fn cgroup2_bind(spec: &Spec, pid: libc::pid_t) -> Option<String> {
    if !spec.mounts.iter().any(|m| m.kind.as_deref() == Some("cgroup")) || !crate::mounts::host_is_cgroup2() {
        return None;
    }
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(format!("/sys/fs/cgroup{}", path.trim_end_matches('/')))
}

/// Release a parked init: returns once it has exec'd the container's process.
/// The context of every error of start's own handshake (connect, send, read), as opposed
/// to an error init reports after it took the byte (its own context: the field it could
/// not apply, with whatever errno that had, ENOENT for an unloaded AppArmor profile).
pub const START_HANDSHAKE: &str = "start handshake: ";

/// Whether a `start` error says that init was not there to take our byte (refused, gone,
/// or reset with it unread): another start may have got there first, and the caller words
/// what the container is now. Never true of an error init reported.
pub fn start_refused(e: &Error) -> bool {
    matches!(e.errno, libc::ENOENT | libc::EPIPE | libc::ECONNRESET | libc::ECONNREFUSED)
        && e.context.starts_with(START_HANDSHAKE)
}

pub fn start(state_dir: &str) -> Result<()> {
    crate::timing::reset();
    let path = format!("{}/{}", state_dir.trim_end_matches('/'), NOTIFY_SOCK);
    let conn = unix_socket(libc::SOCK_STREAM)?;
    let fd = conn.as_raw_fd();
    let addr = UnixAddr::in_dir(state_dir, NOTIFY_SOCK, "container init at")?;
    while addr.connect(conn.as_fd()) < 0 {
        let e = Error::last_os(format!("{START_HANDSHAKE}connect to container init at {path}"));
        if e.errno != libc::EINTR {
            return Err(e);
        }
    }
    crate::timing::mark("core: connected to init");
    let go = [1u8];
    if unsafe { libc::send(fd, go.as_ptr().cast(), 1, libc::MSG_NOSIGNAL) } < 0 {
        return Err(Error::last_os(format!("{START_HANDSHAKE}signal container init to start")));
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n == 0 {
            break;
        }
        if n < 0 {
            let e = Error::last_os(format!("{START_HANDSHAKE}wait for container init to exec"));
            if e.errno == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        buf.extend_from_slice(&chunk[..n as usize]);
    }
    crate::timing::mark("core: EOF (init exec'd)");
    drop(conn);
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

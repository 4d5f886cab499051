//! `runh exec`: one more process in a running container.
//!
//! How the new process enters the container, and why (runc's order, issue 17 item 2 and
//! the CVE-2019-5736 class):
//! - The child is cloned in runh's own namespaces, into the container's cgroup
//!   (clone3(CLONE_INTO_CGROUP), or the v1 cgroup.procs written by the parent before the
//!   plan), and at once execs runh-init, read-only (initexe.rs), ("runh-exec" mode), which
//!   makes itself non-dumpable. Until that exec its exe is the host's runh launcher or
//!   interpreter, so no process of the container may see it: it is in no namespace of
//!   the container yet.
//! - runh-exec joins every namespace the init has and runh lacks with one
//!   setns(pidfd, flags) (5.8+; before that, /proc/<pid>/ns/* files, user first, mount
//!   last), pid included: setns(CLONE_NEWPID) only sets the namespace of its future
//!   children. With a user namespace the kernel joins it first and checks the others with
//!   the new credentials; the child then becomes its root (setresuid 0), as runc's exec
//!   does. A time namespace joined by setns applies to the caller itself.
//! - Only then, with the container's root, cwd and mounts and no host fd but its own
//!   sync, console and listener sockets, does it fork once into the pid namespace: that
//!   fork is the process, the first one reports its pid (`Msg::Pid`) and exits. runh is a
//!   child subreaper, so the process is still its child to wait for. The fork (of the
//!   small static runh-init) is the price of never being visible in the container as a
//!   host process; measured here, 80 interleaved native `exec ID true` each (2 busy
//!   cores): min 4.44 -> 4.48 ms, p10 5.77 -> 5.87 ms, i.e. about 0.1 ms.
//! - Non-dumpable from runh-init's first instruction to the final execve: a container
//!   process cannot ptrace it, nor open its /proc/<pid>/{exe,root,cwd,fd} (the kernel
//!   requires CAP_SYS_PTRACE in the namespace where runh-init was exec'd, the host's).
//!
use crate::error::{Error, Kind, Result};
use crate::spec::Process;
use crate::sync::{self, Msg};
use crate::{caps, procattr, process, tty, userns};
use serde::{Deserialize, Serialize};
use crate::fd::adopt;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// argv[0] with which the runh process execs runh-init for an exec (create uses "runh-init").
pub const EXEC_ARGV0: &str = "runh-exec";

/// What the parent tells runh-init in exec mode.
#[derive(Debug, Default, Serialize, Deserialize, Clone)]
pub struct ExecPlan {
    /// A pidfd of the container's init (inherited): the namespaces to join are its.
    pub pidfd: RawFd,
    /// The init's pid in runh's pid namespace (for the /proc/<pid>/ns fallback).
    pub init_pid: i32,
    /// CLONE_NEW* of the init's namespaces that differ from runh's, pid included: with
    /// CLONE_NEWPID the process is a fork made after every other namespace is joined.
    pub ns_flags: i32,
    /// A connected console socket, when process.terminal is set.
    pub console_fd: Option<RawFd>,
    /// fds 3 .. 3+preserve_fds stay open in the process (LISTEN_FDS included).
    pub preserve_fds: i32,
    /// The caller passed LISTEN_FDS: LISTEN_PID is set to the process's own pid.
    pub fix_listen_pid: bool,
    pub process_len: usize,
    pub seccomp_len: usize,
    pub seccomp_flags: u32,
    /// The container's linux.personality: exec'd processes get it too (runc does so).
    #[serde(default)]
    pub personality: Option<serde_json::Value>,
    /// The container's linux.memoryPolicy: exec'd processes get it too (runc does so).
    #[serde(default)]
    pub memory_policy: Option<serde_json::Value>,
    /// SCMP_ACT_NOTIFY: a socket the parent connected to linux.seccomp.listenerPath (a
    /// host path, out of reach once the mount namespace is joined) and the process state
    /// JSON to send on it with this process's own listener fd. With CLONE_NEWPID the state
    /// (it holds the pid) comes after `Msg::Pid`, as one more `Msg::Plan`.
    #[serde(default)]
    pub seccomp_listener_fd: Option<RawFd>,
    #[serde(default)]
    pub seccomp_state: Option<String>,
    /// A frozen (paused) container: cgroup.procs files the parent opened, which the
    /// process writes itself into right after `Ready`, before any step of its own (a
    /// child cloned into the frozen cgroup could not report; one joined after its execve
    /// would run its first steps outside the freezer and the limits).
    #[serde(default)]
    pub cgroup_procs_fds: Vec<RawFd>,
}

/// Namespace types joined by exec, with their /proc/<pid>/ns names, in the order of the
/// pre-5.8 fallback: user first (its capabilities allow the rest), mount last (it changes
/// what later paths mean). pid only sets where the process is forked.
pub const NS_ORDER: [(libc::c_int, &str); 8] = [
    (libc::CLONE_NEWUSER, "user"),
    (0x80, "time"), // CLONE_NEWTIME
    (libc::CLONE_NEWIPC, "ipc"),
    (libc::CLONE_NEWUTS, "uts"),
    (libc::CLONE_NEWNET, "net"),
    (libc::CLONE_NEWCGROUP, "cgroup"),
    (libc::CLONE_NEWPID, "pid"),
    (libc::CLONE_NEWNS, "mnt"),
];

/// Parse and check a process JSON (what `runh exec --process` reads).
pub fn parse_process(b: &[u8]) -> Result<Process> {
    let p: Process = serde_json::from_slice(b).map_err(|e| Error::config(format!("invalid process: {e}")))?;
    if p.args.is_empty() {
        return Err(Error::config("invalid process: args must not be empty"));
    }
    if p.cwd.is_empty() || !p.cwd.starts_with('/') {
        return Err(Error::config(format!("invalid process: cwd {:?} is not an absolute path", p.cwd)));
    }
    // runc refuses it too: no variable to set (and execve would pass it on as it is).
    if let Some(e) = p.env.iter().find(|e| !e.contains('=')) {
        return Err(Error::config(format!("invalid process: env entry {e:?} is not KEY=VALUE")));
    }
    if let Some(c) = &p.capabilities {
        caps::Sets::from_spec(c)?;
    }
    for r in &p.rlimits {
        process::rlimit_resource(&r.kind).ok_or_else(|| Error::config(format!("invalid process: unknown rlimit type {:?}", r.kind)))?;
    }
    Ok(p)
}

/// What the `runh exec` flags change in the container's config.json process, when no
/// `--process` file is given (runc's getProcess).
#[derive(Debug, Default, Clone)]
pub struct ProcessFlags {
    /// The command: replaces process.args.
    pub args: Vec<String>,
    pub terminal: bool,
    /// (height, width) of the caller's terminal for a foreground `-t` (the pty proxy).
    pub console_size: Option<(u32, u32)>,
    pub cwd: Option<String>,
    /// Appended to process.env.
    pub env: Vec<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Appended to process.user.additionalGids.
    pub additional_gids: Vec<u32>,
    /// `--cap` names, with or without the CAP_ prefix, any case.
    pub caps: Vec<String>,
    pub no_new_privileges: bool,
    pub apparmor: Option<String>,
    pub selinux_label: Option<String>,
}

/// The process JSON for `runh exec ID ARGS…`: the container's config.json process with the
/// flags applied. The one implementation of this rule: the Python CLI calls it through
/// `_core.exec_process`, the native launcher directly. Fields runh does not know are kept.
pub fn process_from_config(config: &[u8], f: &ProcessFlags) -> Result<Vec<u8>> {
    use serde_json::{json, Map, Value};
    let bad = |e: String| Error::config(format!("cannot read the container's config.json: {e}"));
    let config: Value = serde_json::from_slice(config).map_err(|e| bad(e.to_string()))?;
    let mut p = match config.get("process") {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err(bad("process is not an object".into())),
    };
    p.insert("args".into(), json!(f.args));
    p.insert("terminal".into(), json!(f.terminal));
    p.remove("consoleSize");
    if let Some((height, width)) = f.console_size {
        p.insert("consoleSize".into(), json!({"height": height, "width": width}));
    }
    if let Some(cwd) = &f.cwd {
        p.insert("cwd".into(), json!(cwd));
    }
    p.entry("cwd").or_insert_with(|| json!("/"));
    // Appends to a list field, treating a missing or null one as empty.
    fn extend(m: &mut Map<String, Value>, key: &str, more: impl IntoIterator<Item = Value>) {
        let v = m.entry(key).or_insert_with(|| json!([]));
        if !v.is_array() {
            *v = json!([]);
        }
        v.as_array_mut().unwrap().extend(more);
    }
    if !f.env.is_empty() {
        extend(&mut p, "env", f.env.iter().map(|e| json!(e)));
    }
    if f.uid.is_some() || f.gid.is_some() || !f.additional_gids.is_empty() {
        let user = p.entry("user").or_insert_with(|| json!({}));
        if !user.is_object() {
            *user = json!({});
        }
        let user = user.as_object_mut().unwrap();
        if let Some(uid) = f.uid {
            user.insert("uid".into(), json!(uid));
        }
        if let Some(gid) = f.gid {
            user.insert("gid".into(), json!(gid));
        }
        if !f.additional_gids.is_empty() {
            extend(user, "additionalGids", f.additional_gids.iter().map(|g| json!(g)));
        }
    }
    if !f.caps.is_empty() {
        // As runc (checked against 1.1.5 by tests/test_exec_runc_diff.py): the cap joins
        // the bounding, effective and permitted sets, and the ambient set only when the
        // process has inheritable caps (ambient needs inheritable); never inheritable.
        let names: Vec<Value> = f
            .caps
            .iter()
            .map(|n| {
                let n = n.to_uppercase();
                json!(if n.starts_with("CAP_") { n } else { format!("CAP_{n}") })
            })
            .collect();
        let c = p.entry("capabilities").or_insert_with(|| json!({}));
        if !c.is_object() {
            *c = json!({});
        }
        let c = c.as_object_mut().unwrap();
        let inheritable = c.get("inheritable").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        for set in ["bounding", "effective", "permitted"].into_iter().chain(inheritable.then_some("ambient")) {
            extend(c, set, names.iter().cloned());
        }
    }
    if f.no_new_privileges {
        p.insert("noNewPrivileges".into(), json!(true));
    }
    if let Some(a) = &f.apparmor {
        p.insert("apparmorProfile".into(), json!(a));
    }
    if let Some(l) = &f.selinux_label {
        p.insert("selinuxLabel".into(), json!(l));
    }
    serde_json::to_vec(&Value::Object(p)).map_err(|e| Error::config(format!("encode process: {e}")))
}

// ---------------------------------------------------------------------------------------
// runh-init side ("runh-exec" mode)

/// Everything decided before `Ready`; the rest of the steps cannot be reported reliably
/// once seccomp is loaded (a filter may forbid sendmsg).
struct Prepared {
    preserve_fds: i32,
    user: crate::spec::User,
    caps: caps::Sets,
    no_new_privileges: bool,
    seccomp: Vec<u8>,
    seccomp_flags: u32,
    /// The connected listenerPath socket and the state sent on it (SCMP_ACT_NOTIFY).
    listener: Option<(RawFd, String)>,
    /// `ExecPlan::cgroup_procs_fds`, owned.
    cgroup_procs: Vec<OwnedFd>,
    attrs: procattr::Attrs,
    lsm: crate::lsm::ExecAttrs,
    exec: process::Exec,
}

/// Join the init's namespaces (`plan.ns_flags`), pid for the children to come.
fn join_namespaces(plan: &ExecPlan, pidfd: &OwnedFd) -> Result<()> {
    if plan.ns_flags == 0 {
        return Ok(());
    }
    if unsafe { libc::setns(pidfd.as_raw_fd(), plan.ns_flags) } == 0 {
        return Ok(());
    }
    let e = Error::last_os("join the container's namespaces");
    if e.errno != libc::EINVAL {
        return Err(e);
    }
    // Before 5.8 setns takes no pidfd (EINVAL, issue 17 item 8): the init's namespace
    // files, all opened first (the paths are this, the host's, /proc), then checked
    // against the pidfd (the pid is still the init's), then joined in NS_ORDER. Each file
    // is of the type its name says, so setns is asked for no type check (nstype 0).
    let mut files = Vec::new();
    for (f, name) in NS_ORDER {
        if plan.ns_flags & f != 0 {
            let p = std::ffi::CString::new(format!("/proc/{}/ns/{name}", plan.init_pid)).unwrap();
            let fd = crate::fd::owned(unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }, || {
                format!("open {}", p.to_string_lossy())
            })?;
            files.push((fd, name));
        }
    }
    if unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), 0, 0usize, 0) } < 0 {
        return Err(Error::last_os("the container's init is gone"));
    }
    for (fd, name) in files {
        if unsafe { libc::setns(fd.as_raw_fd(), 0) } < 0 {
            return Err(Error::last_os(format!("join the container's {name} namespace")));
        }
    }
    Ok(())
}

/// The init's root directory (/proc/<pid>/root), for a container that shares runh's
/// mount namespace.
fn init_root(plan: &ExecPlan, pidfd: &OwnedFd) -> Result<OwnedFd> {
    let p = std::ffi::CString::new(format!("/proc/{}/root", plan.init_pid)).unwrap();
    let fd = crate::fd::owned(unsafe { libc::open(p.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) }, || {
        "open the container's root".into()
    })?;
    if unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), 0, 0usize, 0) } < 0 {
        return Err(Error::last_os("the container's init is gone"));
    }
    Ok(fd)
}

fn prepare(sync_fd: RawFd) -> Result<Prepared> {
    let plan: ExecPlan = match sync::recv(sync_fd)? {
        Some(Msg::Plan(b)) => serde_json::from_slice(&b).map_err(|e| Error::sync(format!("decode exec plan: {e}")))?,
        Some(other) => return Err(other.into_error("exec plan")),
        None => return Err(Error::sync("parent closed the sync socket before sending the exec plan")),
    };
    let pidfd = adopt(plan.pidfd);
    let console = plan.console_fd.map(adopt);
    let listener = plan.seccomp_listener_fd.map(adopt);
    let cgroup_procs: Vec<OwnedFd> = plan.cgroup_procs_fds.iter().map(|&fd| adopt(fd)).collect();
    let mut payload = match sync::recv(sync_fd)? {
        Some(Msg::Config(b)) if b.len() == plan.process_len + plan.seccomp_len => b,
        Some(Msg::Config(_)) => return Err(Error::sync("the process and seccomp program are not of the announced size")),
        Some(other) => return Err(other.into_error("process")),
        None => return Err(Error::sync("parent closed the sync socket while sending the process")),
    };
    let seccomp = payload.split_off(plan.process_len);
    let mut p = parse_process(&payload)?;
    drop(payload);
    // Checked before anything is joined, so a bad value fails the exec cleanly. The
    // initial CPU affinity goes on at once: the process is already in the container's
    // cgroup (clone3 into it, or the parent wrote cgroup.procs before sending the plan),
    // whose cpuset would otherwise narrow a mask set earlier.
    let attrs = procattr::Attrs::from_parts(Some(&p), plan.personality.as_ref(), plan.memory_policy.as_ref())?;
    attrs.apply_initial()?;
    // Before the user namespace is joined: lowering oom_score_adj and raising a hard
    // rlimit need CAP_SYS_RESOURCE in the initial user namespace (runc sets both from the
    // parent for the same reason). Both survive setns, fork and execve.
    if let Some(v) = p.oom_score_adj {
        process::set_oom_score_adj(v)?;
    }
    process::set_rlimits(&p.rlimits)?;

    // A container without a mount namespace of its own shares runh's: its root is the
    // init's chroot, which no setns gives. Opened now, with host privileges, and checked
    // against the pidfd (the pid is still the init's); entered once joined.
    let root = if plan.ns_flags & libc::CLONE_NEWNS == 0 { Some(init_root(&plan, &pidfd)?) } else { None };
    join_namespaces(&plan, &pidfd)?;
    drop(pidfd);
    if plan.ns_flags & libc::CLONE_NEWUSER != 0 {
        // setns into the user namespace gave every capability in it, but this process's
        // uid is still the host's, unmapped there: become the namespace's root (as runc's
        // exec does) so the user and capability steps below start from root.
        userns::become_root()?;
    }
    if let Some(root) = root {
        if unsafe { libc::fchdir(root.as_raw_fd()) } != 0 || unsafe { libc::chroot(c".".as_ptr()) } != 0 {
            return Err(Error::last_os("enter the container's root (chroot)"));
        }
    }
    let mut seccomp_state = plan.seccomp_state;
    if plan.ns_flags & libc::CLONE_NEWPID != 0 {
        // Every other namespace is joined: only now may the container see this process.
        crate::namespaces::fork_into_pid_namespace(sync_fd, "the container's pid namespace")?;
        if listener.is_some() {
            seccomp_state = match sync::recv(sync_fd)? {
                Some(Msg::Plan(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                Some(other) => return Err(other.into_error("seccomp listener state")),
                None => return Err(Error::sync("parent closed the sync socket before the listener state")),
            };
        }
    }
    // A session of its own, as for the init: no controlling terminal shared with runh.
    if unsafe { libc::setsid() } < 0 {
        return Err(Error::last_os("setsid"));
    }
    if p.terminal {
        let fd = console.as_ref().ok_or_else(|| Error::config("process.terminal is true but no console socket was given"))?;
        // After the mount namespace: /dev/ptmx is the container's, the pty its devpts's.
        tty::setup_console(fd.as_raw_fd(), p.console_size)?;
    }
    drop(console);
    if plan.fix_listen_pid {
        // runc writes LISTEN_PID=1; the process's real pid in the container is known here
        // (execve keeps it), so sd_listen_fds() in an exec'd process accepts the fds too.
        let me = format!("LISTEN_PID={}", unsafe { libc::getpid() });
        p.env.retain(|e| !e.starts_with("LISTEN_PID="));
        p.env.push(me);
    }
    set_default_home(&mut p.env, p.user.uid);
    process::enter_cwd(&p.cwd, false)?;
    let exec = process::Exec::prepare(&p)?;
    let caps = caps::Sets::of_process(&p)?;
    attrs.apply_mempolicy()?;
    Ok(Prepared {
        preserve_fds: plan.preserve_fds,
        user: p.user.clone(),
        caps,
        no_new_privileges: p.no_new_privileges,
        seccomp,
        seccomp_flags: plan.seccomp_flags,
        // Kept open (not owned here) until the filter is loaded: notify.rs sends on it.
        listener: listener.map(|l| std::os::fd::IntoRawFd::into_raw_fd(l)).zip(seccomp_state),
        cgroup_procs,
        attrs,
        lsm: crate::lsm::ExecAttrs::of_process(&p),
        exec,
    })
}

/// HOME as runc sets it when process.env has none: the user's home directory from the
/// container's /etc/passwd (read after joining its mount namespace), else "/".
pub fn set_default_home(env: &mut Vec<String>, uid: u32) {
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return;
    }
    let home = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into());
    env.push(format!("HOME={home}"));
}

/// `set_default_home` for the init's prepared program (create), after pivot_root.
pub fn add_default_home(exec: &mut process::Exec, uid: u32) {
    if exec.envp.iter().any(|e| e.as_bytes().starts_with(b"HOME=")) {
        return;
    }
    let mut env = Vec::new();
    set_default_home(&mut env, uid);
    if let Some(h) = env.pop().and_then(|h| std::ffi::CString::new(h).ok()) {
        exec.envp.push(h);
    }
}

/// LISTEN_PID=<own pid> in the init's prepared program (create/run with LISTEN_FDS).
pub fn set_listen_pid(exec: &mut process::Exec) {
    exec.envp.retain(|e| !e.as_bytes().starts_with(b"LISTEN_PID="));
    if let Ok(v) = std::ffi::CString::new(format!("LISTEN_PID={}", unsafe { libc::getpid() })) {
        exec.envp.push(v);
    }
}

/// The container's filter, as the init loaded it. With SCMP_ACT_NOTIFY the new filter
/// has a listener of its own (the init's does not see this process's calls): it goes to
/// the agent at listenerPath with this process's state, as runc does for exec.
fn load_seccomp(p: &Prepared) -> Result<()> {
    if p.seccomp.is_empty() {
        return Ok(());
    }
    crate::seccomp::notify::load_and_hand_over(&p.seccomp, p.seccomp_flags, p.listener.as_ref())
}

/// The same final steps, in the same order, as the init's after `start`.
fn finish(p: &Prepared) -> Error {
    let f = process::Final {
        attrs: &p.attrs,
        caps: &p.caps,
        user: &p.user,
        no_new_privileges: p.no_new_privileges,
        preserve_fds: p.preserve_fds,
        lsm: &p.lsm,
    };
    match process::finish(&f, || load_seccomp(p)) {
        Err(e) => e,
        Ok(()) => p.exec.exec(),
    }
}

/// runh-init's main in exec mode: join, set up, execve. Never returns.
pub fn init_main(sync_fd: RawFd) -> ! {
    let mut prepared = match prepare(sync_fd) {
        Ok(p) => p,
        Err(e) => {
            let _ = sync::send(sync_fd, &Msg::from_error(&e));
            std::process::exit(1);
        }
    };
    if sync::send(sync_fd, &Msg::Ready).is_err() {
        std::process::exit(1);
    }
    // A paused container: join its cgroup now, before any step of the process's own; it
    // freezes here until `resume` (the parent returned at `Ready`).
    for fd in prepared.cgroup_procs.drain(..) {
        if unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
            let e = Error::last_os("join the paused container's cgroup");
            let _ = sync::send(sync_fd, &Msg::from_error(&e));
            std::process::exit(1);
        }
    }
    let e = finish(&prepared);
    let _ = sync::send(sync_fd, &Msg::from_error(&e));
    std::process::exit(if e.kind == Kind::Exec { 127 } else { 1 });
}

// ---------------------------------------------------------------------------------------
// runh side

#[cfg(feature = "host")]
pub use parent::{exec, ExecOptions};

#[cfg(feature = "host")]
mod parent {
    use super::*;
    use crate::clone::{self, connect_unix, open_dir, sync_pair, ChildPlan, Child, Passed};
    use std::ffi::CString;
    use std::os::fd::{AsFd, BorrowedFd};

    pub struct ExecOptions<'a> {
        /// The process JSON (runtime-spec `process`).
        pub process: &'a [u8],
        /// The container's config.json, for `linux.seccomp` (None: no filter).
        pub config: Option<&'a [u8]>,
        /// A pidfd of the container's init, checked by the caller against its start time.
        pub pidfd: RawFd,
        pub init_pid: i32,
        /// The state root: compiled seccomp filters are cached under it.
        pub root: Option<&'a str>,
        pub console_socket: Option<&'a str>,
        /// `--pidfd-socket`: where a pidfd of the process goes (clone::send_pidfd).
        pub pidfd_socket: Option<&'a str>,
        /// fds 3.. of the caller passed through (LISTEN_FDS first, then --preserve-fds).
        pub preserve_fds: i32,
        pub fix_listen_pid: bool,
        pub cgroup_dir: Option<&'a str>,
        pub cgroup_procs: &'a [String],
        /// The container's runtime-spec state without the pid, for a seccomp agent at
        /// linux.seccomp.listenerPath (the pid added here is the exec'd process's).
        pub seccomp_state: Option<&'a [u8]>,
        /// The container is paused (`exec --ignore-paused`): the process joins the cgroup
        /// itself right after `Ready` (`ExecPlan::cgroup_procs_fds`), and exec returns
        /// then: it stays frozen until `resume`, so its execve cannot be waited for.
        pub frozen: bool,
    }

    fn ns_inode(pid: &str, name: &str) -> Result<u64> {
        let p = format!("/proc/{pid}/ns/{name}");
        std::fs::metadata(&p)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::ENOENT), format!("stat {p}")))
    }

    /// Which of the init's namespaces differ from ours (pid: our own, not our children's).
    fn differing_namespaces(init_pid: i32) -> Result<i32> {
        let init = init_pid.to_string();
        let mut flags = 0;
        for (f, name) in NS_ORDER {
            let theirs = match ns_inode(&init, name) {
                Ok(i) => i,
                Err(e) if e.errno == libc::ENOENT && name == "time" => continue, // pre-5.6
                Err(e) => return Err(e),
            };
            if theirs != ns_inode("thread-self", name)? {
                flags |= f;
            }
        }
        Ok(flags)
    }

    /// Start the process in the container; returns its pid (in runh's pid namespace) once
    /// it has exec'd. The process is the caller's child: the caller waits for it.
    pub fn exec(opts: &ExecOptions) -> Result<i32> {
        let p = parse_process(opts.process)?;
        if p.terminal && opts.console_socket.is_none() {
            return Err(Error::config("process.terminal is true but no console socket was given"));
        }
        if !p.terminal && opts.console_socket.is_some() {
            return Err(Error::config("a console socket was given but process.terminal is false"));
        }
        // exec --apparmor / --process-label, or the process JSON's: refused where the LSM
        // is not enabled, before anything is cloned (as runc refuses them).
        crate::lsm::ExecAttrs::of_process(&p).check()?;
        let spec = opts.config.map(sync::parse_config).transpose()?;
        // Without the config, nothing says who shares the pid namespace: the sealed memfd.
        let memfd = spec.as_ref().map_or(true, |s| crate::initexe::needs_memfd(s, p.capabilities.as_ref()));
        let linux = spec.and_then(|s| s.linux);
        let seccomp_json = linux.as_ref().and_then(|l| l.seccomp.as_ref());
        let seccomp = match seccomp_json {
            // The same compile and cache as create's: a cache hit is one file read.
            Some(v) => Some(crate::seccomp::compile_for_create(v, opts.root.map(std::path::Path::new))?),
            None => None,
        };
        let ns_flags = differing_namespaces(opts.init_pid)?;
        let forks = ns_flags & libc::CLONE_NEWPID != 0;
        if forks && unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
            // The process, orphaned by runh-exec's fork, must stay our child to wait for.
            return Err(Error::last_os("become a child subreaper"));
        }

        let pidfd_socket = clone::connect_pidfd_socket(opts.pidfd_socket)?;
        let console = opts.console_socket.map(|path| connect_unix(path, "console socket")).transpose()?;
        // SCMP_ACT_NOTIFY: connected now, from the host's mount namespace (notify.rs).
        let listener = crate::seccomp::notify::connect_listener(seccomp.as_ref().is_some_and(|c| c.uses_notify), seccomp_json)?;
        let mut procs: Vec<String> = opts.cgroup_procs.to_vec();
        let cgroup_fd = match opts.cgroup_dir {
            Some(dir) if opts.frozen => {
                procs.push(format!("{}/cgroup.procs", dir.trim_end_matches('/')));
                None
            }
            Some(dir) => Some(open_dir(dir, "cgroup")?),
            None => None,
        };
        // Paused: the process writes these itself, after Ready (ExecPlan::cgroup_procs_fds).
        let late: Vec<OwnedFd> = if opts.frozen {
            let open_w = |f: &String| {
                let c = CString::new(f.as_str()).map_err(|_| Error::config("cgroup path contains a NUL byte"))?;
                crate::fd::owned(unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) }, || format!("open {f}"))
            };
            std::mem::take(&mut procs).iter().map(open_w).collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let (init_exe, _) = crate::initexe::open(memfd)?;
        let (parent_sync, child_sync) = sync_pair()?;
        // fds 0..3+preserve_fds are the process's; ours go above them.
        let mut passed = Passed::new(opts.preserve_fds);
        let init_sync = passed.add(child_sync.as_fd())?;
        drop(child_sync);
        let init_pidfd = passed.add(unsafe { BorrowedFd::borrow_raw(opts.pidfd) })?;
        let init_console = passed.add_opt(console.as_ref())?;
        let init_listener = passed.add_opt(listener.as_ref())?;
        let cgroup_procs_fds = late.iter().map(|f| passed.add(f.as_fd())).collect::<Result<Vec<_>>>()?;
        drop(late);
        let arg0 = CString::new(EXEC_ARGV0).unwrap();
        let arg1 = CString::new(init_sync.to_string()).unwrap();
        // The child only clears CLOEXEC and execs (no allocation: it is a copy-on-write
        // image of the Python process); no namespace flags: runh-exec joins them.
        let c = ChildPlan {
            init_exe: init_exe.as_raw_fd(),
            pass: &passed.raw,
            argv: [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()],
            envp: [std::ptr::null()],
            sync_fd: init_sync,
            wait_ids: false,
            parent_end: -1,
        };
        let (pid, into_cgroup) = clone::spawn(0, cgroup_fd.as_ref().map(|f| f.as_raw_fd()), &c, "clone the exec process")?;
        drop(passed);
        let mut child = Child::new(pid);
        // With CLONE_NEWPID the process is the child's fork (its pid comes as Msg::Pid).
        let mut process: Option<Child> = None;

        let sync_fd = parent_sync.as_raw_fd();
        let run = || -> Result<()> {
            if let (Some(dir), false) = (opts.cgroup_dir, into_cgroup || opts.frozen) {
                procs.push(format!("{}/cgroup.procs", dir.trim_end_matches('/')));
            }
            for f in &procs {
                std::fs::write(f, pid.to_string())
                    .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), format!("add the exec process to {f}")))?;
            }
            let (program, flags) = seccomp.as_ref().map_or((&[][..], 0), |s| (s.program.as_slice(), s.flags));
            let state_for = |pid| {
                crate::seccomp::notify::process_state(opts.seccomp_state.unwrap_or(b"{}"), pid, crate::seccomp::notify::field(seccomp_json, "listenerMetadata"))
            };
            let plan = ExecPlan {
                pidfd: init_pidfd,
                init_pid: opts.init_pid,
                ns_flags,
                console_fd: init_console,
                preserve_fds: opts.preserve_fds.max(0),
                fix_listen_pid: opts.fix_listen_pid,
                process_len: opts.process.len(),
                seccomp_len: program.len(),
                seccomp_flags: flags,
                personality: linux.as_ref().and_then(|l| l.personality.clone()),
                memory_policy: linux.as_ref().and_then(|l| l.memory_policy.clone()),
                seccomp_listener_fd: init_listener,
                // runc sends the exec'd process's pid, in runh's pid namespace.
                seccomp_state: match listener {
                    Some(_) if !forks => Some(state_for(pid)?),
                    _ => None,
                },
                cgroup_procs_fds,
            };
            let json = serde_json::to_vec(&plan).map_err(|e| Error::sync(format!("encode exec plan: {e}")))?;
            sync::send(sync_fd, &Msg::Plan(json))?;
            sync::send(sync_fd, &Msg::Config([opts.process, program].concat()))?;
            let mut ready = false;
            loop {
                match sync::recv(sync_fd)? {
                    Some(Msg::Pid(p)) if forks && process.is_none() => {
                        child.reap(); // the child that forked it has left
                        process = Some(Child::new(p));
                        if listener.is_some() {
                            sync::send(sync_fd, &Msg::Plan(state_for(p)?.into_bytes()))?;
                        }
                    }
                    Some(Msg::Ready) if !ready && (process.is_some() || !forks) => {
                        ready = true;
                        if opts.frozen {
                            return Ok(()); // it freezes as it joins the cgroup
                        }
                    }
                    None if ready => return Ok(()),
                    None => return Err(Error::sync("the exec process exited during setup")),
                    Some(other) => return Err(other.into_error("ready")),
                }
            }
        };
        let mut process = match run() {
            Ok(()) => process.unwrap_or(child),
            Err(mut e) => {
                if let Some(mut p) = process {
                    p.kill(); // our child too, as a subreaper
                }
                child.kill();
                if e.kind == Kind::Syscall && e.context.is_empty() {
                    e.context = "exec process".into();
                }
                return Err(e);
            }
        };
        clone::send_pidfd(pidfd_socket.as_ref(), &mut process)?;
        // init_exe is closed here, after the process has exec'd, where the grace period's
        // wait (clone.rs) overlaps the process's own start. An earlier close, as create's,
        // is not measured to help exec: its A/B here differed by no more than the two
        // builds compared did without it.
        drop(init_exe);
        Ok(process.pid)
    }
}

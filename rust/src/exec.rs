//! `runh exec`: one more process in a running container.
//!
//! How the new process enters the container, and why:
//! - The pid namespace: setns(CLONE_NEWPID) only changes the namespace of the caller's
//!   *future children* ("pid_for_children"), never the caller's own. So the runh process
//!   (this thread) joins the init's pid namespace just around the clone and returns to its
//!   own right after: the child is born inside, with no double fork, and runh's Python
//!   process never becomes a member (it has no pid in the container, only the child's
//!   parent is outside, shown as ppid 0). Cost here: two setns + one open, about 10 µs,
//!   against about 0.1 ms for the extra fork a child-side setns would need.
//! - Everything else (user, mnt, ipc, uts, net, cgroup, time) is joined by the child after it
//!   has exec'd runh-init from the sealed memfd ("runh-exec" mode): so the process that
//!   enters the container's mount namespace has an immutable memfd as /proc/self/exe,
//!   never the interpreter (CVE-2019-5736), and no Python page is ever charged to the
//!   container's memory cgroup. One setns(pidfd, flags) joins them all at once (5.8+);
//!   older kernels fall back to /proc/<pid>/ns/* files, user first, mount last. With a
//!   user namespace the kernel joins it first and checks the others with the new
//!   credentials; the child then becomes its root (setresuid 0), as runc's exec does. A
//!   time namespace joined by setns applies to the caller itself (single-threaded), so
//!   the process reads the container's clocks without a fork.
//! - The cgroup: clone3(CLONE_INTO_CGROUP) into the container's v2 directory, or the
//!   v1 cgroup.procs files written by the parent before the child reads its plan.
//!
//! The protocol reuses `sync.rs`: `Msg::Plan` with an [`ExecPlan`], then `Msg::Config`
//! chunks holding the process JSON followed by the compiled seccomp program; the child
//! answers `Ready` just before its final steps, then either an `Error` or nothing (the sync
//! socket is CLOEXEC, so EOF after `Ready` means the execve succeeded).
use crate::error::{Error, Kind, Result};
use crate::spec::Process;
use crate::sync::{self, Msg};
use crate::{caps, procattr, process, tty, userns};
use serde::{Deserialize, Serialize};
use std::os::fd::RawFd;

/// argv[0] with which the runh process execs runh-init for an exec (create uses "runh-init").
pub const EXEC_ARGV0: &str = "runh-exec";

/// What the parent tells runh-init in exec mode.
#[derive(Debug, Default, Serialize, Deserialize, Clone)]
pub struct ExecPlan {
    /// A pidfd of the container's init (inherited): the namespaces to join are its.
    pub pidfd: RawFd,
    /// The init's pid in runh's pid namespace (for the /proc/<pid>/ns fallback).
    pub init_pid: i32,
    /// CLONE_NEW* of the init's namespaces that differ from runh's (pid excluded: the
    /// child was born in it).
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
    /// SCMP_ACT_NOTIFY: a socket the parent connected to linux.seccomp.listenerPath (a
    /// host path, out of reach once the mount namespace is joined) and the process state
    /// JSON to send on it with this process's own listener fd.
    #[serde(default)]
    pub seccomp_listener_fd: Option<RawFd>,
    #[serde(default)]
    pub seccomp_state: Option<String>,
    /// Rootless with a pid namespace: ns_flags includes CLONE_NEWPID, joined here from
    /// inside the user namespace, and the process is a fork of this one; the first sends
    /// `Msg::Pid` and leaves. A listener state then follows as one more `Msg::Plan`
    /// (it needs that pid).
    #[serde(default)]
    pub fork: bool,
}

/// Namespace types joined by exec, with their /proc/<pid>/ns names; mount last, since
/// joining it changes what later paths mean.
pub const NS_ORDER: [(libc::c_int, &str); 7] = [
    (libc::CLONE_NEWUSER, "user"),
    (0x80, "time"), // CLONE_NEWTIME
    (libc::CLONE_NEWIPC, "ipc"),
    (libc::CLONE_NEWUTS, "uts"),
    (libc::CLONE_NEWNET, "net"),
    (libc::CLONE_NEWCGROUP, "cgroup"),
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
    caps: Option<caps::Sets>,
    no_new_privileges: bool,
    seccomp: Vec<u8>,
    seccomp_flags: u32,
    /// The connected listenerPath socket and the state sent on it (SCMP_ACT_NOTIFY).
    listener: Option<(RawFd, String)>,
    attrs: procattr::Attrs,
    exec: process::Exec,
}

fn join_namespaces(plan: &ExecPlan) -> Result<()> {
    if plan.ns_flags == 0 {
        return Ok(());
    }
    if unsafe { libc::setns(plan.pidfd, plan.ns_flags) } == 0 {
        return Ok(());
    }
    let e = Error::last_os("join the container's namespaces");
    if e.errno != libc::EINVAL {
        return Err(e);
    }
    // Before 5.8 setns takes no pidfd: one namespace file at a time, all opened first (they
    // are this (host) /proc's paths), the mount namespace joined last.
    let mut fds = Vec::new();
    let order = NS_ORDER[..1].iter().chain(&[(libc::CLONE_NEWPID, "pid")]).chain(&NS_ORDER[1..]);
    for &(f, name) in order {
        if plan.ns_flags & f != 0 {
            let p = std::ffi::CString::new(format!("/proc/{}/ns/{name}", plan.init_pid)).unwrap();
            let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(Error::last_os(format!("open {}", p.to_string_lossy())));
            }
            fds.push((f, fd, name));
        }
    }
    for (f, fd, name) in fds {
        if unsafe { libc::setns(fd, f) } < 0 {
            return Err(Error::last_os(format!("join the container's {name} namespace")));
        }
        unsafe { libc::close(fd) };
    }
    Ok(())
}

fn recv_all(fd: RawFd, len: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        match sync::recv(fd)? {
            Some(Msg::Config(b)) => out.extend_from_slice(&b),
            Some(other) => return Err(other.into_error("process")),
            None => return Err(Error::sync("parent closed the sync socket while sending the process")),
        }
    }
    Ok(out)
}

fn prepare(sync_fd: RawFd) -> Result<Prepared> {
    let plan: ExecPlan = match sync::recv(sync_fd)? {
        Some(Msg::Plan(b)) => serde_json::from_slice(&b).map_err(|e| Error::sync(format!("decode exec plan: {e}")))?,
        Some(other) => return Err(other.into_error("exec plan")),
        None => return Err(Error::sync("parent closed the sync socket before sending the exec plan")),
    };
    // Inherited without CLOEXEC across the exec into this program; restore it.
    for fd in [Some(plan.pidfd), plan.console_fd, plan.seccomp_listener_fd].into_iter().flatten() {
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let mut payload = recv_all(sync_fd, plan.process_len + plan.seccomp_len)?;
    let seccomp = payload.split_off(plan.process_len);
    let mut p = parse_process(&payload)?;
    drop(payload);
    // Checked before anything is joined, so a bad value fails the exec cleanly. The
    // initial CPU affinity goes on at once: the process is already in the container's
    // cgroup (clone3 into it, or the parent wrote cgroup.procs before sending the plan),
    // whose cpuset would otherwise narrow a mask set earlier.
    let attrs = procattr::Attrs::from_parts(Some(&p), plan.personality.as_ref())?;
    attrs.apply_initial()?;
    // Before the user namespace is joined: lowering oom_score_adj and raising a hard
    // rlimit need CAP_SYS_RESOURCE in the initial user namespace (runc sets both from the
    // parent for the same reason). Both survive setns and execve.
    if let Some(v) = p.oom_score_adj {
        process::set_oom_score_adj(v)?;
    }
    process::set_rlimits(&p.rlimits)?;

    join_namespaces(&plan)?;
    unsafe { libc::close(plan.pidfd) };
    if plan.ns_flags & libc::CLONE_NEWUSER != 0 {
        // setns into the user namespace gave every capability in it, but this process's
        // uid is still the host's, unmapped there: become the namespace's root (as runc's
        // exec does) so the user and capability steps below start from root.
        userns::become_root()?;
    }
    let mut seccomp_state = plan.seccomp_state;
    if plan.fork {
        crate::namespaces::fork_into_pid_namespace(sync_fd, "the container's pid namespace")?;
        if plan.seccomp_listener_fd.is_some() {
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
        let fd = plan.console_fd.ok_or_else(|| Error::config("process.terminal is true but no console socket was given"))?;
        // After the mount namespace: /dev/ptmx is the container's, the pty its devpts's.
        tty::setup_console(fd, p.console_size)?;
    }
    if let Some(fd) = plan.console_fd {
        unsafe { libc::close(fd) };
    }
    if plan.fix_listen_pid {
        // runc writes LISTEN_PID=1; the process's real pid in the container is known here
        // (execve keeps it), so sd_listen_fds() in an exec'd process accepts the fds too.
        let me = format!("LISTEN_PID={}", unsafe { libc::getpid() });
        p.env.retain(|e| !e.starts_with("LISTEN_PID="));
        p.env.push(me);
    }
    set_default_home(&mut p.env, p.user.uid);
    process::enter_cwd(&p.cwd)?;
    let exec = process::Exec::prepare(&p)?;
    let caps = p.capabilities.as_ref().map(caps::Sets::from_spec).transpose()?;
    Ok(Prepared {
        preserve_fds: plan.preserve_fds,
        user: p.user.clone(),
        caps,
        no_new_privileges: p.no_new_privileges,
        seccomp,
        seccomp_flags: plan.seccomp_flags,
        listener: plan.seccomp_listener_fd.zip(seccomp_state),
        attrs,
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
        caps: p.caps.as_ref(),
        user: &p.user,
        no_new_privileges: p.no_new_privileges,
        preserve_fds: p.preserve_fds,
    };
    match process::finish(&f, || load_seccomp(p)) {
        Err(e) => e,
        Ok(()) => p.exec.exec(),
    }
}

/// runh-init's main in exec mode: join, set up, execve. Never returns.
pub fn init_main(sync_fd: RawFd) -> ! {
    let prepared = match prepare(sync_fd) {
        Ok(p) => p,
        Err(e) => {
            let _ = sync::send(sync_fd, &Msg::from_error(&e));
            std::process::exit(1);
        }
    };
    if sync::send(sync_fd, &Msg::Ready).is_err() {
        std::process::exit(1);
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
    use crate::clone::{self, connect_unix, reap, ChildPlan, Fds};
    use std::ffi::CString;

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
    }

    fn ns_inode(pid: &str, name: &str) -> Result<u64> {
        let p = format!("/proc/{pid}/ns/{name}");
        std::fs::metadata(&p)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::ENOENT), format!("stat {p}")))
    }

    /// Run `f` with this thread's pid_for_children set to the init's pid namespace, and
    /// set it back afterwards (to our own active namespace, which setns always allows).
    fn in_pid_ns<T>(pidfd: RawFd, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let own = unsafe { libc::open(c"/proc/thread-self/ns/pid".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if own < 0 {
            return Err(Error::last_os("open /proc/thread-self/ns/pid"));
        }
        if unsafe { libc::setns(pidfd, libc::CLONE_NEWPID) } < 0 {
            let e = Error::last_os("join the container's pid namespace");
            unsafe { libc::close(own) };
            return Err(e);
        }
        let r = f();
        let back = unsafe { libc::setns(own, libc::CLONE_NEWPID) };
        unsafe { libc::close(own) };
        if back < 0 {
            // Not expected (our own namespace); say so rather than clone elsewhere later.
            return Err(Error::last_os("return to runh's pid namespace"));
        }
        r
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
        let linux = match opts.config {
            Some(cfg) => sync::parse_config(cfg)?.linux,
            None => None,
        };
        let seccomp_json = linux.as_ref().and_then(|l| l.seccomp.as_ref());
        let seccomp = match seccomp_json {
            // The same compile and cache as create's: a cache hit is one file read.
            Some(v) => Some(crate::seccomp::compile_for_create(v, opts.root.map(std::path::Path::new))?),
            None => None,
        };
        let str_field = |k: &str| seccomp_json.and_then(|v| v.get(k)).and_then(|v| v.as_str()).filter(|s| !s.is_empty());

        // Which of the init's namespaces differ from ours.
        let init = opts.init_pid.to_string();
        let mut ns_flags = 0;
        for (f, name) in NS_ORDER {
            let theirs = match ns_inode(&init, name) {
                Ok(i) => i,
                Err(e) if e.errno == libc::ENOENT && name == "time" => continue, // pre-5.6
                Err(e) => return Err(e),
            };
            if theirs != ns_inode("thread-self", name)? {
                ns_flags |= f;
            }
        }
        let mut join_pid = ns_inode(&init, "pid")? != ns_inode("thread-self", "pid_for_children")?;
        // runh joins the pid namespace from outside (see the module doc), which needs
        // CAP_SYS_ADMIN in runh's own user namespace too. An unprivileged runh (rootless)
        // lets the child join it from inside the container's user namespace and fork once
        // (about 0.1 ms, paid only here); runh becomes a child subreaper so that the
        // process, orphaned by that fork, is still its child to wait for.
        let fork = join_pid && ns_flags & libc::CLONE_NEWUSER != 0 && unsafe { libc::geteuid() } != 0;
        if fork {
            join_pid = false;
            ns_flags |= libc::CLONE_NEWPID;
            if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
                return Err(Error::last_os("become a child subreaper"));
            }
        }

        let mut fds = Fds::default();
        let pidfd_socket = clone::connect_pidfd_socket(opts.pidfd_socket, &mut fds)?;
        let (parent_sync, child_sync) = fds.sync_pair()?;
        let console = match opts.console_socket {
            Some(path) => Some(fds.keep(connect_unix(path, "console socket")?)),
            None => None,
        };
        // SCMP_ACT_NOTIFY: connected now, from the host's mount namespace (notify.rs).
        let listener = match &seccomp {
            Some(c) if c.uses_notify => {
                let path = str_field("listenerPath")
                    .ok_or_else(|| Error::config("linux.seccomp.listenerPath is required when SCMP_ACT_NOTIFY is used"))?;
                Some(fds.keep(connect_unix(path, "seccomp listenerPath")?))
            }
            _ => None,
        };
        let memfd = fds.keep(crate::memfd::init_fd()?);
        // fds 0..3+preserve_fds are the process's; ours go above them.
        let base = 3 + opts.preserve_fds.max(0);
        let mut dup_high = |fd: RawFd| -> Result<RawFd> {
            let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, base) };
            if d < 0 {
                Err(Error::last_os("dup fd for runh-init"))
            } else {
                Ok(fds.keep(d))
            }
        };
        let init_sync = dup_high(child_sync)?;
        let init_pidfd = dup_high(opts.pidfd)?;
        let init_console = match console {
            Some(fd) => dup_high(fd)?,
            None => -1,
        };
        let init_listener = match listener {
            Some(fd) => dup_high(fd)?,
            None => -1,
        };
        let cgroup_fd = match opts.cgroup_dir {
            Some(dir) => {
                let c = CString::new(dir).map_err(|_| Error::config("cgroup path contains a NUL byte"))?;
                let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
                if fd < 0 {
                    return Err(Error::last_os(format!("open cgroup {dir}")));
                }
                Some(fds.keep(fd))
            }
            None => None,
        };
        let arg0 = CString::new(EXEC_ARGV0).unwrap();
        let arg1 = CString::new(init_sync.to_string()).unwrap();
        // The child only clears CLOEXEC and execs (no allocation: it is a copy-on-write
        // image of the Python process); no namespace flags, it joins them in init.
        let c = ChildPlan {
            memfd,
            pass: [init_sync, init_pidfd, init_console, init_listener],
            argv: [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()],
            envp: [std::ptr::null()],
            sync_fd: init_sync,
            wait_ids: false,
            parent_end: -1,
        };
        let spawn = || clone::spawn(0, cgroup_fd, &c, "clone the exec process");
        let (pid, into_cgroup) = if join_pid { in_pid_ns(opts.pidfd, spawn)? } else { spawn()? };
        // With `fork`, the process is the child's fork (its pid comes as Msg::Pid).
        let mut process_pid = if fork { 0 } else { pid };
        let mut child_reaped = false;

        let mut run = || -> Result<()> {
            for fd in [child_sync, init_sync, init_pidfd, init_console, init_listener] {
                fds.close(fd);
            }
            let mut procs: Vec<String> = opts.cgroup_procs.to_vec();
            if let (Some(dir), false) = (opts.cgroup_dir, into_cgroup) {
                procs.push(format!("{}/cgroup.procs", dir.trim_end_matches('/')));
            }
            for f in &procs {
                std::fs::write(f, pid.to_string())
                    .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), format!("add the exec process to {f}")))?;
            }
            let (program, flags) = match &seccomp {
                Some(s) => (s.program.as_slice(), s.flags),
                None => (&[][..], 0),
            };
            let plan = ExecPlan {
                pidfd: init_pidfd,
                init_pid: opts.init_pid,
                ns_flags,
                console_fd: console.map(|_| init_console),
                preserve_fds: opts.preserve_fds.max(0),
                fix_listen_pid: opts.fix_listen_pid,
                process_len: opts.process.len(),
                seccomp_len: program.len(),
                seccomp_flags: flags,
                personality: linux.as_ref().and_then(|l| l.personality.clone()),
                seccomp_listener_fd: listener.map(|_| init_listener),
                fork,
                seccomp_state: match listener {
                    // runc sends the exec'd process's pid, in runh's pid namespace.
                    Some(_) if !fork => Some(crate::seccomp::notify::process_state(
                        opts.seccomp_state.unwrap_or(b"{}"),
                        pid,
                        str_field("listenerMetadata"),
                    )?),
                    _ => None,
                },
            };
            let json = serde_json::to_vec(&plan).map_err(|e| Error::sync(format!("encode exec plan: {e}")))?;
            sync::send(parent_sync, &Msg::Plan(json))?;
            let payload = [opts.process, program].concat();
            for chunk in payload.chunks(64 * 1024) {
                sync::send(parent_sync, &Msg::Config(chunk.to_vec()))?;
            }
            let mut ready = false;
            loop {
                match sync::recv(parent_sync)? {
                    Some(Msg::Pid(p)) if fork && process_pid == 0 => {
                        process_pid = p;
                        reap(pid); // the child that forked it has left
                        child_reaped = true;
                        if listener.is_some() {
                            let state = crate::seccomp::notify::process_state(
                                opts.seccomp_state.unwrap_or(b"{}"),
                                p,
                                str_field("listenerMetadata"),
                            )?;
                            sync::send(parent_sync, &Msg::Plan(state.into_bytes()))?;
                        }
                    }
                    Some(Msg::Ready) if !ready && process_pid != 0 => ready = true,
                    None if ready => return Ok(()),
                    None => return Err(Error::sync("the exec process exited during setup")),
                    Some(other) => return Err(other.into_error("ready")),
                }
            }
        };
        if let Err(mut e) = run() {
            if process_pid != 0 && process_pid != pid {
                unsafe { libc::kill(process_pid, libc::SIGKILL) };
                reap(process_pid); // our child too, as a subreaper
            }
            if !child_reaped {
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reap(pid);
            }
            if e.kind == Kind::Syscall && e.context.is_empty() {
                e.context = "exec process".into();
            }
            return Err(e);
        }
        clone::send_pidfd(pidfd_socket, process_pid)?;
        Ok(process_pid)
    }
}

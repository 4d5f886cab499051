//! `runh exec` without Python: the same checks as `runh.Container.exec` for the one case
//! it takes (a running, unpaused container whose state says everything needed), then
//! `_core::exec::exec`, the function the Python CLI calls.
//!
//! State is Python's: this reads `<root>/<id>/state.json` as `runh.state` writes it and
//! never writes it. Any doubt is a handoff (see main.rs), taken before anything is done.
use crate::args::Exec;
use crate::python::handoff;
use _core::error::Error;
use serde_json::Value;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// runc's rule for ids, as `runh.state.validate_id`: [\w+-.]+, not a path, no "..".
fn valid_id(id: &str) -> bool {
    !id.is_empty() && !id.contains("..") && id.bytes().all(|c| c.is_ascii_alphanumeric() || b"_+-.".contains(&c))
}

/// (start time, state letter) of a process from /proc/<pid>/stat, as `runh.state`.
fn start_time(pid: i64) -> Option<(u64, String)> {
    let data = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = data.iter().rposition(|&c| c == b')')?;
    let rest = std::str::from_utf8(data.get(close + 2..)?).ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    Some((f.get(19)?.parse().ok()?, f.first()?.to_string()))
}

fn read(path: &str) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

/// Is the container's cgroup frozen (paused)? As `runh.cgroups` reads it from state.json.
fn frozen(cgroup: &Value) -> Option<bool> {
    Some(match cgroup.get("version").and_then(Value::as_i64) {
        Some(2) => {
            let path = cgroup.get("path")?.as_str()?;
            read(&format!("{path}/cgroup.freeze")).is_some_and(|v| v.trim_ascii() == b"1")
        }
        _ => match cgroup.get("paths")?.get("freezer").and_then(Value::as_str) {
            Some(d) => read(&format!("{d}/freezer.state")).is_some_and(|v| v.trim_ascii() != b"THAWED"),
            None => false,
        },
    })
}

/// Where the process goes: the v2 directory (clone3 into it), or v1's cgroup.procs files
/// (`clone_target()` of runh.cgroups' managers).
fn cgroup_target(cgroup: &Value) -> Option<(Option<String>, Vec<String>)> {
    if cgroup.is_null() {
        return Some((None, vec![]));
    }
    if cgroup.get("version").and_then(Value::as_i64) == Some(2) {
        return Some((Some(cgroup.get("path")?.as_str()?.to_string()), vec![]));
    }
    let mut dirs: Vec<&str> = cgroup.get("paths")?.as_object()?.values().map(Value::as_str).collect::<Option<_>>()?;
    dirs.sort();
    dirs.dedup();
    Some((None, dirs.iter().map(|d| format!("{d}/cgroup.procs")).collect()))
}

/// `--user uid[:gid]` and `--additional-gids`; None (Python words the error) if not numbers.
fn ids(a: &Exec) -> Option<(Option<u32>, Option<u32>, Vec<u32>)> {
    let (mut uid, mut gid) = (None, None);
    if let Some(u) = &a.user {
        let (u, g) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u.as_str(), None),
        };
        uid = Some(u.parse().ok()?);
        gid = match g {
            Some(g) => Some(g.parse().ok()?),
            None => None,
        };
    }
    let gids = a.additional_gids.iter().map(|g| g.parse().ok()).collect::<Option<_>>()?;
    Some((uid, gid, gids))
}

/// Everything `exec` needs, or None for a handoff. Nothing has been done yet either way.
struct Ready {
    process: Vec<u8>,
    config: Vec<u8>,
    pid: i32,
    pidfd: i32,
    cgroup_dir: Option<String>,
    cgroup_procs: Vec<String>,
    terminal: bool,
}

fn prepare(a: &Exec) -> Option<Ready> {
    if unsafe { libc::geteuid() } != 0 || std::env::var_os("LISTEN_FDS").is_some() {
        return None; // rootless exec (a fork in the pid namespace), socket activation
    }
    if !a.root.starts_with('/') || !valid_id(&a.id) {
        return None;
    }
    let dir = format!("{}/{}", a.root.trim_end_matches('/'), a.id);
    let state: Value = serde_json::from_slice(&read(&format!("{dir}/state.json"))?).ok()?;
    let pid = state.get("pid")?.as_i64().filter(|&p| p > 0 && p <= i32::MAX as i64)?;
    let recorded = state.get("starttime")?.as_u64()?;
    let bundle = state.get("bundle")?.as_str()?;
    let cgroup = state.get("cgroup").unwrap_or(&Value::Null);
    let created = std::fs::symlink_metadata(format!("{dir}/notify.sock")).is_ok();
    if !created && !cgroup.is_null() && frozen(cgroup)? {
        return None; // paused: an error, or --ignore-paused's join after exec
    }
    let (cgroup_dir, cgroup_procs) = cgroup_target(cgroup)?;
    let config = read(&format!("{bundle}/config.json"))?;
    if memchr(&config, b"listenerPath") {
        return None; // a seccomp agent gets the container's state: Python builds it
    }
    let process = match &a.process {
        Some(path) if a.command.is_empty() => read(path)?,
        Some(_) => return None,
        None if a.command.is_empty() => return None,
        None => {
            let (uid, gid, additional_gids) = ids(a)?;
            let f = _core::exec::ProcessFlags {
                args: a.command.clone(),
                terminal: a.tty,
                console_size: None,
                cwd: a.cwd.clone(),
                env: a.env.clone(),
                uid,
                gid,
                additional_gids,
                caps: a.caps.clone(),
                no_new_privileges: a.no_new_privs,
                apparmor: a.apparmor.clone(),
                selinux_label: a.process_label.clone(),
            };
            _core::exec::process_from_config(&config, &f).ok()?
        }
    };
    let p: Value = serde_json::from_slice(&process).ok()?;
    let terminal = p.get("terminal").and_then(Value::as_bool).unwrap_or(false);
    if terminal && a.console_socket.is_none() {
        return None; // the foreground pty proxy is Python's (runh.tty)
    }
    if let Some(c) = p.get("capabilities") {
        // Unknown names are a warning and then ignored (runc 1.1+): Python gives it.
        let c: _core::spec::Capabilities = serde_json::from_value(c.clone()).ok()?;
        if !_core::caps::unknown(&c).is_empty() {
            return None;
        }
    }
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) } as i32;
    if pidfd < 0 {
        return None;
    }
    // The pidfd pins the process: if its start time still matches, it is the container's.
    match start_time(pid) {
        Some((t, letter)) if t == recorded && !matches!(letter.as_str(), "Z" | "X" | "x") => {}
        _ => {
            unsafe { libc::close(pidfd) };
            return None;
        }
    }
    Some(Ready { process, config, pid: pid as i32, pidfd, cgroup_dir, cgroup_procs, terminal })
}

fn memchr(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Write the pid file as `runh.state.write_atomic` does: a temp file, then rename.
fn write_pid_file(path: &str, pid: i32) -> Result<(), Error> {
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default())
    };
    let tmp = format!("{path}.tmp{}", std::process::id());
    let fail = |e: std::io::Error| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), format!("write pid file {path}"));
    std::fs::write(&tmp, pid.to_string()).map_err(fail)?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

// Foreground exec: signals are passed on to the process (`runh.tty.Forwarder`'s list).
// Handlers go on before the process exists; what arrives before its pid is known is held.
static TARGET: AtomicI32 = AtomicI32::new(0);
static PENDING: AtomicU64 = AtomicU64::new(0);
const FORWARD: [libc::c_int; 14] = [
    libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH,
    libc::SIGCONT, libc::SIGALRM, libc::SIGPWR, libc::SIGURG, libc::SIGVTALRM, libc::SIGPROF, libc::SIGIO,
];

extern "C" fn forward(sig: libc::c_int) {
    let pid = TARGET.load(Ordering::SeqCst);
    if pid > 0 {
        unsafe { libc::kill(pid, sig) };
    } else {
        PENDING.fetch_or(1 << sig, Ordering::SeqCst);
    }
}

fn install_forwarders(tty: bool) {
    for sig in FORWARD {
        if tty && sig == libc::SIGWINCH {
            continue; // with a pty the size is the pty's business, not a signal to pass
        }
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn wait(pid: i32) -> i32 {
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 255;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

pub fn run(a: Exec) -> ! {
    let Some(r) = prepare(&a) else { handoff(None) };
    if !a.detach {
        install_forwarders(r.terminal);
    }
    let opts = _core::exec::ExecOptions {
        process: &r.process,
        config: Some(&r.config),
        pidfd: r.pidfd,
        init_pid: r.pid,
        root: Some(&a.root),
        console_socket: a.console_socket.as_deref(),
        preserve_fds: a.preserve_fds,
        fix_listen_pid: false,
        cgroup_dir: r.cgroup_dir.as_deref(),
        cgroup_procs: &r.cgroup_procs,
        seccomp_state: None,
    };
    let pid = match _core::exec::exec(&opts) {
        Ok(pid) => pid,
        Err(e) => handoff(Some(e)), // the core has killed and reaped what it started
    };
    unsafe { libc::close(r.pidfd) };
    if let Some(f) = &a.pid_file {
        if let Err(e) = write_pid_file(f, pid) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait(pid);
            handoff(Some(e));
        }
    }
    if a.detach {
        std::process::exit(0);
    }
    TARGET.store(pid, Ordering::SeqCst);
    let pending = PENDING.swap(0, Ordering::SeqCst);
    for sig in 1..64 {
        if pending & (1 << sig) != 0 {
            unsafe { libc::kill(pid, sig) };
        }
    }
    std::process::exit(wait(pid));
}

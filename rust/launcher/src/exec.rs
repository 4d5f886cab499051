//! `runh exec` without Python: the same checks as `runh.Container.exec` for the one case
//! it takes (a created or running container, not paused), then `_core::exec::exec`, the
//! function the Python CLI calls. Any doubt is a handoff (see main.rs), taken before
//! anything is done.
use crate::args::Exec;
use crate::python::handoff;
use crate::state::{self, read, Container, Status};
use _core::error::Error;
use serde_json::Value;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

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
    if std::env::var_os("LISTEN_FDS").is_some() {
        return None; // socket activation: Python rewrites the process's LISTEN_* env
    }
    // runh-init, installed next to runh._core (build.rs): not found, Python finds it.
    _core::initexe::set_path(crate::python::find_init()?);
    let c = Container::load(state::dir(&a.root, &a.id)?)?;
    if !matches!(c.status()?, Status::Created | Status::Running) {
        return None; // stopped: an error; paused: an error, or --ignore-paused's late join
    }
    let pid = c.pid() as i32;
    let bundle = c.state.get("bundle")?.as_str()?;
    // Where the process goes: the v2 directory (clone3 into it), or v1's cgroup.procs.
    let (cgroup_dir, cgroup_procs) = match state::cgroup_dirs(c.cgroup())? {
        (true, dirs) => (dirs.into_iter().next(), vec![]),
        (false, dirs) => (None, dirs.iter().map(|d| format!("{d}/cgroup.procs")).collect()),
    };
    // The config the container was created with (runh.Container.config): the state
    // dir's copy, the bundle's only for a container made before there was one.
    let config = match read(&format!("{}/config.json", c.dir)) {
        Some(b) => b,
        None if std::fs::symlink_metadata(format!("{}/config.json", c.dir)).is_err() => read(&format!("{bundle}/config.json"))?,
        None => return None,
    };
    if memchr(&config, b"listenerPath") {
        return None; // a seccomp agent gets the container's state: Python builds it
    }
    let process = match &a.process {
        Some(path) if a.command.is_empty() => state::read_json_file(path)?,
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
    if c.init_alive() != Some(true) {
        unsafe { libc::close(pidfd) };
        return None;
    }
    Some(Ready { process, config, pid, pidfd, cgroup_dir, cgroup_procs, terminal })
}

fn memchr(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Write the pid file as `runh.state.write_atomic` does: a new temp file beside it with
/// an unpredictable name, O_EXCL and O_NOFOLLOW (its directory may be shared: a guessable
/// name is one another user can plant a symlink at), then rename; the temp file is
/// removed on any failure.
fn write_pid_file(path: &str, pid: i32) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default())
    };
    let fail = |e: std::io::Error| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), format!("write pid file {path}"));
    let mut rnd = [0u8; 8];
    if unsafe { libc::getrandom(rnd.as_mut_ptr().cast(), rnd.len(), 0) } != rnd.len() as isize {
        return Err(fail(std::io::Error::last_os_error()));
    }
    let (dir, base) = path.rsplit_once('/').unwrap_or(("", &path));
    let tmp = format!("{dir}/.{base}.{}.tmp", rnd.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(fail)?;
    let written = f.write_all(pid.to_string().as_bytes());
    drop(f);
    written.and_then(|_| std::fs::rename(&tmp, &path)).map_err(|e| {
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
        pidfd_socket: None, // --pidfd-socket is handed to Python (args.rs)
        preserve_fds: a.preserve_fds,
        fix_listen_pid: false,
        cgroup_dir: r.cgroup_dir.as_deref(),
        cgroup_procs: &r.cgroup_procs,
        seccomp_state: None,
        frozen: false, // a paused container is handed to Python (prepare)
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

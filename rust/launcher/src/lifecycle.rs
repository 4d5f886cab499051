//! `start`, `kill`, `delete` and `state` without Python, for the plain case of each: the
//! same steps as `runh.Container`'s methods, through the same core functions. A call that
//! needs anything more (hooks, a running container to kill, an error to word) is handed
//! to Python before anything is done; a core failure afterwards is handed on as
//! RUNH_CORE_ERROR (see main.rs).
use crate::python::handoff;
use crate::state::{self, Container, Status};
use _core::error::Error;
use std::time::Duration;

/// The container under `root`, locked (the lock is held until this process exits or
/// execs Python).
fn locked(root: &str, id: &str) -> (std::os::fd::OwnedFd, Container) {
    let Some(dir) = state::dir(root, id) else { handoff(None) };
    let Some(lock) = state::lock(&dir) else { handoff(None) };
    let Some(c) = Container::load(dir) else { handoff(None) };
    (lock, c)
}

/// `runh start ID`: the start handshake with the parked init (`clone::start`), then
/// notify.sock goes, which is what marks the container as no longer created.
pub fn start(root: &str, id: &str) -> ! {
    let (_lock, c) = locked(root, id);
    let poststart = c.state.get("hooks").and_then(|h| h.get("poststart")).is_some_and(|p| !p.is_null());
    if c.status() != Some(Status::Created) || poststart {
        handoff(None); // not created: runc's wording is Python's; poststart hooks too
    }
    if let Err(e) = _core::clone::start(&c.dir) {
        // Refused, or reset with our byte unread: init had taken another start's byte (one
        // killed after sending it). Nothing was done here: Python words what it is now.
        if _core::clone::start_refused(&e) && !state::parked(&c.dir) {
            handoff(None);
        }
        handoff(Some(e));
    }
    let _ = std::fs::remove_file(format!("{}/notify.sock", c.dir));
    std::process::exit(0);
}

/// Does any cgroup under `dir` (children included) still hold a process?
fn populated(dir: &str) -> bool {
    if state::read(&format!("{dir}/cgroup.procs")).is_some_and(|p| !p.trim_ascii().is_empty()) {
        return true;
    }
    std::fs::read_dir(dir).is_ok_and(|d| {
        d.flatten().any(|e| e.file_type().is_ok_and(|t| t.is_dir()) && populated(&e.path().to_string_lossy()))
    })
}

fn io_error(e: std::io::Error, what: String) -> Error {
    Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), what)
}

/// `runh delete [--force] ID` of a stopped container without hooks or a systemd unit: the
/// cgroup directories it made (if empty: anything left in them is Python's to kill), its
/// state dir, and the root's seccomp cache if that was the root's last container
/// (`container._release_root`).
pub fn delete(root: &str, id: &str, _force: bool) -> ! {
    let (_lock, c) = locked(root, id);
    // --force changes nothing for a stopped container.
    // A resctrl group (linux.intelRdt) is removed by Python's delete (runh.intelrdt), and
    // so are the paths and mount points a record names ("made", "mounts":
    // container._remove_recorded): remove_dir_all below would descend into a mount.
    let python_removes = ["intelRdt", "made", "mounts"].iter().any(|k| c.state.get(*k).is_some());
    if c.status() != Some(Status::Stopped) || c.has_hooks() || python_removes {
        handoff(None);
    }
    let Some((dirs, parents)) = state::owned_dirs(c.cgroup()) else { handoff(None) };
    // A systemd unit is stopped (and a failed one cleared) over D-Bus: Python's.
    if c.cgroup().get("systemd").is_some() || dirs.iter().any(|d| populated(d)) {
        handoff(None);
    }
    for d in &dirs {
        // The same wait for the kernel's release of exiting tasks as Python's (2 s).
        if let Err(e) = _core::cgroups::fs::remove(d, Duration::from_millis(2000)) {
            handoff(Some(e));
        }
    }
    for d in &parents {
        let _ = std::fs::remove_dir(d); // only if empty: another container's may be in it
    }
    if let Err(e) = remove_state_dir(&c.dir) {
        handoff(Some(io_error(e, format!("remove {}", c.dir))));
    }
    // containerd expects an empty --root once its containers are gone.
    let entries: Option<Vec<_>> = std::fs::read_dir(root).ok().map(|d| d.flatten().map(|e| e.file_name()).collect());
    if entries.is_some_and(|e| e.len() == 1 && e[0] == ".cache") {
        let _ = std::fs::remove_dir_all(format!("{}/.cache", root.trim_end_matches('/')));
    }
    std::process::exit(0);
}

/// `container._remove_state_dir`: every file but state.json and the lock, then
/// state.json, then the lock, then the dir, so that a delete killed part way leaves the
/// record for the next one.
fn remove_state_dir(dir: &str) -> std::io::Result<()> {
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    let mut names: Vec<std::ffi::OsString> = match std::fs::read_dir(dir) {
        Ok(d) => d.flatten().map(|e| e.file_name()).collect(),
        Err(e) => return gone(Err(e)),
    };
    let rank = |n: &std::ffi::OsString| match n.to_str() {
        Some("state.json") => 1,
        Some("lock") => 2,
        _ => 0,
    };
    names.sort_by_key(rank);
    for n in names {
        let p = std::path::Path::new(dir).join(&n);
        let r = std::fs::remove_file(&p);
        gone(match r {
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => std::fs::remove_dir_all(&p),
            r => r,
        })?;
    }
    gone(std::fs::remove_dir(dir))
}

/// `runh kill ID [N]`: pidfd_send_signal to the init, after the start-time check (as
/// `Container.kill` without --all).
pub fn kill(root: &str, id: &str, signal: i32) -> ! {
    let (_lock, c) = locked(root, id);
    if !matches!(c.status(), Some(Status::Created | Status::Running | Status::Paused)) {
        handoff(None); // "container not running" is Python's to word
    }
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, c.pid() as libc::c_int, 0) } as i32;
    if pidfd < 0 || c.init_alive() != Some(true) {
        handoff(None);
    }
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd, signal, std::ptr::null::<libc::siginfo_t>(), 0) };
    if r < 0 {
        let e = Error::last_os(format!("send signal {signal} to the container's init"));
        if e.errno == libc::ESRCH {
            handoff(None); // it has just exited: Python says it is not running
        }
        handoff(Some(e));
    }
    std::process::exit(0);
}

/// `runh state ID`: the runtime-spec state with runc's fields, laid out as runc prints it
/// (Go's MarshalIndent with two spaces), key for key as `Container.state` builds it.
pub fn state(root: &str, id: &str) -> ! {
    use serde_json::{json, Map, Value};
    let Some(dir) = state::dir(root, id) else { handoff(None) };
    let Some(c) = Container::load(dir) else { handoff(None) }; // missing, or creating
    let Some(status) = c.status() else { handoff(None) };
    let s = &c.state;
    let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = Map::new();
    out.insert("ociVersion".into(), json!(text("ociVersion")));
    out.insert("id".into(), json!(id));
    out.insert("pid".into(), json!(if status == Status::Stopped { 0 } else { c.pid() }));
    let name = match status {
        Status::Created => "created",
        Status::Running => "running",
        Status::Paused => "paused",
        Status::Stopped => "stopped",
    };
    out.insert("status".into(), json!(name));
    for k in ["bundle", "rootfs", "created", "owner"] {
        out.insert(k.into(), json!(text(k)));
    }
    match s.get("annotations") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) if m.is_empty() => {}
        Some(a) => {
            out.insert("annotations".into(), a.clone());
        }
    }
    let Ok(mut json) = serde_json::to_string_pretty(&Value::Object(out)) else { handoff(None) };
    json.push('\n');
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(json.as_bytes()).and_then(|_| stdout.flush()).is_err() {
        std::process::exit(1);
    }
    std::process::exit(0);
}

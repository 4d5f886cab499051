//! Reading a container's state as `runh.state` writes it (`<root>/<id>/state.json`, the
//! flock on that dir, `notify.sock` while created) and deriving its status as
//! `runh.state.status_of` does. The launcher never writes state.json: it only takes the
//! cases where the status is clear, and leaves every other to Python (a record that is
//! missing, unreadable or still marked "creating" among them).
use serde_json::Value;
use std::os::fd::{AsRawFd, OwnedFd};

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

pub struct Container {
    pub dir: String,
    pub state: Value,
}

/// runc's rule for ids, as `runh.state.validate_id`: [\w+-.]+, not a path, no "..",
/// and not "." (which would name the root itself: it would be locked as a state dir).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id != "." && !id.contains("..") && id.bytes().all(|c| c.is_ascii_alphanumeric() || b"_+-.".contains(&c))
}

pub fn read(path: &str) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

/// A JSON file given on the command line (`exec --process`), read as
/// `runh.spec.read_json_file` reads it: a regular file of at most 4 MiB, through one fd
/// opened O_NONBLOCK (a FIFO would block the open); None (Python words it) otherwise.
pub fn read_json_file(path: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    const LIMIT: u64 = 4 << 20;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path).ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.len() > LIMIT {
        return None;
    }
    let mut out = Vec::new();
    f.take(LIMIT + 1).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= LIMIT).then_some(out)
}

/// (start time, state letter) of a process from /proc/<pid>/stat, as `runh.state`.
pub fn start_time(pid: i64) -> Option<(u64, String)> {
    let data = read(&format!("/proc/{pid}/stat"))?;
    let close = data.iter().rposition(|&c| c == b')')?;
    let rest = std::str::from_utf8(data.get(close + 2..)?).ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    Some((f.get(19)?.parse().ok()?, f.first()?.to_string()))
}

/// The state dir of `id` under an absolute `root`; None for anything Python must word.
pub fn dir(root: &str, id: &str) -> Option<String> {
    (root.starts_with('/') && valid_id(id)).then(|| format!("{}/{id}", root.trim_end_matches('/')))
}

/// flock on the state dir itself (an fd of it), as `runh.state.Lock`: serialises
/// lifecycle calls on one id. The lock is released when the fd closes (CLOEXEC: also on
/// a handoff to Python). A dir that is gone (or not a dir) is None: Python words it.
pub fn lock(dir: &str) -> Option<OwnedFd> {
    let path = std::ffi::CString::new(dir).ok()?;
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if raw < 0 {
        return None;
    }
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    (unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) } == 0).then_some(fd)
}

impl Container {
    /// The container's recorded state; None when state.json is missing (no container, or
    /// a create that has not written it), unreadable, or the record of a create that has
    /// not finished ("creating": in progress, or killed): Python words all of those.
    pub fn load(dir: String) -> Option<Self> {
        let state: Value = serde_json::from_slice(&read(&format!("{dir}/state.json"))?).ok()?;
        if !state.is_object() || state.get("creating").is_some_and(|c| c != &Value::Bool(false) && !c.is_null()) {
            return None;
        }
        Some(Container { dir, state })
    }

    pub fn pid(&self) -> i64 {
        self.state.get("pid").and_then(Value::as_i64).unwrap_or(0)
    }

    pub fn cgroup(&self) -> &Value {
        self.state.get("cgroup").unwrap_or(&Value::Null)
    }

    /// Is the init still the process recorded at create (start time, not a zombie)?
    pub fn init_alive(&self) -> Option<bool> {
        let pid = self.pid();
        if pid <= 0 || pid > i32::MAX as i64 {
            return Some(false);
        }
        let recorded = self.state.get("starttime")?.as_u64()?;
        Some(matches!(start_time(pid), Some((t, l)) if t == recorded && !matches!(l.as_str(), "Z" | "X" | "x")))
    }

    pub fn status(&self) -> Option<Status> {
        if !self.init_alive()? {
            return Some(Status::Stopped);
        }
        if std::fs::symlink_metadata(format!("{}/notify.sock", self.dir)).is_ok() && parked(&self.dir) {
            return Some(Status::Created);
        }
        Some(if frozen(self.cgroup())? { Status::Paused } else { Status::Running })
    }

    /// The hooks kept for after create (poststart, poststop): Python runs those.
    pub fn has_hooks(&self) -> bool {
        self.state.get("hooks").is_some_and(|h| !h.is_null())
    }
}

/// Is the init parked, listening on `<dir>/notify.sock` for start (`runh.state.parked`)?
/// A non-blocking connect: refused once init took start's byte, so a start killed after
/// the handshake leaves a running container, not a "created" one nobody can start.
pub fn parked(dir: &str) -> bool {
    // Through /proc/self/fd when the path is longer than sun_path (clone::UnixAddr).
    let Ok(addr) = _core::clone::UnixAddr::in_dir(dir, "notify.sock", "socket path") else { return false };
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    let r = addr.connect(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
    let errno = std::io::Error::last_os_error().raw_os_error();
    unsafe { libc::close(fd) };
    // EAGAIN: its backlog is full, it is still listening.
    r == 0 || errno == Some(libc::EAGAIN)
}

/// A directory of the cgroup filesystem, as `runh.cgroups.check_inside` has it: below
/// /sys/fs/cgroup, no "", "." or ".." part. A state.json naming anything else is Python's.
fn inside(dir: &str) -> bool {
    dir.strip_prefix("/sys/fs/cgroup/").is_some_and(|rest| rest.split('/').all(|p| !matches!(p, "" | "." | "..")))
}

/// The cgroup directories recorded in state.json: v2's one, v1's per controller (sorted,
/// once each), as `runh.cgroups`' managers list them. None if any is outside the cgroup
/// filesystem.
pub fn cgroup_dirs(cgroup: &Value) -> Option<(bool, Vec<String>)> {
    if cgroup.is_null() {
        return Some((false, vec![]));
    }
    if cgroup.get("version").and_then(Value::as_i64) == Some(2) {
        let dir = cgroup.get("path")?.as_str()?.to_string();
        return inside(&dir).then_some((true, vec![dir]));
    }
    let mut dirs: Vec<String> = cgroup.get("paths")?.as_object()?.values().map(|v| v.as_str().map(String::from)).collect::<Option<_>>()?;
    dirs.sort();
    dirs.dedup();
    dirs.iter().all(|d| inside(d)).then_some((false, dirs))
}

/// The cgroup directories this container made ("owned", `runh.cgroups.base.Manager`):
/// (its own directories, removed with what is below them; the ancestors it made for
/// them, deepest first, removed only if empty). A record from before "owned" existed:
/// all its own directories, no ancestors.
pub fn owned_dirs(cgroup: &Value) -> Option<(Vec<String>, Vec<String>)> {
    let (_, dirs) = cgroup_dirs(cgroup)?;
    match cgroup.get("owned") {
        None | Some(Value::Null) => Some((dirs, vec![])),
        Some(o) => {
            let o: Vec<&str> = o.as_array()?.iter().map(Value::as_str).collect::<Option<_>>()?;
            if !o.iter().all(|d| inside(d)) {
                return None;
            }
            let mut parents: Vec<String> = o
                .iter()
                .filter(|d| !dirs.iter().any(|x| x == *d) && dirs.iter().any(|x| x.starts_with(&format!("{d}/"))))
                .map(|d| d.to_string())
                .collect();
            parents.sort_by_key(|d| std::cmp::Reverse(d.len()));
            Some((dirs.into_iter().filter(|d| o.contains(&d.as_str())).collect(), parents))
        }
    }
}

/// Is the container's cgroup frozen (paused)?
fn frozen(cgroup: &Value) -> Option<bool> {
    if cgroup.is_null() {
        return Some(false);
    }
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

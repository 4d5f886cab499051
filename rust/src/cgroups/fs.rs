//! Plain cgroupfs operations shared by v1 and v2: create, write, freeze, kill, remove.
use crate::error::{Error, Result};
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

fn io_err(e: std::io::Error, context: String) -> Error {
    Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), context)
}

/// mkdir -p. Cgroup directories are created by the kernel with their interface files;
/// EEXIST is fine because a parent (e.g. a pod's slice) is often shared.
pub fn create_dir(path: &str) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| io_err(e, format!("create cgroup {path}")))
}

/// Write one value to one interface file with a single write(2): cgroupfs parses each
/// write as one command, so a split write would be two commands.
pub fn write_file(dir: &str, name: &str, value: &str) -> Result<()> {
    let path = format!("{dir}/{name}");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| io_err(e, format!("open {path}")))?;
    f.write(value.as_bytes())
        .map_err(|e| io_err(e, format!("write {value:?} to {path}")))?;
    Ok(())
}

/// Apply a list of writes in order; stop at the first failure (the order matters, e.g.
/// v1 memory.limit_in_bytes before memory.memsw.limit_in_bytes when raising both).
pub fn write_all(dir: &str, writes: &[(String, String)]) -> Result<()> {
    for (name, value) in writes {
        write_file(dir, name, value)?;
    }
    Ok(())
}

pub fn read_file(dir: &str, name: &str) -> Result<String> {
    let path = format!("{dir}/{name}");
    let mut s = String::new();
    fs::File::open(&path)
        .and_then(|mut f| f.read_to_string(&mut s))
        .map_err(|e| io_err(e, format!("read {path}")))?;
    Ok(s)
}

/// Freeze or thaw, and wait until the kernel reports the new state. `v2` selects
/// cgroup.freeze + cgroup.events ("frozen 1") over v1's freezer.state (FREEZING → FROZEN).
/// Freezing is asynchronous in both versions; callers (pause, kill --all on v1) need it done.
pub fn freeze(dir: &str, v2: bool, frozen: bool, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let mut delay = Duration::from_micros(100);
    loop {
        let done = if v2 {
            write_file(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
            let events = read_file(dir, "cgroup.events")?;
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            events.lines().any(|l| l.trim() == want)
        } else {
            // v1 can get stuck in FREEZING if a task is in an uninterruptible sleep; the
            // write is re-issued each round, which retries the freeze.
            write_file(dir, "freezer.state", if frozen { "FROZEN" } else { "THAWED" })?;
            let state = read_file(dir, "freezer.state")?;
            state.trim() == if frozen { "FROZEN" } else { "THAWED" }
        };
        if done {
            return Ok(());
        }
        if start.elapsed() > timeout {
            if frozen && !v2 {
                // Leave it thawed rather than half frozen.
                let _ = write_file(dir, "freezer.state", "THAWED");
            }
            return Err(Error::from_errno(
                libc::ETIMEDOUT,
                format!("{} {dir}", if frozen { "freeze" } else { "thaw" }),
            ));
        }
        sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

/// SIGKILL every process in the cgroup and its descendants with one write to cgroup.kill
/// (v2, kernel >= 5.14). Returns Ok(false) when the file does not exist so that the caller
/// can fall back to freeze + signal each pid + thaw.
pub fn kill_all(dir: &str) -> Result<bool> {
    match write_file(dir, "cgroup.kill", "1") {
        Ok(()) => Ok(true),
        Err(e) if e.errno == libc::ENOENT => Ok(false),
        Err(e) => Err(e),
    }
}

/// Remove a cgroup directory and any child cgroups the container made (with a cgroup
/// namespace it may nest its own). rmdir fails with EBUSY while an exiting task is still
/// being released, so it is retried for up to `timeout`. A missing directory is success.
///
/// The rmdir comes first and the directory is listed only when it fails: a container's
/// cgroup rarely has children, and listing a cgroup directory makes the kernel build an
/// entry for each of its ~35 interface files, which every `delete` paid.
pub fn remove(path: &str, timeout: Duration) -> Result<()> {
    let p = Path::new(path);
    let start = Instant::now();
    let mut delay = Duration::from_micros(200);
    let mut children_removed = false;
    loop {
        match fs::remove_dir(p) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            // EBUSY: child cgroups (removed first, then at once again) or a task still
            // being released (waited for).
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && !children_removed => {
                children_removed = true;
                match fs::read_dir(p) {
                    Ok(entries) => {
                        for entry in entries.flatten() {
                            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                                remove(&entry.path().to_string_lossy(), timeout)?;
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(io_err(e, format!("list {path}"))),
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < timeout => {
                sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(io_err(e, format!("remove cgroup {path}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runh-test cgroup under the v1 pids hierarchy of this hybrid host, or the v2 root
    /// in the guest; skipped where neither is writable.
    fn scratch() -> Option<(String, bool)> {
        let id = std::process::id();
        for (base, v2) in [("/sys/fs/cgroup/pids", false), ("/sys/fs/cgroup", true)] {
            let v2_ok = Path::new(&format!("{base}/cgroup.controllers")).exists();
            if v2 != v2_ok {
                continue;
            }
            let dir = format!("{base}/runh-test-fs-{id}");
            if create_dir(&dir).is_ok() {
                return Some((dir, v2));
            }
        }
        None
    }

    #[test]
    fn write_read_remove() {
        let Some((dir, v2)) = scratch() else { return };
        let f = if v2 { "pids.max" } else { "pids.max" };
        write_all(&dir, &[(f.to_string(), "17".to_string())]).unwrap();
        assert_eq!(read_file(&dir, f).unwrap().trim(), "17");
        let err = write_file(&dir, f, "bogus").unwrap_err();
        assert_eq!(err.errno, libc::EINVAL);
        assert!(err.to_string().contains("pids.max"), "{err}");
        create_dir(&format!("{dir}/nested/deeper")).unwrap();
        remove(&dir, Duration::from_millis(500)).unwrap();
        assert!(!Path::new(&dir).exists());
        remove(&dir, Duration::from_millis(10)).unwrap();
    }
}

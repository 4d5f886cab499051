//! User and time namespaces: the id maps the parent writes for a new user namespace, and
//! the offsets of a new time namespace.
//!
//! User namespace handshake (see clone.rs): clone3 creates the user namespace together with
//! the others; the child then blocks on the sync socket *before* it execs runh-init,
//! because an exec by a uid that is not mapped in the namespace (it shows as the overflow
//! uid until the maps exist) drops every capability. The parent writes `uid_map`,
//! `setgroups` and `gid_map` here, sends `Msg::IdsMapped`, and the child becomes the
//! namespace's root (setresuid/setresgid 0) and execs init with its full capability set.
//!
//! Time namespace: clone with CLONE_NEWTIME puts the child into the new namespace at once,
//! and the kernel freezes a time namespace's offsets as soon as a process is in it, so
//! offsets could never be written. Instead init unshares CLONE_NEWTIME (only its future
//! children enter), writes `/proc/self/timens_offsets` and forks once; the fork is the
//! container's init. A new pid namespace asked together with it is unshared at the same
//! time (its pid 1 must be that fork). Cost: one fork of the small static init, about
//! 0.1 ms here, paid only by configs with a time namespace.
use crate::error::{Error, Result};
use crate::spec::{IdMapping, Spec};

/// The config has a new user namespace (one without a path).
pub fn new_userns(spec: &Spec) -> bool {
    spec.new_namespace("user")
}

/// The config joins a user namespace by path.
pub fn joins_userns(spec: &Spec) -> bool {
    spec.linux.iter().flat_map(|l| l.namespaces.iter()).any(|n| n.kind == "user" && !n.path.as_deref().unwrap_or("").is_empty())
}

/// Init side, right after setns into a joined user namespace: become its root. init's
/// uid is still the host's, unmapped there, and an exec (or the caps/user steps) by an
/// unmapped uid would lose every capability; setres[ug]id(0) keeps them (the kernel
/// counts a change *to* the namespace's root as gaining root, never as dropping it).
pub fn become_root() -> Result<()> {
    if unsafe { libc::setresgid(0, 0, 0) } < 0 {
        return Err(Error::last_os("setresgid 0 in the joined user namespace (is gid 0 mapped?)"));
    }
    if unsafe { libc::setresuid(0, 0, 0) } < 0 {
        return Err(Error::last_os("setresuid 0 in the joined user namespace (is uid 0 mapped?)"));
    }
    Ok(())
}

/// The config has a new time namespace (one without a path).
pub fn new_timens(spec: &Spec) -> bool {
    spec.new_namespace("time")
}

fn map_text(maps: &[IdMapping]) -> String {
    maps.iter().map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size)).collect()
}

/// Checks before anything is cloned: a new user namespace needs both maps and a root.
pub fn precheck(spec: &Spec) -> Result<()> {
    let linux = spec.linux.as_ref();
    let (uids, gids) = linux.map(|l| (&l.uid_mappings[..], &l.gid_mappings[..])).unwrap_or((&[], &[]));
    if !new_userns(spec) {
        // A user namespace joined by path keeps the maps it has: any given here are not
        // written (runc's behaviour), so they are only an error without a user namespace.
        if (!uids.is_empty() || !gids.is_empty()) && !joins_userns(spec) {
            return Err(Error::config("linux.uidMappings/gidMappings need a user namespace in linux.namespaces"));
        }
        return Ok(());
    }
    if uids.is_empty() || gids.is_empty() {
        return Err(Error::config("user namespaces enabled, but no uid or gid mappings found (linux.uidMappings, linux.gidMappings)"));
    }
    // The child becomes the namespace's root before it execs init (see the module doc).
    let maps_root = |ms: &[IdMapping]| ms.iter().any(|m| m.container_id == 0 && m.size > 0);
    if !maps_root(uids) || !maps_root(gids) {
        return Err(Error::config("user namespaces enabled, but no root user mapping found (containerID 0 in linux.uidMappings and gidMappings)"));
    }
    if uids.iter().chain(gids.iter()).any(|m| m.size == 0) {
        return Err(Error::config("linux.uidMappings/gidMappings: size must be at least 1"));
    }
    time_offsets(spec)?;
    Ok(())
}

fn euid() -> u32 {
    unsafe { libc::geteuid() }
}

fn egid() -> u32 {
    unsafe { libc::getegid() }
}

fn write_proc(pid: i32, file: &str, text: &str) -> Result<()> {
    let path = format!("/proc/{pid}/{file}");
    std::fs::write(&path, text).map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), format!("write {path} ({})", text.trim_end().replace('\n', ", "))))
}

/// The helper (newuidmap/newgidmap from shadow's uidmap package) that lets an
/// unprivileged user map the ranges /etc/subuid and /etc/subgid grant it.
fn run_helper(helper: &str, pid: i32, maps: &[IdMapping]) -> Result<()> {
    let mut cmd = std::process::Command::new(helper);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([m.container_id.to_string(), m.host_id.to_string(), m.size.to_string()]);
    }
    let out = cmd.stdin(std::process::Stdio::null()).output().map_err(|e| {
        Error::from_errno(e.raw_os_error().unwrap_or(libc::ENOENT), format!("run {helper} (install the uidmap package for multi-id rootless maps)"))
    })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(Error::from_errno(libc::EPERM, format!("{helper} {pid}: {msg} (are the ids in /etc/subuid and /etc/subgid?)")));
    }
    Ok(())
}

/// Parent side: write the child's uid_map, setgroups and gid_map.
///
/// As root (host user namespace) both maps are written directly and setgroups stays
/// "allow". An unprivileged caller may write only a one-id map of its own euid/egid, and
/// for gid_map only after writing "deny" to setgroups (user_namespaces(7)); any other map
/// goes through newuidmap/newgidmap, which check /etc/subuid and /etc/subgid and leave
/// setgroups allowed.
pub fn write_maps(pid: i32, spec: &Spec) -> Result<()> {
    let linux = match spec.linux.as_ref() {
        Some(l) => l,
        None => return Ok(()),
    };
    let (uids, gids) = (&linux.uid_mappings, &linux.gid_mappings);
    if euid() == 0 {
        write_proc(pid, "uid_map", &map_text(uids))?;
        write_proc(pid, "gid_map", &map_text(gids))?;
        return Ok(());
    }
    let own = |ms: &[IdMapping], id: u32| ms.len() == 1 && ms[0].host_id == id && ms[0].size == 1;
    if own(uids, euid()) {
        write_proc(pid, "uid_map", &map_text(uids))?;
    } else {
        run_helper("newuidmap", pid, uids)?;
    }
    if own(gids, egid()) {
        write_proc(pid, "setgroups", "deny")?;
        write_proc(pid, "gid_map", &map_text(gids))?;
    } else {
        run_helper("newgidmap", pid, gids)?;
    }
    Ok(())
}

/// linux.timeOffsets as the text of /proc/<pid>/timens_offsets ("monotonic S NS\n..."),
/// None without offsets.
pub fn time_offsets(spec: &Spec) -> Result<Option<String>> {
    let offsets = match spec.linux.as_ref() {
        Some(l) if !l.time_offsets.is_empty() => &l.time_offsets,
        _ => return Ok(None),
    };
    let mut text = String::new();
    for (clock, v) in offsets {
        if clock != "monotonic" && clock != "boottime" {
            return Err(Error::config(format!("linux.timeOffsets: unknown clock {clock:?} (monotonic or boottime)")));
        }
        let secs = v.get("secs").and_then(|s| s.as_i64()).unwrap_or(0);
        let nanos = v.get("nanosecs").and_then(|s| s.as_u64()).unwrap_or(0);
        if nanos >= 1_000_000_000 {
            return Err(Error::config(format!("linux.timeOffsets.{clock}.nanosecs must be below 1000000000")));
        }
        text.push_str(&format!("{clock} {secs} {nanos}\n"));
    }
    Ok(Some(text))
}

/// Init side: a new time namespace for init's children, with the offsets written while
/// no process is in it yet. `also` adds flags unshared in the same call (CLONE_NEWPID).
pub fn unshare_time(offsets: Option<&str>, also: libc::c_int) -> Result<()> {
    const CLONE_NEWTIME: libc::c_int = 0x80;
    if unsafe { libc::unshare(CLONE_NEWTIME | also) } < 0 {
        return Err(Error::last_os("unshare the time namespace"));
    }
    if let Some(text) = offsets {
        // Both clocks in one write: the kernel applies a write's lines together.
        std::fs::write("/proc/self/timens_offsets", text)
            .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), format!("write timens_offsets ({})", text.trim_end().replace('\n', ", "))))?;
    }
    Ok(())
}

/// Whether setgroups(2) is denied in this process's user namespace (a rootless one-id
/// gid map): then init cannot set supplementary groups, as with runc.
pub fn setgroups_denied() -> bool {
    std::fs::read("/proc/self/setgroups").map(|b| b.starts_with(b"deny")).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(linux: &str) -> Spec {
        serde_json::from_str(&format!(r#"{{"linux":{linux}}}"#)).unwrap()
    }

    #[test]
    fn prechecks() {
        assert!(precheck(&spec(r#"{"namespaces":[{"type":"user"}]}"#)).is_err());
        assert!(precheck(&spec(r#"{"uidMappings":[{"containerID":0,"hostID":1000,"size":1}]}"#)).is_err());
        let joined = r#"{"namespaces":[{"type":"user","path":"/proc/1/ns/user"}],"uidMappings":[{"containerID":0,"hostID":1000,"size":1}]}"#;
        assert!(precheck(&spec(joined)).is_ok());
        assert!(joins_userns(&spec(joined)) && !new_userns(&spec(joined)));
        let ok = r#"{"namespaces":[{"type":"user"}],"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":100000,"size":65536}]}"#;
        assert!(precheck(&spec(ok)).is_ok());
        let noroot = r#"{"namespaces":[{"type":"user"}],"uidMappings":[{"containerID":1,"hostID":100000,"size":6}],"gidMappings":[{"containerID":0,"hostID":100000,"size":6}]}"#;
        assert!(precheck(&spec(noroot)).unwrap_err().context.contains("root"));
    }

    #[test]
    fn offsets_text() {
        let s = spec(r#"{"timeOffsets":{"monotonic":{"secs":86400,"nanosecs":5},"boottime":{"secs":-10}}}"#);
        assert_eq!(time_offsets(&s).unwrap().unwrap(), "boottime -10 0\nmonotonic 86400 5\n");
        assert!(time_offsets(&spec(r#"{"timeOffsets":{"realtime":{"secs":1}}}"#)).is_err());
    }
}

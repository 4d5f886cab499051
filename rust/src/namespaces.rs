//! linux.namespaces: which ones clone creates, and which ones init joins by path.
use crate::error::{Error, Result};
use crate::spec::Spec;
use std::ffi::CString;

/// One namespace type as config.json names it, with its CLONE_NEW* flag.
pub fn flag(kind: &str) -> Option<libc::c_int> {
    Some(match kind {
        "pid" => libc::CLONE_NEWPID,
        "network" => libc::CLONE_NEWNET,
        "mount" => libc::CLONE_NEWNS,
        "ipc" => libc::CLONE_NEWIPC,
        "uts" => libc::CLONE_NEWUTS,
        "user" => libc::CLONE_NEWUSER,
        "cgroup" => libc::CLONE_NEWCGROUP,
        "time" => 0x80, // CLONE_NEWTIME
        _ => return None,
    })
}

/// What the config asks for, split by how it is done.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// CLONE_NEW* for the namespaces without a path: created by clone itself.
    pub clone_flags: u64,
    /// (CLONE_NEW* flag, path) for the ones to join; init opens all of them first and
    /// joins the mount namespace last, since it changes how later paths resolve.
    pub join: Vec<(libc::c_int, String)>,
}

impl Plan {
    pub fn from_spec(spec: &Spec) -> Result<Plan> {
        let mut plan = Plan::default();
        let mut seen = 0;
        for ns in spec.linux.iter().flat_map(|l| l.namespaces.iter()) {
            let f = flag(&ns.kind).ok_or_else(|| Error::config(format!("unknown namespace type {:?} in linux.namespaces", ns.kind)))?;
            if seen & f != 0 {
                return Err(Error::config(format!("namespace {:?} listed twice in linux.namespaces", ns.kind)));
            }
            seen |= f;
            match ns.path.as_deref() {
                Some(p) if !p.is_empty() => plan.join.push((f, p.to_string())),
                // New user and time namespaces: see userns.rs for how each is set up.
                _ => plan.clone_flags |= f as u64,
            }
        }
        // User first (runc's order): joining it grants the capabilities that joining the
        // namespaces it owns requires. Mount last: it changes what later paths mean.
        plan.join.sort_by_key(|(f, _)| match *f {
            libc::CLONE_NEWUSER => 0u8,
            libc::CLONE_NEWNS => 2,
            _ => 1,
        });
        Ok(plan)
    }

    /// A user namespace is joined by path. Then clone creates no namespace: a namespace
    /// clone made would be owned by runh's user namespace, where init holds no capability
    /// once it has joined the other one (mounting in it would fail with EPERM). init
    /// unshares them itself after the setns (`unshare_flags`), so the joined user
    /// namespace owns them, as with runc.
    pub fn joins_user(&self) -> bool {
        self.join.iter().any(|(f, _)| *f == libc::CLONE_NEWUSER)
    }

    /// A new user namespace together with namespaces joined by path. Joining a namespace
    /// owned by the host's user namespace needs CAP_SYS_ADMIN there, which a process
    /// that clone put in a new user namespace no longer has (setns: EPERM). So, in
    /// runc's order, clone makes no namespace: init joins the paths first as host root,
    /// then unshares the user namespace, then the new namespaces it is to own, and asks
    /// the parent for the maps (`Msg::UserNs`). About 0.1 ms more than a clone that
    /// makes them, paid only by these configs.
    pub fn late_userns(&self) -> bool {
        self.clone_flags & libc::CLONE_NEWUSER as u64 != 0 && !self.join.is_empty()
    }

    /// Whether init makes the new namespaces itself with unshare (instead of clone).
    pub fn init_unshares(&self) -> bool {
        self.joins_user() || self.late_userns()
    }

    /// The CLONE_NEW* flags for clone itself.
    pub fn clone_time_flags(&self) -> u64 {
        if self.init_unshares() { 0 } else { self.clone_flags }
    }

    /// The new namespaces init unshares after joining or making the user namespace: all
    /// of them but user itself, cgroup (unshared after cgroup placement, see sync::Plan)
    /// and time (userns.rs).
    pub fn unshare_flags(&self) -> libc::c_int {
        if !self.init_unshares() {
            return 0;
        }
        (self.clone_flags as libc::c_int) & !(libc::CLONE_NEWUSER | libc::CLONE_NEWCGROUP | 0x80)
    }

    /// init forks once to become the container's pid 1: a pid namespace joined by path or
    /// unshared by init (setns/unshare of CLONE_NEWPID only move future children), or a
    /// new time namespace (userns.rs). About 0.1 ms, paid only in these cases.
    pub fn init_forks(&self, new_time: bool) -> bool {
        self.joins_pid() || new_time || self.unshare_flags() & libc::CLONE_NEWPID != 0
    }

    pub fn has(&self, f: libc::c_int) -> bool {
        self.clone_flags & f as u64 != 0 || self.join.iter().any(|(g, _)| *g == f)
    }

    /// Whether a pid namespace is joined by path: setns(CLONE_NEWPID) only moves the
    /// caller's future children, so init must fork once more to be inside it.
    pub fn joins_pid(&self) -> bool {
        self.join.iter().any(|(f, _)| *f == libc::CLONE_NEWPID)
    }

    /// Whether the container gets a mount namespace of its own: one that clone makes, or
    /// one joined by path that is not runh's own (joining runh's own is sharing it, as
    /// leaving "mount" out is). For runh's checks before clone; init decides on the very
    /// namespace file it joins (`join_all`).
    pub fn private_mount_ns(&self) -> Result<bool> {
        self.private_ns(libc::CLONE_NEWNS, "mnt")
    }

    /// The same for the network namespace (linux.netDevices needs one to move into).
    pub fn private_net_ns(&self) -> Result<bool> {
        self.private_ns(libc::CLONE_NEWNET, "net")
    }

    fn private_ns(&self, flag: libc::c_int, name: &str) -> Result<bool> {
        if self.clone_flags & flag as u64 != 0 {
            return Ok(true);
        }
        match self.join.iter().find(|(f, _)| *f == flag) {
            None => Ok(false),
            Some((_, p)) => Ok(ns_id(p)? != ns_id(&format!("/proc/self/ns/{name}"))?),
        }
    }

    /// Open every path first (they are host paths, resolved before any setns changes the
    /// view), then setns in order. A mount namespace joined by path that is the caller's
    /// own is not joined (a no-op at best): returns whether a mount namespace other than
    /// the caller's was joined.
    pub fn join_all(&self) -> Result<bool> {
        let mut fds = Vec::with_capacity(self.join.len());
        for (f, p) in &self.join {
            let c = CString::new(p.as_str()).map_err(|_| Error::config("namespace path contains a NUL byte"))?;
            let fd = crate::fd::owned(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }, || format!("open namespace {p}"))?;
            fds.push((*f, fd, p));
        }
        let mut other_mount_ns = false;
        for (f, fd, p) in &fds {
            if *f == libc::CLONE_NEWNS {
                if fd_id(fd.as_raw_fd())? == ns_id("/proc/self/ns/mnt")? {
                    continue;
                }
                other_mount_ns = true;
            }
            if unsafe { libc::setns(fd.as_raw_fd(), *f) } < 0 {
                return Err(Error::last_os(format!("join namespace {p}")));
            }
        }
        Ok(other_mount_ns)
    }
}

use std::os::fd::AsRawFd;

/// A namespace file's identity (st_dev, st_ino).
fn ns_id(path: &str) -> Result<(u64, u64)> {
    let md = std::fs::metadata(path).map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::ENOENT), format!("stat namespace {path}")))?;
    Ok((std::os::unix::fs::MetadataExt::dev(&md), std::os::unix::fs::MetadataExt::ino(&md)))
}

fn fd_id(fd: std::os::fd::RawFd) -> Result<(u64, u64)> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(Error::last_os("stat a namespace"));
    }
    Ok((st.st_dev as u64, st.st_ino as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ns: &str) -> Spec {
        serde_json::from_str(&format!(r#"{{"linux":{{"namespaces":{ns}}}}}"#)).unwrap()
    }

    #[test]
    fn split() {
        let p = Plan::from_spec(&spec(
            r#"[{"type":"mount","path":"/proc/1/ns/mnt"},{"type":"pid"},{"type":"network","path":"/run/netns/x"},{"type":"uts"}]"#,
        ))
        .unwrap();
        assert_eq!(p.clone_flags, (libc::CLONE_NEWPID | libc::CLONE_NEWUTS) as u64);
        assert_eq!(p.join[0].0, libc::CLONE_NEWNET);
        assert_eq!(p.join[1].0, libc::CLONE_NEWNS);
        assert!(p.has(libc::CLONE_NEWUTS));
        assert!(!p.has(libc::CLONE_NEWIPC));
        assert!(!p.joins_pid());
    }

    #[test]
    fn joined_user_first_and_new_ones_unshared() {
        let p = Plan::from_spec(&spec(
            r#"[{"type":"mount"},{"type":"network","path":"/run/netns/x"},{"type":"pid"},{"type":"user","path":"/proc/9/ns/user"},{"type":"cgroup"}]"#,
        ))
        .unwrap();
        assert!(p.joins_user());
        assert_eq!(p.join[0].0, libc::CLONE_NEWUSER);
        assert_eq!(p.join[1].0, libc::CLONE_NEWNET);
        assert_eq!(p.clone_time_flags(), 0);
        assert_eq!(p.unshare_flags(), libc::CLONE_NEWNS | libc::CLONE_NEWPID);
        assert!(p.init_forks(false));
        let plain = Plan::from_spec(&spec(r#"[{"type":"mount"},{"type":"pid"}]"#)).unwrap();
        assert_eq!(plain.clone_time_flags(), plain.clone_flags);
        assert_eq!(plain.unshare_flags(), 0);
        assert!(!plain.init_forks(false) && plain.init_forks(true));
    }

    #[test]
    fn new_user_with_joined_paths_is_made_by_init() {
        let p = Plan::from_spec(&spec(
            r#"[{"type":"mount"},{"type":"user"},{"type":"network","path":"/run/netns/x"},{"type":"pid"},{"type":"cgroup"}]"#,
        ))
        .unwrap();
        assert!(p.late_userns() && !p.joins_user() && p.init_unshares());
        assert_eq!(p.clone_time_flags(), 0);
        assert_eq!(p.unshare_flags(), libc::CLONE_NEWNS | libc::CLONE_NEWPID);
        assert!(p.init_forks(false));
        let cloned = Plan::from_spec(&spec(r#"[{"type":"user"},{"type":"pid"}]"#)).unwrap();
        assert!(!cloned.late_userns() && cloned.unshare_flags() == 0);
        assert_eq!(cloned.clone_time_flags(), (libc::CLONE_NEWUSER | libc::CLONE_NEWPID) as u64);
    }

    #[test]
    fn rejects() {
        assert!(Plan::from_spec(&spec(r#"[{"type":"bogus"}]"#)).is_err());
        assert!(Plan::from_spec(&spec(r#"[{"type":"pid"},{"type":"pid"}]"#)).is_err());
    }
}

/// setns(CLONE_NEWPID) and unshare(CLONE_NEWPID) only place future children in the pid
/// namespace: fork once, paid only in those cases (about 0.1 ms here). The first process
/// tells runh the new pid (in runh's pid namespace) over the sync socket and leaves; this
/// returns in the child, once that `Msg::Pid` is sent, so that runh always learns the pid
/// before anything the child says. `what` names the namespace in the error.
pub fn fork_into_pid_namespace(sync_fd: std::os::unix::io::RawFd, what: &str) -> Result<()> {
    let mut p = [0; 2];
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(Error::last_os(format!("pipe before the fork into {what}")));
    }
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = Error::last_os(format!("fork into {what}"));
        unsafe {
            libc::close(p[0]);
            libc::close(p[1]);
        }
        return Err(e);
    }
    if pid > 0 {
        let _ = crate::sync::send(sync_fd, &crate::sync::Msg::Pid(pid));
        unsafe { libc::_exit(0) }; // closes the pipe: the child goes on
    }
    unsafe {
        libc::close(p[1]);
        let mut b = [0u8; 1];
        while libc::read(p[0], b.as_mut_ptr().cast(), 1) < 0 && *libc::__errno_location() == libc::EINTR {}
        libc::close(p[0]);
    }
    Ok(())
}

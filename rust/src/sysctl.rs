//! linux.sysctl: which keys a container may set, checked before anything is created, and
//! the writes, made by init through the container's own procfs.
//!
//! A sysctl is written from inside the container's namespaces, but most of them are not
//! namespaced at all, and the namespaced ones change the host's value when the container
//! shares that namespace with the host (a `fs.mqueue.queues_max` without a private IPC
//! namespace changed the host's). runc's rules, which runh follows: the IPC keys need an
//! IPC namespace, `net.*` a network namespace, `kernel.hostname`/`kernel.domainname` a
//! UTS namespace (and agree with `hostname`/`domainname`), each not the runtime's own
//! (a namespace joined by path that is the host's is refused); every other key is refused.
use crate::error::{Error, Result};
use crate::namespaces;
use crate::spec::Spec;

/// The IPC namespace's sysctls besides fs.mqueue.* (runc's list, ipc_sysctl.c).
const IPC_KEYS: &[&str] = &[
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// (CLONE_NEW* flag, /proc/self/ns name, spec name) of the namespace a key belongs to.
fn namespace_of(key: &str) -> Option<(libc::c_int, &'static str, &'static str)> {
    if IPC_KEYS.contains(&key) || key.starts_with("fs.mqueue.") {
        Some((libc::CLONE_NEWIPC, "ipc", "ipc"))
    } else if key.starts_with("net.") {
        Some((libc::CLONE_NEWNET, "net", "network"))
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some((libc::CLONE_NEWUTS, "uts", "uts"))
    } else {
        None
    }
}

fn same_file(a: &str, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => false,
    }
}

/// Every linux.sysctl key is one the container may set (see the module doc). Runs in the
/// runtime, before clone, so a refused key leaves nothing behind and writes nothing.
pub fn precheck(spec: &Spec, ns: &namespaces::Plan) -> Result<()> {
    let Some(linux) = &spec.linux else { return Ok(()) };
    for (key, value) in &linux.sysctl {
        if key.is_empty() || key.contains("..") || key.contains('/') {
            return Err(Error::config(format!("linux.sysctl: invalid key {key:?}")));
        }
        let Some((flag, nsname, specname)) = namespace_of(key) else {
            return Err(Error::config(format!("linux.sysctl: {key:?} is not in a separate kernel namespace")));
        };
        if !ns.has(flag) {
            return Err(Error::config(format!("linux.sysctl: {key:?} is not allowed without a private {specname} namespace")));
        }
        if let Some((_, path)) = ns.join.iter().find(|(f, _)| *f == flag) {
            if same_file(path, &format!("/proc/self/ns/{nsname}")) {
                return Err(Error::config(format!("linux.sysctl: {key:?} is not allowed in the host's {specname} namespace ({path})")));
            }
        }
        let field = match key.as_str() {
            "kernel.hostname" => Some(("hostname", spec.hostname.as_deref())),
            "kernel.domainname" => Some(("domainname", spec.domainname.as_deref())),
            _ => None,
        };
        if let Some((name, Some(set))) = field {
            if !set.is_empty() && set != value {
                return Err(Error::config(format!("linux.sysctl: {key} {value:?} conflicts with {name} {set:?}")));
            }
        }
    }
    Ok(())
}

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Write every linux.sysctl key, in init, after pivot_root: through an fd of the
/// container's /proc/sys (checked to be procfs) and beneath it, following no symlink.
pub fn apply(spec: &Spec) -> Result<()> {
    let Some(linux) = spec.linux.as_ref().filter(|l| !l.sysctl.is_empty()) else { return Ok(()) };
    let dir = crate::fd::owned(
        unsafe { libc::open(c"/proc/sys".as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) },
        || "open /proc/sys".into(),
    )?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    use std::os::fd::AsRawFd;
    if unsafe { libc::fstatfs(dir.as_raw_fd(), &mut st) } != 0 || st.f_type as i64 != PROC_SUPER_MAGIC {
        return Err(Error::from_errno(libc::EINVAL, "/proc/sys is not procfs: cannot set linux.sysctl"));
    }
    for (key, value) in &linux.sysctl {
        let rel = std::ffi::CString::new(key.replace('.', "/")).map_err(|_| Error::config(format!("linux.sysctl: invalid key {key:?}")))?;
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_WRONLY | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;
        let fd = crate::fd::owned(
            unsafe { libc::syscall(libc::SYS_openat2, dir.as_raw_fd(), rel.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>()) } as libc::c_int,
            || format!("set sysctl {key}={value}"),
        )?;
        let n = unsafe { libc::write(fd.as_raw_fd(), value.as_ptr().cast(), value.len()) };
        if n < 0 || n as usize != value.len() {
            return Err(Error::last_os(format!("set sysctl {key}={value}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sysctl: &str, ns: &str, extra: &str) -> Result<()> {
        let spec: Spec = serde_json::from_str(&format!(r#"{{{extra}"linux":{{"sysctl":{sysctl},"namespaces":{ns}}}}}"#)).unwrap();
        precheck(&spec, &namespaces::Plan::from_spec(&spec).unwrap())
    }

    #[test]
    fn runc_rules() {
        let all = r#"[{"type":"ipc"},{"type":"network"},{"type":"uts"},{"type":"mount"}]"#;
        assert!(check(r#"{"fs.mqueue.queues_max":"10","kernel.shmmax":"1","net.ipv4.ip_forward":"1","kernel.domainname":"d"}"#, all, "").is_ok());
        assert!(check(r#"{"fs.mqueue.queues_max":"10"}"#, r#"[{"type":"mount"}]"#, "").unwrap_err().context.contains("ipc"));
        assert!(check(r#"{"net.ipv4.ip_forward":"1"}"#, r#"[{"type":"ipc"}]"#, "").unwrap_err().context.contains("network"));
        assert!(check(r#"{"kernel.hostname":"h"}"#, r#"[{"type":"ipc"}]"#, "").is_err());
        assert!(check(r#"{"kernel.hostname":"h"}"#, all, r#""hostname":"other","#).unwrap_err().context.contains("conflicts"));
        assert!(check(r#"{"kernel.hostname":"h"}"#, all, r#""hostname":"h","#).is_ok());
        assert!(check(r#"{"vm.swappiness":"1"}"#, all, "").unwrap_err().context.contains("separate kernel namespace"));
        assert!(check(r#"{"net/ipv4/ip_forward":"1"}"#, all, "").is_err());
        let host = r#"[{"type":"ipc","path":"/proc/self/ns/ipc"},{"type":"mount"}]"#;
        assert!(check(r#"{"kernel.shmmax":"1"}"#, host, "").unwrap_err().context.contains("host's"));
    }
}

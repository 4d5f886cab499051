//! AppArmor and SELinux: the profile and labels a config asks for, through the kernel's
//! own interfaces (no libapparmor, no libselinux).
//!
//! - `process.apparmorProfile` and `process.selinuxLabel` are *exec* attributes: written
//!   to /proc/thread-self/attr/{apparmor/exec,exec}, they take effect at the next execve of
//!   this thread and at nothing before it. So runh-init's own code never runs confined:
//!   `process::finish` writes them among its last steps, after the startContainer hooks
//!   (whose forks would inherit an AppArmor onexec), and the container's execve is the
//!   transition. Both runh-init (create) and runh-exec (exec) are single-threaded, and
//!   /proc/thread-self names the writing thread itself (the kernel allows a task to write
//!   only its own attributes, through a file it opened with its current credentials).
//! - `linux.mountLabel` is the `context=` of the mounts that take one (mounts.rs) and the
//!   label of the masked directories' tmpfs, as with runc; mqueue gets it as its
//!   security.selinux xattr. The session keyring init makes is labelled with the
//!   *process* label (attr/keycreate), as runc does.
//! - A profile or label asked for where its LSM is not enabled is refused before anything
//!   is made (create's precheck, exec's parent), as runc and crun refuse it: silently
//!   running the container unconfined is the failure this module exists to prevent.
use crate::error::{Error, Result};
use crate::spec::{Process, Spec};
use std::ffi::CString;
use std::os::fd::AsRawFd;

const PROC_SUPER_MAGIC: libc::c_long = 0x9fa0;
const SELINUX_MAGIC: libc::c_long = 0xf97c_ff8c;

/// AppArmor is enabled in the running kernel: its module parameter, the kernel's own
/// answer (it is "N" when the LSM was left out at boot, and absent without AppArmor).
pub fn apparmor_enabled() -> bool {
    std::fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|b| b.first() == Some(&b'Y'))
}

/// SELinux is enabled: selinuxfs is mounted at /sys/fs/selinux, and a policy is loaded
/// (before one is, every task's context reads "kernel"). libselinux's and go-selinux's
/// test.
pub fn selinux_enabled() -> bool {
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c"/sys/fs/selinux".as_ptr(), &mut st) } != 0 || st.f_type as libc::c_long != SELINUX_MAGIC {
        return false;
    }
    std::fs::read("/proc/self/attr/current").is_ok_and(|c| !c.is_empty() && c.strip_suffix(b"\0").unwrap_or(&c) != b"kernel")
}

fn given(s: &Option<String>) -> Option<String> {
    s.as_deref().filter(|s| !s.is_empty()).map(str::to_string)
}

/// What the process's execve must become: its AppArmor profile and SELinux label.
#[derive(Debug, Default, Clone)]
pub struct ExecAttrs {
    pub apparmor: Option<String>,
    pub selinux: Option<String>,
}

impl ExecAttrs {
    pub fn of_process(p: &Process) -> ExecAttrs {
        ExecAttrs { apparmor: given(&p.apparmor_profile), selinux: given(&p.selinux_label) }
    }

    /// Refuse what this host cannot enforce (runh's side, before any process exists).
    pub fn check(&self) -> Result<()> {
        if let Some(a) = &self.apparmor {
            if !apparmor_enabled() {
                return Err(Error::config(format!("process.apparmorProfile {a:?} is set, but AppArmor is not enabled on this host")));
            }
        }
        if let Some(l) = &self.selinux {
            if !selinux_enabled() {
                return Err(Error::config(format!("process.selinuxLabel {l:?} is set, but SELinux is not enabled on this host")));
            }
        }
        Ok(())
    }

    /// Write the exec attributes of this thread. Runs in `process::finish`: before seccomp
    /// (a filter need not allow open and write) and before no_new_privs (under it AppArmor
    /// refuses an exec transition asked for by a confined task).
    pub fn apply(&self) -> Result<()> {
        if let Some(a) = &self.apparmor {
            // The LSM-specific file (5.1+) is AppArmor's even when another LSM owns attr/exec.
            let path = if std::path::Path::new("/proc/thread-self/attr/apparmor/exec").exists() {
                "/proc/thread-self/attr/apparmor/exec"
            } else {
                "/proc/thread-self/attr/exec"
            };
            write_attr(path, format!("exec {a}").as_bytes())
                .map_err(|e| Error::from_errno(e.errno, format!("apply AppArmor profile {a:?} (process.apparmorProfile): {}", e.context)))?;
        }
        if let Some(l) = &self.selinux {
            write_attr("/proc/thread-self/attr/exec", l.as_bytes())
                .map_err(|e| Error::from_errno(e.errno, format!("set SELinux exec label {l:?} (process.selinuxLabel): {}", e.context)))?;
        }
        Ok(())
    }
}

/// Create's and exec's refusal of a config this host's LSMs cannot honour.
pub fn precheck(spec: &Spec) -> Result<()> {
    if let Some(p) = &spec.process {
        ExecAttrs::of_process(p).check()?;
    }
    if let Some(l) = mount_label(spec) {
        if !selinux_enabled() {
            return Err(Error::config(format!("linux.mountLabel {l:?} is set, but SELinux is not enabled on this host")));
        }
    }
    Ok(())
}

pub fn mount_label(spec: &Spec) -> Option<&str> {
    spec.linux.as_ref().and_then(|l| l.mount_label.as_deref()).filter(|l| !l.is_empty())
}

/// Mount data with the SELinux `context=` option appended (runc's quoting, which keeps
/// the commas of an MCS range inside one option).
pub fn with_context(data: &str, label: Option<&str>) -> String {
    match label {
        None => data.to_string(),
        Some(l) if data.is_empty() => format!("context=\"{l}\""),
        Some(l) => format!("{data},context=\"{l}\""),
    }
}

/// The label of the next keyring this thread group creates (attr/keycreate of the
/// thread-group leader, which init is); None resets it.
pub fn set_keycreate(label: Option<&str>) -> Result<()> {
    write_attr("/proc/self/attr/keycreate", label.unwrap_or("").as_bytes())
        .map_err(|e| Error::from_errno(e.errno, format!("label the session keyring (process.selinuxLabel): {}", e.context)))
}

/// security.selinux of a mount point (mqueue has no context= option), through the fd.
pub fn set_file_label(path_of_fd: &CString, label: &str) -> Result<()> {
    let r = unsafe { libc::setxattr(path_of_fd.as_ptr(), c"security.selinux".as_ptr(), label.as_ptr().cast(), label.len(), 0) };
    if r < 0 {
        return Err(Error::last_os(format!("set the SELinux label {label:?} (linux.mountLabel)")));
    }
    Ok(())
}

/// One write to a /proc attribute file that must really be procfs: after pivot_root
/// /proc is the container's, and a masked path (a bind of /dev/null or a tmpfs) over an
/// attr file would otherwise swallow the write and leave the process unconfined (the
/// class of CVE-2019-16884).
fn write_attr(path: &str, value: &[u8]) -> Result<()> {
    let c = CString::new(path).unwrap();
    let fd = crate::fd::owned(unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW) }, || format!("open {path}"))?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(Error::last_os(format!("fstatfs {path}")));
    }
    if st.f_type as libc::c_long != PROC_SUPER_MAGIC {
        return Err(Error::from_errno(libc::EXDEV, format!("{path} is not on procfs")));
    }
    let n = unsafe { libc::write(fd.as_raw_fd(), value.as_ptr().cast(), value.len()) };
    if n < 0 {
        return Err(Error::last_os(format!("write {path}")));
    }
    if n as usize != value.len() {
        return Err(Error::from_errno(libc::EIO, format!("short write to {path}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_option() {
        assert_eq!(with_context("", None), "");
        assert_eq!(with_context("mode=755", None), "mode=755");
        assert_eq!(with_context("", Some("system_u:object_r:container_file_t:s0")), "context=\"system_u:object_r:container_file_t:s0\"");
        assert_eq!(with_context("mode=755", Some("u:r:t:s0:c1,c2")), "mode=755,context=\"u:r:t:s0:c1,c2\"");
    }

    #[test]
    fn empty_means_none() {
        let p = Process { apparmor_profile: Some(String::new()), selinux_label: Some(String::new()), ..Default::default() };
        let a = ExecAttrs::of_process(&p);
        assert!(a.apparmor.is_none() && a.selinux.is_none());
        a.check().unwrap();
        a.apply().unwrap(); // nothing asked: nothing written
    }

    #[test]
    fn attr_writes_need_procfs() {
        // /dev/null (a mask's bind) is not procfs: the write is refused, never swallowed.
        let e = write_attr("/dev/null", b"exec x").unwrap_err();
        assert_eq!(e.errno, libc::EXDEV);
    }
}

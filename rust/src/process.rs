//! The container process's own attributes, set by init: user and groups, umask, rlimits,
//! oom_score_adj, no_new_privs, the executable lookup, cwd, the fd sweep and execve.
use crate::error::{check, Error, Result};
use crate::spec::{Process, Rlimit, User};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;

/// runc's default when process.env has no PATH.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::config(format!("{what} contains a NUL byte")))
}

/// Every signal back to its default action and none blocked. Python ignores SIGPIPE and
/// an ignored disposition survives execve, so without this the container would run with
/// SIGPIPE ignored (and runh-init itself would survive writes to a closed pipe).
pub fn reset_signals() {
    unsafe {
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// The resolved program to execve, built before `start` so start does no lookups.
pub struct Exec {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
}

impl Exec {
    pub fn prepare(p: &Process) -> Result<Exec> {
        let name = p.args.first().ok_or_else(|| Error::config("process.args must not be empty"))?;
        let path_var = p.env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
        let path = look_path(name, path_var)?;
        Ok(Exec {
            path: cstring(&path, "process.args[0]")?,
            argv: p.args.iter().map(|a| cstring(a, "process.args")).collect::<Result<_>>()?,
            envp: p.env.iter().map(|e| cstring(e, "process.env")).collect::<Result<_>>()?,
        })
    }

    /// execve; returns only on failure, with runc's wording.
    pub fn exec(&self) -> Error {
        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.envp.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        unsafe { libc::execve(self.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let e = Error::last_os("");
        Error::exec(
            e.errno,
            format!("exec {:?}: {}", self.path.to_string_lossy(), std::io::Error::from_raw_os_error(e.errno).to_string().split(" (os error").next().unwrap_or("").to_lowercase()),
        )
    }
}

fn is_executable(p: &std::path::Path) -> std::io::Result<bool> {
    let m = std::fs::metadata(p)?;
    Ok(!m.is_dir() && m.permissions().mode() & 0o111 != 0)
}

/// Find `name` the way Go's exec.LookPath does (runc's behaviour, which callers see):
/// a name with a slash is used as is; otherwise the first PATH entry holding an
/// executable non-directory wins; an empty entry means the cwd.
pub fn look_path(name: &str, path_var: &str) -> Result<String> {
    if name.contains('/') {
        return match is_executable(std::path::Path::new(name)) {
            Ok(true) => Ok(name.to_string()),
            Ok(false) => Err(Error::exec(libc::EACCES, format!("exec: {name:?}: permission denied"))),
            Err(e) => Err(Error::exec(
                e.raw_os_error().unwrap_or(libc::ENOENT),
                format!("exec: {name:?}: stat {name}: {}", e.to_string().split(" (os error").next().unwrap_or("").to_lowercase()),
            )),
        };
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = format!("{dir}/{name}");
        if let Ok(true) = is_executable(std::path::Path::new(&cand)) {
            return Ok(cand);
        }
    }
    Err(Error::exec(libc::ENOENT, format!("exec: {name:?}: executable file not found in $PATH")))
}

/// chdir to process.cwd, then make sure it lies inside the container's root
/// (CVE-2024-21626: a cwd reached through a leaked host fd resolves outside the root, and
/// getcwd then reports it as unreachable, ENOENT in glibc). With `create` (the init's,
/// not exec's: runc does the same) a cwd missing from the rootfs is made first, 0755 with
/// its parents, resolved inside the root ("/" is the container's by then); only when the
/// chdir has failed, so an existing cwd costs nothing more.
pub fn enter_cwd(cwd: &str, create: bool) -> Result<()> {
    let cwd = if cwd.is_empty() { "/" } else { cwd };
    let c = cstring(cwd, "process.cwd")?;
    let what = || format!("chdir to cwd ({cwd:?}) set in config.json");
    if unsafe { libc::chdir(c.as_ptr()) } != 0 {
        let e = Error::last_os(what());
        if !(create && e.errno == libc::ENOENT) {
            return Err(e);
        }
        make_cwd(cwd)?;
        check(unsafe { libc::chdir(c.as_ptr()) }, what)?;
    }
    match std::env::current_dir() {
        Ok(p) if p.as_os_str().as_bytes().starts_with(b"/") => Ok(()),
        Ok(p) => Err(Error::from_errno(libc::ENOENT, format!("current working directory {p:?} is outside of the container root"))),
        Err(e) => Err(Error::from_errno(
            e.raw_os_error().unwrap_or(libc::ENOENT),
            "current working directory is outside of the container root",
        )),
    }
}

/// process.cwd created if missing, inside the container's root ("/" by now).
pub fn make_cwd(cwd: &str) -> Result<()> {
    let root = crate::fd::owned(unsafe { libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) }, || "open /".into())?;
    crate::inroot::ensure_in_root(std::os::fd::AsRawFd::as_raw_fd(&root), cwd, crate::inroot::Create::Dir)
        .map(drop)
        .map_err(|e| Error::from_errno(e.errno, format!("create cwd ({cwd:?}) set in config.json: {}", e.context)))
}

/// setrlimit's resource type differs between glibc and musl (init may be built with either).
#[cfg(target_env = "gnu")]
pub type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
pub type RlimitResource = libc::c_int;

pub fn rlimit_resource(name: &str) -> Option<RlimitResource> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// setrlimit each entry. Raising a hard limit needs CAP_SYS_RESOURCE; without it (as on
/// this build machine) the kernel's EPERM is reported with the limit's name.
pub fn set_rlimits(rlimits: &[Rlimit]) -> Result<()> {
    for r in rlimits {
        let res = rlimit_resource(&r.kind).ok_or_else(|| Error::config(format!("unknown rlimit type {:?}", r.kind)))?;
        let lim = libc::rlimit { rlim_cur: r.soft, rlim_max: r.hard };
        check(unsafe { libc::setrlimit(res, &lim) }, || format!("set rlimit {}", r.kind))?;
    }
    Ok(())
}

pub fn set_oom_score_adj(v: i32) -> Result<()> {
    std::fs::write("/proc/self/oom_score_adj", v.to_string())
        .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), format!("set oom_score_adj to {v}")))
}

/// Groups, gid, uid. PR_SET_KEEPCAPS keeps the permitted set across setuid so that
/// `caps::apply` can then choose what the process keeps.
pub fn set_user(u: &User) -> Result<()> {
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) }, || "prctl(PR_SET_KEEPCAPS)".into())?;
    let groups: Vec<libc::gid_t> = u.additional_gids.clone();
    // A rootless one-id gid map denies setgroups(2); with no additional gids asked for
    // there is nothing to set (runc skips it the same way).
    if !(groups.is_empty() && crate::userns::setgroups_denied()) {
        check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }, || format!("setgroups {:?}", u.additional_gids))?;
    }
    check(unsafe { libc::setresgid(u.gid, u.gid, u.gid) }, || format!("setgid {}", u.gid))?;
    check(unsafe { libc::setresuid(u.uid, u.uid, u.uid) }, || format!("setuid {}", u.uid))?;
    Ok(())
}

pub fn clear_keepcaps() {
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
}

/// runc's default umask when process.user.umask is unset.
pub fn set_umask(u: &User) {
    unsafe { libc::umask(u.umask.unwrap_or(0o022) as libc::mode_t) };
}

pub fn set_no_new_privs() -> Result<()> {
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }, || "prctl(PR_SET_NO_NEW_PRIVS)".into()).map(|_| ())
}

/// Mark every fd from `first` up close-on-exec, so only stdio and the preserved fds
/// reach the container (CVE-2024-21626). One syscall; CLOEXEC rather than close keeps the
/// start connection open until execve succeeds, which is how `start` learns of success.
pub fn cloexec_from(first: u32) -> Result<()> {
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return Ok(());
    }
    // Pre-5.11 kernels: walk /proc/self/fd.
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(0), "list /proc/self/fd"))?;
    let fds: Vec<i32> = dir.filter_map(|d| d.ok()?.file_name().to_str()?.parse().ok()).collect();
    for fd in fds {
        if fd >= first as i32 {
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    Ok(())
}

/// What the last steps before execve change, for the init after `start` and for exec.
pub struct Final<'a> {
    pub attrs: &'a crate::procattr::Attrs,
    /// Always applied: an absent process.capabilities is the empty set (caps::Sets::of_process).
    pub caps: &'a crate::caps::Sets,
    pub user: &'a User,
    pub no_new_privileges: bool,
    pub preserve_fds: i32,
    /// The AppArmor profile and SELinux label the execve transitions to (lsm.rs).
    pub lsm: &'a crate::lsm::ExecAttrs,
}

/// The last steps before execve, in one order for init and exec: privileged scheduling
/// (needs CAP_SYS_NICE / CAP_SYS_ADMIN) first; the bounding set, user, capabilities,
/// umask, no_new_privs; the fd sweep. `load_seccomp` runs once: without no_new_privs
/// seccomp(2) needs CAP_SYS_ADMIN, so before the user and capabilities change (runc's
/// order, so the profile must allow setuid/setgroups/capset/prctl, as Docker's does);
/// with it, last, after the fd sweep, so only execve (and sendmsg/close for a listener)
/// run under the filter and profiles need not allow runh's own setup calls.
/// The LSM exec attributes are written as late as they can be: just before the first of
/// seccomp (a filter need not allow their open and write) and no_new_privs (under it
/// AppArmor refuses a transition asked for by a confined task). They take effect only at
/// the execve, so nothing of runh's runs confined either way.
pub fn finish(f: &Final, load_seccomp: impl FnOnce() -> Result<()>) -> Result<()> {
    f.attrs.apply_privileged()?;
    let mut load_seccomp = Some(load_seccomp);
    if !f.no_new_privileges {
        f.lsm.apply()?;
        (load_seccomp.take().unwrap())()?;
    }
    crate::caps::drop_bounding(f.caps)?;
    set_user(f.user)?;
    crate::caps::apply(f.caps)?;
    clear_keepcaps();
    set_umask(f.user);
    if f.no_new_privileges {
        f.lsm.apply()?;
        set_no_new_privs()?;
    }
    f.attrs.apply_final()?;
    cloexec_from(3 + f.preserve_fds as u32)?;
    if let Some(load) = load_seccomp {
        load()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup() {
        assert_eq!(look_path("sh", "/nonexistent:/bin").unwrap(), "/bin/sh");
        let e = look_path("no-such-prog-xyz", "/bin:/usr/bin").unwrap_err();
        assert_eq!(e.context, "exec: \"no-such-prog-xyz\": executable file not found in $PATH");
        assert_eq!(e.kind, crate::error::Kind::Exec);
        assert!(look_path("/bin/sh", "").is_ok());
        assert!(look_path("/etc/passwd", "").is_err());
        // A directory on PATH with the name is skipped.
        assert!(look_path("bin", "/").is_err());
    }

    #[test]
    fn rlimit_names() {
        assert_eq!(rlimit_resource("RLIMIT_NOFILE"), Some(libc::RLIMIT_NOFILE));
        assert!(rlimit_resource("RLIMIT_BOGUS").is_none());
    }
}

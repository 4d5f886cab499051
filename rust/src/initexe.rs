//! runh-init's exec object: the fd the clone child execveat's, made fresh for each create
//! and exec.
//!
//! Why not the file itself: every process that enters a container before its execve has
//! runh-init as /proc/self/exe, and a container process that can open that for writing
//! (CVE-2019-5736) would rewrite the host's runh-init, which every later container runs
//! as host root. So the child never execs the installed file through a writable mount:
//!
//! - **Read-only detached bind (the default).** `open_tree(OPEN_TREE_CLONE)` of the one
//!   installed file (`<package>/runh-init`, next to `_core`; build.rs puts it there) and
//!   `mount_setattr(MOUNT_ATTR_RDONLY)` on that copy. Nothing is copied: the pages are the
//!   file's page cache, shared by every container, and /proc/<pid>/exe reads "/" and
//!   refuses O_WRONLY/O_RDWR with EROFS. The mount is never attached, so no mountinfo
//!   (runh's, the host's, the container's) shows it, and it is gone once the last process
//!   running from it has exec'd on (the fd is CLOEXEC). Cost here (kernel 6.18, 2 busy
//!   cores, median of 20 creates, "core: init exe" in RUNH_TIMING): open + fstat +
//!   open_tree + mount_setattr 0.027 ms, against 0.85 ms for the memfd copy of the 1.49 MB
//!   static-glibc init; and the Python process no longer maps 1.5 MB of embedded init
//!   bytes (peak RSS of `run` 12.3 → 10.9 MB; native exec 4.7 → 2.5 ms wall).
//!   benches/results/initexe/ has the commands.
//! - **Sealed memfd (the fallback).** memfd_create, filled from the same file in the
//!   kernel (sendfile: the file is never mapped into this process; 0.86 ms), sealed against writes,
//!   growth, shrinking and new seals. Used where the mount API is refused (rootless:
//!   EPERM; kernels before 5.12: ENOSYS) and for configs where a container process could
//!   undo the read-only flag (`needs_memfd`).
//!
//! Why the memfd for those configs: a detached mount has no parent, and the kernel lets
//! any process with CAP_SYS_ADMIN over its own mount namespace run mount_setattr on it by
//! path (measured here: a process in another mount namespace cleared MOUNT_ATTR_RDONLY
//! through /proc/<pid>/fd/<n> and then opened the file O_WRONLY). Reaching the path needs
//! ptrace access to the non-dumpable init (CAP_SYS_PTRACE over the user namespace it
//! exec'd in), and writing the root-owned file needs host uid 0. runc 1.2 answers this
//! with a lower-only overlayfs (no way to make it writable) per call; runh takes the
//! cheaper bind for the common, unprivileged container and the memfd wherever a process
//! that shares the container's pid namespace may hold CAP_SYS_ADMIN (docs/SECURITY.md).
//!
//! The file is checked on its fd before use: a regular file, owned by root (or by the
//! caller, for a rootless runh, or by the owner of the running runh code itself),
//! writable by its owner alone. Anything else is refused (EPERM), never run or copied.
use crate::error::{Error, Result};
use crate::spec::Spec;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The installed init's file name, in the Python package directory next to `_core`.
pub const FILE_NAME: &str = "runh-init";

/// Set by tests only: always take the sealed memfd (the fallback's own proof).
pub const FORCE_MEMFD_ENV: &str = "RUNH_INIT_MEMFD";

static PATH: OnceLock<PathBuf> = OnceLock::new();

/// Which exec object `open` made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bind,
    Memfd,
}

/// Name the installed init (the native launcher, which finds it under its prefix).
pub fn set_path(p: PathBuf) {
    let _ = PATH.set(p);
}

fn path() -> Result<&'static Path> {
    if let Some(p) = PATH.get() {
        return Ok(p);
    }
    let so = own_code()?;
    let p = so.parent().map(Path::to_path_buf).unwrap_or_default().join(FILE_NAME);
    Ok(PATH.get_or_init(|| p))
}

/// The file of the code running this: the shared object (`runh/_core.abi3.so`), or the
/// launcher's /proc/self/exe.
#[cfg(feature = "python")]
fn own_code() -> Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let addr = own_code as fn() -> Result<PathBuf> as *const libc::c_void;
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return Err(Error::from_errno(libc::ENOENT, "locate runh._core (dladdr) to find runh-init"));
    }
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
}

#[cfg(not(feature = "python"))]
fn own_code() -> Result<PathBuf> {
    Ok(PathBuf::from("/proc/self/exe"))
}

const CAP_SYS_ADMIN: &str = "CAP_SYS_ADMIN";

/// Whether a process that can see this container's processes may hold CAP_SYS_ADMIN, and
/// so clear the bind's read-only flag: any capability set of the config's process or of
/// an exec's own names it (inheritable too: with a file's inheritable caps it becomes
/// permitted past the bounding set), or the pid namespace is not the container's own
/// (joined by path, or none: peers of unknown privilege).
pub fn needs_memfd(spec: &Spec, exec_caps: Option<&crate::spec::Capabilities>) -> bool {
    let has_admin = |c: &crate::spec::Capabilities| {
        [&c.bounding, &c.effective, &c.inheritable, &c.permitted, &c.ambient].iter().any(|set| set.iter().any(|c| c == CAP_SYS_ADMIN))
    };
    let config_admin = spec.process.as_ref().and_then(|p| p.capabilities.as_ref()).is_some_and(has_admin);
    let own_pidns = spec.new_namespace("pid");
    config_admin || exec_caps.is_some_and(has_admin) || !own_pidns
}

/// A CLOEXEC fd of runh-init to execveat (AT_EMPTY_PATH): the read-only detached bind, or
/// the sealed memfd when `memfd` is asked for or the mount API is refused.
pub fn open(memfd: bool) -> Result<(OwnedFd, Kind)> {
    let path = path()?;
    let file = open_checked(path)?;
    let forced = std::env::var_os(FORCE_MEMFD_ENV).is_some_and(|v| v == "1");
    if !memfd && !forced {
        if let Some(m) = ro_bind(&file) {
            return Ok((m, Kind::Bind));
        }
    }
    Ok((sealed_copy(&file, path)?, Kind::Memfd))
}

fn open_checked(path: &Path) -> Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::config("runh-init path contains a NUL byte"))?;
    let fd = crate::fd::owned(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW) }, || {
        format!("open runh-init {}", path.display())
    })?;
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(Error::last_os("fstat runh-init"));
    }
    // Root, the caller (a rootless runh), or whoever owns the code already running here
    // (a developer's `make build` run with sudo): that owner could change runh itself, so
    // trusting its runh-init adds nothing.
    use std::os::unix::fs::MetadataExt;
    let code_owner = || own_code().ok().and_then(|p| std::fs::metadata(p).ok()).map(|m| m.uid());
    let owner_ok = st.st_uid == 0 || st.st_uid == unsafe { libc::geteuid() } || Some(st.st_uid) == code_owner();
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || !owner_ok || st.st_mode & 0o022 != 0 {
        return Err(Error::from_errno(
            libc::EPERM,
            format!(
                "runh-init {} is not a regular file owned by root (or by runh's owner) and writable by its owner alone: refusing to run it",
                path.display()
            ),
        ));
    }
    Ok(fd)
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// The detached read-only bind of `file`, or None where the kernel refuses it (no
/// CAP_SYS_ADMIN over our mount namespace, or no open_tree/mount_setattr).
fn ro_bind(file: &OwnedFd) -> Option<OwnedFd> {
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    let m = unsafe { libc::syscall(libc::SYS_open_tree, file.as_raw_fd(), c"".as_ptr(), flags) };
    if m < 0 {
        return None;
    }
    let m = unsafe { OwnedFd::from_raw_fd(m as i32) };
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            m.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    // Without the read-only flag the bind is no protection: drop it (never exec it).
    (r == 0).then_some(m)
}

/// A sealed memfd filled from `file` in the kernel.
fn sealed_copy(file: &OwnedFd, path: &Path) -> Result<OwnedFd> {
    let fd = crate::fd::owned(
        unsafe { libc::memfd_create(c"runh-init".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) },
        || "memfd_create runh-init".to_string(),
    )?;
    loop {
        // sendfile copies page cache to page cache: the init is never mapped into (and
        // never charged to the RSS of) this process.
        let n = unsafe { libc::sendfile(fd.as_raw_fd(), file.as_raw_fd(), std::ptr::null_mut(), 1 << 30) };
        if n < 0 {
            let e = Error::last_os(format!("copy runh-init {} into a memfd", path.display()));
            if e.errno == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(Error::last_os("seal runh-init memfd"));
    }
    Ok(fd)
}

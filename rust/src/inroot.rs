//! Every path inside the container's rootfs is opened here (issue 17's structural fix,
//! second half). The rootfs is the image's: any component may be a symlink placed to
//! send a mount, a write or a bind to the host (CVE-2019-16884, CVE-2021-30465,
//! CVE-2023-27561, CVE-2025-31133). So paths are resolved with openat2(RESOLVE_IN_ROOT)
//! against an fd of the rootfs, never as strings; where a path must be a particular thing
//! (a directory for procfs, the null device for a mask), what was opened is checked with
//! fstat before it is used, and the mount or write then goes through the fd.
use crate::error::{Error, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::config(format!("path contains a NUL byte: {s:?}")))
}

fn openat2(root: RawFd, path: &str, flags: libc::c_int, resolve: u64) -> std::result::Result<OwnedFd, i32> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let c = CString::new(rel).map_err(|_| libc::EINVAL)?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, root, c.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>())
    };
    if fd < 0 {
        return Err(errno());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// openat2 with RESOLVE_IN_ROOT: `path` is looked up as if `root` were "/", so "..",
/// absolute symlinks and relative symlinks all stay inside the rootfs. Magic links
/// (/proc/self/fd/...) are refused: they would jump out regardless of the root.
/// Returns the raw errno on failure so callers can tell ENOENT apart.
pub fn open_in_root(root: RawFd, path: &str, flags: libc::c_int) -> std::result::Result<OwnedFd, i32> {
    openat2(root, path, flags, libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS)
}

/// What to create at a destination that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Dir,
    File,
}

/// Split "a/b/c" into ("a/b", "c"), ignoring trailing slashes.
pub(crate) fn split_last(path: &str) -> (&str, &str) {
    let p = path.trim_end_matches('/');
    match p.rfind('/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => ("", p),
    }
}

/// Open `path` inside the rootfs (O_PATH), creating it and its missing parents (0755
/// dirs; an empty 0644 file for `Create::File`) inside the rootfs first if needed.
/// Existing paths cost a single openat2; only missing ones walk up. A dangling symlink
/// on the way (say /var/run -> /run with no /run yet) has its target created, read
/// relative to the rootfs, as runc does.
pub fn ensure_in_root(root: RawFd, path: &str, create: Create) -> Result<OwnedFd> {
    ensure_depth(root, path, create, 0)
}

/// `ensure_in_root`, and whether `path` was there before (a tmpfs over an existing
/// directory takes that directory's mode, mounts.rs).
pub fn ensure_in_root_existed(root: RawFd, path: &str, create: Create) -> Result<(OwnedFd, bool)> {
    match open_in_root(root, path, libc::O_PATH) {
        Ok(fd) => Ok((fd, true)),
        Err(libc::ENOENT) => ensure_depth(root, path, create, 0).map(|fd| (fd, false)),
        Err(e) => Err(Error::from_errno(e, format!("open {path} in rootfs"))),
    }
}

/// Linux's own limit on symlinks followed in one lookup.
const MAX_SYMLINKS: u32 = 40;

fn ensure_depth(root: RawFd, path: &str, create: Create, depth: u32) -> Result<OwnedFd> {
    let open_err = |e| Error::from_errno(e, format!("open {path} in rootfs"));
    match open_in_root(root, path, libc::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(libc::ENOENT) if depth < MAX_SYMLINKS => {}
        Err(e) => return Err(open_err(e)),
    }
    let (parent, last) = split_last(path.trim_start_matches('/'));
    if last.is_empty() {
        return Err(open_err(libc::ENOENT));
    }
    let pfd = ensure_depth(root, parent, Create::Dir, depth)?;
    let name = cstr(last)?;
    let ret = match create {
        Create::Dir => unsafe { libc::mkdirat(pfd.as_raw_fd(), name.as_ptr(), 0o755) },
        Create::File => {
            let fd = unsafe {
                libc::openat(
                    pfd.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd >= 0 {
                unsafe { libc::close(fd) };
            }
            fd
        }
    };
    if ret < 0 && errno() != libc::EEXIST {
        return Err(Error::last_os(format!("create {path} in rootfs")));
    }
    match open_in_root(root, path, libc::O_PATH) {
        Ok(fd) => Ok(fd),
        // EEXIST then ENOENT: `last` is a dangling symlink. Create what it names, still
        // inside the root (RESOLVE_IN_ROOT reads absolute targets from the rootfs).
        Err(libc::ENOENT) => {
            let mut buf = [0u8; libc::PATH_MAX as usize];
            let n = unsafe { libc::readlinkat(pfd.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return Err(open_err(libc::ENOENT));
            }
            let target = std::str::from_utf8(&buf[..n as usize]).map_err(|_| open_err(libc::EINVAL))?;
            let next = if target.starts_with('/') { target.to_string() } else { format!("{parent}/{target}") };
            ensure_depth(root, &next, create, depth + 1)?;
            open_in_root(root, path, libc::O_PATH).map_err(open_err)
        }
        Err(e) => Err(open_err(e)),
    }
}


fn fstat(fd: RawFd) -> Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(Error::last_os("fstat"));
    }
    Ok(st)
}

/// A directory reached from `root` through no symlink at all, created (with its
/// parents) if missing. For the destinations of procfs and sysfs: runc refuses anything
/// else there ("must be mounted on ordinary directory"), since a symlinked /proc once
/// carried procfs, and the LSM label writes made through it, elsewhere (CVE-2019-16884,
/// CVE-2023-27561).
pub fn plain_dir(root: RawFd, path: &str, what: impl Fn() -> String) -> Result<OwnedFd> {
    ensure_in_root(root, path, Create::Dir)?;
    let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    let fd = match openat2(root, path, libc::O_PATH | libc::O_NOFOLLOW, resolve) {
        Ok(fd) => fd,
        Err(libc::ELOOP) => return Err(Error::from_errno(libc::ELOOP, format!("{}: {path} is a symlink (or lies under one), not an ordinary directory", what()))),
        Err(e) => return Err(Error::from_errno(e, format!("{}: open {path}", what()))),
    };
    match fstat(fd.as_raw_fd())?.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {}
        libc::S_IFLNK => return Err(Error::from_errno(libc::ELOOP, format!("{}: {path} is a symlink, not an ordinary directory", what()))),
        _ => return Err(Error::from_errno(libc::ENOTDIR, format!("{}: {path} is not an ordinary directory", what()))),
    }
    Ok(fd)
}

/// The mount now on top of the plain directory `path` is of the filesystem `magic`
/// (statfs f_type): what was asked was what got mounted there.
pub fn check_mounted(root: RawFd, path: &str, magic: i64, what: impl Fn() -> String) -> Result<()> {
    let fd = plain_dir(root, path, &what)?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(Error::last_os(format!("{}: statfs {path}", what())));
    }
    if st.f_type as i64 != magic {
        return Err(Error::from_errno(libc::EINVAL, format!("{}: {path} is not the filesystem that was mounted", what())));
    }
    Ok(())
}

/// `/dev/null` of the rootfs `root`, opened once and checked to be the 1:3 character
/// device: a masked path is bound from this fd, never from the path, which an image may
/// have made a symlink to a secret or writable file (CVE-2025-31133).
pub fn dev_null(root: RawFd) -> Result<OwnedFd> {
    let fd = open_in_root(root, "/dev/null", libc::O_PATH).map_err(|e| Error::from_errno(e, "open /dev/null"))?;
    let st = fstat(fd.as_raw_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        return Err(Error::from_errno(libc::EINVAL, "/dev/null is not the null device (1:3): refusing to mask paths with it"));
    }
    Ok(fd)
}

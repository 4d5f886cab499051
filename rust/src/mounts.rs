//! One `mounts` entry of config.json, done inside the container's rootfs.
//!
//! Two concerns live here: turning runc's mount option names into mount(2) flags plus a
//! data string, and resolving a destination *inside* the rootfs so that no symlink in the
//! rootfs (which the container image controls) can make a mount land on the host.
//!
//! Choice of API: destinations are opened with openat2(RESOLVE_IN_ROOT) and the mount is
//! done by the classic mount(2) onto `/proc/self/fd/N` of that O_PATH fd. A plain
//! tmpfs/proc mount is then one openat2 + one mount(2); the new mount API
//! (fsopen + fsconfig per option + fsconfig(CREATE) + fsmount + move_mount) costs five or
//! more syscalls for the same mount, and its only gain here (atomic attributes on a bind)
//! is had with one extra MS_REMOUNT call, paid only by bind mounts that carry flags.
use crate::error::{Error, Result};
use crate::spec::Mount;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// runc's default flags for the tmpfs it puts under a v1 "cgroup" mount.
const DEFAULT_MOUNT_FLAGS: libc::c_ulong = libc::MS_NOEXEC | libc::MS_NOSUID | libc::MS_NODEV;

/// A parsed `options` list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount call itself (MS_BIND, MS_REC, MS_RDONLY, ...).
    pub flags: libc::c_ulong,
    /// Each entry is applied with its own mount(NULL, target, NULL, flag, NULL) call.
    pub propagation: Vec<libc::c_ulong>,
    /// Everything that is not a flag, comma-joined, for the filesystem (mode=755,size=...).
    pub data: String,
    /// runc's recursive options (`rro`, `rnosuid`, ...): MOUNT_ATTR_* set and cleared on
    /// the mount and every mount below it, by one mount_setattr(AT_RECURSIVE).
    pub rec_set: u64,
    pub rec_clr: u64,
}

// mount_setattr(2)'s attributes (linux/mount.h).
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR__ATIME: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// (name, clears instead of sets, MOUNT_ATTR_*): runc's recursive options (runc 1.1+).
const REC_ATTR_NAMES: &[(&str, bool, u64)] = &[
    ("rro", false, MOUNT_ATTR_RDONLY),
    ("rrw", true, MOUNT_ATTR_RDONLY),
    ("rnosuid", false, MOUNT_ATTR_NOSUID),
    ("rsuid", true, MOUNT_ATTR_NOSUID),
    ("rnodev", false, MOUNT_ATTR_NODEV),
    ("rdev", true, MOUNT_ATTR_NODEV),
    ("rnoexec", false, MOUNT_ATTR_NOEXEC),
    ("rexec", true, MOUNT_ATTR_NOEXEC),
    ("rnodiratime", false, MOUNT_ATTR_NODIRATIME),
    ("rdiratime", true, MOUNT_ATTR_NODIRATIME),
    ("rrelatime", false, MOUNT_ATTR_RELATIME),
    ("rnorelatime", true, MOUNT_ATTR_RELATIME),
    ("rnoatime", false, MOUNT_ATTR_NOATIME),
    ("ratime", true, MOUNT_ATTR_NOATIME),
    ("rstrictatime", false, MOUNT_ATTR_STRICTATIME),
    ("rnostrictatime", true, MOUNT_ATTR_STRICTATIME),
    ("rnosymfollow", false, MOUNT_ATTR_NOSYMFOLLOW),
    ("rsymfollow", true, MOUNT_ATTR_NOSYMFOLLOW),
];

/// Every mount option name runh takes (for `runh features`, which lists exactly these).
pub fn option_names() -> impl Iterator<Item = &'static str> {
    FLAG_NAMES.iter().map(|(n, _, _)| *n)
        .chain(PROPAGATION_NAMES.iter().map(|(n, _)| *n))
        .chain(REC_ATTR_NAMES.iter().map(|(n, _, _)| *n))
        .chain(["idmap", "ridmap"])
}

/// (name, clears the flag instead of setting it, flag); runc's names.
const FLAG_NAMES: &[(&str, bool, libc::c_ulong)] = &[
    ("defaults", false, 0),
    ("ro", false, libc::MS_RDONLY),
    ("rw", true, libc::MS_RDONLY),
    ("suid", true, libc::MS_NOSUID),
    ("nosuid", false, libc::MS_NOSUID),
    ("dev", true, libc::MS_NODEV),
    ("nodev", false, libc::MS_NODEV),
    ("exec", true, libc::MS_NOEXEC),
    ("noexec", false, libc::MS_NOEXEC),
    ("sync", false, libc::MS_SYNCHRONOUS),
    ("async", true, libc::MS_SYNCHRONOUS),
    ("dirsync", false, libc::MS_DIRSYNC),
    ("remount", false, libc::MS_REMOUNT),
    ("mand", false, libc::MS_MANDLOCK),
    ("nomand", true, libc::MS_MANDLOCK),
    ("atime", true, libc::MS_NOATIME),
    ("noatime", false, libc::MS_NOATIME),
    ("diratime", true, libc::MS_NODIRATIME),
    ("nodiratime", false, libc::MS_NODIRATIME),
    ("relatime", false, libc::MS_RELATIME),
    ("norelatime", true, libc::MS_RELATIME),
    ("strictatime", false, libc::MS_STRICTATIME),
    ("nostrictatime", true, libc::MS_STRICTATIME),
    ("iversion", false, libc::MS_I_VERSION),
    ("noiversion", true, libc::MS_I_VERSION),
    ("silent", false, libc::MS_SILENT),
    ("loud", true, libc::MS_SILENT),
    ("lazytime", false, libc::MS_LAZYTIME),
    ("nolazytime", true, libc::MS_LAZYTIME),
    // A filesystem without POSIX ACLs (tmpfs without CONFIG_TMPFS_POSIX_ACL) refuses it.
    ("acl", false, libc::MS_POSIXACL),
    ("noacl", true, libc::MS_POSIXACL),
    ("nosymfollow", false, libc::MS_NOSYMFOLLOW),
    ("symfollow", true, libc::MS_NOSYMFOLLOW),
    ("bind", false, libc::MS_BIND),
    ("rbind", false, libc::MS_BIND | libc::MS_REC),
];

const PROPAGATION_NAMES: &[(&str, libc::c_ulong)] = &[
    ("private", libc::MS_PRIVATE),
    ("rprivate", libc::MS_PRIVATE | libc::MS_REC),
    ("shared", libc::MS_SHARED),
    ("rshared", libc::MS_SHARED | libc::MS_REC),
    ("slave", libc::MS_SLAVE),
    ("rslave", libc::MS_SLAVE | libc::MS_REC),
    ("unbindable", libc::MS_UNBINDABLE),
    ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
];

/// runc extensions that change how the mount is done, not just its flags; runh does not
/// do them yet, and passing them on as data would fail later with a bare EINVAL.
const UNSUPPORTED: &[&str] = &["tmpcopyup"];

/// Propagation by its runtime-spec name (linux.rootfsPropagation uses the same names).
pub fn propagation_flag(name: &str) -> Option<libc::c_ulong> {
    PROPAGATION_NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

pub fn parse_options(options: &[String]) -> Result<MountOptions> {
    let mut out = MountOptions::default();
    for opt in options {
        let opt = opt.as_str();
        if let Some((_, clear, flag)) = FLAG_NAMES.iter().find(|(n, _, _)| *n == opt) {
            if *clear {
                out.flags &= !flag;
            } else {
                out.flags |= flag;
            }
        } else if let Some(flag) = propagation_flag(opt) {
            out.propagation.push(flag);
        } else if opt == "idmap" || opt == "ridmap" {
            // How the mount is made (idmap.rs), not a flag or data.
        } else if let Some((_, clear, attr)) = REC_ATTR_NAMES.iter().find(|(n, _, _)| *n == opt) {
            // Later options win, as for the flags above.
            let atime = attr & MOUNT_ATTR__ATIME == *attr;
            if *clear {
                out.rec_clr |= attr;
                out.rec_set &= !attr;
            } else {
                if atime {
                    // One access-time setting at a time: a later one replaces an earlier
                    // one (runc sets both bits, and the kernel refuses that, EINVAL).
                    out.rec_set &= !MOUNT_ATTR__ATIME;
                }
                out.rec_set |= attr;
                out.rec_clr &= !attr;
            }
            if atime {
                // mount_setattr(2): an access-time setting replaces the whole field, so
                // MOUNT_ATTR__ATIME must be in attr_clr (relatime is the field's 0).
                out.rec_clr |= MOUNT_ATTR__ATIME;
            }
        } else if UNSUPPORTED.contains(&opt) {
            return Err(Error::config(format!("mount option {opt:?} is not supported by runh")));
        } else {
            if !out.data.is_empty() {
                out.data.push(',');
            }
            out.data.push_str(opt);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Small syscall helpers, shared with rootfs.rs and devices.rs.

pub(crate) fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::config(format!("path {s:?} contains a NUL byte")))
}

/// `/proc/self/fd/N`: how mount(2) is pointed at an fd we resolved safely.
pub(crate) fn fd_path(fd: RawFd) -> CString {
    // Cannot contain NUL: digits only.
    CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default()
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), |s| s.as_ptr())
}

/// mount(2); `what` names the mount in the error, e.g. "mount proc to /proc".
pub(crate) fn sys_mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
    what: impl FnOnce() -> String,
) -> Result<()> {
    let ret = unsafe {
        libc::mount(opt_ptr(source), target.as_ptr(), opt_ptr(fstype), flags, opt_ptr(data) as *const libc::c_void)
    };
    if ret == -1 {
        return Err(Error::last_os(what()));
    }
    Ok(())
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// open(2) of a host path (O_PATH, CLOEXEC, following symlinks: the host path is trusted).
pub(crate) fn open_host(path: &str, extra: libc::c_int) -> Result<OwnedFd> {
    let c = cstr(path)?;
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | extra) };
    if fd < 0 {
        return Err(Error::last_os(format!("open {path}")));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// open(2) of a path for reading and writing (CLOEXEC).
pub(crate) fn open_host_rw(path: &str) -> Result<OwnedFd> {
    let c = cstr(path)?;
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os(format!("open {path}")));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub use crate::inroot::{ensure_in_root, open_in_root, Create};

// ---------------------------------------------------------------------------------------
// Doing a mount entry.

/// What the caller knows that changes how some mounts are done.
pub struct MountContext<'a> {
    /// The rootfs's real host path (symlinks resolved), to tell where a destination landed.
    pub rootfs: &'a str,
    /// O_PATH fd of the rootfs (opened after the rootfs was bind-mounted onto itself, so
    /// that new mounts under it are seen when walking from it).
    pub root: RawFd,
    /// Relative bind sources are relative to the bundle, as with runc.
    pub bundle: &'a str,
    /// The container made its network namespace (one without a path): sysfs can be
    /// mounted. A joined one may belong to another user namespace, and the kernel then
    /// refuses a sysfs of it (EPERM), as with none.
    pub new_netns: bool,
    /// The container has its own cgroup namespace (cgroup filesystems can be mounted).
    pub new_cgroupns: bool,
    /// The container's cgroup v2 directory on the host (sync::Plan::cgroup2_bind).
    pub cgroup2_bind: Option<&'a str>,
    /// Asks runh for the source of `mounts[i]` when init cannot open it itself
    /// (`bind_entry`); None where there is no runh to ask (tests).
    pub host_source: Option<&'a dyn Fn(u32) -> Result<OwnedFd>>,
    /// The config's mounts, to find an entry's index for `host_source`.
    pub mounts: &'a [Mount],
    /// linux.mountLabel: the SELinux context of the filesystems mounted (lsm.rs).
    pub mount_label: Option<&'a str>,
}

fn mount_name(m: &Mount) -> String {
    let src = m.source.as_deref().filter(|s| !s.is_empty()).or(m.kind.as_deref()).unwrap_or("none");
    format!("mount {src} to {}", m.destination)
}

/// Do one `mounts` entry. Destinations are resolved inside the rootfs at the time of this
/// mount, since an earlier mount may have changed what a path leads to.
pub fn mount_entry(m: &Mount, ctx: &MountContext) -> Result<()> {
    let opts = parse_options(&m.options)?;
    if crate::idmap::is_idmapped(m) {
        return idmapped_entry(m, &opts, ctx);
    }
    let kind = m.kind.as_deref().unwrap_or("");
    if kind == "bind" || opts.flags & libc::MS_BIND != 0 {
        return bind_entry(m, &opts, ctx);
    }
    match kind {
        "cgroup" => cgroup_entry(m, &opts, ctx),
        "sysfs" => {
            match plain_mount(m, &opts, ctx) {
                // Without a network namespace its user namespace owns, the kernel
                // refuses a new sysfs; runc then binds the host's /sys (recursively).
                Err(e) if e.errno == libc::EPERM && !ctx.new_netns => {
                    // Still of kind sysfs: the same plain-directory rule and check.
                    let bind = Mount {
                        destination: m.destination.clone(),
                        kind: Some("sysfs".into()),
                        source: Some("/sys".into()),
                        options: vec![],
                        ..Default::default()
                    };
                    let mut bopts = opts.clone();
                    bopts.flags |= libc::MS_BIND | libc::MS_REC;
                    bopts.data.clear();
                    bind_entry(&bind, &bopts, ctx)
                }
                r => r,
            }
        }
        _ => plain_mount(m, &opts, ctx),
    }
}

/// Files under /proc that may be covered (lxcfs-style emulation), as runc allows.
const PROC_ALLOWED: &[&str] = &[
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps", "/proc/uptime",
    "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev", "/proc/sys/kernel/ns_last_pid",
];

/// Refuse to cover /proc or anything in it with something other than procfs: that would
/// hide masked paths or fake kernel interfaces (the class of runc's CVE-2019-19921). The
/// check is on where the destination really resolved (symlinks included), read back from
/// the fd: one readlink per mount.
fn check_proc_dest(m: &Mount, dest: RawFd, ctx: &MountContext) -> Result<()> {
    let real = real_path(dest).map_err(|e| Error::from_errno(e.errno, format!("{}: read back destination", mount_name(m))))?;
    let real = real.as_str();
    let root = ctx.rootfs.trim_end_matches('/');
    let Some(inside) = real.strip_prefix(root).filter(|r| r.is_empty() || r.starts_with('/')) else {
        return Ok(());
    };
    let in_proc = inside == "/proc" || inside.starts_with("/proc/");
    if !in_proc || PROC_ALLOWED.contains(&inside) {
        return Ok(());
    }
    if inside == "/proc" && m.kind.as_deref() == Some("proc") {
        return Ok(());
    }
    Err(Error::config(format!("{}: {inside} cannot be mounted because it is inside /proc", mount_name(m))))
}

/// Where an fd really is, symlinks resolved (from /proc/self/fd).
pub(crate) fn real_path(fd: RawFd) -> Result<String> {
    let mut buf = [0u8; libc::PATH_MAX as usize];
    let link = fd_path(fd);
    let n = unsafe { libc::readlink(link.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return Err(Error::last_os("readlink"));
    }
    Ok(String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// procfs and sysfs, and only they, must land on a plain directory and be checked after
/// (inroot::plain_dir): the filesystem magic they must show, None for other mounts.
fn kernel_fs(m: &Mount) -> Option<i64> {
    match m.kind.as_deref() {
        Some("proc") => Some(PROC_SUPER_MAGIC),
        Some("sysfs") => Some(SYSFS_MAGIC),
        _ => None,
    }
}

/// The destination of a mount entry, inside the rootfs (created if missing).
fn destination(m: &Mount, ctx: &MountContext, create: Create) -> Result<OwnedFd> {
    destination_existed(m, ctx, create).map(|(fd, _)| fd)
}

/// `destination`, and whether it was there before.
fn destination_existed(m: &Mount, ctx: &MountContext, create: Create) -> Result<(OwnedFd, bool)> {
    let (dest, existed) = match kernel_fs(m) {
        Some(_) => (crate::inroot::plain_dir(ctx.root, &m.destination, || mount_name(m))?, true),
        None => crate::inroot::ensure_in_root_existed(ctx.root, &m.destination, create)?,
    };
    check_proc_dest(m, dest.as_raw_fd(), ctx)?;
    Ok((dest, existed))
}

/// A tmpfs over an existing directory keeps that directory's mode unless the options
/// give `mode=` (runc: the mode goes first in the data, so an explicit one wins; runc
/// 1.1.5 instead chmods after the mount, over an explicit mode too). One fstat, only
/// for a tmpfs without `mode=`.
fn tmpfs_data(opts: &MountOptions, dest: RawFd, existed: bool) -> Result<String> {
    if !existed || opts.data.split(',').any(|o| o.starts_with("mode=")) {
        return Ok(opts.data.clone());
    }
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(dest, &mut st) } != 0 {
        return Err(Error::last_os("stat the directory under a tmpfs"));
    }
    let mode = format!("mode={:04o}", st.st_mode & 0o7777);
    Ok(if opts.data.is_empty() { mode } else { format!("{mode},{}", opts.data) })
}

/// After a procfs or sysfs mount: it is there, on the plain directory, and is what was
/// asked (runc checks the same after mounting /proc).
fn check_kernel_fs(m: &Mount, ctx: &MountContext) -> Result<()> {
    match kernel_fs(m) {
        Some(magic) => crate::inroot::check_mounted(ctx.root, &m.destination, magic, || mount_name(m)),
        None => Ok(()),
    }
}

/// A filesystem mount (proc, tmpfs, devpts, mqueue, sysfs, ...) onto a directory.
fn plain_mount(m: &Mount, opts: &MountOptions, ctx: &MountContext) -> Result<()> {
    let (dest, existed) = destination_existed(m, ctx, Create::Dir)?;
    let target = fd_path(dest.as_raw_fd());
    let kind = m.kind.as_deref().unwrap_or("");
    let source = cstr(m.source.as_deref().filter(|s| !s.is_empty()).unwrap_or(kind))?;
    let fstype = cstr(kind)?;
    let base = if kind == "tmpfs" { tmpfs_data(opts, dest.as_raw_fd(), existed)? } else { opts.data.clone() };
    // linux.mountLabel as runc applies it: context= on every filesystem but procfs,
    // sysfs and cgroup2 (labelled by the policy; a shared superblock refuses context=)
    // and mqueue (which takes no context=: its root is labelled after the mount instead).
    let label = ctx.mount_label.filter(|_| !matches!(kind, "proc" | "sysfs" | "cgroup2" | "mqueue"));
    let data = crate::lsm::with_context(&base, label);
    let data = if data.is_empty() { None } else { Some(cstr(&data)?) };
    sys_mount(Some(&source), &target, Some(&fstype), opts.flags, data.as_deref(), || mount_name(m))?;
    check_kernel_fs(m, ctx)?;
    if let (Some(l), "mqueue") = (ctx.mount_label, kind) {
        let top = ensure_in_root(ctx.root, &m.destination, Create::Dir)?;
        crate::lsm::set_file_label(&fd_path(top.as_raw_fd()), l)?;
    }
    apply_propagation(m, opts, ctx)
}

/// Propagation flags each need their own call, on the new mount (re-opened: the fd we
/// mounted onto still refers to what lies under it); then the recursive attributes, one
/// mount_setattr(AT_RECURSIVE) for the mount and all below it (runc 1.1 applies them to
/// bind mounts only; runh to every kind, so that `rro` on a tmpfs means read-only too).
fn apply_propagation(m: &Mount, opts: &MountOptions, ctx: &MountContext) -> Result<()> {
    let rec = opts.rec_set | opts.rec_clr != 0;
    if opts.propagation.is_empty() && !rec {
        return Ok(());
    }
    let fd = open_in_root(ctx.root, &m.destination, libc::O_PATH)
        .map_err(|e| Error::from_errno(e, format!("open {} in rootfs", m.destination)))?;
    let target = fd_path(fd.as_raw_fd());
    for &p in &opts.propagation {
        sys_mount(None, &target, None, p, None, || format!("set propagation of {}", m.destination))?;
    }
    if rec {
        setattr(fd.as_raw_fd(), opts.rec_set, opts.rec_clr, true).map_err(|e| {
            let hint = if e.errno == libc::ENOSYS { " (recursive mount options need Linux 5.12 or later)" } else { "" };
            Error::from_errno(e.errno, format!("{}: set its recursive options{hint}", mount_name(m)))
        })?;
    }
    Ok(())
}

/// mount_setattr(2)'s argument.
#[repr(C)]
pub(crate) struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// mount_setattr on the mount whose root `fd` is (an O_PATH fd), recursively or not.
/// Through the fd itself (AT_EMPTY_PATH): no /proc needed, unlike mount(2) on
/// /proc/self/fd/N, so it works in a rootfs without a /proc mount.
pub(crate) fn setattr(fd: RawFd, set: u64, clr: u64, recursive: bool) -> Result<()> {
    let attr = MountAttr { attr_set: set, attr_clr: clr, propagation: 0, userns_fd: 0 };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    let r = unsafe {
        libc::syscall(libc::SYS_mount_setattr, fd, c"".as_ptr(), flags, &attr as *const MountAttr, std::mem::size_of::<MountAttr>())
    };
    if r < 0 {
        return Err(Error::last_os("mount_setattr"));
    }
    Ok(())
}

pub(crate) fn bind_source(m: &Mount, bundle: &str) -> String {
    let src = m.source.as_deref().unwrap_or("");
    if src.starts_with('/') || bundle.is_empty() {
        src.to_string()
    } else {
        format!("{}/{}", bundle.trim_end_matches('/'), src)
    }
}

/// statvfs flags -> the MS_ flags a bind remount must keep (in a user namespace the
/// kernel refuses to clear locked ones).
pub(crate) fn fs_flags(fd: RawFd) -> libc::c_ulong {
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatvfs(fd, &mut st) } != 0 {
        return 0;
    }
    let map = [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        // ST_RELATIME (4096 in statvfs.h): the libc crate has no constant for it on musl,
        // which runh-init is built with when available.
        (4096, libc::MS_RELATIME),
    ];
    map.iter().filter(|(st_f, _)| st.f_flag & *st_f != 0).fold(0, |acc, (_, ms)| acc | ms)
}

/// A bind mount of a host file or directory. A source that init may not reach (in a
/// user namespace, its root is not the host's: a directory on the way that only host
/// root may search) is opened by runh instead, with host privileges, as runc and crun
/// do: runh sends it as a detached mount (`host_source`), attached like an idmapped one.
/// Asked only after init's own open failed, so other binds cost nothing more.
fn bind_entry(m: &Mount, opts: &MountOptions, ctx: &MountContext) -> Result<()> {
    let src_path = bind_source(m, ctx.bundle);
    let src = match open_host(&src_path, 0) {
        Ok(fd) => fd,
        Err(e) => {
            let index = ctx.mounts.iter().position(|x| std::ptr::eq(x, m));
            let (Some(ask), Some(i), libc::EACCES | libc::EPERM) = (ctx.host_source, index, e.errno) else {
                return Err(Error::from_errno(e.errno, format!("{}: open source", mount_name(m))));
            };
            let tree = ask(i as u32).map_err(|e| Error { context: format!("{}: open source (by runh): {}", mount_name(m), e.context), ..e })?;
            return attach_bind(m, opts, ctx, tree.as_raw_fd(), |dest| crate::idmap::attach(tree.as_raw_fd(), dest, &mount_name(m)));
        }
    };
    let bind_flags = libc::MS_BIND | (opts.flags & libc::MS_REC);
    attach_bind(m, opts, ctx, src.as_raw_fd(), |dest| {
        sys_mount(Some(&fd_path(src.as_raw_fd())), &fd_path(dest), None, bind_flags, None, || mount_name(m))
    })
}

/// runh's side of `host_source`: the source of `mounts[index]`, which must be a plain
/// bind (the index is all init says: the path is runh's own reading of the config), as
/// a detached copy (recursive for rbind) made with runh's privileges, in the mount
/// namespace of `init_pid` (still the host's view: init has not pivoted yet).
///
/// Why in the container's mount namespace, as runc does: there the mounts are the
/// namespace's locked copies (MNT_LOCKED), and a copy of them stays locked, so the
/// container cannot unmount a mount inside the bind to see what it covers. A copy taken
/// in runh's own namespace carries no lock (tests/test_parity.py
/// test_bind_source_opened_by_runh_keeps_submounts_locked). Paid only by a source init
/// could not open (`in_mount_ns_of`).
#[cfg(feature = "host")]
pub fn host_source(spec: &crate::spec::Spec, bundle: &str, index: u32, init_pid: libc::pid_t) -> Result<OwnedFd> {
    let m = spec.mounts.get(index as usize).ok_or_else(|| Error::sync(format!("init asked for the source of mounts[{index}], which does not exist")))?;
    let opts = parse_options(&m.options)?;
    if !(m.kind.as_deref() == Some("bind") || opts.flags & libc::MS_BIND != 0) || crate::idmap::is_idmapped(m) {
        return Err(Error::sync(format!("init asked for the source of {}, which is not a plain bind", mount_name(m))));
    }
    let src = cstr(&bind_source(m, bundle))?;
    in_mount_ns_of(init_pid, || crate::idmap::clone_tree(&src, opts.flags & libc::MS_REC != 0))
}

/// Run `f` on a thread of its own in the mount namespace of `pid` (the container's, made
/// by clone), with runh's credentials: for the detached copies of a host path that runh
/// hands to init (`host_source`, idmapped mounts), so that the mounts below the path are
/// that namespace's locked copies. The thread unshares its fs_struct first (setns into a
/// mount namespace needs one of its own) and ends with `f`. About 0.1 ms.
pub fn in_mount_ns_of<T: Send>(pid: libc::pid_t, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let ns = cstr(&format!("/proc/{pid}/ns/mnt"))?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                return Err(Error::last_os("unshare(CLONE_FS) to enter the container's mount namespace"));
            }
            let fd = crate::fd::owned(unsafe { libc::open(ns.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }, || {
                "open the container's mount namespace".into()
            })?;
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
                return Err(Error::last_os("enter the container's mount namespace"));
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(Error::sync("the mount namespace thread panicked")))
    })
}

/// An idmapped bind mount: the parent made it (detached, idmapped) and sent its fd
/// (idmap.rs); it is attached like a bind, with the same destination checks and options.
fn idmapped_entry(m: &Mount, opts: &MountOptions, ctx: &MountContext) -> Result<()> {
    let fd = m.idmapped_fd.ok_or_else(|| Error::sync(format!("{}: the idmapped mount was not prepared", mount_name(m))))?;
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    attach_bind(m, opts, ctx, fd.as_raw_fd(), |dest| crate::idmap::attach(fd.as_raw_fd(), dest, &mount_name(m)))
}

/// What every bind-like entry does around its attach step: the destination is created
/// inside the rootfs to match the source's type and checked against /proc; then flags other
/// than bind/rec need a second MS_REMOUNT|MS_BIND call (the kernel ignores them on the bind
/// itself), and propagation a call of its own.
fn attach_bind(
    m: &Mount,
    opts: &MountOptions,
    ctx: &MountContext,
    src: RawFd,
    attach: impl FnOnce(RawFd) -> Result<()>,
) -> Result<()> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(src, &mut st) } != 0 {
        return Err(Error::last_os(format!("{}: stat source", mount_name(m))));
    }
    let create = if st.st_mode & libc::S_IFMT == libc::S_IFDIR { Create::Dir } else { Create::File };
    let dest = destination(m, ctx, create)?;
    attach(dest.as_raw_fd())?;
    check_kernel_fs(m, ctx)?;
    let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    if extra != 0 {
        let top = open_in_root(ctx.root, &m.destination, libc::O_PATH)
            .map_err(|e| Error::from_errno(e, format!("open {} in rootfs", m.destination)))?;
        remount_bind(top.as_raw_fd(), extra, || format!("remount {} with its options", m.destination))?;
    }
    apply_propagation(m, opts, ctx)
}

/// MS_BIND|MS_REMOUNT of the mount at `fd` with `flags`; retried keeping the mount's
/// current flags if the kernel says they are locked (EPERM in a user namespace).
pub(crate) fn remount_bind(fd: RawFd, flags: libc::c_ulong, what: impl Fn() -> String) -> Result<()> {
    let target = fd_path(fd);
    let base = libc::MS_BIND | libc::MS_REMOUNT;
    match sys_mount(None, &target, None, base | flags, None, &what) {
        Err(e) if e.errno == libc::EPERM => {
            let keep = fs_flags(fd) & !libc::MS_RDONLY;
            sys_mount(None, &target, None, base | flags | keep, None, &what)
        }
        r => r,
    }
}

// ---------------------------------------------------------------------------------------
// "cgroup" mounts.

/// The magic number of cgroup2 in statfs.f_type.
const CGROUP2_SUPER_MAGIC: libc::c_long = 0x6367_7270;

pub(crate) fn host_is_cgroup2() -> bool {
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let p = b"/sys/fs/cgroup\0";
    unsafe { libc::statfs(p.as_ptr() as *const libc::c_char, &mut st) == 0 && st.f_type as libc::c_long == CGROUP2_SUPER_MAGIC }
}

fn read_to_string(path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), format!("read {path}")))
}

/// One cgroup v1 hierarchy mounted on the host (from /proc/self/mountinfo).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct V1Hierarchy {
    /// e.g. /sys/fs/cgroup/memory
    pub mountpoint: String,
    /// Root of the mount inside the hierarchy, usually "/".
    pub root: String,
    /// Controllers and name=..., e.g. ["cpu", "cpuacct"] or ["name=systemd"].
    pub controllers: Vec<String>,
}

/// Super options of a v1 cgroup mount that are not controller names.
fn is_controller_opt(o: &str) -> bool {
    !matches!(o, "rw" | "ro" | "noprefix" | "clone_children" | "xattr" | "cpuset_v2_mode" | "favordynmods")
        && !o.starts_with("release_agent=")
}

pub(crate) fn parse_v1_hierarchies(mountinfo: &str) -> Vec<V1Hierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let mut post = post.split(' ');
        if post.next() != Some("cgroup") {
            continue;
        }
        let superopts = post.nth(1).unwrap_or("");
        let pre: Vec<&str> = pre.split(' ').collect();
        if pre.len() < 5 {
            continue;
        }
        out.push(V1Hierarchy {
            mountpoint: pre[4].to_string(),
            root: pre[3].to_string(),
            controllers: superopts.split(',').filter(|o| is_controller_opt(o)).map(String::from).collect(),
        });
    }
    out
}

/// This process's path in the hierarchy with these controllers, from /proc/self/cgroup.
pub(crate) fn own_cgroup<'a>(proc_cgroup: &'a str, controllers: &[String]) -> Option<&'a str> {
    for line in proc_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        if ctrl.is_empty() {
            continue;
        }
        if ctrl.split(',').all(|c| controllers.iter().any(|h| h == c)) {
            return Some(path);
        }
    }
    None
}

/// "cgroup" on a cgroup2 host: mount cgroup2 (in a cgroup namespace it shows the
/// container's subtree); if that is refused, bind the host's view of our own cgroup.
/// On a v1 or hybrid host, as runc: a tmpfs (mode=755) with each v1 hierarchy in it,
/// mounted fresh when the container has a cgroup namespace, otherwise bind-mounted from
/// the host at the container's own cgroup; co-mounted controllers get symlinks
/// (cpu -> cpu,cpuacct); the tmpfs is remounted read-only if asked. The cgroup2 "unified"
/// mount of a hybrid host is left out, as runc 1.1 does.
fn cgroup_entry(m: &Mount, opts: &MountOptions, ctx: &MountContext) -> Result<()> {
    if host_is_cgroup2() {
        let cg2 = Mount { kind: Some("cgroup2".into()), source: Some("cgroup".into()), ..m.clone() };
        let mut o = opts.clone();
        o.data.clear();
        return match plain_mount(&cg2, &o, ctx) {
            Err(e) if e.errno == libc::EPERM || e.errno == libc::EBUSY => {
                // The container's own cgroup, as the parent found it. Never from our
                // /proc/self/cgroup: in a cgroup namespace that reads "0::/", the host's
                // whole hierarchy.
                let Some(source) = ctx.cgroup2_bind else { return Err(e) };
                let bind = Mount { source: Some(source.to_string()), ..m.clone() };
                let mut bo = o.clone();
                bo.flags |= libc::MS_BIND | libc::MS_REC;
                bind_entry(&bind, &bo, ctx)
            }
            r => r,
        };
    }

    let tmpfs = Mount {
        destination: m.destination.clone(),
        kind: Some("tmpfs".into()),
        source: Some("tmpfs".into()),
        options: vec![],
        ..Default::default()
    };
    let topts = MountOptions { flags: DEFAULT_MOUNT_FLAGS, propagation: opts.propagation.clone(), data: "mode=755".into(), ..Default::default() };
    plain_mount(&tmpfs, &topts, ctx)?;

    let mountinfo = read_to_string("/proc/self/mountinfo")?;
    let proc_cgroup = if ctx.new_cgroupns { String::new() } else { read_to_string("/proc/self/cgroup")? };
    let base = m.destination.trim_end_matches('/');
    let mut seen: Vec<Vec<String>> = Vec::new();
    let under_rootfs = format!("{}/", ctx.rootfs.trim_end_matches('/'));
    for h in parse_v1_hierarchies(&mountinfo) {
        let name = h.mountpoint.rsplit('/').next().unwrap_or("");
        // Each hierarchy once, from the host's own mount of it: a /sys bound in for a
        // sysfs the kernel refused (mount_entry) has copies of them all under the
        // rootfs, now covered by the tmpfs above.
        if name.is_empty() || h.mountpoint.starts_with(&under_rootfs) || seen.contains(&h.controllers) {
            continue;
        }
        seen.push(h.controllers.clone());
        let dest = format!("{base}/{name}");
        if ctx.new_cgroupns {
            let sub = Mount {
                destination: dest,
                kind: Some("cgroup".into()),
                source: Some("cgroup".into()),
                ..Default::default()
            };
            let so = MountOptions { flags: opts.flags, propagation: opts.propagation.clone(), data: h.controllers.join(","), ..Default::default() };
            plain_mount(&sub, &so, ctx)?;
        } else {
            let own = own_cgroup(&proc_cgroup, &h.controllers).unwrap_or("/");
            let rel = own.strip_prefix(h.root.trim_end_matches('/')).unwrap_or(own);
            let sub = Mount {
                destination: dest,
                kind: Some("bind".into()),
                source: Some(format!("{}{}", h.mountpoint, rel.trim_end_matches('/'))),
                ..Default::default()
            };
            let so = MountOptions { flags: opts.flags | libc::MS_BIND | libc::MS_REC, propagation: opts.propagation.clone(), data: String::new(), ..Default::default() };
            bind_entry(&sub, &so, ctx)?;
        }
        // cpu,cpuacct -> symlinks cpu and cpuacct, so both names work in the container.
        if name.contains(',') {
            let dir = ensure_in_root(ctx.root, base, Create::Dir)?;
            let target = cstr(name)?;
            for c in name.split(',') {
                let link = cstr(c)?;
                if unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), link.as_ptr()) } != 0 && errno() != libc::EEXIST {
                    return Err(Error::last_os(format!("symlink {base}/{c}")));
                }
            }
        }
    }
    if opts.flags & libc::MS_RDONLY != 0 {
        let top = open_in_root(ctx.root, base, libc::O_PATH).map_err(|e| Error::from_errno(e, format!("open {base} in rootfs")))?;
        remount_bind(top.as_raw_fd(), DEFAULT_MOUNT_FLAGS | libc::MS_RDONLY, || format!("remount {base} read-only"))?;
    }
    // Recursive options: on the tmpfs and every hierarchy under it, in one call.
    let rec = MountOptions { rec_set: opts.rec_set, rec_clr: opts.rec_clr, ..Default::default() };
    apply_propagation(m, &rec, ctx)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const PROPAGATION: libc::c_ulong = libc::MS_PRIVATE | libc::MS_SHARED | libc::MS_SLAVE | libc::MS_UNBINDABLE;

    fn o(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_and_data() {
        let p = parse_options(&o(&["nosuid", "strictatime", "mode=755", "size=65536k"])).unwrap();
        assert_eq!(p.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(p.data, "mode=755,size=65536k");
        assert!(p.propagation.is_empty());
        let p = parse_options(&o(&["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])).unwrap();
        assert_eq!(p.flags, libc::MS_NOSUID | libc::MS_NOEXEC);
        assert_eq!(p.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
    }

    #[test]
    fn later_options_win() {
        assert_eq!(parse_options(&o(&["ro", "rw"])).unwrap().flags, 0);
        assert_eq!(parse_options(&o(&["rw", "ro"])).unwrap().flags, libc::MS_RDONLY);
        assert_eq!(parse_options(&o(&["noexec", "exec", "nodev", "suid"])).unwrap().flags, libc::MS_NODEV);
        assert_eq!(parse_options(&o(&["noatime", "atime", "relatime", "norelatime"])).unwrap().flags, 0);
    }

    #[test]
    fn bind_and_propagation() {
        let p = parse_options(&o(&["rbind", "ro", "rprivate", "slave"])).unwrap();
        assert_eq!(p.flags, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(p.propagation, vec![libc::MS_PRIVATE | libc::MS_REC, libc::MS_SLAVE]);
        assert_eq!(parse_options(&o(&["bind"])).unwrap().flags, libc::MS_BIND);
        for (n, f) in PROPAGATION_NAMES {
            assert_eq!(propagation_flag(n), Some(*f));
            assert_eq!(f & !libc::MS_REC & !PROPAGATION, 0);
        }
    }

    #[test]
    fn every_runc_name() {
        for n in [
            "ro", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "sync", "async", "dirsync", "remount", "mand",
            "nomand", "atime", "noatime", "diratime", "nodiratime", "relatime", "norelatime", "strictatime",
            "nostrictatime", "bind", "rbind",
        ] {
            let p = parse_options(&o(&[n])).unwrap();
            assert!(p.data.is_empty(), "{n} went to data");
        }
        assert!(parse_options(&o(&["tmpcopyup"])).is_err());
    }

    #[test]
    fn recursive_options() {
        let p = parse_options(&o(&["rbind", "rro", "rnosuid", "rnodev", "rnosymfollow"])).unwrap();
        assert_eq!(p.flags, libc::MS_BIND | libc::MS_REC);
        assert!(p.data.is_empty());
        assert_eq!(p.rec_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSYMFOLLOW);
        assert_eq!(p.rec_clr, 0);
        // Clearing forms, later wins.
        let p = parse_options(&o(&["rro", "rrw", "rnoexec", "rexec", "rdev"])).unwrap();
        assert_eq!((p.rec_set, p.rec_clr), (0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NODEV));
        // Access time: the whole field is cleared, one value set, the last one.
        let p = parse_options(&o(&["rnoatime", "rstrictatime"])).unwrap();
        assert_eq!((p.rec_set, p.rec_clr), (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME));
        let p = parse_options(&o(&["rnoatime", "rrelatime"])).unwrap();
        assert_eq!((p.rec_set, p.rec_clr), (MOUNT_ATTR_RELATIME, MOUNT_ATTR__ATIME));
        let p = parse_options(&o(&["rnodiratime"])).unwrap();
        assert_eq!((p.rec_set, p.rec_clr), (MOUNT_ATTR_NODIRATIME, 0));
        assert_eq!(option_names().filter(|n| n.starts_with('r') && REC_ATTR_NAMES.iter().any(|r| r.0 == *n)).count(), 18);
    }

    #[test]
    fn split() {
        assert_eq!(crate::inroot::split_last("a/b/c"), ("a/b", "c"));
        assert_eq!(crate::inroot::split_last("a"), ("", "a"));
        assert_eq!(crate::inroot::split_last("a/b/"), ("a", "b"));
    }

    #[test]
    fn v1_parsing() {
        let mi = "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n\
                  31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n\
                  32 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd,release_agent=/x\n";
        let h = parse_v1_hierarchies(mi);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].mountpoint, "/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(h[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(h[1].controllers, vec!["name=systemd"]);
        let pc = "12:cpu,cpuacct:/a/b\n1:name=systemd:/s\n0::/u\n";
        assert_eq!(own_cgroup(pc, &h[0].controllers), Some("/a/b"));
        assert_eq!(own_cgroup(pc, &h[1].controllers), Some("/s"));
    }

    // ---- tests that mount: each runs in a forked child with its own mount namespace,
    // so nothing it mounts can outlive it or reach the host.

    /// A fresh directory under the temp dir, removed on drop.
    pub(crate) struct TempDir(pub String);
    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let p = format!("{}/runh-r2-{tag}-{}-{n}", std::env::temp_dir().display(), std::process::id());
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Run `f` in a forked child inside a private mount namespace; None if not root.
    pub(crate) fn in_mount_ns(f: impl FnOnce() -> std::result::Result<(), String>) -> Option<()> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return None;
        }
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = (|| {
                if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
                    return Err(format!("unshare: {}", std::io::Error::last_os_error()));
                }
                sys_mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None, || "rprivate /".into())
                    .map_err(|e| e.to_string())?;
                f()
            })();
            if let Err(e) = &code {
                eprintln!("child failed: {e}");
            }
            unsafe { libc::_exit(code.is_err() as i32) };
        }
        let mut st = 0;
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "child status {st:#x}");
        Some(())
    }

    fn root_fd(path: &str) -> OwnedFd {
        open_host(path, libc::O_DIRECTORY).unwrap()
    }

    #[test]
    fn symlinks_stay_inside_root() {
        let t = TempDir::new("resolve");
        let outside = TempDir::new("outside");
        let root = format!("{}/root", t.0);
        std::fs::create_dir_all(format!("{root}/real")).unwrap();
        std::os::unix::fs::symlink("../../../../../..", format!("{root}/up")).unwrap();
        std::os::unix::fs::symlink(&outside.0, format!("{root}/abs")).unwrap();
        std::os::unix::fs::symlink("/real", format!("{root}/inside")).unwrap();
        let rfd = root_fd(&root);
        // ".." through a symlink is clamped at the root: "up/x" is "<root>/x".
        ensure_in_root(rfd.as_raw_fd(), "/up/x", Create::Dir).unwrap();
        assert!(std::path::Path::new(&format!("{root}/x")).is_dir());
        // An absolute symlink is read relative to the root, never the host.
        ensure_in_root(rfd.as_raw_fd(), "/inside/y/z", Create::File).unwrap();
        assert!(std::path::Path::new(&format!("{root}/real/y/z")).is_file());
        // A symlink to a host directory: its target is created inside the root instead.
        ensure_in_root(rfd.as_raw_fd(), "/abs/evil", Create::Dir).unwrap();
        assert!(!std::path::Path::new(&format!("{}/evil", outside.0)).exists());
        assert!(std::path::Path::new(&format!("{root}{}/evil", outside.0)).is_dir());
        // A symlink loop ends with an error, not a hang.
        std::os::unix::fs::symlink("/loop", format!("{root}/loop")).unwrap();
        assert!(ensure_in_root(rfd.as_raw_fd(), "/loop/x", Create::Dir).is_err());
        // Magic links are refused outright.
        assert!(open_in_root(rfd.as_raw_fd(), "/proc/self/root", libc::O_PATH).is_err());
    }

    fn mnt(dest: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount { destination: dest.into(), kind: Some(kind.into()), source: Some(source.into()), options: o(options), ..Default::default() }
    }

    fn statvfs_flags(path: &str) -> u64 {
        let c = CString::new(path).unwrap();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0, "statvfs {path}");
        st.f_flag
    }

    #[test]
    fn mounts_land_inside_root() {
        let t = TempDir::new("mounts");
        let root = format!("{}/root", t.0);
        let hostdir = format!("{}/hostdir", t.0);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&hostdir).unwrap();
        std::fs::write(format!("{hostdir}/f"), "hello").unwrap();
        std::fs::write(format!("{}/file", t.0), "file").unwrap();
        // A symlink pointing at the host's hostdir must not receive the tmpfs.
        std::os::unix::fs::symlink(&hostdir, format!("{root}/evil")).unwrap();
        let (r, h, bundle) = (root.clone(), hostdir.clone(), t.0.clone());
        in_mount_ns(move || {
            let rfd = root_fd(&r);
            let real = real_path(rfd.as_raw_fd()).map_err(|e| e.to_string())?;
            let ctx = MountContext { rootfs: &real, root: rfd.as_raw_fd(), bundle: &bundle, new_netns: true, new_cgroupns: false, cgroup2_bind: None, host_source: None, mounts: &[], mount_label: None };
            let e = |e: Error| e.to_string();
            mount_entry(&mnt("/tmp", "tmpfs", "tmpfs", &["nosuid", "mode=1777", "size=1m"]), &ctx).map_err(e)?;
            if statvfs_flags(&format!("{r}/tmp")) & libc::ST_NOSUID == 0 {
                return Err("tmpfs not nosuid".into());
            }
            // Read-only bind of a directory: needs the second remount call.
            mount_entry(&mnt("/data", "bind", &h, &["rbind", "ro", "nodev"]), &ctx).map_err(e)?;
            let f = statvfs_flags(&format!("{r}/data"));
            if f & libc::ST_RDONLY == 0 || f & libc::ST_NODEV == 0 {
                return Err(format!("bind not ro,nodev: {f:#x}"));
            }
            if std::fs::read_to_string(format!("{r}/data/f")).map_err(|e| e.to_string())? != "hello" {
                return Err("bind content".into());
            }
            // A file bind with a bundle-relative source creates a file destination.
            mount_entry(&mnt("/etc/file", "none", "file", &["bind"]), &ctx).map_err(e)?;
            if std::fs::read_to_string(format!("{r}/etc/file")).map_err(|e| e.to_string())? != "file" {
                return Err("file bind content".into());
            }
            // Through the malicious symlink: lands in <root>/<hostdir>, not on hostdir.
            mount_entry(&mnt("/evil/sub", "tmpfs", "tmpfs", &[]), &ctx).map_err(e)?;
            if std::path::Path::new(&format!("{h}/sub")).exists() || !std::path::Path::new(&format!("{r}{h}/sub")).is_dir() {
                return Err("mount escaped the rootfs".into());
            }
            // Nothing but procfs on /proc, nothing at all inside it (save runc's list),
            // even through a symlink.
            std::os::unix::fs::symlink("/proc/sys", format!("{r}/sneaky")).map_err(|e| e.to_string())?;
            for (d, k) in [("/proc", "tmpfs"), ("/proc/sys/x", "tmpfs"), ("/sneaky", "tmpfs")] {
                if mount_entry(&mnt(d, k, k, &[]), &ctx).is_ok() {
                    return Err(format!("{k} on {d} was allowed"));
                }
            }
            mount_entry(&mnt("/proc", "proc", "proc", &[]), &ctx).map_err(e)?;
            mount_entry(&mnt("/proc/uptime", "bind", "/proc/uptime", &["bind"]), &ctx).map_err(e)?;
            // Errors name the mount.
            let err = mount_entry(&mnt("/bad", "nosuchfs", "src", &[]), &ctx).unwrap_err().to_string();
            if !err.starts_with("mount src to /bad: ") {
                return Err(format!("bad error text {err}"));
            }
            Ok(())
        });
        assert!(!std::path::Path::new(&format!("{hostdir}/sub")).exists());
    }
}


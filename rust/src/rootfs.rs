//! The container's root filesystem: propagation, the rootfs bind, every `mounts` entry,
//! /dev, then pivot_root; and after console/hostname/sysctl, the masked and read-only
//! paths and a read-only root. Runs in runh-init, inside the new mount namespace.
use crate::devices;
use crate::error::{Error, Result};
use crate::mounts::{self, cstr, sys_mount, MountContext};
use crate::spec::Spec;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, RawFd};

pub struct RootfsOptions<'a> {
    /// Absolute host path of the rootfs (a relative root.path is joined to the bundle).
    pub rootfs: &'a str,
    pub bundle: &'a str,
    /// --no-pivot: MS_MOVE the rootfs onto / and chroot instead of pivot_root.
    pub no_pivot: bool,
    /// sync::Plan::cgroup2_bind.
    pub cgroup2_bind: Option<&'a str>,
    /// The container has a mount namespace of its own (namespaces::Plan); without one,
    /// nothing is mounted (`prepare_shared`).
    pub private_mount: bool,
    /// mounts::MountContext::host_source.
    pub host_source: Option<&'a dyn Fn(u32) -> Result<std::os::fd::OwnedFd>>,
}

fn has_ns(spec: &Spec, kind: &str) -> bool {
    // A namespace with a path is joined (setns), still "its own" for mounting purposes.
    spec.linux.as_ref().is_some_and(|l| l.namespaces.iter().any(|n| n.kind == kind))
}

fn clean(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    if t.is_empty() { "/" } else { t }
}

/// Propagation of linux.rootfsPropagation, or None if unset.
fn root_propagation(spec: &Spec) -> Result<Option<libc::c_ulong>> {
    match spec.linux.as_ref().and_then(|l| l.rootfs_propagation.as_deref()) {
        None | Some("") => Ok(None),
        Some(name) => mounts::propagation_flag(name)
            .map(Some)
            .ok_or_else(|| Error::config(format!("rootfsPropagation {name:?} is not a propagation type"))),
    }
}

/// runc does not set up /dev when the config bind-mounts the host's /dev there.
fn needs_dev_setup(spec: &Spec) -> bool {
    !spec.mounts.iter().any(|m| {
        clean(&m.destination) == "/dev"
            && (m.kind.as_deref() == Some("bind") || m.options.iter().any(|o| o == "bind" || o == "rbind"))
    })
}

const ROOT: &CStr = c"/";
const DOT: &CStr = c".";

pub fn prepare(spec: &Spec, opts: &RootfsOptions) -> Result<()> {
    prepare_with(spec, opts, &mut || Ok(()))
}

/// `prepare`, calling `before_pivot` once every mount is in place and before pivot_root
/// (the runtime-spec's point for the createRuntime/createContainer hooks).
pub fn prepare_with(spec: &Spec, opts: &RootfsOptions, before_pivot: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    if !opts.private_mount {
        return prepare_shared(spec, opts, before_pivot);
    }
    let prop = root_propagation(spec)?;
    // Until pivot_root, nothing we mount may propagate back to the host: rslave by
    // default (host mounts still appear in the container), or what the config asks.
    // Unbindable is the exception: an unbindable rootfs cannot be bound onto itself
    // (EINVAL, runc 1.1.5 and crun 1.8.1 fail there), so it starts rslave and / is made
    // unbindable at the very end (finalize).
    let initial = prop.filter(|p| p & libc::MS_UNBINDABLE == 0).unwrap_or(libc::MS_SLAVE | libc::MS_REC);
    sys_mount(None, ROOT, None, initial, None, || "make / private to the container (rootfsPropagation)".into())?;
    let rootfs = &abs_rootfs(opts);
    if prop.is_some_and(|p| p & libc::MS_SHARED != 0) {
        // pivot_root refuses a shared parent mount; only then is mountinfo worth reading.
        make_parent_private(rootfs)?;
    }
    let c_rootfs = cstr(rootfs)?;
    sys_mount(Some(&c_rootfs), &c_rootfs, None, libc::MS_BIND | libc::MS_REC, None, || {
        format!("mount {rootfs} to itself (rbind)")
    })?;
    // Opened after the bind so that walking from it sees the mounts made below.
    let root = mounts::open_host(rootfs, libc::O_DIRECTORY)?;
    let real_rootfs = mounts::real_path(root.as_raw_fd())?;
    let ctx = MountContext {
        rootfs: &real_rootfs,
        root: root.as_raw_fd(),
        bundle: opts.bundle,
        new_netns: spec.new_namespace("network"),
        new_cgroupns: has_ns(spec, "cgroup"),
        cgroup2_bind: opts.cgroup2_bind,
        host_source: opts.host_source,
        mounts: &spec.mounts,
        mount_label: crate::lsm::mount_label(spec),
    };
    for m in &spec.mounts {
        mounts::mount_entry(m, &ctx)?;
    }
    let setup_dev = needs_dev_setup(spec);
    if setup_dev {
        let how = if has_ns(spec, "user") { devices::Make::Bind } else { devices::Make::Mknod };
        devices::create_devices(root.as_raw_fd(), spec, how)?;
        devices::create_symlinks(root.as_raw_fd())?;
    }
    if unsafe { libc::fchdir(root.as_raw_fd()) } != 0 {
        return Err(Error::last_os(format!("chdir {rootfs}")));
    }
    drop(root);
    before_pivot()?;
    if opts.no_pivot {
        move_root(rootfs)?;
    } else {
        pivot_root(rootfs)?;
    }
    if let Some(p) = prop.filter(|p| p & libc::MS_UNBINDABLE == 0) {
        // Now "/" is the container's own root, so this cannot touch the host.
        sys_mount(None, ROOT, None, p, None, || "apply rootfsPropagation to /".into())?;
    }
    if setup_dev {
        reopen_dev_null()?;
    }
    Ok(())
}

fn abs_rootfs(opts: &RootfsOptions) -> String {
    if opts.rootfs.starts_with('/') {
        opts.rootfs.to_string()
    } else {
        format!("{}/{}", opts.bundle.trim_end_matches('/'), opts.rootfs)
    }
}

/// What a container without a mount namespace of its own cannot have: each would be a
/// mount, or a change to one, in runh's mount namespace, the host's (runc 1.1.5 and crun
/// 1.8.1 make the mounts there, where they outlive the container). runh checks this
/// before clone, and init again on the namespace it really joined.
pub fn check_shared(spec: &Spec) -> Result<()> {
    let why = "the container has no mount namespace of its own (add {\"type\": \"mount\"} to linux.namespaces)";
    let linux = spec.linux.as_ref();
    let refused = if !spec.mounts.is_empty() {
        Some("mounts")
    } else if linux.is_some_and(|l| !l.masked_paths.is_empty() || !l.readonly_paths.is_empty()) {
        Some("linux.maskedPaths and linux.readonlyPaths")
    } else if spec.root.as_ref().is_some_and(|r| r.readonly) {
        Some("root.readonly")
    } else if linux.and_then(|l| l.rootfs_propagation.as_deref()).is_some_and(|p| !p.is_empty()) {
        Some("linux.rootfsPropagation")
    } else if linux.is_some_and(|l| !l.sysctl.is_empty()) {
        // Written through the container's /proc/sys, which only a mount makes.
        Some("linux.sysctl")
    } else {
        None
    };
    match refused {
        Some(field) => Err(Error::config(format!("{field}: cannot be set up: {why}"))),
        None => Ok(()),
    }
}

/// No mount namespace of its own: the container shares runh's, so nothing is mounted
/// or remounted; the rootfs is used as it is. Missing /dev nodes are made in it by
/// mknod alone (never a bind from the host), the /dev links too, then chroot (pivot_root
/// would move the root of every process of runh's mount namespace).
fn prepare_shared(spec: &Spec, opts: &RootfsOptions, before_pivot: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    check_shared(spec)?;
    let rootfs = abs_rootfs(opts);
    let root = mounts::open_host(&rootfs, libc::O_DIRECTORY)?;
    let setup_dev = needs_dev_setup(spec);
    if setup_dev {
        devices::create_devices(root.as_raw_fd(), spec, devices::Make::MknodOnly)?;
        devices::create_symlinks(root.as_raw_fd())?;
    }
    if unsafe { libc::fchdir(root.as_raw_fd()) } != 0 {
        return Err(Error::last_os(format!("chdir {rootfs}")));
    }
    drop(root);
    before_pivot()?;
    if unsafe { libc::chroot(DOT.as_ptr()) } != 0 {
        return Err(Error::last_os(format!("chroot {rootfs}")));
    }
    chdir_root()?;
    if setup_dev {
        reopen_dev_null()?;
    }
    Ok(())
}

/// Stdio that is the host's /dev/null becomes the container's /dev/null, as with runc:
/// otherwise the container would hold a file of the host's /dev after pivot_root.
/// One open and three fstat; the dup3 only where needed.
fn reopen_dev_null() -> Result<()> {
    let null = mounts::open_host_rw("/dev/null")?;
    let mut nst: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(null.as_raw_fd(), &mut nst) } != 0 {
        return Err(Error::last_os("stat /dev/null"));
    }
    for fd in 0..3 {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            continue; // closed stdio: nothing to re-point
        }
        let is_null = st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == nst.st_rdev;
        if is_null && (st.st_dev, st.st_ino) != (nst.st_dev, nst.st_ino) && unsafe { libc::dup3(null.as_raw_fd(), fd, 0) } < 0 {
            return Err(Error::last_os(format!("re-point fd {fd} at the container's /dev/null")));
        }
    }
    Ok(())
}

/// Make the mount that holds `path` private (not recursive), found in mountinfo.
fn make_parent_private(path: &str) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), "read /proc/self/mountinfo"))?;
    let mut best = "/";
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else { continue };
        let inside = path == mp || mp == "/" || path.strip_prefix(mp).is_some_and(|r| r.starts_with('/'));
        if inside && mp.len() > best.len() {
            best = mp;
        }
    }
    let c = cstr(best)?;
    sys_mount(None, &c, None, libc::MS_PRIVATE, None, || format!("make {best} private"))
}

/// pivot_root(".", "."): the old root ends up stacked on the new one and is detached
/// right away, with no directory needed for it inside the rootfs. It is made rslave
/// first so that the detach does not propagate to the host.
fn pivot_root(rootfs: &str) -> Result<()> {
    if unsafe { libc::syscall(libc::SYS_pivot_root, DOT.as_ptr(), DOT.as_ptr()) } != 0 {
        return Err(Error::last_os(format!("pivot_root {rootfs}")));
    }
    sys_mount(None, DOT, None, libc::MS_SLAVE | libc::MS_REC, None, || "make old root rslave".into())?;
    if unsafe { libc::umount2(DOT.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(Error::last_os("unmount old root"));
    }
    chdir_root()
}

/// --no-pivot: move the rootfs mount over / and chroot into it (cwd is the rootfs).
fn move_root(rootfs: &str) -> Result<()> {
    let c = cstr(rootfs)?;
    sys_mount(Some(&c), ROOT, None, libc::MS_MOVE, None, || format!("move {rootfs} to /"))?;
    if unsafe { libc::chroot(DOT.as_ptr()) } != 0 {
        return Err(Error::last_os(format!("chroot {rootfs}")));
    }
    chdir_root()
}

fn chdir_root() -> Result<()> {
    if unsafe { libc::chdir(ROOT.as_ptr()) } != 0 {
        return Err(Error::last_os("chdir /"));
    }
    Ok(())
}

pub fn finalize(spec: &Spec) -> Result<()> {
    // Paths are resolved from "/" explicitly: the cwd may already be process.cwd.
    let root = mounts::open_host("/", libc::O_DIRECTORY)?;
    let root = root.as_raw_fd();
    let (masked, readonly): (&[String], &[String]) =
        spec.linux.as_ref().map_or((&[], &[]), |l| (&l.masked_paths, &l.readonly_paths));
    for p in readonly {
        readonly_path(root, p)?;
    }
    // Opened (and checked) once, on the first masked file: see inroot::dev_null.
    let mut null = None;
    let label = crate::lsm::mount_label(spec);
    for p in masked {
        mask_path(root, p, &mut null, label)?;
    }
    // A /dev mount with "ro" was made writable so that the nodes could be created.
    if let Some(dev) = spec.mounts.iter().rev().find(|m| clean(&m.destination) == "/dev") {
        if mounts::parse_options(&dev.options)?.flags & libc::MS_RDONLY != 0 {
            remount_ro(root, "/dev")?;
        }
    }
    if spec.root.as_ref().is_some_and(|r| r.readonly) {
        remount_ro(root, "/")?;
    }
    if let Some(p) = root_propagation(spec)?.filter(|p| p & libc::MS_UNBINDABLE != 0) {
        // Last: the read-only paths above are binds of a path onto itself, which an
        // unbindable mount refuses (EINVAL).
        sys_mount(None, ROOT, None, p, None, || "apply rootfsPropagation to /".into())?;
    }
    Ok(())
}

/// Open a path of the container (we are inside it now) without following a last symlink
/// that would lead elsewhere; None if it does not exist (runc skips those).
fn open_existing(root: RawFd, path: &str) -> Result<Option<std::os::fd::OwnedFd>> {
    match mounts::open_in_root(root, path, libc::O_PATH) {
        Ok(fd) => Ok(Some(fd)),
        Err(libc::ENOENT) => Ok(None),
        Err(e) => Err(Error::from_errno(e, format!("open {path}"))),
    }
}

fn is_dir(fd: RawFd) -> bool {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    unsafe { libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR }
}

/// Directories get an empty read-only tmpfs, anything else the container's /dev/null,
/// bound from its checked fd (`null`, opened on first use).
/// The tmpfs carries linux.mountLabel, as runc's.
fn mask_path(root: RawFd, path: &str, null: &mut Option<std::os::fd::OwnedFd>, label: Option<&str>) -> Result<()> {
    let Some(fd) = open_existing(root, path)? else { return Ok(()) };
    let target = mounts::fd_path(fd.as_raw_fd());
    if is_dir(fd.as_raw_fd()) {
        let data = label.map(|l| mounts::cstr(&crate::lsm::with_context("", Some(l)))).transpose()?;
        return sys_mount(Some(c"tmpfs"), &target, Some(c"tmpfs"), libc::MS_RDONLY, data.as_deref(), || format!("mask {path}"));
    }
    let null = match null {
        Some(n) => n,
        None => null.insert(crate::inroot::dev_null(root)?),
    };
    sys_mount(Some(&mounts::fd_path(null.as_raw_fd())), &target, None, libc::MS_BIND, None, || format!("mask {path}"))
}

/// Bind the path onto itself, then remount that bind read-only keeping its other flags.
fn readonly_path(root: RawFd, path: &str) -> Result<()> {
    let Some(fd) = open_existing(root, path)? else { return Ok(()) };
    let p = mounts::fd_path(fd.as_raw_fd());
    sys_mount(Some(&p), &p, None, libc::MS_BIND | libc::MS_REC, None, || format!("bind {path} for read-only"))?;
    drop(fd);
    remount_ro(root, path)
}

/// Make the mount at `path` read-only, its other flags kept: mount_setattr on the fd, so
/// no /proc is needed (a read-only rootfs whose config mounts no /proc). Before Linux
/// 5.12, a bind remount through /proc/self/fd.
fn remount_ro(root: RawFd, path: &str) -> Result<()> {
    let fd = mounts::open_in_root(root, path, libc::O_PATH)
        .map_err(|e| Error::from_errno(e, format!("open {path}")))?;
    match mounts::setattr(fd.as_raw_fd(), mounts::MOUNT_ATTR_RDONLY, 0, false) {
        Err(e) if e.errno == libc::ENOSYS => {
            let keep = mounts::fs_flags(fd.as_raw_fd());
            mounts::remount_bind(fd.as_raw_fd(), keep | libc::MS_RDONLY, || format!("remount {path} read-only"))
        }
        r => r.map_err(|e| Error::from_errno(e.errno, format!("remount {path} read-only"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Mount;

    #[test]
    fn dev_setup_skipped_for_bound_dev() {
        let mut spec = Spec::default();
        assert!(needs_dev_setup(&spec));
        spec.mounts.push(Mount { destination: "/dev/".into(), kind: Some("tmpfs".into()), ..Default::default() });
        assert!(needs_dev_setup(&spec));
        spec.mounts.push(Mount { destination: "/dev".into(), options: vec!["rbind".into()], ..Default::default() });
        assert!(!needs_dev_setup(&spec));
    }

    #[test]
    fn propagation_names() {
        let mut spec = Spec::default();
        assert_eq!(root_propagation(&spec).unwrap(), None);
        spec.linux = Some(crate::spec::Linux { rootfs_propagation: Some("rshared".into()), ..Default::default() });
        assert_eq!(root_propagation(&spec).unwrap(), Some(libc::MS_SHARED | libc::MS_REC));
        spec.linux.as_mut().unwrap().rootfs_propagation = Some("bogus".into());
        assert!(root_propagation(&spec).is_err());
    }

    use crate::mounts::tests::{in_mount_ns, TempDir};

    /// runc spec's mounts, masked and read-only paths, with a read-only root.
    const CONFIG: &str = r#"{
      "ociVersion": "1.0.2", "root": {"path": "rootfs", "readonly": true},
      "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid","strictatime","mode=755","size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620","gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid","noexec","nodev","mode=1777","size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid","noexec","nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid","noexec","nodev","ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid","noexec","nodev","relatime","ro"]}
      ],
      "linux": {
        "namespaces": [{"type": "mount"}, {"type": "network"}],
        "devices": [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229, "fileMode": 420, "uid": 7, "gid": 8}],
        "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/acpi", "/sys/firmware", "/nonexistent"],
        "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/nonexistent"]
      }
    }"#;

    fn stat(path: &str) -> Option<libc::stat> {
        let c = std::ffi::CString::new(path).unwrap();
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        (unsafe { libc::lstat(c.as_ptr(), &mut st) } == 0).then_some(st)
    }

    fn readonly(path: &str) -> bool {
        let c = std::ffi::CString::new(path).unwrap();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        unsafe { libc::statvfs(c.as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0 }
    }

    fn check_inside() -> std::result::Result<(), String> {
        let dev = |p: &str, maj, min, mode| {
            let st = stat(p).ok_or(format!("{p} missing"))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(maj, min) || st.st_mode & 0o7777 != mode {
                return Err(format!("{p}: mode {:o} rdev {:x}", st.st_mode, st.st_rdev));
            }
            Ok(())
        };
        dev("/dev/null", 1, 3, 0o666)?;
        dev("/dev/tty", 5, 0, 0o666)?;
        dev("/dev/fuse", 10, 229, 0o644)?;
        if stat("/dev/fuse").map(|s| (s.st_uid, s.st_gid)) != Some((7, 8)) {
            return Err("/dev/fuse owner".into());
        }
        let link = std::fs::read_link("/dev/ptmx").map_err(|e| e.to_string())?;
        if link.to_str() != Some("pts/ptmx") || std::fs::read_link("/dev/fd").is_err() {
            return Err("dev symlinks".into());
        }
        if stat("/bin/busybox").is_none() || !std::env::current_dir().map(|d| d == std::path::Path::new("/")).unwrap_or(false) {
            return Err("not inside the rootfs".into());
        }
        if !readonly("/") || !readonly("/proc/sys") || !readonly("/sys") || readonly("/dev") || readonly("/proc") {
            return Err("read-only flags".into());
        }
        if stat("/proc/keys").map(|s| s.st_rdev) != Some(libc::makedev(1, 3)) {
            return Err("/proc/keys not masked".into());
        }
        if std::fs::read_dir("/sys/firmware").map(|d| d.count()).unwrap_or(1) != 0 {
            return Err("/sys/firmware not masked".into());
        }
        // The old root is gone.
        let mi = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        if mi.lines().any(|l| l.split(' ').nth(4) == Some("/work")) {
            return Err("host mounts still visible".into());
        }
        Ok(())
    }

    fn run_prepare(no_pivot: bool) {
        let t = TempDir::new(if no_pivot { "nopivot" } else { "pivot" });
        let rootfs = format!("{}/rootfs", t.0);
        std::fs::create_dir_all(format!("{rootfs}/bin")).unwrap();
        std::fs::copy("/bin/busybox", format!("{rootfs}/bin/busybox")).unwrap();
        let spec: Spec = serde_json::from_str(CONFIG).unwrap();
        let bundle = t.0.clone();
        in_mount_ns(move || {
            let opts = RootfsOptions { rootfs: "rootfs", bundle: &bundle, no_pivot, cgroup2_bind: None, private_mount: true, host_source: None };
            prepare(&spec, &opts).map_err(|e| format!("prepare: {e}"))?;
            finalize(&spec).map_err(|e| format!("finalize: {e}"))?;
            check_inside()
        });
        // Nothing was left in the bundle but the directories the mounts needed.
        assert!(stat(&format!("{rootfs}/dev/null")).is_none());
    }

    #[test]
    fn prepare_with_pivot_root() {
        run_prepare(false);
    }

    #[test]
    fn prepare_with_no_pivot() {
        run_prepare(true);
    }
}


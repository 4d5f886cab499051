//! Device nodes and the /dev symlinks of a container, created inside the rootfs.
//!
//! Every node is made with mknodat on an O_PATH fd of its parent directory, itself opened
//! with RESOLVE_IN_ROOT (see mounts.rs), so a symlinked /dev in the image cannot redirect
//! a node onto the host. Where mknod is refused (EPERM, e.g. in a user namespace) the
//! host's node is bind-mounted onto an empty file instead, as runc does.
use crate::error::{Error, Result};
use crate::mounts::{cstr, ensure_in_root, fd_path, sys_mount, Create};
use crate::spec::{Device, Spec};
use std::os::fd::{AsRawFd, RawFd};

/// One node to create; `path` is absolute in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<'a> {
    pub path: std::borrow::Cow<'a, str>,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub kind: libc::mode_t,
    pub major: u32,
    pub minor: u32,
    pub mode: libc::mode_t,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// The devices every container gets (runtime-spec config-linux.md "Default Devices").
pub const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// A linux.devices entry as a Node; `u` is an unbuffered character device, so S_IFCHR.
pub fn node_of(d: &Device) -> Result<Node<'_>> {
    let kind = match d.kind.as_str() {
        "c" | "u" => libc::S_IFCHR,
        "b" => libc::S_IFBLK,
        "p" => libc::S_IFIFO,
        other => return Err(Error::config(format!("device {}: unknown type {other:?}", d.path))),
    };
    let num = |v: i64, what: &str| {
        u32::try_from(v).map_err(|_| Error::config(format!("device {}: bad {what} number {v}", d.path)))
    };
    Ok(Node {
        path: normal_path(&d.path)?,
        kind,
        major: num(d.major, "major")?,
        minor: num(d.minor, "minor")?,
        // Only the permission bits: a fileMode with type bits would fight `kind`.
        mode: d.file_mode.map_or(0o666, |m| m & 0o7777),
        uid: d.uid,
        gid: d.gid,
    })
}

/// A device path as the container sees it, normalised: absolute, without empty or "."
/// components or a trailing slash ("/dev/fuse/" is /dev/fuse). Any place in the rootfs
/// will do (the runtime-spec: "MAY be anywhere in the container filesystem", as runc and
/// crun create them): every node is made through inroot, so ".." and symlinks stay
/// inside the rootfs whatever the path says.
fn normal_path(path: &str) -> Result<std::borrow::Cow<'_, str>> {
    if !path.starts_with('/') {
        return Err(Error::config(format!("device path {path:?} is not absolute")));
    }
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if parts.is_empty() || parts.last() == Some(&"..") {
        return Err(Error::config(format!("device path {path:?} names no file")));
    }
    let clean = format!("/{}", parts.join("/"));
    Ok(if clean == path { std::borrow::Cow::Borrowed(path) } else { std::borrow::Cow::Owned(clean) })
}

/// The default devices (unless linux.devices names the same path) then linux.devices.
pub fn nodes(spec: &Spec) -> Result<Vec<Node<'_>>> {
    let extra: &[Device] = spec.linux.as_ref().map_or(&[], |l| &l.devices);
    let mut out = Vec::with_capacity(DEFAULT_DEVICES.len() + extra.len());
    let extra: Vec<Node> = extra.iter().map(node_of).collect::<Result<_>>()?;
    for &(path, major, minor) in DEFAULT_DEVICES {
        if extra.iter().any(|d| d.path == path) {
            continue;
        }
        out.push(Node { path: path.into(), kind: libc::S_IFCHR, major, minor, mode: 0o666, uid: None, gid: None });
    }
    out.extend(extra);
    Ok(out)
}

/// How the nodes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Make {
    /// mknod, and where that is refused (EPERM) a bind of the host's node.
    Mknod,
    /// Binds of the host's nodes right away (mknod is known to fail: a user namespace).
    Bind,
    /// mknod only: no mount may be made (the container shares runh's mount namespace).
    MknodOnly,
}

/// Create every node of `spec` in the rootfs `root`.
pub fn create_devices(root: RawFd, spec: &Spec, how: Make) -> Result<()> {
    let list = nodes(spec)?;
    // umask(0) once rather than a fchmodat per node: the modes are the config's exactly.
    let old = unsafe { libc::umask(0) };
    let r = list.iter().try_for_each(|n| create_node(root, n, how));
    unsafe { libc::umask(old) };
    r
}

pub fn create_node(root: RawFd, n: &Node, how: Make) -> Result<()> {
    let (parent, name) = crate::inroot::split_last(&n.path);
    let dir = ensure_in_root(root, parent, Create::Dir)?;
    let cname = cstr(name)?;
    if how != Make::Bind {
        let dev = libc::makedev(n.major, n.minor);
        if unsafe { libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), n.kind | n.mode, dev) } == 0 {
            if n.uid.is_some() || n.gid.is_some() {
                let uid = n.uid.unwrap_or(u32::MAX); // -1: leave unchanged
                let gid = n.gid.unwrap_or(u32::MAX);
                if unsafe { libc::fchownat(dir.as_raw_fd(), cname.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
                    return Err(Error::last_os(format!("chown {}", n.path)));
                }
            }
            return Ok(());
        }
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        match e {
            // Already there (e.g. /dev is not a fresh tmpfs): kept if it is this device,
            // an error otherwise (the runtime-spec's MUST; runc keeps whatever is there).
            libc::EEXIST => return check_existing(root, n),
            libc::EPERM if how == Make::Mknod => {}
            _ => return Err(Error::from_errno(e, format!("mknod {}", n.path))),
        }
    }
    bind_host_node(root, n)
}

fn is_node(st: &libc::stat, n: &Node) -> bool {
    st.st_mode & libc::S_IFMT == n.kind && (n.kind == libc::S_IFIFO || st.st_rdev == libc::makedev(n.major, n.minor))
}

fn stat_fd(fd: RawFd) -> Option<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st)
}

/// What is already at the node's path (followed inside the rootfs) must be that device.
fn check_existing(root: RawFd, n: &Node) -> Result<()> {
    let fd = crate::inroot::open_in_root(root, &n.path, libc::O_PATH).map_err(|e| Error::from_errno(e, format!("open device {}", n.path)))?;
    match stat_fd(fd.as_raw_fd()) {
        Some(st) if is_node(&st, n) => Ok(()),
        _ => Err(Error::from_errno(libc::EEXIST, format!("device {}: a file that is not this device is already there", n.path))),
    }
}

/// The host's node of this device: at the same path if that is this very device, else
/// udev's /dev/char/M:m or /dev/block/M:m. Never just "the host file at this path": a
/// config could name any host file as a device path, and it would be bound into the
/// container.
fn host_node(n: &Node) -> Result<std::os::fd::OwnedFd> {
    let sys = if n.kind == libc::S_IFBLK { "block" } else { "char" };
    let udev = format!("/dev/{sys}/{}:{}", n.major, n.minor);
    for p in [n.path.as_ref(), udev.as_str()] {
        if let Ok(fd) = crate::mounts::open_host(p, 0) {
            if stat_fd(fd.as_raw_fd()).is_some_and(|st| is_node(&st, n)) {
                return Ok(fd);
            }
        }
    }
    Err(Error::from_errno(libc::ENOENT, format!("device {}: mknod is not permitted and the host has no such device {}:{} to bind", n.path, n.major, n.minor)))
}

/// Bind the host's node (`host_node`) onto an empty file in the rootfs.
fn bind_host_node(root: RawFd, n: &Node) -> Result<()> {
    let host = host_node(n)?;
    let dest = ensure_in_root(root, &n.path, Create::File)?;
    sys_mount(Some(&fd_path(host.as_raw_fd())), &fd_path(dest.as_raw_fd()), None, libc::MS_BIND, None, || {
        format!("mount {} to {}", n.path, n.path)
    })
}

/// /dev/fd, /dev/std{in,out,err}, /dev/core (only if the kernel has /proc/kcore), and
/// /dev/ptmx -> pts/ptmx so that the container's devpts instance is the one used.
pub fn create_symlinks(root: RawFd) -> Result<()> {
    let dev = ensure_in_root(root, "/dev", Create::Dir)?;
    let mut links: Vec<(&str, &str)> = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if unsafe { libc::access(b"/proc/kcore\0".as_ptr() as *const libc::c_char, libc::F_OK) } == 0 {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        symlink(dev.as_raw_fd(), target, name, false)?;
    }
    symlink(dev.as_raw_fd(), "pts/ptmx", "ptmx", true)
}

fn symlink(dir: RawFd, target: &str, name: &str, replace: bool) -> Result<()> {
    let t = cstr(target)?;
    let n = cstr(name)?;
    if replace && unsafe { libc::unlinkat(dir, n.as_ptr(), 0) } != 0 {
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if e != libc::ENOENT {
            return Err(Error::from_errno(e, format!("remove /dev/{name}")));
        }
    }
    if unsafe { libc::symlinkat(t.as_ptr(), dir, n.as_ptr()) } != 0 {
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if e != libc::EEXIST {
            return Err(Error::from_errno(e, format!("symlink /dev/{name} -> {target}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(kind: &str, path: &str) -> Device {
        Device { kind: kind.into(), path: path.into(), major: 10, minor: 229, file_mode: Some(0o20640), uid: Some(1), gid: None }
    }

    #[test]
    fn node_types() {
        assert_eq!(node_of(&dev("c", "/dev/fuse")).unwrap().kind, libc::S_IFCHR);
        assert_eq!(node_of(&dev("u", "/dev/fuse")).unwrap().kind, libc::S_IFCHR);
        assert_eq!(node_of(&dev("b", "/dev/sda")).unwrap().kind, libc::S_IFBLK);
        assert_eq!(node_of(&dev("p", "/dev/fifo")).unwrap().kind, libc::S_IFIFO);
        assert_eq!(node_of(&dev("c", "/dev/fuse")).unwrap().mode, 0o640);
        assert!(node_of(&dev("x", "/dev/fuse")).is_err());
        // Anywhere in the rootfs, normalised; never relative or empty.
        assert_eq!(node_of(&dev("c", "/opt/dev/fuse")).unwrap().path, "/opt/dev/fuse");
        assert_eq!(node_of(&dev("c", "/dev//fuse/")).unwrap().path, "/dev/fuse");
        assert_eq!(node_of(&dev("c", "/dev/./fuse")).unwrap().path, "/dev/fuse");
        assert!(node_of(&dev("c", "dev/fuse")).is_err());
        assert!(node_of(&dev("c", "/")).is_err());
        assert!(node_of(&dev("c", "/dev/..")).is_err());
        let mut d = dev("c", "/dev/x");
        d.major = -1;
        assert!(node_of(&d).is_err());
    }

    #[test]
    fn defaults_overridden() {
        let mut spec = Spec::default();
        assert_eq!(nodes(&spec).unwrap().len(), 6);
        let mut l = crate::spec::Linux::default();
        l.devices.push(dev("c", "/dev/null/"));
        l.devices.push(dev("c", "/dev/fuse"));
        spec.linux = Some(l);
        let n = nodes(&spec).unwrap();
        assert_eq!(n.len(), 7);
        assert_eq!(n.iter().filter(|n| n.path == "/dev/null").count(), 1);
    }
}

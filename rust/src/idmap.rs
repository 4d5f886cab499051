//! Idmapped mounts: `mounts[].uidMappings/gidMappings` (runtime-spec v1.2) and runc's
//! `idmap`/`ridmap` options.
//!
//! Why the parent builds them: mount_setattr(MOUNT_ATTR_IDMAP) needs CAP_SYS_ADMIN in the
//! user namespace that owns the source's filesystem (the host's), which runh-init lacks
//! once it lives in the container's user namespace. So the runh process clones the source
//! as a detached tree (open_tree(OPEN_TREE_CLONE)), idmaps it, and sends the fd to init
//! over the sync socket (SCM_RIGHTS, one message per mount, in config order, after the
//! plan); init attaches it with move_mount onto the destination, resolved inside the
//! rootfs as every other mount (mounts.rs), and applies the remaining options there.
//! The copy is taken in the container's mount namespace (mounts::in_mount_ns_of), where
//! the mounts under the source are locked, and stay locked in the copy.
//!
//! The user namespace that carries the mapping: the container's own when the mount's
//! mappings are the container's (or the mount gives none: `idmap` alone means "the
//! container's mappings", runtime-spec #1224), else a throwaway one: a fork-like clone
//! with CLONE_NEWUSER that only waits, its maps written, /proc/<pid>/ns/user opened, the
//! child killed. One per distinct mapping per create (cost: see throwaway_userns).
use crate::error::{Error, Result};
use crate::spec::{IdMapping, Mount, Spec};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
/// The payload of each fd message on the sync socket.
const PAYLOAD: &[u8] = b"idmap";

use crate::mounts::MountAttr;

fn has_opt(m: &Mount, name: &str) -> bool {
    m.options.iter().any(|o| o == name)
}

/// The entry asks for an idmapped mount.
pub fn is_idmapped(m: &Mount) -> bool {
    !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() || has_opt(m, "idmap") || has_opt(m, "ridmap")
}

/// Indexes of the idmapped entries of `mounts`: the order fds travel in.
pub fn wanted(spec: &Spec) -> Vec<usize> {
    spec.mounts.iter().enumerate().filter(|(_, m)| is_idmapped(m)).map(|(i, _)| i).collect()
}

fn is_bind(m: &Mount) -> bool {
    m.kind.as_deref() == Some("bind") || has_opt(m, "bind") || has_opt(m, "rbind")
}

fn name(m: &Mount) -> String {
    format!("mount {} to {}", m.source.as_deref().unwrap_or(""), m.destination)
}

/// Checks before anything is cloned.
pub fn precheck(spec: &Spec) -> Result<()> {
    for i in wanted(spec) {
        let m = &spec.mounts[i];
        if !is_bind(m) {
            return Err(Error::config(format!("{}: idmapped mounts are only supported for bind mounts", name(m))));
        }
        if m.uid_mappings.is_empty() != m.gid_mappings.is_empty() {
            return Err(Error::config(format!("{}: idmapped mounts need both uidMappings and gidMappings", name(m))));
        }
        if m.uid_mappings.iter().chain(&m.gid_mappings).any(|x| x.size == 0) {
            return Err(Error::config(format!("{}: uidMappings/gidMappings: size must be at least 1", name(m))));
        }
        if m.uid_mappings.is_empty() && !crate::userns::new_userns(spec) && !crate::userns::joins_userns(spec) {
            return Err(Error::config(format!(
                "{}: idmap without uidMappings/gidMappings uses the container's user namespace, and there is none",
                name(m)
            )));
        }
        if unsafe { libc::geteuid() } != 0 {
            return Err(Error::config(format!("{}: idmapped mounts need root on the host", name(m))));
        }
    }
    Ok(())
}

fn open_ro(path: &str) -> Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| Error::config(format!("path {path:?} contains a NUL byte")))?;
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os(format!("open {path}")));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn map_text(maps: &[IdMapping]) -> String {
    maps.iter().map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size)).collect()
}

fn same(a: &[IdMapping], b: &[IdMapping]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x.container_id, x.host_id, x.size) == (y.container_id, y.host_id, y.size))
}

/// A user namespace with these maps, held by an fd: a child cloned into a new user
/// namespace that only waits, its maps written, its namespace opened, then killed.
fn throwaway_userns(uids: &[IdMapping], gids: &[IdMapping]) -> Result<OwnedFd> {
    // All signals blocked across the clone (as clone.rs): no Python handler may run in
    // the copy. It never unblocks them, so only SIGKILL ends it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // CLONE_VM on a small stack of ours: the child only waits, so sharing our memory is
    // safe, and it spares copying (and, at exit, tearing down) the Python process's page
    // tables, which a fork-like clone paid (about 1 ms here, against ~0.1 ms).
    extern "C" fn wait_forever(_: *mut libc::c_void) -> libc::c_int {
        loop {
            unsafe { libc::pause() };
        }
    }
    let mut stack = vec![0u8; 64 * 1024];
    let top = unsafe { stack.as_mut_ptr().add(stack.len()) }.cast::<libc::c_void>();
    let flags = libc::CLONE_VM | libc::CLONE_NEWUSER | libc::SIGCHLD;
    let pid = unsafe { libc::clone(wait_forever, top, flags, std::ptr::null_mut()) };
    let clone_err = (pid < 0).then(|| Error::last_os("clone a user namespace for an idmapped mount"));
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    if let Some(e) = clone_err {
        return Err(e);
    }
    let pid = pid as libc::pid_t;
    let r = (|| -> Result<OwnedFd> {
        for (file, maps) in [("uid_map", uids), ("gid_map", gids)] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, map_text(maps))
                .map_err(|e| Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO), format!("write {path} for an idmapped mount")))?;
        }
        open_ro(&format!("/proc/{pid}/ns/user"))
    })();
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut st = 0;
        while libc::waitpid(pid, &mut st, 0) < 0 && *libc::__errno_location() == libc::EINTR {}
    }
    drop(stack); // only now: the child ran on it until it was reaped
    r
}

/// open_tree(OPEN_TREE_CLONE) of `src`, then mount_setattr(MOUNT_ATTR_IDMAP) with
/// `userns`: a detached, idmapped copy of the source (recursive for rbind; the idmap
/// itself recursive only for `ridmap`, as runc).
fn detached(src: &str, recursive_tree: bool, recursive_idmap: bool, userns: RawFd) -> Result<OwnedFd> {
    let c = CString::new(src).map_err(|_| Error::config(format!("path {src:?} contains a NUL byte")))?;
    let fd = clone_tree(&c, recursive_tree)?;
    let attr = MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns as u64 };
    let mut at = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive_idmap {
        at |= AT_RECURSIVE;
    }
    let r = unsafe {
        libc::syscall(libc::SYS_mount_setattr, fd.as_raw_fd(), c"".as_ptr(), at, &attr as *const MountAttr, std::mem::size_of::<MountAttr>())
    };
    if r < 0 {
        let e = Error::last_os(format!("idmap {src} (mount_setattr)"));
        let hint = if e.errno == libc::EINVAL { " (does its filesystem support idmapped mounts?)" } else { "" };
        return Err(Error::from_errno(e.errno, format!("{}{hint}", e.context)));
    }
    Ok(fd)
}

/// open_tree(OPEN_TREE_CLONE) of a host path: a detached copy of the mount there (with
/// the mounts below it when `recursive`), to attach elsewhere with `attach`.
pub(crate) fn clone_tree(src: &std::ffi::CStr, recursive: bool) -> Result<OwnedFd> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, src.as_ptr(), flags) };
    if fd < 0 {
        return Err(Error::last_os(format!("open_tree {}", src.to_string_lossy())));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Parent side, once the container's user namespace (if any) has its maps: one detached
/// idmapped mount per entry of `wanted`, in that order.
pub fn prepare(spec: &Spec, bundle: &str, init_pid: i32) -> Result<Vec<OwnedFd>> {
    let idx = wanted(spec);
    if idx.is_empty() {
        return Ok(Vec::new());
    }
    let linux = spec.linux.clone().unwrap_or_default();
    let joined = linux.namespaces.iter().find(|n| n.kind == "user").and_then(|n| n.path.clone()).filter(|p| !p.is_empty());
    let new_userns = crate::userns::new_userns(spec);
    // One user namespace per distinct mapping.
    let mut made: Vec<(Vec<IdMapping>, Vec<IdMapping>, OwnedFd)> = Vec::new();
    let mut out = Vec::with_capacity(idx.len());
    for i in idx {
        let m = &spec.mounts[i];
        let (uids, gids) = if m.uid_mappings.is_empty() {
            (&linux.uid_mappings, &linux.gid_mappings)
        } else {
            (&m.uid_mappings, &m.gid_mappings)
        };
        let own = new_userns && same(uids, &linux.uid_mappings) && same(gids, &linux.gid_mappings);
        let borrowed;
        let userns = if own {
            borrowed = open_ro(&format!("/proc/{init_pid}/ns/user"))?;
            borrowed.as_raw_fd()
        } else if m.uid_mappings.is_empty() {
            // idmap alone with a joined user namespace: that namespace's maps.
            let p = joined.as_deref().ok_or_else(|| Error::config(format!("{}: no user namespace to take the mapping from", name(m))))?;
            borrowed = open_ro(p)?;
            borrowed.as_raw_fd()
        } else {
            match made.iter().position(|(u, g, _)| same(u, uids) && same(g, gids)) {
                Some(k) => made[k].2.as_raw_fd(),
                None => {
                    let fd = throwaway_userns(uids, gids)?;
                    made.push((uids.clone(), gids.clone(), fd));
                    made.last().map(|x| x.2.as_raw_fd()).unwrap_or(-1)
                }
            }
        };
        let src = crate::mounts::bind_source(m, bundle);
        // In the container's mount namespace, so that an rbind's submounts stay locked
        // (the container could otherwise unmount one to see what it covers; mounts.rs).
        let fd = crate::mounts::in_mount_ns_of(init_pid, || detached(&src, has_opt(m, "rbind"), has_opt(m, "ridmap"), userns))
            .map_err(|e| Error::from_errno(e.errno, format!("{}: {}", name(m), e.context)))?;
        out.push(fd);
    }
    Ok(out)
}

/// Parent side, after the plan (and the seccomp program): the detached mounts.
pub fn send(sync_fd: RawFd, fds: &[OwnedFd]) -> Result<()> {
    for fd in fds {
        crate::tty::send_fd(sync_fd, fd.as_raw_fd(), PAYLOAD).map_err(|e| Error::from_errno(e.errno, "send an idmapped mount to init"))?;
    }
    Ok(())
}

/// Init side: receive the detached mounts and hang each on its entry (`Mount::idmapped_fd`).
pub fn recv(sync_fd: RawFd, spec: &mut Spec) -> Result<()> {
    for i in wanted(spec) {
        let (fd, payload) = crate::tty::recv_fd(sync_fd).map_err(|e| Error::sync(format!("receive idmapped mount: {}", e.context)))?;
        if payload != PAYLOAD {
            return Err(Error::sync("expected an idmapped mount on the sync socket"));
        }
        spec.mounts[i].idmapped_fd = Some(std::os::fd::IntoRawFd::into_raw_fd(fd));
    }
    Ok(())
}

/// Init side: attach the detached mount `fd` on `dest` (an O_PATH fd inside the rootfs).
pub fn attach(fd: RawFd, dest: RawFd, what: &str) -> Result<()> {
    let r = unsafe {
        libc::syscall(libc::SYS_move_mount, fd, c"".as_ptr(), dest, c"".as_ptr(), MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
    };
    if r < 0 {
        return Err(Error::last_os(format!("{what} (move_mount)")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Spec {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn which_and_checks() {
        let s = spec(
            r#"{"mounts":[{"destination":"/a","type":"bind","source":"/x","options":["rbind"]},
                {"destination":"/b","type":"bind","source":"/x","options":["rbind","idmap"]},
                {"destination":"/c","source":"/x","options":["bind"],"uidMappings":[{"containerID":0,"hostID":1,"size":1}],"gidMappings":[{"containerID":0,"hostID":1,"size":1}]}],
                "linux":{"namespaces":[{"type":"user"}]}}"#,
        );
        assert_eq!(wanted(&s), vec![1, 2]);
        if unsafe { libc::geteuid() } == 0 {
            precheck(&s).unwrap();
        }
        // idmap alone needs a container user namespace to take the mapping from.
        let none = spec(r#"{"mounts":[{"destination":"/b","type":"bind","source":"/x","options":["idmap"]}]}"#);
        assert!(precheck(&none).unwrap_err().context.contains("user namespace"));
        let notbind = spec(r#"{"mounts":[{"destination":"/t","type":"tmpfs","source":"tmpfs","options":["idmap"]}],"linux":{"namespaces":[{"type":"user"}]}}"#);
        assert!(precheck(&notbind).unwrap_err().context.contains("bind"));
        let half = spec(r#"{"mounts":[{"destination":"/c","type":"bind","source":"/x","uidMappings":[{"containerID":0,"hostID":1,"size":1}]}]}"#);
        assert!(precheck(&half).unwrap_err().context.contains("both"));
    }

    /// A detached idmapped mount of a directory holding a file of uid 1000, attached in
    /// a private mount namespace, shows that file as uid 5 (mapping 1000 -> 5).
    #[test]
    fn detached_mount_maps_owner() {
        let t = crate::mounts::tests::TempDir::new("idmap");
        let src = format!("{}/src", t.0);
        let dst = format!("{}/dst", t.0);
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        let f = format!("{src}/f");
        std::fs::write(&f, "x").unwrap();
        let cf = CString::new(f.clone()).unwrap();
        if unsafe { libc::chown(cf.as_ptr(), 1000, 1000) } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let (s2, d2) = (src.clone(), dst.clone());
        crate::mounts::tests::in_mount_ns(move || {
            let m = |c, h| vec![IdMapping { container_id: c, host_id: h, size: 1 }];
            let t = std::time::Instant::now();
            let ns = throwaway_userns(&m(1000, 5), &m(1000, 7)).map_err(|e| e.to_string())?;
            eprintln!("throwaway user namespace: {:?}", t.elapsed());
            let fd = detached(&s2, false, false, ns.as_raw_fd()).map_err(|e| e.to_string())?;
            let dest = crate::mounts::open_host(&d2, libc::O_DIRECTORY).map_err(|e| e.to_string())?;
            attach(fd.as_raw_fd(), dest.as_raw_fd(), "attach").map_err(|e| e.to_string())?;
            use std::os::unix::fs::MetadataExt;
            let md = std::fs::metadata(format!("{d2}/f")).map_err(|e| e.to_string())?;
            if (md.uid(), md.gid()) != (5, 7) {
                return Err(format!("owner through the idmapped mount: {}:{}", md.uid(), md.gid()));
            }
            Ok(())
        });
    }
}

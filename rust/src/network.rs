//! Network interfaces: the loopback of a new network namespace, brought up by init as
//! runc and crun do (a new namespace starts with `lo` down, and much software assumes
//! 127.0.0.1 works); and linux.netDevices, host interfaces that runh moves into the
//! container's network namespace (below).
use crate::error::{Error, Result};
use std::os::fd::AsRawFd;

/// `struct ifreq` with the flags member of its union (the kernel reads 40 bytes).
#[repr(C)]
struct IfreqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn ifreq(name: &str) -> Result<IfreqFlags> {
    let mut r = IfreqFlags { name: [0; libc::IFNAMSIZ], flags: 0, _pad: [0; 22] };
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(Error::config(format!("network interface name {name:?} is not valid")));
    }
    for (d, s) in r.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(r)
}

/// A socket to talk to the interfaces of this process's network namespace (ioctl).
fn ioctl_socket() -> Result<std::os::fd::OwnedFd> {
    crate::fd::owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }, || {
        "socket for the network interfaces".into()
    })
}

/// Set IFF_UP on `name` in this process's network namespace: SIOCGIFFLAGS, then
/// SIOCSIFFLAGS only if it is down. Four syscalls; for lo about 0.1 ms here (measured
/// by tests::loopback_comes_up), nearly all of it the kernel adding lo's addresses and
/// routes, which runc and crun pay the same. `runh bench -s run`, 60 interleaved runs,
/// main against this: median 31.98 -> 30.88 ms, min 21.69 -> 21.32 ms (load 5.5, so
/// within the noise).
pub fn link_up(name: &str) -> Result<()> {
    let sock = ioctl_socket()?;
    let mut r = ifreq(name)?;
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut r) } < 0 {
        return Err(Error::last_os(format!("read the flags of network interface {name}")));
    }
    if r.flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    r.flags |= libc::IFF_UP as libc::c_short;
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &r) } < 0 {
        return Err(Error::last_os(format!("bring network interface {name} up")));
    }
    Ok(())
}

/// The loopback of a network namespace init has just made.
pub fn loopback_up() -> Result<()> {
    link_up("lo")
}


#[cfg(feature = "host")]
pub use net_devices::{move_devices, precheck};

#[cfg(test)]
mod tests {
    /// In a new network namespace (a forked child, so nothing outlives it): lo is down,
    /// then up; the time it takes is printed (`cargo test -- --nocapture`).
    #[test]
    fn loopback_comes_up() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let up = || std::fs::read_to_string("/sys/class/net/lo/flags").ok().and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok()).map(|f| f & 1 == 1);
            let ok = unsafe { libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS) } == 0
                && unsafe { libc::mount(c"none".as_ptr(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) } == 0
                && unsafe { libc::mount(c"sysfs".as_ptr(), c"/sys".as_ptr(), c"sysfs".as_ptr(), 0, std::ptr::null()) } == 0
                && up() == Some(false)
                && {
                    let t = std::time::Instant::now();
                    let r = super::loopback_up().is_ok();
                    eprintln!("loopback_up: {:?}", t.elapsed());
                    r
                }
                && up() == Some(true);
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut st = 0;
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "child status {st:#x}");
    }
}

/// runh's side only (runh-init never moves devices).
#[cfg(feature = "host")]
mod net_devices {
    use crate::error::{Error, Result};
    use crate::spec::Spec;
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};

    // ---------------------------------------------------------------------------------------
    // linux.netDevices (runtime-spec 1.3): host interfaces moved into the container's network
    // namespace by runh, after clone and before init is sent its plan, as runc 1.2 and crun
    // do it from the parent. The move and the rename are one RTM_NEWLINK (IFLA_NET_NS_FD and
    // IFLA_IFNAME: the kernel moves the device, closed, then renames it there, "%d" templates
    // included); then, from a netlink socket made in the container's namespace, the
    // permanent addresses of global scope are added back (a move drops them) and the link
    // is set up, as the spec asks. Nothing is done on delete (the spec: the runtime MUST NOT
    // move it back): when the namespace dies the kernel returns physical devices to the
    // initial namespace and destroys virtual ones.
    //
    // Everything checkable is checked before clone (`precheck`), and the free names in the
    // container's namespace before the first move (`move_devices`), so that a bad config
    // moves nothing: a device moved into a namespace that then dies may not come back.

    /// runc's (and the kernel's dev_valid_name) rule for an interface name.
    fn valid_name(name: &str) -> bool {
        !name.is_empty() && name.len() < libc::IFNAMSIZ && name != "." && name != ".." && !name.contains(['/', ':']) && !name.chars().any(char::is_whitespace)
    }

    /// (host name, name in the container) of each entry, in a stable order.
    fn devices(spec: &Spec) -> Vec<(String, String)> {
        let Some(map) = spec.linux.as_ref().and_then(|l| l.net_devices.as_ref()).and_then(|v| v.as_object()) else { return Vec::new() };
        map.iter()
            .map(|(k, v)| {
                let new = v.get("name").and_then(|n| n.as_str()).filter(|n| !n.is_empty()).unwrap_or(k);
                (k.clone(), new.to_string())
            })
            .collect()
    }

    /// Before clone: a network namespace of the container's own to move into, root, valid
    /// and distinct names, and every host interface present in runh's namespace.
    pub fn precheck(spec: &Spec, ns: &crate::namespaces::Plan) -> Result<()> {
        let devs = devices(spec);
        if devs.is_empty() {
            return Ok(());
        }
        let field = "linux.netDevices";
        if spec.linux.as_ref().and_then(|l| l.net_devices.as_ref()).is_some_and(|v| !v.is_object()) {
            return Err(Error::config(format!("{field} must be an object")));
        }
        if !ns.has(libc::CLONE_NEWNET) || !ns.private_net_ns()? {
            return Err(Error::config(format!("{field}: the container has no network namespace of its own to move them into")));
        }
        if ns.joins_user() && ns.clone_flags & libc::CLONE_NEWNET as u64 != 0 {
            return Err(Error::config(format!("{field}: not supported with a new network namespace under a user namespace joined by path")));
        }
        if unsafe { libc::geteuid() } != 0 {
            return Err(Error::config(format!("{field}: moving network devices needs root")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (host, new) in &devs {
            for n in [host, new] {
                if !valid_name(n) {
                    return Err(Error::config(format!("{field}: {n:?} is not a valid interface name")));
                }
            }
            if host.contains("%d") {
                return Err(Error::config(format!("{field}: {host:?} is not a host interface")));
            }
            if !new.contains("%d") && (!seen.insert(new.clone()) || (new == "lo" && ns.clone_flags & libc::CLONE_NEWNET as u64 != 0)) {
                return Err(Error::config(format!("{field}: two interfaces would be named {new:?} in the container")));
            }
            let c = std::ffi::CString::new(host.as_str()).map_err(|_| Error::config(format!("{field}: {host:?} contains a NUL byte")))?;
            if unsafe { libc::if_nametoindex(c.as_ptr()) } == 0 {
                return Err(Error::from_errno(libc::ENODEV, format!("{field}: no interface {host:?} on the host")));
            }
        }
        Ok(())
    }

    // ---- a minimal rtnetlink client: requests with an ACK, and dumps.

    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_ACK: u16 = 0x4;
    const NLM_F_DUMP: u16 = 0x300;
    const NLM_F_EXCL: u16 = 0x200;
    const NLM_F_CREATE: u16 = 0x400;
    const RTM_NEWLINK: u16 = 16;
    const RTM_GETLINK: u16 = 18;
    const RTM_NEWADDR: u16 = 20;
    const RTM_GETADDR: u16 = 22;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_NET_NS_FD: u16 = 28;
    const IFA_ADDRESS: u16 = 1;
    const IFA_LOCAL: u16 = 2;
    const IFA_BROADCAST: u16 = 4;
    const IFA_FLAGS: u16 = 8;
    const IFA_F_PERMANENT: u32 = 0x80;
    const RT_SCOPE_UNIVERSE: u8 = 0;
    const NLMSG_HDRLEN: usize = 16;

    fn align4(n: usize) -> usize {
        (n + 3) & !3
    }

    /// One request being built: the header (its length set by `finish`), a fixed part, then
    /// attributes.
    struct Req(Vec<u8>);

    impl Req {
        fn new(ty: u16, flags: u16, fixed: &[u8]) -> Req {
            let mut b = vec![0u8; NLMSG_HDRLEN];
            b[4..6].copy_from_slice(&ty.to_ne_bytes());
            b[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
            b.extend_from_slice(fixed);
            b.resize(align4(b.len()), 0);
            Req(b)
        }
        fn attr(mut self, ty: u16, data: &[u8]) -> Req {
            let len = 4 + data.len();
            self.0.extend_from_slice(&(len as u16).to_ne_bytes());
            self.0.extend_from_slice(&ty.to_ne_bytes());
            self.0.extend_from_slice(data);
            self.0.resize(align4(self.0.len()), 0);
            self
        }
    }

    /// struct ifinfomsg: family, pad, type, index, flags, change.
    fn ifinfomsg(index: i32, flags: u32, change: u32) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b[4..8].copy_from_slice(&index.to_ne_bytes());
        b[8..12].copy_from_slice(&flags.to_ne_bytes());
        b[12..16].copy_from_slice(&change.to_ne_bytes());
        b
    }

    fn cname(name: &str) -> Vec<u8> {
        let mut v = name.as_bytes().to_vec();
        v.push(0);
        v
    }

    /// The attributes after a fixed part of `fixed` bytes in one message's payload.
    fn attrs(payload: &[u8], fixed: usize) -> Vec<(u16, &[u8])> {
        let mut out = Vec::new();
        let mut at = align4(fixed);
        while at + 4 <= payload.len() {
            let len = u16::from_ne_bytes([payload[at], payload[at + 1]]) as usize;
            let ty = u16::from_ne_bytes([payload[at + 2], payload[at + 3]]) & 0x3fff;
            if len < 4 || at + len > payload.len() {
                break;
            }
            out.push((ty, &payload[at + 4..at + len]));
            at += align4(len);
        }
        out
    }

    struct Netlink {
        fd: OwnedFd,
        seq: u32,
    }

    impl Netlink {
        /// A NETLINK_ROUTE socket in this thread's network namespace.
        fn new() -> Result<Netlink> {
            let fd = crate::fd::owned(unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) }, || {
                "netlink socket".into()
            })?;
            Ok(Netlink { fd, seq: 0 })
        }

        /// One in the network namespace `netns`: made by a thread that joins it (a socket
        /// stays in the namespace it was made in), which then ends.
        fn in_namespace(netns: RawFd) -> Result<Netlink> {
            std::thread::scope(|s| {
                s.spawn(|| {
                    if unsafe { libc::setns(netns, libc::CLONE_NEWNET) } != 0 {
                        return Err(Error::last_os("enter the container's network namespace"));
                    }
                    Netlink::new()
                })
                .join()
                .unwrap_or_else(|_| Err(Error::sync("the netlink thread panicked")))
            })
        }

        /// Send `req`, read until its ACK (or, for a dump, NLMSG_DONE): the payloads of the
        /// messages that came back, each with its type. A NLMSG_ERROR is the error.
        fn call(&mut self, req: Req, what: &dyn Fn() -> String) -> Result<Vec<(u16, Vec<u8>)>> {
            let mut b = req.0;
            self.seq += 1;
            let seq = self.seq;
            let len = b.len() as u32;
            b[0..4].copy_from_slice(&len.to_ne_bytes());
            b[8..12].copy_from_slice(&seq.to_ne_bytes());
            let dump = u16::from_ne_bytes([b[6], b[7]]) & NLM_F_DUMP == NLM_F_DUMP;
            if unsafe { libc::send(self.fd.as_raw_fd(), b.as_ptr().cast(), b.len(), 0) } < 0 {
                return Err(Error::last_os(what()));
            }
            let mut out = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    let e = Error::last_os(what());
                    if e.errno == libc::EINTR {
                        continue;
                    }
                    return Err(e);
                }
                let mut at = 0;
                let n = n as usize;
                while at + NLMSG_HDRLEN <= n {
                    let mlen = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                    let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                    let mseq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().unwrap());
                    if mlen < NLMSG_HDRLEN || at + mlen > n {
                        return Err(Error::sync(format!("{}: malformed netlink reply", what())));
                    }
                    let payload = &buf[at + NLMSG_HDRLEN..at + mlen];
                    at += align4(mlen);
                    if mseq != seq {
                        continue;
                    }
                    match ty {
                        NLMSG_ERROR => {
                            let code = i32::from_ne_bytes(payload.get(0..4).and_then(|p| p.try_into().ok()).unwrap_or([0; 4]));
                            if code != 0 {
                                return Err(Error::from_errno(-code, what()));
                            }
                            return Ok(out); // the ACK
                        }
                        NLMSG_DONE if dump => return Ok(out),
                        _ => out.push((ty, payload.to_vec())),
                    }
                }
            }
        }

        /// The index of the link called `name`, or of the link at `index`, with its name.
        fn link(&mut self, by_index: i32, name: Option<&str>) -> Result<(i32, String)> {
            let mut req = Req::new(RTM_GETLINK, NLM_F_ACK, &ifinfomsg(by_index, 0, 0));
            if let Some(n) = name {
                req = req.attr(IFLA_IFNAME, &cname(n));
            }
            let what = || format!("find interface {}", name.map_or_else(|| format!("#{by_index}"), str::to_string));
            for (ty, p) in self.call(req, &what)? {
                if ty == RTM_NEWLINK && p.len() >= 16 {
                    let index = i32::from_ne_bytes(p[4..8].try_into().unwrap());
                    let ifname = attrs(&p, 16).into_iter().find(|(t, _)| *t == IFLA_IFNAME).map(|(_, v)| {
                        String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or(&[])).into_owned()
                    });
                    return Ok((index, ifname.unwrap_or_default()));
                }
            }
            Err(Error::from_errno(libc::ENODEV, what()))
        }

        fn set_up(&mut self, index: i32, name: &str) -> Result<()> {
            let up = libc::IFF_UP as u32;
            self.call(Req::new(RTM_NEWLINK, NLM_F_ACK, &ifinfomsg(index, up, up)), &|| format!("bring {name} up")).map(drop)
        }
    }

    /// An address to carry over: its ifaddrmsg (family, prefix length, scope) and the
    /// address attributes as the host had them.
    struct Addr {
        family: u8,
        prefixlen: u8,
        attrs: Vec<(u16, Vec<u8>)>,
    }

    /// The permanent addresses of global scope on link `index` (what the spec says to keep).
    fn permanent_addrs(nl: &mut Netlink, index: i32, name: &str) -> Result<Vec<Addr>> {
        let mut out = Vec::new();
        let msgs = nl.call(Req::new(RTM_GETADDR, NLM_F_DUMP, &[0u8; 8]), &|| format!("list the addresses of {name}"))?;
        for (ty, p) in msgs {
            if ty != RTM_NEWADDR || p.len() < 8 {
                continue;
            }
            let (family, prefixlen, flags8, scope) = (p[0], p[1], p[2], p[3]);
            if i32::from_ne_bytes(p[4..8].try_into().unwrap()) != index || scope != RT_SCOPE_UNIVERSE {
                continue;
            }
            let a = attrs(&p, 8);
            let flags = a.iter().find(|(t, v)| *t == IFA_FLAGS && v.len() == 4).map_or(flags8 as u32, |(_, v)| u32::from_ne_bytes((*v).try_into().unwrap()));
            if flags & IFA_F_PERMANENT == 0 {
                continue;
            }
            let keep = a.into_iter().filter(|(t, _)| matches!(*t, IFA_ADDRESS | IFA_LOCAL | IFA_BROADCAST)).map(|(t, v)| (t, v.to_vec())).collect();
            out.push(Addr { family, prefixlen, attrs: keep });
        }
        Ok(out)
    }

    /// After clone, before init gets its plan: move every linux.netDevices entry into the
    /// network namespace at `netns` (the init's, or the one it joins by path).
    pub fn move_devices(spec: &Spec, netns: RawFd) -> Result<()> {
        let devs = devices(spec);
        if devs.is_empty() {
            return Ok(());
        }
        let mut host = Netlink::new()?;
        let mut inside = Netlink::in_namespace(netns)?;
        // Every name free in the container's namespace before anything moves.
        for (_, new) in devs.iter().filter(|(_, n)| !n.contains("%d")) {
            match inside.link(0, Some(new)) {
                Err(e) if e.errno == libc::ENODEV => {}
                Err(e) => return Err(e),
                Ok(_) => return Err(Error::from_errno(libc::EEXIST, format!("linux.netDevices: the container's network namespace already has an interface {new:?}"))),
            }
        }
        for (name, new) in &devs {
            let what = |s: &str| format!("linux.netDevices: {s} {name}");
            let (index, _) = host.link(0, Some(name)).map_err(|e| Error::from_errno(e.errno, what("no host interface")))?;
            let addrs = permanent_addrs(&mut host, index, name)?;
            // Move and rename in one request: the kernel closes the device, moves it, then
            // renames it in the container's namespace.
            let req = Req::new(RTM_NEWLINK, NLM_F_ACK, &ifinfomsg(index, 0, 0))
                .attr(IFLA_NET_NS_FD, &(netns as u32).to_ne_bytes())
                .attr(IFLA_IFNAME, &cname(new));
            host.call(req, &|| what("move"))?;
            // Its index is kept when free there (always, in a new namespace); else by name.
            let (at, got) = match inside.link(index, None) {
                Ok((i, n)) if n == *new || new.contains("%d") => (i, n),
                _ => inside.link(0, Some(new))?,
            };
            for a in &addrs {
                let mut fixed = [0u8; 8];
                fixed[0] = a.family;
                fixed[1] = a.prefixlen;
                fixed[3] = RT_SCOPE_UNIVERSE;
                fixed[4..8].copy_from_slice(&at.to_ne_bytes());
                let mut req = Req::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &fixed);
                for (t, v) in &a.attrs {
                    req = req.attr(*t, v);
                }
                inside.call(req, &|| format!("linux.netDevices: add an address of {name} back on {got}"))?;
            }
            inside.set_up(at, &got)?;
        }
        Ok(())
    }

}

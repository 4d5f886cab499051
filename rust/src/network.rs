//! Network interfaces: the loopback of a new network namespace, brought up by init as
//! runc and crun do (a new namespace starts with `lo` down, and much software assumes
//! 127.0.0.1 works).
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
/// SIOCSIFFLAGS only if it is down. Four syscalls, about 10 us here.
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

//! process.terminal: a pty made inside the container (its devpts), the master sent to the
//! caller's console socket, the slave made init's controlling terminal and stdio.
use crate::error::{check, Error, Result};
use crate::spec::ConsoleSize;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

const TIOCSPTLCK: libc::c_ulong = 0x4004_5431;
const TIOCGPTN: libc::c_ulong = 0x8004_5430;
// Opens the slave straight from the master (Linux 4.13), no path lookup in /dev/pts.
const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// Open a pty in the container's /dev/ptmx, hand the master to `console_fd` and make the
/// slave this process's controlling terminal and fds 0, 1, 2. Call after setsid and after
/// pivot_root, so the pty belongs to the container's devpts.
pub fn setup_console(console_fd: RawFd, size: Option<ConsoleSize>) -> Result<()> {
    let master = check(
        unsafe { libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) },
        || "open /dev/ptmx".into(),
    )?;
    let r = (|| {
        let unlock: libc::c_int = 0;
        check(unsafe { libc::ioctl(master, TIOCSPTLCK as _, &unlock) }, || "unlockpt".into())?;
        let mut n: libc::c_uint = 0;
        check(unsafe { libc::ioctl(master, TIOCGPTN as _, &mut n) }, || "get pty number".into())?;
        let slave = check(
            unsafe { libc::ioctl(master, TIOCGPTPEER as _, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) },
            || "open pty slave".into(),
        )?;
        if let Some(sz) = size {
            let ws = libc::winsize { ws_row: sz.height, ws_col: sz.width, ws_xpixel: 0, ws_ypixel: 0 };
            check(unsafe { libc::ioctl(slave, libc::TIOCSWINSZ as _, &ws) }, || "set console size".into())?;
        }
        // The payload is the slave's name, as runc sends it; callers only read the fd.
        send_fd(console_fd, master, format!("/dev/pts/{n}").as_bytes())?;
        check(unsafe { libc::ioctl(slave, libc::TIOCSCTTY as _, 0) }, || "make the console the controlling terminal".into())?;
        for std in 0..3 {
            check(unsafe { libc::dup3(slave, std, 0) }, || format!("dup console to fd {std}"))?;
        }
        unsafe { libc::close(slave) };
        Ok(())
    })();
    unsafe { libc::close(master) };
    r
}

/// Control-message room, aligned as a `cmsghdr` must be: a byte buffer cast to one is
/// misaligned (undefined behaviour). 64 bytes hold one header and up to 12 fds, so that
/// a sender that adds fds is seen (and its fds closed) rather than cut short.
#[repr(C)]
union Cmsg {
    _align: libc::cmsghdr,
    buf: [u8; 64],
}

const ONE_FD: usize = std::mem::size_of::<RawFd>();

/// One message with one SCM_RIGHTS fd and a short payload.
pub fn send_fd(sock: RawFd, fd: RawFd, payload: &[u8]) -> Result<()> {
    unsafe {
        let mut c = Cmsg { buf: [0; 64] };
        let space = libc::CMSG_SPACE(ONE_FD as u32) as usize;
        let mut iov = libc::iovec { iov_base: payload.as_ptr() as *mut _, iov_len: payload.len() };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = c.buf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(ONE_FD as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        if libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(Error::last_os("send the pty master to the console socket"));
        }
    }
    Ok(())
}

/// Receive one fd sent by `send_fd` (idmapped mounts, tests, any caller acting as the
/// console socket). Exactly one fd must come, whole: truncated control data (MSG_CTRUNC)
/// or more than one fd is an error, and every fd received is closed then.
pub fn recv_fd(sock: RawFd) -> Result<(OwnedFd, Vec<u8>)> {
    match recv_fd_opt(sock)? {
        (Some(fd), data) => Ok((fd, data)),
        (None, _) => Err(Error::sync("expected one fd in the message, got 0")),
    }
}

/// `recv_fd`, where a message without any fd is the answer too (an error the sender
/// sent in place of the fd): its payload, and None.
pub fn recv_fd_opt(sock: RawFd) -> Result<(Option<OwnedFd>, Vec<u8>)> {
    let mut got: Vec<OwnedFd> = Vec::new();
    let mut data = vec![0u8; 4096];
    let flags = unsafe {
        let mut c = Cmsg { buf: [0; 64] };
        let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = c.buf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of::<Cmsg>() as _;
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(Error::last_os("receive fd"));
        }
        data.truncate(n as usize);
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let first = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..bytes / ONE_FD {
                    got.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(first.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        msg.msg_flags
    };
    if flags & libc::MSG_CTRUNC != 0 {
        return Err(Error::sync("the fd message was truncated (MSG_CTRUNC)"));
    }
    if got.len() > 1 {
        return Err(Error::sync(format!("expected one fd in the message, got {}", got.len())));
    }
    Ok((got.pop(), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_passing() {
        let mut sv = [0; 2];
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) }, 0);
        let f = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsRawFd;
        send_fd(sv[0], f.as_raw_fd(), b"/dev/pts/7").unwrap();
        let (fd, payload) = recv_fd(sv[1]).unwrap();
        assert!(fd.as_raw_fd() > 2);
        assert_eq!(payload, b"/dev/pts/7");
        drop(fd);
        // Two fds in one message: refused, and neither is left open.
        let before = std::fs::read_dir("/proc/self/fd").unwrap().count();
        unsafe {
            let mut c = Cmsg { buf: [0; 64] };
            let mut iov = libc::iovec { iov_base: b"x".as_ptr() as *mut _, iov_len: 1 };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = c.buf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(2 * ONE_FD as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(2 * ONE_FD as u32) as _;
            let d = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            std::ptr::write_unaligned(d, f.as_raw_fd());
            std::ptr::write_unaligned(d.add(1), f.as_raw_fd());
            assert!(libc::sendmsg(sv[0], &msg, 0) > 0);
        }
        let e = recv_fd(sv[1]).unwrap_err();
        assert!(e.context.contains("got 2"), "{e}");
        assert_eq!(std::fs::read_dir("/proc/self/fd").unwrap().count(), before);
        unsafe {
            libc::close(sv[0]);
            libc::close(sv[1]);
        }
    }
}

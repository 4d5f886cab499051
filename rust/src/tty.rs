//! process.terminal: a pty made inside the container (its devpts), the master sent to the
//! caller's console socket, the slave made init's controlling terminal and stdio.
use crate::error::{check, Error, Result};
use crate::spec::ConsoleSize;
use std::os::fd::RawFd;

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

/// One message with one SCM_RIGHTS fd and a short payload.
pub fn send_fd(sock: RawFd, fd: RawFd, payload: &[u8]) -> Result<()> {
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut cbuf = vec![0u8; space];
        let mut iov = libc::iovec { iov_base: payload.as_ptr() as *mut _, iov_len: payload.len() };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        if libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(Error::last_os("send the pty master to the console socket"));
        }
    }
    Ok(())
}

/// Receive one fd sent by `send_fd` (tests, and any caller acting as the console socket).
pub fn recv_fd(sock: RawFd) -> Result<(RawFd, Vec<u8>)> {
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut cbuf = vec![0u8; space];
        let mut data = vec![0u8; 4096];
        let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(Error::last_os("receive fd"));
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Err(Error::sync("no fd in the message"));
        }
        data.truncate(n as usize);
        Ok((std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>()), data))
    }
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
        assert!(fd > 2);
        assert_eq!(payload, b"/dev/pts/7");
        unsafe {
            libc::close(fd);
            libc::close(sv[0]);
            libc::close(sv[1]);
        }
    }
}

//! File descriptors as owned values (issue 17's structural fix, first half): every fd the
//! core makes or inherits is held as std's `OwnedFd` (closed on drop, on every path) and
//! lent as `BorrowedFd`/`AsRawFd`; a bare number only crosses the sync protocol or a
//! clone child (which may not allocate). The helpers here are the two ways a number
//! becomes an `OwnedFd`.
use crate::error::{Error, Result};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// A new fd from a syscall's return value, owned, or the errno with `what`.
pub fn owned(fd: libc::c_int, what: impl FnOnce() -> String) -> Result<OwnedFd> {
    if fd < 0 {
        return Err(Error::last_os(what()));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An fd number inherited across runh-init's exec (named in a plan), owned from here on
/// and CLOEXEC again: the clone child cleared the flag only so that it survived that exec.
pub fn adopt(fd: RawFd) -> OwnedFd {
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        OwnedFd::from_raw_fd(fd)
    }
}

//! Installing a compiled filter with seccomp(2); runs in runh-init after no_new_privs.
use crate::error::{Error, Result};
use std::os::fd::RawFd;

use super::profile::flag;

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

/// Install `program` (a `struct sock_filter` array as produced by `compile`) on the calling
/// thread. `flags` are SECCOMP_FILTER_FLAG_*; with NEW_LISTENER (a profile that uses
/// SCMP_ACT_NOTIFY) the kernel returns the notification fd, handed back as `Some(fd)`
/// (O_CLOEXEC is set by the kernel) for the caller to send to `listenerPath`.
pub fn load(program: &[u8], flags: u32) -> Result<Option<RawFd>> {
    if program.is_empty() || program.len() % 8 != 0 || program.len() / 8 > super::bpf::MAX_INSNS {
        return Err(Error::config(format!("seccomp: {} bytes is not a sock_filter program", program.len())));
    }
    // Copy into properly aligned sock_filter structs: the bytes may come from a message.
    let filters: Vec<libc::sock_filter> = program
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog { len: filters.len() as u16, filter: filters.as_ptr() as *mut libc::sock_filter };
    let r = unsafe {
        libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags as libc::c_ulong, &prog as *const libc::sock_fprog)
    };
    if r < 0 {
        return Err(Error::last_os("seccomp(SECCOMP_SET_MODE_FILTER)"));
    }
    if flags & flag::NEW_LISTENER != 0 {
        Ok(Some(r as RawFd))
    } else {
        Ok(None)
    }
}

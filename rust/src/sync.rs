//! The sync protocol between the runh process (the parent) and runh-init, over one
//! SOCK_SEQPACKET socketpair: every send is one message, so no framing is needed, and a
//! closed peer reads as EOF (the parent learns that init died without polling a pid).
//!
//! parent → init: `Plan` (options, JSON, small) then the config.json bytes in chunks.
//! init → parent: `Ready` (set up and parked), `Pid` (only when init had to fork to enter
//!                a pid namespace by path), or `Error` — sent from every failure path.
//!
//! The same `Msg::Error` encoding is written by init to the `start` connection when the
//! final steps or the execve fail.
use crate::error::{Error, Kind, Result};
use serde::{Deserialize, Serialize};
use std::os::fd::RawFd;

/// What the parent tells init beyond the config itself.
#[derive(Debug, Default, Serialize, Deserialize, Clone)]
pub struct Plan {
    /// Absolute host path of the rootfs (root.path resolved against the bundle).
    pub rootfs: String,
    pub bundle: String,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    /// The listening socket at `<state_dir>/notify.sock`.
    pub notify_fd: RawFd,
    /// A connected console socket, when process.terminal is set and one was given.
    pub console_fd: Option<RawFd>,
    /// Init unshares its cgroup namespace itself when the parent could not clone it into
    /// its cgroup (cgroup v1, or clone3 unavailable): a cgroup namespace made by clone
    /// would be rooted at runh's own cgroup instead of the container's.
    pub unshare_cgroupns: bool,
    /// Length of the config.json bytes that follow the plan.
    pub config_len: usize,
    /// linux.seccomp compiled by the parent: the program's length in bytes (it follows the
    /// config as `Msg::Seccomp` chunks; 0 = no filter) and its SECCOMP_FILTER_FLAG_* bits.
    pub seccomp_len: usize,
    pub seccomp_flags: u32,
    /// A socket the parent connected to `linux.seccomp.listenerPath` (a host path, which
    /// init can no longer reach after pivot_root), and the container process state JSON
    /// init sends on it with the listener fd.
    pub seccomp_listener_fd: Option<RawFd>,
    pub seccomp_state: Option<String>,
    /// Init stops before pivot_root with `Msg::Hooks` and waits for `Msg::HooksDone`
    /// (the parent runs prestart/createRuntime; init then runs createContainer).
    pub hooks_sync: bool,
    /// runh was given LISTEN_FDS (socket activation): init sets LISTEN_PID in the
    /// process's environment to its own pid, which the process keeps across execve.
    #[serde(default)]
    pub fix_listen_pid: bool,
}

// Largest payload per message: well below the default socket buffer (208 KiB), so a
// SEQPACKET send never fails with EMSGSIZE whatever the config size.
const CHUNK: usize = 64 * 1024;

const TAG_PLAN: u8 = 1;
const TAG_CONFIG: u8 = 2;
const TAG_READY: u8 = 3;
const TAG_PID: u8 = 4;
const TAG_ERROR: u8 = 5;
const TAG_SECCOMP: u8 = 6;
// User namespaces and hooks (userns.rs, hooks.rs); numbered apart from the others.
const TAG_IDS_MAPPED: u8 = 20;
const TAG_HOOKS: u8 = 21;
const TAG_HOOKS_DONE: u8 = 22;
// Phase timing (timing.rs), numbered apart from the others.
const TAG_TIMES: u8 = 30;
/// The tag byte of `Msg::IdsMapped`, read raw by the clone child before it execs init.
pub const IDS_MAPPED: u8 = TAG_IDS_MAPPED;

#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Plan(Vec<u8>),
    Config(Vec<u8>),
    Ready,
    Pid(i32),
    Seccomp(Vec<u8>),
    /// parent → clone child: uid_map/gid_map are written, become root and exec init.
    IdsMapped,
    /// init → parent: the environment exists (before pivot_root); run the runtime hooks.
    Hooks,
    /// parent → init: runtime hooks done; the state JSON for the container hooks.
    HooksDone(Vec<u8>),
    /// init → parent, just before `Ready`: CLOCK_MONOTONIC ns at the end of each setup
    /// phase, in `timing::INIT_PHASES` order (0 = phase not reached).
    Times(Vec<u64>),
    Error { kind: Kind, errno: i32, context: String },
}

fn kind_code(k: Kind) -> u8 {
    match k {
        Kind::Syscall => 0,
        Kind::Config => 1,
        Kind::Exec => 2,
        Kind::Sync => 3,
    }
}

fn code_kind(c: u8) -> Kind {
    match c {
        1 => Kind::Config,
        2 => Kind::Exec,
        3 => Kind::Sync,
        _ => Kind::Syscall,
    }
}

impl Msg {
    /// Tag byte, then the payload: plan/config bytes, a pid (i32 LE), or
    /// kind (u8) + errno (i32 LE) + context (UTF-8).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Msg::Plan(b) => {
                out.push(TAG_PLAN);
                out.extend_from_slice(b);
            }
            Msg::Config(b) => {
                out.push(TAG_CONFIG);
                out.extend_from_slice(b);
            }
            Msg::Seccomp(b) => {
                out.push(TAG_SECCOMP);
                out.extend_from_slice(b);
            }
            Msg::Ready => out.push(TAG_READY),
            Msg::IdsMapped => out.push(TAG_IDS_MAPPED),
            Msg::Hooks => out.push(TAG_HOOKS),
            Msg::HooksDone(b) => {
                out.push(TAG_HOOKS_DONE);
                out.extend_from_slice(b);
            }
            Msg::Pid(p) => {
                out.push(TAG_PID);
                out.extend_from_slice(&p.to_le_bytes());
            }
            Msg::Times(t) => {
                out.push(TAG_TIMES);
                for v in t {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Msg::Error { kind, errno, context } => {
                out.push(TAG_ERROR);
                out.push(kind_code(*kind));
                out.extend_from_slice(&errno.to_le_bytes());
                out.extend_from_slice(context.as_bytes());
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Msg> {
        let bad = || Error::sync(format!("malformed sync message ({} bytes)", b.len()));
        let (&tag, rest) = b.split_first().ok_or_else(bad)?;
        Ok(match tag {
            TAG_PLAN => Msg::Plan(rest.to_vec()),
            TAG_CONFIG => Msg::Config(rest.to_vec()),
            TAG_SECCOMP => Msg::Seccomp(rest.to_vec()),
            TAG_READY => Msg::Ready,
            TAG_IDS_MAPPED => Msg::IdsMapped,
            TAG_HOOKS => Msg::Hooks,
            TAG_HOOKS_DONE => Msg::HooksDone(rest.to_vec()),
            TAG_TIMES if rest.len() % 8 == 0 => {
                Msg::Times(rest.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect())
            }
            TAG_PID if rest.len() == 4 => Msg::Pid(i32::from_le_bytes(rest.try_into().unwrap())),
            TAG_ERROR if rest.len() >= 5 => Msg::Error {
                kind: code_kind(rest[0]),
                errno: i32::from_le_bytes(rest[1..5].try_into().unwrap()),
                context: String::from_utf8_lossy(&rest[5..]).into_owned(),
            },
            _ => return Err(bad()),
        })
    }

    pub fn from_error(e: &Error) -> Msg {
        Msg::Error { kind: e.kind, errno: e.errno, context: e.context.clone() }
    }

    /// The error this message carries, or a protocol error if it is not what was expected.
    pub fn into_error(self, expected: &str) -> Error {
        match self {
            Msg::Error { kind, errno, context } => Error { kind, errno, context },
            other => Error::sync(format!("expected {expected}, got {other:?}")),
        }
    }
}

/// Send one message. MSG_NOSIGNAL: a vanished peer must give EPIPE, not kill init.
pub fn send(fd: RawFd, msg: &Msg) -> Result<()> {
    send_raw(fd, &msg.encode())
}

pub fn send_raw(fd: RawFd, buf: &[u8]) -> Result<()> {
    loop {
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = Error::last_os("send sync message");
        if e.errno != libc::EINTR {
            return Err(e);
        }
    }
}

/// Receive one message; `None` at EOF (the peer closed or exited).
pub fn recv(fd: RawFd) -> Result<Option<Msg>> {
    let mut buf = vec![0u8; CHUNK + 64];
    loop {
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 {
            return Msg::decode(&buf[..n as usize]).map(Some);
        }
        if n == 0 {
            return Ok(None);
        }
        let e = Error::last_os("receive sync message");
        if e.errno != libc::EINTR {
            return Err(e);
        }
    }
}

/// Parent side: the plan, then the config in chunks.
pub fn send_plan(fd: RawFd, plan: &Plan, config: &[u8]) -> Result<()> {
    let mut plan = plan.clone();
    plan.config_len = config.len();
    let json = serde_json::to_vec(&plan).map_err(|e| Error::sync(format!("encode plan: {e}")))?;
    send(fd, &Msg::Plan(json))?;
    for chunk in config.chunks(CHUNK) {
        send_raw(fd, &[&[TAG_CONFIG][..], chunk].concat())?;
    }
    Ok(())
}

/// Parent side, after the plan: the compiled seccomp program (`plan.seccomp_len` bytes).
pub fn send_seccomp(fd: RawFd, program: &[u8]) -> Result<()> {
    for chunk in program.chunks(CHUNK) {
        send_raw(fd, &[&[TAG_SECCOMP][..], chunk].concat())?;
    }
    Ok(())
}

/// Init side, after `recv_plan`: the seccomp program, empty when `len` is 0.
pub fn recv_seccomp(fd: RawFd, len: usize) -> Result<Vec<u8>> {
    let mut program = Vec::with_capacity(len);
    while program.len() < len {
        match recv(fd)? {
            Some(Msg::Seccomp(b)) => program.extend_from_slice(&b),
            Some(other) => return Err(other.into_error("seccomp program")),
            None => return Err(Error::sync("parent closed the sync socket while sending the seccomp program")),
        }
    }
    Ok(program)
}

/// config.json bytes as the core's Spec (both sides parse it: the parent for the clone
/// flags and early checks, init for the setup).
pub fn parse_config(config: &[u8]) -> Result<crate::spec::Spec> {
    serde_json::from_slice(config).map_err(|e| Error::config(format!("parse config.json: {e}")))
}

/// Init side: the plan and the whole config.
pub fn recv_plan(fd: RawFd) -> Result<(Plan, Vec<u8>)> {
    let plan: Plan = match recv(fd)? {
        Some(Msg::Plan(b)) => serde_json::from_slice(&b).map_err(|e| Error::sync(format!("decode plan: {e}")))?,
        Some(other) => return Err(other.into_error("plan")),
        None => return Err(Error::sync("parent closed the sync socket before sending the plan")),
    };
    let mut config = Vec::with_capacity(plan.config_len);
    while config.len() < plan.config_len {
        match recv(fd)? {
            Some(Msg::Config(b)) => config.extend_from_slice(&b),
            Some(other) => return Err(other.into_error("config")),
            None => return Err(Error::sync("parent closed the sync socket while sending the config")),
        }
    }
    Ok((plan, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for m in [
            Msg::Ready,
            Msg::Pid(4242),
            Msg::Plan(b"{}".to_vec()),
            Msg::Config(vec![]),
            Msg::Seccomp(vec![1, 2, 3]),
            Msg::IdsMapped,
            Msg::Hooks,
            Msg::HooksDone(b"{}".to_vec()),
            Msg::Error { kind: Kind::Exec, errno: 2, context: "exec: \"x\": not found".into() },
        ] {
            assert_eq!(Msg::decode(&m.encode()).unwrap(), m);
        }
        assert!(Msg::decode(&[]).is_err());
        assert!(Msg::decode(&[TAG_PID, 1]).is_err());
    }

    #[test]
    fn plan_over_socketpair() {
        let mut sv = [0; 2];
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) }, 0);
        let config: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let plan = Plan { rootfs: "/r".into(), preserve_fds: 2, notify_fd: 9, ..Default::default() };
        let c2 = config.clone();
        let t = std::thread::spawn(move || send_plan(sv[0], &plan, &c2).unwrap());
        let (p, c) = recv_plan(sv[1]).unwrap();
        t.join().unwrap();
        assert_eq!(p.rootfs, "/r");
        assert_eq!(p.notify_fd, 9);
        assert_eq!(c, config);
        unsafe {
            libc::close(sv[0]);
            libc::close(sv[1]);
        }
    }
}

//! The sync protocol between the runh process (the parent) and runh-init, over one
//! SOCK_SEQPACKET socketpair: every send is one message, so no framing is needed, and a
//! closed peer reads as EOF (the parent learns that init died without polling a pid).
//!
//! parent → init: `Plan` (options, JSON) then the config.json bytes (`Config`).
//! Any message longer than 64 KiB is sent as pieces and joined by `recv`; a datagram
//! that does not fit the receive buffer is an error, never silently cut.
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
    /// The container's cgroup v2 directory on the host, computed by the parent (where
    /// the paths mean the host's), for a "cgroup" mount that has to bind it.
    #[serde(default)]
    pub cgroup2_bind: Option<String>,
}

// Largest datagram: well below the default socket buffer (208 KiB), so a SEQPACKET
// send never fails with EMSGSIZE; longer messages go in pieces (`send_raw`).
const CHUNK: usize = 64 * 1024;
// A bound on a joined message, so a runaway peer cannot make the other side allocate
// without end (a config is far below it).
const MAX_MESSAGE: usize = 256 << 20;

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
// Bind mount sources opened by runh (mounts.rs).
const TAG_MOUNT_SOURCE: u8 = 23;
// A user namespace made by init itself (namespaces::Plan::late_userns).
const TAG_USER_NS: u8 = 24;
// Phase timing (timing.rs), numbered apart from the others.
const TAG_TIMES: u8 = 30;
// Transport: the pieces of one message longer than CHUNK (`send_raw`, `recv`).
const TAG_PART: u8 = 40;
const TAG_PART_END: u8 = 41;
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
    /// Also parent → init, in answer to `UserNs`.
    IdsMapped,
    /// init → parent: init has joined the namespaces given by path and made the new
    /// user namespace (and the new namespaces it owns): write its maps.
    UserNs,
    /// init → parent: the environment exists (before pivot_root); run the runtime hooks.
    Hooks,
    /// parent → init: runtime hooks done; the state JSON for the container hooks.
    HooksDone(Vec<u8>),
    /// init → parent: open the source of `mounts[i]` (a bind) with runh's privileges;
    /// the answer is its detached mount as an fd (`mounts::host_source`), or `Error`.
    MountSource(u32),
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
            Msg::UserNs => out.push(TAG_USER_NS),
            Msg::Hooks => out.push(TAG_HOOKS),
            Msg::HooksDone(b) => {
                out.push(TAG_HOOKS_DONE);
                out.extend_from_slice(b);
            }
            Msg::Pid(p) => {
                out.push(TAG_PID);
                out.extend_from_slice(&p.to_le_bytes());
            }
            Msg::MountSource(i) => {
                out.push(TAG_MOUNT_SOURCE);
                out.extend_from_slice(&i.to_le_bytes());
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
            TAG_USER_NS => Msg::UserNs,
            TAG_HOOKS => Msg::Hooks,
            TAG_HOOKS_DONE => Msg::HooksDone(rest.to_vec()),
            TAG_TIMES if rest.len() % 8 == 0 => {
                Msg::Times(rest.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect())
            }
            TAG_PID if rest.len() == 4 => Msg::Pid(i32::from_le_bytes(rest.try_into().unwrap())),
            TAG_MOUNT_SOURCE if rest.len() == 4 => Msg::MountSource(u32::from_le_bytes(rest.try_into().unwrap())),
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
/// A message longer than one chunk goes as pieces (see `send_raw`), whatever its kind:
/// every variable-length message (the config, the process, the seccomp program and
/// state, the hooks' state with its annotations) can be any size.
pub fn send(fd: RawFd, msg: &Msg) -> Result<()> {
    send_raw(fd, &msg.encode())
}

/// One encoded message: as is when it fits in a chunk, else as `TAG_PART` pieces and a
/// last `TAG_PART_END` one, which `recv` joins before decoding. A SEQPACKET send of more
/// than the socket buffer fails with EMSGSIZE, and a receive into a smaller buffer
/// truncates; pieces of 64 KiB avoid both.
pub fn send_raw(fd: RawFd, buf: &[u8]) -> Result<()> {
    if buf.len() <= CHUNK {
        return send_one(fd, buf);
    }
    let mut pieces = buf.chunks(CHUNK).peekable();
    let mut piece = Vec::with_capacity(CHUNK + 1);
    while let Some(p) = pieces.next() {
        piece.clear();
        piece.push(if pieces.peek().is_some() { TAG_PART } else { TAG_PART_END });
        piece.extend_from_slice(p);
        send_one(fd, &piece)?;
    }
    Ok(())
}

fn send_one(fd: RawFd, buf: &[u8]) -> Result<()> {
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

/// Receive one message (its pieces joined); `None` at EOF (the peer closed or exited).
pub fn recv(fd: RawFd) -> Result<Option<Msg>> {
    let mut buf = vec![0u8; CHUNK + 64];
    let mut whole: Vec<u8> = Vec::new();
    loop {
        let n = recv_one(fd, &mut buf)?;
        let piece = &buf[..n];
        match piece.first() {
            None if whole.is_empty() => return Ok(None),
            None => return Err(Error::sync("the peer closed the sync socket in the middle of a message")),
            Some(&TAG_PART) | Some(&TAG_PART_END) => {
                if whole.len() + n > MAX_MESSAGE {
                    return Err(Error::sync(format!("sync message longer than {MAX_MESSAGE} bytes")));
                }
                whole.extend_from_slice(&piece[1..]);
                if piece[0] == TAG_PART_END {
                    return Msg::decode(&whole).map(Some);
                }
            }
            Some(_) if whole.is_empty() => return Msg::decode(piece).map(Some),
            Some(_) => return Err(Error::sync("a sync message arrived inside a long one")),
        }
    }
}

/// One datagram into `buf`; its length (0 at EOF). MSG_TRUNC makes the kernel report the
/// datagram's real length, so a message that did not fit is an error, never cut short.
fn recv_one(fd: RawFd, buf: &mut [u8]) -> Result<usize> {
    loop {
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_TRUNC) };
        if n >= 0 {
            if n as usize > buf.len() {
                return Err(Error::sync(format!("sync message of {n} bytes truncated to {}", buf.len())));
            }
            return Ok(n as usize);
        }
        let e = Error::last_os("receive sync message");
        if e.errno != libc::EINTR {
            return Err(e);
        }
    }
}

/// Parent side: the plan, then the config.
pub fn send_plan(fd: RawFd, plan: &Plan, config: &[u8]) -> Result<()> {
    let mut plan = plan.clone();
    plan.config_len = config.len();
    let json = serde_json::to_vec(&plan).map_err(|e| Error::sync(format!("encode plan: {e}")))?;
    send(fd, &Msg::Plan(json))?;
    send_raw(fd, &[&[TAG_CONFIG][..], config].concat())
}

/// Parent side, after the plan: the compiled seccomp program (`plan.seccomp_len` bytes),
/// nothing when there is none.
pub fn send_seccomp(fd: RawFd, program: &[u8]) -> Result<()> {
    if program.is_empty() {
        return Ok(());
    }
    send_raw(fd, &[&[TAG_SECCOMP][..], program].concat())
}

/// Init side, after `recv_plan`: the seccomp program, empty when `len` is 0.
pub fn recv_seccomp(fd: RawFd, len: usize) -> Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    match recv(fd)? {
        Some(Msg::Seccomp(b)) if b.len() == len => Ok(b),
        Some(Msg::Seccomp(b)) => Err(Error::sync(format!("seccomp program of {} bytes, {len} announced", b.len()))),
        Some(other) => Err(other.into_error("seccomp program")),
        None => Err(Error::sync("parent closed the sync socket before sending the seccomp program")),
    }
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
    match recv(fd)? {
        Some(Msg::Config(c)) if c.len() == plan.config_len => Ok((plan, c)),
        Some(Msg::Config(c)) => Err(Error::sync(format!("config of {} bytes, {} announced", c.len(), plan.config_len))),
        Some(other) => Err(other.into_error("config")),
        None => Err(Error::sync("parent closed the sync socket before sending the config")),
    }
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
            Msg::UserNs,
            Msg::Hooks,
            Msg::HooksDone(b"{}".to_vec()),
            Msg::MountSource(7),
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

    fn pair() -> [RawFd; 2] {
        let mut sv = [0; 2];
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) }, 0);
        sv
    }

    #[test]
    fn long_messages_arrive_whole() {
        // 1 MiB of state (a hook's, with a large annotation) in every variable-length kind.
        let sv = pair();
        let big: Vec<u8> = (0..(1usize << 20) + 7).map(|i| (i % 253) as u8).collect();
        let msgs = vec![Msg::HooksDone(big.clone()), Msg::Plan(big.clone()), Msg::Config(big.clone()), Msg::Seccomp(big), Msg::Ready];
        let sent = msgs.clone();
        let t = std::thread::spawn(move || sent.iter().for_each(|m| send(sv[0], m).unwrap()));
        for m in msgs {
            assert_eq!(recv(sv[1]).unwrap(), Some(m));
        }
        t.join().unwrap();
        unsafe { libc::close(sv[0]) };
        assert_eq!(recv(sv[1]).unwrap(), None);
        unsafe { libc::close(sv[1]) };
    }

    #[test]
    fn oversized_datagram_is_an_error() {
        let sv = pair();
        let mut raw = vec![TAG_HOOKS_DONE];
        raw.extend(std::iter::repeat(b'x').take(CHUNK + 100));
        send_one(sv[0], &raw).unwrap();
        let e = recv(sv[1]).unwrap_err();
        assert!(e.context.contains("truncated"), "{e}");
        unsafe {
            libc::close(sv[0]);
            libc::close(sv[1]);
        }
    }
}

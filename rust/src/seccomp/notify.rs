//! `linux.seccomp.listenerPath`: handing the SCMP_ACT_NOTIFY listener fd to a seccomp agent.
//!
//! runtime-spec (config-linux.md, "seccomp"): the runtime connects to `listenerPath`
//! (AF_UNIX, SOCK_STREAM) and sends the container process state as JSON together with the
//! listener fd in SCM_RIGHTS; `fds` names the fds in the order they are sent.
//!
//! Split between the two sides of runh:
//! - the parent (in `runh create`, on the host) connects to the path, because runh-init
//!   loads the filter after pivot_root, when the host path is out of its reach, and after
//!   `start`, when the parent has exited; it also builds the state JSON, which needs the
//!   pid it learns at clone;
//! - runh-init, right after seccomp(2) returned the fd, sends the two and closes both fds.
//!   That is two syscalls (sendmsg, close) under the new filter.
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::os::fd::RawFd;

/// The runtime-spec version whose ContainerProcessState this is.
pub const SPEC_VERSION: &str = "1.3.0";

/// The name of the listener fd in `fds` (runtime-spec: "seccompFd").
pub const SECCOMP_FD_NAME: &str = "seccompFd";

/// linux.seccomp's string field `key` (listenerPath, listenerMetadata), if not empty.
pub(crate) fn field<'a>(seccomp: Option<&'a Value>, key: &str) -> Option<&'a str> {
    seccomp.and_then(|v| v.get(key)).and_then(|v| v.as_str()).filter(|s| !s.is_empty())
}

/// The seccomp agent's socket, connected now from the host's mount namespace, when the
/// filter uses SCMP_ACT_NOTIFY (create and exec alike); None otherwise.
#[cfg(feature = "host")]
pub(crate) fn connect_listener(uses_notify: bool, seccomp: Option<&Value>) -> Result<Option<std::os::fd::OwnedFd>> {
    if !uses_notify {
        return Ok(None);
    }
    let path = field(seccomp, "listenerPath")
        .ok_or_else(|| Error::config("linux.seccomp.listenerPath is required when SCMP_ACT_NOTIFY is used"))?;
    crate::clone::connect_unix(path, "seccomp listenerPath").map(Some)
}

/// The container process state (runtime-spec `ContainerProcessState`) for the agent.
/// `container_state` is the runtime-spec state without the pid (built by the Python front
/// end, which knows id/bundle/annotations); the pid is init's, as the parent sees it.
pub fn process_state(container_state: &[u8], pid: i32, metadata: Option<&str>) -> Result<String> {
    let mut state: Value = serde_json::from_slice(container_state)
        .map_err(|e| Error::config(format!("seccomp listener state: {e}")))?;
    if let Some(o) = state.as_object_mut() {
        o.insert("pid".into(), json!(pid));
    }
    let mut out = json!({
        "ociVersion": SPEC_VERSION,
        "fds": [SECCOMP_FD_NAME],
        "pid": pid,
        "state": state,
    });
    if let Some(m) = metadata.filter(|m| !m.is_empty()) {
        out["metadata"] = json!(m);
    }
    Ok(out.to_string())
}

/// In runh-init after the filter is loaded: send `state` and the listener fd on the
/// connected socket, then close both (the agent holds the only copy of the listener).
pub fn send_listener(sock: RawFd, listener: RawFd, state: &str) -> Result<()> {
    let r = crate::tty::send_fd(sock, listener, state.as_bytes())
        .map_err(|e| Error::from_errno(e.errno, "send the seccomp listener fd to listenerPath"));
    unsafe {
        libc::close(listener);
        libc::close(sock);
    }
    r
}

/// Load the filter and, with SCMP_ACT_NOTIFY, hand its listener to the agent on `listener`
/// (socket, state JSON), or close it when nobody listens. For init and for exec.
pub fn load_and_hand_over(program: &[u8], flags: u32, listener: Option<&(RawFd, String)>) -> Result<()> {
    match (crate::seccomp::load(program, flags)?, listener) {
        (Some(fd), Some((sock, state))) => send_listener(*sock, fd, state),
        (Some(fd), None) => {
            unsafe { libc::close(fd) };
            Ok(())
        }
        (None, _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_has_the_spec_fields() {
        let s = process_state(br#"{"ociVersion":"1.0.2","id":"c1","status":"creating","bundle":"/b"}"#, 42, Some("m"))
            .unwrap();
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["fds"], json!(["seccompFd"]));
        assert_eq!(v["pid"], 42);
        assert_eq!(v["metadata"], "m");
        assert_eq!(v["state"]["pid"], 42);
        assert_eq!(v["state"]["id"], "c1");
        let s = process_state(b"{}", 1, Some("")).unwrap();
        assert!(!s.contains("metadata"));
    }
}

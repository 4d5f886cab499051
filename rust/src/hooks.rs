//! The hooks that run inside the container's namespaces, run by runh-init itself:
//! createContainer (after the rootfs mounts, before pivot_root: the path resolves in the
//! runtime's mount view) and startContainer (after `start`, before the execve of the
//! container's process). prestart, createRuntime, poststart and poststop run in the
//! runtime namespace and are the Python side's (python/runh/hooks.py).
//!
//! Each hook is fork + execve of `path` with `args` (argv[0] included, `[path]` when
//! absent) and exactly `env`, the state JSON on stdin, stdout and stderr captured for the
//! error message; it is SIGKILLed after `timeout` seconds. A hook that fails, times out or
//! cannot be run is an error (the runtime-spec makes these fatal).
use crate::error::{Error, Result};
use crate::spec::Spec;
use std::ffi::CString;

#[derive(Debug, Clone)]
pub struct Hook {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub timeout: Option<u32>,
}

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::config(format!("hooks: {what} contains a NUL byte")))
}

/// hooks.<kind> from the config (empty when absent).
pub fn from_spec(spec: &Spec, kind: &str) -> Result<Vec<Hook>> {
    let list = match spec.hooks.as_ref().and_then(|h| h.get(kind)).and_then(|v| v.as_array()) {
        Some(l) => l,
        None => return Ok(Vec::new()),
    };
    let strings = |v: Option<&serde_json::Value>, what: &str| -> Result<Vec<CString>> {
        v.and_then(|a| a.as_array())
            .map(|a| a.iter().map(|s| cstring(s.as_str().unwrap_or(""), what)).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    };
    list.iter()
        .map(|h| {
            let path = h.get("path").and_then(|p| p.as_str()).unwrap_or("");
            if !path.starts_with('/') {
                return Err(Error::config(format!("hooks.{kind}: path {path:?} must be absolute")));
            }
            let path = cstring(path, "path")?;
            let mut argv = strings(h.get("args"), "args")?;
            if argv.is_empty() {
                argv.push(path.clone());
            }
            let timeout = match h.get("timeout").and_then(|t| t.as_i64()) {
                Some(t) if t <= 0 => return Err(Error::config(format!("hooks.{kind}: timeout must be greater than zero"))),
                Some(t) => Some(t.min(u32::MAX as i64) as u32),
                None => None,
            };
            Ok(Hook { path, argv, envp: strings(h.get("env"), "env")?, timeout })
        })
        .collect()
}

fn pipe() -> Result<[libc::c_int; 2]> {
    let mut p = [0; 2];
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(Error::last_os("create a pipe for a hook"));
    }
    Ok(p)
}

fn close(fd: libc::c_int) {
    unsafe { libc::close(fd) };
}

/// Run one hook to completion; `kind` names it in errors.
pub fn run(h: &Hook, state: &[u8], kind: &str) -> Result<()> {
    let name = h.path.to_string_lossy().into_owned();
    // The state goes over a socket, not a pipe: written as the hook reads it (in
    // wait_with_output), so a state of any size (a 1 MiB annotation) never blocks on a
    // full pipe, and MSG_NOSIGNAL makes a hook that exits unread an EPIPE, not a SIGPIPE.
    let mut sv = [0; 2];
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) } < 0 {
        return Err(Error::last_os(format!("{kind} hook {name}: create its stdin")));
    }
    let stdin = [sv[1], sv[0]]; // [the hook's end, ours]
    unsafe { libc::fcntl(stdin[1], libc::F_SETFL, libc::O_NONBLOCK) };
    let out = match pipe() {
        Ok(p) => p,
        Err(e) => {
            close(stdin[0]);
            close(stdin[1]);
            return Err(e);
        }
    };
    let mut argv: Vec<*const libc::c_char> = h.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = h.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // The child: only async-signal-safe calls on what was prepared above.
        unsafe {
            libc::dup2(stdin[0], 0);
            libc::dup2(out[1], 1);
            libc::dup2(out[1], 2);
            libc::execve(h.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            let msg = b"runh: cannot execute hook\n";
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(127);
        }
    }
    close(stdin[0]);
    close(out[1]);
    if pid < 0 {
        close(out[0]);
        close(stdin[1]);
        return Err(Error::last_os(format!("{kind} hook {name}: fork")));
    }
    let (status, output, timed_out) = wait_with_output(pid, out[0], h.timeout, stdin[1], state);
    close(out[0]);
    let output = String::from_utf8_lossy(&output).trim().to_string();
    let with_output = |s: String| if output.is_empty() { s } else { format!("{s}: {output}") };
    if timed_out {
        return Err(Error::from_errno(libc::ETIMEDOUT, format!("{kind} hook {name} timed out after {} s", h.timeout.unwrap_or(0))));
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Ok(());
    }
    let how = if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit status {}", libc::WEXITSTATUS(status))
    };
    Err(Error::config(with_output(format!("error running {kind} hook {name}: {how}"))))
}

/// Feed the hook `state` on `stdin` (non-blocking, closed once all is written or the
/// hook stops reading) and collect its output until it exits (or its timeout passes:
/// then SIGKILL). Returns (wait status, output, timed out).
fn wait_with_output(pid: libc::pid_t, out: libc::c_int, timeout: Option<u32>, stdin: libc::c_int, state: &[u8]) -> (i32, Vec<u8>, bool) {
    let mut stdin = Some(stdin);
    let mut pending = state;
    let feed = |stdin: &mut Option<libc::c_int>, pending: &mut &[u8]| {
        if let Some(fd) = *stdin {
            while !pending.is_empty() {
                let n = unsafe { libc::send(fd, pending.as_ptr().cast(), pending.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
                if n > 0 {
                    *pending = &pending[n as usize..];
                } else if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                    return;
                } else {
                    break; // the hook closed its stdin: the rest is not wanted
                }
            }
            close(fd);
            *stdin = None;
        }
    };
    feed(&mut stdin, &mut pending);
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
    let deadline = timeout.map(|t| now_ms() + t as i64 * 1000);
    let mut output = Vec::new();
    let mut out_open = true;
    let mut timed_out = false;
    loop {
        let mut fds = [
            libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if out_open { out } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: stdin.unwrap_or(-1), events: libc::POLLOUT, revents: 0 },
        ];
        let wait = deadline.map_or(-1, |d| (d - now_ms()).max(0) as libc::c_int);
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, wait) };
        if r == 0 && deadline.is_some() {
            timed_out = true;
            unsafe { libc::kill(pid, libc::SIGKILL) };
            break;
        }
        if r < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        if fds[2].revents != 0 {
            feed(&mut stdin, &mut pending);
        }
        if fds[1].revents != 0 {
            let mut buf = [0u8; 4096];
            let n = unsafe { libc::read(out, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                out_open = false;
            } else if output.len() < 64 * 1024 {
                output.extend_from_slice(&buf[..n as usize]);
            }
        }
        // pidfd_open unavailable (pidfd < 0): fall back to waiting for the output to close.
        if (pidfd >= 0 && fds[0].revents != 0) || (pidfd < 0 && !out_open) {
            break;
        }
    }
    if pidfd >= 0 {
        close(pidfd);
    }
    if let Some(fd) = stdin {
        close(fd);
    }
    let mut status = 0;
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    (status, output, timed_out)
}

fn now_ms() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

/// Run every hook of `kind` in order; the first failure stops the list.
pub fn run_all(hooks: &[Hook], state: &[u8], kind: &str) -> Result<()> {
    hooks.iter().try_for_each(|h| run(h, state, kind))
}

/// The state JSON with its status replaced (the parent sends it with "creating"; for
/// startContainer the container is "created"). The parent writes compact JSON.
pub fn with_status(state: &[u8], status: &str) -> Vec<u8> {
    let s = String::from_utf8_lossy(state);
    s.replacen("\"status\":\"creating\"", &format!("\"status\":\"{status}\""), 1).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hooks: &str) -> Spec {
        serde_json::from_str(&format!(r#"{{"hooks":{hooks}}}"#)).unwrap()
    }

    #[test]
    fn parse_and_run() {
        let s = spec(r#"{"createContainer":[{"path":"/bin/sh","args":["sh","-c","read x; [ \"$x\" = '{\"a\":1}' ] && [ \"$E\" = 1 ]"],"env":["E=1"]}]}"#);
        let h = from_spec(&s, "createContainer").unwrap();
        assert_eq!(h.len(), 1);
        run_all(&h, b"{\"a\":1}\n", "createContainer").unwrap();
        let bad = from_spec(&spec(r#"{"startContainer":[{"path":"/bin/sh","args":["sh","-c","echo boom >&2; exit 3"]}]}"#), "startContainer").unwrap();
        let e = run_all(&bad, b"{}", "startContainer").unwrap_err();
        assert!(e.context.contains("exit status 3") && e.context.contains("boom"), "{}", e.context);
        let slow = from_spec(&spec(r#"{"startContainer":[{"path":"/bin/sleep","args":["sleep","5"],"timeout":1}]}"#), "startContainer").unwrap();
        assert!(run_all(&slow, b"{}", "startContainer").unwrap_err().context.contains("timed out"));
        assert!(from_spec(&spec(r#"{"prestart":[{"path":"rel"}]}"#), "prestart").is_err());
    }

    #[test]
    fn status() {
        assert_eq!(with_status(b"{\"status\":\"creating\",\"pid\":1}", "created"), b"{\"status\":\"created\",\"pid\":1}");
    }
}

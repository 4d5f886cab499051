//! `runh`: the command that containerd, CRI-O and podman run.
//!
//! The CLI is Python (`runh.cli`). This small static program is what is installed as
//! `runh`: it starts the Python CLI for every command, except a well-formed `exec` into a
//! running container, which it runs itself through the same core as the Python CLI
//! (`_core::exec`). Why: exec is what every `kubectl exec` and exec probe pays, and
//! the interpreter's start alone (5.3-5.5 ms here for `python3.11 -I -S -c pass`) is
//! 1.25x crun's whole `exec` (4.3 ms); runh exec through Python took 10.6 ms.
//!
//! The rule that keeps one implementation of each behaviour: the native path only takes
//! the case where nothing is wrong. Whenever it meets anything else (an unknown or unusual
//! flag, a container that is not simply running, LISTEN_FDS, a pty to proxy, a seccomp
//! agent, an unprivileged caller), it hands the unchanged argv to Python before it has
//! done anything. A failure of the core after that is handed to Python too, as
//! RUNH_CORE_ERROR, so every error is worded and logged (--log, --log-format) by Python.
//! RUNH_PYTHON_ONLY=1 sends every call to Python.
mod args;
mod exec;
mod lifecycle;
mod python;
mod state;

fn main() {
    let argv: Vec<String> = match std::env::args_os().skip(1).map(|a| a.into_string()).collect() {
        Ok(v) => v,
        Err(_) => python::handoff(None), // not UTF-8: Python's problem to word
    };
    if std::env::var_os("RUNH_PYTHON_ONLY").is_some() || std::env::var_os("RUNH_TIMING").is_some() {
        python::handoff(None);
    }
    match args::parse(&argv) {
        Some(args::Call::Exec(a)) => exec::run(a),
        Some(args::Call::Start { root, id }) => lifecycle::start(&root, &id),
        Some(args::Call::Delete { root, id, force }) => lifecycle::delete(&root, &id, force),
        Some(args::Call::Kill { root, id, signal }) => lifecycle::kill(&root, &id, signal),
        Some(args::Call::State { root, id }) => lifecycle::state(&root, &id),
        None => python::handoff(None),
    }
}

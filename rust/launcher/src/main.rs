//! `runh`: the command that containerd, CRI-O and podman run.
//!
//! The CLI is Python (`runh.cli`). This small static program is what is installed as
//! `runh`: it starts the Python CLI for every command, except the plain form of the calls
//! a container engine makes over and over, which it runs itself through the same core
//! functions as the Python CLI: `exec` (every `kubectl exec` and exec probe), `start`,
//! `kill`, `delete` (every container's life) and `state` (podman's and CRI-O's status
//! polls). Why: the interpreter's start alone (5.3-5.5 ms here for
//! `python3.11 -I -S -c pass`) is more than crun's whole `exec` (4.3 ms) or `start`
//! (2.7 ms); through Python runh exec took 10.6 ms, start 7.8 and delete 8.1.
//!
//! The rule that keeps one implementation of each behaviour: the native path only takes
//! the case where nothing is wrong. Whenever it meets anything else (an unknown or unusual
//! flag, a container not in the plain state for the call, hooks, LISTEN_FDS, a pty to
//! proxy, a seccomp agent), it hands the unchanged argv to Python before it has
//! done anything. A failure of the core after that is handed to Python too, as
//! RUNH_CORE_ERROR, so every error is worded and logged (--log, --log-format) by Python.
//! RUNH_PYTHON_ONLY=1 sends every call to Python.
#![no_main]
mod args;
mod exec;
mod lifecycle;
mod python;
mod state;

/// A C `main`, not std's: runh-core's `rt` says why.
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    _core::rt::start(true);
    run()
}

fn run() -> ! {
    let argv: Vec<String> = match std::env::args_os().skip(1).map(|a| a.into_string()).collect() {
        Ok(v) => v,
        Err(_) => python::handoff(None), // not UTF-8: Python's problem to word
    };
    let call = args::parse(&argv);
    if std::env::var_os("RUNH_PYTHON_ONLY").is_some() || std::env::var_os("RUNH_TIMING").is_some() {
        python::handoff_to(None, call.as_ref().map_or("", |c| c.image()));
    }
    match call {
        Some(args::Call::Exec(a)) => exec::run(a),
        Some(args::Call::Start { root, id }) => lifecycle::start(&root, &id),
        Some(args::Call::Delete { root, id, force }) => lifecycle::delete(&root, &id, force),
        Some(args::Call::Kill { root, id, signal }) => lifecycle::kill(&root, &id, signal),
        Some(args::Call::State { root, id }) => lifecycle::state(&root, &id),
        Some(args::Call::Python(image)) => python::handoff_to(None, image),
        None => python::handoff(None),
    }
}

//! The `runh._core` module: the Python-facing functions, and core errors raised as the
//! `runh.errors` classes (imported when an error is raised, never on the success path).
use crate::clone;
use crate::error::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Convert a core error into the matching runh.errors exception, with `.errno` set.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let class = e.kind.python_class();
    let made = (|| -> PyResult<PyErr> {
        let cls = py.import("runh.errors")?.getattr(class)?;
        let exc = cls.call1((e.to_string(), e.errno))?;
        Ok(PyErr::from_value(exc))
    })();
    made.unwrap_or_else(|_| PyRuntimeError::new_err(e.to_string()))
}

#[pyfunction]
#[pyo3(signature = (config, bundle, state_dir, *, no_pivot=false, no_new_keyring=false,
                    preserve_fds=0, console_socket=None, pidfd_socket=None, cgroup_dir=None, cgroup_procs=Vec::new(),
                    root=None, seccomp_state=None, on_hooks=None, on_pid=None, on_setup=None, fix_listen_pid=false))]
#[allow(clippy::too_many_arguments)]
fn create(
    py: Python<'_>,
    config: &[u8],
    bundle: &str,
    state_dir: &str,
    no_pivot: bool,
    no_new_keyring: bool,
    preserve_fds: i32,
    console_socket: Option<&str>,
    pidfd_socket: Option<&str>,
    cgroup_dir: Option<&str>,
    cgroup_procs: Vec<String>,
    root: Option<&str>,
    seccomp_state: Option<&[u8]>,
    on_hooks: Option<PyObject>,
    on_pid: Option<PyObject>,
    on_setup: Option<PyObject>,
    fix_listen_pid: bool,
) -> PyResult<i32> {
    // on_hooks(pid) -> bytes runs the runtime hooks (runh/hooks.py) and on_pid(pid)
    // records the init (runh.Container's state.json), each with the GIL taken back; an
    // exception is re-raised as it is once init has been torn down.
    let failed: std::sync::Mutex<Option<PyErr>> = std::sync::Mutex::new(None);
    let pid_callback = |f: &PyObject| {
        let failed = &failed;
        let f = f.clone_ref(py);
        move |pid: i32| -> crate::error::Result<()> {
            Python::with_gil(|py| {
                f.call1(py, (pid,)).map(|_| ()).map_err(|e| {
                    let msg = e.to_string();
                    *failed.lock().unwrap() = Some(e);
                    Error::sync(msg)
                })
            })
        }
    };
    let pid_cb = on_pid.as_ref().map(pid_callback);
    let setup_cb = on_setup.as_ref().map(pid_callback);
    let hooks_cb = on_hooks.as_ref().map(|f| {
        let failed = &failed;
        move |pid: i32| -> crate::error::Result<Vec<u8>> {
            Python::with_gil(|py| match f.call1(py, (pid,)).and_then(|r| r.extract::<Vec<u8>>(py)) {
                Ok(b) => Ok(b),
                Err(e) => {
                    let msg = e.to_string();
                    *failed.lock().unwrap() = Some(e);
                    Err(Error::sync(msg))
                }
            })
        }
    });
    let opts = clone::CreateOptions {
        config,
        bundle,
        state_dir,
        no_pivot,
        no_new_keyring,
        preserve_fds,
        fix_listen_pid,
        console_socket,
        pidfd_socket,
        cgroup_dir,
        cgroup_procs: &cgroup_procs,
        root,
        seccomp_state,
        on_hooks: hooks_cb.as_ref().map(|c| c as &(dyn Fn(i32) -> crate::error::Result<Vec<u8>> + Sync)),
        on_pid: pid_cb.as_ref().map(|c| c as &(dyn Fn(i32) -> crate::error::Result<()> + Sync)),
        on_setup: setup_cb.as_ref().map(|c| c as &(dyn Fn(i32) -> crate::error::Result<()> + Sync)),
    };
    // The GIL is released while init sets up (ms of kernel work, in another process).
    py.allow_threads(|| clone::create(&opts)).map_err(|e| failed.lock().unwrap().take().unwrap_or_else(|| to_py(py, e)))
}

#[pyfunction]
fn start(py: Python<'_>, state_dir: &str) -> PyResult<()> {
    py.allow_threads(|| clone::start(state_dir)).map_err(|e| to_py(py, e))
}

#[pyfunction]
#[pyo3(signature = (process, pidfd, init_pid, *, config=None, root=None, console_socket=None, pidfd_socket=None,
                    preserve_fds=0, fix_listen_pid=false, cgroup_dir=None, cgroup_procs=Vec::new(),
                    seccomp_state=None, frozen=false))]
#[allow(clippy::too_many_arguments)]
fn exec(
    py: Python<'_>,
    process: &[u8],
    pidfd: i32,
    init_pid: i32,
    config: Option<&[u8]>,
    root: Option<&str>,
    console_socket: Option<&str>,
    pidfd_socket: Option<&str>,
    preserve_fds: i32,
    fix_listen_pid: bool,
    cgroup_dir: Option<&str>,
    cgroup_procs: Vec<String>,
    seccomp_state: Option<&[u8]>,
    frozen: bool,
) -> PyResult<i32> {
    let opts = crate::exec::ExecOptions {
        process,
        config,
        pidfd,
        init_pid,
        root,
        console_socket,
        pidfd_socket,
        preserve_fds,
        fix_listen_pid,
        cgroup_dir,
        cgroup_procs: &cgroup_procs,
        seccomp_state,
        frozen,
    };
    py.allow_threads(|| crate::exec::exec(&opts)).map_err(|e| to_py(py, e))
}

/// `_core.exec_process(config, args, …)`: the process JSON for `runh exec ID ARGS…`
/// (see `exec::process_from_config`).
#[pyfunction]
#[pyo3(signature = (config, args, *, terminal=false, console_size=None, cwd=None, env=Vec::new(),
                    uid=None, gid=None, additional_gids=Vec::new(), caps=Vec::new(),
                    no_new_privileges=false, apparmor=None, selinux_label=None))]
#[allow(clippy::too_many_arguments)]
fn exec_process(
    py: Python<'_>,
    config: &[u8],
    args: Vec<String>,
    terminal: bool,
    console_size: Option<(u32, u32)>,
    cwd: Option<String>,
    env: Vec<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    additional_gids: Vec<u32>,
    caps: Vec<String>,
    no_new_privileges: bool,
    apparmor: Option<String>,
    selinux_label: Option<String>,
) -> PyResult<Py<pyo3::types::PyBytes>> {
    let f = crate::exec::ProcessFlags {
        args, terminal, console_size, cwd, env, uid, gid, additional_gids, caps, no_new_privileges, apparmor, selinux_label,
    };
    let out = crate::exec::process_from_config(config, &f).map_err(|e| to_py(py, e))?;
    Ok(pyo3::types::PyBytes::new(py, &out).unbind())
}

/// Capability names in `names` that are unknown or that this kernel lacks, sorted and
/// once each: create warns about them and ignores them, as runc does.
#[pyfunction]
fn unknown_capabilities(names: Vec<String>) -> Vec<String> {
    crate::caps::unknown(&crate::spec::Capabilities { bounding: names, ..Default::default() })
}

/// The parts of `runh features` that the core decides, as JSON: the `linux` members for
/// what the core implements beyond namespaces, capabilities, cgroups and seccomp.
#[pyfunction]
fn core_features() -> String {
    let (modes, flags) = crate::procattr::mempolicy_names();
    serde_json::json!({
        "memoryPolicy": {"modes": modes, "flags": flags},
        // network.rs: moved by runh at create.
        "netDevices": {"enabled": true},
    })
    .to_string()
}

/// Whether AppArmor and SELinux are enabled in the running kernel (lsm.rs): `features`
/// reports them, and create and exec refuse a profile or label the host cannot enforce.
#[pyfunction]
fn lsm_enabled() -> (bool, bool) {
    (crate::lsm::apparmor_enabled(), crate::lsm::selinux_enabled())
}

/// Every mount option name the core takes (`runh features`' mountOptions), sorted.
#[pyfunction]
fn mount_option_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = crate::mounts::option_names().collect();
    v.sort_unstable();
    v
}

/// rename_exchange(src: str, dst: str) -> bool: renameat2(src, dst, RENAME_EXCHANGE), so
/// that dst holds src's content and src dst's old one; False (nothing done) when dst does
/// not exist, or the filesystem (or kernel) has no exchange (EINVAL, ENOSYS): the caller
/// renames then. runh.state.write_atomic's replace of state.json: ext4 flushes the data of a
/// file renamed over an existing one (auto_da_alloc), which an exchange does not do.
#[pyfunction]
fn rename_exchange(py: Python<'_>, src: &str, dst: &str) -> PyResult<bool> {
    let c = |p: &str| std::ffi::CString::new(p).map_err(|_| PyRuntimeError::new_err("path with a NUL byte"));
    let (s, d) = (c(src)?, c(dst)?);
    let r = unsafe {
        libc::renameat2(libc::AT_FDCWD, s.as_ptr(), libc::AT_FDCWD, d.as_ptr(), libc::RENAME_EXCHANGE)
    };
    if r == 0 {
        return Ok(true);
    }
    let e = Error::last_os(format!("renameat2 {src} {dst} RENAME_EXCHANGE"));
    if matches!(e.errno, libc::ENOENT | libc::EINVAL | libc::ENOSYS) {
        return Ok(false);
    }
    Err(to_py(py, e))
}

// The launcher's argv parser (rust/launcher/src/args.rs, a self-contained module), built
// into the extension too so that benches/micro can time it in-process: the launcher
// itself runs it once per call and exits, too short a life to time from outside.
#[path = "../launcher/src/args.rs"]
#[allow(dead_code)]
mod launcher_args;

/// launcher_parse(argv: list[str]) -> tuple[str, str, str] | None: the native call the
/// launcher would make for `runh ARGV…` (kind, root, id), or None when it hands the
/// argv to Python. For benches/micro and the tests; the launcher never calls it.
#[pyfunction]
fn launcher_parse(argv: Vec<String>) -> Option<(&'static str, String, String)> {
    use launcher_args::Call;
    Some(match launcher_args::parse(&argv)? {
        Call::Exec(e) => ("exec", e.root, e.id),
        Call::Start { root, id } => ("start", root, id),
        Call::Delete { root, id, .. } => ("delete", root, id),
        Call::Kill { root, id, .. } => ("kill", root, id),
        Call::State { root, id } => ("state", root, id),
        Call::Python(_) => return None, // handed to Python (with a module image)
    })
}

/// _test_panic(message: str): panics. For the tests alone: they prove that a panic in the
/// core still reaches Python as pyo3's PanicException, not an abort of runh, now that the
/// unwinder is linked in statically (build.rs `static_unwinder`).
#[pyfunction]
fn _test_panic(message: &str) {
    panic!("{message}");
}

/// PEP 562's module `__getattr__`: what is made on first use rather than at import.
/// `SdBus` (the systemd driver's D-Bus client, cgroups/sdbus.rs) is a class, and creating
/// its type object was a fifth of the module's init (perf samples); only --systemd-cgroup
/// uses it.
#[pyfunction]
fn __getattr__(py: Python<'_>, name: &str) -> PyResult<PyObject> {
    match name {
        "SdBus" => crate::cgroups::sdbus::class(py),
        _ => Err(pyo3::exceptions::PyAttributeError::new_err(format!("module 'runh._core' has no attribute '{name}'"))),
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // PyO3's add/add_function append to `__all__`, and the first one made it from the
    // AttributeError of a failed lookup; PyO3 checks every taken error against its
    // PanicException, whose type it creates on first use (a class made at runtime): 45% of
    // the init's perf samples. An empty list first makes neither. With the lazy SdBus:
    // PyInit__core 116 -> 63 us, 11 -> 8 page faults (median of 40 fresh interpreters).
    m.setattr("__all__", pyo3::types::PyList::empty(m.py()))?;
    m.add_function(wrap_pyfunction!(create, m)?)?;
    m.add_function(wrap_pyfunction!(start, m)?)?;
    m.add_function(wrap_pyfunction!(exec_process, m)?)?;
    m.add_function(wrap_pyfunction!(exec, m)?)?;
    m.add_function(wrap_pyfunction!(unknown_capabilities, m)?)?;
    m.add_function(wrap_pyfunction!(core_features, m)?)?;
    m.add_function(wrap_pyfunction!(lsm_enabled, m)?)?;
    m.add_function(wrap_pyfunction!(mount_option_names, m)?)?;
    m.add_function(wrap_pyfunction!(launcher_parse, m)?)?;
    m.add_function(wrap_pyfunction!(rename_exchange, m)?)?;
    m.add_function(wrap_pyfunction!(_test_panic, m)?)?;
    m.add("NOTIFY_SOCK", clone::NOTIFY_SOCK)?;
    m.add("START_HANDSHAKE", clone::START_HANDSHAKE)?;
    crate::cgroups::py::register(m)?;
    // Not through add_function: `__getattr__` is no name to export in `__all__`.
    m.setattr("__getattr__", wrap_pyfunction!(__getattr__, m)?)?;
    crate::seccomp::py::register(m)?;
    crate::timing::py::register(m)?;
    Ok(())
}

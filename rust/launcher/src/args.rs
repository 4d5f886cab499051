//! The part of runh's command line the native path takes: the global options containerd,
//! CRI-O and podman pass, then `exec` with runc's exec flags (python/runh/cli/exec_.py
//! declares them; `tests/test_launcher.py` checks that the two agree), `start ID`,
//! `delete [--force] ID`, `kill ID [N]` and `state ID`. Anything this parser does not
//! recognise, or is unsure about, is None: Python parses it.

/// A `runh [globals] exec [flags] ID [ARGS…]` call.
#[derive(Debug, Default)]
pub struct Exec {
    pub root: String,
    pub id: String,
    pub command: Vec<String>,
    pub process: Option<String>,
    pub detach: bool,
    pub pid_file: Option<String>,
    pub console_socket: Option<String>,
    pub tty: bool,
    pub cwd: Option<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub additional_gids: Vec<String>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
    pub preserve_fds: i32,
    pub ignore_paused: bool,
}

/// `--name value` or `--name=value` at argv[*i] for one of `names`; advances *i.
fn value(argv: &[String], i: &mut usize, names: &[&str]) -> Option<Option<String>> {
    let a = &argv[*i];
    for n in names {
        if a == n {
            let v = argv.get(*i + 1)?.clone();
            *i += 2;
            return Some(Some(v));
        }
        if n.starts_with("--") {
            if let Some(v) = a.strip_prefix(n).and_then(|r| r.strip_prefix('=')) {
                *i += 1;
                return Some(Some(v.to_string()));
            }
        }
    }
    Some(None)
}

/// A call the native path takes.
pub enum Call {
    Exec(Exec),
    /// `start ID`
    Start { root: String, id: String },
    /// `delete [--force] ID`
    Delete { root: String, id: String, force: bool },
    /// `kill ID [SIGNAL]`, SIGNAL a number (go-runc, which containerd uses, passes numbers)
    Kill { root: String, id: String, signal: i32 },
    /// `state ID`
    State { root: String, id: String },
    /// `create` or `run`: Python's, with that command's module image (runh/_image.py)
    Python(&'static str),
}

impl Call {
    /// The module image the Python CLI may load for this call.
    pub fn image(&self) -> &'static str {
        match self {
            Call::Python(cmd) => cmd,
            _ => "",
        }
    }
}

/// A signal given as a number 1-31; names, real-time signals and anything else are
/// `runh.signals`' to parse.
fn signal(s: &str) -> Option<i32> {
    s.parse().ok().filter(|n| (1..=31).contains(n))
}

/// Can `--log` be opened for appending (created if missing, as runc does at start-up)?
/// One that cannot fails every call at once, worded by Python.
fn log_opens(path: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(path) else { return false };
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        return false;
    }
    unsafe { libc::close(fd) };
    true
}

/// Parse `argv` (without argv[0]); None: not a call the native path takes.
pub fn parse(argv: &[String]) -> Option<Call> {
    let mut root = "/run/runh".to_string();
    let mut log = String::new();
    let mut i = 0;
    // Global options: --root, and those that change nothing for these commands on success:
    // the log is written only for errors (Python's), and --systemd-cgroup, --rootless and
    // --criu matter only to create, run, checkpoint and restore (podman passes
    // --systemd-cgroup to every call when systemd manages its cgroups).
    loop {
        let a = argv.get(i)?;
        if !a.starts_with('-') {
            break;
        }
        if a == "--systemd-cgroup" {
            i += 1;
        } else if let Some(v) = value(argv, &mut i, &["--root"])? {
            root = v;
        } else if let Some(v) = value(argv, &mut i, &["--log-format"])? {
            if v != "text" && v != "json" {
                return None; // Python's error: invalid log-format
            }
        } else if let Some(v) = value(argv, &mut i, &["--rootless"])? {
            if !matches!(v.as_str(), "true" | "false" | "auto") {
                return None;
            }
        } else if let Some(v) = value(argv, &mut i, &["--log"])? {
            log = v;
        } else if value(argv, &mut i, &["--criu"])?.is_none() {
            return None; // --debug, --help, --version, …
        }
    }
    // After --log-format's check, as runc: a bad format creates no log.
    if !log.is_empty() && !log_opens(&log) {
        return None; // Python's error: open <log>: <why>
    }
    let rest = &argv[i + 1..];
    match argv[i].as_str() {
        "exec" => parse_exec(root, rest).map(Call::Exec),
        "start" => match rest {
            [id] if !id.starts_with('-') => Some(Call::Start { root, id: id.clone() }),
            _ => None,
        },
        "delete" => match rest {
            [id] if !id.starts_with('-') => Some(Call::Delete { root, id: id.clone(), force: false }),
            [f, id] if (f == "--force" || f == "-f") && !id.starts_with('-') => Some(Call::Delete { root, id: id.clone(), force: true }),
            _ => None,
        },
        "kill" => match rest {
            [id] if !id.starts_with('-') => Some(Call::Kill { root, id: id.clone(), signal: libc::SIGTERM }),
            [id, sig] if !id.starts_with('-') => Some(Call::Kill { root, id: id.clone(), signal: signal(sig)? }),
            _ => None,
        },
        "state" => match rest {
            [id] if !id.starts_with('-') => Some(Call::State { root, id: id.clone() }),
            _ => None,
        },
        "create" => Some(Call::Python("create")),
        "run" => Some(Call::Python("run")),
        _ => None,
    }
}

/// A string option's value; "" is as if it were not given (Python's CLI, and runc's
/// urfave/cli, read an empty string as unset).
fn given(v: String) -> Option<String> {
    (!v.is_empty()).then_some(v)
}

/// `exec`'s flags and arguments (after the word `exec`).
fn parse_exec(root: String, argv: &[String]) -> Option<Exec> {
    let mut e = Exec { root, ..Default::default() };
    let mut i = 0;
    while i < argv.len() && argv[i].starts_with('-') && argv[i] != "-" {
        let flag = |n: &str, i: &mut usize| -> bool {
            if argv[*i] == n {
                *i += 1;
                true
            } else {
                false
            }
        };
        if flag("--detach", &mut i) || flag("-d", &mut i) {
            e.detach = true;
        } else if flag("--tty", &mut i) || flag("-t", &mut i) {
            e.tty = true;
        } else if flag("--no-new-privs", &mut i) {
            e.no_new_privs = true;
        } else if flag("--ignore-paused", &mut i) {
            e.ignore_paused = true;
        } else if flag("--no-subreaper", &mut i) {
        } else if let Some(v) = value(argv, &mut i, &["--process", "-p"])? {
            e.process = given(v);
        } else if let Some(v) = value(argv, &mut i, &["--pid-file"])? {
            e.pid_file = given(v);
        } else if let Some(v) = value(argv, &mut i, &["--console-socket"])? {
            e.console_socket = given(v);
        } else if let Some(v) = value(argv, &mut i, &["--cwd"])? {
            e.cwd = given(v);
        } else if let Some(v) = value(argv, &mut i, &["--env", "-e"])? {
            e.env.push(v);
        } else if let Some(v) = value(argv, &mut i, &["--user", "-u"])? {
            e.user = given(v);
        } else if let Some(v) = value(argv, &mut i, &["--additional-gids", "-g"])? {
            e.additional_gids.push(v);
        } else if let Some(v) = value(argv, &mut i, &["--cap", "-c"])? {
            e.caps.push(v);
        } else if let Some(v) = value(argv, &mut i, &["--apparmor"])? {
            e.apparmor = given(v);
        } else if let Some(v) = value(argv, &mut i, &["--process-label"])? {
            e.process_label = given(v);
        } else if let Some(v) = value(argv, &mut i, &["--preserve-fds"])? {
            e.preserve_fds = v.parse().ok().filter(|n: &i32| *n >= 0)?;
        } else {
            return None; // --cgroup, --pidfd-socket, --help, `--`, a bool with =, -dt, …
        }
    }
    e.id = argv.get(i)?.clone();
    e.command = argv[i + 1..].to_vec();
    Some(e)
}

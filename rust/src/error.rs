//! One error type for the whole core. It carries the errno and what was being done, and it
//! crosses into Python as the matching `runh.errors` exception (see `python.rs`).
use std::fmt;

/// What kind of failure this is; each kind maps to one Python exception class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A system call failed; `errno` says why.
    Syscall,
    /// The config asks for something that cannot be done (caught late, in the core).
    Config,
    /// The container's process could not be started (e.g. executable not found).
    Exec,
    /// The child or the peer broke the sync protocol.
    Sync,
}

impl Kind {
    /// The `runh.errors` class this kind is raised as in Python (in-process by the
    /// extension, or by the CLI for the native launcher's RUNH_CORE_ERROR).
    pub fn python_class(self) -> &'static str {
        match self {
            Kind::Syscall => "SyscallError",
            Kind::Config => "ConfigError",
            Kind::Exec => "ExecError",
            Kind::Sync => "SyncError",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    pub errno: i32,
    pub context: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The last OS error, with what was being attempted.
    pub fn last_os(context: impl Into<String>) -> Self {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        Error { kind: Kind::Syscall, errno, context: context.into() }
    }
    pub fn from_errno(errno: i32, context: impl Into<String>) -> Self {
        Error { kind: Kind::Syscall, errno, context: context.into() }
    }
    pub fn config(context: impl Into<String>) -> Self {
        Error { kind: Kind::Config, errno: libc::EINVAL, context: context.into() }
    }
    pub fn exec(errno: i32, context: impl Into<String>) -> Self {
        Error { kind: Kind::Exec, errno, context: context.into() }
    }
    pub fn sync(context: impl Into<String>) -> Self {
        Error { kind: Kind::Sync, errno: libc::EPROTO, context: context.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == Kind::Syscall && self.errno != 0 {
            let msg = std::io::Error::from_raw_os_error(self.errno);
            // io::Error's Display appends " (os error N)"; keep only the text.
            let text = msg.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_lowercase();
            write!(f, "{}: {}", self.context, text)
        } else {
            write!(f, "{}", self.context)
        }
    }
}

impl std::error::Error for Error {}

/// Turn a -1 return into an Error with context; pass other values through.
pub fn check<T: PartialOrd + Default + Copy + From<i8>>(ret: T, context: impl FnOnce() -> String) -> Result<T> {
    if ret == T::from(-1) {
        Err(Error::last_os(context()))
    } else {
        Ok(ret)
    }
}

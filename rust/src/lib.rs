//! runh's Rust core: every piece of process and kernel work, one module per kernel concern.
//!
//! Two artifacts are built from this crate:
//! - the PyO3 extension `runh._core` (feature `python`), loaded by the Python front end;
//! - the library half used by `runh-init` (rust/init), the small static program that the
//!   extension execs as the first program of every container. No Python runs in a
//!   container: after clone the child only execs runh-init (see `clone.rs` for why).
pub mod caps;
pub mod cgroups;
#[cfg(feature = "host")]
pub mod clone;
pub mod devices;
pub mod error;
pub mod fd;
pub mod hooks;
pub mod idmap;
#[cfg(feature = "host")]
pub mod initexe;
pub mod inroot;
pub mod lsm;
pub mod exec;
pub mod mounts;
pub mod namespaces;
pub mod network;
pub mod process;
pub mod procattr;
#[cfg(feature = "python")]
mod python;
pub mod rootfs;
pub mod rt;
pub mod seccomp;
pub mod spec;
pub mod sync;
pub mod sysctl;
pub mod timing;
pub mod tty;
pub mod userns;

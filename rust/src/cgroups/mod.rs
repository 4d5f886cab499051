//! Cgroup kernel work: the file writes that apply limits, freeze/thaw, kill-all, removal,
//! and the cgroup v2 device filter (an eBPF program).
//!
//! The policy (which file gets which value for a LinuxResources document, v1 or v2, path
//! resolution) lives in Python (`runh.cgroups`): it is pure data shaping and runs once
//! per create/update. What crosses into Rust is a short list of (file, value) writes per
//! cgroup directory, done here in one call so that a create pays one PyO3 crossing per
//! directory instead of one Python open/write/close per file, and so that every failure
//! carries the file, the value and the errno.
pub mod devices;
pub mod fs;
#[cfg(feature = "python")]
pub mod py;
#[cfg(feature = "python")]
pub mod sdbus;

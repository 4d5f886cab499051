//! The PyO3 functions for cgroups; `register` adds them to `runh._core`.
use super::{devices, fs};
use crate::python::to_py;
use pyo3::prelude::*;
use std::time::Duration;

/// Apply [(file, value), ...] to the cgroup directory `dir`, in order.
#[pyfunction]
fn cgroup_write(py: Python<'_>, dir: &str, writes: Vec<(String, String)>) -> PyResult<()> {
    py.allow_threads(|| fs::write_all(dir, &writes)).map_err(|e| to_py(py, e))
}

/// mkdir -p each path (one call for all v1 hierarchies).
#[pyfunction]
fn cgroup_create(py: Python<'_>, paths: Vec<String>) -> PyResult<()> {
    for p in &paths {
        fs::create_dir(p).map_err(|e| to_py(py, e))?;
    }
    Ok(())
}

/// Remove each cgroup (and child cgroups), retrying EBUSY for up to timeout_ms each.
#[pyfunction]
#[pyo3(signature = (paths, timeout_ms=2000))]
fn cgroup_remove(py: Python<'_>, paths: Vec<String>, timeout_ms: u64) -> PyResult<()> {
    let t = Duration::from_millis(timeout_ms);
    py.allow_threads(|| paths.iter().try_for_each(|p| fs::remove(p, t)))
        .map_err(|e| to_py(py, e))
}

/// Freeze (frozen=True) or thaw and wait for the kernel to confirm.
#[pyfunction]
#[pyo3(signature = (dir, v2, frozen, timeout_ms=5000))]
fn cgroup_freeze(py: Python<'_>, dir: &str, v2: bool, frozen: bool, timeout_ms: u64) -> PyResult<()> {
    let t = Duration::from_millis(timeout_ms);
    py.allow_threads(|| fs::freeze(dir, v2, frozen, t)).map_err(|e| to_py(py, e))
}

/// SIGKILL everything in the cgroup via cgroup.kill; False when the kernel lacks it.
#[pyfunction]
fn cgroup_kill(py: Python<'_>, dir: &str) -> PyResult<bool> {
    fs::kill_all(dir).map_err(|e| to_py(py, e))
}

/// Load and attach the v2 device filter. rules: [(allow, type, major, minor, access)],
/// major/minor None (or -1) for the wildcard.
#[pyfunction]
fn cgroup_devices_v2(
    py: Python<'_>,
    dir: &str,
    rules: Vec<(bool, String, Option<i64>, Option<i64>, String)>,
) -> PyResult<()> {
    let num = |v: Option<i64>| v.filter(|n| *n >= 0).map(|n| n as u32);
    let rules: Vec<devices::Rule> = rules
        .into_iter()
        .map(|(allow, kind, major, minor, access)| devices::Rule {
            allow,
            kind: kind.chars().next().unwrap_or('a'),
            major: num(major),
            minor: num(minor),
            access,
        })
        .collect();
    py.allow_threads(|| devices::apply(dir, &rules)).map_err(|e| to_py(py, e))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cgroup_write, m)?)?;
    m.add_function(wrap_pyfunction!(cgroup_create, m)?)?;
    m.add_function(wrap_pyfunction!(cgroup_remove, m)?)?;
    m.add_function(wrap_pyfunction!(cgroup_freeze, m)?)?;
    m.add_function(wrap_pyfunction!(cgroup_kill, m)?)?;
    m.add_function(wrap_pyfunction!(cgroup_devices_v2, m)?)?;
    Ok(())
}

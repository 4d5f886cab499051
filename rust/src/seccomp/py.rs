//! The seccomp functions of `runh._core` (registered from python.rs).
use super::{cache, compile_with, Arch};
use crate::python::to_py;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

fn arch_of(arch: Option<&str>) -> PyResult<Arch> {
    match arch {
        None => Ok(Arch::native()),
        Some(a) => Arch::from_name(a)
            .ok_or_else(|| pyo3::exceptions::PyValueError::new_err(format!("unknown arch {a:?}"))),
    }
}

/// seccomp_compile(seccomp_json: bytes, arch: str | None = None) -> bytes
/// The raw `struct sock_filter[]` for the `linux.seccomp` object, for a host of `arch`.
#[pyfunction]
#[pyo3(signature = (seccomp_json, arch=None))]
fn seccomp_compile<'py>(py: Python<'py>, seccomp_json: &[u8], arch: Option<&str>) -> PyResult<Bound<'py, PyBytes>> {
    let a = arch_of(arch)?;
    let c = compile_with(seccomp_json, a).map_err(|e| to_py(py, e))?;
    Ok(PyBytes::new(py, &c.program))
}

/// seccomp_compile_cached(seccomp_json: bytes, root: str, arch: str | None = None)
///     -> tuple[bytes, int]: the program and its SECCOMP_FILTER_FLAG_* bits, through the
/// cache at `<root>/.cache/seccomp/`.
#[pyfunction]
#[pyo3(signature = (seccomp_json, root, arch=None))]
fn seccomp_compile_cached<'py>(
    py: Python<'py>,
    seccomp_json: &[u8],
    root: &str,
    arch: Option<&str>,
) -> PyResult<(Bound<'py, PyBytes>, u32)> {
    let a = arch_of(arch)?;
    let c = cache::compile_cached(seccomp_json, a, std::path::Path::new(root)).map_err(|e| to_py(py, e))?;
    Ok((PyBytes::new(py, &c.program), c.flags))
}

/// seccomp_features() -> str: the `linux.seccomp` object of `runh features`, as JSON.
#[pyfunction]
fn seccomp_features() -> String {
    super::features().to_string()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(seccomp_compile, m)?)?;
    m.add_function(wrap_pyfunction!(seccomp_compile_cached, m)?)?;
    m.add_function(wrap_pyfunction!(seccomp_features, m)?)?;
    Ok(())
}

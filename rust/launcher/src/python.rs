//! Handing a call to the Python CLI: exec the interpreter of the environment runh was
//! installed in, with the same argv.
//!
//! The interpreter runs with -I (no PYTHON* variables, no user site, no cwd on sys.path)
//! and -S (no site: 1.9 ms of .pth files and sitecustomize here), as pip's console-script
//! entry point cannot (it also imports `re`, ~7 ms per call in all). Without site,
//! site-packages is not on sys.path: BOOT below appends the directory that holds the runh
//! package, as `find_package` found it here (the one whose runh-init exec uses), then the
//! site-packages under runh's own prefix (this program is `<prefix>/bin/runh`; a venv's or
//! /usr/local's library layout under its prefix is fixed) for what runh imports only on
//! its cold paths (click for --help and bad usage, jsonschema to word an invalid config).
//! Only if that import fails does it fall back to runh.pth and last to site. Before, the
//! first import searched (listed) the site-packages and failed in `maturin develop`'s
//! layout, whose runh.pth names the package's directory, then read runh.pth and searched
//! again: 0.13-0.26 ms CPU per call (`runh --version`, medians and mins of 400 interleaved
//! rounds, twice, at load 2.6).
//! Appended, never in front: the standard library is not shadowed.
//! For create and run, BOOT first executes that command's module image, if there is a
//! fresh one (runh/_image.py says why: ~1 ms of importlib per call); if there is none, or
//! the call imported a runh module that it lacks, `launch` writes it after the command.
//! The code is compiled on every call (no .pyc for -c): keep it to a few statements.
use _core::error::Error;
use std::ffi::CString;

// BOOT's three parts (each a raw string; tests/test_module_image.py reads them in this
// order): what every call runs first, what create and run add, and what every call ends with.
macro_rules! boot_head {
    () => {
        r#"import sys
_d, _p, _i = sys.argv.pop(1), sys.argv.pop(1), sys.argv.pop(1)
_l = "%s/lib/python%d.%d/" % (_p, *sys.version_info[:2])
sys.path += ([_d] if _d else []) + [_l + "site-packages", _l + "dist-packages"]
"#
    };
}
macro_rules! boot_image {
    () => {
        r#"_i = "%s/runh/__pycache__/%s.%s.image" % (_d, _i, sys.implementation.cache_tag)
try:
    import marshal
    with open(_i, "rb") as _f:
        _c, _e = marshal.loads(_f.read())
    exec(_c, {"E": _e, "sys": sys})
except Exception:
    pass
"#
    };
}
macro_rules! boot_tail {
    () => {
        r#"try:
    from runh.cli import launch
except ImportError:
    for _d in sys.path[-2:]:
        try:
            sys.path += open(_d + "/runh.pth").read().split()
        except OSError:
            pass
    try:
        from runh.cli import launch
    except ImportError:
        import site
        site.main()
        from runh.cli import launch
launch(_i or None)
"#
    };
}
const BOOT: &str = concat!(boot_head!(), boot_tail!());
// Only create and run compile the image's lines: 0.1 ms more to compile (138 -> 229 us
// min, in a warm process), which every other call would pay for nothing.
const BOOT_IMAGE: &str = concat!(boot_head!(), boot_image!(), boot_tail!());

/// `<prefix>` of this program (`<prefix>/bin/runh`).
fn prefix() -> std::path::PathBuf {
    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    exe.parent().and_then(|b| b.parent()).map(|p| p.to_path_buf()).unwrap_or_default()
}

/// The directory (a sys.path entry) that holds the runh package with `name` in it: a
/// site-packages under our prefix (`lib/python3.*/{site,dist}-packages/runh/`), or a
/// directory that runh.pth names there (`maturin develop`). A few stats and one readdir.
fn find_package(name: &str) -> Option<std::path::PathBuf> {
    let lib = prefix().join("lib");
    let mut pythons: Vec<_> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3."))
        .map(|e| e.path())
        .collect();
    pythons.sort();
    for py in pythons.iter().rev() {
        for site in ["site-packages", "dist-packages"] {
            let site = py.join(site);
            let mut dirs = vec![site.clone()];
            if let Ok(pth) = std::fs::read_to_string(site.join("runh.pth")) {
                dirs.extend(pth.split_whitespace().map(std::path::PathBuf::from));
            }
            for d in dirs {
                if d.join("runh").join(name).is_file() {
                    return Some(d);
                }
            }
        }
    }
    None
}

/// The installed runh-init, in the runh package (`find_package`).
pub fn find_init() -> Option<std::path::PathBuf> {
    Some(find_package(_core::initexe::FILE_NAME)?.join("runh").join(_core::initexe::FILE_NAME))
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap()
}

/// Exec the Python CLI with this process's argv; with `error`, the CLI reports it
/// (`runh.cli.exec_`) instead of running the command again. Never returns.
pub fn handoff(error: Option<Error>) -> ! {
    handoff_to(error, "")
}

/// `handoff`, for a call of `image`'s command ("create", "run"; "" for none).
pub fn handoff_to(error: Option<Error>, image: &str) -> ! {
    if let Some(e) = error {
        std::env::set_var("RUNH_CORE_ERROR", format!("{}\t{}\t{}", e.kind.python_class(), e.errno, e));
    }
    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let bindir = exe.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let prefix = bindir.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    // The package's directory, or "" (BOOT's fallbacks then search), the prefix, and the
    // command whose module image BOOT may load.
    let package = find_package("__init__.py").map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
    let (boot, image) = if image.is_empty() || package.is_empty() { (BOOT, "") } else { (BOOT_IMAGE, image) };
    let mut argv: Vec<CString> =
        ["python3", "-I", "-S", "-c", boot, &package, &prefix, image].iter().map(|s| cstring(s)).collect();
    argv.extend(std::env::args_os().skip(1).map(|a| CString::new(a.into_encoded_bytes()).unwrap_or_default()));
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // The environment's own interpreter (a venv's bin/python3) first, else python3 on PATH.
    // argv[0] is the path exec'd: Python derives sys.executable (and a venv's prefix) from it.
    let own = cstring(&bindir.join("python3").to_string_lossy());
    ptrs[0] = own.as_ptr();
    unsafe { libc::execv(own.as_ptr(), ptrs.as_ptr()) };
    ptrs[0] = argv[0].as_ptr();
    unsafe { libc::execvp(c"python3".as_ptr(), ptrs.as_ptr()) };
    let e = std::io::Error::last_os_error();
    eprintln!("runh: cannot start python3 (looked in {} and PATH): {e}", bindir.display());
    std::process::exit(1);
}

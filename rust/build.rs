//! Builds `runh-init` (rust/init) and installs it as a file in the Python package,
//! `python/runh/runh-init`, next to the extension (`_core.abi3.so`): `maturin develop`'s
//! editable layout runs it from there, and a wheel carries it as package data
//! (pyproject.toml `include`). The core execs it through a read-only detached bind of that
//! one file, or a sealed memfd copied from it (see `initexe.rs`); nothing embeds it.
//!
//! Only the Python extension's build (feature `python`) does this: runh-init itself and
//! the `runh` launcher depend on this crate without it, so then this script does nothing
//! (and cannot recurse into itself). The extension's build also builds the launcher
//! (rust/launcher), which finds the installed init under its own prefix.
//!
//! runh-init is built by a nested cargo into its own target dir under OUT_DIR, with the
//! workspace's `init` profile (small, panic=abort, stripped) and a static C runtime, so it
//! needs no loader and no libc from the container's rootfs: it runs before and during
//! pivot_root, when the host's libraries are gone.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUNH_INIT_BIN");
    if env::var_os("CARGO_FEATURE_PYTHON").is_none() {
        return;
    }
    // Rebuild the init whenever any code it is made of changes.
    println!("cargo:rerun-if-changed={}", manifest_dir.join("src").display());
    println!("cargo:rerun-if-changed={}", manifest_dir.join("init/src").display());
    println!("cargo:rerun-if-changed={}", manifest_dir.join("init/Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", manifest_dir.join("Cargo.toml").display());
    let installed = manifest_dir.join("../python/runh").join("runh-init");

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let target = init_target(&env::var("TARGET").unwrap());
    let target_dir = out_dir.join("init-target");
    // An already-built init may be supplied (packagers, cross builds).
    let init = match env::var_os("RUNH_INIT_BIN") {
        Some(prebuilt) => PathBuf::from(prebuilt),
        None => nested_build(&manifest_dir.join("init/Cargo.toml"), "runh-init", &target, &target_dir),
    };
    install(&init, &installed, "runh-init");

    // The `runh` command (rust/launcher). The wheel's scripts come from wheel-data/scripts
    // (pyproject.toml [tool.maturin] data), where `runh` is a tracked symlink to
    // target/launcher/runh: maturin packs the file a symlink points to, after cargo has
    // built, and pip installs it as the command.
    println!("cargo:rerun-if-changed={}", manifest_dir.join("launcher/src").display());
    println!("cargo:rerun-if-changed={}", manifest_dir.join("launcher/Cargo.toml").display());
    let launcher = nested_build(&manifest_dir.join("launcher/Cargo.toml"), "runh", &target, &target_dir);
    let dir = manifest_dir.join("../target/launcher");
    std::fs::create_dir_all(&dir).expect("creating target/launcher");
    install(&launcher, &dir.join("runh"), "the runh launcher");

    static_unwinder();
}

/// Link the extension with libgcc's unwinder (libgcc_eh.a) instead of libgcc_s.so.1, which
/// std otherwise pulls in for panics (PyO3 still turns a panic into PanicException: the
/// unwinder is the same code, linked in, and hidden by the cdylib's version script). Python
/// itself never loads libgcc_s, so `import runh._core` paid for a second library: the
/// ld.so.cache lookup, open, 4 mmaps, its relocations, and its constructor
/// (__cpu_indicator_init), whose CPUID instructions each trap to the hypervisor on a VM.
/// Measured here (a VM): the extension's dlopen 378 -> 187 us and 23 -> 15 page faults
/// (median of 40 fresh interpreters; libgcc_s.so.1 alone took 160 us); +27 KB of file.
/// Where the compiler has no libgcc_eh.a, libgcc_s stays.
fn static_unwinder() {
    if !env::var("TARGET").unwrap_or_default().ends_with("-linux-gnu") {
        return;
    }
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(cc).arg("-print-file-name=libgcc_eh.a").output();
    let path = out.ok().filter(|o| o.status.success()).map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match path.filter(|p| p.is_absolute() && p.is_file()) {
        Some(p) => {
            println!("cargo:rustc-link-search=native={}", p.parent().unwrap().display());
            // Before std's -lgcc_s on the link line, so that --as-needed drops libgcc_s.
            println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
        }
        None => println!("cargo:warning=libgcc_eh.a not found: the extension keeps libgcc_s.so.1"),
    }
}

/// Copy `from` to `dest` as a new inode (copy, chmod 0755, rename), never a write into
/// the file: the old one may be running (ETXTBSY), and a process exec'ing it must see a
/// whole file. Unchanged content is left alone.
fn install(from: &Path, dest: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read(dest).ok() == std::fs::read(from).ok() {
        return;
    }
    let tmp = dest.with_file_name(format!(".{}.tmp", dest.file_name().unwrap().to_string_lossy()));
    std::fs::copy(from, &tmp).unwrap_or_else(|e| panic!("copying {what}: {e}"));
    // Writable by its owner alone: initexe.rs refuses anything else.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("chmod {what}: {e}"));
    std::fs::rename(&tmp, dest).unwrap_or_else(|e| panic!("installing {what}: {e}"));
}

/// Build one binary of the workspace with a nested cargo: static, `init` profile, its own
/// target dir under OUT_DIR. Returns the binary's path.
fn nested_build(manifest: &Path, bin: &str, target: &str, target_dir: &Path) -> PathBuf {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // The outer build's settings (profile, features, rustflags for the Python extension,
    // maturin's target dir) must not leak into this build: drop every CARGO_* and
    // RUSTFLAGS variable except the ones that locate the toolchain and the registry.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let keep = matches!(key.as_str(), "CARGO_HOME" | "CARGO_MAKEFLAGS" | "CARGO_NET_OFFLINE");
        if (key.starts_with("CARGO_") && !keep)
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS"
            || key.starts_with("PYO3_")
            || key == "MATURIN_PYTHON_SYSCONFIGDATA_DIR"
            || key == "RUNH_INIT_BIN"
        {
            cmd.env_remove(&key);
        }
    }
    // `--target` keeps crt-static off build scripts and proc macros (serde_derive is a
    // dylib and cannot be static); only the binary itself is linked statically.
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
        .arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .args(["--profile", "init", "--target", target])
        .arg("--target-dir")
        .arg(target_dir);
    if env::var_os("CARGO_NET_OFFLINE").is_some() {
        cmd.arg("--offline");
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("running cargo to build {bin}: {e}"));
    if !status.success() {
        panic!("building {bin} failed: {status}");
    }
    let path = target_dir.join(target).join("init").join(bin);
    assert!(path.exists(), "{bin} not found at {}", path.display());
    path
}

/// musl when its std is installed for this toolchain (`rustup target add
/// <arch>-unknown-linux-musl`), else the host's glibc linked statically. Measured here:
/// a static hello world is 377 KB with musl and 1.12 MB with glibc; a smaller init is
/// less to page in per container and less to copy where the sealed memfd is used (about
/// 0.9 ms for the 1.49 MB glibc init here), so musl is worth taking when it is there;
/// glibc keeps a bare toolchain working.
fn init_target(target: &str) -> String {
    let Some(musl) = target.strip_suffix("-unknown-linux-gnu").map(|arch| format!("{arch}-unknown-linux-musl")) else {
        return target.to_string();
    };
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(rustc).args(["--print", "target-libdir", "--target", &musl]).output();
    let has_std = libdir.ok().filter(|o| o.status.success()).is_some_and(|o| {
        let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        std::fs::read_dir(dir).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-"))))
    });
    if has_std {
        musl
    } else {
        target.to_string()
    }
}

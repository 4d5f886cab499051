//! Builds `runh-init` (rust/init) and hands its path to the extension, which embeds the
//! bytes with `include_bytes!` (see `memfd.rs`).
//!
//! Only the runh side (feature `host`: the Python extension and the `runh` launcher) embeds
//! the init: runh-init itself depends on this crate without it, so then this script does
//! nothing (and cannot recurse into itself). The extension's build also builds the
//! launcher (rust/launcher), handing it the init just built.
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
    if env::var_os("CARGO_FEATURE_HOST").is_none() {
        return;
    }
    // Rebuild the init whenever any code it is made of changes.
    println!("cargo:rerun-if-changed={}", manifest_dir.join("src").display());
    println!("cargo:rerun-if-changed={}", manifest_dir.join("init/src").display());
    println!("cargo:rerun-if-changed={}", manifest_dir.join("init/Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", manifest_dir.join("Cargo.toml").display());

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let target = init_target(&env::var("TARGET").unwrap());
    let target_dir = out_dir.join("init-target");
    // An already-built init may be supplied (packagers, cross builds, and the launcher's
    // nested build below).
    let init = match env::var_os("RUNH_INIT_BIN") {
        Some(prebuilt) => PathBuf::from(prebuilt),
        None => nested_build(&manifest_dir.join("init/Cargo.toml"), "runh-init", &target, &target_dir, None),
    };
    println!("cargo:rustc-env=RUNH_INIT_BIN={}", init.display());

    // The Python extension's build also makes the `runh` command (rust/launcher). The
    // wheel's scripts come from wheel-data/scripts (pyproject.toml [tool.maturin] data),
    // where `runh` is a tracked symlink to target/launcher/runh: maturin packs the file a
    // symlink points to, after cargo has built, and pip installs it as the command.
    if env::var_os("CARGO_FEATURE_PYTHON").is_some() {
        println!("cargo:rerun-if-changed={}", manifest_dir.join("launcher/src").display());
        println!("cargo:rerun-if-changed={}", manifest_dir.join("launcher/Cargo.toml").display());
        let launcher = nested_build(&manifest_dir.join("launcher/Cargo.toml"), "runh", &target, &target_dir, Some(&init));
        let dir = manifest_dir.join("../target/launcher");
        std::fs::create_dir_all(&dir).expect("creating target/launcher");
        let dest = dir.join("runh");
        if std::fs::read(&dest).ok() != std::fs::read(&launcher).ok() {
            // A new inode (rename), never a write into the file: the old one may be running.
            let tmp = dir.join(".runh.tmp");
            std::fs::copy(&launcher, &tmp).expect("copying the runh launcher");
            std::fs::rename(&tmp, &dest).expect("installing the runh launcher");
        }
    }
}

/// Build one binary of the workspace with a nested cargo: static, `init` profile, its own
/// target dir under OUT_DIR. Returns the binary's path.
fn nested_build(manifest: &Path, bin: &str, target: &str, target_dir: &Path, init: Option<&Path>) -> PathBuf {
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
    if let Some(init) = init {
        cmd.env("RUNH_INIT_BIN", init);
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
/// a static hello world is 377 KB with musl and 1.12 MB with glibc, and every create
/// copies the init into a memfd (0.68 ms for the 1.39 MB glibc init on this machine), so
/// musl is worth taking when it is there; glibc keeps a bare toolchain working.
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

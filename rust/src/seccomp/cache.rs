//! On-disk cache of compiled filters under `<root>/.cache/seccomp/`.
//!
//! Why: a container engine starts many containers with the same profile (the default one
//! is ~350 syscalls). Reading the entry back is one open + read, against parsing and
//! generating again (see benches/seccomp_bench.py for both figures).
//!
//! Entry name: `<generator version>-<arch>-<64-bit hash of the seccomp JSON>`. The hash is
//! not trusted: each entry stores the full JSON it was built from and a hit compares it
//! byte for byte, so a collision (even a crafted one) only costs a recompile and can never
//! hand one container another profile's filter.
//!
//! Writers create a unique temporary file in the same directory and rename(2) it into
//! place, so a reader sees either no entry or a whole one, and concurrent creates of the
//! same profile both succeed (the last rename wins, with identical content). After a write
//! the directory is trimmed to MAX_ENTRIES / MAX_BYTES, oldest mtime first; hits do not
//! touch the entry (no write on the hot path), so eviction is by age of creation.
use super::arch::Arch;
use super::{compile_with, Compiled, GENERATOR_VERSION};
use crate::error::Result;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const MAX_ENTRIES: usize = 128;
pub const MAX_BYTES: u64 = 8 << 20;
const MAGIC: &[u8; 8] = b"RUNHSBPF";
const HEADER: usize = 8 + 4 + 4 + 4 + 4;

pub fn dir(root: &Path) -> PathBuf {
    root.join(".cache").join("seccomp")
}

fn key(json: &[u8], arch: Arch) -> String {
    // SipHash with fixed keys: stable across runs of one build; a toolchain that changes
    // it only turns hits into misses (the JSON comparison keeps entries honest).
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    json.hash(&mut h);
    format!("{GENERATOR_VERSION}-{}-{:016x}", arch.name(), h.finish())
}

fn decode(data: &[u8], json: &[u8]) -> Option<Compiled> {
    if data.len() < HEADER || &data[..8] != MAGIC {
        return None;
    }
    let word = |i: usize| u32::from_ne_bytes(data[i..i + 4].try_into().unwrap());
    if word(8) != GENERATOR_VERSION {
        return None;
    }
    let flags = word(12);
    let notify = word(16) != 0;
    let jlen = word(20) as usize;
    let rest = &data[HEADER..];
    if rest.len() < jlen || &rest[..jlen] != json {
        return None;
    }
    let program = rest[jlen..].to_vec();
    if program.is_empty() || program.len() % 8 != 0 {
        return None;
    }
    Some(Compiled { program, flags, uses_notify: notify })
}

fn encode(c: &Compiled, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + json.len() + c.program.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&GENERATOR_VERSION.to_ne_bytes());
    out.extend_from_slice(&c.flags.to_ne_bytes());
    out.extend_from_slice(&(c.uses_notify as u32).to_ne_bytes());
    out.extend_from_slice(&(json.len() as u32).to_ne_bytes());
    out.extend_from_slice(json);
    out.extend_from_slice(&c.program);
    out
}

/// The compiled filter for `json` (the `linux.seccomp` object), from the cache when a
/// valid entry exists, else compiled and stored. A cache that cannot be written (read-only
/// root, full disk) is not an error: the filter is still returned.
pub fn compile_cached(json: &[u8], arch: Arch, root: &Path) -> Result<Compiled> {
    let d = dir(root);
    let path = d.join(key(json, arch));
    if let Ok(data) = fs::read(&path) {
        if let Some(c) = decode(&data, json) {
            return Ok(c);
        }
    }
    let c = compile_with(json, arch)?;
    let _ = store(&d, &path, &encode(&c, json));
    Ok(c)
}

fn store(d: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(d)?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|t| t.subsec_nanos()).unwrap_or(0);
    let tmp = d.join(format!(".tmp-{}-{nanos}", std::process::id()));
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    let r = f.write_all(data).and_then(|_| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r?;
    evict(d);
    Ok(())
}

/// Trim the cache to MAX_ENTRIES and MAX_BYTES, oldest first; also drop temporaries that a
/// crashed writer left behind more than a minute ago. Races with other runh processes are
/// harmless: a file already removed is skipped.
pub fn evict(d: &Path) {
    let Ok(rd) = fs::read_dir(d) else { return };
    let now = std::time::SystemTime::now();
    let mut entries = Vec::new();
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        let mtime = md.modified().unwrap_or(now);
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            if now.duration_since(mtime).map(|a| a.as_secs() > 60).unwrap_or(false) {
                let _ = fs::remove_file(e.path());
            }
            continue;
        }
        entries.push((mtime, md.len(), e.path()));
    }
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    if entries.len() <= MAX_ENTRIES && total <= MAX_BYTES {
        return;
    }
    entries.sort();
    let mut n = entries.len();
    for (_, len, p) in entries {
        if n <= MAX_ENTRIES && total <= MAX_BYTES {
            break;
        }
        // Counted as gone even if another process removed it first.
        let _ = fs::remove_file(&p);
        n -= 1;
        total = total.saturating_sub(len);
    }
}

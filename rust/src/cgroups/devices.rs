//! The cgroup v2 device controller: cgroup v2 has no devices.allow/deny files; device
//! access is decided by a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the cgroup.
//! This module turns the OCI device rules into that program, loads it with bpf(2) and
//! attaches it, replacing any program runh attached before (for `update`).
//!
//! The program is generated directly as eBPF instructions (no libbpf, no compiler): it is
//! a straight list of rule blocks, and each block either jumps to the next one or returns.
//! OCI semantics are "the last matching rule wins", so the rules are emitted in reverse
//! and the first block that matches decides; no match means deny.
use crate::error::{Error, Result};
use std::ffi::CString;

/// One OCI `linux.resources.devices` entry. `kind` is 'a' (all), 'c' or 'b'; a major or
/// minor of None is the wildcard; `access` is a subset of "rwm".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: String,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high nibble
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | (dst & 0xf), off, imm }
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }
const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

fn access_bits(access: &str) -> Result<i32> {
    let mut bits = 0;
    for c in access.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return Err(Error::config(format!("device access {access:?}: want a subset of \"rwm\""))),
        };
    }
    Ok(bits)
}

/// Generate the program. Each rule block loads from the context (r1) the fields it
/// checks, into r2 (device type), r3 (access requested), r4 (major) and r5 (minor), and
/// compares them; a failed check jumps to the next block.
///
/// Why a load per block, not once at the top: with the fields loaded once, the registers
/// stay live through every block, and after a check falls through the verifier knows
/// their values (type == char, major == 1); a later block's check of the same field is
/// then decided by that knowledge, which marks the register precise, so the states that
/// reach a block by different paths no longer prune each other. The default rules (deny
/// all, ten allows) took 197 instructions processed and 21 states for a 59-instruction
/// program, 235-270 us per BPF_PROG_LOAD here (~0.35 ms of CPU in a create's profile),
/// against ~50 us for a program that only returns. Reloaded, a block's registers are dead
/// at its start (written before read), so every path into it is the same state and it is
/// verified once: 107 instructions processed for 90, 10 states, ~125 us per load (the
/// test verifier_cost_of_the_default_rules prints these). The loads cost the kernel a
/// few nanoseconds per device open; each check is one instruction longer.
pub fn program(rules: &[Rule]) -> Result<Vec<Insn>> {
    let mut p = Vec::new();
    for rule in rules.iter().rev() {
        // Each check is some loads and ALU ops ending in a conditional jump.
        let mut checks: Vec<Vec<Insn>> = Vec::new();
        match rule.kind {
            'a' => {}
            'c' | 'b' => checks.push(vec![
                insn(LDX_MEM_W, 2, 1, 0, 0),
                insn(ALU32_AND_K, 2, 0, 0, 0xffff),
                insn(JMP_JNE_K, 2, 0, 0, if rule.kind == 'c' { DEV_CHAR } else { DEV_BLOCK }),
            ]),
            k => return Err(Error::config(format!("device type {k:?}: want a, c or b"))),
        }
        let bits = if rule.access.is_empty() { 7 } else { access_bits(&rule.access)? };
        if bits != 7 {
            // The kernel asks once per open with all the access bits it needs (r|w for
            // O_RDWR). An allow rule decides only if it grants every requested bit; a deny
            // rule decides as soon as it names any of them.
            let (mask, jump) = if rule.allow { (!bits & 7, JMP_JNE_K) } else { (bits, JMP_JEQ_K) };
            checks.push(vec![
                insn(LDX_MEM_W, 3, 1, 0, 0),
                insn(ALU32_RSH_K, 3, 0, 0, 16),
                insn(ALU32_AND_K, 3, 0, 0, mask),
                insn(jump, 3, 0, 0, 0),
            ]);
        }
        if rule.kind != 'a' {
            if let Some(major) = rule.major {
                checks.push(vec![insn(LDX_MEM_W, 4, 1, 4, 0), insn(JMP_JNE_K, 4, 0, 0, major as i32)]);
            }
            if let Some(minor) = rule.minor {
                checks.push(vec![insn(LDX_MEM_W, 5, 1, 8, 0), insn(JMP_JNE_K, 5, 0, 0, minor as i32)]);
            }
        }
        // Each jump skips the rest of its block: the remaining checks plus mov + exit.
        let unconditional = checks.is_empty();
        let mut rest: usize = checks.iter().map(Vec::len).sum();
        for mut c in checks {
            rest -= c.len();
            c.last_mut().unwrap().off = (rest + 2) as i16;
            p.extend(c);
        }
        p.push(insn(ALU64_MOV_K, 0, 0, 0, rule.allow as i32));
        p.push(insn(JMP_EXIT, 0, 0, 0, 0));
        if unconditional {
            // An unconditional rule decides everything; later blocks would be dead code,
            // which the verifier rejects.
            return Ok(p);
        }
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    Ok(p)
}

// bpf(2) commands and types (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// bpf_attr is a union; every command reads a prefix of it. 128 zeroed bytes cover the
/// prefixes used here, and the kernel requires the unused tail to be zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }
    fn u32_at(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64_at(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn read_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0[off..off + 4].try_into().unwrap())
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> libc::c_long {
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len()) }
}

struct Fd(i32);
impl Drop for Fd {
    fn drop(&mut self) {
        unsafe { libc::close(self.0) };
    }
}

/// Load the program; on a verifier rejection the log is put in the error.
fn load(insns: &[Insn]) -> Result<Fd> {
    let license = CString::new("Apache-2.0").unwrap();
    let mut log = vec![0u8; 16 * 1024];
    let mut attr = Attr::new();
    attr.u32_at(0, BPF_PROG_TYPE_CGROUP_DEVICE)
        .u32_at(4, insns.len() as u32)
        .u64_at(8, insns.as_ptr() as u64)
        .u64_at(16, license.as_ptr() as u64);
    // prog_name at offset 48 (16 bytes): shows in bpftool as the owner.
    attr.0[48..48 + 10].copy_from_slice(b"runh_devcg");
    let fd = bpf(BPF_PROG_LOAD, &mut attr);
    if fd >= 0 {
        return Ok(Fd(fd as i32));
    }
    let err = Error::last_os("load the device cgroup eBPF program");
    if err.errno != libc::EACCES && err.errno != libc::EINVAL {
        return Err(err);
    }
    // Reload with the verifier log on, to say why.
    attr.u32_at(24, 1).u32_at(28, log.len() as u32).u64_at(32, log.as_mut_ptr() as u64);
    let _ = bpf(BPF_PROG_LOAD, &mut attr);
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    Err(Error::from_errno(err.errno, format!("{}: verifier: {}", err.context, text.trim())))
}

/// The ids of the device programs attached to the cgroup.
fn query(cgroup_fd: i32) -> Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = Attr::new();
    attr.u32_at(0, cgroup_fd as u32)
        .u32_at(4, BPF_CGROUP_DEVICE)
        .u64_at(16, ids.as_mut_ptr() as u64)
        .u32_at(24, ids.len() as u32);
    if bpf(BPF_PROG_QUERY, &mut attr) < 0 {
        return Err(Error::last_os("query the cgroup's device programs"));
    }
    ids.truncate(attr.read_u32(24) as usize);
    Ok(ids)
}

/// Load the filter for `rules` and attach it to the cgroup v2 directory `dir`, then detach
/// whatever device programs were attached before (so `update` replaces the filter without
/// a window in which the cgroup has none).
pub fn apply(dir: &str, rules: &[Rule]) -> Result<()> {
    let insns = program(rules)?;
    let prog = load(&insns)?;
    let cpath = CString::new(dir).map_err(|_| Error::config("cgroup path has a NUL byte"))?;
    let cg = unsafe { libc::open(cpath.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if cg < 0 {
        return Err(Error::last_os(format!("open {dir}")));
    }
    let cg = Fd(cg);
    let old = query(cg.0).unwrap_or_default();
    let mut attr = Attr::new();
    attr.u32_at(0, cg.0 as u32)
        .u32_at(4, prog.0 as u32)
        .u32_at(8, BPF_CGROUP_DEVICE)
        .u32_at(12, BPF_F_ALLOW_MULTI);
    if bpf(BPF_PROG_ATTACH, &mut attr) < 0 {
        return Err(Error::last_os(format!("attach the device eBPF program to {dir}")));
    }
    for id in old {
        let mut a = Attr::new();
        a.u32_at(0, id);
        let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut a);
        if fd < 0 {
            continue; // already gone
        }
        let fd = Fd(fd as i32);
        let mut d = Attr::new();
        d.u32_at(0, cg.0 as u32).u32_at(4, fd.0 as u32).u32_at(8, BPF_CGROUP_DEVICE);
        if bpf(BPF_PROG_DETACH, &mut d) < 0 {
            return Err(Error::last_os(format!("detach an old device program from {dir}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: bool, kind: char, major: Option<u32>, minor: Option<u32>, access: &str) -> Rule {
        Rule { allow, kind, major, minor, access: access.into() }
    }

    /// Interpret the generated program for one access, as the kernel would.
    fn run(p: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let dst = (i.regs & 0xf) as usize;
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = ctx[i.off as usize / 4] as u64,
                ALU32_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
                JMP_JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc += i.off as usize
                    }
                }
                JMP_JEQ_K => {
                    if r[dst] == i.imm as i64 as u64 {
                        pc += i.off as usize
                    }
                }
                JMP_EXIT => return r[0],
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn last_rule_wins() {
        let rules = [
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rw"),
            rule(true, 'c', None, None, "m"),
            rule(false, 'c', Some(1), Some(3), "w"),
        ];
        let p = program(&rules).unwrap();
        let (c, b) = (DEV_CHAR as u32, DEV_BLOCK as u32);
        assert_eq!(run(&p, c, ACC_READ as u32, 1, 3), 1);
        assert_eq!(run(&p, c, ACC_WRITE as u32, 1, 3), 0);
        assert_eq!(run(&p, c, (ACC_READ | ACC_WRITE) as u32, 1, 3), 0);
        assert_eq!(run(&p, c, ACC_MKNOD as u32, 9, 9), 1);
        assert_eq!(run(&p, c, ACC_READ as u32, 1, 5), 0);
        assert_eq!(run(&p, b, ACC_MKNOD as u32, 8, 0), 0);
    }

    /// The OCI semantics, directly: the last rule that matches decides; none means deny.
    fn reference(rules: &[Rule], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let mut decision = 0;
        for r in rules {
            let bits = if r.access.is_empty() { 7 } else { access_bits(&r.access).unwrap() as u32 };
            let kind_ok = match r.kind {
                'a' => true,
                'c' => kind == DEV_CHAR as u32,
                _ => kind == DEV_BLOCK as u32,
            };
            let dev_ok = r.kind == 'a' || (r.major.map_or(true, |m| m == major) && r.minor.map_or(true, |m| m == minor));
            // An allow grants only if it covers every bit asked; a deny bites on any of them.
            let acc_ok = if r.allow { access & !bits == 0 } else { access & bits != 0 };
            if kind_ok && dev_ok && acc_ok {
                decision = r.allow as u64;
            }
        }
        decision
    }

    #[test]
    fn program_matches_the_rules_everywhere() {
        let mut odd = default_rules();
        odd.push(rule(false, 'c', Some(1), None, "w"));
        odd.push(rule(true, 'b', Some(8), Some(0), "r"));
        odd.push(rule(false, 'a', None, None, "m"));
        for rules in [default_rules(), odd] {
            let p = program(&rules).unwrap();
            for kind in [DEV_BLOCK as u32, DEV_CHAR as u32] {
                for access in 1..8 {
                    for (major, minor) in [(1, 3), (1, 4), (1, 9), (5, 0), (5, 2), (5, 1), (136, 7), (8, 0), (8, 1), (0, 0)] {
                        assert_eq!(run(&p, kind, access, major, minor), reference(&rules, kind, access, major, minor),
                                   "kind {kind} access {access} {major}:{minor}");
                    }
                }
            }
        }
    }

    #[test]
    fn allow_all_stops_early() {
        let p = program(&[rule(true, 'a', None, None, "")]).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(run(&p, 1, 2, 8, 0), 1);
    }

    /// The default rules: deny all, then runh's DEFAULT_DEVICES (python/runh/cgroups/base.py).
    fn default_rules() -> Vec<Rule> {
        let mut v = vec![rule(false, 'a', None, None, "rwm"), rule(true, 'c', None, None, "m"), rule(true, 'b', None, None, "m")];
        for (ma, mi) in [(1, Some(3)), (1, Some(5)), (1, Some(7)), (1, Some(8)), (1, Some(9)), (5, Some(0)), (5, Some(2)), (136, None)] {
            v.push(rule(true, 'c', Some(ma), mi, "rwm"));
        }
        v
    }

    /// The verifier's own statistics for a load (BPF_LOG_STATS): "processed N insns ...".
    fn verifier_stats(insns: &[Insn]) -> Option<String> {
        let license = CString::new("GPL").unwrap();
        let mut log = vec![0u8; 4096];
        let mut attr = Attr::new();
        attr.u32_at(0, BPF_PROG_TYPE_CGROUP_DEVICE)
            .u32_at(4, insns.len() as u32)
            .u64_at(8, insns.as_ptr() as u64)
            .u64_at(16, license.as_ptr() as u64)
            .u32_at(24, 4)
            .u32_at(28, log.len() as u32)
            .u64_at(32, log.as_mut_ptr() as u64);
        let fd = bpf(BPF_PROG_LOAD, &mut attr);
        if fd < 0 {
            return None; // no bpf here (EPERM without CAP_BPF): nothing to measure
        }
        drop(Fd(fd as i32));
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        Some(String::from_utf8_lossy(&log[..end]).trim().to_string())
    }

    #[test]
    fn verifier_cost_of_the_default_rules() {
        let p = program(&default_rules()).unwrap();
        let Some(stats) = verifier_stats(&p) else { return };
        let processed: usize = stats.split_whitespace().skip_while(|w| *w != "processed").nth(1).unwrap().parse().unwrap();
        let t = std::time::Instant::now();
        for _ in 0..50 {
            verifier_stats(&p);
        }
        eprintln!("{} insns: {stats}; {:?} per load", p.len(), t.elapsed() / 50);
        // Verified about once per instruction: no block is walked again per path into it.
        assert!(processed <= p.len() * 5 / 4, "{processed} processed for {} instructions", p.len());
        let tiny = program(&[rule(true, 'a', None, None, "")]).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..50 {
            verifier_stats(&tiny);
        }
        eprintln!("{} insns: {:?}; {:?} per load", tiny.len(), verifier_stats(&tiny), t.elapsed() / 50);
    }

    #[test]
    fn bad_rules_are_config_errors() {
        assert!(program(&[rule(true, 'x', None, None, "r")]).is_err());
        assert!(program(&[rule(true, 'c', None, None, "rx")]).is_err());
    }

    /// Load, attach and replace on a real cgroup2 directory: the unified hierarchy of the
    /// hybrid host, or the guest's root. Skipped where none is writable.
    #[test]
    fn attach_replaces_the_old_program() {
        let base = if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
            "/sys/fs/cgroup/unified"
        } else {
            "/sys/fs/cgroup"
        };
        let dir = format!("{base}/runh-test-bpf-{}", std::process::id());
        if std::fs::create_dir(&dir).is_err() {
            return;
        }
        let rules = [rule(true, 'c', Some(1), Some(3), "rwm")];
        let r1 = apply(&dir, &rules);
        let r2 = apply(&dir, &rules);
        let cg = unsafe { libc::open(CString::new(dir.clone()).unwrap().as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
        let n = query(cg).map(|v| v.len());
        unsafe { libc::close(cg) };
        std::fs::remove_dir(&dir).unwrap();
        r1.unwrap();
        r2.unwrap();
        assert_eq!(n.unwrap(), 1);
    }

    /// The filter enforced for real: a child moved into the cgroup may open the listed
    /// /dev/null and gets EPERM for the unlisted /dev/kmsg; after an update that lists
    /// kmsg, it may open it too.
    #[test]
    fn filter_denies_unlisted_and_allows_listed() {
        let base = if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
            "/sys/fs/cgroup/unified"
        } else {
            "/sys/fs/cgroup"
        };
        let dir = format!("{base}/runh-test-bpf2-{}", std::process::id());
        if std::fs::create_dir(&dir).is_err() {
            return;
        }
        let probe = |dir: &str| -> i32 {
            let procs = CString::new(format!("{dir}/cgroup.procs")).unwrap();
            let null = CString::new("/dev/null").unwrap();
            let kmsg = CString::new("/dev/kmsg").unwrap();
            unsafe {
                let pid = libc::fork();
                if pid == 0 {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        libc::_exit(100);
                    }
                    let a = libc::open(null.as_ptr(), libc::O_RDONLY) >= 0;
                    let b = libc::open(kmsg.as_ptr(), libc::O_RDONLY) >= 0;
                    libc::_exit(a as i32 | (b as i32) << 1);
                }
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
                libc::WEXITSTATUS(status)
            }
        };
        let null = rule(true, 'c', Some(1), Some(3), "rwm");
        let kmsg = rule(true, 'c', Some(1), Some(11), "r");
        let r1 = apply(&dir, &[null.clone()]).map(|_| probe(&dir));
        let r2 = apply(&dir, &[null, kmsg]).map(|_| probe(&dir));
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(r1.unwrap(), 0b01, "null allowed, kmsg denied");
        assert_eq!(r2.unwrap(), 0b11, "both allowed after the update");
    }
}

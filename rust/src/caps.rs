//! Capabilities: names to numbers, and the five sets of process.capabilities.
//!
//! Applied in init in two steps around the uid switch (see `process::set_user`):
//! `drop_bounding` while still root with every capability (PR_CAPBSET_DROP needs
//! CAP_SETPCAP in the effective set), then `apply` after setuid, which PR_SET_KEEPCAPS
//! let survive in the permitted set.
use crate::error::{Error, Result};
use crate::spec::Capabilities;

/// linux/capability.h, CAP_CHOWN = 0 … CAP_CHECKPOINT_RESTORE = 40.
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

pub fn number(name: &str) -> Option<u32> {
    NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

/// A set as a 64-bit mask. Unknown names are skipped, as runc (1.1+) does: a config
/// written for a newer kernel must still run; `unknown` lists them for the warning.
pub fn mask(_set: &str, names: &[String]) -> Result<u64> {
    Ok(names.iter().filter_map(|n| number(n)).fold(0u64, |m, c| m | 1 << c))
}

/// The names in `c` that this runtime does not know, or that the running kernel lacks
/// (above /proc/sys/kernel/cap_last_cap): sorted, each once, as runc words its warning
/// "ignoring unknown or unavailable capabilities: [A B]".
pub fn unknown(c: &Capabilities) -> Vec<String> {
    // cap_last_cap is read only for names newer than CAP_AUDIT_READ (37, Linux 3.16):
    // the file read was most of this call's cost (9 us from Python here, 1.1 us without).
    let last = std::cell::OnceCell::new();
    let mut out: Vec<String> = [&c.bounding, &c.effective, &c.inheritable, &c.permitted, &c.ambient]
        .into_iter()
        .flatten()
        .filter(|n| number(n).is_none_or(|i| i > 37 && i > *last.get_or_init(last_cap)))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The five sets, resolved up front so a bad name fails during create, not at start.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sets {
    pub bounding: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub permitted: u64,
    pub ambient: u64,
}

impl Sets {
    pub fn from_spec(c: &Capabilities) -> Result<Sets> {
        Ok(Sets {
            bounding: mask("bounding", &c.bounding)?,
            effective: mask("effective", &c.effective)?,
            inheritable: mask("inheritable", &c.inheritable)?,
            permitted: mask("permitted", &c.permitted)?,
            ambient: mask("ambient", &c.ambient)?,
        })
    }

    /// The sets a process runs with. An absent `process.capabilities` means no
    /// capability at all, as with runc: never the runtime's own full set.
    pub fn of_process(p: &crate::spec::Process) -> Result<Sets> {
        p.capabilities.as_ref().map_or(Ok(Sets::default()), Sets::from_spec)
    }
}

/// The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap); names above
/// it are skipped, as a kernel older than the table cannot hold them.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drop every capability not in `bounding` from the bounding set. Needs CAP_SETPCAP, so
/// this runs before the uid switch.
pub fn drop_bounding(sets: &Sets) -> Result<()> {
    for c in 0..=last_cap().min(63) {
        if sets.bounding & (1 << c) == 0 {
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) };
            if r < 0 {
                let e = Error::last_os(format!("drop {} from the bounding set", NAMES.get(c as usize).unwrap_or(&"?")));
                // EINVAL: the kernel does not know this capability.
                if e.errno != libc::EINVAL {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// capset the effective, permitted and inheritable sets, then raise the ambient ones
/// that are permitted and inheritable, clearing any others first.
pub fn apply(sets: &Sets) -> Result<()> {
    let known = if last_cap() >= 63 { u64::MAX } else { (1u64 << (last_cap() + 1)) - 1 };
    let (e, p, i) = (sets.effective & known, sets.permitted & known, sets.inheritable & known);
    let hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [
        CapData { effective: e as u32, permitted: p as u32, inheritable: i as u32 },
        CapData { effective: (e >> 32) as u32, permitted: (p >> 32) as u32, inheritable: (i >> 32) as u32 },
    ];
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) };
    if r < 0 {
        return Err(Error::last_os("capset"));
    }
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
    // The kernel only lets an ambient capability be raised when it is both permitted
    // and inheritable. runc's default spec lists ambient caps with no inheritable set, so
    // the others are skipped rather than failing the start (runc only warns about them).
    let raisable = sets.ambient & p & i;
    for c in 0..=last_cap().min(63) {
        if raisable & (1 << c) != 0 {
            let r = unsafe {
                libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, c as libc::c_ulong, 0, 0)
            };
            if r < 0 {
                return Err(Error::last_os(format!("raise ambient capability {}", NAMES[c as usize])));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("CAP_AUDIT_READ"), Some(37));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_NOPE"), None);
    }

    #[test]
    fn masks() {
        let c = Capabilities {
            bounding: vec!["CAP_KILL".into(), "CAP_CHOWN".into()],
            ambient: vec!["CAP_FOO".into()],
            ..Default::default()
        };
        // Unknown names are ignored (and reported by `unknown`), not an error.
        assert_eq!(Sets::from_spec(&c).unwrap().ambient, 0);
        let c2 = Capabilities { effective: vec!["CAP_ZZZ".into(), "CAP_FOO".into(), "CAP_KILL".into()], ..c.clone() };
        assert_eq!(unknown(&c2), vec!["CAP_FOO".to_string(), "CAP_ZZZ".to_string()]);
        let c = Capabilities { bounding: vec!["CAP_KILL".into(), "CAP_CHOWN".into()], ..Default::default() };
        assert_eq!(Sets::from_spec(&c).unwrap().bounding, (1 << 5) | 1);
    }
}

//! The architectures runh filters, their audit tokens and syscall tables.
use super::tables;

/// The x32 ABI runs on the x86_64 audit arch; its syscall numbers carry this bit.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    X86_64,
    X86,
    X32,
    Aarch64,
    Arm,
}

/// Every `SCMP_ARCH_*` name a profile may give: the arches runh filters, and (None) the
/// other libseccomp arches, accepted and left out (`from_spec`). `runh features` lists
/// them all, as what a profile may name.
pub const SPEC_NAMES: &[(&str, Option<Arch>)] = &[
    ("SCMP_ARCH_X86_64", Some(Arch::X86_64)),
    ("SCMP_ARCH_X86", Some(Arch::X86)),
    ("SCMP_ARCH_X32", Some(Arch::X32)),
    ("SCMP_ARCH_AARCH64", Some(Arch::Aarch64)),
    ("SCMP_ARCH_ARM", Some(Arch::Arm)),
    ("SCMP_ARCH_MIPS", None),
    ("SCMP_ARCH_MIPS64", None),
    ("SCMP_ARCH_MIPS64N32", None),
    ("SCMP_ARCH_MIPSEL", None),
    ("SCMP_ARCH_MIPSEL64", None),
    ("SCMP_ARCH_MIPSEL64N32", None),
    ("SCMP_ARCH_PPC", None),
    ("SCMP_ARCH_PPC64", None),
    ("SCMP_ARCH_PPC64LE", None),
    ("SCMP_ARCH_S390", None),
    ("SCMP_ARCH_S390X", None),
    ("SCMP_ARCH_PARISC", None),
    ("SCMP_ARCH_PARISC64", None),
    ("SCMP_ARCH_RISCV64", None),
    ("SCMP_ARCH_LOONGARCH64", None),
    ("SCMP_ARCH_M68K", None),
    ("SCMP_ARCH_SH", None),
    ("SCMP_ARCH_SHEB", None),
];

/// One arch's syscall table (tables.rs, generated): every name concatenated in sorted
/// order, and one (offset, length, number) row per name. The obvious `&[(&str, u32)]` holds
/// a pointer per row, and each pointer is a relocation that the loader applies at every
/// `import runh._core`: the five tables were 1,875 of the extension's 3,548 relative
/// relocations, 45 KB of .rela.dyn to read and 44 KB (10 pages) of .data.rel.ro copied on
/// write in every runh process, for names that only seccomp compilation reads. This form
/// is plain read-only data, paged in only when read. Measured here: the dlopen's page
/// faults 35 -> 23, the peak RSS of `python3.11 -I -S -c "import runh._core"` -160 KB;
/// the lookup (a binary search on bytes) as fast (seccomp_compile of Docker's profile).
pub struct Table {
    pub names: &'static str,
    pub entries: &'static [(u16, u8, u32)],
}

impl Table {
    fn name(&self, (off, len, _): (u16, u8, u32)) -> &'static [u8] {
        &self.names.as_bytes()[off as usize..off as usize + len as usize]
    }

    /// The number of syscall `name`: a binary search, the rows being sorted by name.
    pub fn syscall(&self, name: &str) -> Option<u32> {
        let i = self.entries.binary_search_by(|e| self.name(*e).cmp(name.as_bytes())).ok()?;
        Some(self.entries[i].2)
    }

    /// Every (name, number), in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u32)> + '_ {
        // The rows cut `names` at the boundaries of ASCII names, so each slice is UTF-8.
        self.entries.iter().map(|e| (std::str::from_utf8(self.name(*e)).unwrap_or(""), e.2))
    }
}

impl Arch {
    pub const ALL: [Arch; 5] = [Arch::X86_64, Arch::X86, Arch::X32, Arch::Aarch64, Arch::Arm];

    /// AUDIT_ARCH_* as seen in `seccomp_data.arch` (linux/audit.h).
    pub fn audit(self) -> u32 {
        match self {
            Arch::X86_64 | Arch::X32 => 0xC000_003E,
            Arch::X86 => 0x4000_0003,
            Arch::Aarch64 => 0xC000_00B7,
            Arch::Arm => 0x4000_0028,
        }
    }

    /// Whether syscall arguments are 64 bits wide. As in libseccomp, x32 counts as 32-bit:
    /// only the low word of each argument is compared.
    pub fn is_64(self) -> bool {
        matches!(self, Arch::X86_64 | Arch::Aarch64)
    }

    fn table(self) -> &'static Table {
        match self {
            Arch::X86_64 => &tables::X86_64,
            Arch::X86 => &tables::X86,
            Arch::X32 => &tables::X32,
            Arch::Aarch64 => &tables::AARCH64,
            Arch::Arm => &tables::ARM,
        }
    }

    /// The syscall number of `name` on this arch, or None when the arch has no such call.
    pub fn syscall(self, name: &str) -> Option<u32> {
        self.table().syscall(name)
    }

    /// `SCMP_ARCH_*` as the runtime-spec spells it. Ok(None): a libseccomp arch runh does
    /// not filter; a process on a host of runh's arches cannot make its syscalls, so
    /// leaving it out changes nothing the kernel can observe.
    pub fn from_spec(name: &str) -> Result<Option<Arch>, ()> {
        match SPEC_NAMES.iter().find(|(n, _)| *n == name) {
            Some((_, a)) => Ok(*a),
            None => Err(()),
        }
    }

    pub fn from_name(name: &str) -> Option<Arch> {
        Some(match name {
            "x86_64" | "amd64" => Arch::X86_64,
            "x86" | "i386" | "i686" => Arch::X86,
            "x32" => Arch::X32,
            "aarch64" | "arm64" => Arch::Aarch64,
            "arm" => Arch::Arm,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::X86 => "x86",
            Arch::X32 => "x32",
            Arch::Aarch64 => "aarch64",
            Arch::Arm => "arm",
        }
    }

    /// The arch runh itself is built for: libseccomp always filters it (seccomp_init adds
    /// it), whatever `architectures` lists, and so does runh.
    pub fn native() -> Arch {
        #[cfg(target_arch = "x86_64")]
        return Arch::X86_64;
        #[cfg(target_arch = "aarch64")]
        return Arch::Aarch64;
        #[cfg(target_arch = "x86")]
        return Arch::X86;
        #[cfg(target_arch = "arm")]
        return Arch::Arm;
    }
}

/// i386 multiplexes the socket and SysV IPC calls through socketcall(2) and ipc(2), whose
/// first argument names the call (linux/net.h SYS_*, linux/ipc.h). A rule on one of these
/// names also covers the multiplexed form, with arg 0 replaced by the call number, as
/// libseccomp does; the direct syscall (where i386 has one) keeps the rule as written.
pub fn x86_multiplexed(name: &str) -> Option<(&'static str, u64)> {
    const SOCKET: [&str; 20] = [
        "socket", "bind", "connect", "listen", "accept", "getsockname", "getpeername",
        "socketpair", "send", "recv", "sendto", "recvfrom", "shutdown", "setsockopt",
        "getsockopt", "sendmsg", "recvmsg", "accept4", "recvmmsg", "sendmmsg",
    ];
    const IPC: [(&str, u64); 12] = [
        ("semop", 1), ("semget", 2), ("semctl", 3), ("semtimedop", 4), ("msgsnd", 11),
        ("msgrcv", 12), ("msgget", 13), ("msgctl", 14), ("shmat", 21), ("shmdt", 22),
        ("shmget", 23), ("shmctl", 24),
    ];
    if let Some(i) = SOCKET.iter().position(|n| *n == name) {
        return Some(("socketcall", i as u64 + 1));
    }
    IPC.iter().find(|(n, _)| *n == name).map(|(_, k)| ("ipc", *k))
}

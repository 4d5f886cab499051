"""libseccomp (Debian's libseccomp2) driven through ctypes: the test-only oracle.

Builds a filter the way runc does from an OCI `linux.seccomp` object (seccomp_init with
the default action, seccomp_arch_add per listed arch, one seccomp_rule_add_array per name
that libseccomp can resolve, rules equal to the default action left out) and exports the
BPF with seccomp_export_bpf.
"""
import ctypes
import ctypes.util
import errno
import os

_lib = None

SCMP_ARCH = {
    "SCMP_ARCH_X86_64": 0xC000003E, "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X32": 0x4000003E,
    "SCMP_ARCH_AARCH64": 0xC00000B7, "SCMP_ARCH_ARM": 0x40000028,
}
# runh's arch names -> libseccomp tokens
ARCH_TOKEN = {"x86_64": 0xC000003E, "x86": 0x40000003, "x32": 0x4000003E,
              "aarch64": 0xC00000B7, "arm": 0x40000028}
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
       "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
NR_SCMP_ERROR = -1


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def lib():
    global _lib
    if _lib is None:
        l = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        l.seccomp_init.restype = ctypes.c_void_p
        l.seccomp_init.argtypes = [ctypes.c_uint32]
        l.seccomp_release.argtypes = [ctypes.c_void_p]
        l.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        l.seccomp_arch_remove.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        l.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                             ctypes.c_uint, ctypes.POINTER(ArgCmp)]
        l.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        l.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        l.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
        _lib = l
    return _lib


def action(name, errno_ret):
    data = 1 if errno_ret is None else errno_ret  # EPERM, as runc
    return {
        "SCMP_ACT_KILL": 0, "SCMP_ACT_KILL_THREAD": 0, "SCMP_ACT_KILL_PROCESS": 0x80000000,
        "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000 | data,
        "SCMP_ACT_TRACE": 0x7FF00000 | data, "SCMP_ACT_ALLOW": 0x7FFF0000,
        "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_NOTIFY": 0x7FC00000,
    }[name]


def resolve(arch, name):
    """libseccomp's number for name on a runh arch name (negative: not a real syscall)."""
    return lib().seccomp_syscall_resolve_name_arch(ARCH_TOKEN[arch], name.encode())


class Rejected(Exception):
    """libseccomp refused the profile (runc would fail the container)."""


class TooSlow(Exception):
    """libseccomp did not finish building the filter in time."""


def check_within(prof, seconds):
    """Raise Rejected if libseccomp refuses prof, TooSlow if it takes over `seconds`.

    Why a child process: libseccomp 2.5.4's rule tree merge can take minutes on some
    random profiles (seen: one call of seccomp_rule_add_array still running after 90 s,
    and a whole suite run of 14 minutes), and a C call cannot be interrupted in-process.
    One fork per profile costs about 1 ms here."""
    import select

    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            compile(prof)
        except Rejected:
            code = 3
        except BaseException:
            code = 4
        os._exit(code)
    fd = os.pidfd_open(pid)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        if not p.poll(int(seconds * 1000)):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise TooSlow(f"libseccomp took over {seconds} s")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 3:
        raise Rejected("libseccomp refused the profile")
    if code != 0:
        raise RuntimeError(f"oracle child failed: {code}")


def compile(prof, only=None):
    """The libseccomp program for prof; with `only` (SCMP_ARCH_* names), a filter for just
    those arches (the native one removed unless listed). libseccomp 2.5.4 shares code
    between arch blocks and can drop the reload of the syscall number when it does (seen:
    x86_64 + x86, the x86 block compared the arch word against syscall numbers), so the
    tests compare per arch block to test semantics rather than that code-sharing bug."""
    l = lib()
    default = action(prof["defaultAction"], prof.get("defaultErrnoRet"))
    ctx = l.seccomp_init(default)
    if not ctx:
        raise Rejected("seccomp_init")
    try:
        arches = prof.get("architectures") or [] if only is None else only
        for a in arches:
            rc = l.seccomp_arch_add(ctx, SCMP_ARCH[a])
            if rc < 0 and rc != -errno.EEXIST:
                raise Rejected(f"arch_add {a}: {rc}")
        if only is not None and "SCMP_ARCH_X86_64" not in only:
            l.seccomp_arch_remove(ctx, SCMP_ARCH["SCMP_ARCH_X86_64"])
        for i, s in enumerate(prof.get("syscalls") or []):
            act = action(s["action"], s.get("errnoRet"))
            if act == default:
                continue
            args = s.get("args") or []
            arr = (ArgCmp * max(1, len(args)))()
            for j, c in enumerate(args):
                arr[j] = ArgCmp(c["index"], OPS[c["op"]], c["value"], c.get("valueTwo", 0))
            for name in s["names"]:
                nr = l.seccomp_syscall_resolve_name(name.encode())
                if nr == NR_SCMP_ERROR:
                    continue
                rc = l.seccomp_rule_add_array(ctx, act, nr, len(args), arr)
                if rc < 0:
                    raise Rejected(f"syscalls[{i}] {name}: {os.strerror(-rc)}")
        fd = os.memfd_create("bpf")
        try:
            rc = l.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise Rejected(f"export: {rc}")
            os.lseek(fd, 0, 0)
            out = b""
            while chunk := os.read(fd, 1 << 16):
                out += chunk
            return out
        finally:
            os.close(fd)
    finally:
        l.seccomp_release(ctx)

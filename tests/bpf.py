"""A classic-BPF interpreter for seccomp programs, for the tests.

Runs a `struct sock_filter[]` (bytes, native endian) on a `struct seccomp_data` and returns
the 32-bit SECCOMP_RET_* value, the way the kernel's seccomp_run_filters would. Covers
the whole classic instruction set that seccomp accepts (loads of the data, scratch memory,
ALU, jumps, returns), so that both runh's and libseccomp's programs run here unchanged.
"""
import struct

MASK = 0xFFFFFFFF
SECCOMP_DATA_SIZE = 64


def seccomp_data(nr, arch, args=(0,) * 6, ip=0):
    """struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]."""
    args = tuple(args) + (0,) * (6 - len(args))
    return struct.pack("=iIQ6Q", _s32(nr), arch, ip, *args)


def _s32(v):
    v &= MASK
    return v - (1 << 32) if v & 0x80000000 else v


def decode(program):
    assert len(program) % 8 == 0 and program, "not a sock_filter array"
    return [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]


class BPFError(Exception):
    pass


class ArchWordCompared(BPFError):
    """A jump compared the arch word (seccomp_data.arch still in A) against a value that is
    no AUDIT_ARCH_*: the program forgot to load the syscall number (a generator bug)."""


AUDIT_ARCHES = {0xC000003E, 0x40000003, 0xC00000B7, 0x40000028, 0x4000003E}


def run(program, data, strict=False):
    """Run a decoded or raw program on seccomp_data bytes; return the RET value. With
    strict, raise ArchWordCompared when the program tests the arch word as if it were
    something else."""
    insns = decode(program) if isinstance(program, (bytes, bytearray)) else program
    a = x = 0
    a_from = None  # seccomp_data offset A was last loaded from, for `strict`
    mem = [0] * 16
    pc = 0
    n = len(insns)
    steps = 0
    while True:
        if pc >= n:
            raise BPFError("fell off the end of the program")
        steps += 1
        if steps > 1_000_000:
            raise BPFError("runaway program")
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if cls == 0x00 or cls == 0x01:  # LD / LDX
            mode = code & 0xE0
            if mode == 0x20:  # ABS
                if (code & 0x18) != 0x00 or k % 4 or k + 4 > SECCOMP_DATA_SIZE:
                    raise BPFError(f"bad load at {pc - 1}")
                v = struct.unpack_from("=I", data, k)[0]
            elif mode == 0x00:  # IMM
                v = k
            elif mode == 0x60:  # MEM
                v = mem[k]
            elif mode == 0x80:  # LEN
                v = SECCOMP_DATA_SIZE
            else:
                raise BPFError(f"unsupported load mode {code:#x}")
            if cls == 0x00:
                a = v
                a_from = k if mode == 0x20 else None
            else:
                x = v
        elif cls == 0x02:  # ST
            mem[k] = a
        elif cls == 0x03:  # STX
            mem[k] = x
        elif cls == 0x04:  # ALU
            a_from = None
            op = code & 0xF0
            src = x if code & 0x08 else k
            if op == 0x00:
                a = (a + src) & MASK
            elif op == 0x10:
                a = (a - src) & MASK
            elif op == 0x20:
                a = (a * src) & MASK
            elif op == 0x30:
                if src == 0:
                    return 0
                a = a // src
            elif op == 0x40:
                a |= src
            elif op == 0x50:
                a &= src
            elif op == 0x60:
                a = (a << src) & MASK if src < 32 else 0
            elif op == 0x70:
                a = a >> src if src < 32 else 0
            elif op == 0x80:
                a = (-a) & MASK
            elif op == 0x90:
                if src == 0:
                    return 0
                a = a % src
            elif op == 0xA0:
                a ^= src
            else:
                raise BPFError(f"unsupported alu {code:#x}")
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            src = x if code & 0x08 else k
            if strict and a_from == 4 and not code & 0x08 and k not in AUDIT_ARCHES:
                raise ArchWordCompared(f"insn {pc - 1}: arch word compared with {k:#x}")
            if op == 0x10:
                cond = a == src
            elif op == 0x20:
                cond = a > src
            elif op == 0x30:
                cond = a >= src
            elif op == 0x40:
                cond = (a & src) != 0
            else:
                raise BPFError(f"unsupported jump {code:#x}")
            pc += jt if cond else jf
        elif cls == 0x06:  # RET
            src = code & 0x18
            return a if src == 0x10 else k
        elif cls == 0x07:  # MISC
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x
                a_from = None
        else:
            raise BPFError(f"bad class {code:#x}")

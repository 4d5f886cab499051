"""runh's seccomp BPF against libseccomp's, action for action.

Both programs run in tests/bpf.py on `struct seccomp_data` inputs; any disagreement
fails. libseccomp (Debian's libseccomp2, via ctypes) is the oracle because runc and crun
build their filters with it.

Where runh deliberately differs, the tests say so:
- names libseccomp 2.5.4 does not know (syscalls newer than its table) are left out of
  the profiles given to both, since libseccomp skips them and runh filters them;
- rules with argument comparisons on one syscall and *different* actions whose conditions
  overlap: libseccomp's outcome follows its internal tree order, runh's the profile order
  (documented in rust/src/seccomp/bpf.rs), so random profiles give all argument rules one
  action, and `test_disjoint_conditional_actions` covers different actions on disjoint
  conditions.
"""
import json
import os
import random
import re
import struct

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings, strategies as st  # noqa: E402

from bpf import ArchWordCompared, run, seccomp_data, decode  # noqa: E402

try:
    import seccomp_oracle as oracle
    oracle.lib()
except OSError:  # pragma: no cover
    pytest.skip("libseccomp2 is not installed", allow_module_level=True)

from runh import _core  # noqa: E402

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)
AUDIT = {"x86_64": 0xC000003E, "x86": 0x40000003, "x32": 0xC000003E,
         "aarch64": 0xC00000B7, "arm": 0x40000028}
SPEC_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "x86": "SCMP_ARCH_X86", "x32": "SCMP_ARCH_X32",
             "aarch64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM"}
X32_BIT = 0x40000000


def _tables():
    text = open(os.path.join(ROOT, "rust/src/seccomp/tables.rs")).read()
    out = {}
    for m in re.finditer(r"pub static (\w+): [^=]+= &\[(.*?)\];", text, re.S):
        arch = {"X86_64": "x86_64", "X86": "x86", "X32": "x32", "AARCH64": "aarch64", "ARM": "arm"}[m.group(1)]
        out[arch] = {n: int(v, 0) for n, v in re.findall(r'\("(\w+)", (0x[0-9a-f]+|\d+)\)', m.group(2))}
    return out


TABLES = _tables()


def lib_knows(name):
    return oracle.lib().seccomp_syscall_resolve_name(name.encode()) != oracle.NR_SCMP_ERROR


def test_tables_agree_with_libseccomp():
    """Every name libseccomp resolves on an arch has the same number in runh's table."""
    bad = []
    for arch, table in TABLES.items():
        for name, nr in table.items():
            lib = oracle.resolve(arch, name)
            if lib >= 0 and lib != nr:
                bad.append((arch, name, nr, lib))
    assert not bad, bad[:20]


def inputs_for(prof, rng, n_random=6):
    """(arch audit, nr, args) triples that exercise the profile: its syscalls on every arch,
    with argument values around its datums, plus x32/bad-arch/-1 edge cases."""
    datums = {0, 1, 0xFFFFFFFF, 0x100000000, 0xFFFFFFFFFFFFFFFF, 0x80000000}
    for s in prof.get("syscalls") or []:
        for c in s.get("args") or []:
            for v in (c["value"], c.get("valueTwo", 0)):
                for d in (v, v + 1, v - 1, v ^ 0xFFFFFFFF, v & 0xFFFFFFFF, v >> 32, (v & 0xFFFFFFFF) << 32):
                    datums.add(d & 0xFFFFFFFFFFFFFFFF)
    datums = sorted(datums)
    names = {n for s in prof.get("syscalls") or [] for n in s["names"]} | {"socketcall", "ipc", "read"}
    out = []
    for arch, table in TABLES.items():
        nrs = {table[n] for n in names if n in table}
        nrs |= {rng.randrange(0, 500) for _ in range(n_random)}
        if arch in ("x86_64", "x32"):
            nrs |= {X32_BIT | 1, X32_BIT + 600, 0xFFFFFFFF, 0x3FFFFFFF}
        for nr in sorted(nrs):
            for _ in range(3):
                args = [rng.choice(datums) if rng.random() < 0.8 else rng.getrandbits(64) for _ in range(6)]
                out.append((AUDIT[arch], nr, args))
    out.append((0x12345678, 0, [0] * 6))  # an arch nobody filters
    return out


def oracle_block(prof, audit):
    """The SCMP_ARCH_* names of the arch block that handles `audit` in a filter for prof."""
    listed = {"SCMP_ARCH_X86_64"} | set(prof.get("architectures") or [])
    if audit == AUDIT["x86_64"]:
        block = [a for a in ("SCMP_ARCH_X86_64", "SCMP_ARCH_X32") if a in listed]
    else:
        block = [a for k, a in SPEC_ARCH.items() if AUDIT[k] == audit and a in listed]
    return tuple(block) or None


ORACLE_BUGS = {"inputs": 0, "merge_bug_inputs": 0, "merge_bug_profiles": set(), "merge_bug_arches": set()}


def _names_at(audit, nr):
    """The syscall names that `nr` is on the arch(es) with this audit value."""
    arches = [a for a, v in AUDIT.items() if v == audit]
    if audit == AUDIT["x86_64"]:
        arches = ["x32"] if nr & X32_BIT else ["x86_64"]
    return {n for a in arches for n, v in TABLES[a].items() if v == nr}


def libseccomp_merge_bug(prof, block, d, mine):
    """True if libseccomp's combined filter disagrees with libseccomp itself rule by rule:
    each rule of the syscall is compiled alone by libseccomp and run on the input; when at
    most one non-default verdict comes out, the combined filter must give it (or the
    default if none does). If runh gives exactly that and the combined libseccomp filter
    does not, the combined filter is wrong. Seen with libseccomp 2.5.4 (first on x86, then
    on every arch) when two argument rules on one syscall share an action: the merged
    tree drops a rule (default instead of the action) or joins the two rules' conditions
    (the action where neither rule matches). Several non-default verdicts are a
    precedence question, never classified here."""
    default = oracle.action(prof["defaultAction"], prof.get("defaultErrnoRet"))
    names = _names_at(d_arch(d), d_nr(d))
    verdicts = set()
    for rule in prof.get("syscalls") or []:
        if not names & set(rule["names"]):
            continue
        alone = dict(prof, syscalls=[rule])
        try:
            prog = decode(oracle.compile(alone, None if block is None else list(block)))
            verdicts.add(run(prog, d, strict=True))
        except (oracle.Rejected, ArchWordCompared):
            return False
    others = verdicts - {default}
    if len(others) > 1:
        return False
    return mine == (others.pop() if others else default)


def d_arch(d):
    return struct.unpack_from("=iI", d)[1]


def d_nr(d):
    return struct.unpack_from("=iI", d)[0] & 0xFFFFFFFF


def compare(prof, inputs):
    raw = json.dumps(prof).encode()
    mine = decode(_core.seccomp_compile(raw, "x86_64"))
    full = decode(oracle.compile(prof))
    per_block = {}
    for arch, nr, args in inputs:
        d = seccomp_data(nr, arch, args)
        block = oracle_block(prof, arch)
        if block not in per_block:
            per_block[block] = full if block is None else decode(oracle.compile(prof, list(block)))
        a = run(mine, d, strict=True)
        try:
            b = run(per_block[block], d, strict=True)
        except ArchWordCompared:
            # libseccomp 2.5.4 bug (see seccomp_oracle.compile): no verdict to compare.
            ORACLE_BUGS["inputs"] += 1
            continue
        if a != b and libseccomp_merge_bug(prof, block, d, a):
            ORACLE_BUGS["merge_bug_inputs"] += 1
            ORACLE_BUGS["merge_bug_profiles"].add(json.dumps(prof, sort_keys=True))
            ORACLE_BUGS["merge_bug_arches"].add(next(k for k, v in AUDIT.items() if v == arch))
            continue
        assert a == b, (
            f"arch={arch:#x} nr={nr:#x} args={[hex(x) for x in args]}: runh {a:#x} libseccomp {b:#x}\n"
            f"profile: {json.dumps(prof)}")
    return len(mine), len(full)


def default_profile():
    prof = json.load(open(os.path.join(HERE, "fixtures/seccomp_default_amd64.json")))
    for s in prof["syscalls"]:
        s["names"] = [n for n in s["names"] if lib_knows(n)]
    return prof


def test_default_profile_equivalent():
    prof = default_profile()
    rng = random.Random(1)
    inputs = inputs_for(prof, rng, n_random=40)
    # Every syscall number on every arch, with zero args.
    for arch, table in TABLES.items():
        for nr in set(table.values()):
            inputs.append((AUDIT[arch], nr, [0] * 6))
    mine, theirs = compare(prof, inputs)
    print(f"default profile: runh {mine} insns, libseccomp {theirs} insns, {len(inputs)} inputs")


def test_default_profile_full_names_compiles():
    """With names libseccomp 2.5.4 lacks (futex_waitv, memfd_secret...), runh filters them too."""
    prof = json.load(open(os.path.join(HERE, "fixtures/seccomp_default_amd64.json")))
    prog = decode(_core.seccomp_compile(json.dumps(prof).encode(), "x86_64"))
    allow = 0x7FFF0000
    nr = TABLES["x86_64"]["futex_waitv"]
    assert run(prog, seccomp_data(nr, AUDIT["x86_64"])) == allow
    assert run(prog, seccomp_data(TABLES["x86_64"]["clone3"], AUDIT["x86_64"])) == 0x00050000 | 38
    assert run(prog, seccomp_data(TABLES["x86_64"]["mount"], AUDIT["x86_64"])) == 0x00050000 | 1


# ---- random profiles -------------------------------------------------------------------

NAMES = ["read", "write", "openat", "close", "mmap", "mmap2", "personality", "clone", "clone3",
         "socket", "connect", "accept", "accept4", "send", "recv", "sendto", "socketcall",
         "shmget", "semop", "msgsnd", "ipc", "breakpoint", "set_tls", "arch_prctl",
         "rt_sigaction", "ioctl", "getpid", "prctl", "kill", "futex", "no_such_call", "open",
         "_llseek", "fstat64", "execve"]
ACTIONS = ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
           "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG"]
OPS = list(oracle.OPS)
VALUES = [0, 1, 2, 40, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 0x100000001,
          0xFFFFFFFF00000000, 0xFFFFFFFFFFFFFFFF, 0x8000000000000000]
value = st.one_of(st.sampled_from(VALUES), st.integers(0, 2**64 - 1), st.integers(0, 300))
errno_ret = st.one_of(st.none(), st.integers(0, 200))


@st.composite
def comparisons(draw):
    idx = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True))
    out = []
    for i in idx:
        c = {"index": i, "value": draw(value), "op": draw(st.sampled_from(OPS))}
        if c["op"] == "SCMP_CMP_MASKED_EQ" or draw(st.booleans()):
            c["valueTwo"] = draw(value)
        out.append(c)
    return out


@st.composite
def profiles(draw):
    prof = {"defaultAction": draw(st.sampled_from(ACTIONS))}
    if draw(st.booleans()):
        prof["defaultErrnoRet"] = draw(st.integers(0, 200))
    prof["architectures"] = draw(st.lists(st.sampled_from(list(SPEC_ARCH.values())), max_size=5, unique=True))
    cond_action = draw(st.sampled_from(ACTIONS))
    cond_errno = draw(errno_ret)
    rules = []
    for _ in range(draw(st.integers(1, 8))):
        r = {"names": draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))}
        if draw(st.integers(0, 2)):
            r["args"] = draw(comparisons())
            r["action"] = cond_action
            if cond_errno is not None:
                r["errnoRet"] = cond_errno
        else:
            r["action"] = draw(st.sampled_from(ACTIONS))
            e = draw(errno_ret)
            if e is not None:
                r["errnoRet"] = e
        rules.append(r)
    prof["syscalls"] = rules
    return prof


STATS = {"profiles": 0, "rejected": 0, "oracle_too_slow": 0, "inputs": 0}


@settings(max_examples=int(os.environ.get("RUNH_SECCOMP_EXAMPLES", "1000")), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(prof=profiles(), seed=st.integers(0, 2**32))
def test_random_profiles_equivalent(prof, seed):
    try:
        oracle.check_within(prof, 5)
    except oracle.Rejected:
        STATS["rejected"] += 1
        assume(False)
    except oracle.TooSlow:
        STATS["oracle_too_slow"] += 1
        assume(False)
    inputs = inputs_for(prof, random.Random(seed))
    compare(prof, inputs)
    STATS["profiles"] += 1
    STATS["inputs"] += len(inputs)


def test_random_profiles_stats():
    bad = len(ORACLE_BUGS["merge_bug_profiles"])
    print(STATS, "inputs skipped for libseccomp's missing nr load:", ORACLE_BUGS["inputs"],
          f"libseccomp merge bug: {ORACLE_BUGS['merge_bug_inputs']} inputs in {bad} profiles",
          f"on {sorted(ORACLE_BUGS['merge_bug_arches'])}")
    # A libseccomp bug must stay a rare, recognisable case, not a cover for runh's errors.
    # Seen over 20 runs of 1000 profiles (hypothesis draws differ per run): 0..18 profiles,
    # 0..30 of ~200000 inputs. The generator makes such profiles often on purpose (every
    # argument rule of a profile shares one action), hence the bound on profiles.
    assert bad <= max(5, STATS["profiles"] * 5 // 100), ORACLE_BUGS["merge_bug_profiles"]
    assert ORACLE_BUGS["merge_bug_inputs"] <= max(10, STATS["inputs"] // 1000), ORACLE_BUGS["merge_bug_inputs"]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_disjoint_conditional_actions(data):
    """Different actions on one syscall, on disjoint argument values: no precedence question."""
    names = data.draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=2, unique=True))
    vals = data.draw(st.lists(st.sampled_from(VALUES), min_size=2, max_size=4, unique=True))
    idx = data.draw(st.integers(0, 5))
    rules = [{"names": names, "action": data.draw(st.sampled_from(ACTIONS)), "errnoRet": i + 1,
              "args": [{"index": idx, "value": v, "op": "SCMP_CMP_EQ"}]} for i, v in enumerate(vals)]
    # On 32-bit arches only the low words are compared: keep those distinct too.
    assume(len({v & 0xFFFFFFFF for v in vals}) == len(vals))
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": list(SPEC_ARCH.values()), "syscalls": rules}
    try:
        oracle.compile(prof)
    except oracle.Rejected:
        assume(False)
    compare(prof, inputs_for(prof, random.Random(0)))

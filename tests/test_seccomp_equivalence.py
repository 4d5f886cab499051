"""runh's seccomp BPF against libseccomp's, action for action.

Both programs run in tests/bpf.py on `struct seccomp_data` inputs; any disagreement
fails. libseccomp (Debian's libseccomp2, via ctypes) is the oracle because runc and crun
build their filters with it.

Where runh deliberately differs, the tests say so:
- names libseccomp 2.5.4 does not know (syscalls newer than its table) are left out of
  the profiles given to both, since libseccomp skips them and runh filters them;
- `test_random_profiles_equivalent` gives all argument rules of a profile one action (it
  classifies libseccomp's merge bug, which needs that); different actions on overlapping
  conditions are `test_overlapping_actions_equivalent`'s (runh orders argument rules as
  libseccomp's tree does: rust/src/seccomp/bpf.rs, `precedence`), and
  `test_disjoint_conditional_actions` covers different actions on disjoint conditions.
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
    # Each table: the names concatenated (string literals in concat!), then one
    # (offset, length, number) row per name (rust/src/seccomp/arch.rs `Table`).
    for m in re.finditer(r"pub static (\w+): Table = Table \{\s*names: concat!\((.*?)\),\s*entries: &\[(.*?)\],", text, re.S):
        arch = {"X86_64": "x86_64", "X86": "x86", "X32": "x32", "AARCH64": "aarch64", "ARM": "arm"}[m.group(1)]
        names = "".join(re.findall(r'"(\w*)"', m.group(2)))
        rows = re.findall(r"\((\d+), (\d+), (0x[0-9a-f]+|\d+)\)", m.group(3))
        out[arch] = {names[int(o):int(o) + int(n)]: int(v, 0) for o, n, v in rows}
        assert len(out[arch]) == len(rows) > 250, arch
    assert len(out) == 5, sorted(out)
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


def _oracle_takes(prof, stats):
    """Skip (and count in stats) a profile libseccomp refuses or takes too long over."""
    try:
        oracle.check_within(prof, 5)
    except oracle.Rejected:
        stats["rejected"] += 1
        assume(False)
    except oracle.TooSlow:
        stats["oracle_too_slow"] += 1
        assume(False)


@settings(max_examples=int(os.environ.get("RUNH_SECCOMP_EXAMPLES", "1000")), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(prof=profiles(), seed=st.integers(0, 2**32))
def test_random_profiles_equivalent(prof, seed):
    _oracle_takes(prof, STATS)
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


# ---- different actions on overlapping argument rules (issue 4) -------------------------
#
# libseccomp 2.5.4 does not try a syscall's argument rules in profile order: it keeps them
# in a tree sorted by their comparisons (rust/src/seccomp/bpf.rs, `precedence`), and runh
# now orders them the same way. The one case runh does not model: when two rules' first
# comparisons are equal as libseccomp's tree nodes (same argument word, operator node,
# mask, datum), libseccomp merges them into one node, and a branch of that node can carry
# only one action: the first-added rule's (or, for a 64-bit GT/GE high word, the larger
# datum's). `libseccomp_merged_node` proves that per input; such inputs are counted.

def _first_node(rule, wide):
    """libseccomp's first tree node for rule on an arch of this width, as a comparable
    tuple (argument word, node operator, mask, datum), or None without comparisons."""
    for c in sorted(rule.get("args") or [], key=lambda c: c["index"]):
        op = c["op"]
        mask, datum = (c["value"], c.get("valueTwo", 0)) if op == "SCMP_CMP_MASKED_EQ" else (2**64 - 1, c["value"])
        if not wide:
            mask &= 0xFFFFFFFF
        if op == "SCMP_CMP_MASKED_EQ" and mask == 0:
            continue  # a tautology: libseccomp drops it
        datum &= mask
        if wide:
            node_op = {"SCMP_CMP_NE": "EQ", "SCMP_CMP_EQ": "EQ", "SCMP_CMP_MASKED_EQ": "MASKED"}.get(op, "GT")
            return (c["index"], "hi", node_op, mask >> 32, datum >> 32)
        node_op = {"SCMP_CMP_NE": "EQ", "SCMP_CMP_EQ": "EQ", "SCMP_CMP_MASKED_EQ": "MASKED",
                   "SCMP_CMP_LT": "GE", "SCMP_CMP_GE": "GE", "SCMP_CMP_LE": "GT", "SCMP_CMP_GT": "GT"}[op]
        return (c["index"], "lo", node_op, mask, datum)
    return None


def libseccomp_merged_node(prof, block, d, mine, theirs):
    """True if runh and libseccomp each gave the verdict of a rule that matches the input
    (each rule compiled alone by libseccomp), and those two rules start with one merged
    node in libseccomp's tree (`_first_node` equal): a precedence decided by the merge."""
    default = oracle.action(prof["defaultAction"], prof.get("defaultErrnoRet"))
    names = _names_at(d_arch(d), d_nr(d))
    wide = d_arch(d) in (AUDIT["x86_64"], AUDIT["aarch64"]) and not d_nr(d) & X32_BIT
    by_verdict = {}
    for rule in prof.get("syscalls") or []:
        if not names & set(rule["names"]):
            continue
        alone = dict(prof, syscalls=[rule])
        try:
            prog = decode(oracle.compile(alone, None if block is None else list(block)))
            v = run(prog, d, strict=True)
        except (oracle.Rejected, ArchWordCompared):
            return False
        if v != default:
            by_verdict.setdefault(v, []).append(_first_node(rule, wide))
    if mine not in by_verdict or theirs not in by_verdict:
        return False
    return any(n is not None and n in by_verdict[theirs] for n in by_verdict[mine])


def _word_sources(prog):
    """For each instruction, the seccomp_data offsets whose word A may hold there (through
    ALU ops: libseccomp masks with `and`), over every path. Classic BPF jumps only forward,
    so one pass in order is a fixpoint."""
    n = len(prog)
    src = [set() for _ in range(n + 1)]
    src[0].add(None)
    for pc, (code, jt, jf, k) in enumerate(prog):
        cls = code & 0x07
        here = src[pc]
        if cls == 0x00 and code & 0xE0 == 0x20:
            out = {k}
        elif cls == 0x06:
            continue
        else:
            out = here
        if cls == 0x05:
            if code & 0xF0 == 0x00:
                src[pc + 1 + k] |= out
            else:
                src[pc + 1 + jt] |= out
                src[pc + 1 + jf] |= out
        else:
            src[pc + 1] |= out
    return src


def _path(prog, d):
    """The instructions d runs through in a seccomp generator's program (absolute loads,
    `and`, conditional jumps on K, ja, ret K: all that runh and libseccomp emit)."""
    a, pc, out = 0, 0, []
    while True:
        code, jt, jf, k = prog[pc]
        out.append(pc)
        if code == 0x20:
            a = struct.unpack_from("=I", d, k)[0]
            pc += 1
        elif code == 0x54:
            a &= k
            pc += 1
        elif code == 0x05:
            pc += 1 + k
        elif code in (0x15, 0x25, 0x35, 0x45):
            cond = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: a & k != 0}[code]
            pc += 1 + (jt if cond else jf)
        elif code == 0x06:
            return out
        else:
            raise ValueError(f"unexpected instruction {code:#x}")


def libseccomp_stale_accumulator(prog, d):
    """True if d's path through prog passes a conditional jump that other paths reach with
    another word in A: the generator shared a block without reloading the word it tests.
    Seen with libseccomp 2.5.4 when a rule's later argument fails and it backtracks to the
    next rule of the previous level: that rule's comparison then runs on the later
    argument's word (e.g. `arg1 != 0` tested against arg2)."""
    src = _word_sources(prog)
    return any(prog[pc][0] & 0x07 == 0x05 and prog[pc][0] & 0xF0 and len(src[pc]) > 1
               for pc in _path(prog, d))


@st.composite
def overlapping_profiles(draw):
    """One or two syscalls named by 2-5 rules, each with its own action (distinct errnoRet
    too), mostly with argument comparisons drawn from few values so that they overlap, one
    in six without comparisons."""
    prof = {"defaultAction": draw(st.sampled_from(ACTIONS))}
    if draw(st.booleans()):
        prof["defaultErrnoRet"] = draw(st.integers(0, 200))
    prof["architectures"] = draw(st.lists(st.sampled_from(list(SPEC_ARCH.values())), max_size=5, unique=True))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=2, unique=True))
    rules = []
    for i in range(draw(st.integers(2, 5))):
        r = {"names": names, "action": draw(st.sampled_from(ACTIONS)), "errnoRet": i + 1}
        if draw(st.integers(0, 5)):
            r["args"] = draw(comparisons())
        rules.append(r)
    prof["syscalls"] = rules
    return prof


OVERLAP = {"profiles": 0, "rejected": 0, "oracle_too_slow": 0, "inputs": 0, "merged_node_inputs": 0,
           "merged_node_profiles": 0, "missing_nr_load": 0, "stale_accumulator_inputs": 0}


def compare_overlapping(prof, inputs):
    mine = decode(_core.seccomp_compile(json.dumps(prof).encode(), "x86_64"))
    per_block = {}
    merged = 0
    for arch, nr, args in inputs:
        d = seccomp_data(nr, arch, args)
        block = oracle_block(prof, arch)
        if block not in per_block:
            per_block[block] = decode(oracle.compile(prof, None if block is None else list(block)))
        a = run(mine, d, strict=True)
        try:
            b = run(per_block[block], d, strict=True)
        except ArchWordCompared:
            OVERLAP["missing_nr_load"] += 1
            continue
        if a != b and libseccomp_stale_accumulator(per_block[block], d):
            OVERLAP["stale_accumulator_inputs"] += 1
            continue
        if a != b and (libseccomp_merged_node(prof, block, d, a, b) or libseccomp_merge_bug(prof, block, d, a)):
            merged += 1
            continue
        assert a == b, (
            f"arch={arch:#x} nr={nr:#x} args={[hex(x) for x in args]}: runh {a:#x} libseccomp {b:#x}\n"
            f"profile: {json.dumps(prof)}")
    OVERLAP["inputs"] += len(inputs)
    OVERLAP["merged_node_inputs"] += merged
    OVERLAP["merged_node_profiles"] += bool(merged)


@settings(max_examples=int(os.environ.get("RUNH_SECCOMP_EXAMPLES", "1000")), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(prof=overlapping_profiles(), seed=st.integers(0, 2**32))
def test_overlapping_actions_equivalent(prof, seed):
    # libseccomp refuses some overlaps (EEXIST): runc fails such a container.
    _oracle_takes(prof, OVERLAP)
    compare_overlapping(prof, inputs_for(prof, random.Random(seed)))
    OVERLAP["profiles"] += 1


def test_overlapping_actions_stats():
    print("overlapping actions:", OVERLAP)
    # The merged-node case must stay what it is, a corner of libseccomp's tree, not a
    # cover for a runh precedence error. Seen over 10 runs of 1000 profiles (~150000
    # inputs): merged node 0..13 inputs in 0..6 profiles, stale accumulator 13..205 inputs,
    # 69..121 profiles refused by libseccomp (EEXIST), 0..1 too slow.
    assert OVERLAP["merged_node_profiles"] <= max(5, OVERLAP["profiles"] * 5 // 100), OVERLAP
    assert OVERLAP["merged_node_inputs"] <= max(10, OVERLAP["inputs"] // 200), OVERLAP
    assert OVERLAP["stale_accumulator_inputs"] <= max(10, OVERLAP["inputs"] // 200), OVERLAP


def test_precedence_follows_libseccomp_tree():
    """Not profile order: the rule on argument 1 is tried before the earlier rule on
    argument 0, as libseccomp sorts its tree (later argument first), on every arch."""
    rules = [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
              "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}]},
             {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2,
              "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_NE"}]}]
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": list(SPEC_ARCH.values()), "syscalls": rules}
    mine = decode(_core.seccomp_compile(json.dumps(prof).encode(), "x86_64"))
    for arch in ("x86_64", "x86", "aarch64", "arm"):
        d = seccomp_data(TABLES[arch]["read"], AUDIT[arch], [5, 5, 0, 0, 0, 0])
        assert run(mine, d) == 0x00050000 | 2, arch
    compare(prof, inputs_for(prof, random.Random(0)))

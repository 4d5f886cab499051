//! Classic BPF code generation for a parsed profile.
//!
//! Layout (one block per filtered arch; x86_64 and x32 share one, as they share an audit
//! arch and are told apart by the x32 bit of the syscall number):
//!
//! ```text
//!       ld  [arch]
//!       jeq AUDIT_ARCH_A, +1, 0 ; ja next_arch      (ja: an arch block may exceed 255)
//!       ld  [nr]
//!       (ABI check: x86_64 alone sends nr >= X32 bit, other than -1, to the bad-arch
//!        action; x32 alone sends nr < X32 bit there — libseccomp's behaviour)
//!       jeq n1, ret_X, 0 ; jeq n2, ret_X, 0 ; ... ; ret X    syscalls with an unconditional rule, grouped by action
//!       jeq n, +1, 0 ; ja next ; <rule>* ; ret default      syscalls with argument rules
//!       ret default
//! next_arch: ...
//!       ret KILL_THREAD                                      the bad-arch action
//! ```
//!
//! Precedence when several rules name one syscall, chosen to match libseccomp 2.5's database
//! (db.c), which is what runc and crun users get: the first rule without argument
//! comparisons wins over every other rule for that syscall. Rules with comparisons are
//! tried in libseccomp's tree order, not profile order (see `precedence`), and the first
//! whose comparisons all hold decides. Where libseccomp merges equal comparisons of two
//! rules into one tree node, its verdict on that node's branch is the first-added rule's;
//! runh does not model that merge, nor libseccomp 2.5.4's missing reload of the argument
//! word when its BPF backtracks to the previous level (a comparison then runs on another
//! argument): the equivalence test proves and counts those inputs apart.
use super::arch::{x86_multiplexed, Arch, X32_SYSCALL_BIT};
use super::profile::{ret, Cmp, Op, Profile};
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// BPF_MAXINSNS: the kernel refuses longer classic programs (EINVAL).
pub const MAX_INSNS: usize = 4096;

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const JA: u16 = 0x05;
const AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
fn off_lo(i: u8) -> u32 {
    16 + 8 * i as u32
}
fn off_hi(i: u8) -> u32 {
    off_lo(i) + 4
}

/// A jump target: the next instruction, or a label bound later.
#[derive(Clone, Copy)]
enum T {
    Next,
    L(usize),
}

struct Ins {
    code: u16,
    jt: T,
    jf: T,
    k: u32,
}

#[derive(Default)]
struct Asm {
    code: Vec<Ins>,
    labels: Vec<usize>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(usize::MAX);
        self.labels.len() - 1
    }
    fn bind(&mut self, l: usize) {
        self.labels[l] = self.code.len();
    }
    fn op(&mut self, code: u16, k: u32) {
        self.code.push(Ins { code, jt: T::Next, jf: T::Next, k });
    }
    fn jmp(&mut self, code: u16, k: u32, jt: T, jf: T) {
        self.code.push(Ins { code, jt, jf, k });
    }
    fn ja(&mut self, l: usize) {
        self.code.push(Ins { code: JA, jt: T::L(l), jf: T::Next, k: 0 });
    }
    fn ret(&mut self, action: u32) {
        self.op(RET_K, action);
    }
    fn ld(&mut self, off: u32) {
        self.op(LD_W_ABS, off);
    }

    /// Resolve labels into the `struct sock_filter` array, native endian.
    fn finish(self) -> Result<Vec<u8>> {
        if self.code.len() > MAX_INSNS {
            return Err(Error::config(format!(
                "linux.seccomp: the filter needs {} BPF instructions, more than the kernel's limit of {MAX_INSNS}",
                self.code.len()
            )));
        }
        let mut out = Vec::with_capacity(self.code.len() * 8);
        for (i, ins) in self.code.iter().enumerate() {
            let rel = |t: T| -> usize {
                match t {
                    T::Next => 0,
                    T::L(l) => self.labels[l] - (i + 1),
                }
            };
            let (jt, jf, k) = if ins.code == JA {
                (0, 0, rel(ins.jt) as u32)
            } else {
                let (jt, jf) = (rel(ins.jt), rel(ins.jf));
                // Layout keeps conditional jumps short (rules are at most ~40 instructions,
                // unconditional groups at most GROUP); this guards the invariant.
                assert!(jt <= 255 && jf <= 255, "seccomp: conditional jump out of range");
                (jt as u8, jf as u8, ins.k)
            };
            out.extend_from_slice(&ins.code.to_ne_bytes());
            out.push(jt);
            out.push(jf);
            out.extend_from_slice(&k.to_ne_bytes());
        }
        Ok(out)
    }
}

/// A comparison cut to the arch's argument width; `wide` = 64-bit arguments.
#[derive(Clone, Copy)]
struct WCmp {
    c: Cmp,
    wide: bool,
}

#[derive(Default)]
struct Entry {
    uncond: Option<u32>,
    cond: Vec<(Vec<WCmp>, u32)>,
}

/// Cut each comparison to the arch's width, dropping tautologies (a MASKED_EQ whose mask
/// is zero on the compared width), as libseccomp does: a rule left with no comparison
/// becomes unconditional, with an unconditional rule's precedence.
fn widen(args: &[Cmp], wide: bool) -> Vec<WCmp> {
    args.iter()
        .filter_map(|c| {
            let mut c = *c;
            if !wide {
                c.mask &= 0xffff_ffff;
                c.datum &= c.mask;
            }
            if c.op == Op::MaskedEq && c.mask == 0 {
                return None;
            }
            Some(WCmp { c, wide })
        })
        .collect()
}

fn add(map: &mut BTreeMap<u32, Entry>, nr: u32, action: u32, args: Vec<WCmp>) {
    let e = map.entry(nr).or_default();
    if args.is_empty() {
        e.uncond.get_or_insert(action);
    } else {
        e.cond.push((args, action));
    }
}

/// One node of libseccomp's rule tree: a 32-bit comparison of one argument word.
/// `same` is libseccomp's node equality (such nodes of two rules are merged into one),
/// `order` its sort key within a level (see `precedence`).
#[derive(Clone, Copy)]
struct Node {
    /// argument * 2, + 1 for the high word.
    slot: u8,
    /// The node's own test: 0 EQ (also NE, negated by its branches), 1 MASKED_EQ, 2 GT, 3 GE.
    test: u8,
    /// The rule's operator class: 3 EQ/NE/MASKED_EQ, 2 LT/LE, 1 GT/GE.
    class: u8,
    mask: u32,
    datum: u32,
}

impl Node {
    fn same(&self, o: &Node) -> bool {
        (self.slot, self.test, self.mask, self.datum) == (o.slot, o.test, o.mask, o.datum)
    }
    /// Greater is tried first; LT/LE nodes invert the datum so smaller values come first.
    fn order(&self) -> (u8, u8, u32) {
        (self.slot, self.class, if self.class == 2 { !self.datum } else { self.datum })
    }
}

/// A rule's nodes from its lowest argument up: the high word (64-bit arches) then the low.
fn nodes(args: &[WCmp]) -> Vec<Node> {
    let mut out = Vec::with_capacity(args.len() * 2);
    for w in args {
        let c = w.c;
        let class = match c.op {
            Op::Eq | Op::Ne | Op::MaskedEq => 3,
            Op::Lt | Op::Le => 2,
            Op::Gt | Op::Ge => 1,
        };
        let test = |hi: bool| match c.op {
            Op::Eq | Op::Ne => 0,
            Op::MaskedEq => 1,
            // A 64-bit range comparison starts with "high word greater".
            _ if hi => 2,
            Op::Gt | Op::Le => 2,
            Op::Ge | Op::Lt => 3,
        };
        if w.wide {
            let (mask, datum) = ((c.mask >> 32) as u32, (c.datum >> 32) as u32);
            out.push(Node { slot: 2 * c.index + 1, test: test(true), class, mask, datum });
        }
        out.push(Node { slot: 2 * c.index, test: test(false), class, mask: c.mask as u32, datum: c.datum as u32 });
    }
    out
}

/// One level of the tree: its nodes in order, each with the level below, and the rules
/// that end above it.
#[derive(Default)]
struct Level {
    kids: Vec<(Node, Level)>,
    ends: Vec<usize>,
}

impl Level {
    fn insert(&mut self, path: &[Node], rule: usize) {
        let Some((n, rest)) = path.split_first() else {
            self.ends.push(rule);
            return;
        };
        let mut i = 0;
        while i < self.kids.len() {
            if self.kids[i].0.same(n) {
                return self.kids[i].1.insert(rest, rule);
            }
            if self.kids[i].0.order() < n.order() {
                break;
            }
            i += 1;
        }
        self.kids.insert(i, (*n, Level::default()));
        self.kids[i].1.insert(rest, rule);
    }
    /// Depth first, as libseccomp's BPF walks the tree: a rule ending at a node decides
    /// before the longer rules through it, a failed branch goes on to the next node.
    fn flatten(&self, out: &mut Vec<usize>) {
        out.extend_from_slice(&self.ends);
        for (_, l) in &self.kids {
            l.flatten(out);
        }
    }
}

/// The argument rules of one syscall in the order libseccomp tries them, which is not
/// profile order. libseccomp (db.c) builds a tree per syscall: each comparison becomes a
/// high-word node (64-bit arches) and a low-word node, a rule is a path from its lowest
/// argument up, equal nodes of two rules are merged, and each level is kept sorted
/// *descending* by (argument word, operator class EQ/NE/MASKED_EQ > LT/LE > GT/GE, datum;
/// LT/LE ascending), ties after the nodes already there. Its BPF walks the tree depth
/// first and backtracks to the next node of a level when a branch fails, so the first
/// rule in this order whose comparisons all hold decides: e.g. a rule on argument 2 wins
/// over an earlier rule on argument 0. Built the same way here, then flattened.
fn precedence(cond: &mut Vec<(Vec<WCmp>, u32)>) {
    let mut root = Level::default();
    for (i, (args, _)) in cond.iter().enumerate() {
        root.insert(&nodes(args), i);
    }
    let mut order = Vec::with_capacity(cond.len());
    root.flatten(&mut order);
    let mut old: Vec<Option<(Vec<WCmp>, u32)>> = cond.drain(..).map(Some).collect();
    cond.extend(order.into_iter().map(|i| old[i].take().expect("each rule once")));
}

/// Every syscall number of one arch block with its rules, argument rules in the order
/// libseccomp tries them (`precedence`).
fn rules_for(p: &Profile, arches: &[Arch]) -> BTreeMap<u32, Entry> {
    let mut map = BTreeMap::new();
    for rule in &p.rules {
        for name in &rule.names {
            for &arch in arches {
                if arch == Arch::X86 {
                    if let Some((mux, call)) = x86_multiplexed(name) {
                        if let Some(nr) = arch.syscall(mux) {
                            let mut args: Vec<Cmp> = rule.args.iter().filter(|c| c.index != 0).copied().collect();
                            args.insert(0, Cmp { index: 0, op: Op::Eq, mask: u64::MAX, datum: call });
                            add(&mut map, nr, rule.action, widen(&args, false));
                        }
                    }
                }
                // Unknown names are skipped, as runc and crun do: a profile names calls
                // of newer kernels and of other arches.
                if let Some(nr) = arch.syscall(name) {
                    add(&mut map, nr, rule.action, widen(&rule.args, arch.is_64()));
                }
            }
        }
    }
    for e in map.values_mut() {
        precedence(&mut e.cond);
    }
    map
}

/// Emit one comparison: fall through when it holds, jump to `fail` when not.
fn cmp(a: &mut Asm, w: WCmp, fail: usize) {
    let c = w.c;
    let (mh, ml) = ((c.mask >> 32) as u32, c.mask as u32);
    let (dh, dl) = ((c.datum >> 32) as u32, c.datum as u32);
    let f = T::L(fail);
    match c.op {
        Op::Eq | Op::MaskedEq => {
            if w.wide && mh != 0 {
                a.ld(off_hi(c.index));
                if mh != u32::MAX {
                    a.op(AND_K, mh);
                }
                a.jmp(JEQ_K, dh, T::Next, f);
            }
            if ml != 0 {
                a.ld(off_lo(c.index));
                if ml != u32::MAX {
                    a.op(AND_K, ml);
                }
                a.jmp(JEQ_K, dl, T::Next, f);
            }
        }
        Op::Ne => {
            let pass = a.label();
            if w.wide {
                a.ld(off_hi(c.index));
                a.jmp(JEQ_K, dh, T::Next, T::L(pass));
            }
            a.ld(off_lo(c.index));
            a.jmp(JEQ_K, dl, f, T::Next);
            a.bind(pass);
        }
        Op::Gt | Op::Ge | Op::Lt | Op::Le => {
            let pass = a.label();
            let lo_op = if matches!(c.op, Op::Gt | Op::Le) { JGT_K } else { JGE_K };
            let greater = matches!(c.op, Op::Gt | Op::Ge);
            if w.wide {
                a.ld(off_hi(c.index));
                if greater {
                    a.jmp(JGT_K, dh, T::L(pass), T::Next);
                    a.jmp(JEQ_K, dh, T::Next, f);
                } else {
                    a.jmp(JGT_K, dh, f, T::Next);
                    a.jmp(JEQ_K, dh, T::Next, T::L(pass));
                }
            }
            a.ld(off_lo(c.index));
            if greater {
                a.jmp(lo_op, dl, T::Next, f);
            } else {
                a.jmp(lo_op, dl, f, T::Next);
            }
            a.bind(pass);
        }
    }
}

/// Unconditional syscalls per shared `ret`: conditional jumps reach at most 255 ahead.
const GROUP: usize = 250;

fn arch_block(a: &mut Asm, p: &Profile, arches: &[Arch]) {
    let next_arch = a.label();
    let body = a.label();
    a.jmp(JEQ_K, arches[0].audit(), T::L(body), T::Next);
    a.ja(next_arch);
    a.bind(body);
    a.ld(OFF_NR);
    match arches {
        [Arch::X86_64] => {
            // x32 calls reach an x86_64-only filter with the x32 bit set: bad arch. nr -1
            // (a tracer skipping the call) is not one, and gets the default action.
            let rest = a.label();
            let bad = a.label();
            a.jmp(JGE_K, X32_SYSCALL_BIT, T::Next, T::L(rest));
            a.jmp(JEQ_K, u32::MAX, T::Next, T::L(bad));
            a.ret(p.default_action);
            a.bind(bad);
            a.ret(ret::KILL_THREAD);
            a.bind(rest);
        }
        [Arch::X32] => {
            let ok = a.label();
            a.jmp(JGE_K, X32_SYSCALL_BIT, T::L(ok), T::Next);
            a.ret(ret::KILL_THREAD);
            a.bind(ok);
        }
        _ => {}
    }
    let map = rules_for(p, arches);
    let mut groups: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (nr, e) in &map {
        if let Some(act) = e.uncond {
            groups.entry(act).or_default().push(*nr);
        }
    }
    for (act, nrs) in &groups {
        for chunk in nrs.chunks(GROUP) {
            let r = a.label();
            let after = a.label();
            for (i, nr) in chunk.iter().enumerate() {
                let jf = if i + 1 == chunk.len() { T::L(after) } else { T::Next };
                a.jmp(JEQ_K, *nr, T::L(r), jf);
            }
            a.bind(r);
            a.ret(*act);
            a.bind(after);
        }
    }
    for (nr, e) in &map {
        if e.uncond.is_some() {
            continue;
        }
        let this = a.label();
        let next = a.label();
        a.jmp(JEQ_K, *nr, T::L(this), T::Next);
        a.ja(next);
        a.bind(this);
        for (args, act) in &e.cond {
            let fail = a.label();
            for w in args {
                cmp(a, *w, fail);
            }
            a.ret(*act);
            a.bind(fail);
            // Each comparison reloads the accumulator, so no state carries across rules.
        }
        a.ret(p.default_action);
        // Only the `ja` above reaches `next`, with nr still in A.
        a.bind(next);
    }
    a.ret(p.default_action);
    a.bind(next_arch);
}

/// Compile a parsed profile into a `struct sock_filter` array (native endian bytes).
pub fn generate(p: &Profile) -> Result<Vec<u8>> {
    let mut a = Asm::default();
    a.ld(OFF_ARCH);
    let mut done = Vec::new();
    for &arch in &p.arches {
        if done.contains(&arch) {
            continue;
        }
        let block: Vec<Arch> = match arch {
            Arch::X86_64 | Arch::X32 => {
                let both = p.arches.contains(&Arch::X86_64) && p.arches.contains(&Arch::X32);
                if both { vec![Arch::X86_64, Arch::X32] } else { vec![arch] }
            }
            _ => vec![arch],
        };
        done.extend_from_slice(&block);
        // Only the block's `ja` reaches the next block, with the arch still in A.
        arch_block(&mut a, p, &block);
    }
    a.ret(ret::KILL_THREAD);
    a.finish()
}

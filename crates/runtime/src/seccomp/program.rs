//! The filter program for a plan. Layout:
//!
//! ```text
//!   ld arch
//!   jeq AUDIT_ARCH_X86_64 -> x86_64 family     (if x86_64 or x32 is covered)
//!   jeq AUDIT_ARCH_I386   -> x86 section       (if x86 is covered)
//!   ret bad-arch
//! x86_64 family:
//!   ld nr
//!   jeq -1 -> x86_64 section                   (syscall(-1), a tracer's skip: not x32)
//!   jset X32_SYSCALL_BIT -> x32 section or bad-arch, else x86_64 section or bad-arch
//! each section:
//!   ld nr
//!   binary search over syscall-number ranges -> a ret, or a syscall's rule block
//!   rule blocks: rules by precedence; a rule's comparisons ANDed; the first rule that
//!     holds returns its action; none -> the default action
//!   the section's rets
//! ```
//!
//! Syscalls with identical rules share one block, and runs of numbers with the same outcome
//! are one range, so Docker's profile on three ABIs stays far below the 4096-instruction
//! limit and a syscall is classified in about log2(ranges) jumps.

use super::bpf::{Asm, Cond, Insn, Label};
use super::profile::{Abi, Cmp, CmpOp, Plan, Rule, Section, RET_ERRNO, X32_SYSCALL_BIT};
use std::collections::{BTreeMap, HashMap};

// struct seccomp_data (linux/seccomp.h).
pub const OFF_NR: u32 = 0;
pub const OFF_ARCH: u32 = 4;
pub const OFF_ARGS: u32 = 16;

/// Offsets of the low and high 32-bit words of argument `index`.
fn arg_words(index: u8) -> (u32, u32) {
    let base = OFF_ARGS + 8 * u32::from(index);
    if cfg!(target_endian = "little") {
        (base, base + 4)
    } else {
        (base + 4, base)
    }
}

/// One `ret` per distinct action, emitted where `flush` is called.
#[derive(Default)]
struct Rets {
    labels: Vec<(u32, Label)>,
}

impl Rets {
    fn get(&mut self, asm: &mut Asm, ret: u32) -> Label {
        if let Some((_, l)) = self.labels.iter().find(|(r, _)| *r == ret) {
            return *l;
        }
        let l = asm.label();
        self.labels.push((ret, l));
        l
    }

    fn flush(self, asm: &mut Asm) {
        for (ret, l) in self.labels {
            asm.bind(l);
            asm.ret(ret);
        }
    }
}

pub fn emit(plan: &Plan) -> Result<Vec<Insn>, String> {
    let mut asm = Asm::new();
    let mut global = Rets::default();
    let bad = global.get(&mut asm, plan.bad_arch_ret);
    let starts: BTreeMap<Abi, Label> = plan.sections.iter().map(|s| (s.abi, asm.label())).collect();
    let start = |abi| starts.get(&abi).copied().unwrap_or(bad);
    let family64 = starts.contains_key(&Abi::X86_64) || starts.contains_key(&Abi::X32);

    asm.load(OFF_ARCH);
    let family_label = asm.label();
    let mut checks = Vec::new();
    if family64 {
        checks.push((Abi::X86_64.audit_arch(), family_label));
    }
    if starts.contains_key(&Abi::X86) {
        checks.push((Abi::X86.audit_arch(), start(Abi::X86)));
    }
    for (arch, to) in checks {
        let next = asm.label();
        asm.jump(Cond::Eq, arch, to, next);
        asm.bind(next);
    }
    asm.ja(bad);

    if family64 {
        asm.bind(family_label);
        asm.load(OFF_NR);
        let not_minus_one = asm.label();
        asm.jump(Cond::Eq, u32::MAX, start(Abi::X86_64), not_minus_one);
        asm.bind(not_minus_one);
        asm.jump(
            Cond::Set,
            X32_SYSCALL_BIT,
            start(Abi::X32),
            start(Abi::X86_64),
        );
    }

    for section in &plan.sections {
        asm.bind(start(section.abi));
        emit_section(&mut asm, plan, section);
    }
    global.flush(&mut asm);
    asm.finish()
}

fn emit_section(asm: &mut Asm, plan: &Plan, section: &Section) {
    let mut rets = Rets::default();
    let default = rets.get(asm, plan.default_ret);
    let enosys = section
        .enosys_above
        .map(|top| (top, rets.get(asm, RET_ERRNO | libc::ENOSYS as u32)));
    let gap = |n: u32| match enosys {
        Some((top, l)) if n > top => l,
        _ => default,
    };

    // Where each syscall goes: straight to a ret when its first (highest-precedence) rule has
    // no comparisons, else to a block shared by all syscalls with the same rules.
    let mut blocks: Vec<(Label, &[Rule])> = Vec::new();
    let mut block_of: HashMap<&[Rule], Label> = HashMap::new();
    let mut target = BTreeMap::new();
    for (&nr, rules) in &section.syscalls {
        let to = match rules.first() {
            None => default,
            Some(r) if r.conds.is_empty() => rets.get(asm, r.ret),
            Some(_) => *block_of.entry(rules.as_slice()).or_insert_with(|| {
                let l = asm.label();
                blocks.push((l, rules.as_slice()));
                l
            }),
        };
        target.insert(nr, to);
    }

    // The number line as ranges [start, next start), each with one destination: gaps first,
    // then the syscalls over them.
    let mut starts: BTreeMap<u32, Label> = BTreeMap::new();
    starts.insert(0, gap(0));
    if let Some((top, l)) = enosys {
        if let Some(above) = top.checked_add(1) {
            starts.insert(above, l);
        }
    }
    for &nr in target.keys() {
        if let Some(after) = nr.checked_add(1) {
            starts.entry(after).or_insert_with(|| gap(after));
        }
    }
    starts.extend(target.iter().map(|(&nr, &to)| (nr, to)));
    let mut ranges: Vec<(u32, Label)> = Vec::new();
    for (start, to) in starts {
        match ranges.last() {
            Some(&(_, last)) if last == to => {}
            _ => ranges.push((start, to)),
        }
    }

    asm.load(OFF_NR);
    match ranges.as_slice() {
        [(_, only)] => asm.ja(*only),
        _ => {
            let root = asm.label();
            emit_search(asm, &ranges, root);
        }
    }

    for (label, rules) in blocks {
        asm.bind(label);
        emit_block(asm, &mut rets, rules, section.abi.wide_args(), default);
    }
    rets.flush(asm);
}

/// Binary search: at each node, `nr >= first start of the upper half` goes right. A half
/// that is a single range jumps straight to its destination.
fn emit_search(asm: &mut Asm, ranges: &[(u32, Label)], here: Label) {
    asm.bind(here);
    let (low, high) = ranges.split_at(ranges.len() / 2);
    let mut child = |half: &[(u32, Label)]| match half {
        [(_, to)] => (*to, false),
        _ => (asm.label(), true),
    };
    let (low_to, low_more) = child(low);
    let (high_to, high_more) = child(high);
    asm.jump(Cond::Ge, high[0].0, high_to, low_to);
    if low_more {
        emit_search(asm, low, low_to);
    }
    if high_more {
        emit_search(asm, high, high_to);
    }
}

fn emit_block(asm: &mut Asm, rets: &mut Rets, rules: &[Rule], wide: bool, default: Label) {
    for rule in rules {
        let ret = rets.get(asm, rule.ret);
        if rule.conds.is_empty() {
            // Holds always; the rules after it have lower or equal precedence.
            asm.ja(ret);
            return;
        }
        let next_rule = asm.label();
        for (i, cmp) in rule.conds.iter().enumerate() {
            let pass = if i + 1 == rule.conds.len() {
                ret
            } else {
                asm.label()
            };
            emit_cmp(asm, cmp, wide, pass, next_rule);
            if pass != ret {
                asm.bind(pass);
            }
        }
        asm.bind(next_rule);
    }
    asm.ja(default);
}

/// Jumps to `pass` if the comparison holds, else to `fail`. BPF compares 32 bits at a time
/// (unsigned), so a 64-bit comparison decides on the high words and only looks at the low
/// words when those are equal.
fn emit_cmp(asm: &mut Asm, cmp: &Cmp, wide: bool, pass: Label, fail: Label) {
    let (lo_off, hi_off) = arg_words(cmp.index);
    let split = |v: u64| ((v >> 32) as u32, v as u32);
    let (vh, vl) = split(cmp.value);
    let (wh, wl) = split(cmp.value_two);

    // Low words: the whole comparison on 32-bit ABIs, the tie-break on 64-bit ones.
    let low = |asm: &mut Asm| {
        asm.load(lo_off);
        match cmp.op {
            CmpOp::Eq => asm.jump(Cond::Eq, vl, pass, fail),
            CmpOp::Ne => asm.jump(Cond::Eq, vl, fail, pass),
            CmpOp::Gt => asm.jump(Cond::Gt, vl, pass, fail),
            CmpOp::Ge => asm.jump(Cond::Ge, vl, pass, fail),
            CmpOp::Lt => asm.jump(Cond::Ge, vl, fail, pass),
            CmpOp::Le => asm.jump(Cond::Gt, vl, fail, pass),
            CmpOp::MaskedEq => {
                asm.and(vl);
                asm.jump(Cond::Eq, wl, pass, fail);
            }
        }
    };
    if !wide {
        low(asm);
        return;
    }

    let to_low = asm.label();
    match cmp.op {
        CmpOp::Eq => {
            asm.load(hi_off);
            asm.jump(Cond::Eq, vh, to_low, fail);
        }
        CmpOp::Ne => {
            asm.load(hi_off);
            asm.jump(Cond::Eq, vh, to_low, pass);
        }
        CmpOp::Gt | CmpOp::Ge => {
            let equal = asm.label();
            asm.load(hi_off);
            asm.jump(Cond::Gt, vh, pass, equal);
            asm.bind(equal);
            asm.jump(Cond::Eq, vh, to_low, fail);
        }
        CmpOp::Lt | CmpOp::Le => {
            let equal = asm.label();
            asm.load(hi_off);
            asm.jump(Cond::Gt, vh, fail, equal);
            asm.bind(equal);
            asm.jump(Cond::Eq, vh, to_low, pass);
        }
        CmpOp::MaskedEq if vh == 0 => {
            // A 32-bit mask (Docker's clone flags): the high word is 0 after masking.
            if wh != 0 {
                asm.ja(fail);
                return;
            }
        }
        CmpOp::MaskedEq => {
            asm.load(hi_off);
            asm.and(vh);
            asm.jump(Cond::Eq, wh, to_low, fail);
        }
    }
    asm.bind(to_low);
    low(asm);
}

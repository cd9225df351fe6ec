//! A small classic-BPF assembler for seccomp programs, and an interpreter that runs them the
//! way the kernel does (for tests and `Filter::evaluate`).
//!
//! Jumps name labels; `finish` turns them into offsets. A conditional jump's offsets are 8-bit
//! (at most 255 instructions ahead), so a jump to a farther label is rewritten to land on a
//! `ja` trampoline placed right after it (`ja` has a 32-bit offset). Classic BPF only jumps
//! forward; a backward or unbound label is a bug in the caller and reported as such.

/// One instruction, laid out exactly like the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Same size and field order as libc::sock_filter, so a program can be handed to the kernel
// without copying.
const _: () = assert!(std::mem::size_of::<Insn>() == std::mem::size_of::<libc::sock_filter>());

// Opcodes (linux/bpf_common.h), spelled out: class | size | mode, or class | op | source.
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const ALU_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JMP_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const JMP_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JMP_JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// The kernel refuses longer programs (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// A place in the program, bound once with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(usize);

/// The conditional jumps: `A == k`, `A > k`, `A >= k` (unsigned), `A & k != 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Eq,
    Gt,
    Ge,
    Set,
}

#[derive(Debug, Clone)]
enum Op {
    Load(u32),
    And(u32),
    Ret(u32),
    Jump {
        cond: Cond,
        k: u32,
        jt: Label,
        jf: Label,
    },
    Ja(Label),
    Bind(Label),
}

impl Op {
    fn len(&self) -> usize {
        match self {
            Op::Bind(_) => 0,
            _ => 1,
        }
    }
}

#[derive(Debug, Default)]
pub struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    pub fn bind(&mut self, label: Label) {
        self.ops.push(Op::Bind(label));
    }

    /// A = the 32-bit word at `offset` in `struct seccomp_data`.
    pub fn load(&mut self, offset: u32) {
        self.ops.push(Op::Load(offset));
    }

    pub fn and(&mut self, k: u32) {
        self.ops.push(Op::And(k));
    }

    pub fn ret(&mut self, k: u32) {
        self.ops.push(Op::Ret(k));
    }

    pub fn jump(&mut self, cond: Cond, k: u32, jt: Label, jf: Label) {
        self.ops.push(Op::Jump { cond, k, jt, jf });
    }

    pub fn ja(&mut self, to: Label) {
        self.ops.push(Op::Ja(to));
    }

    /// Resolves labels, adding trampolines until every conditional offset fits in 8 bits.
    /// Each round only adds instructions, so offsets only grow and the loop ends.
    pub fn finish(mut self) -> Result<Vec<Insn>, String> {
        loop {
            let at = self.positions()?;
            let mut far = Vec::new();
            let mut pos = 0usize;
            for (i, op) in self.ops.iter().enumerate() {
                if let Op::Jump { jt, jf, .. } = op {
                    let t = offset(&at, pos, *jt)?;
                    let f = offset(&at, pos, *jf)?;
                    if t > 255 || f > 255 {
                        far.push((i, t > 255, f > 255));
                    }
                }
                pos += op.len();
            }
            if far.is_empty() {
                return self.encode(&at);
            }
            // Rewrite back to front so the indexes of earlier entries stay valid.
            for (i, t_far, f_far) in far.into_iter().rev() {
                let Op::Jump { cond, k, jt, jf } = self.ops[i].clone() else {
                    continue;
                };
                let mut tail = Vec::new();
                let new_jt = if t_far {
                    let hop = self.label();
                    tail.extend([Op::Bind(hop), Op::Ja(jt)]);
                    hop
                } else {
                    jt
                };
                let new_jf = if f_far {
                    let hop = self.label();
                    tail.extend([Op::Bind(hop), Op::Ja(jf)]);
                    hop
                } else {
                    jf
                };
                self.ops[i] = Op::Jump {
                    cond,
                    k,
                    jt: new_jt,
                    jf: new_jf,
                };
                self.ops.splice(i + 1..i + 1, tail);
            }
        }
    }

    fn positions(&self) -> Result<Vec<Option<usize>>, String> {
        let mut at = vec![None; self.labels];
        let mut pos = 0usize;
        for op in &self.ops {
            if let Op::Bind(l) = op {
                if at[l.0].replace(pos).is_some() {
                    return Err(format!("label {} bound twice", l.0));
                }
            }
            pos += op.len();
        }
        Ok(at)
    }

    fn encode(&self, at: &[Option<usize>]) -> Result<Vec<Insn>, String> {
        let mut out = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            let pos = out.len();
            let insn = match *op {
                Op::Bind(_) => continue,
                Op::Load(k) => insn(LD_W_ABS, k),
                Op::And(k) => insn(ALU_AND_K, k),
                Op::Ret(k) => insn(RET_K, k),
                Op::Ja(to) => {
                    let k = u32::try_from(offset(at, pos, to)?)
                        .map_err(|_| "jump too long".to_string())?;
                    insn(JMP_JA, k)
                }
                Op::Jump { cond, k, jt, jf } => {
                    let code = match cond {
                        Cond::Eq => JMP_JEQ_K,
                        Cond::Gt => JMP_JGT_K,
                        Cond::Ge => JMP_JGE_K,
                        Cond::Set => JMP_JSET_K,
                    };
                    let short = |l| {
                        u8::try_from(offset(at, pos, l)?).map_err(|_| "jump too long".to_string())
                    };
                    Insn {
                        code,
                        jt: short(jt)?,
                        jf: short(jf)?,
                        k,
                    }
                }
            };
            out.push(insn);
        }
        Ok(out)
    }
}

fn insn(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Instructions to skip from the one at `pos` to reach `to`.
fn offset(at: &[Option<usize>], pos: usize, to: Label) -> Result<usize, String> {
    let target = at
        .get(to.0)
        .copied()
        .flatten()
        .ok_or_else(|| format!("label {} never bound", to.0))?;
    target
        .checked_sub(pos + 1)
        .ok_or_else(|| format!("label {} is behind its jump", to.0))
}

/// Runs `program` on the 64-byte `struct seccomp_data` image `data` and returns the action
/// value, as the kernel's BPF interpreter would. Only the opcodes [`Asm`] emits exist here;
/// anything else (or falling off the end, or reading past the data) is an error.
pub fn run(program: &[Insn], data: &[u8; 64]) -> Result<u32, String> {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let i = program
            .get(pc)
            .ok_or_else(|| format!("ran off the end at {pc}"))?;
        pc += 1;
        match i.code {
            LD_W_ABS => {
                let off = i.k as usize;
                let bytes = data
                    .get(off..off + 4)
                    .ok_or_else(|| format!("load past seccomp_data at {off}"))?;
                a = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            }
            ALU_AND_K => a &= i.k,
            RET_K => return Ok(i.k),
            JMP_JA => pc += i.k as usize,
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K | JMP_JSET_K => {
                let taken = match i.code {
                    JMP_JEQ_K => a == i.k,
                    JMP_JGT_K => a > i.k,
                    JMP_JGE_K => a >= i.k,
                    _ => a & i.k != 0,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            other => return Err(format!("unknown opcode {other:#x} at {}", pc - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_with_word(word: u32) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[..4].copy_from_slice(&word.to_ne_bytes());
        d
    }

    #[test]
    fn far_conditional_jumps_get_trampolines() {
        // A jeq whose true branch is 600 instructions away cannot be encoded directly.
        let mut asm = Asm::new();
        let (far, near) = (asm.label(), asm.label());
        asm.load(0);
        asm.jump(Cond::Eq, 7, far, near);
        asm.bind(near);
        for _ in 0..600 {
            asm.ret(1);
        }
        asm.bind(far);
        asm.ret(2);
        let prog = asm.finish().unwrap();
        assert_eq!(prog.len(), 604, "one trampoline added");
        assert_eq!(run(&prog, &data_with_word(7)), Ok(2));
        assert_eq!(run(&prog, &data_with_word(8)), Ok(1));
    }

    #[test]
    fn both_branches_far() {
        let mut asm = Asm::new();
        let (a, b) = (asm.label(), asm.label());
        asm.load(0);
        asm.jump(Cond::Gt, 10, a, b);
        for _ in 0..300 {
            asm.ret(0);
        }
        asm.bind(a);
        asm.ret(3);
        for _ in 0..300 {
            asm.ret(0);
        }
        asm.bind(b);
        asm.ret(4);
        let prog = asm.finish().unwrap();
        assert_eq!(run(&prog, &data_with_word(11)), Ok(3));
        assert_eq!(run(&prog, &data_with_word(10)), Ok(4));
    }

    #[test]
    fn unbound_and_backward_labels_are_errors() {
        let mut asm = Asm::new();
        let l = asm.label();
        asm.ja(l);
        assert!(asm.finish().unwrap_err().contains("never bound"));

        let mut asm = Asm::new();
        let l = asm.label();
        asm.bind(l);
        asm.ret(0);
        asm.ja(l);
        assert!(asm.finish().unwrap_err().contains("behind"));
    }
}

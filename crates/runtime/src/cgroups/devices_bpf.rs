//! Device rules on cgroup v2: an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE, written
//! as raw instructions, loaded with bpf(2) and attached to the container's cgroup.
//!
//! The program is compiled from the rules' final state (device_rules.rs), so it decides
//! exactly as the v1 controller would. The kernel asks it on every open and mknod of a
//! device node by a process in the cgroup, with `struct bpf_cgroup_dev_ctx`:
//! `access_type` = (access << 16) | type, then major, then minor; 1 allows, 0 denies.
//!
//! An attached program holds itself alive, so nothing is recorded: rmdir of the cgroup
//! frees it, and an update finds the previous programs with BPF_PROG_QUERY.

#[cfg(test)]
use super::device_rules::Access;
use super::device_rules::DeviceState;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one (little-endian bitfields).
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes used (linux/bpf.h, linux/bpf_common.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// Compiles the device state to a program. Registers: r2 type, r3 requested access, r4
/// major, r5 minor; r1 (the context) is reused as scratch once they are loaded.
pub fn program(state: &DeviceState) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    // Each exception is a block that jumps past itself when the request does not match and
    // otherwise returns its verdict: allow in a whitelist, deny in a blacklist.
    let verdict = i32::from(!state.default_allow);
    for (key, access) in &state.exceptions {
        // (register, value) pairs that must all be equal for the exception to apply.
        let mut checks: Vec<(u8, i32)> = vec![(2, key.kind as i32)];
        if let Some(major) = key.major {
            checks.push((4, major as i32));
        }
        if let Some(minor) = key.minor {
            checks.push((5, minor as i32));
        }
        // Whitelist: the exception must cover the whole request (r1 = request & ~allowed must
        // be 0). Blacklist: any overlap denies (skip when request & denied is 0).
        let (mask, skip_if) = if state.default_allow {
            (i32::from(access.0), JMP_JEQ_K)
        } else {
            (!i32::from(access.0), JMP_JNE_K)
        };
        // Jump offsets count from the next instruction to the end of the block.
        let len = checks.len() + 5;
        for (i, (reg, value)) in checks.iter().enumerate() {
            p.push(insn(JMP_JNE_K, *reg, 0, (len - i - 1) as i16, *value));
        }
        p.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
        p.push(insn(ALU32_AND_K, 1, 0, 0, mask));
        p.push(insn(skip_if, 1, 0, 2, 0));
        p.push(insn(ALU64_MOV_K, 0, 0, 0, verdict));
        p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(state.default_allow)));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

// bpf(2) commands and constants (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr is a live, properly laid out bpf_attr prefix of size_of::<T>() bytes; the
    // kernel treats the missing tail as zeroes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_from(r: libc::c_long) -> OwnedFd {
    // SAFETY: a non-negative bpf(2) result for these commands is a new fd that we own.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

/// Loads the program; on a verifier rejection the error carries the verifier's log.
pub fn load(program: &[Insn]) -> io::Result<OwnedFd> {
    let license = b"Apache\0";
    let mut attr = LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..13].copy_from_slice(b"berth_devices");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(fd_from(fd)),
        Err(e)
            if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::EACCES) =>
        {
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let again = bpf(BPF_PROG_LOAD, &mut attr);
            if let Ok(fd) = again {
                return Ok(fd_from(fd));
            }
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err(io::Error::new(
                e.kind(),
                format!(
                    "loading the device program: {e}; verifier: {}",
                    String::from_utf8_lossy(&log[..end]).trim()
                ),
            ))
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("loading the device program: {e}"),
        )),
    }
}

fn open_cgroup(dir: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
}

/// The device programs attached to `dir` now, as fds (to detach them by).
fn attached_programs(cgroup: &File) -> io::Result<Vec<OwnedFd>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    ids.truncate(attr.prog_cnt as usize);
    ids.into_iter()
        .map(|id| {
            let mut a = GetFdAttr {
                prog_id: id,
                ..Default::default()
            };
            bpf(BPF_PROG_GET_FD_BY_ID, &mut a).map(fd_from)
        })
        .collect()
}

/// How many device programs are attached to the cgroup at `dir`.
pub fn attached_count(dir: &Path) -> io::Result<usize> {
    Ok(attached_programs(&open_cgroup(dir)?)?.len())
}

fn detach(cgroup: &File, prog: &OwnedFd) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    bpf(BPF_PROG_DETACH, &mut attr).map(|_| ())
}

/// A program attached next to the ones that were there; [`Attached::commit`] detaches
/// those, [`Attached::undo`] this one. While both are attached, a device needs both to
/// allow it (BPF_F_ALLOW_MULTI runs every program), so the change never widens access.
pub struct Attached {
    cgroup: File,
    new: OwnedFd,
    old: Vec<OwnedFd>,
}

pub fn attach(dir: &Path, program: &[Insn]) -> io::Result<Attached> {
    let cgroup = open_cgroup(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", dir.display())))?;
    let old = attached_programs(&cgroup).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("listing the device programs on {}: {e}", dir.display()),
        )
    })?;
    let new = load(program)?;
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: new.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("attaching the device program to {}: {e}", dir.display()),
        )
    })?;
    Ok(Attached { cgroup, new, old })
}

impl Attached {
    pub fn commit(self) -> io::Result<()> {
        for prog in &self.old {
            detach(&self.cgroup, prog)?;
        }
        Ok(())
    }

    pub fn undo(self) -> io::Result<()> {
        detach(&self.cgroup, &self.new)
    }
}

/// Whether the program allows `access` to kind major:minor, run by a small interpreter of
/// the instructions [`program`] emits. For tests: the kernel's verdict on a real host is
/// checked by the integration tests.
#[cfg(test)]
pub fn run(program: &[Insn], kind: u32, major: u32, minor: u32, access: Access) -> bool {
    let ctx = [(u32::from(access.0) << 16) | kind, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = program[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        let imm64 = i64::from(i.imm) as u64;
        pc += 1;
        match i.code {
            LDX_MEM_W => {
                assert_eq!(src, 1, "loads only from the context");
                r[dst] = u64::from(ctx[i.off as usize / 4]);
            }
            ALU32_AND_K => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
            ALU32_RSH_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
            ALU32_MOV_X => r[dst] = u64::from(r[src] as u32),
            ALU64_MOV_K => r[dst] = imm64,
            JMP_JEQ_K if r[dst] == imm64 => pc += i.off as usize,
            JMP_JNE_K if r[dst] != imm64 => pc += i.off as usize,
            JMP_JEQ_K | JMP_JNE_K => {}
            JMP_EXIT => return r[0] == 1,
            c => panic!("unexpected opcode {c:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::device_rules::{parse, with_defaults, Kind};
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroup;

    fn state(json: &str, defaults: bool) -> DeviceState {
        let rules: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
        let rules = parse(&rules).unwrap();
        let rules = if defaults {
            with_defaults(&rules, &[])
        } else {
            rules
        };
        DeviceState::from_rules(DeviceState::allow_all(), &rules)
    }

    /// The program agrees with the kernel's v1 semantics on every request in a grid.
    fn agrees(s: &DeviceState) {
        let p = program(s);
        for kind in [Kind::Block, Kind::Char] {
            for major in [0, 1, 5, 8, 136, 254] {
                for minor in [0, 1, 2, 3, 5, 9] {
                    for bits in 1..=7u8 {
                        let a = Access(bits);
                        assert_eq!(
                            run(&p, kind as u32, major, minor, a),
                            s.permits(kind, major, minor, a),
                            "{kind:?} {major}:{minor} {a} in {s:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn whitelist_programs_match_the_kernel() {
        agrees(&state(r#"[{"allow": false, "access": "rwm"}]"#, true));
        agrees(&state(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                {"allow": true, "type": "b", "major": 8, "access": "r"},
                {"allow": true, "type": "c", "minor": 2, "access": "w"}]"#,
            true,
        ));
        agrees(&state(r#"[{"allow": false, "access": "rwm"}]"#, false));
    }

    #[test]
    fn blacklist_programs_match_the_kernel() {
        agrees(&state(
            r#"[{"allow": true, "access": "rwm"},
                {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "w"},
                {"allow": false, "type": "b", "access": "m"}]"#,
            false,
        ));
        agrees(&DeviceState::allow_all());
    }

    #[test]
    fn deny_zero_allow_null() {
        let s = state(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]"#,
            true,
        );
        let p = program(&s);
        assert!(!run(&p, Kind::Char as u32, 1, 5, Access::READ));
        assert!(run(&p, Kind::Char as u32, 1, 3, Access(6)));
        assert!(run(&p, Kind::Char as u32, 1, 5, Access::MKNOD));
    }
}

//! From the OCI profile to a plan: for each ABI the filter covers, for each syscall number,
//! the rules that can fire, in the order the filter tries them. Pure; every error names the
//! field it is about.

use super::syscall_table;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use std::collections::BTreeMap;

// Filter return values (linux/seccomp.h SECCOMP_RET_*); the low 16 bits are data.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;
const RET_DATA: u32 = 0x0000_ffff;

// seccomp(2) SECCOMP_SET_MODE_FILTER flags.
pub const FLAG_TSYNC: u32 = 1;
pub const FLAG_LOG: u32 = 1 << 1;
pub const FLAG_SPEC_ALLOW: u32 = 1 << 2;

/// x32 syscalls arrive with AUDIT_ARCH_X86_64 and this bit set in the number.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Syscalls take at most six arguments (`seccomp_data.args`).
const MAX_ARGS: usize = 6;

/// What a foreign ABI's syscall gets. libseccomp's default is KILL_THREAD; we kill the whole
/// process, as the kernel's seccomp documentation recommends, so a multi-threaded program
/// does not limp on without the thread.
pub const BAD_ARCH_RET: u32 = RET_KILL_PROCESS;

/// The ABIs this runtime has syscall tables for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Abi {
    X86_64,
    X32,
    X86,
}

impl Abi {
    pub fn audit_arch(self) -> u32 {
        match self {
            // The kernel reports x32 as x86_64; only the syscall number tells them apart.
            Abi::X86_64 | Abi::X32 => 0xc000_003e,
            Abi::X86 => 0x4000_0003,
        }
    }

    /// The syscall number as the filter sees it, or None if the ABI has no such syscall.
    pub fn nr(self, name: &str) -> Option<u32> {
        let table = match self {
            Abi::X86_64 => syscall_table::X86_64,
            Abi::X32 => syscall_table::X32,
            Abi::X86 => syscall_table::X86,
        };
        let i = table.binary_search_by(|(n, _)| (*n).cmp(name)).ok()?;
        let nr = table[i].1;
        Some(if self == Abi::X32 {
            nr | X32_SYSCALL_BIT
        } else {
            nr
        })
    }

    /// Whether arguments are compared as 64-bit values. libseccomp treats x86 and x32 as
    /// 32-bit ABIs and compares only the low word there; the kernel truncates those
    /// arguments anyway.
    pub fn wide_args(self) -> bool {
        self == Abi::X86_64
    }

    pub fn from_arch(arch: Arch) -> Option<Abi> {
        match arch {
            Arch::ScmpArchNative => native(),
            Arch::ScmpArchX86_64 => Some(Abi::X86_64),
            Arch::ScmpArchX32 => Some(Abi::X32),
            Arch::ScmpArchX86 => Some(Abi::X86),
            _ => None,
        }
    }
}

/// The ABI of this build, if we have its table.
pub fn native() -> Option<Abi> {
    if cfg!(target_arch = "x86_64") {
        Some(Abi::X86_64)
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & value) == value_two`: OCI's `value` is the mask, as in libseccomp's
    /// SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, mask, datum).
    MaskedEq,
}

/// One argument comparison; `value`s are the full 64-bit ones from the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cmp {
    pub index: u8,
    pub op: CmpOp,
    pub value: u64,
    pub value_two: u64,
}

/// A rule for one syscall: if all comparisons hold, return `ret`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub ret: u32,
    pub conds: Vec<Cmp>,
}

/// The rules of one ABI.
#[derive(Debug, Clone)]
pub struct Section {
    pub abi: Abi,
    /// By syscall number; each list sorted by precedence, highest first.
    pub syscalls: BTreeMap<u32, Vec<Rule>>,
    /// Syscall numbers above this return ENOSYS instead of the default action (runc's
    /// "-ENOSYS stub": see `plan`).
    pub enosys_above: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub default_ret: u32,
    pub bad_arch_ret: u32,
    pub flags: u32,
    pub sections: Vec<Section>,
}

/// The kernel's precedence between actions (seccomp(2): with several filters the action
/// with the lowest signed value wins): KILL_PROCESS > KILL_THREAD > TRAP > ERRNO >
/// USER_NOTIF > TRACE > LOG > ALLOW. Lower sorts first.
pub fn precedence(ret: u32) -> i32 {
    (ret & !RET_DATA) as i32
}

fn action_ret(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    action_field: &str,
    errno_field: &str,
) -> Result<u32, String> {
    // runc: ERRNO and TRACE without errnoRet mean EPERM. Other actions carry no data, so an
    // errnoRet there is ignored, as libseccomp does.
    let data = || match errno_ret {
        None => Ok(libc::EPERM as u32),
        Some(e) if e <= RET_DATA => Ok(e),
        Some(e) => Err(format!(
            "{errno_field}: {e} does not fit the 16 bits a seccomp action carries"
        )),
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => RET_ERRNO | data()?,
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | data()?,
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(format!(
                "{action_field}: SCMP_ACT_NOTIFY is not supported (no seccomp agent support)"
            ))
        }
    })
}

fn cmp(arg: &LinuxSeccompArg, field: &str) -> Result<Cmp, String> {
    let index = arg.index();
    if index >= MAX_ARGS {
        return Err(format!(
            "{field}.index: {index} is out of range (a syscall has arguments 0 to 5)"
        ));
    }
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpEq => CmpOp::Eq,
        LinuxSeccompOperator::ScmpCmpNe => CmpOp::Ne,
        LinuxSeccompOperator::ScmpCmpLt => CmpOp::Lt,
        LinuxSeccompOperator::ScmpCmpLe => CmpOp::Le,
        LinuxSeccompOperator::ScmpCmpGt => CmpOp::Gt,
        LinuxSeccompOperator::ScmpCmpGe => CmpOp::Ge,
        LinuxSeccompOperator::ScmpCmpMaskedEq => CmpOp::MaskedEq,
    };
    Ok(Cmp {
        index: index as u8,
        op,
        value: arg.value(),
        value_two: arg.value_two().unwrap_or(0),
    })
}

/// The ABIs the filter covers: the native one always (libseccomp starts every filter with
/// it and runc never removes it), plus the listed ones we have tables for. Others cannot
/// occur on an x86 kernel, so they are skipped.
fn abis(profile: &LinuxSeccomp) -> Result<Vec<Abi>, String> {
    let native = native().ok_or(
        "linux.seccomp: this runtime has syscall tables for x86_64, x86 and x32 only, not for this machine",
    )?;
    let mut out = vec![native];
    for arch in profile.architectures().iter().flatten() {
        match Abi::from_arch(*arch) {
            Some(abi) if !out.contains(&abi) => out.push(abi),
            Some(_) => {}
            None => tracing::debug!(
                "linux.seccomp.architectures: {arch} cannot occur on this machine; skipped"
            ),
        }
    }
    out.sort();
    Ok(out)
}

/// Checks the profile and lays out the rules.
///
/// Follows runc (libcontainer/seccomp) where the spec is silent:
/// - a rule whose action (with its errno) equals the default action is dropped;
/// - a rule's comparisons are ANDed, except when two name the same argument: then each is
///   a rule of its own (ORed), runc's fallback for libseccomp's one-comparison-per-argument;
/// - a syscall name unknown to an ABI is skipped for that ABI (Docker's profile lists every
///   architecture's syscalls); unknown to all, it is logged at debug level;
/// - unless the default action lets calls through (ALLOW, LOG, TRACE) or already is
///   ERRNO(ENOSYS), syscalls numbered above every syscall the profile names return ENOSYS:
///   they are newer than the profile, and ENOSYS makes libc fall back (clone3 -> clone)
///   where EPERM would be taken as a real refusal.
pub fn plan(profile: &LinuxSeccomp) -> Result<Plan, String> {
    let default_ret = action_ret(
        profile.default_action(),
        profile.default_errno_ret(),
        "linux.seccomp.defaultAction",
        "linux.seccomp.defaultErrnoRet",
    )?;
    let mut flags = 0;
    for flag in profile.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                // Only means something with a notify listener, and the kernel refuses it
                // without one (EINVAL); libseccomp likewise sets it only with NOTIFY.
                tracing::debug!(
                    "linux.seccomp.flags: {flag} has no effect without SCMP_ACT_NOTIFY; ignored"
                );
                0
            }
        };
    }

    let abis = abis(profile)?;
    let mut sections: Vec<Section> = abis
        .iter()
        .map(|&abi| Section {
            abi,
            syscalls: BTreeMap::new(),
            enosys_above: None,
        })
        .collect();
    let mut highest: Vec<Option<u32>> = vec![None; sections.len()];

    for (i, call) in profile.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let ret = action_ret(
            call.action(),
            call.errno_ret(),
            &format!("{field}.action"),
            &format!("{field}.errnoRet"),
        )?;
        let mut conds = Vec::new();
        for (j, arg) in call.args().iter().flatten().enumerate() {
            conds.push(cmp(arg, &format!("{field}.args[{j}]"))?);
        }
        let shared_index = conds
            .iter()
            .enumerate()
            .any(|(a, x)| conds[a + 1..].iter().any(|y| y.index == x.index));
        let rules: Vec<Rule> = if shared_index {
            conds
                .iter()
                .map(|c| Rule {
                    ret,
                    conds: vec![*c],
                })
                .collect()
        } else {
            vec![Rule { ret, conds }]
        };
        for (j, name) in call.names().iter().enumerate() {
            if name.is_empty() {
                return Err(format!("{field}.names[{j}]: empty syscall name"));
            }
            let mut known = false;
            for (s, section) in sections.iter_mut().enumerate() {
                let Some(nr) = section.abi.nr(name) else {
                    continue;
                };
                known = true;
                highest[s] = highest[s].max(Some(nr));
                if ret == default_ret {
                    continue;
                }
                let list = section.syscalls.entry(nr).or_default();
                for rule in &rules {
                    if !list.contains(rule) {
                        list.push(rule.clone());
                    }
                }
            }
            if !known {
                tracing::debug!("{field}.names[{j}]: unknown syscall {name:?} ignored");
            }
        }
    }

    let passes = matches!(default_ret & !RET_DATA, RET_ALLOW | RET_LOG | RET_TRACE);
    let enosys_default = default_ret == (RET_ERRNO | libc::ENOSYS as u32);
    for (section, top) in sections.iter_mut().zip(highest) {
        for rules in section.syscalls.values_mut() {
            // Stable: among equal precedence (ERRNO with different errnos) the profile's
            // order decides.
            rules.sort_by_key(|r| precedence(r.ret));
        }
        if !passes && !enosys_default {
            section.enosys_above = top;
        }
    }
    Ok(Plan {
        default_ret,
        bad_arch_ret: BAD_ARCH_RET,
        flags,
        sections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    fn section(plan: &Plan, abi: Abi) -> &Section {
        plan.sections.iter().find(|s| s.abi == abi).unwrap()
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        for table in [
            syscall_table::X86_64,
            syscall_table::X86,
            syscall_table::X32,
        ] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
        assert_eq!(Abi::X86_64.nr("mkdir"), Some(83));
        assert_eq!(Abi::X86.nr("mkdir"), Some(39));
        assert_eq!(Abi::X32.nr("mkdir"), Some(83 | X32_SYSCALL_BIT));
        assert_eq!(Abi::X32.nr("rt_sigaction"), Some(512 | X32_SYSCALL_BIT));
        assert_eq!(Abi::X86_64.nr("mmap2"), None);
        assert_eq!(Abi::X86.nr("mmap2"), Some(192));
        assert_eq!(Abi::X86_64.nr("fchmodat2"), Some(452));
    }

    #[test]
    fn actions_and_errno() {
        let p = plan(&profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "syscalls": [
                { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO" },
                { "names": ["rmdir"], "action": "SCMP_ACT_TRACE", "errnoRet": 7 },
                { "names": ["kill"], "action": "SCMP_ACT_KILL" },
                { "names": ["tkill"], "action": "SCMP_ACT_KILL_PROCESS" },
                { "names": ["tgkill"], "action": "SCMP_ACT_KILL_THREAD" },
                { "names": ["getpid"], "action": "SCMP_ACT_TRAP" },
                { "names": ["getppid"], "action": "SCMP_ACT_LOG" },
                { "names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 5 }
            ]
        })))
        .unwrap();
        assert_eq!(p.default_ret, RET_ERRNO | 38);
        let s = section(&p, Abi::X86_64);
        let ret = |name: &str| s.syscalls[&Abi::X86_64.nr(name).unwrap()][0].ret;
        assert_eq!(
            ret("mkdir"),
            RET_ERRNO | 1,
            "ERRNO without errnoRet is EPERM"
        );
        assert_eq!(ret("rmdir"), RET_TRACE | 7);
        assert_eq!(ret("kill"), RET_KILL_THREAD);
        assert_eq!(ret("tkill"), RET_KILL_PROCESS);
        assert_eq!(ret("tgkill"), RET_KILL_THREAD);
        assert_eq!(ret("getpid"), RET_TRAP);
        assert_eq!(ret("getppid"), RET_LOG);
        assert_eq!(ret("read"), RET_ALLOW);
        assert_eq!(p.bad_arch_ret, RET_KILL_PROCESS);
    }

    #[test]
    fn rules_like_the_default_are_dropped_and_unknown_names_skipped() {
        let p = plan(&profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                { "names": ["mkdir", "no_such_syscall", "mmap2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 },
                { "names": ["mmap2", "arch_prctl"], "action": "SCMP_ACT_ALLOW" }
            ]
        })))
        .unwrap();
        let s64 = section(&p, Abi::X86_64);
        let s32 = section(&p, Abi::X86);
        assert_eq!(s64.syscalls.len(), 1, "{:?}", s64.syscalls);
        assert!(s64.syscalls.contains_key(&158), "arch_prctl on x86_64");
        assert_eq!(s32.syscalls.len(), 2);
        assert!(s32.syscalls.contains_key(&192), "mmap2 on x86");
        assert!(s32.syscalls.contains_key(&384), "arch_prctl on x86");
        // The dropped ERRNO rule still counts for the ENOSYS threshold.
        assert_eq!(s64.enosys_above, Some(158), "arch_prctl, above mkdir (83)");
        assert_eq!(s32.enosys_above, Some(384));
    }

    #[test]
    fn enosys_stub_only_for_refusing_defaults() {
        for (default, errno, stub) in [
            ("SCMP_ACT_ALLOW", None, false),
            ("SCMP_ACT_LOG", None, false),
            ("SCMP_ACT_TRACE", None, false),
            ("SCMP_ACT_ERRNO", Some(38), false),
            ("SCMP_ACT_ERRNO", None, true),
            ("SCMP_ACT_KILL_PROCESS", None, true),
        ] {
            let p = plan(&profile(json!({
                "defaultAction": default,
                "defaultErrnoRet": errno,
                "syscalls": [ { "names": ["read"], "action": "SCMP_ACT_KILL" } ]
            })))
            .unwrap();
            assert_eq!(p.sections[0].enosys_above.is_some(), stub, "{default}");
        }
    }

    #[test]
    fn args_are_anded_unless_an_index_repeats() {
        let p = plan(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                { "names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
                    { "index": 0, "value": 1, "op": "SCMP_CMP_EQ" },
                    { "index": 1, "value": 2, "op": "SCMP_CMP_GT" } ] },
                { "names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [
                    { "index": 1, "value": 1, "op": "SCMP_CMP_EQ" },
                    { "index": 1, "value": 2, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ" } ] }
            ]
        })))
        .unwrap();
        let s = &p.sections[0];
        let personality = &s.syscalls[&135];
        assert_eq!(personality.len(), 1);
        assert_eq!(personality[0].conds.len(), 2);
        let chmod = &s.syscalls[&90];
        assert_eq!(chmod.len(), 2);
        assert!(chmod.iter().all(|r| r.conds.len() == 1));
        assert_eq!(chmod[1].conds[0].op, CmpOp::MaskedEq);
        assert_eq!(chmod[1].conds[0].value_two, 2);
    }

    #[test]
    fn rules_sort_by_precedence_keeping_profile_order_among_equals() {
        let p = plan(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                { "names": ["mkdir"], "action": "SCMP_ACT_LOG" },
                { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5 },
                { "names": ["mkdir"], "action": "SCMP_ACT_TRACE" },
                { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6 },
                { "names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS" },
                { "names": ["mkdir"], "action": "SCMP_ACT_TRAP" },
                { "names": ["mkdir"], "action": "SCMP_ACT_KILL_THREAD" }
            ]
        })))
        .unwrap();
        let order: Vec<u32> = p.sections[0].syscalls[&83].iter().map(|r| r.ret).collect();
        assert_eq!(
            order,
            vec![
                RET_KILL_PROCESS,
                RET_KILL_THREAD,
                RET_TRAP,
                RET_ERRNO | 5,
                RET_ERRNO | 6,
                RET_TRACE | 1,
                RET_LOG
            ]
        );
    }

    #[test]
    fn architectures() {
        let p = plan(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_X32", "SCMP_ARCH_NATIVE", "SCMP_ARCH_ARM"]
        })))
        .unwrap();
        let abis: Vec<Abi> = p.sections.iter().map(|s| s.abi).collect();
        assert_eq!(abis, vec![Abi::X86_64, Abi::X32]);
        let p = plan(&profile(json!({ "defaultAction": "SCMP_ACT_ALLOW" }))).unwrap();
        assert_eq!(p.sections.len(), 1, "native only");
    }

    #[test]
    fn flags() {
        let p = plan(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                      "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
        })))
        .unwrap();
        assert_eq!(p.flags, FLAG_TSYNC | FLAG_LOG | FLAG_SPEC_ALLOW);
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases = [
            (
                json!({ "defaultAction": "SCMP_ACT_NOTIFY" }),
                "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY",
            ),
            (
                json!({ "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000 }),
                "linux.seccomp.defaultErrnoRet: 70000",
            ),
            (
                json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    { "names": ["read"], "action": "SCMP_ACT_ERRNO" },
                    { "names": ["write"], "action": "SCMP_ACT_NOTIFY" } ] }),
                "linux.seccomp.syscalls[1].action: SCMP_ACT_NOTIFY",
            ),
            (
                json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    { "names": ["read"], "action": "SCMP_ACT_TRACE", "errnoRet": 65536 } ] }),
                "linux.seccomp.syscalls[0].errnoRet: 65536",
            ),
            (
                json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    { "names": ["read"], "action": "SCMP_ACT_ERRNO",
                      "args": [ { "index": 6, "value": 0, "op": "SCMP_CMP_EQ" } ] } ] }),
                "linux.seccomp.syscalls[0].args[0].index: 6",
            ),
            (
                json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    { "names": ["read", ""], "action": "SCMP_ACT_ERRNO" } ] }),
                "linux.seccomp.syscalls[0].names[1]: empty",
            ),
        ];
        for (json, want) in cases {
            let e = plan(&profile(json)).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn unknown_enum_strings_are_refused_by_the_parser() {
        for bad in [
            json!({ "defaultAction": "SCMP_ACT_FOO" }),
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FOO"] }),
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_FOO"] }),
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                { "names": ["read"], "action": "SCMP_ACT_ALLOW",
                  "args": [ { "index": 0, "value": 0, "op": "SCMP_CMP_FOO" } ] } ] }),
        ] {
            let e = serde_json::from_value::<LinuxSeccomp>(bad).unwrap_err();
            assert!(e.to_string().contains("unknown variant"), "{e}");
        }
    }
}

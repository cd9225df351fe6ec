//! Compiled filters run through the BPF interpreter (`Filter::evaluate`), and a few loaded
//! into the kernel in a forked child to prove the kernel accepts what we assemble.

use super::profile::{
    RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_KILL_THREAD, RET_LOG, RET_TRACE, RET_TRAP,
    X32_SYSCALL_BIT,
};
use super::*;
use serde_json::{json, Value};

const AUDIT_X86_64: u32 = 0xc000_003e;
const AUDIT_I386: u32 = 0x4000_0003;
const AUDIT_AARCH64: u32 = 0xc000_00b7;
const ENOSYS_RET: u32 = RET_ERRNO | libc::ENOSYS as u32;

fn filter(v: Value) -> Filter {
    compile(&serde_json::from_value(v).unwrap()).unwrap()
}

fn call(f: &Filter, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    f.evaluate(&SeccompData {
        nr: nr as i32,
        arch,
        instruction_pointer: 0,
        args,
    })
    .unwrap()
}

fn x86_64(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
    let nr = syscall_number(Arch::ScmpArchX86_64, name).unwrap();
    call(f, AUDIT_X86_64, nr, args)
}

const ACTIONS: [(&str, u32); 7] = [
    ("SCMP_ACT_KILL_PROCESS", RET_KILL_PROCESS),
    ("SCMP_ACT_KILL_THREAD", RET_KILL_THREAD),
    ("SCMP_ACT_TRAP", RET_TRAP),
    ("SCMP_ACT_ERRNO", RET_ERRNO | 1),
    ("SCMP_ACT_TRACE", RET_TRACE | 1),
    ("SCMP_ACT_LOG", RET_LOG),
    ("SCMP_ACT_ALLOW", RET_ALLOW),
];

#[test]
fn the_highest_precedence_matching_rule_wins_in_any_order() {
    // Every pair of actions, both orders, on one syscall: rule A matches arg0 == 1, rule B
    // matches arg1 == 2. The default (ERRNO 99) is distinct from every rule's action.
    for (i, (name_a, ret_a)) in ACTIONS.iter().enumerate() {
        for (j, (name_b, ret_b)) in ACTIONS.iter().enumerate() {
            if i == j {
                continue;
            }
            let f = filter(json!({
                "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 99,
                "syscalls": [
                    { "names": ["mkdir"], "action": name_a,
                      "args": [ { "index": 0, "value": 1, "op": "SCMP_CMP_EQ" } ] },
                    { "names": ["mkdir"], "action": name_b,
                      "args": [ { "index": 1, "value": 2, "op": "SCMP_CMP_EQ" } ] }
                ]
            }));
            let both = x86_64(&f, "mkdir", [1, 2, 0, 0, 0, 0]);
            let want = if i < j { *ret_a } else { *ret_b };
            assert_eq!(both, want, "{name_a} + {name_b}");
            assert_eq!(x86_64(&f, "mkdir", [1, 0, 0, 0, 0, 0]), *ret_a);
            assert_eq!(x86_64(&f, "mkdir", [0, 2, 0, 0, 0, 0]), *ret_b);
            assert_eq!(x86_64(&f, "mkdir", [0, 0, 0, 0, 0, 0]), RET_ERRNO | 99);
        }
    }
}

#[test]
fn an_unconditional_rule_and_a_narrower_one() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["personality"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["personality"], "action": "SCMP_ACT_KILL_PROCESS",
              "args": [ { "index": 0, "value": 0xdead, "op": "SCMP_CMP_EQ" } ] },
            { "names": ["personality"], "action": "SCMP_ACT_LOG",
              "args": [ { "index": 0, "value": 7, "op": "SCMP_CMP_EQ" } ] }
        ]
    }));
    assert_eq!(
        x86_64(&f, "personality", [0xdead, 0, 0, 0, 0, 0]),
        RET_KILL_PROCESS
    );
    // LOG outranks ALLOW: the narrower rule shows through the broad one.
    assert_eq!(x86_64(&f, "personality", [7, 0, 0, 0, 0, 0]), RET_LOG);
    assert_eq!(x86_64(&f, "personality", [8, 0, 0, 0, 0, 0]), RET_ALLOW);
}

#[test]
fn equal_precedence_goes_to_the_rule_listed_first() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
              "args": [ { "index": 1, "value": 0o700, "op": "SCMP_CMP_EQ" } ] },
            { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6 }
        ]
    }));
    assert_eq!(x86_64(&f, "mkdir", [0, 0o700, 0, 0, 0, 0]), RET_ERRNO | 5);
    assert_eq!(x86_64(&f, "mkdir", [0, 0o755, 0, 0, 0, 0]), RET_ERRNO | 6);
}

#[test]
fn a_rule_like_the_default_does_not_outrank_others() {
    // runc drops it (libseccomp would refuse it), so the ALLOW stands.
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
              "args": [ { "index": 0, "value": 8, "op": "SCMP_CMP_EQ" } ] },
            { "names": ["personality"], "action": "SCMP_ACT_ERRNO" }
        ]
    }));
    assert_eq!(x86_64(&f, "personality", [8, 0, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(x86_64(&f, "personality", [9, 0, 0, 0, 0, 0]), RET_ERRNO | 1);
}

/// What a comparison means, on full 64-bit values or (32-bit ABIs) on the low words.
fn holds(op: &str, arg: u64, value: u64, value_two: u64, wide: bool) -> bool {
    let low = |v: u64| if wide { v } else { v & 0xffff_ffff };
    let (a, v, w) = (low(arg), low(value), low(value_two));
    match op {
        "SCMP_CMP_EQ" => a == v,
        "SCMP_CMP_NE" => a != v,
        "SCMP_CMP_LT" => a < v,
        "SCMP_CMP_LE" => a <= v,
        "SCMP_CMP_GT" => a > v,
        "SCMP_CMP_GE" => a >= v,
        "SCMP_CMP_MASKED_EQ" => a & v == w,
        _ => unreachable!(),
    }
}

#[test]
fn comparisons_use_both_32_bit_halves_on_x86_64_and_the_low_one_on_x86() {
    let samples: [u64; 12] = [
        0,
        1,
        2,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0001,
        0x1_ffff_ffff,
        0x8000_0000_0000_0000,
        0xffff_ffff_0000_0000,
        u64::MAX,
    ];
    let ops = [
        "SCMP_CMP_EQ",
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_GT",
        "SCMP_CMP_GE",
        "SCMP_CMP_MASKED_EQ",
    ];
    for op in ops {
        for &value in &samples {
            // MASKED_EQ: `value` is the mask; compare against the mask itself and against 1.
            for value_two in [value, 1] {
                let f = filter(json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                    "syscalls": [ { "names": ["personality"], "action": "SCMP_ACT_ERRNO",
                        "args": [ { "index": 3, "value": value, "valueTwo": value_two, "op": op } ] } ]
                }));
                for &arg in &samples {
                    let mut args = [0u64; 6];
                    args[3] = arg;
                    let hit = |wide| {
                        if holds(op, arg, value, value_two, wide) {
                            RET_ERRNO | 1
                        } else {
                            RET_ALLOW
                        }
                    };
                    let what = format!("{op} value {value:#x}/{value_two:#x} arg {arg:#x}");
                    assert_eq!(
                        call(&f, AUDIT_X86_64, 135, args),
                        hit(true),
                        "x86_64 {what}"
                    );
                    assert_eq!(call(&f, AUDIT_I386, 136, args), hit(false), "x86 {what}");
                }
            }
        }
    }
}

#[test]
fn several_comparisons_are_anded() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [ { "names": ["mmap"], "action": "SCMP_ACT_ERRNO", "args": [
            { "index": 2, "value": 4, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ" },
            { "index": 3, "value": 0x20, "op": "SCMP_CMP_GE" } ] } ]
    }));
    assert_eq!(x86_64(&f, "mmap", [0, 0, 7, 0x20, 0, 0]), RET_ERRNO | 1);
    assert_eq!(x86_64(&f, "mmap", [0, 0, 7, 0x1f, 0, 0]), RET_ALLOW);
    assert_eq!(x86_64(&f, "mmap", [0, 0, 3, 0x20, 0, 0]), RET_ALLOW);
}

#[test]
fn architectures_not_covered_are_killed() {
    let only64 = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [ { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO" } ]
    }));
    assert_eq!(call(&only64, AUDIT_X86_64, 83, [0; 6]), RET_ERRNO | 1);
    assert_eq!(call(&only64, AUDIT_X86_64, 0, [0; 6]), RET_ALLOW);
    assert_eq!(call(&only64, AUDIT_I386, 39, [0; 6]), RET_KILL_PROCESS);
    assert_eq!(call(&only64, AUDIT_AARCH64, 34, [0; 6]), RET_KILL_PROCESS);
    // An x32 call is an AUDIT_ARCH_X86_64 call with the x32 bit.
    assert_eq!(
        call(&only64, AUDIT_X86_64, 83 | X32_SYSCALL_BIT, [0; 6]),
        RET_KILL_PROCESS
    );
    // syscall(-1) is not an x32 call.
    assert_eq!(call(&only64, AUDIT_X86_64, u32::MAX, [0; 6]), RET_ALLOW);

    let all = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [ { "names": ["mkdir", "rt_sigaction"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38 } ]
    }));
    for (arch, nr) in [
        (AUDIT_X86_64, 83),
        (AUDIT_X86_64, 13),
        (AUDIT_I386, 39),
        (AUDIT_I386, 174),
        (AUDIT_X86_64, 83 | X32_SYSCALL_BIT),
        (AUDIT_X86_64, 512 | X32_SYSCALL_BIT),
    ] {
        assert_eq!(
            call(&all, arch, nr, [0; 6]),
            RET_ERRNO | 38,
            "{arch:#x} {nr:#x}"
        );
    }
    // x32's rt_sigaction is 512, not x86_64's 13.
    assert_eq!(
        call(&all, AUDIT_X86_64, 13 | X32_SYSCALL_BIT, [0; 6]),
        RET_ALLOW
    );
    assert_eq!(call(&all, AUDIT_AARCH64, 34, [0; 6]), RET_KILL_PROCESS);
}

#[test]
fn syscalls_newer_than_the_profile_get_enosys() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        "syscalls": [ { "names": ["read", "write", "openat"], "action": "SCMP_ACT_ALLOW" } ]
    }));
    assert_eq!(call(&f, AUDIT_X86_64, 0, [0; 6]), RET_ALLOW);
    assert_eq!(
        call(&f, AUDIT_X86_64, 2, [0; 6]),
        RET_ERRNO | 1,
        "open < openat"
    );
    assert_eq!(call(&f, AUDIT_X86_64, 257, [0; 6]), RET_ALLOW, "openat");
    assert_eq!(call(&f, AUDIT_X86_64, 258, [0; 6]), ENOSYS_RET);
    assert_eq!(call(&f, AUDIT_X86_64, 435, [0; 6]), ENOSYS_RET, "clone3");
    assert_eq!(call(&f, AUDIT_X86_64, u32::MAX, [0; 6]), ENOSYS_RET);
    assert_eq!(
        call(&f, AUDIT_X86_64, 257 | X32_SYSCALL_BIT, [0; 6]),
        RET_ALLOW
    );
    assert_eq!(
        call(&f, AUDIT_X86_64, 600 | X32_SYSCALL_BIT, [0; 6]),
        ENOSYS_RET
    );
}

/// Many syscalls with distinct conditional rules: blocks far from the dispatch, so most
/// jumps need trampolines.
fn big_profile() -> Value {
    let syscalls: Vec<Value> = super::syscall_table::X86_64
        .iter()
        .filter(|(name, _)| *name != "exit_group")
        .map(|(name, nr)| {
            json!({ "names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": nr % 200 + 1,
                    "args": [ { "index": 0, "value": (u64::from(*nr) + 1) << 32 | 5, "op": "SCMP_CMP_EQ" } ] })
        })
        .collect();
    json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls })
}

#[test]
fn long_programs_resolve_through_trampolines() {
    let f = filter(big_profile());
    assert!(f.instruction_count() > 1000, "{}", f.instruction_count());
    for (name, nr) in super::syscall_table::X86_64 {
        if *name == "exit_group" {
            continue;
        }
        let hit = [(u64::from(*nr) + 1) << 32 | 5, 0, 0, 0, 0, 0];
        let miss = [5, 0, 0, 0, 0, 0];
        assert_eq!(
            call(&f, AUDIT_X86_64, *nr, hit),
            RET_ERRNO | (nr % 200 + 1),
            "{name}"
        );
        assert_eq!(call(&f, AUDIT_X86_64, *nr, miss), RET_ALLOW, "{name}");
    }
}

/// Forks; the child loads `f` (with no_new_privs) and reports how `getppid` fared as its
/// exit status: 0 if it ran, else the errno.
fn getppid_under(f: &Filter) -> i32 {
    // SAFETY: the child only makes raw syscalls (load allocates nothing) and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: prctl/syscall/_exit with integer arguments.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            if load(f).is_err() {
                libc::_exit(200);
            }
            let r = libc::syscall(libc::SYS_getppid);
            let code = if r < 0 { *libc::__errno_location() } else { 0 };
            libc::_exit(code);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    libc::WEXITSTATUS(status)
}

#[test]
fn the_kernel_accepts_our_programs() {
    let deny = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [ { "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77 } ]
    }));
    assert_eq!(getppid_under(&deny), 77);
    // A big program with trampolines loads, and still allows getppid(0).
    let big = filter(big_profile());
    assert_eq!(getppid_under(&big), 0);
}

#[test]
fn features_lists_what_compile_accepts() {
    let f = features();
    assert_eq!(f.enabled(), &Some(true));
    let actions = f.actions().clone().unwrap_or_default();
    assert!(!actions.contains(&LinuxSeccompAction::ScmpActNotify));
    assert_eq!(actions.len(), 8);
    assert_eq!(f.operators().as_ref().map(Vec::len), Some(7));
    let known = f.known_flags().clone().unwrap_or_default();
    assert!(
        known.contains(&"SECCOMP_FILTER_FLAG_TSYNC".to_string()),
        "{known:?}"
    );
    let supported = f.supported_flags().clone().unwrap_or_default();
    assert!(supported.contains(&"SECCOMP_FILTER_FLAG_TSYNC".to_string()));
    assert!(supported.contains(&"SECCOMP_FILTER_FLAG_LOG".to_string()));
}

//! linux.seccomp (config-linux.md#seccomp): the probe makes a raw mkdirat and reports the
//! errno the filter gave it.

use super::{errno_name, errno_of};
use crate::ensure;
use crate::harness::{Check, Ctx, Outcome};
use serde_json::{json, Value};

pub const CHECKS: &[Check] = &[
    Check {
        id: "seccomp-errno-ret",
        title: "linux.seccomp: SCMP_ACT_ERRNO with errnoRet 38 makes mkdir fail with ENOSYS",
        clause: "config-linux.md#seccomp",
        run: errno_ret,
    },
    Check {
        id: "seccomp-errno-default",
        title: "linux.seccomp: SCMP_ACT_ERRNO without errnoRet fails the call with EPERM",
        clause: "config-linux.md#seccomp",
        run: errno_default,
    },
    Check {
        id: "seccomp-kill-process",
        title: "linux.seccomp: SCMP_ACT_KILL_PROCESS kills the process with SIGSYS at the call",
        clause: "config-linux.md#seccomp",
        run: kill_process,
    },
    Check {
        id: "seccomp-without-nnp",
        title:
            "linux.seccomp: applied to a non-root process without noNewPrivileges or capabilities",
        clause: "config-linux.md#seccomp",
        run: without_nnp,
    },
    Check {
        id: "seccomp-arg-filter",
        title: "linux.seccomp: a rule with args (mode == 0700) matches only those calls",
        clause: "config-linux.md#seccomp",
        run: arg_filter,
    },
];

const ARCHES: &[&str] = &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];

fn profile(rule: Value) -> Value {
    json!({ "defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES, "syscalls": [rule] })
}

fn mkdir_with(ctx: &mut Ctx, rule: Value, mode: &str) -> Result<Value, crate::harness::Fail> {
    let mut b = ctx.bundle(&["mkdir", "/dev/shm/made-by-probe", mode])?;
    b.linux()["seccomp"] = profile(rule);
    ctx.probe(&b)
}

fn errno_ret(ctx: &mut Ctx) -> Outcome {
    let r = mkdir_with(
        ctx,
        json!({ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38 }),
        "755",
    )?;
    ensure!(
        errno_of(&r) == 38,
        "mkdir: {}, wanted errno 38",
        errno_name(errno_of(&r))
    );
    Ok(())
}

fn errno_default(ctx: &mut Ctx) -> Outcome {
    let r = mkdir_with(
        ctx,
        json!({ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO" }),
        "755",
    )?;
    ensure!(
        errno_of(&r) == libc::EPERM as i64,
        "mkdir: {}, wanted EPERM",
        errno_name(errno_of(&r))
    );
    Ok(())
}

fn arg_filter(ctx: &mut Ctx) -> Outcome {
    let rule = json!({
        "names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES,
        "args": [{ "index": 2, "value": 0o700, "op": "SCMP_CMP_EQ" }]
    });
    let hit = mkdir_with(ctx, rule.clone(), "700")?;
    ensure!(
        errno_of(&hit) == libc::EACCES as i64,
        "mkdirat mode 0700: {}, wanted EACCES",
        errno_name(errno_of(&hit))
    );
    let miss = mkdir_with(ctx, rule, "755")?;
    ensure!(
        miss["ok"] == true,
        "mkdirat mode 0755 (not matched by the rule): {}",
        errno_name(errno_of(&miss))
    );
    Ok(())
}

fn kill_process(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["mkdir", "/dev/shm/made-by-probe", "755"])?;
    b.linux()["seccomp"] =
        profile(json!({ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS" }));
    b.write()?;
    let id = ctx.new_id();
    let out = ctx.run_fg(&id, &b);
    ensure!(
        crate::harness::last_json(&out.stdout).is_none(),
        "the probe survived the call and reported {:?}",
        out.stdout.trim()
    );
    // `run` reports a death by signal N as 128 + N, as a shell does.
    ensure!(
        out.code() == Some(128 + libc::SIGSYS),
        "run ended with {}, wanted exit {} (SIGSYS)",
        out.describe(),
        128 + libc::SIGSYS
    );
    Ok(())
}

fn without_nnp(ctx: &mut Ctx) -> Outcome {
    // Loading a filter without no_new_privs needs CAP_SYS_ADMIN, which this process does
    // not end up with: the runtime has to load it before dropping privileges.
    let mut b = ctx.bundle(&["mkdir", "/dev/shm/made-by-probe", "755"])?;
    b.process()["user"] = json!({ "uid": 1000, "gid": 1000 });
    b.process()["noNewPrivileges"] = json!(false);
    b.process()["capabilities"] = json!({});
    b.linux()["seccomp"] = profile(
        json!({ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38 }),
    );
    let r = ctx.probe(&b)?;
    ensure!(
        errno_of(&r) == 38,
        "mkdir: {}, wanted errno 38",
        errno_name(errno_of(&r))
    );
    Ok(())
}

//! The process (config.md#process) and the hostname fields, as the probe sees them.

use super::{int, refused};
use crate::caps;
use crate::ensure;
use crate::harness::{skip, Check, Ctx, Outcome};
use serde_json::{json, Value};

pub const CHECKS: &[Check] = &[
    Check {
        id: "process-args",
        title: "process.args: passed verbatim (empty, spaces, unicode, dashes)",
        clause: "config.md#process",
        run: args,
    },
    Check {
        id: "process-env",
        title: "process.env: every entry is in the environment as given",
        clause: "config.md#process",
        run: env,
    },
    Check {
        id: "process-cwd",
        title: "process.cwd: the working directory",
        clause: "config.md#process",
        run: cwd,
    },
    Check {
        id: "process-user",
        title: "process.user: uid, gid and additionalGids",
        clause: "config.md#user",
        run: user,
    },
    Check {
        id: "process-umask",
        title: "process.user.umask: applied",
        clause: "config.md#user",
        run: umask,
    },
    Check {
        id: "process-nnp-on",
        title: "process.noNewPrivileges true: no_new_privs is set",
        clause: "config.md#process",
        run: nnp_on,
    },
    Check {
        id: "process-nnp-off",
        title: "process.noNewPrivileges false: no_new_privs is not set",
        clause: "config.md#process",
        run: nnp_off,
    },
    Check {
        id: "process-rlimits",
        title: "process.rlimits: soft and hard limits applied",
        clause: "config.md#posix-process",
        run: rlimits,
    },
    Check {
        id: "process-rlimits-invalid",
        title: "process.rlimits: a type the kernel does not have is an error",
        clause: "config.md#posix-process",
        run: rlimits_invalid,
    },
    Check {
        id: "process-caps-sets",
        title: "process.capabilities: bounding, permitted and effective as listed, no inheritable/ambient",
        clause: "config.md#linux-process",
        run: caps_sets,
    },
    Check {
        id: "process-caps-ambient",
        title: "process.capabilities: ambient capability kept by a non-root user",
        clause: "config.md#linux-process",
        run: caps_ambient,
    },
    Check {
        id: "process-caps-unavailable",
        title: "process.capabilities: one the host cannot grant is a warning, not an error",
        clause: "config.md#linux-process (runtime-spec 1.1+)",
        run: caps_unavailable,
    },
    Check {
        id: "process-oom-score-adj",
        title: "process.oomScoreAdj: applied",
        clause: "config.md#linux-process",
        run: oom_score_adj,
    },
    Check {
        id: "hostname",
        title: "hostname: set in the container's uts namespace",
        clause: "config.md#hostname",
        run: hostname,
    },
    Check {
        id: "domainname",
        title: "domainname: set in the container's uts namespace",
        clause: "config.md#domainname",
        run: domainname,
    },
];

fn args(ctx: &mut Ctx) -> Outcome {
    let extra = ["", "two words", "ünïcödé ✓", "-x", "--flag=1", "a\"b'c"];
    let mut argv = vec!["args"];
    argv.extend_from_slice(&extra);
    let b = ctx.bundle(&argv)?;
    let r = ctx.probe(&b)?;
    let mut want = vec![crate::bundle::PROBE, "args"];
    want.extend_from_slice(&extra);
    ensure!(r["args"] == json!(want), "argv {}", r["args"]);
    Ok(())
}

fn env(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["env"])?;
    let vars = [
        "PATH=/bin:/sbin",
        "SIMPLE=1",
        "SPACES=with some spaces",
        "EMPTY=",
        "EQUALS=x=y=z",
    ];
    b.process()["env"] = json!(vars);
    let r = ctx.probe(&b)?;
    let got: Vec<&str> = r["env"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let missing: Vec<&&str> = vars.iter().filter(|v| !got.contains(v)).collect();
    ensure!(
        missing.is_empty(),
        "missing {missing:?}; environment {got:?}"
    );
    Ok(())
}

fn cwd(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["cwd"])?;
    b.process()["cwd"] = json!("/dev/shm");
    let r = ctx.probe(&b)?;
    ensure!(r["cwd"] == "/dev/shm", "cwd {}", r["cwd"]);
    Ok(())
}

fn user(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["ids"])?;
    b.process()["user"] = json!({ "uid": 1000, "gid": 1001, "additionalGids": [1002, 1003] });
    let r = ctx.probe(&b)?;
    for (k, want) in [("uid", 1000), ("euid", 1000), ("gid", 1001), ("egid", 1001)] {
        ensure!(int(&r, k)? == want, "{k} {}, wanted {want} ({r})", r[k]);
    }
    let mut groups: Vec<i64> = r["groups"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    groups.sort();
    ensure!(groups == [1002, 1003], "groups {groups:?}");
    Ok(())
}

fn umask(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["ids"])?;
    b.process()["user"] = json!({ "uid": 0, "gid": 0, "umask": 0o027 });
    let r = ctx.probe(&b)?;
    let got = int(&r, "umask")?;
    ensure!(got == 0o027, "umask {got:#o}, wanted 0o27");
    Ok(())
}

fn nnp(ctx: &mut Ctx, on: bool) -> Outcome {
    let mut b = ctx.bundle(&["ids"])?;
    b.process()["noNewPrivileges"] = json!(on);
    let r = ctx.probe(&b)?;
    let got = int(&r, "no_new_privs")?;
    ensure!(got == i64::from(on), "no_new_privs {got}");
    Ok(())
}

fn nnp_on(ctx: &mut Ctx) -> Outcome {
    nnp(ctx, true)
}

fn nnp_off(ctx: &mut Ctx) -> Outcome {
    nnp(ctx, false)
}

fn rlimits(ctx: &mut Ctx) -> Outcome {
    // Lower than the runtime's own limits: raising a hard limit needs CAP_SYS_RESOURCE.
    let (soft, hard) = ctx.env.host.nofile;
    let nofile_hard = hard.min(1000);
    let nofile_soft = soft.min(512).min(nofile_hard);
    let want = [
        ("RLIMIT_NOFILE", nofile_soft, nofile_hard),
        ("RLIMIT_CORE", 0, 0),
        ("RLIMIT_MSGQUEUE", 4096, 8192),
    ];
    let mut b = ctx.bundle(&["rlimits"])?;
    b.process()["rlimits"] = want
        .iter()
        .map(|(t, s, h)| json!({ "type": t, "soft": s, "hard": h }))
        .collect();
    let r = ctx.probe(&b)?;
    for (t, s, h) in want {
        ensure!(r[t] == json!([s, h]), "{t} is {}, wanted [{s},{h}]", r[t]);
    }
    Ok(())
}

fn rlimits_invalid(ctx: &mut Ctx) -> Outcome {
    refused(ctx, "rlimit type RLIMIT_NO_SUCH_THING", |b| {
        b.process()["rlimits"] = json!([{ "type": "RLIMIT_NO_SUCH_THING", "soft": 1, "hard": 1 }])
    })
}

fn mask_of(r: &Value, set: &str) -> u64 {
    r[set].as_u64().unwrap_or(u64::MAX)
}

fn caps_sets(ctx: &mut Ctx) -> Outcome {
    // For uid 0 the kernel's execve makes effective equal to permitted (the file's effective
    // bit counts as set for root), so a root process can only be checked with the two equal;
    // no_new_privs keeps execve from raising permitted to the bounding set.
    let bounding = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"];
    let kept = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"];
    let mut b = ctx.bundle(&["caps"])?;
    b.process()["noNewPrivileges"] = json!(true);
    b.process()["capabilities"] = json!({
        "bounding": bounding, "permitted": kept, "effective": kept
    });
    let r = ctx.probe(&b)?;
    for (set, names) in [
        ("bounding", &bounding[..]),
        ("permitted", &kept[..]),
        ("effective", &kept[..]),
        ("inheritable", &[][..]),
        ("ambient", &[][..]),
    ] {
        let got = mask_of(&r, set);
        ensure!(
            got == caps::mask(names),
            "{set}: {:?}, wanted {names:?}",
            caps::names(got)
        );
    }
    Ok(())
}

fn caps_ambient(ctx: &mut Ctx) -> Outcome {
    let set = ["CAP_NET_BIND_SERVICE"];
    let mut b = ctx.bundle(&["caps"])?;
    b.process()["user"] = json!({ "uid": 1000, "gid": 1000 });
    b.process()["capabilities"] = json!({
        "bounding": set, "permitted": set, "effective": set, "inheritable": set, "ambient": set
    });
    let r = ctx.probe(&b)?;
    let want = caps::mask(&set);
    for s in ["ambient", "effective", "permitted"] {
        let got = mask_of(&r, s);
        ensure!(got == want, "{s}: {:?}, wanted {set:?}", caps::names(got));
    }
    Ok(())
}

fn caps_unavailable(ctx: &mut Ctx) -> Outcome {
    let missing = ctx.env.host.missing_caps();
    let Some(cap) = missing.first().cloned() else {
        return Err(skip("the host's bounding set has every capability"));
    };
    let list = ["CAP_CHOWN".to_string(), cap.clone()];
    let mut b = ctx.bundle(&["caps"])?;
    b.process()["capabilities"] = json!({
        "bounding": list, "permitted": list, "effective": list
    });
    let r = ctx.probe(&b)?;
    let got = mask_of(&r, "effective");
    ensure!(
        got & caps::mask(&["CAP_CHOWN"]) != 0,
        "effective {:?} lacks CAP_CHOWN (asked for CAP_CHOWN and {cap})",
        caps::names(got)
    );
    Ok(())
}

fn oom_score_adj(ctx: &mut Ctx) -> Outcome {
    // Raising the score needs no privilege; lowering it needs CAP_SYS_RESOURCE.
    let want = (ctx.env.host.oom_score_adj + 100).min(1000);
    let mut b = ctx.bundle(&["oom"])?;
    b.process()["oomScoreAdj"] = json!(want);
    let r = ctx.probe(&b)?;
    ensure!(
        r["oom_score_adj"] == json!(want),
        "oom_score_adj {}, wanted {want}",
        r["oom_score_adj"]
    );
    Ok(())
}

fn hostname(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["hostname"])?;
    b.config["hostname"] = json!("conformance-host");
    let r = ctx.probe(&b)?;
    ensure!(
        r["hostname"] == "conformance-host",
        "hostname {}",
        r["hostname"]
    );
    Ok(())
}

fn domainname(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["hostname"])?;
    b.config["domainname"] = json!("conformance.example");
    let r = ctx.probe(&b)?;
    ensure!(
        r["domainname"] == "conformance.example",
        "domainname {}",
        r["domainname"]
    );
    Ok(())
}

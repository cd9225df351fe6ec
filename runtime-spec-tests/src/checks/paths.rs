//! maskedPaths, readonlyPaths and sysctl (config-linux.md).

use super::{errno_name, errno_of};
use crate::ensure;
use crate::harness::{Check, Ctx, Fail, Outcome};
use serde_json::json;
use std::fs;

pub const CHECKS: &[Check] = &[
    Check {
        id: "masked-file",
        title: "linux.maskedPaths: a file reads as empty",
        clause: "config-linux.md#masked-paths",
        run: masked_file,
    },
    Check {
        id: "masked-dir",
        title: "linux.maskedPaths: a directory lists as empty",
        clause: "config-linux.md#masked-paths",
        run: masked_dir,
    },
    Check {
        id: "readonly-path",
        title: "linux.readonlyPaths: writes below the path fail (EROFS), the rest stays writable",
        clause: "config-linux.md#readonly-paths",
        run: readonly_path,
    },
    Check {
        id: "sysctl-net",
        title: "linux.sysctl: net.ipv4.ip_forward set in the container's network namespace only",
        clause: "config-linux.md#sysctl",
        run: sysctl_net,
    },
    Check {
        id: "sysctl-ipc",
        title: "linux.sysctl: kernel.msgmax set in the container's ipc namespace only",
        clause: "config-linux.md#sysctl",
        run: sysctl_ipc,
    },
];

fn io(e: std::io::Error) -> Fail {
    Fail::Fail(e.to_string())
}

fn masked_file(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["read", "/secret"])?;
    fs::write(b.rootfs().join("secret"), "do not read\n").map_err(io)?;
    b.linux()["maskedPaths"] = json!(["/secret"]);
    let r = ctx.probe(&b)?;
    ensure!(
        r["ok"] == true && r["content"] == "",
        "read: {} {}",
        r["content"],
        errno_name(errno_of(&r))
    );
    Ok(())
}

fn masked_dir(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["ls", "/secrets"])?;
    let d = b.rootfs().join("secrets");
    fs::create_dir_all(&d).map_err(io)?;
    fs::write(d.join("key"), "do not read\n").map_err(io)?;
    b.linux()["maskedPaths"] = json!(["/secrets"]);
    let r = ctx.probe(&b)?;
    ensure!(
        r["ok"] == true && r["entries"] == json!([]),
        "listing: {} {}",
        r["entries"],
        errno_name(errno_of(&r))
    );
    Ok(())
}

fn readonly_path(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["write", "/frozen/new"])?;
    fs::create_dir_all(b.rootfs().join("frozen")).map_err(io)?;
    b.config["root"]["readonly"] = json!(false);
    b.linux()["readonlyPaths"] = json!(["/frozen"]);
    let r = ctx.probe(&b)?;
    ensure!(
        r["ok"] == false && errno_of(&r) == libc::EROFS as i64,
        "write below /frozen: {}",
        errno_name(errno_of(&r))
    );
    // The same config without the readonly path takes the write: the error came from it.
    let mut b2 = ctx.bundle(&["write", "/frozen/new"])?;
    fs::create_dir_all(b2.rootfs().join("frozen")).map_err(io)?;
    b2.config["root"]["readonly"] = json!(false);
    let r2 = ctx.probe(&b2)?;
    ensure!(
        r2["ok"] == true,
        "without readonlyPaths the write fails too: {}",
        errno_name(errno_of(&r2))
    );
    Ok(())
}

fn host_sysctl(key: &str) -> String {
    fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn sysctl(ctx: &mut Ctx, key: &str, candidates: [&str; 2]) -> Outcome {
    let before = host_sysctl(key);
    // A value different from the host's, so that a leak to the host would show.
    let value = if candidates[0] == before {
        candidates[1]
    } else {
        candidates[0]
    };
    let mut b = ctx.bundle(&["sysctl", key])?;
    b.linux()["sysctl"] = json!({ key: value });
    let r = ctx.probe(&b)?;
    ensure!(
        r[key] == value,
        "{key} is {} in the container, wanted {value}",
        r[key]
    );
    let after = host_sysctl(key);
    ensure!(
        after == before,
        "the host's {key} changed from {before} to {after}"
    );
    Ok(())
}

fn sysctl_net(ctx: &mut Ctx) -> Outcome {
    sysctl(ctx, "net.ipv4.ip_forward", ["1", "0"])
}

fn sysctl_ipc(ctx: &mut Ctx) -> Outcome {
    sysctl(ctx, "kernel.msgmax", ["4096", "16384"])
}

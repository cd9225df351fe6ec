//! linux.devices, the default devices and /dev symlinks, and the device cgroup
//! (config-linux.md#devices, #default-devices, #device-allowlist; runtime-linux.md).

use super::{errno_name, errno_of};
use crate::ensure;
use crate::harness::{Check, Ctx, Fail, Outcome};
use serde_json::{json, Value};

pub const CHECKS: &[Check] = &[
    Check {
        id: "devices-default",
        title: "default devices: null, zero, full, random, urandom, tty with their numbers; ptmx",
        clause: "config-linux.md#default-devices",
        run: default_devices,
    },
    Check {
        id: "devices-configured",
        title: "linux.devices: a char device and a fifo with type, numbers, fileMode, uid, gid",
        clause: "config-linux.md#devices",
        run: configured,
    },
    Check {
        id: "dev-symlinks",
        title: "/dev/fd, /dev/stdin, /dev/stdout, /dev/stderr link to /proc/self/fd",
        clause: "runtime-linux.md#dev-symbolic-links",
        run: symlinks,
    },
    Check {
        id: "devices-cgroup-deny",
        title: "linux.resources.devices: deny-all keeps a device not allowed from being opened",
        clause: "config-linux.md#allowed-device-list",
        run: cgroup_deny,
    },
    Check {
        id: "devices-cgroup-access",
        title: "linux.resources.devices: an allow rule with access \"r\" does not allow writing",
        clause: "config-linux.md#allowed-device-list",
        run: cgroup_access,
    },
    Check {
        id: "devices-cgroup-allow",
        title: "linux.resources.devices: an allow rule after deny-all lets the device be opened",
        clause: "config-linux.md#allowed-device-list",
        run: cgroup_allow,
    },
];

fn paths(r: &Value) -> Vec<Value> {
    r["paths"].as_array().cloned().unwrap_or_default()
}

fn default_devices(ctx: &mut Ctx) -> Outcome {
    let want = [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ];
    let mut args = vec!["stat"];
    args.extend(want.iter().map(|w| w.0));
    args.push("/dev/ptmx");
    let b = ctx.bundle(&args)?;
    let r = ctx.probe(&b)?;
    let got = paths(&r);
    for (i, (path, major, minor)) in want.iter().enumerate() {
        let s = &got[i];
        ensure!(
            s["kind"] == "char" && s["major"] == *major && s["minor"] == *minor,
            "{path}: {s}"
        );
    }
    let ptmx = &got[want.len()];
    ensure!(
        ptmx["exists"] == true,
        "/dev/ptmx missing (errno {})",
        ptmx["errno"]
    );
    Ok(())
}

fn configured(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["stat", "/dev/conformance-null", "/dev/conformance-fifo"])?;
    b.linux()["devices"] = json!([
        { "path": "/dev/conformance-null", "type": "c", "major": 1, "minor": 3,
          "fileMode": 0o640, "uid": 1000, "gid": 1001 },
        { "path": "/dev/conformance-fifo", "type": "p", "fileMode": 0o600, "uid": 0, "gid": 0 }
    ]);
    let r = ctx.probe(&b)?;
    let got = paths(&r);
    let c = &got[0];
    ensure!(
        c["kind"] == "char" && c["major"] == 1 && c["minor"] == 3,
        "char device: {c}"
    );
    ensure!(
        c["mode"] == 0o640 && c["uid"] == 1000 && c["gid"] == 1001,
        "char device mode {:o} owner {}:{}",
        c["mode"].as_u64().unwrap_or(0),
        c["uid"],
        c["gid"]
    );
    let p = &got[1];
    ensure!(p["kind"] == "fifo" && p["mode"] == 0o600, "fifo: {p}");
    Ok(())
}

fn symlinks(ctx: &mut Ctx) -> Outcome {
    let links = [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ];
    let mut args = vec!["stat"];
    args.extend(links.iter().map(|l| l.0));
    let b = ctx.bundle(&args)?;
    let r = ctx.probe(&b)?;
    for (s, (path, target)) in paths(&r).iter().zip(links) {
        ensure!(s["kind"] == "symlink" && s["link"] == target, "{path}: {s}");
    }
    Ok(())
}

/// /dev/kmsg's numbers at another path: a device runc's default allow list leaves out.
/// Opened write-only, which needs no privilege and writes nothing.
const DEV: &str = "/dev/conformance-kmsg";

fn open_kmsg(ctx: &mut Ctx, rules: Value) -> Result<Value, Fail> {
    let mut b = ctx.bundle(&["open", DEV, "w"])?;
    b.linux()["devices"] = json!([
        { "path": DEV, "type": "c", "major": 1, "minor": 11, "fileMode": 0o666 }
    ]);
    b.linux()["resources"]["devices"] = rules;
    ctx.probe(&b)
}

fn cgroup_deny(ctx: &mut Ctx) -> Outcome {
    let r = open_kmsg(ctx, json!([{ "allow": false, "access": "rwm" }]))?;
    ensure!(
        r["ok"] == false && errno_of(&r) == libc::EPERM as i64,
        "open of a denied device: {}",
        errno_name(errno_of(&r))
    );
    Ok(())
}

fn cgroup_allow(ctx: &mut Ctx) -> Outcome {
    let r = open_kmsg(
        ctx,
        json!([
            { "allow": false, "access": "rwm" },
            { "allow": true, "type": "c", "major": 1, "minor": 11, "access": "rw" }
        ]),
    )?;
    ensure!(
        r["ok"] == true,
        "open of an allowed device: {}",
        errno_name(errno_of(&r))
    );
    Ok(())
}

fn cgroup_access(ctx: &mut Ctx) -> Outcome {
    let r = open_kmsg(
        ctx,
        json!([
            { "allow": false, "access": "rwm" },
            { "allow": true, "type": "c", "major": 1, "minor": 11, "access": "r" }
        ]),
    )?;
    ensure!(
        r["ok"] == false && errno_of(&r) == libc::EPERM as i64,
        "open for writing with only \"r\" allowed: {}",
        errno_name(errno_of(&r))
    );
    Ok(())
}

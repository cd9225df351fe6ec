//! linux.namespaces and the user/time namespace fields (config-linux.md#namespaces).

use super::{refused, text};
use crate::bundle::Bundle;
use crate::ensure;
use crate::harness::{Check, Ctx, Fail, Outcome};
use serde_json::{json, Value};

pub const CHECKS: &[Check] = &[
    Check {
        id: "ns-new-pid",
        title: "linux.namespaces pid: a new pid namespace, the process is pid 1",
        clause: "config-linux.md#namespaces",
        run: new_pid,
    },
    Check {
        id: "ns-new-network",
        title: "linux.namespaces network: a new network namespace with only lo",
        clause: "config-linux.md#namespaces",
        run: new_network,
    },
    Check {
        id: "ns-new-ipc",
        title: "linux.namespaces ipc: a new ipc namespace",
        clause: "config-linux.md#namespaces",
        run: new_ipc,
    },
    Check {
        id: "ns-new-uts",
        title: "linux.namespaces uts: a new uts namespace with the configured hostname",
        clause: "config-linux.md#namespaces",
        run: new_uts,
    },
    Check {
        id: "ns-new-mount",
        title: "linux.namespaces mount: a new mount namespace",
        clause: "config-linux.md#namespaces",
        run: new_mount,
    },
    Check {
        id: "ns-new-cgroup",
        title: "linux.namespaces cgroup: a new cgroup namespace rooted at the container's cgroup",
        clause: "config-linux.md#namespaces",
        run: new_cgroup,
    },
    Check {
        id: "ns-new-user",
        title: "linux.namespaces user: a new user namespace with uidMappings/gidMappings",
        clause: "config-linux.md#namespaces, config-linux.md#user-namespace-mappings",
        run: new_user,
    },
    Check {
        id: "ns-new-time",
        title: "linux.namespaces time: a new time namespace",
        clause: "config-linux.md#namespaces",
        run: new_time,
    },
    Check {
        id: "ns-time-offsets",
        title: "linux.timeOffsets: monotonic and boottime offsets applied",
        clause: "config-linux.md#offset-for-time-namespace",
        run: time_offsets,
    },
    Check {
        id: "ns-inherit",
        title: "linux.namespaces: a type not listed is the runtime's namespace",
        clause: "config-linux.md#namespaces",
        run: inherit,
    },
    Check {
        id: "ns-join-path",
        title: "linux.namespaces path: the container joins that namespace",
        clause: "config-linux.md#namespaces",
        run: join_path,
    },
    Check {
        id: "ns-path-wrong-type",
        title: "linux.namespaces path: a namespace of another type is an error",
        clause: "config-linux.md#namespaces",
        run: path_wrong_type,
    },
    Check {
        id: "ns-duplicate",
        title: "linux.namespaces: a type listed twice is an error",
        clause: "config-linux.md#namespaces",
        run: duplicate,
    },
];

/// The link name under /proc/PID/ns for a config namespace type.
fn link_name(typ: &str) -> &str {
    match typ {
        "network" => "net",
        "mount" => "mnt",
        t => t,
    }
}

/// Runs the probe's `ns` report with namespace `typ` listed as new; checks it differs from
/// the runner's own and returns the report.
fn new_ns(ctx: &mut Ctx, typ: &str, adjust: impl FnOnce(&mut Bundle)) -> Result<Value, Fail> {
    let mut b = ctx.bundle(&["ns"])?;
    b.set_namespace(typ, None);
    adjust(&mut b);
    let r = ctx.probe(&b)?;
    let link = link_name(typ);
    let host = ctx.env.host.ns.get(link).cloned().unwrap_or_default();
    let got = text(&r["ns"], link);
    ensure!(!got.is_empty(), "no /proc/self/ns/{link} in the container");
    ensure!(
        got != host,
        "{link} namespace is the runtime's own ({host})"
    );
    Ok(r)
}

fn new_pid(ctx: &mut Ctx) -> Outcome {
    let r = new_ns(ctx, "pid", |_| {})?;
    ensure!(r["pid"] == 1, "the process is pid {}", r["pid"]);
    Ok(())
}

fn new_network(ctx: &mut Ctx) -> Outcome {
    let r = new_ns(ctx, "network", |_| {})?;
    ensure!(
        r["interfaces"] == json!(["lo"]),
        "interfaces {}",
        r["interfaces"]
    );
    Ok(())
}

fn new_ipc(ctx: &mut Ctx) -> Outcome {
    new_ns(ctx, "ipc", |_| {}).map(drop)
}

fn new_uts(ctx: &mut Ctx) -> Outcome {
    let r = new_ns(ctx, "uts", |b| b.config["hostname"] = json!("uts-check"))?;
    ensure!(r["hostname"] == "uts-check", "hostname {}", r["hostname"]);
    Ok(())
}

fn new_mount(ctx: &mut Ctx) -> Outcome {
    new_ns(ctx, "mount", |_| {}).map(drop)
}

fn new_cgroup(ctx: &mut Ctx) -> Outcome {
    let r = new_ns(ctx, "cgroup", |_| {})?;
    // In its own cgroup namespace the container sees its cgroup as the root; without one it
    // would see its host path, which holds the run's tag.
    let lines: Vec<&str> = r["cgroup"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    ensure!(!lines.is_empty(), "no /proc/self/cgroup");
    let leaked: Vec<&&str> = lines.iter().filter(|l| l.contains(&ctx.env.tag)).collect();
    ensure!(
        leaked.is_empty(),
        "the container sees its host cgroup path: {leaked:?}"
    );
    Ok(())
}

const MAP_HOST: u32 = 100000;
const MAP_SIZE: u32 = 65536;

fn new_user(ctx: &mut Ctx) -> Outcome {
    let r = new_ns(ctx, "user", |b| {
        let map = json!([{ "containerID": 0, "hostID": MAP_HOST, "size": MAP_SIZE }]);
        b.linux()["uidMappings"] = map.clone();
        b.linux()["gidMappings"] = map;
    })?;
    for key in ["uid_map", "gid_map"] {
        let fields: Vec<String> = r[key]
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        ensure!(
            fields == ["0", &MAP_HOST.to_string(), &MAP_SIZE.to_string()],
            "{key} {}",
            r[key]
        );
    }
    Ok(())
}

fn new_time(ctx: &mut Ctx) -> Outcome {
    new_ns(ctx, "time", |_| {}).map(drop)
}

fn monotonic_now() -> (f64, f64) {
    let read = |id| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime into a valid struct.
        unsafe { libc::clock_gettime(id, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    };
    (read(libc::CLOCK_MONOTONIC), read(libc::CLOCK_BOOTTIME))
}

fn time_offsets(ctx: &mut Ctx) -> Outcome {
    const MONO: i64 = 86400;
    const BOOT: i64 = 2 * 86400;
    let mut b = ctx.bundle(&["clock"])?;
    b.set_namespace("time", None);
    b.linux()["timeOffsets"] = json!({
        "monotonic": { "secs": MONO, "nanosecs": 0 },
        "boottime": { "secs": BOOT, "nanosecs": 0 }
    });
    let (mono, boot) = monotonic_now();
    let r = ctx.probe(&b)?;
    let dm = r["monotonic"].as_f64().unwrap_or(0.0) - mono;
    let db = r["boottime"].as_f64().unwrap_or(0.0) - boot;
    let near = |d: f64, want: i64| (d - want as f64).abs() < 30.0;
    ensure!(
        near(dm, MONO) && near(db, BOOT),
        "clocks ahead of the host's by {dm:.0} s (monotonic) and {db:.0} s (boottime), wanted {MONO} and {BOOT}"
    );
    Ok(())
}

fn inherit(ctx: &mut Ctx) -> Outcome {
    let mut b = ctx.bundle(&["ns"])?;
    for t in ["ipc", "uts", "network"] {
        b.remove_namespace(t);
    }
    // A hostname needs a uts namespace of the container's own.
    b.config.as_object_mut().map(|o| o.remove("hostname"));
    let r = ctx.probe(&b)?;
    for link in ["ipc", "uts", "net"] {
        let host = ctx.env.host.ns.get(link).cloned().unwrap_or_default();
        let got = text(&r["ns"], link);
        ensure!(got == host, "{link}: {got}, the runtime's is {host}");
    }
    Ok(())
}

/// Creates a container to own namespaces others join; returns its pid.
fn namespace_owner(ctx: &mut Ctx, hostname: &str) -> Result<i64, Fail> {
    let mut a = ctx.bundle(&["sleep", "30"])?;
    a.config["hostname"] = json!(hostname);
    a.write()?;
    let id = ctx.new_id();
    ctx.create_ok(&id, &a, &[])?;
    ctx.pid(&id)
}

fn join_path(ctx: &mut Ctx) -> Outcome {
    let owner = namespace_owner(ctx, "joined-uts")?;
    let want = crate::host::namespaces_of(&owner.to_string());
    let mut b = ctx.bundle(&["ns"])?;
    b.config.as_object_mut().map(|o| o.remove("hostname"));
    b.set_namespace("uts", Some(&format!("/proc/{owner}/ns/uts")));
    b.set_namespace("ipc", Some(&format!("/proc/{owner}/ns/ipc")));
    let r = ctx.probe(&b)?;
    for link in ["uts", "ipc"] {
        let got = text(&r["ns"], link);
        let w = want.get(link).cloned().unwrap_or_default();
        ensure!(got == w, "{link}: {got}, the joined one is {w}");
    }
    ensure!(r["hostname"] == "joined-uts", "hostname {}", r["hostname"]);
    Ok(())
}

fn path_wrong_type(ctx: &mut Ctx) -> Outcome {
    let owner = namespace_owner(ctx, "owner")?;
    let attempt = |ctx: &mut Ctx, ns: &str| -> Result<bool, Fail> {
        let mut b = ctx.bundle(&["ns"])?;
        b.config.as_object_mut().map(|o| o.remove("hostname"));
        b.set_namespace("uts", Some(&format!("/proc/{owner}/ns/{ns}")));
        b.write()?;
        let id = ctx.new_id();
        Ok(ctx.run_fg(&id, &b).ok())
    };
    ensure!(
        !attempt(ctx, "ipc")?,
        "a uts namespace path naming an ipc namespace was accepted"
    );
    // The same config with the right type works: the error was about the type.
    ensure!(
        attempt(ctx, "uts")?,
        "the control run (uts path naming a uts namespace) failed too"
    );
    Ok(())
}

fn duplicate(ctx: &mut Ctx) -> Outcome {
    refused(ctx, "uts listed twice", |b| {
        b.push_namespace(json!({ "type": "uts" }))
    })
}

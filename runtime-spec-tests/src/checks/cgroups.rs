//! linux.cgroupsPath and linux.resources, read from the host: the container's cgroup is found
//! through /proc/PID/cgroup and its files are compared with the config. Limits must be in
//! place once `create` returns (runtime.md#create: everything but process.args is applied).

use super::refused;
use crate::ensure;
use crate::harness::{skip, Check, Ctx, Fail, Outcome};
use crate::host::{controller_dir, proc_cgroup, CgroupLayout};
use serde_json::{json, Value};

pub const CHECKS: &[Check] = &[
    Check {
        id: "cgroups-path",
        title:
            "linux.cgroupsPath: the process is in that cgroup, relative to each hierarchy's root",
        clause: "config-linux.md#cgroups-path",
        run: cgroups_path,
    },
    Check {
        id: "cgroup-memory",
        title: "linux.resources.memory: limit, reservation and swap written to the memory cgroup",
        clause: "config-linux.md#memory",
        run: memory,
    },
    Check {
        id: "cgroup-pids",
        title: "linux.resources.pids: limit written to the pids cgroup",
        clause: "config-linux.md#pids",
        run: pids,
    },
    Check {
        id: "cgroup-cpu-shares",
        title: "linux.resources.cpu.shares: written to the cpu cgroup",
        clause: "config-linux.md#cpu",
        run: cpu_shares,
    },
    Check {
        id: "cgroup-cpu-quota",
        title: "linux.resources.cpu.quota/period: written to the cpu cgroup",
        clause: "config-linux.md#cpu",
        run: cpu_quota,
    },
    Check {
        id: "cgroup-cpuset",
        title: "linux.resources.cpu.cpus/mems: written to the cpuset cgroup",
        clause: "config-linux.md#cpu",
        run: cpuset,
    },
    Check {
        id: "cgroup-blkio-throttle",
        title: "linux.resources.blockIO.throttleReadBpsDevice: written to the blkio cgroup",
        clause: "config-linux.md#block-io",
        run: blkio_throttle,
    },
    Check {
        id: "cgroup-unified-on-v1",
        title: "linux.resources.unified naming a controller the v2 hierarchy lacks is an error",
        clause: "config-linux.md#unified",
        run: unified_on_v1,
    },
];

/// Creates a container with `resources` and returns its pid.
fn create_with(ctx: &mut Ctx, resources: Value) -> Result<i64, Fail> {
    let mut b = ctx.bundle(&["sleep", "30"])?;
    let mut res = resources;
    res["devices"] = json!([{ "allow": false, "access": "rwm" }]);
    b.linux()["resources"] = res;
    b.write()?;
    let id = ctx.new_id();
    ctx.create_ok(&id, &b, &[])?;
    ctx.pid(&id)
}

/// One cgroup file and the value it should hold, per layout.
struct Want {
    controller: &'static str,
    v1: (&'static str, String),
    v2: (&'static str, String),
}

fn compare(ctx: &mut Ctx, pid: i64, wants: &[Want]) -> Outcome {
    let unified = ctx.env.host.cgroup_layout == CgroupLayout::Unified;
    for w in wants {
        let (file, value) = if unified { &w.v2 } else { &w.v1 };
        let dir = controller_dir(&ctx.env.host, pid, w.controller).ok_or_else(|| {
            Fail::Fail(format!(
                "no {} cgroup for pid {pid} on this host ({:?})",
                w.controller,
                proc_cgroup(pid)
            ))
        })?;
        let path = dir.join(file);
        let got = std::fs::read_to_string(&path)
            .map_err(|e| Fail::Fail(format!("{}: {e}", path.display())))?;
        ensure!(
            got.lines().any(|l| l.trim() == value),
            "{}: {:?}, wanted {value:?}",
            path.display(),
            got.trim()
        );
    }
    Ok(())
}

fn cgroups_path(ctx: &mut Ctx) -> Outcome {
    let b = ctx.bundle(&["sleep", "30"])?;
    let id = ctx.new_id();
    b.write()?;
    ctx.create_ok(&id, &b, &[])?;
    let pid = ctx.pid(&id)?;
    let want = b.cgroups_path();
    let lines = proc_cgroup(pid);
    let unified = ctx.env.host.cgroup_layout == CgroupLayout::Unified;
    let wanted: &[&str] = if unified {
        &[""]
    } else {
        &["memory", "pids", "cpu", "devices"]
    };
    for c in wanted {
        let line = lines.iter().find(|(ctrls, _)| {
            if c.is_empty() {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|x| x == *c)
            }
        });
        let Some((_, path)) = line else {
            return Err(Fail::Fail(format!(
                "no {c:?} line in /proc/{pid}/cgroup: {lines:?}"
            )));
        };
        ensure!(
            path == &want,
            "{}: the process is in {path}, cgroupsPath is {want}",
            if c.is_empty() { "v2" } else { c }
        );
    }
    Ok(())
}

fn memory(ctx: &mut Ctx) -> Outcome {
    const LIMIT: i64 = 64 << 20;
    const RESERVATION: i64 = 32 << 20;
    const SWAP: i64 = 128 << 20;
    let pid = create_with(
        ctx,
        json!({ "memory": { "limit": LIMIT, "reservation": RESERVATION, "swap": SWAP } }),
    )?;
    let mut wants = vec![
        Want {
            controller: "memory",
            v1: ("memory.limit_in_bytes", LIMIT.to_string()),
            v2: ("memory.max", LIMIT.to_string()),
        },
        Want {
            controller: "memory",
            v1: ("memory.soft_limit_in_bytes", RESERVATION.to_string()),
            v2: ("memory.low", RESERVATION.to_string()),
        },
    ];
    // Swap accounting may be off (no memsw files / no memory.swap.max): then only the rest.
    let swap_file = if ctx.env.host.cgroup_layout == CgroupLayout::Unified {
        "memory.swap.max"
    } else {
        "memory.memsw.limit_in_bytes"
    };
    if controller_dir(&ctx.env.host, pid, "memory").is_some_and(|d| d.join(swap_file).exists()) {
        wants.push(Want {
            controller: "memory",
            v1: ("memory.memsw.limit_in_bytes", SWAP.to_string()),
            v2: ("memory.swap.max", (SWAP - LIMIT).to_string()),
        });
    }
    compare(ctx, pid, &wants)
}

fn pids(ctx: &mut Ctx) -> Outcome {
    let pid = create_with(ctx, json!({ "pids": { "limit": 123 } }))?;
    compare(
        ctx,
        pid,
        &[Want {
            controller: "pids",
            v1: ("pids.max", "123".into()),
            v2: ("pids.max", "123".into()),
        }],
    )
}

fn cpu_shares(ctx: &mut Ctx) -> Outcome {
    let pid = create_with(ctx, json!({ "cpu": { "shares": 512 } }))?;
    // v2: the conversion runc and crun use, 1 + ((shares - 2) * 9999) / 262142.
    let weight = 1 + ((512 - 2) * 9999) / 262142;
    compare(
        ctx,
        pid,
        &[Want {
            controller: "cpu",
            v1: ("cpu.shares", "512".into()),
            v2: ("cpu.weight", weight.to_string()),
        }],
    )
}

fn cpu_quota(ctx: &mut Ctx) -> Outcome {
    let pid = create_with(ctx, json!({ "cpu": { "quota": 50000, "period": 100000 } }))?;
    compare(
        ctx,
        pid,
        &[
            Want {
                controller: "cpu",
                v1: ("cpu.cfs_quota_us", "50000".into()),
                v2: ("cpu.max", "50000 100000".into()),
            },
            Want {
                controller: "cpu",
                v1: ("cpu.cfs_period_us", "100000".into()),
                v2: ("cpu.max", "50000 100000".into()),
            },
        ],
    )
}

fn cpuset(ctx: &mut Ctx) -> Outcome {
    let pid = create_with(ctx, json!({ "cpu": { "cpus": "0", "mems": "0" } }))?;
    compare(
        ctx,
        pid,
        &[
            Want {
                controller: "cpuset",
                v1: ("cpuset.cpus", "0".into()),
                v2: ("cpuset.cpus", "0".into()),
            },
            Want {
                controller: "cpuset",
                v1: ("cpuset.mems", "0".into()),
                v2: ("cpuset.mems", "0".into()),
            },
        ],
    )
}

/// The major:minor of a block device this host has (the throttle files only take real ones).
fn some_block_device() -> Option<(u32, u32)> {
    let mut entries: Vec<String> = std::fs::read_dir("/sys/dev/block")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_owned))
        .collect();
    entries.sort();
    entries.iter().find_map(|e| {
        let (a, b) = e.split_once(':')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    })
}

fn blkio_throttle(ctx: &mut Ctx) -> Outcome {
    let Some((major, minor)) = some_block_device() else {
        return Err(skip("this host has no block device"));
    };
    const RATE: u64 = 1048576;
    let pid = create_with(
        ctx,
        json!({ "blockIO": { "throttleReadBpsDevice": [
            { "major": major, "minor": minor, "rate": RATE }
        ] } }),
    )?;
    let v2_line = format!("{major}:{minor} rbps={RATE} wbps=max riops=max wiops=max");
    compare(
        ctx,
        pid,
        &[Want {
            controller: "blkio",
            v1: (
                "blkio.throttle.read_bps_device",
                format!("{major}:{minor} {RATE}"),
            ),
            v2: ("io.max", v2_line),
        }],
    )
}

fn unified_on_v1(ctx: &mut Ctx) -> Outcome {
    // Only meaningful where the v2 hierarchy lacks pids: a v1 host without one, or a hybrid
    // host whose cgroup2 mount has no controllers (the common case).
    let v2_controllers = ctx
        .env
        .host
        .cgroup_mounts
        .iter()
        .find(|m| m.v2)
        .map(|m| {
            std::fs::read_to_string(m.mount_point.join("cgroup.controllers")).unwrap_or_default()
        })
        .unwrap_or_default();
    if v2_controllers.split_whitespace().any(|c| c == "pids") {
        return Err(skip("the v2 hierarchy here has the pids controller"));
    }
    refused(
        ctx,
        "unified pids.max on a host whose v2 hierarchy has no pids controller",
        |b| b.linux()["resources"]["unified"] = json!({ "pids.max": "10" }),
    )
}

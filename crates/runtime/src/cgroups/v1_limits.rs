//! Planning `linux.resources` for cgroup v1 controller directories: which files, which
//! values, in which order. Reads the cgroup's current values (for ordering, validation and
//! undo) but writes nothing.

use super::resources::{read, read_u64, Step};
use crate::error::{Error, Result};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxInterfacePriority, LinuxMemory, LinuxRdma,
    LinuxThrottleDevice,
};
use std::collections::HashMap;
use std::path::Path;

fn err(field: &str, why: impl std::fmt::Display) -> Error {
    Error::Cgroup(format!("{field}: {why}"))
}

/// `Some(v)` unless unset or 0 (runc treats 0 as "not set" for these), checked >= -1.
pub fn signed(v: Option<i64>, field: &str) -> Result<Option<i64>> {
    match v {
        None | Some(0) => Ok(None),
        Some(v) if v < -1 => Err(err(field, format!("{v} is not a limit (use -1 for none)"))),
        Some(v) => Ok(Some(v)),
    }
}

/// The kernel prints "no limit" as the largest page-aligned value; anything this large
/// is unlimited, and -1 in the config means the same.
pub fn unlimited_as_max(v: u64) -> u64 {
    if v >= 1 << 62 {
        u64::MAX
    } else {
        v
    }
}

pub fn as_u64(v: i64) -> u64 {
    if v < 0 {
        u64::MAX
    } else {
        v as u64
    }
}

pub fn warn_kernel_memory(m: &LinuxMemory) {
    #[allow(deprecated)]
    if m.kernel().is_some() || m.kernel_tcp().is_some() {
        // runc: "Kernel memory settings are ignored and will be removed".
        tracing::warn!(
            "linux.resources.memory.kernel/kernelTCP: kernel memory limits are deprecated and \
             ignored"
        );
    }
}

pub fn memory(dir: &Path, m: &LinuxMemory) -> Result<Vec<Step>> {
    const LIMIT: &str = "linux.resources.memory.limit";
    const SWAP: &str = "linux.resources.memory.swap";
    warn_kernel_memory(m);
    let limit = signed(m.limit(), LIMIT)?;
    let mut swap = signed(m.swap(), SWAP)?;
    let reservation = signed(m.reservation(), "linux.resources.memory.reservation")?;
    let has_memsw = dir.join("memory.memsw.limit_in_bytes").exists();
    // runc: an unlimited memory limit with swap unset lifts the memory+swap limit too.
    if limit == Some(-1) && swap.is_none() && has_memsw {
        swap = Some(-1);
    }
    if let Some(s) = swap {
        if !has_memsw {
            if s != -1 {
                return Err(err(
                    SWAP,
                    "this host's memory controller has no memory.memsw.limit_in_bytes (swap \
                     accounting is off: boot with swapaccount=1)",
                ));
            }
            swap = None;
        }
    }

    let mut steps = Vec::new();
    if limit.is_some() || swap.is_some() {
        let cur_limit = read_u64(&dir.join("memory.limit_in_bytes"))
            .map(unlimited_as_max)
            .ok_or_else(|| err(LIMIT, "cannot read memory.limit_in_bytes"))?;
        let new_limit = limit.map(as_u64).unwrap_or(cur_limit);
        let cur_swap = if has_memsw {
            read_u64(&dir.join("memory.memsw.limit_in_bytes")).map(unlimited_as_max)
        } else {
            None
        };
        let new_swap = swap.map(as_u64).or(cur_swap);
        if let Some(new_swap) = new_swap {
            // The kernel keeps memory <= memory+swap at every step.
            if new_swap < new_limit {
                return Err(match swap {
                    Some(s) => err(
                        SWAP,
                        format!(
                            "{s} (memory+swap) is below the memory limit {}",
                            show(new_limit)
                        ),
                    ),
                    None => err(
                        LIMIT,
                        format!(
                            "{} is above the current memory+swap limit {}; set \
                             linux.resources.memory.swap too",
                            show(new_limit),
                            show(new_swap)
                        ),
                    ),
                });
            }
        }
        if let (Some(l), Some(true)) = (limit, m.check_before_update()) {
            let usage = read_u64(&dir.join("memory.usage_in_bytes")).unwrap_or(0);
            if l > 0 && (l as u64) < usage {
                return Err(err(
                    LIMIT,
                    format!("{l} is below the current usage {usage} (checkBeforeUpdate)"),
                ));
            }
        }
        let limit_step =
            limit.map(|l| Step::write(dir, "memory.limit_in_bytes", l.to_string(), LIMIT));
        let swap_step =
            swap.map(|s| Step::write(dir, "memory.memsw.limit_in_bytes", s.to_string(), SWAP));
        // Raising: memory+swap first, so the memory limit always fits under it; lowering:
        // the memory limit first (runc's setMemoryAndSwap picks the same order).
        let swap_first = new_swap.is_some_and(|s| cur_limit <= s);
        if swap_first {
            steps.extend(swap_step);
            steps.extend(limit_step);
        } else {
            steps.extend(limit_step);
            steps.extend(swap_step);
        }
    }
    if let Some(r) = reservation {
        steps.push(Step::write(
            dir,
            "memory.soft_limit_in_bytes",
            r.to_string(),
            "linux.resources.memory.reservation",
        ));
    }
    if let Some(s) = m.swappiness() {
        const F: &str = "linux.resources.memory.swappiness";
        if s > 100 {
            return Err(err(F, format!("{s} is outside 0..=100")));
        }
        steps.push(Step::write(dir, "memory.swappiness", s.to_string(), F));
    }
    if let Some(disable) = m.disable_oom_killer() {
        let old = read(&dir.join("memory.oom_control"))
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("oom_kill_disable ").map(str::to_string))
            })
            .unwrap_or_else(|| "0".into());
        steps.push(Step::keyed(
            dir,
            "memory.oom_control",
            if disable { "1" } else { "0" }.into(),
            old,
            "linux.resources.memory.disableOOMKiller",
        ));
    }
    if let Some(h) = m.use_hierarchy() {
        let want = if h { "1" } else { "0" };
        if read(&dir.join("memory.use_hierarchy")).as_deref() != Some(want) {
            steps.push(Step::write(
                dir,
                "memory.use_hierarchy",
                want,
                "linux.resources.memory.useHierarchy",
            ));
        }
    }
    Ok(steps)
}

fn show(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

pub fn check_shares(shares: u64) -> Result<()> {
    // The kernel clamps to this range silently; runc reads the value back and complains.
    if !(2..=262144).contains(&shares) {
        return Err(err(
            "linux.resources.cpu.shares",
            format!("{shares} is outside the kernel's range 2..=262144"),
        ));
    }
    Ok(())
}

pub fn cpu(dir: &Path, c: &LinuxCpu) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        check_shares(s)?;
        steps.push(Step::write(
            dir,
            "cpu.shares",
            s.to_string(),
            "linux.resources.cpu.shares",
        ));
    }
    steps.extend(bandwidth_v1(dir, c)?);
    steps.extend(realtime(dir, c)?);
    if let Some(idle) = c.idle() {
        const F: &str = "linux.resources.cpu.idle";
        check_idle(idle)?;
        // cpu.idle exists for v1 too since Linux 5.15; before that only "not idle" is possible.
        if dir.join("cpu.idle").exists() {
            steps.push(Step::write(dir, "cpu.idle", idle.to_string(), F));
        } else if idle != 0 {
            return Err(err(F, "this host's cpu controller has no cpu.idle"));
        }
    }
    Ok(steps)
}

pub fn check_idle(idle: i64) -> Result<()> {
    if idle != 0 && idle != 1 {
        return Err(err(
            "linux.resources.cpu.idle",
            format!("{idle} is neither 0 nor 1"),
        ));
    }
    Ok(())
}

/// The CFS bandwidth values asked for, checked: quota (-1 = none), period, burst.
pub struct Bandwidth {
    pub quota: Option<i64>,
    pub period: Option<u64>,
    pub burst: Option<u64>,
}

impl Bandwidth {
    pub fn from_spec(c: &LinuxCpu) -> Result<Option<Bandwidth>> {
        let quota = signed(c.quota(), "linux.resources.cpu.quota")?;
        if let Some(q) = quota.filter(|q| *q > 0 && *q < 1000) {
            return Err(err(
                "linux.resources.cpu.quota",
                format!("{q} is below the kernel's minimum of 1000 (1ms)"),
            ));
        }
        let period = c.period().filter(|p| *p != 0);
        if let Some(p) = period.filter(|p| !(1000..=1_000_000).contains(p)) {
            return Err(err(
                "linux.resources.cpu.period",
                format!("{p} is outside the kernel's range 1000..=1000000 (1ms to 1s)"),
            ));
        }
        let burst = c.burst();
        if quota.is_none() && period.is_none() && burst.is_none() {
            return Ok(None);
        }
        Ok(Some(Bandwidth {
            quota,
            period,
            burst,
        }))
    }
}

/// Whether writing quota before period keeps the intermediate quota/period ratio lowest
/// (the kernel checks each write against the parent's ratio; `cur_q` -1 is unlimited).
pub fn quota_first(cur_q: i64, cur_p: u64, new_q: i64, new_p: u64) -> bool {
    if new_q < 0 {
        return true;
    }
    if cur_q < 0 {
        return false;
    }
    // period first leaves cur_q/new_p for a moment, quota first new_q/cur_p.
    (cur_q as u128) * (cur_p as u128) > (new_q as u128) * (new_p as u128)
}

/// Whether the new burst fits under the quota in force before any write (else it goes last).
pub fn burst_first(cur_q: i64, new_burst: u64) -> bool {
    cur_q < 0 || new_burst <= cur_q as u64
}

fn bandwidth_v1(dir: &Path, c: &LinuxCpu) -> Result<Vec<Step>> {
    let Some(bw) = Bandwidth::from_spec(c)? else {
        return Ok(Vec::new());
    };
    if !dir.join("cpu.cfs_quota_us").exists() {
        return Err(err(
            "linux.resources.cpu.quota",
            "this host's cpu controller has no cpu.cfs_quota_us (CONFIG_CFS_BANDWIDTH)",
        ));
    }
    let cur_q: i64 = read(&dir.join("cpu.cfs_quota_us"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    let cur_p = read_u64(&dir.join("cpu.cfs_period_us")).unwrap_or(100_000);
    let has_burst = dir.join("cpu.cfs_burst_us").exists();
    let cur_b = read_u64(&dir.join("cpu.cfs_burst_us")).unwrap_or(0);
    let burst = match bw.burst {
        Some(b) if !has_burst && b != 0 => {
            return Err(err(
                "linux.resources.cpu.burst",
                "this host's cpu controller has no cpu.cfs_burst_us (Linux 5.14+)",
            ))
        }
        Some(_) if !has_burst => None,
        b => b,
    };
    let new_q = bw.quota.unwrap_or(cur_q);
    let new_p = bw.period.unwrap_or(cur_p);
    let new_b = burst.unwrap_or(cur_b);
    if new_q >= 0 && new_b > new_q as u64 {
        let field = if burst.is_some() {
            "linux.resources.cpu.burst"
        } else {
            "linux.resources.cpu.quota"
        };
        return Err(err(
            field,
            format!("burst {new_b} would exceed quota {new_q}"),
        ));
    }
    let quota_step = bw.quota.map(|q| {
        Step::write(
            dir,
            "cpu.cfs_quota_us",
            q.to_string(),
            "linux.resources.cpu.quota",
        )
    });
    let period_step = bw.period.map(|p| {
        Step::write(
            dir,
            "cpu.cfs_period_us",
            p.to_string(),
            "linux.resources.cpu.period",
        )
    });
    let burst_step = burst.map(|b| {
        Step::write(
            dir,
            "cpu.cfs_burst_us",
            b.to_string(),
            "linux.resources.cpu.burst",
        )
    });
    let mut steps = Vec::new();
    let early_burst = burst_first(cur_q, new_b);
    if early_burst {
        steps.extend(burst_step.clone());
    }
    if quota_first(cur_q, cur_p, new_q, new_p) {
        steps.extend(quota_step);
        steps.extend(period_step);
    } else {
        steps.extend(period_step);
        steps.extend(quota_step);
    }
    if !early_burst {
        steps.extend(burst_step);
    }
    Ok(steps)
}

fn realtime(dir: &Path, c: &LinuxCpu) -> Result<Vec<Step>> {
    const PERIOD: &str = "linux.resources.cpu.realtimePeriod";
    const RUNTIME: &str = "linux.resources.cpu.realtimeRuntime";
    let period = c.realtime_period().filter(|p| *p != 0);
    let runtime = signed(c.realtime_runtime(), RUNTIME)?;
    if period.is_none() && runtime.is_none() {
        return Ok(Vec::new());
    }
    if !dir.join("cpu.rt_runtime_us").exists() {
        let field = if runtime.is_some() { RUNTIME } else { PERIOD };
        return Err(err(
            field,
            "this host's cpu controller has no cpu.rt_runtime_us (CONFIG_RT_GROUP_SCHED)",
        ));
    }
    let cur_p = read_u64(&dir.join("cpu.rt_period_us")).unwrap_or(1_000_000);
    let cur_r: i64 = read(&dir.join("cpu.rt_runtime_us"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let new_p = period.unwrap_or(cur_p);
    let new_r = runtime.unwrap_or(cur_r);
    if new_r >= 0 && new_r as u64 > new_p {
        return Err(err(
            RUNTIME,
            format!("{new_r} exceeds the real-time period {new_p}"),
        ));
    }
    let p_step = period.map(|p| Step::write(dir, "cpu.rt_period_us", p.to_string(), PERIOD));
    let r_step = runtime.map(|r| Step::write(dir, "cpu.rt_runtime_us", r.to_string(), RUNTIME));
    // The kernel keeps runtime <= period: shrink the runtime before the period under it.
    let mut steps = Vec::new();
    if cur_r >= 0 && new_p < cur_r as u64 {
        steps.extend(r_step);
        steps.extend(p_step);
    } else {
        steps.extend(p_step);
        steps.extend(r_step);
    }
    Ok(steps)
}

/// Parses a cpu or memory-node list ("0-3,5"); `None` if malformed.
pub fn parse_id_list(s: &str) -> Option<Vec<u32>> {
    let mut ids = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b || b - a > 65536 {
                    return None;
                }
                ids.extend(a..=b);
            }
            None => ids.push(part.trim().parse().ok()?),
        }
    }
    Some(ids)
}

/// Checks a cpus/mems value against what the parent cgroup has.
pub fn check_cpuset(field: &str, value: &str, parent_has: Option<String>) -> Result<()> {
    let wanted = parse_id_list(value)
        .ok_or_else(|| err(field, format!("{value:?} is not a list like 0-3,5")))?;
    if let Some(avail) = parent_has.as_deref().and_then(parse_id_list) {
        let missing: Vec<String> = wanted
            .iter()
            .filter(|id| !avail.contains(id))
            .map(u32::to_string)
            .collect();
        if !missing.is_empty() {
            return Err(err(
                field,
                format!(
                    "{value:?}: {} not available to this cgroup (its parent has {:?})",
                    missing.join(","),
                    parent_has.unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

pub fn cpuset(dir: &Path, c: &LinuxCpu) -> Result<Vec<Step>> {
    // A hierarchy mounted with `noprefix` names the files without "cpuset.".
    let prefix = if dir.join("cpuset.cpus").exists() {
        "cpuset."
    } else {
        ""
    };
    let parent = dir.parent().unwrap_or(dir);
    let mut steps = Vec::new();
    // cpus before mems, both before any task joins (an empty cpuset takes no tasks).
    for (name, value) in [("cpus", c.cpus()), ("mems", c.mems())] {
        let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let field = format!("linux.resources.cpu.{name}");
        let parent_has = read(&parent.join(format!("{prefix}effective_{name}")))
            .or_else(|| read(&parent.join(format!("{prefix}{name}"))));
        check_cpuset(&field, value, parent_has)?;
        steps.push(Step::write(
            dir,
            &format!("{prefix}{name}"),
            value.trim(),
            field,
        ));
    }
    Ok(steps)
}

/// The value for `key` ("8:0", "eth0", "mlx5_0") in a file of "key value" lines.
pub fn keyed_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.trim().split_once(' ')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// Refuses a device that does not exist here (the kernel would say ENODEV mid-update).
pub fn check_block_device(field: &str, major: i64, minor: i64) -> Result<String> {
    if major < 0 || minor < 0 {
        return Err(err(
            field,
            format!("{major}:{minor} is not a device number"),
        ));
    }
    let key = format!("{major}:{minor}");
    if !Path::new("/sys/dev/block").join(&key).exists() {
        return Err(err(field, format!("this host has no block device {key}")));
    }
    Ok(key)
}

pub fn blkio(dir: &Path, b: &LinuxBlockIo) -> Result<Vec<Step>> {
    const F: &str = "linux.resources.blockIO";
    let mut steps = Vec::new();
    let has = |f: &str| dir.join(f).exists();
    // CFQ's blkio.weight is gone since Linux 5.0; BFQ has its own files when in use.
    let (weight_file, weight_device_file, min) = if has("blkio.weight") {
        ("blkio.weight", "blkio.weight_device", 10)
    } else {
        ("blkio.bfq.weight", "blkio.bfq.weight_device", 1)
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        let field = format!("{F}.weight");
        if !has(weight_file) {
            return Err(err(
                &field,
                "this host's blkio controller has no blkio.weight (CFQ is gone) and no \
                 blkio.bfq.weight (BFQ is not in use)",
            ));
        }
        if !(min..=1000).contains(&w) {
            return Err(err(&field, format!("{w} is outside {min}..=1000")));
        }
        if weight_file == "blkio.bfq.weight" {
            warn_unless_bfq(&field);
        }
        steps.push(Step::write(dir, weight_file, w.to_string(), field));
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        let field = format!("{F}.leafWeight");
        if !has("blkio.leaf_weight") {
            return Err(err(
                &field,
                "this host's blkio controller has no blkio.leaf_weight (a CFQ-only setting)",
            ));
        }
        steps.push(Step::write(dir, "blkio.leaf_weight", w.to_string(), field));
    }
    for (i, wd) in b.weight_device().iter().flatten().enumerate() {
        let base = format!("{F}.weightDevice[{i}]");
        let key = check_block_device(&base, wd.major(), wd.minor())?;
        for (value, file, what) in [
            (wd.weight(), weight_device_file, "weight"),
            (wd.leaf_weight(), "blkio.leaf_weight_device", "leafWeight"),
        ] {
            let Some(v) = value.filter(|v| *v != 0) else {
                continue;
            };
            let field = format!("{base}.{what}");
            if !has(file) {
                return Err(err(
                    &field,
                    format!("this host's blkio controller has no {file}"),
                ));
            }
            steps.push(keyed_step(dir, file, &key, v.to_string(), "0", &field));
        }
    }
    for (list, file, name) in throttles(b) {
        for (i, td) in list.iter().enumerate() {
            let field = format!("{F}.{name}[{i}]");
            let key = check_block_device(&field, td.major(), td.minor())?;
            if !has(file) {
                return Err(err(
                    &field,
                    format!(
                        "this host's blkio controller has no {file} (CONFIG_BLK_DEV_THROTTLING)"
                    ),
                ));
            }
            // v1 reads a rate of 0 as "remove this device's limit".
            steps.push(keyed_step(
                dir,
                file,
                &key,
                td.rate().to_string(),
                "0",
                &field,
            ));
        }
    }
    Ok(steps)
}

/// BFQ's weights are stored whatever the scheduler, but only BFQ devices honour them.
pub fn warn_unless_bfq(field: &str) {
    let in_use = std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| read(&d.path().join("queue/scheduler")).is_some_and(|s| s.contains("[bfq]")));
    if !in_use {
        tracing::warn!(
            "{field}: set for the BFQ scheduler, which no block device here uses; it takes \
             effect on devices switched to bfq"
        );
    }
}

/// The four throttle lists with their v1 file and config name.
pub fn throttles(b: &LinuxBlockIo) -> [(&[LinuxThrottleDevice], &'static str, &'static str); 4] {
    [
        (
            b.throttle_read_bps_device().as_deref().unwrap_or(&[]),
            "blkio.throttle.read_bps_device",
            "throttleReadBpsDevice",
        ),
        (
            b.throttle_write_bps_device().as_deref().unwrap_or(&[]),
            "blkio.throttle.write_bps_device",
            "throttleWriteBpsDevice",
        ),
        (
            b.throttle_read_iops_device().as_deref().unwrap_or(&[]),
            "blkio.throttle.read_iops_device",
            "throttleReadIOPSDevice",
        ),
        (
            b.throttle_write_iops_device().as_deref().unwrap_or(&[]),
            "blkio.throttle.write_iops_device",
            "throttleWriteIOPSDevice",
        ),
    ]
}

/// A "key value" write whose undo is the key's current value, or `absent` if it has none.
fn keyed_step(dir: &Path, file: &str, key: &str, value: String, absent: &str, field: &str) -> Step {
    let old = read(&dir.join(file))
        .and_then(|t| keyed_value(&t, key))
        .unwrap_or_else(|| absent.to_string());
    Step::keyed(
        dir,
        file,
        format!("{key} {value}"),
        format!("{key} {old}"),
        field,
    )
}

/// Page sizes this hugetlb directory offers, from its `hugetlb.<size>.<suffix>` files.
pub fn hugetlb_sizes(dir: &Path, suffix: &str) -> Vec<String> {
    let mut sizes: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    sizes
}

/// Shared by v1 and v2: `hugetlb.<size>.<limit>` and, where the kernel has them,
/// reservation limits (`hugetlb.<size>.rsvd.<limit>`), which the spec prefers.
pub fn hugetlb_steps(
    dir: &Path,
    limits: &[LinuxHugepageLimit],
    limit: &str,
    value: impl Fn(i64) -> String,
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for (i, l) in limits.iter().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{i}]");
        let size = l.page_size();
        let file = format!("hugetlb.{size}.{limit}");
        if size.contains('/') || !dir.join(&file).exists() {
            return Err(err(
                &field,
                format!(
                    "this host's hugetlb controller has no page size {size:?} (it has {})",
                    hugetlb_sizes(dir, &format!(".{limit}")).join(", ")
                ),
            ));
        }
        if l.limit() < -1 {
            return Err(err(&field, format!("{} is not a limit", l.limit())));
        }
        steps.push(Step::write(dir, &file, value(l.limit()), field.clone()));
        let rsvd = format!("hugetlb.{size}.rsvd.{limit}");
        if dir.join(&rsvd).exists() {
            steps.push(Step::write(dir, &rsvd, value(l.limit()), field));
        }
    }
    Ok(steps)
}

pub fn hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<Vec<Step>> {
    hugetlb_steps(dir, limits, "limit_in_bytes", |v| v.to_string())
}

pub fn net_cls(dir: &Path, class_id: u32) -> Step {
    Step::write(
        dir,
        "net_cls.classid",
        class_id.to_string(),
        "linux.resources.network.classID",
    )
}

pub fn net_prio(dir: &Path, prios: &[LinuxInterfacePriority]) -> Vec<Step> {
    prios
        .iter()
        .enumerate()
        .map(|(i, p)| {
            keyed_step(
                dir,
                "net_prio.ifpriomap",
                p.name(),
                p.priority().to_string(),
                "0",
                &format!("linux.resources.network.priorities[{i}]"),
            )
        })
        .collect()
}

/// `rdma.max` is the same file on v1 and v2: "<device> hca_handle=N hca_object=N".
pub fn rdma(dir: &Path, rdma: &HashMap<String, LinuxRdma>) -> Vec<Step> {
    let mut devices: Vec<_> = rdma.iter().collect();
    devices.sort_by(|a, b| a.0.cmp(b.0));
    devices
        .into_iter()
        .map(|(dev, l)| {
            let n = |v: Option<u32>| v.map_or("max".to_string(), |v| v.to_string());
            let value = format!(
                "hca_handle={} hca_object={}",
                n(l.hca_handles()),
                n(l.hca_objects())
            );
            keyed_step(
                dir,
                "rdma.max",
                dev,
                value,
                "hca_handle=max hca_object=max",
                &format!("linux.resources.rdma[{dev}]"),
            )
        })
        .collect()
}

/// `pids.max` is the same on v1 and v2; 0 and -1 both mean no limit.
pub fn pids(dir: &Path, limit: i64) -> Result<Step> {
    const F: &str = "linux.resources.pids.limit";
    let value = match limit {
        -1 | 0 => "max".to_string(),
        l if l > 0 => l.to_string(),
        l => return Err(err(F, format!("{l} is not a limit (use -1 for none)"))),
    };
    Ok(Step::write(dir, "pids.max", value, F))
}

/// Whether a memory section asks for anything a controller must do.
pub fn memory_asks(m: &LinuxMemory) -> bool {
    m.limit().is_some_and(|v| v != 0)
        || m.reservation().is_some_and(|v| v != 0)
        || m.swap().is_some_and(|v| v != 0)
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true)
}

pub fn cpu_asks(c: &LinuxCpu) -> bool {
    c.shares().is_some_and(|v| v != 0)
        || c.quota().is_some_and(|v| v != 0)
        || c.period().is_some_and(|v| v != 0)
        || c.burst().is_some_and(|v| v != 0)
        || c.realtime_runtime().is_some_and(|v| v != 0)
        || c.realtime_period().is_some_and(|v| v != 0)
        || c.idle().is_some_and(|v| v != 0)
}

pub fn blkio_asks(b: &LinuxBlockIo) -> bool {
    b.weight().is_some_and(|v| v != 0)
        || b.leaf_weight().is_some_and(|v| v != 0)
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || throttles(b).iter().any(|(l, _, _)| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    use super::super::test_fixture::{writes, Fixture};

    fn mem(json: &str) -> LinuxMemory {
        serde_json::from_str(json).unwrap()
    }

    const UNLIMITED: &str = "9223372036854771712\n";

    #[test]
    fn memory_and_swap_order_follows_the_kernel_invariant() {
        let f = Fixture::new(&[
            ("memory.limit_in_bytes", UNLIMITED),
            ("memory.memsw.limit_in_bytes", UNLIMITED),
        ]);
        // From unlimited: lowering, so memory first.
        let s = memory(&f.dir(), &mem(r#"{"limit": 100000000, "swap": 200000000}"#)).unwrap();
        assert_eq!(
            writes(&s),
            [
                ("memory.limit_in_bytes".into(), "100000000".into()),
                ("memory.memsw.limit_in_bytes".into(), "200000000".into())
            ]
        );
        // From 100M/200M up to 300M/400M: memory+swap first.
        fs::write(f.dir().join("memory.limit_in_bytes"), "100000000").unwrap();
        fs::write(f.dir().join("memory.memsw.limit_in_bytes"), "200000000").unwrap();
        let s = memory(&f.dir(), &mem(r#"{"limit": 300000000, "swap": 400000000}"#)).unwrap();
        assert_eq!(writes(&s)[0].0, "memory.memsw.limit_in_bytes");
        // Undo restores the old value.
        let Step::Write { undo, .. } = &s[0] else {
            panic!()
        };
        assert_eq!(undo[0].value, "200000000");
        // Raising memory above the current memory+swap without swap is refused up front.
        let e = memory(&f.dir(), &mem(r#"{"limit": 300000000}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.resources.memory.limit: 300000000 is above the current memory+swap limit 200000000"), "{e}");
        let e = memory(&f.dir(), &mem(r#"{"limit": 300000000, "swap": 1000}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.resources.memory.swap: 1000 (memory+swap) is below"),
            "{e}"
        );
        // -1 lifts both.
        let s = memory(&f.dir(), &mem(r#"{"limit": -1}"#)).unwrap();
        assert_eq!(
            writes(&s),
            [
                ("memory.memsw.limit_in_bytes".into(), "-1".into()),
                ("memory.limit_in_bytes".into(), "-1".into())
            ]
        );
    }

    #[test]
    fn memory_without_swap_accounting() {
        let f = Fixture::new(&[("memory.limit_in_bytes", UNLIMITED)]);
        let e = memory(&f.dir(), &mem(r#"{"limit": 1000000, "swap": 2000000}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("swapaccount=1"), "{e}");
        let s = memory(
            &f.dir(),
            &mem(r#"{"limit": 1000000, "swappiness": 10, "disableOOMKiller": true}"#),
        )
        .unwrap();
        assert_eq!(
            writes(&s),
            [
                ("memory.limit_in_bytes".into(), "1000000".into()),
                ("memory.swappiness".into(), "10".into()),
                ("memory.oom_control".into(), "1".into()),
            ]
        );
        let e = memory(&f.dir(), &mem(r#"{"swappiness": 101}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.resources.memory.swappiness"), "{e}");
    }

    #[test]
    fn cpu_bandwidth_and_realtime_ordering() {
        let f = Fixture::new(&[
            ("cpu.shares", "1024"),
            ("cpu.cfs_quota_us", "-1"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_burst_us", "0"),
            ("cpu.rt_period_us", "1000000"),
            ("cpu.rt_runtime_us", "0"),
        ]);
        let c: LinuxCpu = serde_json::from_str(
            r#"{"shares": 512, "quota": 50000, "period": 50000, "burst": 10000,
                "realtimePeriod": 500000, "realtimeRuntime": 100000}"#,
        )
        .unwrap();
        let s = cpu(&f.dir(), &c).unwrap();
        assert_eq!(
            writes(&s),
            [
                ("cpu.shares".into(), "512".into()),
                ("cpu.cfs_burst_us".into(), "10000".into()),
                ("cpu.cfs_period_us".into(), "50000".into()),
                ("cpu.cfs_quota_us".into(), "50000".into()),
                ("cpu.rt_period_us".into(), "500000".into()),
                ("cpu.rt_runtime_us".into(), "100000".into()),
            ]
        );
        // Lowering the quota under a larger burst is refused; a burst above the old quota
        // goes after the quota.
        fs::write(f.dir().join("cpu.cfs_quota_us"), "20000").unwrap();
        let c: LinuxCpu = serde_json::from_str(r#"{"quota": 80000, "burst": 40000}"#).unwrap();
        assert_eq!(
            writes(&cpu(&f.dir(), &c).unwrap()),
            [
                ("cpu.cfs_quota_us".into(), "80000".into()),
                ("cpu.cfs_burst_us".into(), "40000".into()),
            ]
        );
        let c: LinuxCpu = serde_json::from_str(r#"{"quota": 5000, "burst": 40000}"#).unwrap();
        let e = cpu(&f.dir(), &c).unwrap_err().to_string();
        assert!(
            e.contains("linux.resources.cpu.burst: burst 40000 would exceed quota 5000"),
            "{e}"
        );
        let c: LinuxCpu = serde_json::from_str(r#"{"shares": 1}"#).unwrap();
        assert!(cpu(&f.dir(), &c)
            .unwrap_err()
            .to_string()
            .contains("2..=262144"));
        let c: LinuxCpu = serde_json::from_str(r#"{"period": 10}"#).unwrap();
        assert!(cpu(&f.dir(), &c)
            .unwrap_err()
            .to_string()
            .contains("linux.resources.cpu.period"));
        // Shrinking the rt period under the current runtime writes the runtime first.
        fs::write(f.dir().join("cpu.rt_runtime_us"), "400000").unwrap();
        let c: LinuxCpu =
            serde_json::from_str(r#"{"realtimePeriod": 200000, "realtimeRuntime": 100000}"#)
                .unwrap();
        assert_eq!(
            writes(&cpu(&f.dir(), &c).unwrap())[0].0,
            "cpu.rt_runtime_us"
        );
    }

    #[test]
    fn quota_period_order_keeps_the_ratio_low() {
        // From 50ms/100ms to 10ms/20ms: period first would briefly give 50/20.
        assert!(quota_first(50_000, 100_000, 10_000, 20_000));
        // From 10ms/20ms to 50ms/100ms: quota first would briefly give 50/20.
        assert!(!quota_first(10_000, 20_000, 50_000, 100_000));
        assert!(!quota_first(-1, 100_000, 10_000, 20_000));
        assert!(quota_first(10_000, 100_000, -1, 100_000));
    }

    #[test]
    fn cpuset_checks_the_parent() {
        let f = Fixture::new(&[("cpuset.cpus", "0-1"), ("cpuset.mems", "0")]);
        f.parent_file("cpuset.effective_cpus", "0-1\n");
        f.parent_file("cpuset.effective_mems", "0\n");
        let c: LinuxCpu = serde_json::from_str(r#"{"cpus": "1", "mems": "0"}"#).unwrap();
        assert_eq!(
            writes(&cpuset(&f.dir(), &c).unwrap()),
            [
                ("cpuset.cpus".into(), "1".into()),
                ("cpuset.mems".into(), "0".into())
            ]
        );
        let c: LinuxCpu = serde_json::from_str(r#"{"cpus": "0-3"}"#).unwrap();
        let e = cpuset(&f.dir(), &c).unwrap_err().to_string();
        assert!(
            e.contains("linux.resources.cpu.cpus: \"0-3\": 2,3 not available"),
            "{e}"
        );
        let c: LinuxCpu = serde_json::from_str(r#"{"cpus": "a-b"}"#).unwrap();
        assert!(cpuset(&f.dir(), &c).is_err());
        assert_eq!(parse_id_list("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(parse_id_list(""), Some(vec![]));
    }

    #[test]
    fn blkio_weight_missing_is_an_error_and_throttles_are_keyed() {
        let f = Fixture::new(&[
            ("blkio.throttle.read_bps_device", "254:0 1000\n"),
            ("blkio.throttle.write_iops_device", ""),
        ]);
        let b: LinuxBlockIo = serde_json::from_str(r#"{"weight": 500}"#).unwrap();
        let e = blkio(&f.dir(), &b).unwrap_err().to_string();
        assert!(
            e.contains(
                "linux.resources.blockIO.weight: this host's blkio controller has no blkio.weight"
            ),
            "{e}"
        );
        // Device numbers are checked against /sys/dev/block, so use one this host has.
        let Some(dev) = std::fs::read_dir("/sys/dev/block")
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
        else {
            return;
        };
        let (maj, min) = dev.split_once(':').unwrap();
        fs::write(
            f.dir().join("blkio.throttle.read_bps_device"),
            format!("{dev} 1000\n"),
        )
        .unwrap();
        let b: LinuxBlockIo = serde_json::from_str(&format!(
            r#"{{"throttleReadBpsDevice": [{{"major": {maj}, "minor": {min}, "rate": 2048}}],
                "throttleWriteIOPSDevice": [{{"major": {maj}, "minor": {min}, "rate": 10}}]}}"#
        ))
        .unwrap();
        let s = blkio(&f.dir(), &b).unwrap();
        assert_eq!(
            writes(&s),
            [
                (
                    "blkio.throttle.read_bps_device".into(),
                    format!("{dev} 2048")
                ),
                (
                    "blkio.throttle.write_iops_device".into(),
                    format!("{dev} 10")
                ),
            ]
        );
        let Step::Write { undo, .. } = &s[0] else {
            panic!()
        };
        assert_eq!(undo[0].value, format!("{dev} 1000"));
        let Step::Write { undo, .. } = &s[1] else {
            panic!()
        };
        assert_eq!(undo[0].value, format!("{dev} 0"));
        let b: LinuxBlockIo = serde_json::from_str(
            r#"{"throttleReadBpsDevice": [{"major": 4095, "minor": 77, "rate": 1}]}"#,
        )
        .unwrap();
        let e = blkio(&f.dir(), &b).unwrap_err().to_string();
        assert!(
            e.contains("throttleReadBpsDevice[0]: this host has no block device 4095:77"),
            "{e}"
        );
    }

    #[test]
    fn hugetlb_names_the_sizes_it_has() {
        let f = Fixture::new(&[
            ("hugetlb.2MB.limit_in_bytes", "0"),
            ("hugetlb.2MB.rsvd.limit_in_bytes", "0"),
            ("hugetlb.1GB.limit_in_bytes", "0"),
        ]);
        let l: Vec<LinuxHugepageLimit> =
            serde_json::from_str(r#"[{"pageSize": "2MB", "limit": 4194304}]"#).unwrap();
        assert_eq!(
            writes(&hugetlb(&f.dir(), &l).unwrap()),
            [
                ("hugetlb.2MB.limit_in_bytes".into(), "4194304".into()),
                ("hugetlb.2MB.rsvd.limit_in_bytes".into(), "4194304".into()),
            ]
        );
        let l: Vec<LinuxHugepageLimit> =
            serde_json::from_str(r#"[{"pageSize": "3MB", "limit": 1}]"#).unwrap();
        let e = hugetlb(&f.dir(), &l).unwrap_err().to_string();
        assert!(e.contains("no page size \"3MB\" (it has 1GB, 2MB)"), "{e}");
    }

    #[test]
    fn pids_zero_and_minus_one_mean_max() {
        let d = Path::new("/nonexistent");
        for (l, v) in [(-1, "max"), (0, "max"), (5, "5")] {
            let Step::Write { write, .. } = pids(d, l).unwrap() else {
                panic!()
            };
            assert_eq!(write.value, v);
        }
        assert!(pids(d, -2).is_err());
    }
}

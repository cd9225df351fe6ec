//! Planning `linux.resources` for a cgroup v2 directory (the whole tree on a unified host,
//! or a controller that only the v2 tree has on a hybrid one). Same contract as
//! v1_limits.rs: reads current values, writes nothing.

use super::resources::{read, read_u64, Controllers, Step};
use super::v1_limits::{
    burst_first, check_block_device, check_cpuset, check_idle, check_shares, hugetlb_steps,
    keyed_value, signed, throttles, warn_kernel_memory, warn_unless_bfq, Bandwidth,
};
use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory};
use std::collections::HashMap;
use std::path::Path;

fn err(field: &str, why: impl std::fmt::Display) -> Error {
    Error::Cgroup(format!("{field}: {why}"))
}

/// v2 spells "no limit" as "max" where v1 took -1.
fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// runc's ConvertMemorySwapToCgroupV2Value: the config's swap is memory+swap (the v1
/// meaning); v2's memory.swap.max is the swap alone.
pub fn swap_max(
    swap: Option<i64>,
    limit: Option<i64>,
) -> std::result::Result<Option<String>, String> {
    match (swap, limit) {
        (None, Some(-1)) => Ok(Some("max".into())),
        (None, _) => Ok(None),
        (Some(-1), _) => Ok(Some("max".into())),
        (Some(_), None) | (Some(_), Some(-1)) => {
            Err("a swap limit needs a memory limit (swap is memory+swap)".into())
        }
        (Some(s), Some(l)) if s < l => {
            Err(format!("{s} (memory+swap) is below the memory limit {l}"))
        }
        (Some(s), Some(l)) => Ok(Some((s - l).to_string())),
    }
}

pub fn memory(dir: &Path, m: &LinuxMemory) -> Result<Vec<Step>> {
    const LIMIT: &str = "linux.resources.memory.limit";
    const SWAP: &str = "linux.resources.memory.swap";
    warn_kernel_memory(m);
    if m.swappiness().is_some() {
        return Err(err(
            "linux.resources.memory.swappiness",
            "cgroup v2 has no per-cgroup swappiness",
        ));
    }
    if m.disable_oom_killer() == Some(true) {
        // runc ignores it on v2 too (there is no memory.oom_control); Docker drops it there.
        tracing::warn!(
            "linux.resources.memory.disableOOMKiller: cgroup v2 cannot disable the OOM killer; \
             ignored"
        );
    }
    if m.use_hierarchy() == Some(false) {
        return Err(err(
            "linux.resources.memory.useHierarchy",
            "cgroup v2 is always hierarchical",
        ));
    }
    let limit = signed(m.limit(), LIMIT)?;
    let swap = signed(m.swap(), SWAP)?;
    let reservation = signed(m.reservation(), "linux.resources.memory.reservation")?;
    // On update the memory limit may be the one already in force.
    let effective_limit = limit.or_else(|| {
        read_u64(&dir.join("memory.max")).map(|v| if v == u64::MAX { -1 } else { v as i64 })
    });
    let swap_value =
        swap_max(swap, limit.or(swap.and(effective_limit))).map_err(|e| err(SWAP, e))?;
    let mut steps = Vec::new();
    if let Some(v) = swap_value {
        if dir.join("memory.swap.max").exists() {
            steps.push(Step::write(dir, "memory.swap.max", v, SWAP));
        } else if v != "max" && v != "0" {
            return Err(err(
                SWAP,
                "this host's memory controller has no memory.swap.max (swap accounting is off)",
            ));
        }
    }
    if let Some(l) = limit {
        if let (true, Some(true)) = (l > 0, m.check_before_update()) {
            let usage = read_u64(&dir.join("memory.current")).unwrap_or(0);
            if (l as u64) < usage {
                return Err(err(
                    LIMIT,
                    format!("{l} is below the current usage {usage} (checkBeforeUpdate)"),
                ));
            }
        }
        steps.push(Step::write(dir, "memory.max", max_or(l), LIMIT));
    }
    if let Some(r) = reservation {
        steps.push(Step::write(
            dir,
            "memory.low",
            max_or(r),
            "linux.resources.memory.reservation",
        ));
    }
    Ok(steps)
}

/// runc's cpu.shares to cpu.weight mapping: [2, 262144] onto [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + ((shares - 2) * 9999) / 262142
}

pub fn cpu(dir: &Path, c: &LinuxCpu) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    if c.realtime_runtime().is_some_and(|v| v != 0) || c.realtime_period().is_some_and(|v| v != 0) {
        let field = if c.realtime_runtime().is_some_and(|v| v != 0) {
            "linux.resources.cpu.realtimeRuntime"
        } else {
            "linux.resources.cpu.realtimePeriod"
        };
        return Err(err(field, "cgroup v2 has no real-time group scheduling"));
    }
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        check_shares(s)?;
        steps.push(Step::write(
            dir,
            "cpu.weight",
            shares_to_weight(s).to_string(),
            "linux.resources.cpu.shares",
        ));
    }
    if let Some(bw) = Bandwidth::from_spec(c)? {
        // cpu.max holds "$QUOTA $PERIOD"; a field left out keeps its current value.
        let cur = read(&dir.join("cpu.max")).unwrap_or_else(|| "max 100000".into());
        let mut parts = cur.split_whitespace();
        let cur_q: i64 = match parts.next() {
            Some("max") | None => -1,
            Some(q) => q.parse().unwrap_or(-1),
        };
        let cur_p: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(100_000);
        let new_q = bw.quota.unwrap_or(cur_q);
        let new_p = bw.period.unwrap_or(cur_p);
        let has_burst = dir.join("cpu.max.burst").exists();
        let burst = match bw.burst {
            Some(b) if !has_burst && b != 0 => {
                return Err(err(
                    "linux.resources.cpu.burst",
                    "this host's cpu controller has no cpu.max.burst (Linux 5.14+)",
                ))
            }
            Some(_) if !has_burst => None,
            b => b,
        };
        let new_b = burst.unwrap_or_else(|| read_u64(&dir.join("cpu.max.burst")).unwrap_or(0));
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
        let max_step = (bw.quota.is_some() || bw.period.is_some()).then(|| {
            let field = if bw.quota.is_some() {
                "linux.resources.cpu.quota"
            } else {
                "linux.resources.cpu.period"
            };
            Step::write(dir, "cpu.max", format!("{} {new_p}", max_or(new_q)), field)
        });
        let burst_step = burst.map(|b| {
            Step::write(
                dir,
                "cpu.max.burst",
                b.to_string(),
                "linux.resources.cpu.burst",
            )
        });
        if burst_first(cur_q, new_b) {
            steps.extend(burst_step);
            steps.extend(max_step);
        } else {
            steps.extend(max_step);
            steps.extend(burst_step);
        }
    }
    if let Some(idle) = c.idle() {
        check_idle(idle)?;
        if dir.join("cpu.idle").exists() {
            steps.push(Step::write(
                dir,
                "cpu.idle",
                idle.to_string(),
                "linux.resources.cpu.idle",
            ));
        } else if idle != 0 {
            return Err(err(
                "linux.resources.cpu.idle",
                "this host's cpu controller has no cpu.idle (Linux 5.15+)",
            ));
        }
    }
    Ok(steps)
}

pub fn cpuset(dir: &Path, c: &LinuxCpu) -> Result<Vec<Step>> {
    let parent = dir.parent().unwrap_or(dir);
    let mut steps = Vec::new();
    for (name, value) in [("cpus", c.cpus()), ("mems", c.mems())] {
        let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let field = format!("linux.resources.cpu.{name}");
        check_cpuset(
            &field,
            value,
            read(&parent.join(format!("cpuset.{name}.effective"))),
        )?;
        steps.push(Step::write(
            dir,
            &format!("cpuset.{name}"),
            value.trim(),
            field,
        ));
    }
    Ok(steps)
}

/// runc's blkio weight to io.weight mapping: [10, 1000] onto [1, 10000].
pub fn blkio_weight_to_io(w: u16) -> u64 {
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

pub fn io(dir: &Path, b: &LinuxBlockIo) -> Result<Vec<Step>> {
    const F: &str = "linux.resources.blockIO";
    let mut steps = Vec::new();
    // BFQ takes the weight as it is, and per device; io.weight (iocost) takes the whole
    // cgroup's weight on a different scale. runc prefers BFQ the same way.
    let bfq = dir.join("io.bfq.weight").exists();
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        let field = format!("{F}.weight");
        if !(10..=1000).contains(&w) {
            return Err(err(&field, format!("{w} is outside 10..=1000")));
        }
        if bfq {
            warn_unless_bfq(&field);
            steps.push(Step::write(dir, "io.bfq.weight", w.to_string(), field));
        } else if dir.join("io.weight").exists() {
            let old = read(&dir.join("io.weight"))
                .and_then(|t| keyed_value(&t, "default"))
                .unwrap_or_else(|| "100".into());
            steps.push(Step::keyed(
                dir,
                "io.weight",
                format!("default {}", blkio_weight_to_io(w)),
                format!("default {old}"),
                &field,
            ));
        } else {
            return Err(err(
                &field,
                "this host's io controller has neither io.bfq.weight nor io.weight",
            ));
        }
    }
    if b.leaf_weight().is_some_and(|w| w != 0) {
        return Err(err(
            &format!("{F}.leafWeight"),
            "cgroup v2 has no leaf weights",
        ));
    }
    for (i, wd) in b.weight_device().iter().flatten().enumerate() {
        let base = format!("{F}.weightDevice[{i}]");
        if wd.leaf_weight().is_some_and(|w| w != 0) {
            return Err(err(
                &format!("{base}.leafWeight"),
                "cgroup v2 has no leaf weights",
            ));
        }
        let Some(w) = wd.weight().filter(|w| *w != 0) else {
            continue;
        };
        let key = check_block_device(&base, wd.major(), wd.minor())?;
        if !bfq {
            return Err(err(
                &format!("{base}.weight"),
                "per-device weights need the BFQ scheduler (no io.bfq.weight here)",
            ));
        }
        let old = read(&dir.join("io.bfq.weight"))
            .and_then(|t| keyed_value(&t, &key))
            .unwrap_or_else(|| "0".into());
        steps.push(Step::keyed(
            dir,
            "io.bfq.weight",
            format!("{key} {w}"),
            format!("{key} {old}"),
            &format!("{base}.weight"),
        ));
    }
    let current = read(&dir.join("io.max")).unwrap_or_default();
    for ((list, _, name), knob) in throttles(b)
        .into_iter()
        .zip(["rbps", "wbps", "riops", "wiops"])
    {
        for (i, td) in list.iter().enumerate() {
            let field = format!("{F}.{name}[{i}]");
            let key = check_block_device(&field, td.major(), td.minor())?;
            if !dir.join("io.max").exists() {
                return Err(err(&field, "this host's io controller has no io.max"));
            }
            // A rate of 0 lifts the limit, as it does on v1.
            let rate = if td.rate() == 0 {
                "max".to_string()
            } else {
                td.rate().to_string()
            };
            let old = keyed_value(&current, &key)
                .and_then(|rest| {
                    rest.split_whitespace()
                        .find_map(|kv| kv.strip_prefix(&format!("{knob}=")).map(str::to_string))
                })
                .unwrap_or_else(|| "max".into());
            steps.push(Step::keyed(
                dir,
                "io.max",
                format!("{key} {knob}={rate}"),
                format!("{key} {knob}={old}"),
                &field,
            ));
        }
    }
    Ok(steps)
}

pub fn hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<Vec<Step>> {
    hugetlb_steps(dir, limits, "max", max_or)
}

/// `linux.resources.unified`: v2 files written as given, after everything else (runc does
/// the same, so they override the typed fields). On a hybrid host a key works only if the
/// v2 tree has its controller for this cgroup.
pub fn unified(ctl: &Controllers<'_>, unified: &HashMap<String, String>) -> Result<Vec<Step>> {
    let mut keys: Vec<_> = unified.iter().collect();
    keys.sort();
    let mut steps = Vec::new();
    for (key, value) in keys {
        let field = format!("linux.resources.unified[{key}]");
        let Some((controller, _)) = key.split_once('.').filter(|_| !key.contains('/')) else {
            return Err(err(
                &field,
                "a key is a cgroup v2 file name: <controller>.<name>",
            ));
        };
        let dir = if controller == "cgroup" {
            ctl.v2_leaf()
        } else {
            match ctl.locate(controller) {
                Some(super::resources::Located::V2(d)) => Some(d),
                _ => None,
            }
        };
        let Some(dir) = dir else {
            let why = match (ctl.v2_leaf(), ctl.is_legacy()) {
                (None, _) => "this host has no cgroup v2 tree".to_string(),
                (Some(_), true) => format!(
                    "{controller} is not available on this host's cgroup v2 tree (unified keys \
                     need cgroup v2; here {controller} is a cgroup v1 controller or absent)"
                ),
                (Some(d), false) => format!(
                    "the {controller} controller is not enabled for {}",
                    d.display()
                ),
            };
            return Err(err(&field, why));
        };
        if !dir.join(key).exists() {
            return Err(err(&field, format!("{} has no file {key}", dir.display())));
        }
        // Files holding one line can be put back; others (keyed lists) cannot in general.
        let mut step = Step::write(dir, key, value.clone(), field);
        if let Step::Write { undo, .. } = &mut step {
            undo.retain(|w| !w.value.contains('\n'));
        }
        steps.push(step);
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::super::hierarchy::Mount;
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    use super::super::test_fixture::{writes, Fixture};

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(500), 4950);
        assert_eq!(blkio_weight_to_io(1000), 10000);
        assert_eq!(swap_max(Some(200), Some(100)), Ok(Some("100".into())));
        assert_eq!(swap_max(Some(100), Some(100)), Ok(Some("0".into())));
        assert_eq!(swap_max(None, Some(-1)), Ok(Some("max".into())));
        assert_eq!(swap_max(Some(-1), Some(100)), Ok(Some("max".into())));
        assert_eq!(swap_max(None, Some(100)), Ok(None));
        assert!(swap_max(Some(50), Some(100)).is_err());
        assert!(swap_max(Some(50), None).is_err());
    }

    #[test]
    fn memory_files() {
        let f = Fixture::new(&[
            ("memory.max", "max\n"),
            ("memory.swap.max", "max\n"),
            ("memory.low", "0\n"),
            ("memory.current", "5000000\n"),
        ]);
        let m: LinuxMemory = serde_json::from_str(
            r#"{"limit": 104857600, "swap": 209715200, "reservation": 1048576}"#,
        )
        .unwrap();
        assert_eq!(
            writes(&memory(&f.dir(), &m).unwrap()),
            [
                ("memory.swap.max".into(), "104857600".into()),
                ("memory.max".into(), "104857600".into()),
                ("memory.low".into(), "1048576".into()),
            ]
        );
        let m: LinuxMemory = serde_json::from_str(r#"{"swappiness": 60}"#).unwrap();
        assert!(memory(&f.dir(), &m)
            .unwrap_err()
            .to_string()
            .contains("swappiness"));
        let m: LinuxMemory =
            serde_json::from_str(r#"{"limit": 1000, "checkBeforeUpdate": true}"#).unwrap();
        let e = memory(&f.dir(), &m).unwrap_err().to_string();
        assert!(e.contains("below the current usage 5000000"), "{e}");
        // On update, swap alone is taken against the limit in force.
        fs::write(f.dir().join("memory.max"), "100\n").unwrap();
        let m: LinuxMemory = serde_json::from_str(r#"{"swap": 300}"#).unwrap();
        assert_eq!(
            writes(&memory(&f.dir(), &m).unwrap()),
            [("memory.swap.max".into(), "200".into())]
        );
    }

    #[test]
    fn cpu_max_merges_with_the_current_value() {
        let f = Fixture::new(&[
            ("cpu.weight", "100\n"),
            ("cpu.max", "50000 100000\n"),
            ("cpu.max.burst", "0\n"),
            ("cpu.idle", "0\n"),
        ]);
        let c: LinuxCpu =
            serde_json::from_str(r#"{"shares": 1024, "period": 200000, "idle": 1}"#).unwrap();
        assert_eq!(
            writes(&cpu(&f.dir(), &c).unwrap()),
            [
                ("cpu.weight".into(), "39".into()),
                ("cpu.max".into(), "50000 200000".into()),
                ("cpu.idle".into(), "1".into()),
            ]
        );
        let c: LinuxCpu = serde_json::from_str(r#"{"quota": -1, "burst": 1000}"#).unwrap();
        assert_eq!(
            writes(&cpu(&f.dir(), &c).unwrap()),
            [
                ("cpu.max.burst".into(), "1000".into()),
                ("cpu.max".into(), "max 100000".into())
            ]
        );
        let c: LinuxCpu = serde_json::from_str(r#"{"realtimeRuntime": 1000}"#).unwrap();
        assert!(cpu(&f.dir(), &c)
            .unwrap_err()
            .to_string()
            .contains("linux.resources.cpu.realtimeRuntime: cgroup v2 has no real-time"));
    }

    #[test]
    fn io_weight_and_max() {
        let f = Fixture::new(&[("io.weight", "default 100\n"), ("io.max", "")]);
        let b: LinuxBlockIo = serde_json::from_str(r#"{"weight": 500}"#).unwrap();
        let s = io(&f.dir(), &b).unwrap();
        assert_eq!(writes(&s), [("io.weight".into(), "default 4950".into())]);
        let Step::Write { undo, .. } = &s[0] else {
            panic!()
        };
        assert_eq!(undo[0].value, "default 100");
        let Some(dev) = fs::read_dir("/sys/dev/block")
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
        else {
            return;
        };
        let (maj, min) = dev.split_once(':').unwrap();
        fs::write(
            f.dir().join("io.max"),
            format!("{dev} rbps=1000 wbps=max riops=max wiops=max\n"),
        )
        .unwrap();
        let b: LinuxBlockIo = serde_json::from_str(&format!(
            r#"{{"throttleReadBpsDevice": [{{"major": {maj}, "minor": {min}, "rate": 0}}],
                "throttleWriteIOPSDevice": [{{"major": {maj}, "minor": {min}, "rate": 30}}],
                "weightDevice": [{{"major": {maj}, "minor": {min}, "weight": 200}}]}}"#
        ))
        .unwrap();
        let e = io(&f.dir(), &b).unwrap_err().to_string();
        assert!(
            e.contains("weightDevice[0].weight: per-device weights need the BFQ"),
            "{e}"
        );
        fs::write(f.dir().join("io.bfq.weight"), "default 100\n").unwrap();
        let s = io(&f.dir(), &b).unwrap();
        assert_eq!(
            writes(&s),
            [
                ("io.bfq.weight".into(), format!("{dev} 200")),
                ("io.max".into(), format!("{dev} rbps=max")),
                ("io.max".into(), format!("{dev} wiops=30")),
            ]
        );
        let Step::Write { undo, .. } = &s[1] else {
            panic!()
        };
        assert_eq!(undo[0].value, format!("{dev} rbps=1000"));
    }

    #[test]
    fn unified_keys_need_their_controller_on_v2() {
        let f = Fixture::new(&[
            ("cgroup.controllers", "memory pids\n"),
            ("memory.high", "max\n"),
            ("cgroup.max.depth", "max\n"),
        ]);
        let v2 = Mount {
            mountpoint: PathBuf::from("/sys/fs/cgroup"),
            controllers: vec![],
            v2: true,
            own: PathBuf::from("/"),
        };
        let leaves = vec![(v2.clone(), f.dir())];
        let ctl = Controllers::new(&leaves);
        let mut u = HashMap::new();
        u.insert("memory.high".to_string(), "50000000".to_string());
        u.insert("cgroup.max.depth".to_string(), "2".to_string());
        assert_eq!(
            writes(&unified(&ctl, &u).unwrap()),
            [
                ("cgroup.max.depth".into(), "2".into()),
                ("memory.high".into(), "50000000".into())
            ]
        );
        u.insert("io.max".to_string(), "x".to_string());
        let e = unified(&ctl, &u).unwrap_err().to_string();
        assert!(
            e.contains("linux.resources.unified[io.max]: the io controller is not enabled"),
            "{e}"
        );

        // Hybrid: memory is a v1 controller there.
        let v1 = Mount {
            mountpoint: PathBuf::from("/sys/fs/cgroup/memory"),
            controllers: vec!["memory".into()],
            v2: false,
            own: PathBuf::from("/"),
        };
        fs::write(f.dir().join("cgroup.controllers"), "").unwrap();
        let leaves = vec![(v1, PathBuf::from("/nonexistent")), (v2, f.dir())];
        let ctl = Controllers::new(&leaves);
        let mut u = HashMap::new();
        u.insert("memory.high".to_string(), "1".to_string());
        let e = unified(&ctl, &u).unwrap_err().to_string();
        assert!(
            e.contains("memory is not available on this host's cgroup v2 tree"),
            "{e}"
        );
        let mut u = HashMap::new();
        u.insert("cgroup.max.depth".to_string(), "3".to_string());
        assert_eq!(writes(&unified(&ctl, &u).unwrap()).len(), 1);
        let mut u = HashMap::new();
        u.insert("../x".to_string(), "3".to_string());
        assert!(unified(&ctl, &u).is_err());
    }
}

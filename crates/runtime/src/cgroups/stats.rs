//! Resource usage of a container's cgroup, in the shape `runc events` prints (runc's
//! types/events.go `Stats`), read from the v1 controller files or the v2 ones.
//!
//! Go's `omitempty` is mirrored with `skip_serializing_if`, so the JSON matches runc's field
//! for field; nested structs are always present, as they are in Go.

use super::hierarchy::{Hierarchy, Mount};
use super::resources::{leaves_from_dirs, read, Controllers, Located};
use super::v1_limits::parse_id_list;
use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: IntelRdt,
    pub network_interfaces: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// Nanoseconds.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Memory {
    #[serde(skip_serializing_if = "zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Pids {
    #[serde(skip_serializing_if = "zero")]
    pub current: u64,
    /// 0 when there is no limit (runc reports "max" this way).
    #[serde(skip_serializing_if = "zero")]
    pub limit: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "zero")]
    pub value: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty", rename = "ioQueueRecursive")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// Intel RDT is not supported; runc prints an empty object when it is off.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct IntelRdt {}

/// The stats of a container, given its recorded cgroup directories (`Record::cgroup_dirs`).
pub fn stats(cgroup_dirs: &[PathBuf]) -> Result<Stats> {
    let hierarchy = Hierarchy::detect()?;
    let leaves = leaves_from_dirs(&hierarchy, cgroup_dirs);
    if leaves.is_empty() {
        return Err(Error::Cgroup(
            "events: the container has no cgroup directories on this host".into(),
        ));
    }
    Ok(collect(&leaves))
}

/// Reads every controller the container has. A controller the host lacks, or a file the
/// kernel does not offer, leaves its part at zero, as runc does.
pub fn collect(leaves: &[(Mount, PathBuf)]) -> Stats {
    let ctl = Controllers::new(leaves);
    let mut s = Stats::default();
    // cpu.stat is in every v2 cgroup, enabled or not; v1 splits usage (cpuacct) from
    // throttling (cpu).
    if let Some(Located::V1(d)) = ctl.locate("cpuacct") {
        s.cpu.usage = v1_cpuacct(d);
    }
    match ctl.locate("cpu") {
        Some(Located::V1(d)) => {
            if let Some(t) = read(&d.join("cpu.stat")) {
                let kv = flat_keyed(&t);
                s.cpu.throttling = Throttling {
                    periods: kv.get("nr_periods").copied().unwrap_or(0),
                    throttled_periods: kv.get("nr_throttled").copied().unwrap_or(0),
                    throttled_time: kv.get("throttled_time").copied().unwrap_or(0),
                };
            }
        }
        _ => {
            if let Some(d) = ctl.v2_leaf().filter(|_| !ctl.is_legacy()) {
                if let Some(t) = read(&d.join("cpu.stat")) {
                    (s.cpu.usage, s.cpu.throttling) = parse_v2_cpu_stat(&t);
                }
            }
        }
    }
    match ctl.locate("cpuset") {
        Some(Located::V1(d)) => s.cpuset = v1_cpuset(d),
        Some(Located::V2(d)) => {
            let list = |f: &str| ids(read(&d.join(f)).as_deref().unwrap_or(""));
            s.cpuset.cpus = list("cpuset.cpus.effective");
            s.cpuset.mems = list("cpuset.mems.effective");
        }
        None => {}
    }
    match ctl.locate("memory") {
        Some(Located::V1(d)) => s.memory = v1_memory(d),
        Some(Located::V2(d)) => s.memory = v2_memory(d),
        None => {}
    }
    if let Some(Located::V1(d) | Located::V2(d)) = ctl.locate("pids") {
        s.pids.current = num(&d.join("pids.current"));
        s.pids.limit = match read(&d.join("pids.max")).as_deref() {
            Some("max") | None => 0,
            Some(v) => v.parse().unwrap_or(0),
        };
    }
    match (ctl.locate("blkio"), ctl.locate("io")) {
        (Some(Located::V1(d)), _) => s.blkio = v1_blkio(d),
        (_, Some(Located::V2(d))) => {
            s.blkio = parse_io_stat(&read(&d.join("io.stat")).unwrap_or_default())
        }
        _ => {}
    }
    match ctl.locate("hugetlb") {
        Some(Located::V1(d)) => s.hugetlb = v1_hugetlb(d),
        Some(Located::V2(d)) => s.hugetlb = v2_hugetlb(d),
        None => {}
    }
    s
}

fn num(path: &Path) -> u64 {
    read(path).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A v2 limit: "max" reports as u64::MAX, as runc does.
fn limit(path: &Path) -> u64 {
    match read(path).as_deref() {
        Some("max") => u64::MAX,
        Some(v) => v.parse().unwrap_or(0),
        None => 0,
    }
}

fn ids(list: &str) -> Vec<u16> {
    parse_id_list(list)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| u16::try_from(i).ok())
        .collect()
}

/// "key value" lines (memory.stat, cpu.stat, cpuacct.stat) as a map; other lines skipped.
pub fn flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// v2 cpu.stat: microseconds, converted to runc's nanoseconds.
pub fn parse_v2_cpu_stat(text: &str) -> (CpuUsage, Throttling) {
    let kv = flat_keyed(text);
    let us = |k: &str| kv.get(k).copied().unwrap_or(0).saturating_mul(1000);
    (
        CpuUsage {
            total: us("usage_usec"),
            user: us("user_usec"),
            kernel: us("system_usec"),
            ..CpuUsage::default()
        },
        Throttling {
            periods: kv.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: kv.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: us("throttled_usec"),
        },
    )
}

fn v1_cpuacct(d: &Path) -> CpuUsage {
    let per = |f: &str| -> Vec<u64> {
        read(&d.join(f))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect()
    };
    // cpuacct.stat counts USER_HZ ticks.
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    };
    let stat = flat_keyed(&read(&d.join("cpuacct.stat")).unwrap_or_default());
    let ticks = |k: &str| {
        stat.get(k)
            .copied()
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            / hz
    };
    CpuUsage {
        total: num(&d.join("cpuacct.usage")),
        percpu: per("cpuacct.usage_percpu"),
        percpu_kernel: per("cpuacct.usage_percpu_sys"),
        percpu_user: per("cpuacct.usage_percpu_user"),
        kernel: ticks("system"),
        user: ticks("user"),
    }
}

fn v1_cpuset(d: &Path) -> CpuSet {
    let prefix = if d.join("cpuset.cpus").exists() {
        "cpuset."
    } else {
        ""
    };
    let f = |name: &str| d.join(format!("{prefix}{name}"));
    CpuSet {
        cpus: ids(&read(&f("cpus")).unwrap_or_default()),
        cpu_exclusive: num(&f("cpu_exclusive")),
        mems: ids(&read(&f("mems")).unwrap_or_default()),
        mem_hardwall: num(&f("mem_hardwall")),
        mem_exclusive: num(&f("mem_exclusive")),
        memory_migrate: num(&f("memory_migrate")),
        memory_spread_page: num(&f("memory_spread_page")),
        memory_spread_slab: num(&f("memory_spread_slab")),
        memory_pressure: num(&f("memory_pressure")),
        sched_load_balance: num(&f("sched_load_balance")),
        sched_relax_domain_level: read(&f("sched_relax_domain_level"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    }
}

fn v1_memory(d: &Path) -> Memory {
    // runc prints v1 limits as the kernel does (9223372036854771712 for none).
    let entry = |prefix: &str| MemoryEntry {
        limit: num(&d.join(format!("{prefix}.limit_in_bytes"))),
        usage: num(&d.join(format!("{prefix}.usage_in_bytes"))),
        max: num(&d.join(format!("{prefix}.max_usage_in_bytes"))),
        failcnt: num(&d.join(format!("{prefix}.failcnt"))),
    };
    let raw = flat_keyed(&read(&d.join("memory.stat")).unwrap_or_default());
    Memory {
        cache: raw.get("cache").copied().unwrap_or(0),
        usage: entry("memory"),
        swap: entry("memory.memsw"),
        kernel: entry("memory.kmem"),
        kernel_tcp: entry("memory.kmem.tcp"),
        raw,
    }
}

/// v2 memory: swap is reported as memory+swap, the v1 meaning runc keeps for compatibility.
pub fn v2_memory(d: &Path) -> Memory {
    let raw = flat_keyed(&read(&d.join("memory.stat")).unwrap_or_default());
    let events = flat_keyed(&read(&d.join("memory.events")).unwrap_or_default());
    let usage = MemoryEntry {
        limit: limit(&d.join("memory.max")),
        usage: num(&d.join("memory.current")),
        max: num(&d.join("memory.peak")),
        // The nearest v2 has to v1's failcnt: how often usage hit memory.max.
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    let mut swap = MemoryEntry {
        limit: limit(&d.join("memory.swap.max")),
        usage: num(&d.join("memory.swap.current")),
        max: num(&d.join("memory.swap.peak")),
        failcnt: 0,
    };
    swap.usage += usage.usage;
    if swap.limit != u64::MAX {
        swap.limit = swap.limit.saturating_add(usage.limit);
    }
    Memory {
        cache: raw.get("file").copied().unwrap_or(0),
        usage,
        swap,
        kernel: MemoryEntry::default(),
        kernel_tcp: MemoryEntry::default(),
        raw,
    }
}

/// v1 blkio lines: "8:0 Read 1282048" (and a final "Total N").
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, a, b) = (f.next()?, f.next()?, f.next());
            let (major, minor) = dev.split_once(':')?;
            let (op, value) = match b {
                Some(v) => (a.to_string(), v),
                None => (String::new(), a),
            };
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

fn v1_blkio(d: &Path) -> Blkio {
    let get = |f: &str| parse_blkio_v1(&read(&d.join(f)).unwrap_or_default());
    // runc's order: BFQ's counters if it is in use, else the throttle layer's.
    for (bytes, ios) in [
        (
            "blkio.bfq.io_service_bytes_recursive",
            "blkio.bfq.io_serviced_recursive",
        ),
        (
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.throttle.io_serviced_recursive",
        ),
        (
            "blkio.throttle.io_service_bytes",
            "blkio.throttle.io_serviced",
        ),
    ] {
        let b = get(bytes);
        if !b.is_empty() {
            return Blkio {
                io_service_bytes_recursive: b,
                io_serviced_recursive: get(ios),
                ..Blkio::default()
            };
        }
    }
    Blkio::default()
}

/// v2 io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" per device.
pub fn parse_io_stat(text: &str) -> Blkio {
    let mut b = Blkio::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut b.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut b.io_service_bytes_recursive, "Write"),
                "rios" => (&mut b.io_serviced_recursive, "Read"),
                "wios" => (&mut b.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    b
}

fn v1_hugetlb(d: &Path) -> BTreeMap<String, Hugetlb> {
    super::v1_limits::hugetlb_sizes(d, ".limit_in_bytes")
        .into_iter()
        .map(|size| {
            let f = |s: &str| d.join(format!("hugetlb.{size}.{s}"));
            let h = Hugetlb {
                usage: num(&f("usage_in_bytes")),
                max: num(&f("max_usage_in_bytes")),
                failcnt: num(&f("failcnt")),
            };
            (size, h)
        })
        .collect()
}

fn v2_hugetlb(d: &Path) -> BTreeMap<String, Hugetlb> {
    super::v1_limits::hugetlb_sizes(d, ".max")
        .into_iter()
        .map(|size| {
            let events =
                flat_keyed(&read(&d.join(format!("hugetlb.{size}.events"))).unwrap_or_default());
            let h = Hugetlb {
                usage: num(&d.join(format!("hugetlb.{size}.current"))),
                max: 0,
                failcnt: events.get("max").copied().unwrap_or(0),
            };
            (size, h)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const CPU_STAT: &str = "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n\
        core_sched.force_idle_usec 0\nnr_periods 10\nnr_throttled 3\nthrottled_usec 70\n\
        nr_bursts 0\nburst_usec 0\n";
    const IO_STAT: &str = "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
        253:0 rbytes=0 wbytes=0 rios=0 wios=0 dbytes=0 dios=0\n";
    const MEMORY_STAT: &str = "anon 1048576\nfile 2097152\nkernel 4096\nsock 0\n\
        pgfault 1234\nworkingset_refault_anon 0\n";

    #[test]
    fn v2_cpu_stat_is_converted_to_nanoseconds() {
        let (u, t) = parse_v2_cpu_stat(CPU_STAT);
        assert_eq!((u.total, u.user, u.kernel), (2_500_000, 2_000_000, 500_000));
        assert_eq!(
            (t.periods, t.throttled_periods, t.throttled_time),
            (10, 3, 70_000)
        );
    }

    #[test]
    fn v2_io_stat_becomes_blkio_entries() {
        let b = parse_io_stat(IO_STAT);
        assert_eq!(b.io_service_bytes_recursive.len(), 4);
        assert_eq!(
            b.io_service_bytes_recursive[1],
            BlkioEntry {
                major: 254,
                minor: 0,
                op: "Write".into(),
                value: 8192
            }
        );
        assert_eq!(b.io_serviced_recursive[0].value, 1);
        let json = serde_json::to_value(&b).unwrap();
        // Zero values are left out, as Go's omitempty does.
        assert_eq!(
            json["ioServicedRecursive"][2],
            serde_json::json!({"major": 253, "op": "Read"})
        );
    }

    #[test]
    fn v2_memory_from_fixture_files() {
        let d = std::env::temp_dir().join(format!("berth-stats-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        for (f, v) in [
            ("memory.current", "3145728\n"),
            ("memory.max", "104857600\n"),
            ("memory.peak", "4194304\n"),
            ("memory.swap.current", "1024\n"),
            ("memory.swap.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n"),
            ("memory.stat", MEMORY_STAT),
        ] {
            fs::write(d.join(f), v).unwrap();
        }
        let m = v2_memory(&d);
        fs::remove_dir_all(&d).unwrap();
        assert_eq!(
            m.usage,
            MemoryEntry {
                limit: 104857600,
                usage: 3145728,
                max: 4194304,
                failcnt: 7
            }
        );
        assert_eq!(m.swap.usage, 3145728 + 1024);
        assert_eq!(m.swap.limit, u64::MAX);
        assert_eq!(m.cache, 2097152);
        assert_eq!(m.raw["pgfault"], 1234);
    }

    #[test]
    fn v1_blkio_lines() {
        let e = parse_blkio_v1("254:0 Read 4096\n254:0 Write 0\n254:0 Total 4096\nTotal 4096\n");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].op, "Read");
        assert_eq!(parse_blkio_v1("8:0 77\n")[0].value, 77);
    }

    #[test]
    fn json_shape_matches_runc() {
        let mut s = Stats::default();
        s.pids.current = 3;
        s.memory.usage.limit = 10;
        let v = serde_json::to_value(&s).unwrap();
        for key in [
            "cpu",
            "cpuset",
            "memory",
            "pids",
            "blkio",
            "hugetlb",
            "intel_rdt",
            "network_interfaces",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        assert_eq!(v["pids"], serde_json::json!({"current": 3}));
        assert_eq!(
            v["memory"]["usage"],
            serde_json::json!({"limit": 10, "failcnt": 0})
        );
        assert_eq!(
            v["cpu"]["usage"],
            serde_json::json!({"kernel": 0, "user": 0})
        );
        assert!(v["memory"].get("kernelTCP").is_some());
    }
}

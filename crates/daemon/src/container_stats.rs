//! Looking into a container: `top` (its processes, from its cgroup and /proc), `stats`
//! (its cgroup's counters and its network namespace's interfaces) and `diff` (its
//! writable layer against the image's layers).
//!
//! Everything here blocks on /proc, /sys/fs/cgroup or the snapshot: call it from
//! `spawn_blocking`. The parsers are pure and unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_api::stats::{
    BlkioStatEntry, BlkioStats, ContainerStats, ContainerTop, CpuStats, CpuUsage, FilesystemChange,
    MemoryStats, NetworkStats, PidsStats, ThrottlingData, CHANGE_ADDED, CHANGE_DELETED,
    CHANGE_MODIFIED,
};
use berth_runtime::cgroups::stats::BlkioEntry;
use berth_runtime::state::StateRoot;
use chrono::{DateTime, Local, TimeZone};

use crate::clock;
use crate::container_record::{ContainerRecord, ZERO_TIME};
use crate::image_service::ImageService;
use crate::response::ApiError;

/// `ps -ef`'s columns: what dockerd shows when the client gives no `ps_args`.
const PS_EF_TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

/// Pids of every process in the container's cgroup.
fn container_pids(root: &StateRoot, id: &str) -> Result<Vec<i32>, ApiError> {
    let mut pids = berth_runtime::lifecycle::pids(root, id)
        .map_err(|e| ApiError::internal(format!("cannot list the container's processes: {e}")))?;
    pids.sort_unstable();
    Ok(pids)
}

/// `GET /containers/{id}/top`. Without `ps_args`, the `ps -ef` table read from /proc; with
/// them, the host's `ps` run with those arguments and filtered to the container's pids,
/// exactly as dockerd does (so any `ps` format works).
pub fn top(root: &StateRoot, id: &str, ps_args: &str) -> Result<ContainerTop, ApiError> {
    let pids = container_pids(root, id)?;
    if ps_args.trim().is_empty() {
        let host = HostClock::read();
        let processes = pids
            .iter()
            .filter_map(|&pid| ProcInfo::read(pid))
            .map(|p| p.ps_ef_row(&host))
            .collect();
        return Ok(ContainerTop {
            titles: PS_EF_TITLES.iter().map(|t| (*t).to_owned()).collect(),
            processes,
        });
    }
    let output = std::process::Command::new("ps")
        .args(ps_args.split_whitespace())
        .output()
        .map_err(|e| ApiError::internal(format!("Error running ps: {e}")))?;
    if !output.status.success() {
        return Err(ApiError::internal(format!(
            "ps: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    parse_ps_output(&String::from_utf8_lossy(&output.stdout), &pids)
}

/// dockerd's `parsePSOutput`: the header's words are the titles, rows whose PID column is
/// one of `pids` are kept, and the words past the last title join into the last column
/// (the command line has spaces).
fn parse_ps_output(output: &str, pids: &[i32]) -> Result<ContainerTop, ApiError> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let pid_index = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| ApiError::internal("Couldn't find PID field in ps output"))?;
    let mut processes = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_index).and_then(|p| p.parse::<i32>().ok()) else {
            return Err(ApiError::internal(format!(
                "Unexpected pid '{}' in ps output",
                fields.get(pid_index).unwrap_or(&"")
            )));
        };
        if !pids.contains(&pid) {
            continue;
        }
        let keep = titles.len().saturating_sub(1).min(fields.len());
        let mut row: Vec<String> = fields[..keep].iter().map(|f| (*f).to_owned()).collect();
        row.push(fields[keep..].join(" "));
        processes.push(row);
    }
    Ok(ContainerTop { titles, processes })
}

/// What `ps -ef` needs of the host: clock ticks and when it booted.
struct HostClock {
    ticks_per_second: u64,
    boot_time: i64,
    uptime_seconds: f64,
}

impl HostClock {
    fn read() -> Self {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let boot_time = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let uptime_seconds = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Self {
            ticks_per_second: u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100),
            boot_time,
            uptime_seconds,
        }
    }
}

/// One process as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcInfo {
    pid: i32,
    ppid: i32,
    /// Effective uid, what `ps -f` shows as UID.
    uid: u32,
    tty_nr: u64,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    /// Clock ticks after boot.
    start_ticks: u64,
    comm: String,
    cmdline: Vec<String>,
}

impl ProcInfo {
    /// None for a process that exited meanwhile.
    fn read(pid: i32) -> Option<Self> {
        let dir = PathBuf::from(format!("/proc/{pid}"));
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let mut info = parse_stat(&stat)?;
        info.pid = pid;
        info.uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        info.cmdline = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Some(info)
    }

    fn ps_ef_row(&self, host: &HostClock) -> Vec<String> {
        let hz = host.ticks_per_second;
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(self.uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| self.uid.to_string());
        let started = host.boot_time + (self.start_ticks / hz) as i64;
        let running_for = host.uptime_seconds - self.start_ticks as f64 / hz as f64;
        let cpu = cpu_percent(self.cpu_ticks, hz, running_for);
        let cmd = if self.cmdline.is_empty() {
            format!("[{}]", self.comm)
        } else {
            self.cmdline.join(" ")
        };
        vec![
            user,
            self.pid.to_string(),
            self.ppid.to_string(),
            cpu.to_string(),
            stime(started, chrono::Local::now()),
            tty_name(self.tty_nr),
            cpu_time(self.cpu_ticks / hz),
            cmd,
        ]
    }
}

/// /proc/PID/stat: the command is in parentheses and may itself contain them, so the
/// fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<ProcInfo> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is field 3 (state) of proc(5).
    let num = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(ProcInfo {
        pid: 0,
        ppid: fields.get(1)?.parse().ok()?,
        uid: 0,
        tty_nr: num(4)?,
        cpu_ticks: num(11)? + num(12)?,
        start_ticks: num(19)?,
        comm,
        cmdline: Vec::new(),
    })
}

/// procps's `C`: CPU time over time alive, in whole percent, capped at 99.
fn cpu_percent(cpu_ticks: u64, hz: u64, running_for: f64) -> u64 {
    if running_for <= 0.0 {
        return 0;
    }
    let pct = (cpu_ticks as f64 / hz as f64) * 100.0 / running_for;
    (pct as u64).min(99)
}

/// procps's `STIME`: `HH:MM` within a day, `MonDD` within the year, else the year.
fn stime(started_unix: i64, now: DateTime<Local>) -> String {
    let Some(started) = Local.timestamp_opt(started_unix, 0).single() else {
        return "?".to_owned();
    };
    let age = now.signed_duration_since(started);
    if age.num_hours() < 24 {
        started.format("%H:%M").to_string()
    } else if started.format("%Y").to_string() == now.format("%Y").to_string() {
        started.format("%b%d").to_string()
    } else {
        started.format("%Y").to_string()
    }
}

/// procps's `TIME`: `[DD-]HH:MM:SS` of CPU time.
fn cpu_time(seconds: u64) -> String {
    let (d, rest) = (seconds / 86_400, seconds % 86_400);
    let hms = format!("{:02}:{:02}:{:02}", rest / 3600, rest / 60 % 60, rest % 60);
    if d > 0 {
        format!("{d}-{hms}")
    } else {
        hms
    }
}

/// The controlling terminal from `tty_nr`: `pts/N`, `ttyN`, or `?` for none.
fn tty_name(tty_nr: u64) -> String {
    if tty_nr == 0 {
        return "?".to_owned();
    }
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        136..=143 => format!("pts/{}", minor + (major - 136) * 256),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        5 if minor == 1 => "console".to_owned(),
        _ => "?".to_owned(),
    }
}

// ---- stats ----

/// One sample of a container's counters.
///
/// `pid` is the container's init (its network namespace is read through it);
/// `with_network` is false for `--network host`, whose counters are the host's and which
/// dockerd leaves out.
pub fn sample(
    root: &StateRoot,
    record: &ContainerRecord,
    with_network: bool,
) -> Result<ContainerStats, ApiError> {
    let container = root
        .load(&record.id)
        .map_err(|e| ApiError::internal(format!("cannot read the container's state: {e}")))?;
    let cg = berth_runtime::cgroups::stats::stats(&container.record.cgroup_dirs)
        .map_err(|e| ApiError::internal(format!("cannot read the container's cgroup: {e}")))?;
    let (system_cpu_usage, online_cpus) = host_cpu();
    let machine_memory = machine_memory();
    let mut limit = cg.memory.usage.limit;
    // dockerd: no limit (v1's huge number, v2's "max") shows as the host's memory.
    if machine_memory > 0 && limit > machine_memory {
        limit = machine_memory;
    }
    let networks = if with_network {
        let text = std::fs::read_to_string(format!("/proc/{}/net/dev", container.record.pid))
            .unwrap_or_default();
        Some(parse_net_dev(&text)).filter(|n| !n.is_empty())
    } else {
        None
    };
    Ok(ContainerStats {
        name: format!("/{}", record.name),
        id: record.id.clone(),
        read: clock::now_rfc3339(),
        preread: ZERO_TIME.to_owned(),
        pids_stats: PidsStats {
            current: cg.pids.current,
            limit: cg.pids.limit,
        },
        blkio_stats: BlkioStats {
            io_service_bytes_recursive: blkio(&cg.blkio.io_service_bytes_recursive),
            io_serviced_recursive: blkio(&cg.blkio.io_serviced_recursive),
            io_queue_recursive: blkio(&cg.blkio.io_queued_recursive),
            io_service_time_recursive: blkio(&cg.blkio.io_service_time_recursive),
            io_wait_time_recursive: blkio(&cg.blkio.io_wait_time_recursive),
            io_merged_recursive: blkio(&cg.blkio.io_merged_recursive),
            io_time_recursive: blkio(&cg.blkio.io_time_recursive),
            sectors_recursive: blkio(&cg.blkio.sectors_recursive),
        },
        num_procs: 0,
        storage_stats: Default::default(),
        cpu_stats: CpuStats {
            cpu_usage: CpuUsage {
                total_usage: cg.cpu.usage.total,
                percpu_usage: cg.cpu.usage.percpu.clone(),
                usage_in_kernelmode: cg.cpu.usage.kernel,
                usage_in_usermode: cg.cpu.usage.user,
            },
            system_cpu_usage,
            online_cpus,
            throttling_data: ThrottlingData {
                periods: cg.cpu.throttling.periods,
                throttled_periods: cg.cpu.throttling.throttled_periods,
                throttled_time: cg.cpu.throttling.throttled_time,
            },
        },
        precpu_stats: CpuStats::default(),
        memory_stats: MemoryStats {
            usage: cg.memory.usage.usage,
            max_usage: cg.memory.usage.max,
            stats: cg.memory.raw.clone(),
            failcnt: cg.memory.usage.failcnt,
            limit,
        },
        networks,
    })
}

/// The sample dockerd sends for a container that does not run: names and zero times.
pub fn not_running(record: &ContainerRecord) -> ContainerStats {
    ContainerStats {
        name: format!("/{}", record.name),
        id: record.id.clone(),
        read: ZERO_TIME.to_owned(),
        preread: ZERO_TIME.to_owned(),
        ..ContainerStats::default()
    }
}

/// Empty lists are `null`, as dockerd's nil slices.
fn blkio(entries: &[BlkioEntry]) -> Option<Vec<BlkioStatEntry>> {
    if entries.is_empty() {
        return None;
    }
    Some(
        entries
            .iter()
            .map(|e| BlkioStatEntry {
                major: e.major,
                minor: e.minor,
                op: e.op.clone(),
                value: e.value,
            })
            .collect(),
    )
}

/// The host's CPU time in nanoseconds and the number of CPUs, from /proc/stat, as
/// dockerd's `getSystemCPUUsage` computes them (the first seven fields of the `cpu` line).
fn host_cpu() -> (u64, u32) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or(100);
    parse_proc_stat(&text, hz)
}

fn parse_proc_stat(text: &str, hz: u64) -> (u64, u32) {
    let mut total = 0;
    let mut cpus = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let ticks: u64 = fields.take(7).filter_map(|f| f.parse::<u64>().ok()).sum();
                total = ticks.saturating_mul(1_000_000_000) / hz;
            }
            Some(name) if name.len() > 3 && name.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    (total, cpus)
}

/// MemTotal in bytes.
fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// /proc/net/dev, every interface but the loopback (dockerd reports the container's
/// endpoints only).
fn parse_net_dev(text: &str) -> BTreeMap<String, NetworkStats> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let v: Vec<u64> = counters
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        if v.len() < 12 {
            continue;
        }
        out.insert(
            name.to_owned(),
            NetworkStats {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            },
        );
    }
    out
}

// ---- diff ----

/// Paths the engine itself puts in the rootfs for each run (mount points of the files it
/// binds in and of the kernel file systems). Docker keeps these in a separate `-init`
/// layer, so they never show in `docker diff`; berth has no such layer and hides them.
const ENGINE_PATHS: &[&str] = &[
    "/.dockerenv",
    "/dev",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/mtab",
    "/etc/resolv.conf",
    "/proc",
    "/sys",
];

fn is_engine_path(path: &str) -> bool {
    ENGINE_PATHS
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

/// An overlayfs whiteout: a 0/0 character device.
fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// An overlayfs opaque directory: its lower contents are hidden (`rm -rf d; mkdir d`).
fn is_opaque(path: &Path) -> bool {
    matches!(
        xattr_value(path, "trusted.overlay.opaque").as_deref(),
        Some(b"y")
    )
}

fn xattr_value(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 16];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    usize::try_from(n).ok().map(|n| buf[..n].to_vec())
}

/// `GET /containers/{id}/changes`: moby's overlay `changes` walk of the writable layer.
/// A whiteout or an opaque directory is a deletion; an entry that exists in an image
/// layer is a modification (a directory only when its size, mode or mtime differ); any
/// other entry is an addition. The parent of an addition or deletion is always reported
/// modified, as Docker does.
pub fn changes(images: &ImageService, id: &str) -> Result<Vec<FilesystemChange>, ApiError> {
    let snapshot = images
        .snapshotter
        .get(id)
        .map_err(|e| ApiError::internal(format!("cannot read the container's layer: {e}")))?;
    let layers = images.snapshotter.layer_store();
    // Top layer first: the first one that has a path decides what the image had there.
    let lowers: Vec<PathBuf> = snapshot
        .layers
        .iter()
        .rev()
        .map(|c| layers.diff_path(c))
        .collect();
    let mut raw = Vec::new();
    walk(&snapshot.upper, "", &lowers, &mut raw);
    Ok(finish_changes(raw))
}

/// One entry of the writable layer, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawChange {
    path: String,
    kind: u8,
    is_dir: bool,
}

fn walk(upper: &Path, rel: &str, lowers: &[PathBuf], out: &mut Vec<RawChange>) {
    let Ok(entries) = std::fs::read_dir(upper.join(rel.trim_start_matches('/'))) else {
        return;
    };
    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let path = format!("{rel}/{}", name.to_string_lossy());
        let full = upper.join(path.trim_start_matches('/'));
        let Ok(meta) = std::fs::symlink_metadata(&full) else {
            continue;
        };
        let is_dir = meta.is_dir();
        let kind = if is_whiteout(&meta) || (is_dir && is_opaque(&full)) {
            Some(CHANGE_DELETED)
        } else {
            match in_image(lowers, &path) {
                None => Some(CHANGE_ADDED),
                Some(lower) if is_dir && lower.is_dir() && same_dir(&meta, &lower) => None,
                Some(_) => Some(CHANGE_MODIFIED),
            }
        };
        if let Some(kind) = kind {
            out.push(RawChange {
                path: path.clone(),
                kind,
                is_dir,
            });
        } else {
            // Unchanged itself, but its contents may have changed.
            out.push(RawChange {
                path: path.clone(),
                kind: u8::MAX,
                is_dir,
            });
        }
        if is_dir {
            walk(upper, &path, lowers, out);
        }
    }
}

/// The image's entry at `path`, from the topmost layer that has one (a whiteout there
/// means the image does not have it).
fn in_image(lowers: &[PathBuf], path: &str) -> Option<std::fs::Metadata> {
    for lower in lowers {
        if let Ok(meta) = std::fs::symlink_metadata(lower.join(path.trim_start_matches('/'))) {
            return (!is_whiteout(&meta)).then_some(meta);
        }
    }
    None
}

/// moby's test for a directory that was only copied up: same size, mode and mtime.
fn same_dir(upper: &std::fs::Metadata, lower: &std::fs::Metadata) -> bool {
    upper.size() == lower.size()
        && upper.mode() == lower.mode()
        && upper.mtime() == lower.mtime()
        && upper.mtime_nsec() == lower.mtime_nsec()
}

/// From the classified walk to what Docker reports: the engine's own paths hidden, a
/// directory reported modified when something under it was added or deleted (moby's
/// `changedDirs`), and a directory that changed only because the engine put its mount
/// points in it (`/etc` for `/etc/hosts`) left out.
fn finish_changes(raw: Vec<RawChange>) -> Vec<FilesystemChange> {
    let kept: Vec<&RawChange> = raw
        .iter()
        .filter(|c| c.kind != u8::MAX && !is_engine_path(&c.path))
        .collect();
    let mut parents: BTreeSet<String> = BTreeSet::new();
    for c in &kept {
        if c.kind == CHANGE_ADDED || c.kind == CHANGE_DELETED {
            if let Some((parent, _)) = c.path.rsplit_once('/') {
                if !parent.is_empty() {
                    parents.insert(parent.to_owned());
                }
            }
        }
    }
    let engine_parent = |path: &str| {
        ENGINE_PATHS
            .iter()
            .any(|p| p.strip_prefix(path).is_some_and(|r| r.starts_with('/')))
    };
    let mut out: BTreeMap<String, u8> = BTreeMap::new();
    for c in kept {
        if c.is_dir && c.kind == CHANGE_MODIFIED && engine_parent(&c.path) {
            // Changed only if something of the user's changed under it.
            continue;
        }
        out.insert(c.path.clone(), c.kind);
    }
    for p in parents {
        out.entry(p).or_insert(CHANGE_MODIFIED);
    }
    out.into_iter()
        .map(|(path, kind)| FilesystemChange { path, kind })
        .collect()
}

/// Apparent size of the files under `dir` (not following links): a container's `SizeRw`.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_with_parentheses_in_the_name() {
        let stat = "42 (my (odd) cmd) S 1 42 42 34816 42 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12345 1000 10 18446744073709551615";
        let p = parse_stat(stat).expect("parses");
        assert_eq!(p.comm, "my (odd) cmd");
        assert_eq!(p.ppid, 1);
        assert_eq!(p.tty_nr, 34816);
        assert_eq!(p.cpu_ticks, 300);
        assert_eq!(p.start_ticks, 12345);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn ps_columns_as_procps_prints_them() {
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name(34816), "pts/0");
        assert_eq!(tty_name((136 << 8) | 3), "pts/3");
        assert_eq!(tty_name((4 << 8) | 1), "tty1");
        assert_eq!(cpu_time(0), "00:00:00");
        assert_eq!(cpu_time(3725), "01:02:05");
        assert_eq!(cpu_time(90_000), "1-01:00:00");
        assert_eq!(cpu_percent(50, 100, 1.0), 50);
        assert_eq!(cpu_percent(500, 100, 1.0), 99);
        assert_eq!(cpu_percent(5, 100, 0.0), 0);
        let now = Local::now();
        let ts = now.timestamp() - 60;
        assert_eq!(stime(ts, now).len(), 5);
    }

    #[test]
    fn ps_output_filtered_to_the_container() {
        let out = "UID PID PPID CMD\nroot 1 0 /sbin/init\nroot 42 1 sh -c sleep 100\nroot 43 42 sleep 100\n";
        let top = parse_ps_output(out, &[42, 43]).expect("parses");
        assert_eq!(top.titles, ["UID", "PID", "PPID", "CMD"]);
        assert_eq!(top.processes.len(), 2);
        assert_eq!(top.processes[0], ["root", "42", "1", "sh -c sleep 100"]);
        assert!(parse_ps_output("USER COMMAND\nroot x\n", &[1]).is_err());
        assert!(parse_ps_output("PID CMD\nnope x\n", &[1]).is_err());
    }

    #[test]
    fn host_cpu_and_network_counters() {
        let stat = "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\ncpu1 50 0 50 400 0 0 0 0 0 0\nintr 1\n";
        assert_eq!(parse_proc_stat(stat, 100), (10_000_000_000, 2));
        let dev = "Inter-|   Receive  |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1500 12 1 2 0 0 0 0 700 8 3 4 0 0 0 0\n";
        let nets = parse_net_dev(dev);
        assert_eq!(nets.len(), 1);
        let eth0 = &nets["eth0"];
        assert_eq!(
            (
                eth0.rx_bytes,
                eth0.rx_packets,
                eth0.rx_errors,
                eth0.rx_dropped
            ),
            (1500, 12, 1, 2)
        );
        assert_eq!(
            (
                eth0.tx_bytes,
                eth0.tx_packets,
                eth0.tx_errors,
                eth0.tx_dropped
            ),
            (700, 8, 3, 4)
        );
    }

    fn raw(path: &str, kind: u8, is_dir: bool) -> RawChange {
        RawChange {
            path: path.to_owned(),
            kind,
            is_dir,
        }
    }

    #[test]
    fn changes_as_docker_reports_them() {
        let got = finish_changes(vec![
            raw("/etc", CHANGE_MODIFIED, true),
            raw("/etc/hosts", CHANGE_ADDED, false),
            raw("/newfile", CHANGE_ADDED, false),
            raw("/proc", CHANGE_ADDED, true),
            raw("/tmp", u8::MAX, true),
            raw("/tmp/x", CHANGE_ADDED, false),
            raw("/www", u8::MAX, true),
            raw("/www/index.html", CHANGE_DELETED, false),
        ]);
        let got: Vec<(String, u8)> = got.into_iter().map(|c| (c.path, c.kind)).collect();
        assert_eq!(
            got,
            [
                ("/newfile".to_owned(), CHANGE_ADDED),
                ("/tmp".to_owned(), CHANGE_MODIFIED),
                ("/tmp/x".to_owned(), CHANGE_ADDED),
                ("/www".to_owned(), CHANGE_MODIFIED),
                ("/www/index.html".to_owned(), CHANGE_DELETED),
            ]
        );
    }

    #[test]
    fn a_user_change_under_etc_keeps_etc() {
        let got = finish_changes(vec![
            raw("/etc", CHANGE_MODIFIED, true),
            raw("/etc/hosts", CHANGE_ADDED, false),
            raw("/etc/motd", CHANGE_ADDED, false),
        ]);
        let paths: Vec<&str> = got.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/etc", "/etc/motd"]);
    }
}

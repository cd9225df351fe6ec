//! `top`, `stats` and `diff`: looking into containers, laid out as the docker CLI does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use berth_api::client::{query, Client};
use berth_api::container::ContainerSummary;
use berth_api::stats::{change_letter, ContainerStats, ContainerTop, FilesystemChange};

use super::{path_segment, short_id};
use crate::cli::{DiffArgs, StatsArgs, TopArgs};
use crate::human::{bytes_size, human_size_precision};
use crate::table;

/// `docker top CONTAINER [ps OPTIONS]`.
pub fn top(client: &Client, args: TopArgs) -> Result<i32> {
    let ps_args = args.ps_args.join(" ");
    let q = if ps_args.is_empty() {
        String::new()
    } else {
        query(&[("ps_args", &ps_args)])
    };
    let top: ContainerTop = client.get_json(format!(
        "/containers/{}/top{q}",
        path_segment(&args.container)
    ))?;
    let mut rows = vec![top.titles.join("\t")];
    rows.extend(top.processes.iter().map(|p| p.join("\t")));
    print!("{}", tabwriter(&rows, 20, 3));
    Ok(0)
}

/// Go's `tabwriter` with `minwidth` and `padding`, as `docker top` sets it up (20, 3): each
/// tab-terminated cell padded to its column's width.
fn tabwriter(rows: &[String], min_width: usize, padding: usize) -> String {
    let split: Vec<Vec<&str>> = rows.iter().map(|r| r.split('\t').collect()).collect();
    let columns = split.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![min_width; columns];
    for row in &split {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + padding);
        }
    }
    let mut out = String::new();
    for row in &split {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                out.push_str(&format!("{cell:<w$}", w = widths[i]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

/// `docker diff CONTAINER`: `A /path`, `C /path`, `D /path`.
pub fn diff(client: &Client, args: DiffArgs) -> Result<i32> {
    let changes: Vec<FilesystemChange> = client.get_json(format!(
        "/containers/{}/changes",
        path_segment(&args.container)
    ))?;
    for c in changes {
        println!("{} {}", change_letter(c.kind), c.path);
    }
    Ok(0)
}

/// `docker stats [--no-stream] [-a] [CONTAINER...]`: one table of every container's last
/// sample; streaming redraws it each second until interrupted.
pub fn stats(client: &Client, args: StatsArgs) -> Result<i32> {
    let names: Vec<String> = if args.containers.is_empty() {
        let q = if args.all { "?all=1" } else { "" };
        let list: Vec<ContainerSummary> = client.get_json(format!("/containers/json{q}"))?;
        list.into_iter().map(|c| c.id).collect()
    } else {
        args.containers.clone()
    };
    if args.no_stream {
        // One request per container, in parallel: each takes a second (two samples).
        let results: Vec<Result<ContainerStats>> = std::thread::scope(|s| {
            let handles: Vec<_> = names
                .iter()
                .map(|name| {
                    s.spawn(move || -> Result<ContainerStats> {
                        Ok(client.get_json(format!(
                            "/containers/{}/stats?stream=0",
                            path_segment(name)
                        ))?)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("stats reader panicked")))
                })
                .collect()
        });
        let mut rows = vec![HEADER.to_owned()];
        let mut failed = false;
        for r in results {
            match r {
                Ok(s) => rows.push(row(&s)),
                Err(e) => {
                    eprintln!("{}", crate::error_text(&e));
                    failed = true;
                }
            }
        }
        print!("{}", table::render(&rows));
        return Ok(if failed { 1 } else { 0 });
    }
    let latest: Arc<Mutex<BTreeMap<usize, ContainerStats>>> = Arc::default();
    for (i, name) in names.iter().enumerate() {
        let client = client.clone();
        let name = name.clone();
        let latest = latest.clone();
        std::thread::spawn(move || {
            let stream = client
                .get(format!("/containers/{}/stats", path_segment(&name)))
                .send();
            let Ok(stream) = stream else { return };
            for s in stream.json_stream::<ContainerStats>() {
                let Ok(s) = s else { return };
                if let Ok(mut map) = latest.lock() {
                    map.insert(i, s);
                }
            }
        });
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let mut rows = vec![HEADER.to_owned()];
        if let Ok(map) = latest.lock() {
            rows.extend(map.values().map(row));
        }
        // Clear the screen and home the cursor, as the docker CLI redraws.
        print!("\x1b[2J\x1b[H{}", table::render(&rows));
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
}

const HEADER: &str =
    "CONTAINER ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET I/O\tBLOCK I/O\tPIDS";

/// One line of the table, computed as docker/cli's `stats_helpers.go` does.
fn row(s: &ContainerStats) -> String {
    let name = s.name.strip_prefix('/').unwrap_or(&s.name);
    let name = if name.is_empty() { "--" } else { name };
    let mem = memory_usage_no_cache(s) as f64;
    let limit = s.memory_stats.limit as f64;
    let mem_pct = if limit > 0.0 {
        mem / limit * 100.0
    } else {
        0.0
    };
    let (rx, tx) = s
        .networks
        .iter()
        .flat_map(|n| n.values())
        .fold((0u64, 0u64), |(r, t), n| (r + n.rx_bytes, t + n.tx_bytes));
    let (read, write) = block_io(s);
    format!(
        "{}\t{name}\t{:.2}%\t{} / {}\t{mem_pct:.2}%\t{} / {}\t{} / {}\t{}",
        short_id(&s.id),
        cpu_percent(s),
        bytes_size(mem),
        bytes_size(limit),
        human_size_precision(rx as f64, 3),
        human_size_precision(tx as f64, 3),
        human_size_precision(read as f64, 3),
        human_size_precision(write as f64, 3),
        s.pids_stats.current,
    )
}

/// The container's CPU time over the host's in the same interval, times the CPUs.
fn cpu_percent(s: &ContainerStats) -> f64 {
    let cpu_delta = s
        .cpu_stats
        .cpu_usage
        .total_usage
        .saturating_sub(s.precpu_stats.cpu_usage.total_usage) as f64;
    let system_delta = s
        .cpu_stats
        .system_cpu_usage
        .saturating_sub(s.precpu_stats.system_cpu_usage) as f64;
    let mut cpus = s.cpu_stats.online_cpus as f64;
    if cpus == 0.0 {
        cpus = s.cpu_stats.cpu_usage.percpu_usage.len() as f64;
    }
    if system_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / system_delta * cpus * 100.0
    } else {
        0.0
    }
}

/// Usage without the page cache: v1's `total_inactive_file`, v2's `inactive_file`.
fn memory_usage_no_cache(s: &ContainerStats) -> u64 {
    let m = &s.memory_stats;
    for key in ["total_inactive_file", "inactive_file"] {
        if let Some(&v) = m.stats.get(key) {
            if v < m.usage {
                return m.usage - v;
            }
            return m.usage;
        }
    }
    m.usage
}

fn block_io(s: &ContainerStats) -> (u64, u64) {
    let mut read = 0;
    let mut write = 0;
    for e in s.blkio_stats.io_service_bytes_recursive.iter().flatten() {
        match e.op.to_ascii_lowercase().as_str() {
            "read" => read += e.value,
            "write" => write += e.value,
            _ => {}
        }
    }
    (read, write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::stats::{BlkioStatEntry, CpuStats, CpuUsage, NetworkStats};

    #[test]
    fn a_row_as_docker_stats_prints_it() {
        let mut s = ContainerStats {
            name: "/web".into(),
            id: "0123456789abcdef".into(),
            ..ContainerStats::default()
        };
        s.cpu_stats = CpuStats {
            cpu_usage: CpuUsage {
                total_usage: 200,
                ..CpuUsage::default()
            },
            system_cpu_usage: 2000,
            online_cpus: 2,
            ..CpuStats::default()
        };
        s.precpu_stats.cpu_usage.total_usage = 100;
        s.precpu_stats.system_cpu_usage = 1000;
        s.memory_stats.usage = 3 * 1024 * 1024;
        s.memory_stats.limit = 1024 * 1024 * 1024;
        s.memory_stats
            .stats
            .insert("total_inactive_file".into(), 1024 * 1024);
        s.networks = Some(BTreeMap::from([(
            "eth0".into(),
            NetworkStats {
                rx_bytes: 1500,
                tx_bytes: 648,
                ..NetworkStats::default()
            },
        )]));
        s.blkio_stats.io_service_bytes_recursive = Some(vec![
            BlkioStatEntry {
                op: "Read".into(),
                value: 4096,
                ..BlkioStatEntry::default()
            },
            BlkioStatEntry {
                op: "Write".into(),
                value: 0,
                ..BlkioStatEntry::default()
            },
        ]);
        s.pids_stats.current = 2;
        assert_eq!(
            row(&s),
            "0123456789ab\tweb\t20.00%\t2MiB / 1GiB\t0.20%\t1.5kB / 648B\t4.1kB / 0B\t2"
        );
    }

    #[test]
    fn top_columns_are_twenty_wide() {
        let out = tabwriter(&["UID\tPID\tCMD".into(), "root\t1\tsleep 5".into()], 20, 3);
        assert_eq!(
            out,
            "UID                 PID                 CMD\nroot                1                   sleep 5\n"
        );
    }
}

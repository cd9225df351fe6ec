//! Looking into a running container: `GET /containers/{id}/top`, `GET /containers/{id}/stats`
//! and `GET /containers/{id}/changes`, as moby's `api/types/container` names them.
//!
//! The stats fields are snake_case on the wire (moby's `types.StatsJSON` kept the Go
//! client's old tags); Go's `omitempty` is mirrored with `skip_serializing_if`, because the
//! docker CLI reads a missing `percpu_usage` or `online_cpus` differently from a zero.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /containers/{id}/top`: `ps` columns and one row per process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerTop {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// One entry of `GET /containers/{id}/changes` (moby `container.FilesystemChange`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FilesystemChange {
    pub path: String,
    /// [`CHANGE_MODIFIED`], [`CHANGE_ADDED`] or [`CHANGE_DELETED`].
    pub kind: u8,
}

/// `C` in `docker diff`.
pub const CHANGE_MODIFIED: u8 = 0;
/// `A` in `docker diff`.
pub const CHANGE_ADDED: u8 = 1;
/// `D` in `docker diff`.
pub const CHANGE_DELETED: u8 = 2;

/// The letter `docker diff` prints for a change kind.
pub fn change_letter(kind: u8) -> char {
    match kind {
        CHANGE_MODIFIED => 'C',
        CHANGE_ADDED => 'A',
        CHANGE_DELETED => 'D',
        _ => '?',
    }
}

fn zero(v: &u64) -> bool {
    *v == 0
}

fn zero_u32(v: &u32) -> bool {
    *v == 0
}

/// One sample of `GET /containers/{id}/stats` (moby `types.StatsJSON`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerStats {
    /// `/name`, as dockerd sends it (the CLI strips the slash).
    pub name: String,
    pub id: String,
    /// RFC 3339 with nanoseconds: when this sample was taken.
    pub read: String,
    /// When `precpu_stats` was taken; Go's zero time for the first sample.
    pub preread: String,
    pub pids_stats: PidsStats,
    pub blkio_stats: BlkioStats,
    pub num_procs: u32,
    pub storage_stats: StorageStats,
    pub cpu_stats: CpuStats,
    pub precpu_stats: CpuStats,
    pub memory_stats: MemoryStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networks: Option<BTreeMap<String, NetworkStats>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PidsStats {
    #[serde(skip_serializing_if = "zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "zero")]
    pub limit: u64,
}

/// One `major:minor op value` line of the block I/O counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioStatEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// Each list is `null` when the cgroup has no such counter, as dockerd's nil slices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioStats {
    pub io_service_bytes_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_serviced_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_queue_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_service_time_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_wait_time_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_merged_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_time_recursive: Option<Vec<BlkioStatEntry>>,
    pub sectors_recursive: Option<Vec<BlkioStatEntry>>,
}

/// Windows only; Linux sends `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStats {}

/// Nanoseconds of CPU time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    pub total_usage: u64,
    /// Per CPU; cgroup v1 only (v2 has no per-CPU counter), omitted otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_usage: Vec<u64>,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThrottlingData {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    /// The host's CPU time in nanoseconds (all CPUs, from /proc/stat): the CLI's
    /// denominator for `CPU %`.
    #[serde(skip_serializing_if = "zero")]
    pub system_cpu_usage: u64,
    #[serde(skip_serializing_if = "zero_u32")]
    pub online_cpus: u32,
    pub throttling_data: ThrottlingData,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryStats {
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max_usage: u64,
    /// memory.stat as it is (`total_inactive_file` on v1, `inactive_file` on v2: what the
    /// CLI subtracts to show usage without the page cache).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stats: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "zero")]
    pub failcnt: u64,
    #[serde(skip_serializing_if = "zero")]
    pub limit: u64,
}

/// One interface's counters, from /proc/net/dev in the container's network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

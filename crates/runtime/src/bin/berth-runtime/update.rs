//! `update` and `events`: changing a running container's limits and reading its usage, both
//! through the container's recorded cgroup directories.

use crate::cli::UpdateArgs;
use anyhow::{bail, Context as _, Result};
use berth_runtime::cgroups::{resources, stats};
use berth_runtime::state::{StateRoot, Status};
use oci_spec::runtime::LinuxResources;
use serde_json::{json, Map, Value};
use std::io::{Read, Write};

pub fn update(root: &StateRoot, a: UpdateArgs) -> Result<()> {
    let container = root.load(&a.id)?;
    if container.status() == Status::Stopped {
        bail!("cannot update a stopped container");
    }
    let mut wanted = match &a.resources {
        Some(src) => {
            let text = read_source(src)?;
            serde_json::from_slice::<Value>(&text)
                .with_context(|| format!("--resources {src}: invalid JSON"))?
        }
        None => json!({}),
    };
    apply_flags(&mut wanted, &a)?;
    let text = wanted.to_string();
    let de = &mut serde_json::Deserializer::from_slice(text.as_bytes());
    let res: LinuxResources = serde_path_to_error::deserialize(de)
        .map_err(|e| anyhow::anyhow!("linux.resources.{}: {}", e.path(), e.inner()))?;
    resources::update(&container.record.cgroup_dirs, &res)?;
    // Remember the new limits with the container's config, as runc does.
    let mut spec = serde_json::to_value(container.load_spec()?)?;
    merge(&mut spec["linux"]["resources"], &wanted);
    container.save_spec(&serde_json::from_value(spec)?)?;
    Ok(())
}

fn read_source(src: &str) -> Result<Vec<u8>> {
    let mut text = Vec::new();
    if src == "-" {
        std::io::stdin()
            .read_to_end(&mut text)
            .context("reading resources from stdin")?;
    } else {
        text = std::fs::read(src).with_context(|| format!("--resources {src}"))?;
    }
    Ok(text)
}

/// Sets `path` (a list of keys) in `v`, making objects on the way.
fn set(v: &mut Value, path: &[&str], value: Value) {
    let mut cur = v;
    for key in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("made an object above")
            .entry(*key)
            .or_insert(Value::Null);
    }
    *cur = value;
}

fn apply_flags(v: &mut Value, a: &UpdateArgs) -> Result<()> {
    if let Some(w) = a.blkio_weight {
        set(v, &["blockIO", "weight"], json!(w));
    }
    let cpu: [(&str, Option<Value>); 8] = [
        ("period", a.cpu_period.map(|x| json!(x))),
        ("quota", a.cpu_quota.map(|x| json!(x))),
        ("burst", a.cpu_burst.map(|x| json!(x))),
        ("realtimePeriod", a.cpu_rt_period.map(|x| json!(x))),
        ("realtimeRuntime", a.cpu_rt_runtime.map(|x| json!(x))),
        ("shares", a.cpu_share.map(|x| json!(x))),
        ("idle", a.cpu_idle.map(|x| json!(x))),
        ("cpus", a.cpuset_cpus.clone().map(Value::from)),
    ];
    for (key, val) in cpu {
        if let Some(val) = val {
            set(v, &["cpu", key], val);
        }
    }
    if let Some(m) = &a.cpuset_mems {
        set(v, &["cpu", "mems"], json!(m));
    }
    for (key, flag, val) in [
        ("limit", "--memory", &a.memory),
        ("reservation", "--memory-reservation", &a.memory_reservation),
        ("swap", "--memory-swap", &a.memory_swap),
    ] {
        if let Some(text) = val {
            set(
                v,
                &["memory", key],
                json!(parse_bytes(text).with_context(|| format!("{flag} {text}"))?),
            );
        }
    }
    if let Some(p) = a.pids_limit {
        set(v, &["pids", "limit"], json!(p));
    }
    Ok(())
}

/// Docker's RAMInBytes: a number with an optional binary unit (b, k, m, g, t, p, with or
/// without a trailing b); -1 means unlimited.
pub fn parse_bytes(text: &str) -> Result<i64> {
    let t = text.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("not a size (like 512m or 1g)"))?;
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => bail!("unknown unit {unit:?} (use k, m, g, t)"),
    };
    Ok((n * mult) as i64)
}

/// Deep merge: objects key by key, anything else replaced.
fn merge(base: &mut Value, add: &Value) {
    match (base, add) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, v) in a {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, a) => *b = a.clone(),
    }
}

pub fn events(root: &StateRoot, id: &str, once: bool, interval: &str) -> Result<()> {
    let every =
        humantime::parse_duration(interval).with_context(|| format!("--interval {interval}"))?;
    if every.is_zero() {
        bail!("--interval must be greater than zero");
    }
    let mut out = std::io::stdout().lock();
    loop {
        let container = root.load(id)?;
        if container.status() == Status::Stopped {
            if once {
                bail!("container {id} is not running");
            }
            return Ok(());
        }
        let data = stats::stats(&container.record.cgroup_dirs)?;
        writeln!(out, "{}", json!({"type": "stats", "id": id, "data": data}))?;
        out.flush()?;
        if once {
            return Ok(());
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("2kb").unwrap(), 2048);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5q").is_err());
    }

    #[test]
    fn merge_keeps_unrelated_limits() {
        let mut base = json!({"memory": {"limit": 1, "swap": 2}, "pids": {"limit": 3}});
        merge(&mut base, &json!({"memory": {"limit": 10}}));
        assert_eq!(
            base,
            json!({"memory": {"limit": 10, "swap": 2}, "pids": {"limit": 3}})
        );
    }
}

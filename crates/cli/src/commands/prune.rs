//! `container prune`, `image prune`, `system prune` and `system df`, with the docker CLI's
//! confirmation prompts and report wording.

use std::io::{BufRead, Write};

use anyhow::Result;
use berth_api::client::{encode_component, Client};
use berth_api::prune::{ContainersPruneReport, DiskUsage, ImagesPruneReport};

use crate::cli::{ContainerPruneArgs, ImagePruneArgs, SystemPruneArgs};
use crate::human::human_size;
use crate::table;

/// The docker CLI's `[y/N]` prompt; anything but `y`/`yes` is no.
fn confirm(warning: &str) -> Result<bool> {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// `--filter k=v` flags as the API's `filters` JSON (`{"k":{"v":true}}`), plus `extra`.
fn filters_query(flags: &[String], extra: &[(&str, &str)]) -> String {
    let mut map: std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>> =
        Default::default();
    for (k, v) in extra {
        map.entry((*k).to_owned())
            .or_default()
            .insert((*v).to_owned(), true);
    }
    for f in flags {
        let (k, v) = f.split_once('=').unwrap_or((f.as_str(), ""));
        map.entry(k.to_owned())
            .or_default()
            .insert(v.to_owned(), true);
    }
    if map.is_empty() {
        return String::new();
    }
    let json = serde_json::to_string(&map).unwrap_or_default();
    format!("?filters={}", encode_component(&json))
}

fn prune_containers(client: &Client, filters: &[String]) -> Result<u64> {
    let report: ContainersPruneReport = client
        .post(format!("/containers/prune{}", filters_query(filters, &[])))
        .send()?
        .json()?;
    let deleted = report.containers_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Containers:");
        for id in deleted {
            println!("{id}");
        }
        println!();
    }
    Ok(report.space_reclaimed)
}

fn prune_images(client: &Client, all: bool, filters: &[String]) -> Result<u64> {
    let dangling = if all { "false" } else { "true" };
    let report: ImagesPruneReport = client
        .post(format!(
            "/images/prune{}",
            filters_query(filters, &[("dangling", dangling)])
        ))
        .send()?
        .json()?;
    let deleted = report.images_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Images:");
        for item in deleted {
            if let Some(t) = item.untagged {
                println!("untagged: {t}");
            }
            if let Some(d) = item.deleted {
                println!("deleted: {d}");
            }
        }
        println!();
    }
    Ok(report.space_reclaimed)
}

/// `berth container prune [-f] [--filter]`.
pub fn container_prune(client: &Client, args: ContainerPruneArgs) -> Result<i32> {
    if !args.force && !confirm("WARNING! This will remove all stopped containers.")? {
        return Ok(0);
    }
    let reclaimed = prune_containers(client, &args.filter)?;
    println!("Total reclaimed space: {}", human_size(reclaimed as f64));
    Ok(0)
}

/// `berth image prune [-f] [-a] [--filter]`.
pub fn image_prune(client: &Client, args: ImagePruneArgs) -> Result<i32> {
    let warning = if args.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !args.force && !confirm(warning)? {
        return Ok(0);
    }
    let reclaimed = prune_images(client, args.all, &args.filter)?;
    println!("Total reclaimed space: {}", human_size(reclaimed as f64));
    Ok(0)
}

/// `berth system prune [-f] [-a] [--volumes]`: containers, then (with `--volumes`)
/// anonymous volumes, then images, as the docker CLI orders them.
pub fn system_prune(client: &Client, args: SystemPruneArgs) -> Result<i32> {
    let mut warning = String::from("WARNING! This will remove:\n  - all stopped containers\n");
    if args.volumes {
        warning.push_str("  - all anonymous volumes not used by at least one container\n");
    }
    warning.push_str(if args.all {
        "  - all images without at least one container associated to them\n"
    } else {
        "  - all dangling images\n"
    });
    if !args.force && !confirm(&warning)? {
        return Ok(0);
    }
    let mut reclaimed = prune_containers(client, &args.filter)?;
    if args.volumes {
        let report: serde_json::Value = client.post("/volumes/prune").send()?.json()?;
        let deleted = report["VolumesDeleted"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !deleted.is_empty() {
            println!("Deleted Volumes:");
            for v in deleted.iter().filter_map(|v| v.as_str()) {
                println!("{v}");
            }
            println!();
        }
        reclaimed += report["SpaceReclaimed"].as_u64().unwrap_or(0);
    }
    reclaimed += prune_images(client, args.all, &args.filter)?;
    println!("Total reclaimed space: {}", human_size(reclaimed as f64));
    Ok(0)
}

/// `berth system df`: the docker CLI's summary table.
pub fn system_df(client: &Client) -> Result<i32> {
    let du: DiskUsage = client.get_json("/system/df")?;
    print!("{}", table::render(&df_rows(&du)));
    Ok(0)
}

/// `SIZE (PCT%)`, the percentage only when there is a total (docker/cli `disk_usage.go`).
fn reclaimable(reclaimable: i64, total: i64) -> String {
    if total > 0 {
        format!(
            "{} ({}%)",
            human_size(reclaimable as f64),
            reclaimable * 100 / total
        )
    } else {
        human_size(reclaimable as f64)
    }
}

fn df_rows(du: &DiskUsage) -> Vec<String> {
    let mut rows = vec!["TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE".to_owned()];
    // Images: what containers use, minus the layers shared with other images, stays.
    let used: i64 = du
        .images
        .iter()
        .filter(|i| i.containers != 0 && i.size != -1 && i.shared_size != -1)
        .map(|i| i.size - i.shared_size)
        .sum();
    let active_images = du.images.iter().filter(|i| i.containers > 0).count();
    rows.push(format!(
        "Images\t{}\t{active_images}\t{}\t{}",
        du.images.len(),
        human_size(du.layers_size as f64),
        reclaimable(du.layers_size - used, du.layers_size)
    ));
    let active = |state: &str| matches!(state, "running" | "paused" | "restarting");
    let total_rw: i64 = du.containers.iter().map(|c| c.size_rw).sum();
    let idle_rw: i64 = du
        .containers
        .iter()
        .filter(|c| !active(&c.summary.state))
        .map(|c| c.size_rw)
        .sum();
    rows.push(format!(
        "Containers\t{}\t{}\t{}\t{}",
        du.containers.len(),
        du.containers
            .iter()
            .filter(|c| active(&c.summary.state))
            .count(),
        human_size(total_rw as f64),
        reclaimable(idle_rw, total_rw)
    ));
    let usage = |v: &berth_api::volume::Volume| v.usage_data.clone().unwrap_or_default();
    let total_vol: i64 = du
        .volumes
        .iter()
        .map(|v| usage(v).size)
        .filter(|s| *s > 0)
        .sum();
    let idle_vol: i64 = du
        .volumes
        .iter()
        .map(usage)
        .filter(|u| u.ref_count == 0 && u.size > 0)
        .map(|u| u.size)
        .sum();
    rows.push(format!(
        "Local Volumes\t{}\t{}\t{}\t{}",
        du.volumes.len(),
        du.volumes.iter().filter(|v| usage(v).ref_count > 0).count(),
        human_size(total_vol as f64),
        reclaimable(idle_vol, total_vol)
    ));
    rows.push("Build Cache\t0\t0\t0B\t0B".to_owned());
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::image::ImageSummary;
    use berth_api::prune::DiskUsageContainer;

    #[test]
    fn df_table_as_docker_prints_it() {
        let du = DiskUsage {
            layers_size: 2_000_000,
            images: vec![
                ImageSummary {
                    size: 1_500_000,
                    shared_size: 500_000,
                    containers: 1,
                    ..ImageSummary::default()
                },
                ImageSummary {
                    size: 1_000_000,
                    shared_size: 500_000,
                    ..ImageSummary::default()
                },
            ],
            containers: vec![
                DiskUsageContainer {
                    size_rw: 300,
                    summary: berth_api::container::ContainerSummary {
                        state: "running".into(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                DiskUsageContainer {
                    size_rw: 100,
                    summary: berth_api::container::ContainerSummary {
                        state: "exited".into(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ],
            ..DiskUsage::default()
        };
        let rows = df_rows(&du);
        assert_eq!(rows[1], "Images\t2\t1\t2MB\t1MB (50%)");
        assert_eq!(rows[2], "Containers\t2\t1\t400B\t100B (25%)");
        assert_eq!(rows[3], "Local Volumes\t0\t0\t0B\t0B");
        assert_eq!(rows[4], "Build Cache\t0\t0\t0B\t0B");
    }

    #[test]
    fn filters_as_the_api_takes_them() {
        assert_eq!(filters_query(&[], &[]), "");
        let q = filters_query(&["until=24h".into()], &[("dangling", "true")]);
        assert!(q.starts_with("?filters="), "{q}");
        assert!(q.contains("dangling") && q.contains("until"), "{q}");
    }
}

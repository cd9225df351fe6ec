//! What the engine's data takes and giving it back: `system df`, `container prune` and
//! `image prune`, with the filters Docker accepts for them (`until`, `label`, `label!`,
//! and `dangling` for images).
//!
//! Sizes are apparent sizes of the unpacked files (what `docker system df` shows): an
//! image's `Size` is its layers, a container's `SizeRw` its writable layer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use berth_api::image::{ImageDeleteItem, ImageSummary};
use berth_api::prune::{ContainersPruneReport, DiskUsage, DiskUsageContainer, ImagesPruneReport};
use berth_api::volume::UsageData;
use berth_image::{Digest, Reference};
use chrono::Utc;

use crate::api_server::DaemonState;
use crate::clock;
use crate::container_record::{ContainerRecord, Status};
use crate::container_stats::dir_size;
use crate::image_service::{image_error, ImageDetails};
use crate::response::ApiError;
use crate::volume_store::label_matches;

/// The filters `container prune` and `image prune` share, parsed and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneFilter {
    /// Unix seconds: only objects created before this.
    pub until: Option<i64>,
    /// `label=k` / `label=k=v`: all must match.
    pub labels: Vec<String>,
    /// `label!=k` / `label!=k=v`: none may match.
    pub not_labels: Vec<String>,
    /// Images only: `dangling=false` (`image prune -a`) takes tagged images too.
    pub dangling_only: bool,
}

impl PruneFilter {
    /// From the `filters` query; `allowed` names the filters this endpoint takes, others
    /// are refused with dockerd's wording.
    pub fn parse(
        filters: &BTreeMap<String, Vec<String>>,
        allowed: &[&str],
        now_unix: i64,
    ) -> Result<Self, ApiError> {
        let mut f = PruneFilter {
            dangling_only: true,
            ..PruneFilter::default()
        };
        for (name, values) in filters {
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter '{name}'")));
            }
            match name.as_str() {
                "until" => {
                    for v in values {
                        let t = until_cutoff(v, now_unix).ok_or_else(|| {
                            ApiError::bad_request(format!("invalid filter 'until={v}'"))
                        })?;
                        f.until = Some(f.until.map_or(t, |old: i64| old.min(t)));
                    }
                }
                "label" => f.labels.extend(values.iter().cloned()),
                "label!" => f.not_labels.extend(values.iter().cloned()),
                "dangling" => {
                    for v in values {
                        f.dangling_only = match v.to_ascii_lowercase().as_str() {
                            "true" | "1" => true,
                            "false" | "0" => false,
                            _ => {
                                return Err(ApiError::bad_request(format!(
                                    "Invalid filter 'dangling={v}'"
                                )))
                            }
                        };
                    }
                }
                _ => {}
            }
        }
        Ok(f)
    }

    fn selects(&self, created_unix: i64, labels: &BTreeMap<String, String>) -> bool {
        self.until.is_none_or(|u| created_unix < u)
            && self.labels.iter().all(|l| label_matches(labels, l))
            && !self.not_labels.iter().any(|l| label_matches(labels, l))
    }
}

/// Docker's `until`: Unix seconds (maybe fractional), an RFC 3339 time, or a Go duration
/// (`10m`, `1h30m`, `24h`) before now.
fn until_cutoff(v: &str, now_unix: i64) -> Option<i64> {
    if let Ok(secs) = v.parse::<f64>() {
        return Some(secs as i64);
    }
    if let Some(t) = clock::parse(v) {
        return Some(t.timestamp());
    }
    go_duration(v).map(|d| now_unix - d.as_secs() as i64)
}

/// `1h30m`, `45s`, `2.5h` (Go's `time.ParseDuration` for h, m, s and ms).
fn go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

fn created_unix(ts: &str) -> i64 {
    clock::parse(ts).map_or(0, |t| t.timestamp())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))?
}

/// A container's writable layer, in bytes.
fn size_rw(state: &DaemonState, id: &str) -> u64 {
    state
        .images
        .snapshotter
        .get(id)
        .map_or(0, |s| dir_size(&s.upper))
}

/// `POST /containers/prune`: every container that does not run (created, exited, dead),
/// removed through the same path as `docker rm`. One that starts meanwhile is skipped.
pub async fn prune_containers(
    state: &Arc<DaemonState>,
    filter: &PruneFilter,
) -> Result<ContainersPruneReport, ApiError> {
    let candidates: Vec<ContainerRecord> = state
        .containers
        .list()
        .into_iter()
        .filter(|r| {
            matches!(
                r.state.status,
                Status::Created | Status::Exited | Status::Dead
            )
        })
        .filter(|r| filter.selects(created_unix(&r.created), &r.config.labels))
        .collect();
    let mut deleted = Vec::new();
    let mut reclaimed = 0;
    for r in candidates {
        let st = state.clone();
        let id = r.id.clone();
        let size = blocking(move || Ok(size_rw(&st, &id))).await?;
        match state.containers.remove(&r.id, false).await {
            Ok(()) => {
                reclaimed += size;
                deleted.push(r.id);
            }
            Err(e) => tracing::info!(id = %r.id, %e.message, "prune: container kept"),
        }
    }
    state.events.publish(
        "container",
        "prune",
        "",
        BTreeMap::from([("reclaimed".to_owned(), reclaimed.to_string())]),
    );
    Ok(ContainersPruneReport {
        containers_deleted: Some(deleted).filter(|d| !d.is_empty()),
        space_reclaimed: reclaimed,
    })
}

/// `docker.io/library/busybox:latest` -> `busybox:latest`, as `docker rmi` prints tags.
fn familiar(tag: &str) -> String {
    Reference::parse(tag).map_or_else(|_| tag.to_owned(), |r| r.familiar())
}

/// `POST /images/prune`: unused images: untagged ones, or with `dangling=false` every one
/// no container uses (running or not, as dockerd). Then the layers and blobs nothing
/// references any more are collected; their sizes are the space reclaimed.
pub async fn prune_images(
    state: &Arc<DaemonState>,
    filter: &PruneFilter,
) -> Result<ImagesPruneReport, ApiError> {
    // Exclusive with pulls, loads and container creates: gc must not sweep what they are
    // writing, nor an image a create is about to use.
    let _writers = state.images.writers.write().await;
    let st = state.clone();
    let filter = filter.clone();
    let (items, reclaimed, events) = blocking(move || {
        let images = &st.images;
        let in_use = st.containers.images_in_use();
        let used =
            |id: &Digest| in_use.running_images.contains(id) || in_use.stopped_images.contains(id);
        let list = images.list()?;
        let mut sizes: HashMap<Digest, u64> = HashMap::new();
        for d in &list {
            for chain in &d.record.chain_ids {
                sizes
                    .entry(chain.clone())
                    .or_insert_with(|| images.layer_size(chain));
            }
        }
        let mut items = Vec::new();
        let mut events = Vec::new();
        for d in list {
            let id = d.record.config_digest.clone();
            if (filter.dangling_only && !d.tags.is_empty())
                || used(&id)
                || used(&d.record.manifest_digest)
                || !filter.selects(image_created(&d), &image_labels(&d))
            {
                continue;
            }
            let id_text = id.to_string();
            // Force: the image is unused (checked above), so only the rule about several
            // repositories is left, which prune overrides as dockerd does.
            let removed = images
                .lock_store()?
                .remove(&id_text, &in_use, true)
                .map_err(|e| image_error(&id_text, e))?;
            for t in removed.untagged {
                let name = familiar(&t);
                events.push(("untag", id_text.clone(), name.clone()));
                items.push(ImageDeleteItem {
                    untagged: Some(name),
                    deleted: None,
                });
            }
            if !removed.deleted.is_empty() {
                events.push(("delete", id_text.clone(), id_text.clone()));
                items.push(ImageDeleteItem {
                    untagged: None,
                    deleted: Some(id_text),
                });
            }
        }
        let mut reclaimed = 0;
        // Even with no image removed: what an interrupted pull or an earlier failed sweep
        // left is reclaimed too. What containers use is read again right before it.
        let plan = images.gc(&st.containers.images_in_use())?;
        for layer in plan.layers {
            reclaimed += sizes.get(&layer).copied().unwrap_or(0);
            items.push(ImageDeleteItem {
                untagged: None,
                deleted: Some(layer.to_string()),
            });
        }
        Ok((items, reclaimed, events))
    })
    .await?;
    for (action, id, name) in events {
        state.events.publish(
            "image",
            action,
            &id,
            BTreeMap::from([("name".to_owned(), name)]),
        );
    }
    state.events.publish(
        "image",
        "prune",
        "",
        BTreeMap::from([("reclaimed".to_owned(), reclaimed.to_string())]),
    );
    Ok(ImagesPruneReport {
        images_deleted: Some(items).filter(|i| !i.is_empty()),
        space_reclaimed: reclaimed,
    })
}

fn image_created(d: &ImageDetails) -> i64 {
    d.config
        .created
        .as_deref()
        .and_then(clock::parse)
        .map_or(0, |t| t.timestamp())
}

fn image_labels(d: &ImageDetails) -> BTreeMap<String, String> {
    d.config
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// `GET /system/df`.
pub async fn disk_usage(state: &Arc<DaemonState>) -> Result<DiskUsage, ApiError> {
    let st = state.clone();
    blocking(move || {
        let images = &st.images;
        let details = images.list()?;
        let records = st.containers.list();
        // How many images stand on each layer: a layer of two images is shared.
        let mut users: HashMap<&Digest, usize> = HashMap::new();
        for d in &details {
            for chain in d.record.chain_ids.iter().collect::<BTreeSet<_>>() {
                *users.entry(chain).or_default() += 1;
            }
        }
        let layers_size: u64 = images
            .snapshotter
            .layer_store()
            .list()
            .map_err(|e| ApiError::internal(format!("cannot list the layers: {e}")))?
            .iter()
            .map(|c| images.layer_size(c))
            .sum();
        let mut image_sizes: HashMap<String, u64> = HashMap::new();
        let image_list = details
            .iter()
            .map(|d| {
                let id = d.record.config_digest.to_string();
                let shared: u64 = d
                    .record
                    .chain_ids
                    .iter()
                    .filter(|c| users.get(c).copied().unwrap_or(0) > 1)
                    .map(|c| images.layer_size(c))
                    .sum();
                let containers = records.iter().filter(|r| r.image_id == id).count();
                image_sizes.insert(id.clone(), d.size);
                ImageSummary {
                    id,
                    parent_id: String::new(),
                    repo_tags: d.tags.iter().map(|t| familiar(t)).collect(),
                    repo_digests: Vec::new(),
                    created: image_created(d),
                    size: d.size as i64,
                    shared_size: shared as i64,
                    virtual_size: d.size as i64,
                    labels: image_labels(d),
                    containers: containers as i64,
                }
            })
            .collect();
        let containers = records
            .iter()
            .map(|r| {
                let rw = size_rw(&st, &r.id);
                let image = image_sizes.get(&r.image_id).copied().unwrap_or(0);
                DiskUsageContainer {
                    summary: crate::container_routes::summary(r),
                    size_rw: rw as i64,
                    size_root_fs: (rw + image) as i64,
                }
            })
            .collect();
        let volumes = st
            .volumes
            .list()
            .iter()
            .map(|v| {
                let mut api = st.volumes.to_api(v);
                api.usage_data = Some(UsageData {
                    size: dir_size(&st.volumes.data_dir(&v.name)) as i64,
                    ref_count: st.volumes.users(&v.name).len() as i64,
                });
                api
            })
            .collect();
        Ok(DiskUsage {
            layers_size: layers_size as i64,
            images: image_list,
            containers,
            volumes,
            build_cache: Vec::new(),
        })
    })
    .await
}

/// Unix seconds now, for `until` durations.
pub fn now_unix() -> i64 {
    Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            m.entry((*k).to_owned()).or_default().push((*v).to_owned());
        }
        m
    }

    #[test]
    fn until_in_every_form_docker_takes() {
        assert_eq!(until_cutoff("1700000000", 0), Some(1_700_000_000));
        assert_eq!(until_cutoff("2024-01-02T03:04:05Z", 0), Some(1_704_164_645));
        assert_eq!(until_cutoff("1h30m", 10_000), Some(10_000 - 5400));
        assert_eq!(until_cutoff("24h", 100_000), Some(100_000 - 86_400));
        assert_eq!(until_cutoff("soon", 0), None);
        assert_eq!(until_cutoff("", 0), None);
    }

    #[test]
    fn filters_parsed_and_checked() {
        let all = ["until", "label", "label!", "dangling"];
        let f = PruneFilter::parse(&filters(&[]), &all, 0).expect("empty");
        assert!(f.dangling_only && f.until.is_none());
        let f = PruneFilter::parse(&filters(&[("dangling", "false")]), &all, 0).expect("-a");
        assert!(!f.dangling_only);
        assert!(PruneFilter::parse(&filters(&[("dangling", "maybe")]), &all, 0).is_err());
        assert!(PruneFilter::parse(&filters(&[("dangling", "true")]), &["until"], 0).is_err());
        let f = PruneFilter::parse(
            &filters(&[("label", "keep"), ("label!", "env=prod"), ("until", "10s")]),
            &all,
            100,
        )
        .expect("labels");
        let labels = BTreeMap::from([("keep".to_owned(), "1".to_owned())]);
        assert!(f.selects(50, &labels));
        assert!(!f.selects(95, &labels), "created after until");
        assert!(!f.selects(50, &BTreeMap::new()), "label missing");
        let prod = BTreeMap::from([
            ("keep".to_owned(), "1".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
        ]);
        assert!(!f.selects(50, &prod), "label! matched");
    }
}

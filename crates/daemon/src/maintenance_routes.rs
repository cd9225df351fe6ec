//! The HTTP side of the daily-use verbs that are not the lifecycle: `top`, `stats`,
//! `changes` (diff), `pause`/`unpause`, `rename`, the prunes and `system df`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::api_server::DaemonState;
use crate::container_record::{ContainerRecord, Status};
use crate::container_stats;
use crate::disk_usage::{self, PruneFilter};
use crate::query::Query;
use crate::response::{self, ApiError, Body};
use crate::router::{Endpoint, Routed};

/// dockerd's stats collector samples once a second.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

pub async fn handle(
    state: &Arc<DaemonState>,
    routed: Routed,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(req.uri().query());
    let name = routed.param.as_str();
    let containers = &state.containers;
    match routed.endpoint {
        Endpoint::ContainerTop => top(state, name, &query).await,
        Endpoint::ContainerStats => stats(state, name, &query).await,
        Endpoint::ContainerChanges => {
            let record = containers.find(name)?;
            let st = state.clone();
            let changes =
                blocking(move || container_stats::changes(&st.images, &record.id)).await?;
            Ok(response::json(StatusCode::OK, &changes))
        }
        Endpoint::ContainerPause => {
            containers.pause(name).await?;
            Ok(response::empty(StatusCode::NO_CONTENT))
        }
        Endpoint::ContainerUnpause => {
            containers.unpause(name).await?;
            Ok(response::empty(StatusCode::NO_CONTENT))
        }
        Endpoint::ContainerRename => {
            containers
                .rename(name, query.get("name").unwrap_or(""))
                .await?;
            Ok(response::empty(StatusCode::NO_CONTENT))
        }
        Endpoint::ContainerPrune => {
            let filter = PruneFilter::parse(
                &query.filters()?,
                &["until", "label", "label!"],
                disk_usage::now_unix(),
            )?;
            let report = disk_usage::prune_containers(state, &filter).await?;
            Ok(response::json(StatusCode::OK, &report))
        }
        Endpoint::ImagePrune => {
            let filter = PruneFilter::parse(
                &query.filters()?,
                &["until", "label", "label!", "dangling"],
                disk_usage::now_unix(),
            )?;
            let report = disk_usage::prune_images(state, &filter).await?;
            Ok(response::json(StatusCode::OK, &report))
        }
        Endpoint::SystemDf => {
            let usage = disk_usage::disk_usage(state).await?;
            Ok(response::json(StatusCode::OK, &usage))
        }
        // User networks no container uses; the predefined ones are never pruned.
        Endpoint::NetworkPrune => {
            let containers = state.containers.clone();
            let deleted = tokio::task::spawn_blocking(move || containers.prune_networks())
                .await
                .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))?;
            let deleted = if deleted.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::json!(deleted)
            };
            Ok(response::json(
                StatusCode::OK,
                &BTreeMap::from([("NetworksDeleted", deleted)]),
            ))
        }
        // No builder, so no build cache; `docker system prune` asks anyway.
        Endpoint::BuildPrune => Ok(response::json(
            StatusCode::OK,
            &serde_json::json!({"CachesDeleted": null, "SpaceReclaimed": 0}),
        )),
        other => Err(ApiError::internal(format!(
            "{other:?} routed to maintenance"
        ))),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))?
}

/// `GET /containers/{id}/top?ps_args=`: 409 unless it runs, as dockerd.
async fn top(
    state: &Arc<DaemonState>,
    name: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let record = state.containers.find(name)?;
    if !record.state.status.is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            record.id
        )));
    }
    let root = state.containers.runtime_state_root();
    let ps_args = query.get("ps_args").unwrap_or("").to_owned();
    let top = blocking(move || container_stats::top(&root, &record.id, &ps_args)).await?;
    Ok(response::json(StatusCode::OK, &top))
}

/// One sample of `record` now, or dockerd's zeroed one when it does not run.
async fn sample_now(
    state: &Arc<DaemonState>,
    record: ContainerRecord,
) -> Result<berth_api::stats::ContainerStats, ApiError> {
    if !record.state.status.is_running() {
        return Ok(container_stats::not_running(&record));
    }
    let root = state.containers.runtime_state_root();
    let id = record.id.clone();
    let sampled = blocking(move || {
        let with_network = record.network_mode() != "host";
        container_stats::sample(&root, &record, with_network)
    })
    .await;
    match sampled {
        Ok(s) => Ok(s),
        // It exited between the check and the read (its cgroup and state went with it):
        // report it as not running rather than as a failure.
        Err(e) => match state.containers.find(&id) {
            Ok(now) if !now.state.status.is_running() => Ok(container_stats::not_running(&now)),
            _ => Err(e),
        },
    }
}

/// `GET /containers/{id}/stats?stream=&one-shot=`. Streaming (the default) sends a sample
/// a second until the container stops or the client goes; `stream=false` waits for a
/// second sample so that `precpu_stats` is filled (the CLI's `CPU %` needs two), unless
/// `one-shot=true` asks for the first at once, as dockerd does.
async fn stats(
    state: &Arc<DaemonState>,
    name: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let record = state.containers.find(name)?;
    let stream = query.get("stream").is_none() || query.bool("stream");
    let first = sample_now(state, record.clone()).await?;
    if !stream {
        if query.bool("one-shot") || !record.state.status.is_running() {
            return Ok(response::json(StatusCode::OK, &first));
        }
        tokio::time::sleep(STATS_INTERVAL).await;
        let second = next_sample(state, &record.id, &first).await?;
        return Ok(response::json(StatusCode::OK, &second));
    }
    let (tx, body) = response::channel();
    let state = state.clone();
    let id = record.id.clone();
    tokio::spawn(async move {
        let mut previous = first;
        loop {
            if tx.send(response::json_line(&previous)).await.is_err() {
                return;
            }
            if previous.read == crate::container_record::ZERO_TIME {
                // It does not run: one zeroed sample, then the stream ends, as dockerd.
                return;
            }
            tokio::time::sleep(STATS_INTERVAL).await;
            match next_sample(&state, &id, &previous).await {
                Ok(s) => previous = s,
                Err(e) => {
                    tracing::debug!(%id, %e.message, "stats stream ends");
                    return;
                }
            }
        }
    });
    Ok(response::with_type(
        StatusCode::OK,
        body,
        "application/json",
    ))
}

/// A new sample whose `pre*` fields are `previous`'s.
async fn next_sample(
    state: &Arc<DaemonState>,
    id: &str,
    previous: &berth_api::stats::ContainerStats,
) -> Result<berth_api::stats::ContainerStats, ApiError> {
    let record = state.containers.find(id)?;
    let paused_or_running = matches!(record.state.status, Status::Running | Status::Paused);
    let mut next = sample_now(state, record).await?;
    if paused_or_running {
        next.preread = previous.read.clone();
        next.precpu_stats = previous.cpu_stats.clone();
    }
    Ok(next)
}

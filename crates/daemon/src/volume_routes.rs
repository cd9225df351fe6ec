//! `/volumes...`: the HTTP side of the volume store, with dockerd's reply shapes, filters
//! and statuses.

use std::sync::Arc;

use berth_api::volume::{VolumeCreateRequest, VolumeListResponse, VolumePruneResponse};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::api_server::DaemonState;
use crate::query::Query;
use crate::response::{self, ApiError, Body};
use crate::router::{Endpoint, Routed};
use crate::volume_store::{label_matches, CreateOptions, PruneFilter, VolumeRecord};

/// A create body is a few hundred bytes; this bounds what a client can make us buffer.
const MAX_CREATE_BODY: usize = 1024 * 1024;

pub async fn handle(
    state: &Arc<DaemonState>,
    routed: Routed,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(req.uri().query());
    let name = routed.param;
    match routed.endpoint {
        Endpoint::VolumeList => list(state, &query),
        Endpoint::VolumeCreate => create(state, req).await,
        Endpoint::VolumeInspect => {
            let record = state.volumes.get(&name)?;
            Ok(response::json(
                StatusCode::OK,
                &state.volumes.to_api(&record),
            ))
        }
        Endpoint::VolumeDelete => {
            let force = query.bool("force");
            let volumes = state.volumes.clone();
            blocking(move || volumes.remove(&name, force).map_err(ApiError::from)).await?;
            Ok(response::empty(StatusCode::NO_CONTENT))
        }
        Endpoint::VolumePrune => prune(state, &query).await,
        other => Err(ApiError::internal(format!("{other:?} routed to volumes"))),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))?
}

fn bool_filter(name: &str, value: &str) -> Result<bool, ApiError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "invalid filter '{name}={value}'"
        ))),
    }
}

/// `GET /volumes`: filters `name` (substring), `label` (`k` or `k=v`), `dangling`
/// (used by no container) and `driver`, as dockerd's.
fn list(state: &Arc<DaemonState>, query: &Query) -> Result<Response<Body>, ApiError> {
    let filters = query.filters()?;
    let mut dangling = None;
    for (key, values) in &filters {
        match key.as_str() {
            "name" | "label" | "driver" => {}
            "dangling" => {
                for v in values {
                    dangling = Some(bool_filter(key, v)?);
                }
            }
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    let get = |k: &str| filters.get(k).cloned().unwrap_or_default();
    let (names, labels, drivers) = (get("name"), get("label"), get("driver"));
    let keep = |v: &VolumeRecord| {
        (names.is_empty() || names.iter().any(|n| v.name.contains(n.as_str())))
            && labels.iter().all(|l| label_matches(&v.labels, l))
            && (drivers.is_empty() || drivers.contains(&v.driver))
            && dangling.is_none_or(|d| state.volumes.users(&v.name).is_empty() == d)
    };
    let volumes = state
        .volumes
        .list()
        .iter()
        .filter(|v| keep(v))
        .map(|v| state.volumes.to_api(v))
        .collect();
    Ok(response::json(
        StatusCode::OK,
        &VolumeListResponse {
            volumes,
            warnings: None,
        },
    ))
}

async fn create(
    state: &Arc<DaemonState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body = http_body_util::Limited::new(req.into_body(), MAX_CREATE_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?
        .to_bytes();
    let request: VolumeCreateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        VolumeCreateRequest::default()
    } else {
        crate::request_body::decode_object(&body)?
    };
    let volumes = state.volumes.clone();
    let record = blocking(move || {
        volumes
            .create(CreateOptions {
                name: Some(request.name).filter(|n| !n.is_empty()),
                driver: request.driver,
                labels: request.labels,
                driver_opts: request.driver_opts,
            })
            .map_err(ApiError::from)
    })
    .await?;
    Ok(response::json(
        StatusCode::CREATED,
        &state.volumes.to_api(&record),
    ))
}

/// `POST /volumes/prune`: unused anonymous volumes, or with `all=true` every unused one
/// (Docker 23+); `label`/`label!` narrow it.
async fn prune(state: &Arc<DaemonState>, query: &Query) -> Result<Response<Body>, ApiError> {
    let mut filter = PruneFilter::default();
    for (key, values) in query.filters()? {
        match key.as_str() {
            "all" => {
                for v in &values {
                    filter.all = bool_filter(&key, v)?;
                }
            }
            "label" => filter.labels = values,
            "label!" => filter.not_labels = values,
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    let volumes = state.volumes.clone();
    let (deleted, reclaimed) =
        blocking(move || volumes.prune(&filter).map_err(ApiError::from)).await?;
    Ok(response::json(
        StatusCode::OK,
        &VolumePruneResponse {
            volumes_deleted: deleted,
            space_reclaimed: reclaimed,
        },
    ))
}

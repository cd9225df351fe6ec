//! `/networks...`: the predefined networks (`bridge`, `host`, `none`) and user-defined
//! bridge networks, with dockerd's reply shapes and statuses.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::network::{NetworkConnectRequest, NetworkCreateRequest};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::api_server::DaemonState;
use crate::container_record::NetworkEndpoint;
use crate::networks::{UserNetwork, PREDEFINED};
use crate::query::Query;
use crate::response::{self, ApiError, Body};
use crate::router::{Endpoint, Routed};

const MAX_CREATE_BODY: usize = 1024 * 1024;

pub async fn handle(
    state: &Arc<DaemonState>,
    routed: Routed,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(req.uri().query());
    let key = routed.param;
    match routed.endpoint {
        Endpoint::NetworkList => list(state, &query),
        Endpoint::NetworkCreate => create(state, req).await,
        Endpoint::NetworkInspect => Ok(response::json(StatusCode::OK, &inspect(state, &key)?)),
        Endpoint::NetworkDelete => {
            let containers = state.containers.clone();
            tokio::task::spawn_blocking(move || containers.remove_network(&key))
                .await
                .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))??;
            Ok(response::empty(StatusCode::NO_CONTENT))
        }
        Endpoint::NetworkConnect | Endpoint::NetworkDisconnect => {
            let connect = routed.endpoint == Endpoint::NetworkConnect;
            connect_or_disconnect(state, &key, req, connect).await
        }
        other => Err(ApiError::internal(format!("{other:?} routed to networks"))),
    }
}

/// Every network as inspect shows it.
fn all(state: &Arc<DaemonState>) -> Vec<Value> {
    let mut out: Vec<Value> = PREDEFINED
        .iter()
        .map(|name| predefined(state, name))
        .collect();
    out.extend(
        state
            .containers
            .networks()
            .list()
            .iter()
            .map(|n| user(state, n)),
    );
    out
}

fn inspect(state: &Arc<DaemonState>, key: &str) -> Result<Value, ApiError> {
    let nets = state.containers.networks();
    if let Some(name) = nets.find_predefined(key) {
        return Ok(predefined(state, name));
    }
    nets.find(key)
        .map(|n| user(state, &n))
        .ok_or_else(|| ApiError::not_found(format!("network {key} not found")))
}

fn containers_json(members: Vec<(String, String, NetworkEndpoint)>) -> Value {
    let map: serde_json::Map<String, Value> = members
        .into_iter()
        .map(|(id, name, ep)| {
            (
                id.clone(),
                json!({
                    "Name": name,
                    "EndpointID": ep.endpoint_id(&id),
                    "MacAddress": ep.mac,
                    "IPv4Address": format!("{}/{}", ep.ip, ep.prefix_len),
                    "IPv6Address": "",
                }),
            )
        })
        .collect();
    Value::Object(map)
}

#[allow(clippy::too_many_arguments)]
fn shape(
    name: &str,
    id: &str,
    created: &str,
    driver: &str,
    ipam_config: Value,
    containers: Value,
    options: Value,
    labels: &BTreeMap<String, String>,
) -> Value {
    json!({
        "Name": name,
        "Id": id,
        "Created": created,
        "Scope": "local",
        "Driver": driver,
        "EnableIPv4": true,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": ipam_config},
        "Internal": false,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": labels,
    })
}

fn predefined(state: &Arc<DaemonState>, name: &str) -> Value {
    let cm = &state.containers;
    let id = cm.networks().predefined_id(name);
    let none = BTreeMap::new();
    let created = cm.networks().predefined_created();
    let created = created.as_str();
    match name {
        "bridge" => {
            let config = match cm.default_subnet() {
                Some(s) => json!([{
                    "Subnet": s.to_string(),
                    "Gateway": berth_network::ipam::gateway(s).to_string(),
                }]),
                None => json!([]),
            };
            let members = cm.network_members("");
            shape(
                name,
                &id,
                created,
                "bridge",
                config,
                containers_json(members),
                json!({
                    "com.docker.network.bridge.default_bridge": "true",
                    "com.docker.network.bridge.name": cm.default_bridge_name(),
                }),
                &none,
            )
        }
        "host" => shape(
            name,
            &id,
            created,
            "host",
            json!([]),
            json!({}),
            json!({}),
            &none,
        ),
        _ => shape(
            name,
            &id,
            created,
            "null",
            json!([]),
            json!({}),
            json!({}),
            &none,
        ),
    }
}

fn user(state: &Arc<DaemonState>, n: &UserNetwork) -> Value {
    shape(
        &n.name,
        &n.id,
        &n.created,
        "bridge",
        json!([{"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()}]),
        containers_json(state.containers.network_members(&n.id)),
        json!({"com.docker.network.bridge.name": n.bridge}),
        &n.labels,
    )
}

/// `GET /networks`: filters `name` (substring), `id` (prefix), `driver`, `type`
/// (`builtin`/`custom`) and `label`.
fn list(state: &Arc<DaemonState>, query: &Query) -> Result<Response<Body>, ApiError> {
    let filters = query.filters()?;
    for key in filters.keys() {
        if !matches!(
            key.as_str(),
            "name" | "id" | "driver" | "type" | "label" | "scope" | "dangling"
        ) {
            return Err(ApiError::bad_request(format!("invalid filter '{key}'")));
        }
    }
    let get = |k: &str| filters.get(k).cloned().unwrap_or_default();
    let keep = |n: &Value| {
        let s = |k: &str| n[k].as_str().unwrap_or_default().to_owned();
        let builtin = PREDEFINED.contains(&s("Name").as_str());
        let names = get("name");
        let ids = get("id");
        let drivers = get("driver");
        let types = get("type");
        let labels = get("label");
        (names.is_empty() || names.iter().any(|f| s("Name").contains(f.as_str())))
            && (ids.is_empty() || ids.iter().any(|f| s("Id").starts_with(f.as_str())))
            && (drivers.is_empty() || drivers.contains(&s("Driver")))
            && (types.is_empty()
                || types
                    .iter()
                    .any(|t| (t == "builtin") == builtin && (t == "builtin" || t == "custom")))
            && labels.iter().all(|l| {
                let (k, v) = match l.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (l.as_str(), None),
                };
                match (n["Labels"].get(k).and_then(Value::as_str), v) {
                    (Some(_), None) => true,
                    (Some(have), Some(want)) => have == want,
                    (None, _) => false,
                }
            })
    };
    let nets: Vec<Value> = all(state).into_iter().filter(|n| keep(n)).collect();
    Ok(response::json(StatusCode::OK, &nets))
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
    let request: NetworkCreateRequest = crate::request_body::decode_object(&body)?;
    if request.name.is_empty() {
        return Err(ApiError::bad_request("network name is required"));
    }
    match request.driver.as_str() {
        "" | "bridge" => {}
        other => {
            return Err(ApiError::not_found(format!(
                "plugin \"{other}\" not found: berth has only the bridge driver"
            )))
        }
    }
    if request.enable_ipv6 == Some(true) {
        return Err(ApiError::bad_request(
            "IPv6 networks are not supported by berth yet",
        ));
    }
    if request.internal {
        return Err(ApiError::bad_request(
            "internal networks are not supported by berth yet",
        ));
    }
    let configs = request.ipam.and_then(|i| i.config).unwrap_or_default();
    if configs.len() > 1 {
        return Err(ApiError::bad_request(
            "berth supports one IPv4 subnet per network",
        ));
    }
    let mut subnet = None;
    if let Some(c) = configs.first() {
        if !c.gateway.is_empty() || !c.ip_range.is_empty() {
            return Err(ApiError::bad_request(
                "--gateway and --ip-range are not supported by berth yet (the gateway is the subnet's first address)",
            ));
        }
        if !c.subnet.is_empty() {
            let s: ipnet::Ipv4Net = c.subnet.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid subnet {}: not an IPv4 CIDR", c.subnet))
            })?;
            subnet = Some(s);
        }
    }
    let cm = state.containers.clone();
    let name = request.name;
    let labels = request.labels.unwrap_or_default();
    let net = tokio::task::spawn_blocking(move || {
        let taken: Vec<ipnet::Ipv4Net> = cm.default_subnet().into_iter().collect();
        cm.networks().create(&name, subnet, labels, &taken)
    })
    .await
    .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))??;
    state
        .events
        .publish("network", "create", &net.id, network_attrs(&net));
    Ok(response::json(
        StatusCode::CREATED,
        &json!({"Id": net.id, "Warning": ""}),
    ))
}

fn network_attrs(net: &UserNetwork) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("name".to_owned(), net.name.clone()),
        ("type".to_owned(), "bridge".to_owned()),
    ])
}

/// `POST /networks/{id}/connect` and `/disconnect`: the network is resolved first (404),
/// then the container, as dockerd's router does.
async fn connect_or_disconnect(
    state: &Arc<DaemonState>,
    key: &str,
    req: Request<Incoming>,
    connect: bool,
) -> Result<Response<Body>, ApiError> {
    let body = http_body_util::Limited::new(req.into_body(), MAX_CREATE_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?
        .to_bytes();
    let request: NetworkConnectRequest = if body.is_empty() {
        NetworkConnectRequest::default()
    } else {
        crate::request_body::decode_object(&body)?
    };
    let nets = state.containers.networks();
    let network = match nets.find_predefined(key) {
        Some(name) => name.to_owned(),
        None => nets
            .find(key)
            .map(|n| n.id)
            .ok_or_else(|| ApiError::not_found(format!("network {key} not found")))?,
    };
    if request.container.is_empty() {
        return Err(ApiError::bad_request("no container was given"));
    }
    refuse_chosen_addresses(
        request
            .endpoint_config
            .as_ref()
            .and_then(|e| e.ipam_config.as_ref()),
    )?;
    let mut aliases = request
        .endpoint_config
        .and_then(|e| e.aliases)
        .unwrap_or_default();
    aliases.retain(|a| !a.is_empty());
    if let Some(bad) = aliases.iter().find(|a| {
        !a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }) {
        return Err(ApiError::bad_request(format!(
            "invalid network alias {bad:?}"
        )));
    }
    state
        .containers
        .set_network(&request.container, &network, connect, aliases)
        .await?;
    Ok(response::empty(StatusCode::OK))
}

/// `--ip`, `--ip6` and `--link-local-ip` (an endpoint's `IPAMConfig`), on `run`/`create` and
/// `network connect`: berth's IPAM picks every address, and says so rather than ignoring
/// the client's choice.
pub(crate) fn refuse_chosen_addresses(
    ipam: Option<&berth_api::container::EndpointIpamConfig>,
) -> Result<(), ApiError> {
    if ipam.is_some_and(|c| c.chooses_addresses()) {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "berth does not give containers chosen addresses yet (--ip, --ip6, --link-local-ip): leave them out and the network picks one",
        ));
    }
    Ok(())
}

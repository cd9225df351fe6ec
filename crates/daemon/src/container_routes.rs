//! `/containers/...`: the HTTP side of the container manager. Request parsing, Docker's
//! reply shapes, and the streams (wait, attach, logs).

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::container::{
    ContainerCreateRequest, ContainerCreateResponse, ContainerInspect, ContainerState,
    ContainerSummary, EndpointSettings, GraphDriver, NetworkSettings, Port, PortBinding,
    SummaryHostConfig, SummaryNetworkSettings, WaitError, WaitResponse,
};
use berth_api::detach_keys::DetachScanner;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::api_server::DaemonState;
use crate::attach_input::{self, InputEnd};
use crate::clock;
use crate::container_logs;
use crate::container_manager::{AttachTarget, WaitCondition};
use crate::container_record::{ContainerRecord, NetworkEndpoint, Status};
use crate::query::Query;
use crate::response::{self, ApiError, Body};
use crate::router::{Endpoint, Routed};
use crate::shim_client::Shim;

/// Create bodies are a few kB; this bounds what a client can make the daemon buffer.
const MAX_CREATE_BODY: usize = 4 * 1024 * 1024;

pub async fn handle(
    state: &Arc<DaemonState>,
    routed: Routed,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(req.uri().query());
    let manager = &state.containers;
    let name = routed.param.as_str();
    match routed.endpoint {
        Endpoint::ContainerCreate => create(state, &query, req).await,
        Endpoint::ContainerList => list(state, &query),
        Endpoint::ContainerInspect => {
            let record = manager.find(name)?;
            Ok(response::json(StatusCode::OK, &inspect(state, &record)))
        }
        Endpoint::ContainerStart => match manager.start(name).await {
            Ok(()) => Ok(response::empty(StatusCode::NO_CONTENT)),
            Err(e) if e.status == StatusCode::NOT_MODIFIED => {
                Ok(response::empty(StatusCode::NOT_MODIFIED))
            }
            Err(e) => Err(e),
        },
        Endpoint::ContainerStop => {
            let t = query.int("t")?.or(query.int("timeout")?);
            if manager.stop(name, t).await? {
                Ok(response::empty(StatusCode::NO_CONTENT))
            } else {
                Ok(response::empty(StatusCode::NOT_MODIFIED))
            }
        }
        Endpoint::ContainerRestart => {
            let t = query.int("t")?.or(query.int("timeout")?);
            manager.restart(name, t).await?;
            Ok(response::empty(StatusCode::NO_CONTENT))
        }
        Endpoint::ContainerKill => {
            manager.kill(name, query.get("signal")).await?;
            Ok(response::empty(StatusCode::NO_CONTENT))
        }
        Endpoint::ContainerWait => wait(state, name, &query),
        Endpoint::ContainerAttach => attach(state, name, &query, req),
        Endpoint::ContainerResize => {
            let h = query.int("h")?.unwrap_or(0);
            let w = query.int("w")?.unwrap_or(0);
            let (Ok(rows), Ok(cols)) = (u16::try_from(h), u16::try_from(w)) else {
                return Err(ApiError::bad_request(format!(
                    "invalid terminal size {h}x{w}"
                )));
            };
            manager.resize(name, rows, cols).await?;
            Ok(response::empty(StatusCode::OK))
        }
        Endpoint::ContainerLogs => container_logs::serve(state, name, &query),
        Endpoint::ContainerDelete => {
            manager
                .remove_with_volumes(name, query.bool("force"), query.bool("v"))
                .await?;
            Ok(response::empty(StatusCode::NO_CONTENT))
        }
        other => Err(ApiError::internal(format!(
            "{other:?} routed to containers"
        ))),
    }
}

async fn create(
    state: &Arc<DaemonState>,
    query: &Query,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body = http_body_util::Limited::new(req.into_body(), MAX_CREATE_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?
        .to_bytes();
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "config cannot be empty in order to create a container",
        ));
    }
    let request: ContainerCreateRequest = crate::request_body::decode_object(&body)?;
    let id = state
        .containers
        .create(request, query.get("name").map(str::to_owned))
        .await?;
    Ok(response::json(
        StatusCode::CREATED,
        &ContainerCreateResponse {
            id,
            warnings: Vec::new(),
        },
    ))
}

fn wait(state: &Arc<DaemonState>, name: &str, query: &Query) -> Result<Response<Body>, ApiError> {
    let condition = match query.get("condition").unwrap_or("") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid condition: \"{other}\""
            )))
        }
    };
    let fut = state.containers.wait(name, condition)?;
    let (tx, body) = response::channel();
    tokio::spawn(async move {
        let reply = match fut.await {
            Ok(code) => WaitResponse {
                status_code: code,
                error: None,
            },
            Err(message) => WaitResponse {
                status_code: -1,
                error: Some(WaitError { message }),
            },
        };
        let _ = tx.send(response::json_line(&reply)).await;
    });
    Ok(response::with_type(
        StatusCode::OK,
        body,
        "application/json",
    ))
}

/// `POST /containers/{id}/attach`: answers 101 and then joins the hijacked connection to
/// the shim's attach stream. A client that attaches before `start` waits for the shim.
fn attach(
    state: &Arc<DaemonState>,
    name: &str,
    query: &Query,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let keys = attach_input::keys(query.get("detachKeys").unwrap_or_default(), "detach")?;
    let wants_upgrade = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"));
    if !wants_upgrade {
        return Err(ApiError::bad_request(
            "attach needs an upgraded connection (Connection: Upgrade, Upgrade: tcp)",
        ));
    }
    let stdin = query.bool("stdin");
    let stdout = query.bool("stdout");
    let stderr = query.bool("stderr");
    // Docker's defaults: no replay of the log, no live stream; clients ask for either.
    let logs = query.bool("logs");
    let stream = query.bool("stream");
    let (record, target) = state.containers.attach_target(name)?;
    let tty = record.config.tty;
    let input = SessionInput {
        stdin: stdin && record.config.open_stdin,
        tty,
        // dockerd's `CloseStdin`: only a StdinOnce container's stdin ends with the client's.
        close_stdin: record.config.stdin_once && !tty,
        keys,
    };
    let stdin = input.stdin;
    let log_path = state.containers.paths().log(&record.id);
    let upgrade = hyper::upgrade::on(&mut req);
    let state = state.clone();
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%e, "attach upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(upgraded);
        if logs {
            match container_logs::replay(log_path, stdout, stderr, tty).await {
                Ok(chunks) => {
                    for c in chunks {
                        if client.write_all(&c).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!(%e, "cannot replay the log for attach"),
            }
        }
        if !stream {
            let _ = client.shutdown().await;
            return;
        }
        let (shim, ack) = match target {
            AttachTarget::Now(shim) => (shim, None),
            AttachTarget::Later(ready, state_dir) => match ready.await {
                Ok(ack) => (Shim::new(&state_dir), Some(ack)),
                Err(_) => return,
            },
        };
        let stream = shim.attach(stdin, stdout, stderr, input.close_stdin).await;
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
        match stream {
            Ok(stream) => {
                let detached = move || {
                    let mut attrs = record.config.labels.clone();
                    attrs.insert("name".into(), record.name.clone());
                    attrs.insert("image".into(), record.image_name.clone());
                    state
                        .events
                        .publish("container", "detach", &record.id, attrs);
                };
                pump(client, stream, input, detached).await;
            }
            Err(e) => {
                tracing::debug!(%e, "attach to the shim failed");
                let mut client = client;
                let _ = client.shutdown().await;
            }
        }
    });
    let mut resp = response::empty(StatusCode::SWITCHING_PROTOCOLS);
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(if tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }),
    );
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    Ok(resp)
}

/// What the client's input does to an attach session.
struct SessionInput {
    /// The client's bytes go to the container's stdin.
    stdin: bool,
    /// A terminal session: the detach keys are watched for, and the end of the client's
    /// input ends the session (dockerd closes the output when a TTY's input ends).
    tty: bool,
    /// Without a terminal, the end of the client's input is the container's EOF; else it
    /// ends the session and the container's stdin stays open for the next attach.
    close_stdin: bool,
    keys: Vec<u8>,
}

/// Copies both ways until the container's output ends, or the client's input ends a
/// session that its input owns (see [`SessionInput`]). `detached` runs when the client
/// typed the detach keys, before its stream ends.
async fn pump<C>(
    client: C,
    shim: tokio::net::UnixStream,
    input: SessionInput,
    detached: impl FnOnce(),
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut shim_r, mut shim_w) = shim.into_split();
    let (end_tx, end_rx) = tokio::sync::oneshot::channel();
    let relay = tokio::spawn(async move {
        if !input.stdin {
            let _ = tokio::io::copy(&mut client_r, &mut tokio::io::sink()).await;
            let _ = shim_w.shutdown().await;
            return;
        }
        let scanner = input.tty.then(|| DetachScanner::new(input.keys));
        let end = attach_input::relay(&mut client_r, &mut shim_w, scanner).await;
        if input.close_stdin && end == InputEnd::Closed {
            // The container reads its EOF; its output goes on to the client.
            let _ = shim_w.shutdown().await;
            return;
        }
        let _ = end_tx.send(end);
    });
    let ended_by_input = async {
        match end_rx.await {
            Ok(end) => end,
            Err(_) => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        _ = tokio::io::copy(&mut shim_r, &mut client_w) => InputEnd::Closed,
        end = ended_by_input => end,
    };
    if end == InputEnd::Detached {
        detached();
    }
    let _ = client_w.shutdown().await;
    relay.abort();
}

fn list(state: &Arc<DaemonState>, query: &Query) -> Result<Response<Body>, ApiError> {
    let all = query.bool("all");
    let filters = query.filters()?;
    for key in filters.keys() {
        if !matches!(
            key.as_str(),
            "status" | "name" | "id" | "label" | "exited" | "ancestor"
        ) {
            return Err(ApiError::bad_request(format!("invalid filter '{key}'")));
        }
    }
    let mut records = state.containers.list();
    records.sort_by(|a, b| b.created.cmp(&a.created));
    let limit = query.int("limit")?.filter(|n| *n > 0);
    let out: Vec<ContainerSummary> = records
        .iter()
        .filter(|r| all || !filters.is_empty() || r.state.status.is_running())
        .filter(|r| {
            all || filters.contains_key("status")
                || r.state.status.is_running()
                || filters.is_empty()
        })
        .filter(|r| matches_filters(r, &filters))
        .take(limit.map(|n| n as usize).unwrap_or(usize::MAX))
        .map(summary)
        .collect();
    Ok(response::json(StatusCode::OK, &out))
}

fn matches_filters(r: &ContainerRecord, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(key, values)| {
        values.is_empty()
            || values.iter().any(|v| match key.as_str() {
                "status" => r.state.status.as_str() == v,
                "name" => r.name.contains(v.trim_start_matches('/')),
                "id" => r.id.starts_with(v.as_str()),
                "exited" => r.state.status == Status::Exited && r.state.exit_code.to_string() == *v,
                "ancestor" => r.image_name == *v || r.image_id.contains(v.as_str()),
                "label" => {
                    let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
                    r.config
                        .labels
                        .get(k)
                        .is_some_and(|have| val.is_empty() || have == val)
                }
                _ => true,
            })
    })
}

/// `Up 3 minutes`, `Exited (0) 2 seconds ago`, `Created`, as `docker ps` prints.
fn status_text(r: &ContainerRecord) -> String {
    match r.state.status {
        Status::Running => format!(
            "Up {}",
            clock::human_duration(clock::since(&r.state.started_at))
        ),
        Status::Paused => format!(
            "Up {} (Paused)",
            clock::human_duration(clock::since(&r.state.started_at))
        ),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            r.state.exit_code,
            clock::human_duration(clock::since(&r.state.finished_at))
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            clock::human_duration(clock::since(&r.state.finished_at))
        ),
        Status::Created => "Created".to_owned(),
        Status::Removing => "Removal In Progress".to_owned(),
        Status::Dead => "Dead".to_owned(),
    }
}

pub(crate) fn summary(r: &ContainerRecord) -> ContainerSummary {
    let mut ports: Vec<Port> = Vec::new();
    if let Some(net) = &r.network {
        for p in &net.ports {
            ports.push(Port {
                ip: if p.host_ip.is_empty() {
                    "0.0.0.0".to_owned()
                } else {
                    p.host_ip.clone()
                },
                private_port: p.container_port,
                public_port: Some(p.host_port),
                kind: p.protocol.clone(),
            });
        }
    }
    if let Some(exposed) = &r.config.exposed_ports {
        for key in exposed.keys() {
            let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            if !ports
                .iter()
                .any(|p| p.private_port == port && p.kind == proto)
            {
                ports.push(Port {
                    private_port: port,
                    kind: proto.to_owned(),
                    ..Port::default()
                });
            }
        }
    }
    let command = std::iter::once(r.path.as_str())
        .chain(r.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    ContainerSummary {
        id: r.id.clone(),
        names: vec![format!("/{}", r.name)],
        image: r.image_name.clone(),
        image_id: r.image_id.clone(),
        command,
        created: clock::parse(&r.created).map(|t| t.timestamp()).unwrap_or(0),
        ports,
        labels: r.config.labels.clone(),
        state: r.state.status.as_str().to_owned(),
        status: status_text(r),
        host_config: SummaryHostConfig {
            network_mode: r.network_mode().to_owned(),
        },
        network_settings: SummaryNetworkSettings {
            networks: endpoint_settings(r),
        },
        mounts: mount_points(r),
    }
}

/// `Mounts` of inspect and `ps`: binds, volumes and `--mount` tmpfs, as dockerd lists them.
fn mount_points(r: &ContainerRecord) -> Vec<berth_api::container::MountPoint> {
    crate::container_mounts::of(r)
        .iter()
        .map(crate::container_mounts::MountRecord::to_api)
        .collect()
}

fn endpoint_settings(r: &ContainerRecord) -> BTreeMap<String, EndpointSettings> {
    let mode = r.network_mode();
    if crate::container_manager::joined_container(mode).is_some() {
        // The network is the other container's: dockerd shows no endpoint of its own.
        return BTreeMap::new();
    }
    if r.detached {
        // Disconnected from every network: Docker's empty `Networks`.
        return BTreeMap::new();
    }
    if mode == "host" || mode == "none" {
        return BTreeMap::from([(mode.to_owned(), EndpointSettings::default())]);
    }
    let (key, network_id) = match &r.network {
        Some(n) if !n.network_id.is_empty() => (n.network_name.clone(), n.network_id.clone()),
        _ => (mode.to_owned(), mode.to_owned()),
    };
    let mut ep = EndpointSettings {
        aliases: r.aliases.clone(),
        network_id,
        ..EndpointSettings::default()
    };
    if let Some(net) = &r.network {
        fill_endpoint(&mut ep, r, net);
    }
    let mut all = BTreeMap::from([(key, ep)]);
    // The networks joined later: while it runs their endpoints, else what it joins at
    // start (a running container's endpoint wins over the same network's entry above).
    for x in &r.extra_networks {
        all.insert(x.network_name.clone(), joined(&x.network_id, &x.aliases));
    }
    for net in &r.extra_endpoints {
        let name = if net.network_id.is_empty() {
            "bridge".to_owned()
        } else {
            net.network_name.clone()
        };
        let mut ep = joined(&net.network_id, &net.aliases);
        fill_endpoint(&mut ep, r, net);
        all.insert(name, ep);
    }
    all
}

/// The settings of a network joined by `network connect` (`network_id` empty for the
/// default bridge, which inspect names `bridge`), before its address is filled in.
fn joined(network_id: &str, aliases: &[String]) -> EndpointSettings {
    EndpointSettings {
        aliases: aliases.to_vec(),
        network_id: if network_id.is_empty() {
            "bridge".to_owned()
        } else {
            network_id.to_owned()
        },
        ..EndpointSettings::default()
    }
}

/// The address part of an endpoint's settings, from a running container's endpoint.
fn fill_endpoint(ep: &mut EndpointSettings, r: &ContainerRecord, net: &NetworkEndpoint) {
    ep.endpoint_id = net.endpoint_id(&r.id);
    ep.gateway = net.gateway.clone();
    ep.ip_address = net.ip.clone();
    ep.ip_prefix_len = net.prefix_len;
    ep.mac_address = net.mac.clone();
}

fn inspect(state: &Arc<DaemonState>, r: &ContainerRecord) -> ContainerInspect {
    let paths = state.containers.paths();
    let dir = paths.data_root.join("containers").join(&r.id);
    // A container in another's network namespace uses that one's /etc files, as dockerd
    // points HostsPath and ResolvConfPath at them.
    let etc_dir = match crate::container_manager::joined_container(r.network_mode()) {
        Some(target) => paths.data_root.join("containers").join(target),
        None => dir.clone(),
    };
    let mut ports = BTreeMap::new();
    if let Some(exposed) = &r.config.exposed_ports {
        for key in exposed.keys() {
            ports.insert(key.clone(), None);
        }
    }
    if let Some(net) = &r.network {
        for p in &net.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            let entry: &mut Option<Vec<PortBinding>> = ports.entry(key).or_insert(None);
            entry.get_or_insert_with(Vec::new).push(PortBinding {
                host_ip: if p.host_ip.is_empty() {
                    "0.0.0.0".to_owned()
                } else {
                    p.host_ip.clone()
                },
                host_port: p.host_port.to_string(),
            });
        }
    }
    let networks = endpoint_settings(r);
    let bridge = networks.get("bridge").cloned().unwrap_or_default();
    let mut host_config = r.host_config.clone();
    if host_config.log_config.kind.is_empty() {
        host_config.log_config.kind = "json-file".to_owned();
    }
    if host_config.network_mode.is_empty() {
        host_config.network_mode = "default".to_owned();
    }
    if host_config.restart_policy.name.is_empty() {
        host_config.restart_policy.name = "no".to_owned();
    }
    let snapshot_dir = paths.data_root.join("snapshots").join(&r.id);
    ContainerInspect {
        id: r.id.clone(),
        created: r.created.clone(),
        path: r.path.clone(),
        args: r.args.clone(),
        state: ContainerState {
            status: r.state.status.as_str().to_owned(),
            running: r.state.status.is_running(),
            paused: r.state.status == Status::Paused,
            restarting: r.state.status == Status::Restarting,
            oom_killed: false,
            dead: r.state.status == Status::Dead,
            pid: r.state.pid,
            exit_code: r.state.exit_code,
            error: r.state.error.clone(),
            started_at: r.state.started_at.clone(),
            finished_at: r.state.finished_at.clone(),
        },
        image: r.image_id.clone(),
        resolv_conf_path: etc_dir.join("resolv.conf").display().to_string(),
        hostname_path: etc_dir.join("hostname").display().to_string(),
        hosts_path: etc_dir.join("hosts").display().to_string(),
        log_path: paths.log(&r.id).display().to_string(),
        name: format!("/{}", r.name),
        restart_count: r.restart_count,
        driver: "overlay2".to_owned(),
        platform: "linux".to_owned(),
        mount_label: String::new(),
        process_label: String::new(),
        app_armor_profile: String::new(),
        exec_ids: None,
        host_config,
        graph_driver: GraphDriver {
            name: "overlay2".to_owned(),
            data: BTreeMap::from([
                (
                    "MergedDir".to_owned(),
                    snapshot_dir.join("merged").display().to_string(),
                ),
                (
                    "UpperDir".to_owned(),
                    snapshot_dir.join("upper").display().to_string(),
                ),
                (
                    "WorkDir".to_owned(),
                    snapshot_dir.join("work").display().to_string(),
                ),
            ]),
        },
        mounts: mount_points(r),
        config: r.config.clone(),
        network_settings: NetworkSettings {
            bridge: String::new(),
            sandbox_id: r.id.clone(),
            hairpin_mode: false,
            ports,
            sandbox_key: if r.network.is_some() {
                paths
                    .exec_root
                    .join("netns")
                    .join(&r.id)
                    .display()
                    .to_string()
            } else {
                String::new()
            },
            endpoint_id: bridge.endpoint_id.clone(),
            gateway: bridge.gateway.clone(),
            ip_address: bridge.ip_address.clone(),
            ip_prefix_len: bridge.ip_prefix_len,
            mac_address: bridge.mac_address.clone(),
            networks,
        },
    }
}

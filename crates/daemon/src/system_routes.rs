//! `/_ping`, `/version` and `/info`: what a client asks before anything else.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_api::{
    ComponentVersion, Info, Platform, PluginsInfo, Runtime, SwarmInfo, SystemVersion,
    MAX_API_VERSION, MIN_API_VERSION,
};

use crate::host_facts::{go_arch, HostFacts};
use crate::metadata_store::Counts;

/// berthd's own version, from Cargo.
pub const DAEMON_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The toolchain berthd was built with, reported where dockerd reports its Go version.
const RUSTC_VERSION: &str = env!("BERTHD_RUSTC_VERSION");

/// Static inputs of `/version` and `/info`, gathered once at startup.
#[derive(Debug, Clone)]
pub struct SystemFacts {
    pub host: HostFacts,
    pub engine_id: String,
    pub data_root: PathBuf,
}

pub fn version(facts: &SystemFacts) -> SystemVersion {
    let arch = go_arch(std::env::consts::ARCH).to_owned();
    let details: BTreeMap<String, String> = [
        ("ApiVersion", MAX_API_VERSION.to_string()),
        ("MinAPIVersion", MIN_API_VERSION.to_string()),
        ("GitCommit", String::new()),
        ("GoVersion", RUSTC_VERSION.to_owned()),
        ("Os", "linux".to_owned()),
        ("Arch", arch.clone()),
        ("BuildTime", String::new()),
        ("Experimental", "false".to_owned()),
        ("KernelVersion", facts.host.kernel_version.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    SystemVersion {
        platform: Platform {
            name: "berth".to_owned(),
        },
        components: vec![ComponentVersion {
            name: "Engine".to_owned(),
            version: DAEMON_VERSION.to_owned(),
            details,
        }],
        version: DAEMON_VERSION.to_owned(),
        api_version: MAX_API_VERSION.to_string(),
        min_api_version: MIN_API_VERSION.to_string(),
        git_commit: String::new(),
        go_version: RUSTC_VERSION.to_owned(),
        os: "linux".to_owned(),
        arch,
        kernel_version: facts.host.kernel_version.clone(),
        experimental: false,
        build_time: String::new(),
    }
}

pub fn info(facts: &SystemFacts, counts: Counts) -> Info {
    let host = &facts.host;
    let cg = host.cgroup_controllers;
    let mut runtimes = BTreeMap::new();
    runtimes.insert(
        "berth".to_owned(),
        Runtime {
            path: "berth-runtime".to_owned(),
            runtime_args: Vec::new(),
        },
    );
    Info {
        id: facts.engine_id.clone(),
        containers: counts.containers,
        // Nothing runs yet: containers are created but never started by this skeleton.
        containers_stopped: counts.containers,
        images: counts.images,
        driver: "overlay2".to_owned(),
        plugins: PluginsInfo {
            volume: vec!["local".to_owned()],
            network: vec!["bridge".to_owned(), "host".to_owned(), "none".to_owned()],
            authorization: Vec::new(),
            log: vec!["json-file".to_owned()],
        },
        memory_limit: cg.memory,
        swap_limit: cg.memory,
        cpu_cfs_period: cg.cpu,
        cpu_cfs_quota: cg.cpu,
        cpu_shares: cg.cpu,
        cpu_set: cg.cpuset,
        pids_limit: cg.pids,
        ipv4_forwarding: host.ipv4_forwarding,
        logging_driver: "json-file".to_owned(),
        cgroup_driver: "cgroupfs".to_owned(),
        cgroup_version: host.cgroup_version.to_owned(),
        kernel_version: host.kernel_version.clone(),
        operating_system: host.operating_system.clone(),
        os_version: host.os_version.clone(),
        os_type: "linux".to_owned(),
        architecture: host.machine.clone(),
        index_server_address: "https://index.docker.io/v1/".to_owned(),
        ncpu: host.ncpu,
        mem_total: host.mem_total,
        docker_root_dir: facts.data_root.display().to_string(),
        name: host.hostname.clone(),
        server_version: DAEMON_VERSION.to_owned(),
        runtimes,
        default_runtime: "berth".to_owned(),
        swarm: SwarmInfo {
            local_node_state: "inactive".to_owned(),
            ..Default::default()
        },
        security_options: vec!["name=seccomp,profile=builtin".to_owned()],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> SystemFacts {
        SystemFacts {
            host: HostFacts {
                kernel_version: "6.1.0".into(),
                cgroup_version: "2",
                ..Default::default()
            },
            engine_id: "id".into(),
            data_root: "/var/lib/berth".into(),
        }
    }

    #[test]
    fn version_reports_the_engine_component() {
        let v = version(&facts());
        assert_eq!(v.api_version, "1.44");
        assert_eq!(v.min_api_version, "1.24");
        assert_eq!(v.components[0].name, "Engine");
        assert_eq!(v.components[0].details["ApiVersion"], "1.44");
        assert_eq!(v.components[0].details["KernelVersion"], "6.1.0");
        assert_ne!(v.arch, "x86_64", "Go arch names");
    }

    #[test]
    fn info_reports_store_counts_and_roots() {
        let i = info(
            &facts(),
            Counts {
                containers: 2,
                images: 3,
            },
        );
        assert_eq!((i.containers, i.images), (2, 3));
        assert_eq!(i.docker_root_dir, "/var/lib/berth");
        assert_eq!(i.cgroup_version, "2");
        assert_eq!(i.runtimes["berth"].path, "berth-runtime");
    }
}

/// `GET /events?since=&until=&filters=`: the kept events from `since`, then live ones
/// until `until` (or until the client goes away), one JSON line each.
pub fn events(
    state: &std::sync::Arc<crate::api_server::DaemonState>,
    req: &hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<crate::response::Body>, crate::response::ApiError> {
    use crate::response;
    let query = crate::query::Query::parse(req.uri().query());
    let filters = query.filters()?;
    let since = parse_event_time(query.get("since"))?;
    let until = parse_event_time(query.get("until"))?;
    let (past, mut live) = state.events.subscribe(since.or(until.map(|_| 0)));
    let (tx, body) = response::channel();
    let matches = move |m: &berth_api::stream::EventMessage| event_matches(&filters, m);
    tokio::spawn(async move {
        let deadline = until.map(|u| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as i64;
            tokio::time::Instant::now()
                + std::time::Duration::from_nanos(u.saturating_sub(now).max(0) as u64)
        });
        for m in past.iter().filter(|m| matches(m)) {
            if until.is_some_and(|u| m.time_nano > u) {
                return;
            }
            if tx.send(response::json_line(m)).await.is_err() {
                return;
            }
        }
        loop {
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, live.recv()).await.ok(),
                    None => Some(live.recv().await),
                }
            };
            tokio::select! {
                got = next => match got {
                    None => return,
                    Some(Ok(m)) => {
                        if matches(&m) && tx.send(response::json_line(&m)).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                        tracing::warn!(missed = n, "an events client fell behind");
                    }
                    Some(Err(_)) => return,
                },
                () = tx.closed() => return,
            }
        }
    });
    Ok(response::with_type(
        hyper::StatusCode::OK,
        body,
        "application/json",
    ))
}

/// `since`/`until`: Unix seconds with an optional fraction (`1700000000.5`), as the CLI
/// sends them after converting durations and dates.
fn parse_event_time(value: Option<&str>) -> Result<Option<i64>, crate::response::ApiError> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs
        .parse()
        .map_err(|_| crate::response::ApiError::bad_request(format!("invalid timestamp {v:?}")))?;
    let mut nanos: i64 = 0;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        let padded = format!("{digits:0<9}");
        nanos = padded.parse().map_err(|_| {
            crate::response::ApiError::bad_request(format!("invalid timestamp {v:?}"))
        })?;
    }
    Ok(Some(
        secs.saturating_mul(1_000_000_000).saturating_add(nanos),
    ))
}

fn event_matches(
    filters: &BTreeMap<String, Vec<String>>,
    m: &berth_api::stream::EventMessage,
) -> bool {
    filters.iter().all(|(name, values)| {
        values.is_empty()
            || values.iter().any(|v| match name.as_str() {
                "type" => m.kind == *v,
                "event" => m.action == *v,
                "container" => {
                    m.kind == "container"
                        && (m.actor.id.starts_with(v.as_str())
                            || m.actor.attributes.get("name") == Some(v))
                }
                "image" => {
                    m.actor.attributes.get("image") == Some(v)
                        || (m.kind == "image" && m.actor.id == *v)
                }
                "label" => {
                    let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
                    m.actor
                        .attributes
                        .get(k)
                        .is_some_and(|have| val.is_empty() || have == val)
                }
                _ => true,
            })
    })
}

#[cfg(test)]
mod event_tests {
    use super::*;

    #[test]
    fn event_times_and_filters() {
        assert_eq!(
            parse_event_time(Some("12.5")).expect("t"),
            Some(12_500_000_000)
        );
        assert!(parse_event_time(Some("x")).is_err());
        let mut m = berth_api::stream::EventMessage {
            kind: "container".into(),
            action: "start".into(),
            ..Default::default()
        };
        m.actor.id = "abcdef".into();
        m.actor.attributes.insert("name".into(), "web".into());
        let f = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), vec![v.to_owned()])]);
        assert!(event_matches(&f("container", "web"), &m));
        assert!(event_matches(&f("container", "abc"), &m));
        assert!(!event_matches(&f("event", "die"), &m));
        assert!(event_matches(&f("type", "container"), &m));
    }
}

//! Containers: create, start, stop, kill, remove, and the monitor of each running one.
//!
//! The records live in memory (for reads) and in the metadata database (written through on
//! every change). Each container has a `Live` entry: a lock that serializes its lifecycle
//! operations, a watch channel that announces exits (what `wait` and `stop` wait on), and
//! the attach clients waiting for its shim to exist.
//!
//! Host side effects and their undo sit together: `prepare_start` mounts the rootfs,
//! makes the network namespace, connects it and writes `config.json`; `release` undoes
//! all of it from the record alone, so an exit seen live, an exit found after a daemon
//! restart, and a failed start all clean up through the same code.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::container::{ContainerConfig, ContainerCreateRequest};
use berth_image::image_store::InUse;
use berth_image::runtime_spec::{self, Overrides};
use berth_image::Digest;
use berth_network::bridge_network::{BridgeNetwork, BridgeNetworkConfig, ConnectRequest};
use berth_network::port_spec::{self, PortSpec};
use hyper::StatusCode;
use tokio::sync::{oneshot, watch};

use crate::clock;
use crate::container_mounts::{self, MountKind, MountRecord, PlannedMount, Source};
use crate::container_names;
use crate::container_record::{
    ContainerRecord, ExtraNetwork, NetworkEndpoint, PublishedPort, RunState, Status, ZERO_TIME,
};
use crate::container_spec::{self, EtcFiles, NetnsPlan};
use crate::events::EventBus;
use crate::image_service::ImageService;
use crate::metadata_store::{ContainerStoreError, MetadataStore};
use crate::networks::{Networks, UserNetwork};
use crate::response::ApiError;
use crate::shim_client::{self, Shim, ShimLaunch};
use crate::volume_store::VolumeStore;

mod pause_rename;

/// How long a stop waits after SIGKILL before giving up on the container.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Where things are.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub shim_bin: PathBuf,
}

impl Paths {
    fn container_dir(&self, id: &str) -> PathBuf {
        self.data_root.join("containers").join(id)
    }
    fn bundle(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("bundle")
    }
    pub fn log(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }
    fn etc(&self, id: &str) -> EtcFiles {
        let dir = self.container_dir(id);
        EtcFiles {
            hosts: dir.join("hosts"),
            hostname: dir.join("hostname"),
            resolv_conf: dir.join("resolv.conf"),
        }
    }
    /// Short on purpose: the shim's socket path must fit in 108 bytes.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.exec_root.join("c").join(id)
    }
    fn runtime_root(&self) -> PathBuf {
        self.exec_root.join("runtime")
    }
    fn netns(&self, id: &str) -> PathBuf {
        self.exec_root.join("netns").join(id)
    }
}

/// An exit as `wait` reports it; `seq` counts exits so `next-exit` can wait for a new one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitSeen {
    pub seq: u64,
    pub code: i64,
}

/// A client's attach waiting for the container's shim: `start` sends it a channel to ack
/// on once it has attached, so no output is missed.
type PendingAttach = oneshot::Sender<oneshot::Sender<()>>;

struct Live {
    /// Serializes lifecycle operations (start, stop, rm, ...) on one container. An `Arc`
    /// so that `docker cp` can hold it across a streamed response ([`ContainerManager::lock_ops`]).
    op: Arc<tokio::sync::Mutex<()>>,
    exits: watch::Sender<ExitSeen>,
    removed: watch::Sender<bool>,
    pending_attach: Mutex<Vec<PendingAttach>>,
}

impl Live {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            op: Arc::new(tokio::sync::Mutex::new(())),
            exits: watch::channel(ExitSeen::default()).0,
            removed: watch::channel(false).0,
            pending_attach: Mutex::new(Vec::new()),
        })
    }
}

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

/// Where an attach goes.
pub enum AttachTarget {
    /// The shim runs: attach now.
    Now(Shim),
    /// Not started yet: the receiver fires when `start` has a shim, with the ack channel.
    Later(oneshot::Receiver<oneshot::Sender<()>>, PathBuf),
}

pub struct ContainerManager {
    paths: Paths,
    store: Arc<Mutex<MetadataStore>>,
    images: Arc<ImageService>,
    events: Arc<EventBus>,
    volumes: Arc<VolumeStore>,
    network_config: BridgeNetworkConfig,
    network: Mutex<Option<Arc<BridgeNetwork>>>,
    networks: Networks,
    /// Held (shared) by a start from choosing its network until its record shows the
    /// endpoint, and (exclusively) by a network's removal: a network cannot go while a
    /// container is joining it.
    network_guard: tokio::sync::RwLock<()>,
    records: Mutex<BTreeMap<String, ContainerRecord>>,
    live: Mutex<HashMap<String, Arc<Live>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves plain data; keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))?
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("No such container: {name}"))
}

impl ContainerManager {
    pub fn new(
        paths: Paths,
        store: Arc<Mutex<MetadataStore>>,
        images: Arc<ImageService>,
        events: Arc<EventBus>,
        volumes: Arc<VolumeStore>,
        network_config: BridgeNetworkConfig,
    ) -> Result<Arc<Self>, ApiError> {
        let records = lock(&store)
            .containers()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        for r in &records {
            volumes.restore_refs(&r.id, volume_names(&r.mounts));
        }
        let networks = Networks::load(&paths.data_root.join("network"))?;
        let manager = Arc::new(Self {
            paths,
            store,
            images,
            events,
            volumes,
            network_config,
            network: Mutex::new(None),
            networks,
            network_guard: tokio::sync::RwLock::new(()),
            records: Mutex::new(records.into_iter().map(|r| (r.id.clone(), r)).collect()),
            live: Mutex::new(HashMap::new()),
        });
        Ok(manager)
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    pub fn networks(&self) -> &Networks {
        &self.networks
    }

    /// The default bridge's subnet, when known (a user network must not overlap it): set up,
    /// configured, or on record from an earlier run (its bridge may not exist yet, after a
    /// reboot).
    pub fn default_subnet(&self) -> Option<ipnet::Ipv4Net> {
        lock(&self.network)
            .as_ref()
            .map(|n| n.subnet())
            .or(self.network_config.subnet)
            .or_else(|| {
                let path = self
                    .network_config
                    .state_dir
                    .join(format!("{}.network.json", self.network_config.name));
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
                v["subnet"].as_str()?.parse().ok()
            })
    }

    /// Running containers on a network (a user network's id; empty for the default
    /// bridge), whichever of their networks it is: (id, name, endpoint).
    pub fn network_members(&self, network_id: &str) -> Vec<(String, String, NetworkEndpoint)> {
        lock(&self.records)
            .values()
            .filter_map(|r| {
                r.endpoint_on(network_id)
                    .map(|n| (r.id.clone(), r.name.clone(), n.clone()))
            })
            .collect()
    }

    /// Removes a user network that no running container is on. Blocks: call it from a
    /// blocking thread.
    pub fn remove_network(&self, key: &str) -> Result<(), ApiError> {
        let _no_joins = self.network_guard.blocking_write();
        if let Some(name) = self.networks.find_predefined(key) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{name} is a pre-defined network and cannot be removed"),
            ));
        }
        let net = self
            .networks
            .find(key)
            .ok_or_else(|| ApiError::not_found(format!("network {key} not found")))?;
        if !self.network_members(&net.id).is_empty() {
            return Err(ApiError::conflict(format!(
                "error while removing network: network {} id {} has active endpoints",
                net.name, net.id
            )));
        }
        self.networks.remove(&net)?;
        self.events.publish(
            "network",
            "destroy",
            &net.id,
            BTreeMap::from([
                ("name".to_owned(), net.name.clone()),
                ("type".to_owned(), "bridge".to_owned()),
            ]),
        );
        Ok(())
    }

    /// `network prune`: removes the user networks that no container (running or not) names
    /// in its network mode or among its other networks; returns their names.
    pub fn prune_networks(&self) -> Vec<String> {
        let used: std::collections::HashSet<String> = self
            .list()
            .iter()
            .flat_map(|r| {
                let mut ids: Vec<String> = r.endpoints().map(|n| n.network_id.clone()).collect();
                ids.extend(r.extra_networks.iter().map(|x| x.network_id.clone()));
                ids.extend(self.networks.find(r.network_mode()).map(|n| n.id));
                ids
            })
            .filter(|id| !id.is_empty())
            .collect();
        let mut deleted = Vec::new();
        for net in self.networks.list() {
            if used.contains(&net.id) || !self.network_members(&net.id).is_empty() {
                continue;
            }
            match self.remove_network(&net.id) {
                Ok(()) => deleted.push(net.name),
                Err(e) => tracing::warn!(network = %net.name, %e.message, "cannot prune"),
            }
        }
        deleted
    }

    /// `network connect` (`connect: true`) and `disconnect`. `network` is a predefined
    /// network's name or a user network's id (resolved by the caller, which answered 404
    /// for an unknown one); `aliases` are the endpoint's `--alias` names.
    ///
    /// A container's first network is its `NetworkMode` (eth0, the default route, the
    /// published ports); networks connected later are `extra_networks` (eth1, eth2, ...).
    /// A stopped container's record changes and takes effect at its next start; a running
    /// one gets (or loses) the interface in its namespace now, and the /etc/hosts of the
    /// network's members change with it. Disconnecting the first network makes the next
    /// one the first at the next start; disconnecting the last leaves `lo` only.
    pub async fn set_network(
        self: &Arc<Self>,
        container: &str,
        network: &str,
        connect: bool,
        aliases: Vec<String>,
    ) -> Result<ContainerRecord, ApiError> {
        let record = self.find(container)?;
        let live = self.live(&record.id);
        let _op = live.op.lock().await;
        // A network's removal waits for a connect in progress, and the reverse.
        let _joining = self.network_guard.read().await;
        let record = self.find(&record.id)?;
        if matches!(record.state.status, Status::Removing | Status::Dead) {
            return Err(ApiError::conflict(format!(
                "Container {} is marked for removal and cannot be connected or disconnected to the network",
                record.id
            )));
        }
        let user = self.networks.find(network);
        let net_name = user
            .as_ref()
            .map_or(network, |u| u.name.as_str())
            .to_owned();
        let mode = record.network_mode().to_owned();
        // The network as records name it: a user network's id, empty for the default bridge.
        let key = user.as_ref().map(|u| u.id.clone()).unwrap_or_default();
        let bridged = user.is_some() || network == "bridge";
        let primary_key = match mode.as_str() {
            _ if record.detached => None,
            "bridge" => Some(String::new()),
            "host" | "none" => None,
            m => self.networks.find(m).map(|n| n.id),
        };
        let on_primary = if bridged {
            primary_key.as_deref() == Some(key.as_str())
        } else {
            mode == network && !record.detached
        };
        let on_extra = bridged && record.extra_networks.iter().any(|x| x.network_id == key);
        let host_conflict = || {
            ApiError::bad_request(
                "container cannot be disconnected from host network or connected to host network",
            )
        };
        if joined_container(&mode).is_some() {
            return Err(ApiError::bad_request(
                "container sharing network namespace with another container or host cannot be connected to any other network",
            ));
        }
        let on_it = on_primary || on_extra;
        if connect && on_it {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "endpoint with name {} already exists in network {net_name}",
                    record.name
                ),
            ));
        }
        if !connect && !on_it {
            // dockerd's two wordings: a stopped container's, a running one's.
            let the = if record.state.status.is_running() {
                ""
            } else {
                "the "
            };
            return Err(ApiError::internal(format!(
                "container {} is not connected to {the}network {net_name}",
                record.id
            )));
        }
        if connect {
            if mode == "host" || network == "host" {
                return Err(host_conflict());
            }
            // dockerd's ErrConflictNoNetwork: `none` goes with no other network.
            let none_with_others = if network == "none" {
                !record.detached
            } else {
                mode == "none" && !record.detached
            };
            if none_with_others {
                return Err(ApiError::bad_request(
                    "container cannot be connected to multiple networks with one of the networks in private (none) mode",
                ));
            }
            if !aliases.is_empty() && user.is_none() {
                return Err(ApiError::bad_request(
                    "network-scoped alias is supported only for containers in user defined networks",
                ));
            }
        } else if mode == "host" {
            return Err(host_conflict());
        }
        let running = record.state.status.is_running();
        let record = if connect {
            self.connect_network(&record, user.as_ref(), &net_name, &key, aliases, running)
                .await?
        } else {
            self.disconnect_network(&record, &key, on_primary, running)
                .await?
        };
        if running {
            self.refresh_hosts(std::slice::from_ref(&key), Some(&record.id));
        }
        let network_id = match &user {
            Some(u) => u.id.clone(),
            None => self.networks.predefined_id(network),
        };
        self.events.publish(
            "network",
            if connect { "connect" } else { "disconnect" },
            &network_id,
            BTreeMap::from([
                ("container".to_owned(), record.id.clone()),
                ("name".to_owned(), net_name),
                (
                    "type".to_owned(),
                    if user.is_some() { "bridge" } else { network }.to_owned(),
                ),
            ]),
        );
        Ok(record)
    }

    /// The checked `connect` of [`set_network`](Self::set_network): records the network
    /// and, on a running container, makes its interface first. A detached container's
    /// network becomes its first (eth0, the default route, its published ports).
    async fn connect_network(
        self: &Arc<Self>,
        record: &ContainerRecord,
        user: Option<&UserNetwork>,
        net_name: &str,
        key: &str,
        aliases: Vec<String>,
        running: bool,
    ) -> Result<ContainerRecord, ApiError> {
        let id = record.id.clone();
        let first = record.detached;
        if net_name == "none" {
            return self.update(&id, |r| {
                r.host_config.network_mode = "none".to_owned();
                r.detached = false;
            });
        }
        let endpoint = if running {
            // Started with `lo` only (disconnected from everything), it has no namespace
            // file: its init's namespace is the one to connect, as dockerd always does.
            let mut netns = self.paths.netns(&id);
            if !netns.exists() && record.state.pid > 0 {
                netns = PathBuf::from(format!("/proc/{}/ns/net", record.state.pid));
            }
            if !netns.exists() {
                return Err(ApiError::internal(format!(
                    "container {id} has no network namespace to connect"
                )));
            }
            let used: Vec<String> = record.endpoints().map(|e| e.ifname().to_owned()).collect();
            let ifname = if first && !used.iter().any(|n| n == "eth0") {
                "eth0".to_owned()
            } else {
                next_ifname(&used)
            };
            let specs = if first {
                port_specs(&record.host_config, &exposed_ports(&record.config))?
            } else {
                Vec::new()
            };
            let this = self.clone();
            let user = user.cloned();
            let aliases = aliases.clone();
            let id2 = id.clone();
            let ep = blocking(move || {
                let net = match &user {
                    Some(u) => this.networks.bridge(u)?,
                    None => this.network()?,
                };
                let req = ConnectRequest {
                    ifname: &ifname,
                    default_route: first,
                    ..ConnectRequest::primary(&id2, &netns, &specs)
                };
                let started = std::time::Instant::now();
                let ep = net.connect(&req).map_err(|e| {
                    ApiError::internal(format!("cannot connect to the network: {e}"))
                })?;
                tracing::debug!(
                    id = %id2,
                    network = %net.name(),
                    %ifname,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "connected a running container"
                );
                Ok(endpoint_record(user.as_ref(), &ep, &ifname, aliases))
            })
            .await?;
            Some(ep)
        } else {
            None
        };
        // It may have exited while the interface was made: its exit's release did not see
        // the new endpoint, so it is not recorded but taken down here.
        let mut exited = false;
        let updated = self.update(&id, |r| {
            exited = running && !r.state.status.is_running();
            if exited {
                return;
            }
            if first {
                r.host_config.network_mode = net_name.to_owned();
                r.aliases = aliases.clone();
                r.detached = false;
                if endpoint.is_some() {
                    r.network = endpoint.clone();
                }
            } else {
                r.extra_networks.push(ExtraNetwork {
                    network_id: key.to_owned(),
                    network_name: net_name.to_owned(),
                    aliases: aliases.clone(),
                });
                r.extra_endpoints.extend(endpoint.clone());
            }
        });
        if (updated.is_err() || exited) && endpoint.is_some() {
            // Not on record: nothing would ever tear the interface down.
            self.drop_endpoint(&id, key, first).await;
        }
        if exited {
            return Err(ApiError::conflict(format!(
                "container {id} exited while it was being connected"
            )));
        }
        updated
    }

    /// The checked `disconnect` of [`set_network`](Self::set_network).
    async fn disconnect_network(
        self: &Arc<Self>,
        record: &ContainerRecord,
        key: &str,
        on_primary: bool,
        running: bool,
    ) -> Result<ContainerRecord, ApiError> {
        let id = record.id.clone();
        if running {
            if let Some(ep) = record.endpoint_on(key) {
                let ports = !ep.ports.is_empty();
                self.drop_endpoint(&id, key, ports).await;
            }
        }
        self.update(&id, |r| {
            if r.network.as_ref().is_some_and(|n| n.network_id == key) {
                r.network = None;
            }
            r.extra_endpoints.retain(|e| e.network_id != key);
            if !on_primary {
                r.extra_networks.retain(|x| x.network_id != key);
                return;
            }
            if r.extra_networks.is_empty() {
                r.host_config.network_mode = "none".to_owned();
                r.aliases.clear();
                r.detached = true;
            } else {
                // The next network becomes the first at the next start.
                let next = r.extra_networks.remove(0);
                r.host_config.network_mode = next.network_name;
                r.aliases = next.aliases;
            }
        })
    }

    /// Takes a running container's interface on one network away: its veth, its address,
    /// and (`port_rules`) its published ports' rules. Errors are logged: the record forgets
    /// the endpoint either way, and crash recovery finds what is left.
    async fn drop_endpoint(self: &Arc<Self>, id: &str, key: &str, port_rules: bool) {
        let this = self.clone();
        let (id, key) = (id.to_owned(), key.to_owned());
        let _ = blocking(move || {
            let net = if key.is_empty() {
                this.network()
            } else {
                this.networks
                    .find(&key)
                    .ok_or_else(|| ApiError::not_found(format!("network {key} not found")))
                    .and_then(|n| this.networks.bridge(&n))
            };
            match net {
                Ok(net) => {
                    if let Err(e) = net.disconnect_with(&id, port_rules, false) {
                        tracing::warn!(%id, network = %key, %e, "cannot disconnect");
                    }
                }
                Err(e) => tracing::warn!(%id, network = %key, %e.message, "cannot disconnect"),
            }
            Ok(())
        })
        .await;
    }

    /// The default bridge's link name.
    pub fn default_bridge_name(&self) -> &str {
        &self.network_config.bridge
    }

    /// Rewrites, in place, the /etc/hosts of every running container on the user networks
    /// `network_ids` (and of `also`, which may just have left one), with the names and
    /// addresses of the containers it shares a user network with (how they find each other
    /// by name).
    fn refresh_hosts(&self, network_ids: &[String], also: Option<&str>) {
        let user_ids: Vec<&str> = network_ids
            .iter()
            .map(String::as_str)
            .filter(|n| !n.is_empty())
            .collect();
        if user_ids.is_empty() && also.is_none() {
            return;
        }
        let all: Vec<ContainerRecord> = lock(&self.records)
            .values()
            .filter(|r| r.endpoints().next().is_some() || Some(r.id.as_str()) == also)
            .cloned()
            .collect();
        for r in &all {
            let affected = r
                .endpoints()
                .any(|e| user_ids.contains(&e.network_id.as_str()))
                || (Some(r.id.as_str()) == also && r.state.status.is_running());
            if !affected {
                continue;
            }
            // `fs::write` truncates and writes the same file: the container's bind mount
            // of it sees the new text.
            if let Err(e) = std::fs::write(&self.paths.etc(&r.id).hosts, hosts_text(r, &all)) {
                tracing::warn!(id = %r.id, %e, "cannot refresh /etc/hosts");
            }
        }
    }

    fn live(&self, id: &str) -> Arc<Live> {
        lock(&self.live)
            .entry(id.to_owned())
            .or_insert_with(Live::new)
            .clone()
    }

    /// By full id, name (with or without `/`), or unique id prefix, as Docker resolves.
    pub fn find(&self, name: &str) -> Result<ContainerRecord, ApiError> {
        let records = lock(&self.records);
        if let Some(r) = records.get(name) {
            return Ok(r.clone());
        }
        let bare = name.strip_prefix('/').unwrap_or(name);
        if let Some(r) = records.values().find(|r| r.name == bare) {
            return Ok(r.clone());
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found(name));
        }
        let mut matches = records.values().filter(|r| r.id.starts_with(name));
        match (matches.next(), matches.next()) {
            (Some(r), None) => Ok(r.clone()),
            (Some(_), Some(_)) => Err(ApiError::bad_request(format!(
                "multiple IDs found with provided prefix: {name}"
            ))),
            _ => Err(not_found(name)),
        }
    }

    /// Holds the container's lifecycle lock (the one start, stop and rm take) until the
    /// guard drops, and returns the record as it is under the lock. `docker cp` mounts a
    /// stopped container's rootfs for the copy: holding this keeps a start (which mounts
    /// it too) or an rm from racing the unmount, as dockerd holds the container's lock for
    /// a whole archive operation.
    pub async fn lock_ops(
        &self,
        name: &str,
    ) -> Result<(ContainerRecord, tokio::sync::OwnedMutexGuard<()>), ApiError> {
        let record = self.find(name)?;
        let guard = self.live(&record.id).op.clone().lock_owned().await;
        Ok((self.find(&record.id)?, guard))
    }

    pub fn list(&self) -> Vec<ContainerRecord> {
        lock(&self.records).values().cloned().collect()
    }

    /// Writes `record` through to the database, then to memory.
    fn save(&self, record: &ContainerRecord) -> Result<(), ApiError> {
        lock(&self.store)
            .update_container(record)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        lock(&self.records).insert(record.id.clone(), record.clone());
        Ok(())
    }

    fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord, ApiError> {
        let mut record = lock(&self.records)
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(id))?;
        f(&mut record);
        self.save(&record)?;
        Ok(record)
    }

    fn event(&self, action: &str, record: &ContainerRecord, extra: &[(&str, String)]) {
        let mut attrs: BTreeMap<String, String> = record.config.labels.clone();
        attrs.insert("name".into(), record.name.clone());
        attrs.insert("image".into(), record.image_name.clone());
        for (k, v) in extra {
            attrs.insert((*k).to_owned(), v.clone());
        }
        self.events.publish("container", action, &record.id, attrs);
    }

    /// What images and layers containers use, for `rmi` and garbage collection.
    pub fn images_in_use(&self) -> InUse {
        let mut in_use = InUse::default();
        for r in lock(&self.records).values() {
            let Ok(id) = r.image_id.parse::<Digest>() else {
                continue;
            };
            if r.state.status.is_running() {
                in_use.running_images.insert(id);
            } else {
                in_use.stopped_images.insert(id);
            }
            in_use.snapshots.insert(r.id.clone());
            if let Ok(snapshot) = self.images.snapshotter.get(&r.id) {
                in_use.chains.extend(snapshot.layers);
            }
        }
        in_use
    }

    fn network(&self) -> Result<Arc<BridgeNetwork>, ApiError> {
        let mut slot = lock(&self.network);
        if let Some(net) = slot.as_ref() {
            return Ok(net.clone());
        }
        let net = Arc::new(
            BridgeNetwork::open(self.network_config.clone()).map_err(|e| {
                ApiError::internal(format!("cannot set up the bridge network: {e}"))
            })?,
        );
        *slot = Some(net.clone());
        Ok(net)
    }

    // ---- create ----

    pub async fn create(
        self: &Arc<Self>,
        req: ContainerCreateRequest,
        name: Option<String>,
    ) -> Result<String, ApiError> {
        // Shared with pulls and loads, exclusive with image gc: gc must not see the new
        // snapshot as garbage before the container's record exists.
        let _images = self.images.writers.read().await;
        let this = self.clone();
        blocking(move || this.create_blocking(req, name)).await
    }

    fn create_blocking(
        &self,
        req: ContainerCreateRequest,
        name: Option<String>,
    ) -> Result<String, ApiError> {
        let name = name
            .filter(|n| !n.is_empty())
            .map(|n| container_names::validate(&n))
            .transpose()?;
        let ContainerCreateRequest {
            config: requested,
            host_config,
            networking_config,
        } = req;
        if requested.image.is_empty() {
            return Err(ApiError::bad_request(
                "config cannot be empty in order to create a container",
            ));
        }
        validate_host_config(&host_config, |mode| self.networks.find(mode).is_some())?;
        check_container_mode(&requested, &host_config)?;
        for endpoint in networking_config.endpoints_config.values() {
            crate::network_routes::refuse_chosen_addresses(endpoint.ipam_config.as_ref())?;
        }
        let aliases = network_aliases(&host_config, &networking_config)?;
        let mut host_config = container_spec::check_security(host_config)?;
        if let Some(target) = joined_container(&host_config.network_mode) {
            // Kept by full id, as dockerd shows it in inspect: a later rename of the
            // target does not change which namespace this container joins. An unknown
            // target is kept as given and is an error at start, as with dockerd.
            if let Ok(target) = self.find(target) {
                host_config.network_mode = format!("container:{}", target.id);
            }
        }
        let image = self.images.resolve(&requested.image)?;
        let image_cc = image.config.config.clone().unwrap_or_default();
        let overrides = overrides(&requested);
        let args = runtime_spec::args(&image_cc, &overrides)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if args.is_empty() {
            return Err(ApiError::bad_request("No command specified"));
        }
        // Every port binding must parse before anything exists.
        port_specs(&host_config, &BTreeMap::new())?;
        let mut config = merged_config(&requested, &image_cc, &image.config);
        let planned = container_mounts::plan(&host_config, config.volumes.as_ref())?;
        check_host_sources(&planned)?;

        let id = container_names::new_id()?;
        let mounts = self.acquire_mounts(&id, &planned)?;
        // Until the record exists, a failed create gives back its volumes.
        let undo_mounts = |this: &Self| this.volumes.release(&id, &anonymous_names(&mounts));
        if config.hostname.is_empty() {
            config.hostname = id[..12].to_owned();
        }
        let record_for = |name: String| ContainerRecord {
            id: id.clone(),
            name,
            created: clock::now_rfc3339(),
            image_name: requested.image.clone(),
            image_id: image.id.to_string(),
            image_config: Some(image.config.clone()),
            requested: requested.clone(),
            config: config.clone(),
            host_config: host_config.clone(),
            path: args[0].clone(),
            args: args[1..].to_vec(),
            state: RunState::default(),
            network: None,
            restart_count: 0,
            mounts: mounts.clone(),
            aliases: aliases.clone(),
            extra_networks: Vec::new(),
            extra_endpoints: Vec::new(),
            detached: false,
        };

        if let Err(e) = self.images.snapshotter.create(&id, &image.chain_ids) {
            undo_mounts(self);
            return Err(ApiError::internal(format!(
                "cannot create the container's rootfs: {e}"
            )));
        }
        let undo_snapshot = |this: &Self| {
            if let Err(e) = this.images.snapshotter.remove(&id) {
                tracing::warn!(%id, %e, "cannot remove the snapshot of a failed create");
            }
            undo_mounts(this);
        };
        let mut attempt = 0;
        let record = loop {
            let chosen = name
                .clone()
                .unwrap_or_else(|| container_names::generate(attempt));
            let record = record_for(chosen);
            match lock(&self.store).insert_container(&record) {
                Ok(()) => break record,
                Err(ContainerStoreError::NameInUse { .. }) if name.is_none() && attempt < 20 => {
                    attempt += 1;
                }
                Err(ContainerStoreError::NameInUse { name: taken }) => {
                    undo_snapshot(self);
                    let holder = lock(&self.records)
                        .values()
                        .find(|r| r.name == taken)
                        .map(|r| r.id.clone())
                        .unwrap_or_default();
                    return Err(ApiError::conflict(format!(
                        "Conflict. The container name \"/{taken}\" is already in use by container \"{holder}\". You have to remove (or rename) that container to be able to reuse that name."
                    )));
                }
                Err(e) => {
                    undo_snapshot(self);
                    return Err(ApiError::internal(e.to_string()));
                }
            }
        };
        if let Err(e) = std::fs::create_dir_all(self.paths.bundle(&id)) {
            let _ = lock(&self.store).delete_container(&id);
            undo_snapshot(self);
            return Err(ApiError::internal(format!(
                "cannot create the container's directory: {e}"
            )));
        }
        lock(&self.records).insert(id.clone(), record.clone());
        self.event("create", &record, &[]);
        Ok(id)
    }

    /// Resolves planned mounts for container `id`: volumes are got (made if missing) with
    /// the container's reference. On an error the references taken so far are given back.
    fn acquire_mounts(
        &self,
        id: &str,
        planned: &[PlannedMount],
    ) -> Result<Vec<MountRecord>, ApiError> {
        let mut mounts = Vec::with_capacity(planned.len());
        for m in planned {
            let record = match &m.source {
                Source::Host { path, .. } => m.record("", path),
                Source::Tmpfs => m.record("", Path::new("")),
                Source::Volume(v) => {
                    let name = match v {
                        container_mounts::VolumeSource::Named(n) => Some(n.as_str()),
                        container_mounts::VolumeSource::Anonymous => None,
                    };
                    match self.volumes.acquire(name, id) {
                        Ok(volume) => m.record(&volume.name, &self.volumes.data_dir(&volume.name)),
                        Err(e) => {
                            self.volumes.release(id, &anonymous_names(&mounts));
                            return Err(e.into());
                        }
                    }
                }
            };
            mounts.push(record);
        }
        Ok(mounts)
    }

    /// At start, with the rootfs mounted: copies the image's content into empty volumes
    /// (Docker's copy-up) and returns the binds for `config.json`. A volume's host path is
    /// taken from the store now, not from the record, so the data root may move.
    fn mount_volumes(
        &self,
        record: &ContainerRecord,
        rootfs: &Path,
    ) -> Result<Vec<container_spec::BindMount>, ApiError> {
        let mut mounts = container_mounts::of(record);
        for m in mounts.iter_mut().filter(|m| m.kind == MountKind::Volume) {
            m.source = self.volumes.data_dir(&m.name).display().to_string();
            if m.copy_up {
                match self.volumes.copy_up(&m.name, rootfs, &m.destination) {
                    Ok(true) => {
                        tracing::debug!(id = %record.id, volume = %m.name, "copied the image's content into the volume")
                    }
                    Ok(false) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.volume_events("mount", record);
        Ok(container_mounts::binds(&mounts))
    }

    /// `volume mount`/`unmount` events for each volume of the container, as dockerd sends.
    fn volume_events(&self, action: &str, record: &ContainerRecord) {
        for m in record.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
            let mut attrs = BTreeMap::from([
                ("container".to_owned(), record.id.clone()),
                (
                    "driver".to_owned(),
                    crate::volume_store::LOCAL_DRIVER.to_owned(),
                ),
            ]);
            if action == "mount" {
                attrs.insert("destination".to_owned(), m.destination.clone());
                attrs.insert("propagation".to_owned(), String::new());
                attrs.insert("read/write".to_owned(), (!m.read_only).to_string());
            }
            self.events.publish("volume", action, &m.name, attrs);
        }
    }

    // ---- start ----

    pub async fn start(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let record = self.find(name)?;
        let live = self.live(&record.id);
        let op = live.op.lock().await;
        let result = self.start_locked(&record.id, &live, false).await;
        drop(op);
        if result.is_err() && record.host_config.auto_remove {
            // dockerd removes an `--rm` container whose start failed; `docker run --rm`
            // waits for that removal before it exits.
            if let Err(e) = self.remove(&record.id, true).await {
                tracing::warn!(id = %record.id, %e.message, "cannot auto-remove after a failed start");
            }
        }
        result
    }

    async fn start_locked(
        self: &Arc<Self>,
        id: &str,
        live: &Arc<Live>,
        restarting: bool,
    ) -> Result<(), ApiError> {
        let record = self.find(id)?;
        if record.state.status.is_running() {
            return Err(ApiError::new(
                StatusCode::NOT_MODIFIED,
                "container already started",
            ));
        }
        if record.state.status == Status::Removing {
            return Err(ApiError::conflict(format!(
                "container {id} is marked for removal and cannot be started"
            )));
        }
        let joining = self.network_guard.read().await;
        let this = self.clone();
        let rec = record.clone();
        let prepared = blocking(move || this.prepare_start(&rec)).await;
        let (endpoint, extra_endpoints) = match prepared {
            Ok(endpoints) => endpoints,
            Err(e) => {
                self.fail_start(id, &e.message, 128).await;
                return Err(e);
            }
        };
        let mut record = self.update(id, |r| {
            r.network = endpoint.clone();
            r.extra_endpoints = extra_endpoints.clone();
        })?;
        drop(joining);
        let joined: Vec<String> = record.endpoints().map(|e| e.network_id.clone()).collect();
        self.refresh_hosts(&joined, None);
        let state_dir = self.paths.state_dir(id);
        let launch = ShimLaunch {
            shim_bin: &self.paths.shim_bin,
            id,
            bundle: &self.paths.bundle(id),
            runtime_root: &self.paths.runtime_root(),
            state_dir: &state_dir,
            log_path: &self.paths.log(id),
            terminal: record.config.tty,
            stdin: record.config.open_stdin,
        };
        if let Err(e) = shim_client::launch(&launch).await {
            let msg = e.to_string();
            let code = exec_failure_code(&msg);
            self.fail_start(id, &msg, code).await;
            return Err(start_error(&msg));
        }
        let shim = Shim::new(&state_dir);
        // Attach clients that came before start get the shim first.
        let pending: Vec<PendingAttach> = std::mem::take(&mut *lock(&live.pending_attach));
        let mut acks = Vec::new();
        for p in pending {
            let (ack_tx, ack_rx) = oneshot::channel();
            if p.send(ack_tx).is_ok() {
                acks.push(ack_rx);
            }
        }
        for ack in acks {
            let _ = tokio::time::timeout(Duration::from_secs(5), ack).await;
        }
        if let Err(e) = shim.start().await {
            let msg = e.to_string();
            let code = exec_failure_code(&msg);
            self.fail_start(id, &msg, code).await;
            return Err(start_error(&msg));
        }
        let pid = shim
            .state()
            .await
            .ok()
            .and_then(|v| v.get("pid").and_then(serde_json::Value::as_i64))
            .unwrap_or(0);
        record = self.update(id, |r| {
            r.state.status = Status::Running;
            r.state.pid = pid;
            r.state.exit_code = 0;
            r.state.error.clear();
            r.state.started_at = clock::now_rfc3339();
            r.state.finished_at = ZERO_TIME.to_owned();
            if !restarting {
                r.state.stopped_by_user = false;
            }
        })?;
        self.event("start", &record, &[]);
        self.spawn_monitor(id.to_owned(), live.clone());
        Ok(())
    }

    /// Mounts the rootfs, sets up the network and writes the bundle. Undoes its own steps
    /// when one fails.
    fn prepare_start(&self, record: &ContainerRecord) -> Result<Endpoints, ApiError> {
        let id = &record.id;
        let rootfs =
            self.images.snapshotter.mount(id).map_err(|e| {
                ApiError::internal(format!("cannot mount the container's rootfs: {e}"))
            })?;
        let result = self.prepare_mounted(record, &rootfs);
        if result.is_err() {
            self.release(record, true);
        }
        result
    }

    fn prepare_mounted(
        &self,
        record: &ContainerRecord,
        rootfs: &Path,
    ) -> Result<Endpoints, ApiError> {
        let id = &record.id;
        let image_config = record
            .image_config
            .clone()
            .ok_or_else(|| ApiError::internal("the container's image config is missing"))?;
        let process = runtime_spec::plan(&image_config, &overrides(&record.requested), rootfs)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let binds = self.mount_volumes(record, rootfs)?;
        let write = |path: &Path, text: String| {
            std::fs::write(path, text)
                .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))
        };
        if let Some(target) = joined_container(record.network_mode()) {
            let (netns, etc, hostname) = self.join_plan(id, target)?;
            // dockerd gives the joining container the target's hostname (and its files).
            let mut joined = record.clone();
            joined.config.hostname = hostname.clone();
            self.update(id, |r| r.config.hostname = hostname)?;
            let spec = container_spec::plan(&joined, &process, rootfs, &netns, &etc, &binds)?;
            self.write_bundle(id, &spec)?;
            return Ok((None, Vec::new()));
        }
        let etc = self.paths.etc(id);
        let hostname = container_spec::hostname(record);
        let mut extra_endpoints = Vec::new();
        let (netns, endpoint) = match record.network_mode() {
            "host" => {
                let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
                write(&etc.hosts, hosts)?;
                (NetnsPlan::Host, None)
            }
            "none" => {
                write(
                    &etc.hosts,
                    berth_network::etc_files::hosts(&hostname, None, &[]),
                )?;
                (NetnsPlan::New, None)
            }
            mode => {
                let user: Option<UserNetwork> =
                    if mode == "bridge" {
                        None
                    } else {
                        Some(self.networks.find(mode).ok_or_else(|| {
                            ApiError::not_found(format!("network {mode} not found"))
                        })?)
                    };
                let net = match &user {
                    Some(u) => self.networks.bridge(u)?,
                    None => self.network()?,
                };
                let path = self.paths.netns(id);
                berth_network::netns::create_netns(&path).map_err(|e| {
                    ApiError::internal(format!("cannot create the network namespace: {e}"))
                })?;
                let exposed = exposed_ports(&record.config);
                let specs = port_specs(&record.host_config, &exposed)?;
                let ep = net
                    .connect(&ConnectRequest::primary(id, &path, &specs))
                    .map_err(|e| {
                        let msg = e.to_string();
                        if msg.contains("already in use") || msg.contains("already allocated") {
                            ApiError::internal(format!(
                                "driver failed programming external connectivity on endpoint {} ({id}): {msg}",
                                record.name
                            ))
                        } else {
                            ApiError::internal(format!("cannot connect to the bridge network: {msg}"))
                        }
                    })?;
                let endpoint = endpoint_record(user.as_ref(), &ep, "eth0", record.aliases.clone());
                for (i, extra) in record.extra_networks.iter().enumerate() {
                    let ifname = format!("eth{}", i + 1);
                    let (user, net) = if extra.network_id.is_empty() {
                        (None, self.network()?)
                    } else {
                        let u = self.networks.find(&extra.network_id).ok_or_else(|| {
                            ApiError::not_found(format!("network {} not found", extra.network_name))
                        })?;
                        let net = self.networks.bridge(&u)?;
                        (Some(u), net)
                    };
                    let ep = net
                        .connect(&ConnectRequest::secondary(id, &path, &ifname))
                        .map_err(|e| {
                            ApiError::internal(format!(
                                "cannot connect to network {}: {e}",
                                extra.network_name
                            ))
                        })?;
                    extra_endpoints.push(endpoint_record(
                        user.as_ref(),
                        &ep,
                        &ifname,
                        extra.aliases.clone(),
                    ));
                }
                write(
                    &etc.hosts,
                    berth_network::etc_files::hosts(&hostname, Some(ep.ip), &[]),
                )?;
                (NetnsPlan::Path(path), Some(endpoint))
            }
        };
        write(
            &etc.hostname,
            berth_network::etc_files::hostname_file(&hostname),
        )?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        write(
            &etc.resolv_conf,
            berth_network::etc_files::resolv_conf(&host_resolv),
        )?;
        let spec = container_spec::plan(record, &process, rootfs, &netns, &etc, &binds)?;
        self.write_bundle(id, &spec)?;
        Ok((endpoint, extra_endpoints))
    }

    fn write_bundle(&self, id: &str, spec: &serde_json::Value) -> Result<(), ApiError> {
        let bundle = self.paths.bundle(id);
        std::fs::create_dir_all(&bundle)
            .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", bundle.display())))?;
        let json = serde_json::to_vec_pretty(spec)
            .map_err(|e| ApiError::internal(format!("cannot encode config.json: {e}")))?;
        let path = bundle.join("config.json");
        std::fs::write(&path, json)
            .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))
    }

    /// `--network container:<target>`: the target's network namespace, its /etc files and
    /// its hostname, as dockerd's `initializeNetworking` takes them. The target must run
    /// (dockerd's 409 otherwise). Its namespace file is used when it has one: a pid could
    /// be reused, the file cannot; a target without one (`none`, `host`) is joined through
    /// its init's `/proc/<pid>/ns/net`, as dockerd always does.
    fn join_plan(&self, id: &str, target: &str) -> Result<(NetnsPlan, EtcFiles, String), ApiError> {
        let t = self.find(target)?;
        if t.id == id {
            return Err(ApiError::bad_request("cannot join own network"));
        }
        if !t.state.status.is_running() || t.state.pid <= 0 {
            return Err(ApiError::conflict(format!(
                "cannot join network of a non running container: {target}"
            )));
        }
        let netns = match t.network_mode() {
            "host" => NetnsPlan::Host,
            _ => {
                let file = self.paths.netns(&t.id);
                if file.exists() {
                    NetnsPlan::Path(file)
                } else {
                    NetnsPlan::Path(PathBuf::from(format!("/proc/{}/ns/net", t.state.pid)))
                }
            }
        };
        Ok((netns, self.paths.etc(&t.id), container_spec::hostname(&t)))
    }

    /// Whether a running container shares `id`'s network namespace (`container:<id>`):
    /// the namespace then outlives `id`'s exit, and so would its veth and address.
    fn has_running_joiners(&self, id: &str) -> bool {
        lock(&self.records).values().any(|r| {
            r.id != id
                && joined_container(r.network_mode()) == Some(id)
                && r.state.status.is_running()
        })
    }

    /// Undoes `prepare_start`, driven by the record and what exists: network endpoint,
    /// namespace file, rootfs mount. Idempotent; errors are logged, since the container is
    /// gone either way and the next recovery retries.
    ///
    /// `after_run`: the container just ran (its exit, a failed start), so a bridge endpoint
    /// may exist even if the record does not show one yet. Otherwise (remove, recovery of a
    /// stopped container) only what the record or the namespace file shows is undone, so
    /// a second release costs nothing.
    fn release(&self, record: &ContainerRecord, after_run: bool) {
        let id = &record.id;
        self.reap_runtime(id, !after_run);
        let netns = self.paths.netns(id);
        let mode = record.network_mode();
        // A container that joined another's namespace has nothing of its own to undo.
        let bridged = joined_container(mode).is_none()
            && ((after_run && mode != "host" && mode != "none")
                || record.network.is_some()
                || netns.exists());
        if bridged {
            let network_id = match &record.network {
                Some(ep) => ep.network_id.clone(),
                None if mode == "bridge" => String::new(),
                None => self.networks.find(mode).map(|n| n.id).unwrap_or_default(),
            };
            // The namespace file goes next and the container's processes are gone, so the
            // kernel deletes the veth pairs with the namespace, unless a joined container
            // keeps the namespace alive: then the veths are deleted here (as dockerd
            // removes the endpoints) and the joiner is left with `lo`.
            let netns_goes = !self.has_running_joiners(id);
            if let Some(net) = self.bridge_to_release(&network_id) {
                let port_rules = record.network.as_ref().is_none_or(|n| !n.ports.is_empty());
                if let Err(e) = net.disconnect_with(id, port_rules, netns_goes) {
                    tracing::warn!(%id, %e, "cannot disconnect from the bridge");
                }
            }
            // The other networks: those it is on, and (after a run, which may have failed
            // before the record showed them) those it joins at start.
            let mut others: Vec<&str> = record
                .extra_endpoints
                .iter()
                .map(|e| e.network_id.as_str())
                .collect();
            if after_run {
                others.extend(record.extra_networks.iter().map(|x| x.network_id.as_str()));
            }
            others.sort_unstable();
            others.dedup();
            for key in others.into_iter().filter(|k| *k != network_id) {
                if let Some(net) = self.bridge_to_release(key) {
                    if let Err(e) = net.disconnect_with(id, false, netns_goes) {
                        tracing::warn!(%id, network = %key, %e, "cannot disconnect");
                    }
                }
            }
            if let Err(e) = berth_network::netns::remove_netns(&netns) {
                tracing::warn!(%id, %e, "cannot remove the network namespace");
            }
        }
        if let Err(e) = self.images.snapshotter.unmount(id) {
            tracing::warn!(%id, %e, "cannot unmount the rootfs");
        }
    }

    /// The network `key` (a user network's id; empty for the default bridge) to take a
    /// container off: the default bridge only if it was set up (a release never sets it
    /// up), a user network's if the network still exists.
    fn bridge_to_release(&self, key: &str) -> Option<Arc<BridgeNetwork>> {
        if key.is_empty() {
            lock(&self.network).clone()
        } else {
            self.networks
                .find(key)
                .and_then(|n| self.networks.bridge(&n).ok())
        }
    }

    /// What a shim normally cleans up, when the shim is gone or stuck: a shim killed by
    /// SIGKILL leaves the container's processes, cgroups and runtime state, and a daemon
    /// killed during `start` leaves a parked container with its shim. Kills a live shim
    /// of this container, then force-deletes the runtime's container (every process, the
    /// cgroups, the state dir). Costs two failed stats when the shim did its job.
    ///
    /// `scan`: look for the container's shims in /proc instead of trusting `shim.pid`
    /// (a daemon killed during `start` can leave a shim that has not written it yet).
    /// Used on remove and recovery, not on the exit path.
    fn reap_runtime(&self, id: &str, scan: bool) {
        let state_dir = self.paths.state_dir(id);
        let recorded: Option<i32> = std::fs::read_to_string(state_dir.join("shim.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        let ours = |pid: i32| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline);
            text.contains("berth-shim") && text.contains(id)
        };
        let candidates = || -> Vec<i32> {
            let mut pids: Vec<i32> = recorded.into_iter().collect();
            if scan {
                if let Ok(dir) = std::fs::read_dir("/proc") {
                    pids.extend(dir.flatten().filter_map(|e| {
                        e.file_name().to_str().and_then(|n| n.parse::<i32>().ok())
                    }));
                }
            }
            pids
        };
        // Until a pass finds none: a `berth-shim start` of a daemon killed during `start`
        // may fork the shim, and the shim clone the init, after one listing of /proc was
        // read; one of them missed goes on to claim the runtime state and make the
        // cgroups after they were cleaned. A killed process forks no more, and a dead
        // one (a zombie) has no command line, so this also waits for them to die.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let alive: Vec<i32> = candidates().into_iter().filter(|p| ours(*p)).collect();
            if alive.is_empty() || std::time::Instant::now() >= deadline {
                break;
            }
            for pid in alive {
                tracing::warn!(%id, pid, "killing a leftover shim");
                // SAFETY: kill(2) on a pid whose cmdline we just checked.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let root = berth_runtime::state::StateRoot::new(self.paths.runtime_root());
        let dir = self.paths.runtime_root().join(id);
        if !dir.exists() {
            return;
        }
        match berth_runtime::lifecycle::delete(&root, id, true) {
            Ok(()) if !dir.exists() => {
                tracing::info!(%id, "removed a container the shim left behind");
                return;
            }
            Ok(()) => {}
            Err(e) => tracing::warn!(%id, %e, "cannot delete the container the shim left"),
        }
        // Killed between claiming the id and saving its state: with no state.json,
        // `delete --force` has nothing to drive it and succeeds (as runc's does) without
        // touching the half-made dir (its start.sock) or the cgroups already made. Empty
        // those (cgroupsPath /berth/<id>, see container_spec) and drop the dir.
        tracing::warn!(%id, "runtime state incomplete; removing by hand");
        remove_cgroups(id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(%id, %e, "cannot remove the runtime state");
        }
    }

    /// A start that failed: the container is exited with `code` and the message, as
    /// Docker records it (127 for a missing command, 126 for one that cannot run).
    async fn fail_start(self: &Arc<Self>, id: &str, msg: &str, code: i64) {
        let network_ids = self.network_ids_of(id);
        let this = self.clone();
        let id2 = id.to_owned();
        let _ = blocking(move || {
            if let Ok(record) = this.find(&id2) {
                this.release(&record, true);
            }
            let _ = std::fs::remove_dir_all(this.paths.state_dir(&id2));
            Ok(())
        })
        .await;
        let _ = self.update(id, |r| {
            r.network = None;
            r.extra_endpoints.clear();
            r.state.status = if r.state.started_at == ZERO_TIME {
                Status::Created
            } else {
                Status::Exited
            };
            r.state.exit_code = code;
            r.state.error = msg.to_owned();
            r.state.pid = 0;
        });
        self.refresh_hosts(&network_ids, None);
        // Waiters (`docker run` waits for next-exit before it starts) learn of it as an
        // exit, as dockerd reports a failed start.
        self.live(id).exits.send_modify(|e| {
            e.seq += 1;
            e.code = code;
        });
    }

    /// The networks a container's endpoints are on (empty for the default bridge).
    fn network_ids_of(&self, id: &str) -> Vec<String> {
        lock(&self.records)
            .get(id)
            .map(|r| r.endpoints().map(|n| n.network_id.clone()).collect())
            .unwrap_or_default()
    }

    fn spawn_monitor(self: &Arc<Self>, id: String, live: Arc<Live>) {
        let this = self.clone();
        tokio::spawn(async move {
            let shim = Shim::new(&this.paths.state_dir(&id));
            let code = match shim.wait().await {
                Ok(code) => Ok(code),
                Err(e) => Err({
                    tracing::warn!(%id, %e, "lost the container's shim");
                    match shim_client::recorded_exit(&this.paths.state_dir(&id)) {
                        Some((c, _)) => (c, None),
                        None => (
                            137,
                            Some(
                                "the container's shim died; its exit status is unknown".to_owned(),
                            ),
                        ),
                    }
                }),
            };
            let (code, error) = match code {
                Ok(code) => (code, None),
                Err(lost) => lost,
            };
            this.on_exit(&id, &live, code, error).await;
        });
    }

    /// The container exited: free its resources, record the exit, tell the waiters, then
    /// apply `--rm` or the restart policy.
    async fn on_exit(
        self: &Arc<Self>,
        id: &str,
        live: &Arc<Live>,
        code: i64,
        error: Option<String>,
    ) {
        let shim = Shim::new(&self.paths.state_dir(id));
        let _ = shim.delete().await;
        let network_ids = self.network_ids_of(id);
        let this = self.clone();
        let id2 = id.to_owned();
        // The networks `release` took the container off, as its record showed them then.
        let released: Vec<String> = blocking(move || {
            let mut seen = Vec::new();
            if let Ok(record) = this.find(&id2) {
                seen.extend(record.endpoints().map(|e| e.network_id.clone()));
                seen.extend(record.extra_networks.iter().map(|x| x.network_id.clone()));
                this.release(&record, true);
            }
            let _ = std::fs::remove_dir_all(this.paths.state_dir(&id2));
            Ok(seen)
        })
        .await
        .unwrap_or_default();
        // A `network connect` (which does not wait for the exit) may have recorded an
        // endpoint after `release` read the record: that one is taken down below, or its
        // address would stay allocated.
        let mut late: Vec<(String, bool)> = Vec::new();
        let Ok(record) = self.update(id, |r| {
            late = r
                .endpoints()
                .filter(|e| !released.contains(&e.network_id))
                .map(|e| (e.network_id.clone(), !e.ports.is_empty()))
                .collect();
            r.state.status = Status::Exited;
            r.state.exit_code = code;
            r.state.pid = 0;
            r.state.finished_at = clock::now_rfc3339();
            r.network = None;
            r.extra_endpoints.clear();
            if let Some(e) = &error {
                r.state.error = e.clone();
            }
        }) else {
            return;
        };
        for (key, port_rules) in late {
            self.drop_endpoint(id, &key, port_rules).await;
        }
        self.refresh_hosts(&network_ids, None);
        self.event("die", &record, &[("exitCode", code.to_string())]);
        self.volume_events("unmount", &record);
        live.exits.send_modify(|e| {
            e.seq += 1;
            e.code = code;
        });
        if record.host_config.auto_remove {
            if let Err(e) = self.remove(id, true).await {
                tracing::warn!(%id, %e.message, "cannot auto-remove the container");
            }
            return;
        }
        if restart_wanted(&record, code) {
            let this = self.clone();
            let id = id.to_owned();
            let live = live.clone();
            let delay = Duration::from_millis(100u64 << record.restart_count.clamp(0, 9) as u64);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _op = live.op.lock().await;
                let Ok(current) = this.find(&id) else { return };
                if current.state.status != Status::Exited
                    || !restart_wanted(&current, current.state.exit_code)
                {
                    return;
                }
                let _ = this.update(&id, |r| r.restart_count += 1);
                if let Err(e) = this.start_locked(&id, &live, true).await {
                    tracing::warn!(%id, %e.message, "restart failed");
                }
            });
        }
    }

    // ---- stop / kill / wait ----

    pub async fn kill(self: &Arc<Self>, name: &str, signal: Option<&str>) -> Result<(), ApiError> {
        let record = self.find(name)?;
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(s)
                .ok_or_else(|| ApiError::bad_request(format!("Invalid signal: {s}")))?,
            None => libc::SIGKILL,
        };
        if !record.state.status.is_running() {
            return Err(ApiError::conflict(format!(
                "Cannot kill container: {name}: Container {} is not running",
                record.id
            )));
        }
        if sig == libc::SIGKILL {
            self.update(&record.id, |r| r.state.stopped_by_user = true)?;
        }
        Shim::new(&self.paths.state_dir(&record.id))
            .kill(sig, false)
            .await
            .map_err(|e| ApiError::internal(format!("Cannot kill container: {name}: {e}")))?;
        self.thaw_after_signal(&record.id, sig).await;
        self.event("kill", &record, &[("signal", sig.to_string())]);
        Ok(())
    }

    /// `stop`: the stop signal, then SIGKILL after `timeout` seconds (`-1` waits forever).
    /// `Ok(false)` when it was not running (the route answers 304).
    pub async fn stop(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
    ) -> Result<bool, ApiError> {
        let record = self.find(name)?;
        let live = self.live(&record.id);
        let _op = live.op.lock().await;
        self.stop_locked(&record.id, &live, timeout).await
    }

    async fn stop_locked(
        self: &Arc<Self>,
        id: &str,
        live: &Arc<Live>,
        timeout: Option<i64>,
    ) -> Result<bool, ApiError> {
        let record = self.update(id, |r| r.state.stopped_by_user = true)?;
        if !record.state.status.is_running() {
            return Ok(false);
        }
        let timeout = timeout.or(record.config.stop_timeout).unwrap_or(10);
        let signal = stop_signal(&record);
        let mut exits = live.exits.subscribe();
        let before = exits.borrow_and_update().seq;
        let shim = Shim::new(&self.paths.state_dir(id));
        let exited = |exits: &mut watch::Receiver<ExitSeen>| {
            let mut exits = exits.clone();
            async move { exits.wait_for(|e| e.seq > before).await.map(|_| ()) }
        };
        if let Err(e) = shim.kill(signal, false).await {
            tracing::debug!(%id, %e, "stop signal not delivered");
        }
        self.thaw_after_signal(id, signal).await;
        let graceful = if timeout < 0 {
            exited(&mut exits).await.is_ok()
        } else {
            tokio::time::timeout(Duration::from_secs(timeout as u64), exited(&mut exits))
                .await
                .is_ok()
        };
        if !graceful {
            let _ = shim.kill(libc::SIGKILL, true).await;
            self.thaw_after_signal(id, libc::SIGKILL).await;
            tokio::time::timeout(KILL_GRACE, exited(&mut exits))
                .await
                .map_err(|_| {
                    ApiError::internal(format!("container {id} did not exit after SIGKILL"))
                })?
                .map_err(|_| ApiError::internal("exit notification lost"))?;
        }
        if let Ok(r) = self.find(id) {
            self.event("stop", &r, &[]);
        }
        Ok(true)
    }

    pub async fn restart(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
    ) -> Result<(), ApiError> {
        let record = self.find(name)?;
        let live = self.live(&record.id);
        let _op = live.op.lock().await;
        self.stop_locked(&record.id, &live, timeout).await?;
        self.start_locked(&record.id, &live, false).await?;
        if let Ok(r) = self.find(&record.id) {
            self.event("restart", &r, &[]);
        }
        Ok(())
    }

    /// Resolves `wait`'s condition now (the response headers go out at once) and returns
    /// a future for the exit code.
    pub fn wait(
        self: &Arc<Self>,
        name: &str,
        condition: WaitCondition,
    ) -> Result<impl std::future::Future<Output = Result<i64, String>>, ApiError> {
        let record = self.find(name)?;
        let live = self.live(&record.id);
        let mut exits = live.exits.subscribe();
        let mut removed = live.removed.subscribe();
        let before = exits.borrow_and_update().seq;
        let this = self.clone();
        let id = record.id.clone();
        Ok(async move {
            match condition {
                WaitCondition::NotRunning
                    if !record.state.status.is_running()
                        && record.state.status != Status::Restarting =>
                {
                    Ok(record.state.exit_code)
                }
                WaitCondition::NotRunning | WaitCondition::NextExit => exits
                    .wait_for(|e| e.seq > before)
                    .await
                    .map(|e| e.code)
                    .map_err(|_| "the container went away".to_owned()),
                WaitCondition::Removed => {
                    let code = {
                        let exit = exits.wait_for(|e| e.seq > before);
                        let gone = removed.wait_for(|r| *r);
                        tokio::select! {
                            e = exit => e.map(|e| e.code).ok(),
                            _ = gone => None,
                        }
                    };
                    let _ = removed.wait_for(|r| *r).await;
                    Ok(code.unwrap_or_else(|| {
                        this.find(&id)
                            .map(|r| r.state.exit_code)
                            .unwrap_or(record.state.exit_code)
                    }))
                }
            }
        })
    }

    // ---- attach / resize ----

    /// Where an attach for `name` goes: the running shim, or a promise of one at start.
    pub fn attach_target(&self, name: &str) -> Result<(ContainerRecord, AttachTarget), ApiError> {
        let record = self.find(name)?;
        let state_dir = self.paths.state_dir(&record.id);
        if record.state.status.is_running() {
            return Ok((record, AttachTarget::Now(Shim::new(&state_dir))));
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.live(&record.id).pending_attach).push(tx);
        Ok((record, AttachTarget::Later(rx, state_dir)))
    }

    pub async fn resize(&self, name: &str, rows: u16, cols: u16) -> Result<(), ApiError> {
        let record = self.find(name)?;
        if !record.state.status.is_running() {
            return Err(ApiError::conflict(format!(
                "Container {} is not running",
                record.id
            )));
        }
        Shim::new(&self.paths.state_dir(&record.id))
            .resize(rows, cols)
            .await
            .map_err(|e| ApiError::internal(format!("cannot resize the tty: {e}")))
    }

    // ---- remove ----

    pub async fn remove(self: &Arc<Self>, name: &str, force: bool) -> Result<(), ApiError> {
        self.remove_with_volumes(name, force, false).await
    }

    /// `rm` with `-v` (`volumes`): the container's anonymous volumes go with it, unless
    /// another container uses them too. An `--rm` container always takes them, as dockerd's
    /// auto-remove does; named volumes always stay.
    pub async fn remove_with_volumes(
        self: &Arc<Self>,
        name: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), ApiError> {
        let record = self.find(name)?;
        let live = self.live(&record.id);
        let _op = live.op.lock().await;
        let record = self.find(&record.id)?;
        if record.state.status.is_running() || record.state.status == Status::Restarting {
            if !force {
                return Err(ApiError::conflict(format!(
                    "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                    record.id
                )));
            }
            self.update(&record.id, |r| r.state.stopped_by_user = true)?;
            self.stop_locked(&record.id, &live, Some(0)).await?;
        }
        let record = self.update(&record.id, |r| r.state.status = Status::Removing)?;
        let this = self.clone();
        let id = record.id.clone();
        blocking(move || {
            this.release(&this.find(&id)?, false);
            this.images.snapshotter.remove(&id).map_err(|e| {
                ApiError::internal(format!("cannot remove the container's rootfs: {e}"))
            })?;
            for dir in [this.paths.container_dir(&id), this.paths.state_dir(&id)] {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(ApiError::internal(format!(
                            "cannot remove {}: {e}",
                            dir.display()
                        )))
                    }
                }
            }
            lock(&this.store)
                .delete_container(&id)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let removed = lock(&this.records).remove(&id);
            if let Some(r) = removed {
                let anonymous = if volumes || r.host_config.auto_remove {
                    anonymous_names(&r.mounts)
                } else {
                    Vec::new()
                };
                this.volumes.release(&id, &anonymous);
            }
            Ok(())
        })
        .await?;
        self.event("destroy", &record, &[]);
        live.removed.send_replace(true);
        lock(&self.live).remove(&record.id);
        Ok(())
    }

    /// Binds a running container's published ports again after a daemon restart, so no
    /// other program can take them (the firewall rules kept working meanwhile).
    fn hold_ports(&self, id: &str, endpoint: &NetworkEndpoint) {
        let mappings: Vec<port_spec::PortMapping> = endpoint
            .ports
            .iter()
            .filter_map(|p| {
                Some(port_spec::PortMapping {
                    host_ip: if p.host_ip.is_empty() {
                        None
                    } else {
                        Some(p.host_ip.parse().ok()?)
                    },
                    host_port: p.host_port,
                    container_port: p.container_port,
                    protocol: match p.protocol.as_str() {
                        "udp" => port_spec::Protocol::Udp,
                        _ => port_spec::Protocol::Tcp,
                    },
                })
            })
            .collect();
        let net = if endpoint.network_id.is_empty() {
            self.network()
        } else {
            self.networks
                .find(&endpoint.network_id)
                .ok_or_else(|| {
                    ApiError::not_found(format!("network {} not found", endpoint.network_id))
                })
                .and_then(|n| self.networks.bridge(&n))
        };
        match net {
            Ok(net) => {
                if let Err(e) = net.hold_ports(id, &mappings) {
                    tracing::warn!(%id, %e, "cannot hold the published ports again");
                }
            }
            Err(e) => tracing::warn!(%id, %e.message, "bridge network unavailable"),
        }
    }

    // ---- daemon start ----

    /// After a daemon (re)start: reconnect to the shims of running containers (their
    /// exits are then seen as usual), record the exits that happened meanwhile, and
    /// remove network and mount leftovers of containers that do not run.
    pub async fn recover(self: &Arc<Self>) {
        for record in self.list() {
            let id = record.id.clone();
            let live = self.live(&id);
            let was_running =
                record.state.status.is_running() || record.state.status == Status::Restarting;
            if !was_running {
                let this = self.clone();
                let r = record.clone();
                let _ = blocking(move || {
                    if r.state.status == Status::Removing {
                        return Ok(());
                    }
                    this.release(&r, false);
                    Ok(())
                })
                .await;
                if record.state.status == Status::Removing {
                    let _ = self.remove(&id, true).await;
                }
                continue;
            }
            let shim = Shim::new(&self.paths.state_dir(&id));
            match shim.state().await {
                Ok(state) if state.get("status").and_then(|s| s.as_str()) != Some("stopped") => {
                    tracing::info!(%id, "reconnected to a running container");
                    if let Some(endpoint) = &record.network {
                        self.hold_ports(&id, endpoint);
                    }
                    self.spawn_monitor(id, live);
                }
                Ok(state) => {
                    let code = state.get("exit_code").and_then(|c| c.as_i64()).unwrap_or(0);
                    self.on_exit(&id, &live, code, None).await;
                }
                Err(_) => {
                    let (code, error) = match shim_client::recorded_exit(&self.paths.state_dir(&id))
                    {
                        Some((code, _)) => (code, None),
                        None => (
                            137,
                            Some(
                                "the container's shim died; its exit status is unknown".to_owned(),
                            ),
                        ),
                    };
                    tracing::warn!(%id, code, "container exited while berthd was away");
                    self.on_exit(&id, &live, code, error).await;
                }
            }
        }
        // Snapshots with no container record: a daemon killed during create.
        let known_ids: std::collections::BTreeSet<String> =
            self.list().into_iter().map(|r| r.id).collect();
        let this = self.clone();
        let _ = blocking(move || {
            for snap in this.images.snapshotter.list().unwrap_or_default() {
                if !known_ids.contains(&snap) {
                    tracing::info!(id = %snap, "removing the snapshot of an unfinished create");
                    if let Err(e) = this.images.snapshotter.remove(&snap) {
                        tracing::warn!(id = %snap, %e, "cannot remove an orphan snapshot");
                    }
                }
            }
            Ok(())
        })
        .await;
        // Leftovers of containers that no longer exist, or of endpoints they no longer
        // have (a crash between steps): each network keeps the endpoints recorded on it,
        // and no network takes another's veth for an orphan.
        let mut on: HashMap<String, Vec<String>> = HashMap::new();
        for r in self.list() {
            for ep in r.endpoints() {
                on.entry(ep.network_id.clone())
                    .or_default()
                    .push(r.id.clone());
            }
        }
        let this = self.clone();
        let _ = blocking(move || {
            // Only a network that was set up before has leftovers; opening it otherwise
            // would create the bridge on a daemon that never ran a container.
            let recorded = this
                .network_config
                .state_dir
                .join(format!("{}.network.json", this.network_config.name));
            let live_veths: std::collections::HashSet<String> = on
                .iter()
                .flat_map(|(net, ids)| {
                    let name = if net.is_empty() {
                        this.network_config.name.clone()
                    } else {
                        crate::networks::bridge_network_name(net)
                    };
                    ids.iter().flat_map(move |id| {
                        // A veth of a berthd from before per-network names, too.
                        std::iter::once(berth_network::bridge_network::veth_name(id, &name))
                            .chain(berth_network::bridge_network::legacy_veth_name(id))
                    })
                })
                .collect();
            this.networks.recover(&on, &live_veths);
            if !recorded.exists() {
                return Ok(());
            }
            let ids: Vec<&str> = on
                .get("")
                .map(|ids| ids.iter().map(String::as_str).collect())
                .unwrap_or_default();
            if let Ok(net) = this.network() {
                match net.recover(&ids, &live_veths) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(cleaned = n, "removed network leftovers"),
                    Err(e) => tracing::warn!(%e, "network recovery failed"),
                }
            }
            Ok(())
        })
        .await;
    }
}

/// What a start sets up: the first network's endpoint, and those of the others.
type Endpoints = (Option<NetworkEndpoint>, Vec<NetworkEndpoint>);

/// A network's endpoint as the record keeps it.
fn endpoint_record(
    user: Option<&UserNetwork>,
    ep: &berth_network::bridge_network::Endpoint,
    ifname: &str,
    aliases: Vec<String>,
) -> NetworkEndpoint {
    NetworkEndpoint {
        network_id: user.map(|u| u.id.clone()).unwrap_or_default(),
        network_name: user.map(|u| u.name.clone()).unwrap_or_default(),
        ip: ep.ip.to_string(),
        prefix_len: ep.prefix_len,
        gateway: ep.gateway.to_string(),
        mac: ep.mac.clone(),
        ports: ep
            .ports
            .iter()
            .map(|m| PublishedPort {
                host_ip: m.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                host_port: m.host_port,
                container_port: m.container_port,
                protocol: m.protocol.as_str().to_owned(),
            })
            .collect(),
        ifname: ifname.to_owned(),
        aliases,
    }
}

/// The interface for one more network: `eth<N>` after the highest in use, as Docker numbers
/// them in connect order.
fn next_ifname(used: &[String]) -> String {
    let next = used
        .iter()
        .filter_map(|n| n.strip_prefix("eth")?.parse::<u32>().ok())
        .max()
        .map_or(0, |n| n + 1);
    format!("eth{next}")
}

/// A container's /etc/hosts: its own name on its first address, and the containers it
/// shares a user network with (by name, short id and their aliases on that network), at
/// their address on that network. `all`: the records with endpoints.
fn hosts_text(record: &ContainerRecord, all: &[ContainerRecord]) -> String {
    let own_ip = record.endpoints().find_map(|e| e.ip.parse().ok());
    let mut extra = Vec::new();
    for ep in record.endpoints().filter(|e| !e.network_id.is_empty()) {
        for other in all.iter().filter(|o| o.id != record.id) {
            let Some(oep) = other.endpoint_on(&ep.network_id) else {
                continue;
            };
            let Ok(ip) = oep.ip.parse::<std::net::Ipv4Addr>() else {
                continue;
            };
            let addr = std::net::IpAddr::V4(ip);
            extra.push((other.name.clone(), addr));
            extra.push((other.id[..12.min(other.id.len())].to_owned(), addr));
            // Endpoints recorded before they carried their aliases: the first network's
            // are the record's.
            let primary = other
                .network
                .as_ref()
                .is_some_and(|p| p.network_id == oep.network_id);
            let aliases = if oep.aliases.is_empty() && primary {
                &other.aliases
            } else {
                &oep.aliases
            };
            extra.extend(aliases.iter().map(|a| (a.clone(), addr)));
        }
    }
    berth_network::etc_files::hosts(&container_spec::hostname(record), own_ip, &extra)
}

/// Kills every process in the container's cgroups and removes them: on v1 one per
/// hierarchy under `/sys/fs/cgroup/<controller>/berth/<id>`, on v2 `/sys/fs/cgroup/berth/<id>`.
fn remove_cgroups(id: &str) {
    let mut dirs = vec![Path::new("/sys/fs/cgroup").join("berth").join(id)];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            dirs.push(e.path().join("berth").join(id));
        }
    }
    dirs.retain(|d| d.is_dir());
    for _ in 0..50 {
        for d in &dirs {
            for pid in std::fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
            {
                // SAFETY: kill(2) of a process in the container's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        dirs.retain(|d| std::fs::remove_dir(d).is_err() && d.is_dir());
        if dirs.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!(%id, left = ?dirs, "cannot remove the container's cgroups");
}

/// `--network-alias` names: those of the endpoint config for the container's network (the
/// docker CLI keys it by the name given to `--network`). Only user-defined networks take
/// them, as with Docker.
fn network_aliases(
    hc: &berth_api::container::HostConfig,
    nc: &berth_api::container::NetworkingConfig,
) -> Result<Vec<String>, ApiError> {
    let mut aliases: Vec<String> = nc
        .endpoints_config
        .get(hc.network_mode.as_str())
        .map(|ep| ep.aliases.clone())
        .unwrap_or_default();
    aliases.retain(|a| !a.is_empty());
    if aliases.is_empty() {
        return Ok(aliases);
    }
    if matches!(
        hc.network_mode.as_str(),
        "" | "default" | "bridge" | "host" | "none"
    ) {
        return Err(ApiError::bad_request(
            "network-scoped alias is supported only for containers in user defined networks",
        ));
    }
    if let Some(bad) = aliases.iter().find(|a| {
        !a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }) {
        return Err(ApiError::bad_request(format!(
            "invalid network alias {bad:?}"
        )));
    }
    Ok(aliases)
}

/// `-e`, `--entrypoint`, the command, `-w` and `-u` as the image crate takes them.
fn overrides(requested: &ContainerConfig) -> Overrides {
    Overrides {
        cmd: requested.cmd.clone().filter(|c| !c.is_empty()),
        entrypoint: requested.entrypoint.clone(),
        env: requested.env.clone(),
        workdir: Some(requested.working_dir.clone()).filter(|w| !w.is_empty()),
        user: Some(requested.user.clone()).filter(|u| !u.is_empty()),
    }
}

/// The Config inspect shows: the request over the image's defaults.
fn merged_config(
    requested: &ContainerConfig,
    image: &berth_image::manifest::ContainerConfig,
    _full: &berth_image::manifest::ImageConfig,
) -> ContainerConfig {
    let mut c = requested.clone();
    let entrypoint_given = requested.entrypoint.is_some();
    if c.entrypoint.is_none() {
        c.entrypoint = image.entrypoint.clone();
    }
    if c.cmd.as_ref().is_none_or(Vec::is_empty) && !entrypoint_given {
        c.cmd = image.cmd.clone();
    }
    c.env = runtime_spec::merge_env(image.env.as_deref().unwrap_or_default(), &requested.env);
    if c.working_dir.is_empty() {
        c.working_dir = image.working_dir.clone().unwrap_or_default();
    }
    if c.user.is_empty() {
        c.user = image.user.clone().unwrap_or_default();
    }
    if let Some(ports) = &image.exposed_ports {
        let set = c.exposed_ports.get_or_insert_with(Default::default);
        for port in ports.keys() {
            set.entry(port.clone()).or_default();
        }
    }
    if let Some(vols) = &image.volumes {
        let set = c.volumes.get_or_insert_with(Default::default);
        for v in vols.keys() {
            set.entry(v.clone()).or_default();
        }
    }
    let mut labels = image.labels.clone().unwrap_or_default();
    labels.extend(requested.labels.clone());
    c.labels = labels;
    if c.stop_signal.is_empty() {
        c.stop_signal = image.stop_signal.clone().unwrap_or_default();
    }
    c
}

fn validate_host_config(
    hc: &berth_api::container::HostConfig,
    known_network: impl Fn(&str) -> bool,
) -> Result<(), ApiError> {
    match hc.network_mode.as_str() {
        "" | "default" | "bridge" | "host" | "none" => {}
        other if other.starts_with("container:") => {
            if joined_container(other).is_none_or(str::is_empty) {
                return Err(ApiError::bad_request(
                    "invalid network mode: invalid container format container:<name|id>",
                ));
            }
        }
        other if known_network(other) => {}
        other => return Err(ApiError::not_found(format!("network {other} not found"))),
    }
    let policy = hc.restart_policy.name.as_str();
    match policy {
        "" | "no" | "always" | "unless-stopped" => {}
        "on-failure" => {
            if hc.restart_policy.maximum_retry_count < 0 {
                return Err(ApiError::bad_request(
                    "invalid restart policy: maximum retry count cannot be negative",
                ));
            }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
            )))
        }
    }
    if hc.auto_remove && !matches!(policy, "" | "no") {
        return Err(ApiError::bad_request(
            "can't create 'AutoRemove' container with restart policy",
        ));
    }
    Ok(())
}

/// The container whose network namespace `mode` joins (`container:<name|id>`).
pub fn joined_container(mode: &str) -> Option<&str> {
    mode.strip_prefix("container:")
}

/// What cannot go with `--network container:<x>`, checked at create with dockerd's wording
/// (runconfig's `validateNetContainerMode`): the network, its names and ports are the
/// other container's.
fn check_container_mode(
    config: &ContainerConfig,
    hc: &berth_api::container::HostConfig,
) -> Result<(), ApiError> {
    if joined_container(&hc.network_mode).is_none() {
        return Ok(());
    }
    let conflict = if !config.hostname.is_empty() {
        Some("conflicting options: hostname and the network mode")
    } else if !hc.extra_hosts.is_empty() {
        Some("conflicting options: custom host-to-IP mapping and the network mode")
    } else if !config.mac_address.is_empty() {
        Some("conflicting options: mac-address and the network mode")
    } else if !hc.port_bindings.is_empty() || hc.publish_all_ports {
        Some("conflicting options: port publishing and the container type network mode")
    } else if config.exposed_ports.as_ref().is_some_and(|p| !p.is_empty()) {
        Some("conflicting options: port exposing and the container type network mode")
    } else {
        None
    };
    conflict.map_or(Ok(()), |m| Err(ApiError::bad_request(m)))
}

/// Host paths of binds: `-v /host:/ctr` makes a missing directory, as Docker does;
/// `--mount type=bind` requires it to exist (Docker's rule for `--mount`).
fn check_host_sources(planned: &[PlannedMount]) -> Result<(), ApiError> {
    for m in planned {
        let Source::Host {
            path,
            create_missing,
        } = &m.source
        else {
            continue;
        };
        if path.exists() {
            continue;
        }
        if !create_missing {
            return Err(ApiError::bad_request(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                path.display()
            )));
        }
        std::fs::create_dir_all(path).map_err(|e| {
            ApiError::bad_request(format!("cannot create bind source {}: {e}", path.display()))
        })?;
    }
    Ok(())
}

/// Names of the volumes among `mounts`.
fn volume_names(mounts: &[MountRecord]) -> impl Iterator<Item = &str> {
    mounts
        .iter()
        .filter(|m| m.kind == MountKind::Volume)
        .map(|m| m.name.as_str())
}

/// Names of the anonymous volumes made for the container.
fn anonymous_names(mounts: &[MountRecord]) -> Vec<String> {
    mounts
        .iter()
        .filter(|m| m.kind == MountKind::Volume && m.anonymous)
        .map(|m| m.name.clone())
        .collect()
}

/// `ExposedPorts` keys as `(port, proto)`.
fn exposed_ports(config: &ContainerConfig) -> BTreeMap<String, ()> {
    config
        .exposed_ports
        .as_ref()
        .map(|p| p.keys().map(|k| (k.clone(), ())).collect())
        .unwrap_or_default()
}

/// `PortBindings` (and with `-P`, every exposed port not bound) as publish specs.
fn port_specs(
    hc: &berth_api::container::HostConfig,
    exposed: &BTreeMap<String, ()>,
) -> Result<Vec<PortSpec>, ApiError> {
    let mut specs = Vec::new();
    let split = |key: &str| -> (String, String) {
        match key.split_once('/') {
            Some((p, proto)) => (p.to_owned(), proto.to_owned()),
            None => (key.to_owned(), "tcp".to_owned()),
        }
    };
    for (key, bindings) in &hc.port_bindings {
        let (port, proto) = split(key);
        let bindings = bindings.clone().unwrap_or_default();
        let bindings = if bindings.is_empty() {
            vec![Default::default()]
        } else {
            bindings
        };
        for b in bindings {
            let ip = if b.host_ip.contains(':') {
                format!("[{}]", b.host_ip)
            } else {
                b.host_ip.clone()
            };
            let text = match (ip.is_empty(), b.host_port.is_empty()) {
                (true, true) => format!("{port}/{proto}"),
                (true, false) => format!("{}:{port}/{proto}", b.host_port),
                (false, _) => format!("{ip}:{}:{port}/{proto}", b.host_port),
            };
            specs.push(port_spec::parse(&text).map_err(|e| ApiError::bad_request(e.to_string()))?);
        }
    }
    if hc.publish_all_ports {
        for key in exposed.keys() {
            if hc.port_bindings.contains_key(key) {
                continue;
            }
            let (port, proto) = split(key);
            if proto == "sctp" {
                continue;
            }
            specs.push(
                port_spec::parse(&format!("{port}/{proto}"))
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            );
        }
    }
    Ok(specs)
}

/// Docker's exit codes for a command that cannot run: 127 not found, 126 not executable.
fn exec_failure_code(msg: &str) -> i64 {
    let lower = msg.to_ascii_lowercase();
    if lower.contains("no such file") || lower.contains("not found") {
        127
    } else if lower.contains("permission denied") || lower.contains("exec format") {
        126
    } else {
        128
    }
}

/// A start failure as dockerd reports it: 400 when the command cannot run (the CLI maps
/// it to 126/127), 500 otherwise.
fn start_error(msg: &str) -> ApiError {
    let status = match exec_failure_code(msg) {
        126 | 127 => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(
        status,
        format!("failed to create task for container: {msg}: unknown"),
    )
}

fn restart_wanted(record: &ContainerRecord, code: i64) -> bool {
    let p = &record.host_config.restart_policy;
    match p.name.as_str() {
        "always" => !record.state.stopped_by_user,
        "unless-stopped" => !record.state.stopped_by_user,
        "on-failure" => {
            code != 0
                && !record.state.stopped_by_user
                && (p.maximum_retry_count == 0 || record.restart_count < p.maximum_retry_count)
        }
        _ => false,
    }
}

/// The container's stop signal: Config.StopSignal, else SIGTERM.
fn stop_signal(record: &ContainerRecord) -> i32 {
    parse_signal(&record.config.stop_signal).unwrap_or(libc::SIGTERM)
}

/// `SIGTERM`, `TERM`, `term`, `15`, `SIGRTMIN+3`.
pub fn parse_signal(s: &str) -> Option<i32> {
    berth_runtime::signal::parse(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::container::{HostConfig, PortBinding, RestartPolicy};

    #[test]
    fn further_networks_get_the_next_interface() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(next_ifname(&[]), "eth0");
        assert_eq!(next_ifname(&names(&["eth0"])), "eth1");
        // After the highest, as Docker numbers in connect order: a gap is not reused.
        assert_eq!(next_ifname(&names(&["eth0", "eth2"])), "eth3");
        assert_eq!(next_ifname(&names(&["eth1"])), "eth2");
        assert_eq!(next_ifname(&names(&["lo", "eth0"])), "eth1");
    }

    #[test]
    fn port_bindings_become_specs() {
        let mut hc = HostConfig::default();
        hc.port_bindings.insert(
            "80/tcp".into(),
            Some(vec![PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: "8080".into(),
            }]),
        );
        hc.port_bindings.insert("53/udp".into(), None);
        let specs = port_specs(&hc, &BTreeMap::new()).expect("specs");
        assert_eq!(specs.len(), 2);
        hc.publish_all_ports = true;
        let exposed = BTreeMap::from([("80/tcp".into(), ()), ("9000/tcp".into(), ())]);
        assert_eq!(port_specs(&hc, &exposed).expect("specs").len(), 3);
        hc.port_bindings
            .insert("x/tcp".into(), Some(vec![PortBinding::default()]));
        assert!(port_specs(&hc, &exposed).is_err());
    }

    #[test]
    fn host_config_rules() {
        let mut hc = HostConfig::default();
        assert!(validate_host_config(&hc, |_| false).is_ok());
        hc.network_mode = "nope".into();
        assert_eq!(
            validate_host_config(&hc, |_| false)
                .expect_err("net")
                .status,
            StatusCode::NOT_FOUND
        );
        hc.network_mode = "bridge".into();
        hc.restart_policy = RestartPolicy {
            name: "sometimes".into(),
            maximum_retry_count: 0,
        };
        assert!(validate_host_config(&hc, |_| false).is_err());
        hc.restart_policy.name = "always".into();
        hc.auto_remove = true;
        assert!(validate_host_config(&hc, |_| false).is_err());
    }

    #[test]
    fn exit_codes_for_commands_that_cannot_run() {
        assert_eq!(
            exec_failure_code("exec /nope: No such file or directory"),
            127
        );
        assert_eq!(exec_failure_code("exec /etc: permission denied"), 126);
        assert_eq!(exec_failure_code("cgroup trouble"), 128);
        assert_eq!(
            start_error("x: no such file").status,
            StatusCode::BAD_REQUEST
        );
    }
}

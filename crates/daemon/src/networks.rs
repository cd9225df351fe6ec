//! User-defined bridge networks (`docker network create`): their definitions and, once
//! set up, their [`BridgeNetwork`]s.
//!
//! The definitions live in one JSON file, `<data root>/network/networks.json`, written to a
//! temporary file and renamed (a crash leaves the old file or the new one). They sit next
//! to what the network crate already keeps there for every bridge network (its subnet and
//! IPAM file, per network under `user/<id>/`), so that the host state of a network and its
//! definition are found, and removed, together; the daemon's own teardown and the tests'
//! cleanup read them without the metadata database.
//!
//! Each network has its own bridge, `br-<first 12 hex of its id>`, as Docker names them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_network::bridge_network::{BridgeNetwork, BridgeNetworkConfig};
use berth_network::ipam;
use hyper::StatusCode;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::container_names;
use crate::response::ApiError;

/// The networks every engine has, as Docker lists them.
pub const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNetwork {
    pub id: String,
    pub name: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub bridge: String,
    /// RFC 3339.
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    /// Ids of the predefined networks, made once per data root.
    #[serde(default)]
    predefined: BTreeMap<String, String>,
    #[serde(default)]
    networks: Vec<UserNetwork>,
    /// When the predefined networks were made (RFC 3339).
    #[serde(default)]
    created: String,
}

pub struct Networks {
    dir: PathBuf,
    file: Mutex<File>,
    open: Mutex<HashMap<String, Arc<BridgeNetwork>>>,
}

/// The [`BridgeNetwork`] name of a user network (it names the network's state files and,
/// with a container's id, its veths): the first 12 hex digits of the network's id.
pub fn bridge_network_name(network_id: &str) -> String {
    network_id.get(..12).unwrap_or(network_id).to_owned()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Docker's network name rule.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Networks {
    /// Loads `<dir>/networks.json` (`dir` is `<data root>/network`).
    pub fn load(dir: &Path) -> Result<Self, ApiError> {
        let path = dir.join("networks.json");
        let mut file: File = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::internal(format!("{} is corrupt: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => {
                return Err(ApiError::internal(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        let mut changed = false;
        if file.created.is_empty() {
            file.created = crate::clock::now_rfc3339();
            changed = true;
        }
        for name in PREDEFINED {
            if !file.predefined.contains_key(name) {
                file.predefined
                    .insert(name.to_owned(), container_names::new_id()?);
                changed = true;
            }
        }
        let this = Self {
            dir: dir.to_path_buf(),
            file: Mutex::new(file),
            open: Mutex::new(HashMap::new()),
        };
        if changed {
            this.save(&lock(&this.file))?;
        }
        Ok(this)
    }

    fn save(&self, file: &File) -> Result<(), ApiError> {
        let err = |e: std::io::Error| ApiError::internal(format!("cannot save networks: {e}"));
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let path = self.dir.join("networks.json");
        let tmp = self.dir.join("networks.json.tmp");
        let bytes = serde_json::to_vec_pretty(file)
            .map_err(|e| ApiError::internal(format!("cannot encode networks: {e}")))?;
        let written = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            // A full disk: the old file stays, and no temporary file next to it.
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(err)
    }

    /// The id of a predefined network.
    pub fn predefined_id(&self, name: &str) -> String {
        lock(&self.file)
            .predefined
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// When the predefined networks were made.
    pub fn predefined_created(&self) -> String {
        lock(&self.file).created.clone()
    }

    /// A predefined network's name by name, id or unique id prefix.
    pub fn find_predefined(&self, key: &str) -> Option<&'static str> {
        let file = lock(&self.file);
        PREDEFINED.into_iter().find(|name| {
            *name == key
                || file
                    .predefined
                    .get(*name)
                    .is_some_and(|id| id == key || (key.len() >= 3 && id.starts_with(key)))
        })
    }

    pub fn list(&self) -> Vec<UserNetwork> {
        lock(&self.file).networks.clone()
    }

    /// By full id, name, or unique id prefix, as Docker resolves.
    pub fn find(&self, key: &str) -> Option<UserNetwork> {
        let file = lock(&self.file);
        if let Some(n) = file.networks.iter().find(|n| n.id == key || n.name == key) {
            return Some(n.clone());
        }
        let mut matches = file.networks.iter().filter(|n| n.id.starts_with(key));
        match (matches.next(), matches.next()) {
            (Some(n), None) if !key.is_empty() => Some(n.clone()),
            _ => None,
        }
    }

    fn config(&self, net: &UserNetwork) -> BridgeNetworkConfig {
        BridgeNetworkConfig {
            name: bridge_network_name(&net.id),
            bridge: net.bridge.clone(),
            subnet: Some(net.subnet),
            state_dir: self.dir.join("user").join(&net.id),
        }
    }

    /// The network, set up (its bridge made if missing).
    pub fn bridge(&self, net: &UserNetwork) -> Result<Arc<BridgeNetwork>, ApiError> {
        let mut open = lock(&self.open);
        if let Some(b) = open.get(&net.id) {
            return Ok(b.clone());
        }
        let b =
            Arc::new(BridgeNetwork::open(self.config(net)).map_err(|e| {
                ApiError::internal(format!("cannot set up network {}: {e}", net.name))
            })?);
        open.insert(net.id.clone(), b.clone());
        Ok(b)
    }

    /// Creates a network and its bridge. `taken`: subnets of other networks (the default
    /// bridge's), besides the user networks and the host's routes.
    pub fn create(
        &self,
        name: &str,
        subnet: Option<Ipv4Net>,
        labels: BTreeMap<String, String>,
        taken: &[Ipv4Net],
    ) -> Result<UserNetwork, ApiError> {
        if !valid_name(name) {
            return Err(ApiError::bad_request(format!(
                "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let mut file = lock(&self.file);
        if PREDEFINED.contains(&name) || file.networks.iter().any(|n| n.name == name) {
            return Err(ApiError::conflict(format!(
                "network with name {name} already exists"
            )));
        }
        let mut used: Vec<(String, Ipv4Net)> = file
            .networks
            .iter()
            .map(|n| (format!("network {}", n.name), n.subnet))
            .collect();
        used.extend(taken.iter().map(|s| ("network bridge".to_owned(), *s)));
        let routes = ipam::host_routes().unwrap_or_default();
        let subnet = match subnet {
            Some(s) => {
                let s = s.trunc();
                // The IPAM keeps the network and broadcast addresses and the gateway out.
                if s.prefix_len() > 29 {
                    return Err(ApiError::bad_request(format!(
                        "invalid subnet {s}: a bridge network needs at least a /29"
                    )));
                }
                if let Some((who, other)) = used
                    .iter()
                    .find(|(_, other)| ipam::overlaps(s, *other))
                    .cloned()
                    .or_else(|| {
                        routes
                            .iter()
                            .filter(|r| r.prefix_len() > 0)
                            .find(|r| ipam::overlaps(s, **r))
                            .map(|r| ("a route of this host".to_owned(), *r))
                    })
                {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!(
                            "invalid pool request: Pool overlaps with other one on this address space: {s} overlaps {other} of {who}"
                        ),
                    ));
                }
                s
            }
            None => {
                let mut avoid = routes;
                avoid.extend(used.iter().map(|(_, s)| *s));
                ipam::pick_subnet(&avoid, ipam::default_candidates()).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::FORBIDDEN,
                        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
                    )
                })?
            }
        };
        let id = container_names::new_id()?;
        let net = UserNetwork {
            bridge: format!("br-{}", &id[..12]),
            gateway: ipam::gateway(subnet),
            id,
            name: name.to_owned(),
            subnet,
            created: crate::clock::now_rfc3339(),
            labels,
        };
        let bridge = BridgeNetwork::open(self.config(&net))
            .map_err(|e| ApiError::internal(format!("cannot set up network {name}: {e}")))?;
        file.networks.push(net.clone());
        if let Err(e) = self.save(&file) {
            file.networks.retain(|n| n.id != net.id);
            let _ = bridge.teardown_with(false);
            let _ = std::fs::remove_dir_all(self.dir.join("user").join(&net.id));
            return Err(e);
        }
        lock(&self.open).insert(net.id.clone(), Arc::new(bridge));
        Ok(net)
    }

    /// Removes a network: its bridge, rules and state. The caller checked that no running
    /// container is on it.
    pub fn remove(&self, net: &UserNetwork) -> Result<(), ApiError> {
        let mut file = lock(&self.file);
        let opened = lock(&self.open).remove(&net.id);
        let bridge = match opened {
            Some(b) => Arc::try_unwrap(b).map_err(|_| {
                ApiError::conflict(format!(
                    "error while removing network: network {} id {} is in use",
                    net.name, net.id
                ))
            })?,
            None => BridgeNetwork::open(self.config(net)).map_err(|e| {
                ApiError::internal(format!("cannot open network {}: {e}", net.name))
            })?,
        };
        bridge.teardown_with(false).map_err(|e| {
            ApiError::internal(format!("error while removing network {}: {e}", net.name))
        })?;
        let _ = std::fs::remove_dir_all(self.dir.join("user").join(&net.id));
        // Fails while other networks have their state there; the last one takes it.
        let _ = std::fs::remove_dir(self.dir.join("user"));
        file.networks.retain(|n| n.id != net.id);
        self.save(&file)
    }

    /// Removes every user network's bridge, rules and state files (`--teardown-network`);
    /// the definitions stay. Returns the first error.
    pub fn teardown_bridges(&self) -> Result<(), String> {
        let mut first = None;
        for net in self.list() {
            if !self.dir.join("user").join(&net.id).exists() {
                continue;
            }
            let r = BridgeNetwork::open(self.config(&net))
                .and_then(|b| b.teardown_with(false))
                .map_err(|e| format!("network {}: {e}", net.name));
            if let Err(e) = r {
                tracing::warn!("{e}");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// At daemon start: sets up every user network's bridge (as dockerd does, so that their
    /// routes keep the default bridge's subnet pick away from them) and cleans the leftovers
    /// of containers not on it: `live` maps a network's id to the containers with an
    /// endpoint on it, `live_veths` are the host veths of all those endpoints.
    pub fn recover(&self, live: &HashMap<String, Vec<String>>, live_veths: &HashSet<String>) {
        for net in self.list() {
            let ids: Vec<&str> = live
                .get(&net.id)
                .map(|ids| ids.iter().map(String::as_str).collect())
                .unwrap_or_default();
            match self.bridge(&net) {
                Ok(b) => match b.recover(&ids, live_veths) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(cleaned = n, network = %net.name, "removed network leftovers")
                    }
                    Err(e) => tracing::warn!(%e, network = %net.name, "network recovery failed"),
                },
                Err(e) => tracing::warn!(%e.message, network = %net.name, "cannot set up network"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("appnet"));
        assert!(valid_name("a.b-c_d"));
        assert!(!valid_name("-x"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
    }

    #[test]
    fn find_by_name_id_and_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nets = Networks::load(dir.path()).expect("load");
        let net = UserNetwork {
            id: "ab".repeat(32),
            name: "appnet".into(),
            subnet: "10.1.2.0/24".parse().expect("subnet"),
            gateway: Ipv4Addr::new(10, 1, 2, 1),
            bridge: "br-abababababab".into(),
            created: String::new(),
            labels: BTreeMap::new(),
        };
        lock(&nets.file).networks.push(net.clone());
        assert_eq!(nets.find("appnet"), Some(net.clone()));
        assert_eq!(nets.find("abab"), Some(net.clone()));
        assert_eq!(nets.find("nope"), None);
        assert_eq!(nets.find_predefined("bridge"), Some("bridge"));
        let id = nets.predefined_id("host");
        assert_eq!(nets.find_predefined(&id), Some("host"));
        // The ids stay across loads.
        drop(nets);
        let again = Networks::load(dir.path()).expect("load");
        assert_eq!(again.predefined_id("host"), id);
    }
}

//! What berthd records about a container: the request as the client gave it, what the
//! daemon decided (image, command, network), and the run state. Stored as one JSON
//! document per container in the metadata database, so a restart finds everything that
//! teardown needs (the network endpoint, the snapshot) in the record alone.

use berth_api::container::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};

/// Go's zero `time.Time`, which Docker prints for "never".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
        }
    }

    /// Has a live process (and a shim).
    pub fn is_running(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub status: Status,
    pub pid: i64,
    pub exit_code: i64,
    #[serde(default)]
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    /// Stopped by a user (`stop`, `kill`): `unless-stopped` and `always` do not restart it
    /// until it is started again.
    #[serde(default)]
    pub stopped_by_user: bool,
}

impl Default for RunState {
    fn default() -> Self {
        Self {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: ZERO_TIME.to_owned(),
            finished_at: ZERO_TIME.to_owned(),
            stopped_by_user: false,
        }
    }
}

/// One published port as set up on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// Empty: every address.
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// The container's end of one of its bridge networks, while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkEndpoint {
    /// The user-defined network's id; empty for the default bridge.
    #[serde(default)]
    pub network_id: String,
    /// The user-defined network's name; empty for the default bridge.
    #[serde(default)]
    pub network_name: String,
    pub ip: String,
    pub prefix_len: u8,
    pub gateway: String,
    pub mac: String,
    pub ports: Vec<PublishedPort>,
    /// The interface inside the container; empty (records from before a container could
    /// be on several networks) is `eth0`.
    #[serde(default)]
    pub ifname: String,
    /// `--alias` names on this network, for a network joined by `network connect`; the
    /// first network's are the record's `aliases`.
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl NetworkEndpoint {
    /// Docker's `EndpointID`: one per (container, network). The default bridge's is the
    /// container's id, as berth showed it before; another network's mixes in its id, so
    /// that every endpoint of a container has its own, stable one.
    pub fn endpoint_id(&self, container_id: &str) -> String {
        if self.network_id.is_empty() {
            return container_id.to_owned();
        }
        container_id
            .chars()
            .zip(self.network_id.chars().chain(std::iter::repeat('0')))
            .map(|(c, n)| {
                let sum = c.to_digit(16).unwrap_or(0) + n.to_digit(16).unwrap_or(0) + 1;
                char::from_digit(sum % 16, 16).unwrap_or('0')
            })
            .collect()
    }

    pub fn ifname(&self) -> &str {
        if self.ifname.is_empty() {
            "eth0"
        } else {
            &self.ifname
        }
    }
}

/// A network a container joins besides the first one (its `NetworkMode`), added by
/// `network connect`; joined at every start, in connect order (eth1, eth2, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraNetwork {
    /// The user-defined network's id; empty for the default bridge.
    #[serde(default)]
    pub network_id: String,
    /// The network's name (`bridge` for the default one).
    pub network_name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    /// The image as the user named it (what `ps` shows).
    pub image_name: String,
    /// `sha256:<hex>`.
    pub image_id: String,
    /// The image's config, kept so the container starts even after `rmi -f`.
    #[serde(default)]
    pub image_config: Option<berth_image::manifest::ImageConfig>,
    /// What the client asked for (Cmd, Entrypoint, Env, WorkingDir, User), applied over the
    /// image at each start.
    #[serde(default)]
    pub requested: ContainerConfig,
    /// The request's Config with the image's defaults merged in, as Docker shows it.
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// The command that runs: `Path` and `Args` of inspect.
    pub path: String,
    pub args: Vec<String>,
    pub state: RunState,
    #[serde(default)]
    pub network: Option<NetworkEndpoint>,
    #[serde(default)]
    pub restart_count: i64,
    /// Binds, volumes and `--mount` tmpfs as decided at create; the volumes named here are
    /// the ones the container holds a reference to until it is removed.
    #[serde(default)]
    pub mounts: Vec<crate::container_mounts::MountRecord>,
    /// `--network-alias`: more names the container has on its user-defined network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Networks joined besides the first, at each start.
    #[serde(default)]
    pub extra_networks: Vec<ExtraNetwork>,
    /// The endpoints on `extra_networks` (and on networks connected while it ran), while
    /// it runs.
    #[serde(default)]
    pub extra_endpoints: Vec<NetworkEndpoint>,
    /// Disconnected from every network: its mode shows as `none` and it starts with `lo`
    /// only, but unlike a container created with `--network none` it may be connected
    /// again (Docker's empty `Networks`).
    #[serde(default)]
    pub detached: bool,
}

impl ContainerRecord {
    /// The network mode after Docker's defaulting: `default` and empty mean `bridge`.
    pub fn network_mode(&self) -> &str {
        match self.host_config.network_mode.as_str() {
            "" | "default" => "bridge",
            other => other,
        }
    }

    /// Every endpoint it has while it runs: the first network's, then the others'.
    pub fn endpoints(&self) -> impl Iterator<Item = &NetworkEndpoint> {
        self.network.iter().chain(&self.extra_endpoints)
    }

    /// Its endpoint on a network (a user network's id; empty for the default bridge).
    pub fn endpoint_on(&self, network_id: &str) -> Option<&NetworkEndpoint> {
        self.endpoints().find(|e| e.network_id == network_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record written before containers could be on several networks still loads, its
    /// one endpoint the first network's, on eth0.
    #[test]
    fn single_network_records_still_load() {
        let old = serde_json::json!({
            "network_id": "", "network_name": "", "ip": "172.17.0.2", "prefix_len": 16,
            "gateway": "172.17.0.1", "mac": "02:42:ac:11:00:02", "ports": []
        });
        let ep: NetworkEndpoint = serde_json::from_value(old).expect("old endpoint");
        assert_eq!(ep.ifname(), "eth0");
        assert!(ep.aliases.is_empty());
    }

    #[test]
    fn endpoint_ids_are_per_network() {
        let id = "3f2a9c1d0b7e5a4c3f2a9c1d0b7e5a4c3f2a9c1d0b7e5a4c3f2a9c1d0b7e5a4c";
        let on = |network_id: &str| NetworkEndpoint {
            network_id: network_id.into(),
            network_name: String::new(),
            ip: String::new(),
            prefix_len: 0,
            gateway: String::new(),
            mac: String::new(),
            ports: Vec::new(),
            ifname: String::new(),
            aliases: Vec::new(),
        };
        assert_eq!(on("").endpoint_id(id), id);
        let a = on(&"a".repeat(64)).endpoint_id(id);
        let b = on(&"b".repeat(64)).endpoint_id(id);
        assert_ne!(a, b);
        assert_ne!(a, id);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, on(&"a".repeat(64)).endpoint_id(id), "stable");
    }
}

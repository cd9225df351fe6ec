//! The default bridge network as one object: the bridge with its gateway address, the
//! sysctls and firewall rules it needs, and per container a veth, an address and the
//! published ports.
//!
//! Every container's host state is derived from its id and the network's name alone (the
//! veth name, the IPAM entry, the firewall rules' `berth:ctr=<id>` tag), so a container can
//! be on several networks at once, [`BridgeNetwork::disconnect`] works
//! after a daemon restart and [`BridgeNetwork::recover`] cleans up after a crash by running
//! the same undo for every id no live container has.
//!
//! The calls are synchronous and short (netlink round trips, one `nft` run per firewall
//! change): the daemon calls them from a blocking thread.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::firewall::{
    self, check_container_id, ContainerPorts, FirewallDriver, FirewallError, NetworkFirewall,
};
use crate::ipam::{self, Ipam, IpamError};
use crate::link::{
    attach_container, delete_bridge, detach_container, ensure_bridge, valid_ifname, BridgeConfig,
    ContainerLink, LinkError, Netlink, NetnsRef,
};
use crate::port_spec::{self, PortMapping, PortRange, PortReservation, PortSpec, PortSpecError};
use crate::sysctl;

/// What can go wrong setting up the network or a container's place on it.
#[derive(Debug, thiserror::Error)]
pub enum BridgeNetworkError {
    #[error(transparent)]
    Ports(#[from] PortSpecError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error("network state {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("network state {path} is corrupt (remove it to pick a subnet again): {source}")]
    StateCorrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0:?} is not a valid network name (ASCII letters, digits, '_' and '-')")]
    BadName(String),
    #[error("{0:?} is not a valid bridge name (1-15 of ASCII letters, digits, '_' and '-')")]
    BadBridgeName(String),
    #[error(
        "no free subnet for network {0}: every candidate overlaps a host route; set one explicitly"
    )]
    NoFreeSubnet(String),
    #[error("network {name} cannot move from {old} to {new} while containers {containers:?} still have addresses on it; stop them first")]
    NetworkInUse {
        name: String,
        old: String,
        new: String,
        containers: Vec<String>,
    },
    #[error("container {0} is already connected to this network")]
    AlreadyConnected(String),
    #[error("the veth name {name} is taken by container {other} (their ids share the first 36 bits); recreate this container to get another id")]
    VethNameTaken { name: String, other: String },
}

type Result<T> = std::result::Result<T, BridgeNetworkError>;

/// How to set up a bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeNetworkConfig {
    /// The network's name (`bridge` for the default one); names its state files.
    pub name: String,
    /// The bridge link (`berth0`).
    pub bridge: String,
    /// `None`: the first of [`ipam::default_candidates`] clear of the host's routes, chosen
    /// once and kept in `state_dir`, so that the network keeps its subnet across restarts
    /// (its own route would otherwise push the next pick elsewhere).
    pub subnet: Option<Ipv4Net>,
    /// Where the network's state lives, e.g. `<data root>/network`.
    pub state_dir: PathBuf,
}

/// What is recorded about the network itself, next to the IPAM file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NetworkState {
    subnet: Ipv4Net,
    bridge: String,
    /// Whether berth turned `net.ipv4.ip_forward` on, so that [`BridgeNetwork::teardown`]
    /// turns it back off (and only then: other software may rely on it).
    #[serde(default)]
    ip_forward_enabled: bool,
}

/// What the daemon asks for when a container joins the network.
#[derive(Debug, Clone, Copy)]
pub struct ConnectRequest<'a> {
    pub container_id: &'a str,
    /// The container's network namespace file (see [`crate::netns::create_netns`]).
    pub netns: &'a Path,
    pub ports: &'a [PortSpec],
    /// The interface inside the container: `eth0` for the network it starts on, `eth1`,
    /// `eth2`, ... for those it joins later, in connect order as Docker names them.
    pub ifname: &'a str,
    /// Whether the default route goes through this network's gateway: only the first
    /// network's (Docker's "gateway endpoint"); a second default route would make the
    /// container's egress depend on which one the kernel picks.
    pub default_route: bool,
}

impl<'a> ConnectRequest<'a> {
    /// The container's first network: `eth0`, the default route, the published ports.
    pub fn primary(container_id: &'a str, netns: &'a Path, ports: &'a [PortSpec]) -> Self {
        Self {
            container_id,
            netns,
            ports,
            ifname: "eth0",
            default_route: true,
        }
    }

    /// A further network of a container: an interface and an address, no route, no ports.
    pub fn secondary(container_id: &'a str, netns: &'a Path, ifname: &'a str) -> Self {
        Self {
            container_id,
            netns,
            ports: &[],
            ifname,
            default_route: false,
        }
    }
}

/// A container's place on the network, for `docker inspect`'s `NetworkSettings` and the
/// container's `/etc/hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub host_ifname: String,
    pub ports: Vec<PortMapping>,
}

/// A bridge network, set up. `Send + Sync`: one instance serves all the daemon's threads.
///
/// Published host ports stay bound by sockets held here (in the [`PortReservation`]) from
/// `connect` to `disconnect`, as `docker-proxy` holds them: the DNAT rules take the traffic
/// before it reaches those sockets, but another program can then not bind the port and
/// silently lose its traffic to the container, and a second container asking for the same
/// port gets "already in use" instead of a rule that shadows the first. After a daemon
/// restart the ports of running containers are not held until they are reconnected; the
/// firewall rules keep working meanwhile.
pub struct BridgeNetwork {
    name: String,
    bridge: String,
    subnet: Ipv4Net,
    state_path: PathBuf,
    ipam: Ipam,
    firewall: Box<dyn FirewallDriver>,
    /// Held host ports per connected container; `None` while its `connect` runs, so that a
    /// second `connect` for the same id fails instead of racing the first.
    ports: Mutex<HashMap<String, Option<PortReservation>>>,
}

impl std::fmt::Debug for BridgeNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeNetwork")
            .field("name", &self.name)
            .field("bridge", &self.bridge)
            .field("subnet", &self.subnet)
            .field("state_path", &self.state_path)
            .finish_non_exhaustive()
    }
}

/// The host end of a container's veth on network `network` (a [`BridgeNetwork`]'s name):
/// `vb`, 9 hex digits of the id (taken from it when it is lower-case hex like Docker's ids,
/// hashed from it otherwise) and 4 hex digits of a stable hash of the network's name: 15
/// bytes, the most a link name holds. Derived from (id, network) alone, so that teardown
/// and crash recovery find it without any other record, and one container's veths on two
/// networks never share a name (the teardown of one would take the other). Two containers
/// whose ids share 36 bits would share one; `attach` refuses the second.
pub fn veth_name(container_id: &str, network: &str) -> String {
    format!(
        "vb{}{}",
        veth_id_part(container_id),
        veth_network_part(network)
    )
}

/// The id's share of a veth name: its first [`ID_DIGITS`] hex digits.
fn veth_id_part(container_id: &str) -> String {
    container_id
        .get(..ID_DIGITS)
        .filter(|p| is_lower_hex(p))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:09x}", folded(container_id, 36)))
}

/// The network's share of a veth name, its last four hex digits.
fn veth_network_part(network: &str) -> String {
    format!("{:04x}", folded(network, 16))
}

const ID_DIGITS: usize = 9;

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `bits` bits of the FNV-1a hash of `s`, all of the hash folded into them: FNV's high bits
/// barely change with the last byte (`neta` and `netb` would share them).
fn folded(s: &str, bits: u32) -> u64 {
    let h = fnv1a64(s.as_bytes());
    let mask = (1u64 << bits) - 1;
    (0..64)
        .step_by(bits as usize)
        .fold(0, |acc, shift| acc ^ ((h >> shift) & mask))
}

/// The name berth gave a container's one veth before containers could be on several
/// networks (`vb` and 11 hex digits of the id): a container started then and still running
/// after an upgrade (live restore) has it, and it must neither be taken for an orphan nor
/// outlive the container's disconnect.
pub fn legacy_veth_name(container_id: &str) -> Option<String> {
    container_id
        .get(..11)
        .filter(|p| is_lower_hex(p))
        .map(|p| format!("vb{p}"))
}

/// Whether `name` is one of `container_id`'s veths, on whichever network: what a leak
/// check or a cleanup that knows the id but not the networks looks for.
pub fn is_veth_of(name: &str, container_id: &str) -> bool {
    match name.len() {
        15 => is_veth_name(name) && name[2..2 + ID_DIGITS] == veth_id_part(container_id),
        _ => legacy_veth_name(container_id).as_deref() == Some(name),
    }
}

/// Whether a link name has the shape [`veth_name`] gives (15 bytes), or the one
/// [`legacy_veth_name`] gave (13).
pub fn is_veth_name(name: &str) -> bool {
    (name.len() == 15 || name.len() == 13) && name.starts_with("vb") && is_lower_hex(&name[2..])
}

/// FNV-1a: stable across Rust versions and builds, unlike `DefaultHasher`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The container's MAC: `02:42` and the four bytes of its address, as Docker derives it
/// (libnetwork `GenerateMACFromIP`): locally administered, unique on the bridge as long as
/// the address is, and stable for a given address so neighbours' ARP caches stay right.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

/// `aa:bb:cc:dd:ee:ff`, lower case, as `docker inspect` shows it.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Specs that reserve exactly the host ports of `mappings`.
fn specs_for(mappings: &[PortMapping]) -> Vec<PortSpec> {
    mappings
        .iter()
        .map(|m| PortSpec {
            host_ip: m.host_ip,
            host_ports: Some(PortRange::single(m.host_port)),
            container_ports: PortRange::single(m.container_port),
            protocol: m.protocol,
        })
        .collect()
}

/// The subnet to use: the configured one, else the one recorded before, else the first
/// default candidate clear of `routes`.
fn choose_subnet(
    configured: Option<Ipv4Net>,
    recorded: Option<Ipv4Net>,
    routes: &[Ipv4Net],
) -> Option<Ipv4Net> {
    configured
        .map(|s| s.trunc())
        .or(recorded)
        .or_else(|| ipam::pick_subnet(routes, ipam::default_candidates()))
}

/// ASCII letters, digits, `_` and `-`: safe in file names and firewall comments.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn read_state(path: &Path) -> Result<Option<NetworkState>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| {
            BridgeNetworkError::StateCorrupt {
                path: path.to_path_buf(),
                source,
            }
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BridgeNetworkError::State {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes through a temporary file and `rename`, so a crash leaves the old or the new state.
fn write_state(path: &Path, state: &NetworkState) -> Result<()> {
    let io = |source| BridgeNetworkError::State {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| io(std::io::Error::other(e)))?;
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // A full disk: the old state stays, and no temporary file next to it.
        let _ = fs::remove_file(&tmp);
        return Err(io(e));
    }
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

fn remove_file_if_there(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BridgeNetworkError::State {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Keeps the first error of a best-effort sequence and logs the others.
fn keep_first<E: Into<BridgeNetworkError>>(
    first: &mut Option<BridgeNetworkError>,
    what: &str,
    r: std::result::Result<impl Sized, E>,
) {
    if let Err(e) = r {
        let e = e.into();
        tracing::warn!("{what}: {e}");
        first.get_or_insert(e);
    }
}

impl BridgeNetwork {
    /// Sets the network up with the host's firewall driver ([`firewall::detect`]).
    pub fn open(cfg: BridgeNetworkConfig) -> Result<Self> {
        Self::open_with_firewall(cfg, firewall::detect())
    }

    /// Sets the network up: the bridge with its gateway address, up; IPv4 forwarding; the
    /// bridge's sysctls; the network's firewall rules. Idempotent: what exists is kept, so
    /// a restarted daemon calls it again with running containers attached.
    pub fn open_with_firewall(
        cfg: BridgeNetworkConfig,
        firewall: Box<dyn FirewallDriver>,
    ) -> Result<Self> {
        if !is_plain_name(&cfg.name) {
            return Err(BridgeNetworkError::BadName(cfg.name));
        }
        if !valid_ifname(&cfg.bridge) || !is_plain_name(&cfg.bridge) {
            return Err(BridgeNetworkError::BadBridgeName(cfg.bridge));
        }
        fs::create_dir_all(&cfg.state_dir).map_err(|source| BridgeNetworkError::State {
            path: cfg.state_dir.clone(),
            source,
        })?;
        // `<name>.json` is the IPAM file; names have no '.', so the two never collide.
        let state_path = cfg.state_dir.join(format!("{}.network.json", cfg.name));
        let recorded = read_state(&state_path)?;
        let mut nl = Netlink::new()?;

        let recorded_subnet = recorded.as_ref().map(|s| s.subnet);
        if recorded.is_none() && nl.link_index(&cfg.bridge)?.is_some() {
            // A bridge we have no record of (state dir wiped): its address is unknown, and
            // its own route would steer the subnet pick away from it. Start it over; veths
            // left on it are found by `recover`.
            tracing::warn!(bridge = %cfg.bridge, "replacing a bridge with no recorded subnet");
            Self::remove_bridge(&mut nl, firewall.as_ref(), &cfg.bridge)?;
        }
        let routes = if cfg.subnet.is_none() && recorded_subnet.is_none() {
            ipam::host_routes()?
        } else {
            Vec::new()
        };
        let subnet = choose_subnet(cfg.subnet, recorded_subnet, &routes)
            .ok_or_else(|| BridgeNetworkError::NoFreeSubnet(cfg.name.clone()))?;
        let ipam = Ipam::new(&cfg.state_dir, &cfg.name, subnet)?;

        if let Some(old) = recorded
            .as_ref()
            .filter(|old| old.subnet != subnet || old.bridge != cfg.bridge)
        {
            // The configured subnet or bridge changed: possible only with nobody on the
            // old one. The old bridge goes; so does a bridge of the new name, whose address
            // nothing recorded.
            let old_ipam = Ipam::new(&cfg.state_dir, &cfg.name, old.subnet)?;
            let containers: Vec<String> = match old_ipam.allocations() {
                Ok(a) => a.into_keys().collect(),
                Err(IpamError::SubnetMismatch { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            if !containers.is_empty() {
                return Err(BridgeNetworkError::NetworkInUse {
                    name: cfg.name,
                    old: format!("{} on {}", old.subnet, old.bridge),
                    new: format!("{subnet} on {}", cfg.bridge),
                    containers,
                });
            }
            Self::remove_bridge(&mut nl, firewall.as_ref(), &old.bridge)?;
            if old.bridge != cfg.bridge {
                Self::remove_bridge(&mut nl, firewall.as_ref(), &cfg.bridge)?;
            }
            remove_file_if_there(old_ipam.path())?;
        }

        let mut state = NetworkState {
            subnet,
            bridge: cfg.bridge.clone(),
            ip_forward_enabled: recorded.as_ref().is_some_and(|s| s.ip_forward_enabled),
        };
        // Recorded before anything changes on the host, so that a crash halfway still
        // leaves the subnet on record for the next attempt and for teardown.
        if recorded.as_ref() != Some(&state) {
            write_state(&state_path, &state)?;
        }

        let bridge_cfg = BridgeConfig {
            name: cfg.bridge.clone(),
            gateway: ipam.gateway(),
            prefix_len: subnet.prefix_len(),
        };
        let created = ensure_bridge(&mut nl, &bridge_cfg)?;
        let net_fw = NetworkFirewall {
            bridge: cfg.bridge.clone(),
            subnet,
        };
        let mut rest = || -> Result<()> {
            // Recorded as soon as it changed, so teardown can undo it even if setup stops
            // halfway.
            if sysctl::enable_ip_forward()? && !state.ip_forward_enabled {
                state.ip_forward_enabled = true;
                write_state(&state_path, &state)?;
            }
            firewall.setup_network(&net_fw)?;
            Ok(())
        };
        if let Err(e) = rest() {
            if created {
                let _ = delete_bridge(&mut nl, &cfg.bridge);
            }
            return Err(e);
        }

        Ok(Self {
            name: cfg.name,
            bridge: cfg.bridge,
            subnet,
            state_path,
            ipam,
            firewall,
            ports: Mutex::new(HashMap::new()),
        })
    }

    /// Deletes a bridge and its network's firewall rules.
    fn remove_bridge(nl: &mut Netlink, fw: &dyn FirewallDriver, bridge: &str) -> Result<()> {
        // The drivers remove a network's rules by the bridge's tag; the subnet is unused.
        let net = NetworkFirewall {
            bridge: bridge.to_string(),
            subnet: Ipv4Net::default(),
        };
        fw.teardown_network(&net)?;
        delete_bridge(nl, bridge)?;
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.ipam.gateway()
    }

    pub fn bridge_name(&self) -> &str {
        &self.bridge
    }

    /// Whether link `name` is a port of this network's bridge.
    fn is_port(&self, nl: &mut Netlink, name: &str) -> std::result::Result<bool, LinkError> {
        let Some(bridge) = nl.link_index(&self.bridge)? else {
            return Ok(false);
        };
        Ok(nl
            .links()?
            .iter()
            .any(|l| l.name == name && l.master == Some(bridge)))
    }

    /// The host end of `container_id`'s veth on this network ([`veth_name`]).
    pub fn veth_name(&self, container_id: &str) -> String {
        veth_name(container_id, &self.name)
    }

    fn net_fw(&self) -> NetworkFirewall {
        NetworkFirewall {
            bridge: self.bridge.clone(),
            subnet: self.subnet,
        }
    }

    fn lock_ports(&self) -> MutexGuard<'_, HashMap<String, Option<PortReservation>>> {
        self.ports.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a container on the network: binds its host ports first (a busy port is a clear
    /// error before anything is made), then its address, its veth into `req.netns` (address,
    /// default route, MAC, `lo` up), and the DNAT rules for its ports. Any failure undoes
    /// what was done, so a failed connect leaves nothing behind.
    pub fn connect(&self, req: &ConnectRequest) -> Result<Endpoint> {
        let id = req.container_id;
        check_container_id(id)?;
        {
            let mut ports = self.lock_ports();
            if ports.contains_key(id) {
                return Err(BridgeNetworkError::AlreadyConnected(id.to_string()));
            }
            ports.insert(id.to_string(), None);
        }
        let result = port_spec::reserve(req.ports)
            .map_err(BridgeNetworkError::from)
            .and_then(|reservation| {
                let endpoint = self.attach(req, reservation.mappings())?;
                Ok((endpoint, reservation))
            });
        let mut ports = self.lock_ports();
        match result {
            Ok((endpoint, reservation)) => {
                ports.insert(id.to_string(), Some(reservation));
                Ok(endpoint)
            }
            Err(e) => {
                ports.remove(id);
                Err(e)
            }
        }
    }

    /// Binds the host ports of a container that stayed connected across a daemon restart
    /// (its rules and veth are still in place, but the sockets that held its ports died
    /// with the old daemon), so that nothing else takes them. `mappings` are the ones its
    /// [`Endpoint`] had. Replaces whatever this instance held for it.
    pub fn hold_ports(&self, container_id: &str, mappings: &[PortMapping]) -> Result<()> {
        check_container_id(container_id)?;
        let reservation = port_spec::reserve(&specs_for(mappings))?;
        self.lock_ports()
            .insert(container_id.to_string(), Some(reservation));
        Ok(())
    }

    /// The side effects of `connect` after the ports are held, undone on failure.
    fn attach(&self, req: &ConnectRequest, mappings: &[PortMapping]) -> Result<Endpoint> {
        let (id, netns) = (req.container_id, req.netns);
        // Per-step timings in the debug log: the setup of one container is a budget
        // (issue 6: under 5 ms), and this says where it goes.
        let t0 = std::time::Instant::now();
        let mut marks: [u128; 4] = [0; 4];
        // Refused before anything is made: a twin's veth would be deleted below as a
        // crash leftover of this container's.
        let host_ifname = self.veth_name(id);
        if let Some(other) = self
            .ipam
            .allocations()?
            .into_keys()
            .find(|other| other != id && self.veth_name(other) == host_ifname)
        {
            return Err(BridgeNetworkError::VethNameTaken {
                name: host_ifname,
                other,
            });
        }
        let ip = self.ipam.allocate(id)?;
        marks[0] = t0.elapsed().as_micros();
        let mac = mac_for(ip);
        let link = ContainerLink {
            host_ifname: host_ifname.clone(),
            container_ifname: req.ifname.to_string(),
            default_route: req.default_route,
            address: ip,
            prefix_len: self.subnet.prefix_len(),
            gateway: self.gateway(),
            mac: Some(mac),
        };
        let mut added_rules = false;
        let mut apply = || -> Result<()> {
            let mut nl = Netlink::new()?;
            // The bridge may have been deleted behind our back (an admin, a network
            // restart); bringing it back is cheap and makes connect self-healing.
            ensure_bridge(
                &mut nl,
                &BridgeConfig {
                    name: self.bridge.clone(),
                    gateway: self.gateway(),
                    prefix_len: self.subnet.prefix_len(),
                },
            )?;
            marks[1] = t0.elapsed().as_micros();
            // A veth of this very container left by a crash would fail creation with EEXIST.
            detach_container(&mut nl, &host_ifname)?;
            attach_container(
                &mut nl,
                &NetnsRef::Path(netns.to_path_buf()),
                &self.bridge,
                &link,
            )?;
            marks[2] = t0.elapsed().as_micros();
            if !mappings.is_empty() {
                added_rules = true;
                self.firewall.add_port_mappings(
                    &self.net_fw(),
                    &ContainerPorts {
                        container_id: id,
                        container_ip: ip,
                        mappings,
                    },
                )?;
            }
            Ok(())
        };
        if let Err(e) = apply() {
            if added_rules {
                if let Err(undo) = self.firewall.remove_port_mappings(id) {
                    tracing::warn!(container = id, "undo port mappings: {undo}");
                }
            }
            if let Err(undo) =
                Netlink::new().and_then(|mut nl| detach_container(&mut nl, &host_ifname))
            {
                tracing::warn!(container = id, "undo veth {host_ifname}: {undo}");
            }
            if let Err(undo) = self.ipam.release(id) {
                tracing::warn!(container = id, "undo address {ip}: {undo}");
            }
            return Err(e);
        }
        marks[3] = t0.elapsed().as_micros();
        tracing::debug!(
            container = id,
            network = %self.name,
            ipam_us = marks[0],
            bridge_us = marks[1] - marks[0],
            veth_us = marks[2] - marks[1],
            firewall_us = marks[3] - marks[2],
            total_us = marks[3],
            "network setup"
        );
        Ok(Endpoint {
            ip,
            prefix_len: self.subnet.prefix_len(),
            gateway: self.gateway(),
            mac: format_mac(&mac),
            host_ifname,
            ports: mappings.to_vec(),
        })
    }

    /// Takes a container off the network: its DNAT rules, its veth (the peer in the
    /// container goes with it), its address, its held host ports. Idempotent, and driven by
    /// the id alone, so it also cleans up after a crash. Every step is tried; the first
    /// error is returned.
    pub fn disconnect(&self, container_id: &str) -> Result<()> {
        self.disconnect_with(container_id, true, false)
    }

    /// [`disconnect`](Self::disconnect) that skips what the caller knows is not needed, on
    /// the hot path of a container's exit: `port_rules: false` when the container published
    /// nothing (listing the firewall's rules costs ~0.5 ms through libnftables, more with
    /// `iptables`), and `netns_goes: true` when the caller removes the container's namespace right after
    /// and nothing else holds it, because the kernel then deletes the veth pair itself
    /// (deleting it here waits ~20 ms in the kernel).
    pub fn disconnect_with(
        &self,
        container_id: &str,
        port_rules: bool,
        netns_goes: bool,
    ) -> Result<()> {
        check_container_id(container_id)?;
        let mut first = None;
        let holds_ports = matches!(
            self.lock_ports().get(container_id),
            Some(Some(r)) if !r.mappings().is_empty()
        );
        if port_rules || holds_ports {
            keep_first(
                &mut first,
                "remove port mappings",
                self.firewall.remove_port_mappings(container_id),
            );
        }
        if !netns_goes {
            keep_first(
                &mut first,
                "delete veth",
                Netlink::new().and_then(|mut nl| {
                    let deleted = detach_container(&mut nl, &self.veth_name(container_id))?;
                    if deleted {
                        return Ok(true);
                    }
                    // Connected by a berthd from before per-network names: its veth is
                    // on this bridge only if it is one of its ports.
                    match legacy_veth_name(container_id) {
                        Some(old) if self.is_port(&mut nl, &old)? => {
                            detach_container(&mut nl, &old)
                        }
                        _ => Ok(false),
                    }
                }),
            );
        }
        keep_first(
            &mut first,
            "release address",
            self.ipam.release(container_id),
        );
        // Last: the port stays ours until no rule sends its traffic anywhere.
        self.lock_ports().remove(container_id);
        first.map_or(Ok(()), Err)
    }

    /// Removes what containers not in `live_container_ids` left behind (a daemon crash, a
    /// container that died while the daemon was down): their addresses, firewall rules and
    /// held ports, and veths of ours on this bridge (or on none, named for this network)
    /// that no live container owns. Returns how many containers were cleaned up. Call it at
    /// daemon start, before new containers connect.
    ///
    /// `live_container_ids` are the containers on this network; `live_elsewhere` the host
    /// veth names of live containers' endpoints on other networks, which a masterless veth
    /// (its bridge deleted behind berth's back) may be and must then not be taken for an
    /// orphan.
    pub fn recover(
        &self,
        live_container_ids: &[&str],
        live_elsewhere: &HashSet<String>,
    ) -> Result<usize> {
        let live: HashSet<&str> = live_container_ids.iter().copied().collect();
        let mut live_veths: HashSet<String> = live.iter().map(|id| self.veth_name(id)).collect();
        live_veths.extend(live.iter().filter_map(|id| legacy_veth_name(id)));
        live_veths.extend(live_elsewhere.iter().cloned());

        let mut dead: BTreeSet<String> = self
            .ipam
            .allocations()?
            .into_keys()
            .filter(|id| !live.contains(id.as_str()))
            .collect();
        dead.extend(
            self.firewall
                .containers_in(self.subnet)?
                .into_iter()
                .filter(|id| !live.contains(id.as_str())),
        );
        dead.extend(
            self.lock_ports()
                .keys()
                .filter(|id| !live.contains(id.as_str()))
                .cloned(),
        );

        let mut nl = Netlink::new()?;
        let bridge_index = nl.link_index(&self.bridge)?;
        // On no bridge: only veths named for this network (the last 4 digits), and those
        // named before names had a network part. Another network's veth is briefly on no
        // bridge while its bridge goes (a teardown, another daemon's): not ours to delete.
        let network_part = veth_network_part(&self.name);
        let unbridged_ours = |name: &str| match name.len() {
            15 => name[2 + ID_DIGITS..] == network_part,
            _ => true,
        };
        let orphan_veths: Vec<String> = nl
            .links()?
            .into_iter()
            .filter(|l| {
                is_veth_name(&l.name)
                    && l.is_veth == Some(true)
                    && match l.master {
                        Some(master) => Some(master) == bridge_index,
                        None => unbridged_ours(&l.name),
                    }
                    && !live_veths.contains(&l.name)
            })
            .map(|l| l.name)
            .collect();

        let mut cleaned: BTreeSet<String> = BTreeSet::new();
        let mut first = None;
        for id in &dead {
            tracing::info!(container = %id, network = %self.name, "cleaning up after a gone container");
            keep_first(&mut first, "recover", self.disconnect(id));
            cleaned.insert(self.veth_name(id));
        }
        for name in orphan_veths {
            if cleaned.insert(name.clone()) {
                tracing::info!(veth = %name, network = %self.name, "deleting an orphan veth");
                keep_first(
                    &mut first,
                    "delete orphan veth",
                    nl.delete_link_by_name(&name),
                );
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(cleaned.len()),
        }
    }

    /// Removes the whole network: every container still on it, the network's firewall
    /// rules, the bridge, IPv4 forwarding if berth turned it on, and the state files (a later
    /// `open` starts afresh). For tests and for the daemon's "clean everything".
    pub fn teardown(self) -> Result<()> {
        self.teardown_with(true)
    }

    /// [`teardown`](Self::teardown) of one network among others (a user-defined network):
    /// `restore_ip_forward: false` leaves IPv4 forwarding on, since other bridges need it.
    pub fn teardown_with(self, restore_ip_forward: bool) -> Result<()> {
        let mut first = None;
        let mut ids: BTreeSet<String> = self.lock_ports().keys().cloned().collect();
        match self.ipam.allocations() {
            Ok(a) => ids.extend(a.into_keys()),
            Err(e) => keep_first(&mut first, "read allocations", Err::<(), _>(e)),
        }
        for id in &ids {
            keep_first(&mut first, "disconnect", self.disconnect(id));
        }
        keep_first(
            &mut first,
            "remove network rules",
            self.firewall.teardown_network(&self.net_fw()),
        );
        keep_first(
            &mut first,
            "delete bridge",
            Netlink::new().and_then(|mut nl| delete_bridge(&mut nl, &self.bridge)),
        );
        match read_state(&self.state_path) {
            Ok(Some(state)) if state.ip_forward_enabled && restore_ip_forward => {
                keep_first(&mut first, "ip_forward", sysctl::disable_ip_forward());
            }
            Ok(_) => {}
            Err(e) => keep_first(&mut first, "read state", Err::<(), _>(e)),
        }
        if first.is_none() {
            // Only once everything is gone: the files are what a retry would work from.
            let ipam_path = self.ipam.path().to_path_buf();
            for p in [
                self.state_path.clone(),
                ipam_path.with_extension("lock"),
                ipam_path,
            ] {
                keep_first(&mut first, "remove state", remove_file_if_there(&p));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test subnet")
    }

    #[test]
    fn veth_names_come_from_the_id_and_the_network() {
        let id = "3f2a9c1d0b7e5a4c3f2a9c1d0b7e5a4c3f2a9c1d0b7e5a4c3f2a9c1d0b7e5a4c";
        let on_bridge = veth_name(id, "bridge");
        assert!(on_bridge.starts_with("vb3f2a9c1d0"), "{on_bridge}");
        assert_eq!(on_bridge.len(), 15);
        assert!(is_veth_name(&on_bridge));
        assert_eq!(on_bridge, veth_name(id, "bridge"), "stable");
        // One container on two networks: two names, both ours, sharing the id part.
        let on_user = veth_name(id, "0123456789ab");
        assert_ne!(on_bridge, on_user);
        assert!(is_veth_name(&on_user));
        assert_eq!(on_bridge[..11], on_user[..11]);
        assert!(is_veth_of(&on_bridge, id) && is_veth_of(&on_user, id));
        let neighbour = "3f2a9c1d1b7e5a4c3f2a9c1d0b7e5a4c3f2a9c1d0b7e5a4c3f2a9c1d0b7e5a4c";
        assert!(
            !is_veth_of(&on_bridge, neighbour),
            "ids differing in digit 9"
        );
        // Networks whose names differ only slightly still get different names.
        let names: HashSet<String> = (0..64).map(|i| veth_name(id, &format!("net{i}"))).collect();
        assert_eq!(names.len(), 64);
        // Not hex, or too short: hashed, still 15 bytes, still ours, and stable.
        for odd in ["web-1", "ABCDEF0123456789", "a", "ctr_0123456789abcdef"] {
            let n = veth_name(odd, "bridge");
            assert_eq!(n.len(), 15, "{odd}");
            assert!(is_veth_name(&n), "{odd} -> {n}");
            assert!(valid_ifname(&n));
            assert_eq!(n, veth_name(odd, "bridge"));
        }
        assert_ne!(veth_name("web-1", "bridge"), veth_name("web-2", "bridge"));
        // The one name of before, still of our shape, never one of today's names.
        let old = legacy_veth_name(id).expect("hex id");
        assert_eq!(old, "vb3f2a9c1d0b7");
        assert!(is_veth_name(&old) && is_veth_of(&old, id));
        assert!(!is_veth_of(&old, neighbour));
        assert_eq!(legacy_veth_name("web-1"), None);
        // Other software's links are never taken for ours.
        for other in [
            "vboxnet0",
            "vb3f2a9c1d0b",
            "vb3f2a9c1d0b7e",
            "vb3f2a9c1d0b7e5a",
            "veth1234567",
            "vbABCDEF01234",
            "vbABCDEF0123456",
        ] {
            assert!(!is_veth_name(other), "{other}");
        }
    }

    #[test]
    fn macs_follow_docker() {
        let mac = mac_for(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(format_mac(&mac), "02:42:ac:11:00:02");
        assert_eq!(
            format_mac(&[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]),
            "aa:bb:cc:dd:ee:ff"
        );
    }

    #[test]
    fn subnet_choice_prefers_config_then_record_then_a_free_pick() {
        let routes = [net("0.0.0.0/0"), net("172.17.0.0/16")];
        assert_eq!(
            choose_subnet(
                Some(net("10.9.8.7/24")),
                Some(net("172.18.0.0/16")),
                &routes
            ),
            Some(net("10.9.8.0/24"))
        );
        assert_eq!(
            choose_subnet(None, Some(net("172.17.0.0/16")), &routes),
            Some(net("172.17.0.0/16")),
            "the recorded subnet stays although its own bridge route overlaps it"
        );
        assert_eq!(
            choose_subnet(None, None, &routes),
            Some(net("172.18.0.0/16"))
        );
        assert_eq!(choose_subnet(None, None, &[net("128.0.0.0/1")]), None);
    }

    #[test]
    fn state_round_trips_and_corruption_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bridge.network.json");
        assert_eq!(read_state(&path).expect("absent"), None);
        let state = NetworkState {
            subnet: net("172.18.0.0/16"),
            bridge: "berth0".into(),
            ip_forward_enabled: true,
        };
        write_state(&path, &state).expect("write");
        assert_eq!(read_state(&path).expect("read"), Some(state));
        fs::write(&path, b"{").expect("corrupt");
        assert!(matches!(
            read_state(&path),
            Err(BridgeNetworkError::StateCorrupt { .. })
        ));
    }

    #[test]
    fn names_are_checked_before_anything_happens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = |name: &str, bridge: &str| BridgeNetworkConfig {
            name: name.into(),
            bridge: bridge.into(),
            subnet: None,
            state_dir: dir.path().join("state"),
        };
        let fw = || Box::new(firewall::nftables::NftablesDriver::new()) as Box<dyn FirewallDriver>;
        assert!(matches!(
            BridgeNetwork::open_with_firewall(cfg("a.b", "berth0"), fw()),
            Err(BridgeNetworkError::BadName(_))
        ));
        assert!(matches!(
            BridgeNetwork::open_with_firewall(cfg("bridge", "a-very-long-bridge-name"), fw()),
            Err(BridgeNetworkError::BadBridgeName(_))
        ));
        assert!(!dir.path().join("state").exists());
    }

    #[test]
    fn held_ports_are_the_recorded_ones() {
        let specs = [
            port_spec::parse("127.0.0.1::80").expect("spec"),
            port_spec::parse("127.0.0.1::53/udp").expect("spec"),
        ];
        let first = port_spec::reserve(&specs).expect("reserve");
        let recorded = first.mappings().to_vec();
        drop(first);
        // Another daemon's lifetime later, the same ports are bound again.
        match port_spec::reserve(&specs_for(&recorded)) {
            Ok(again) => assert_eq!(again.mappings(), recorded.as_slice()),
            // Another process took a port in between; nothing more to check.
            Err(PortSpecError::InUse { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<BridgeNetwork>();
    }
}

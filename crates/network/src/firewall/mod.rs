//! Firewall rules for bridge networks: masquerade for the subnet's egress, forwarding for
//! the bridge, and DNAT for published ports.
//!
//! One [`FirewallDriver`] trait with nftables ([`nftables::NftablesDriver`], preferred) and
//! iptables ([`iptables::IptablesDriver`], fallback) behind it, as in netavark. Every rule
//! carries a comment naming what it belongs to (`berth:ctr=<id>` or `berth:net=<bridge>`),
//! so removal reads the rules back and deletes by tag: teardown after a crash is the same
//! code path as a normal stop, and [`FirewallDriver::cleanup_all`] can drop whatever no
//! known container or network owns.

pub mod iptables;
pub mod libnftables;
pub mod nftables;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::Ipv4Net;

use crate::link::valid_ifname;
use crate::port_spec::PortMapping;

/// What can go wrong changing the firewall.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot run {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("{library}: {detail}")]
    Library { library: String, detail: String },
    #[error("cannot read the output of {cmd}: {detail}")]
    Parse { cmd: String, detail: String },
    #[error("{0:?} is not a valid container id (1-128 of [A-Za-z0-9_.-])")]
    BadContainerId(String),
    #[error("{0:?} is not a valid name here (ASCII letters, digits, '_' and '-')")]
    BadName(String),
    #[error("cannot publish on host address {0}: IPv6 port publishing needs an IPv6 container address, which berth does not assign yet")]
    Ipv6Unsupported(IpAddr),
}

/// A bridge network as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkFirewall {
    pub bridge: String,
    pub subnet: Ipv4Net,
}

impl NetworkFirewall {
    fn check(&self) -> Result<(), FirewallError> {
        if !valid_ifname(&self.bridge) || !is_plain_name(&self.bridge) {
            return Err(FirewallError::BadName(self.bridge.clone()));
        }
        Ok(())
    }

    fn tag(&self) -> String {
        net_tag(&self.bridge)
    }
}

/// A container's published ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPorts<'a> {
    pub container_id: &'a str,
    pub container_ip: Ipv4Addr,
    pub mappings: &'a [PortMapping],
}

/// The backend-independent operations; each one is applied as one atomic batch.
pub trait FirewallDriver: Send + Sync {
    /// Base chains and the jumps into them, then the network's forward, masquerade,
    /// localhost and hairpin rules. Idempotent.
    fn setup_network(&self, net: &NetworkFirewall) -> Result<(), FirewallError>;
    /// Removes the network's rules (those tagged with its bridge).
    fn teardown_network(&self, net: &NetworkFirewall) -> Result<(), FirewallError>;
    /// DNAT rules for a container's published ports. Reserve the host ports first
    /// ([`crate::port_spec::reserve`]) so that a busy port fails before any rule exists.
    fn add_port_mappings(
        &self,
        net: &NetworkFirewall,
        ports: &ContainerPorts<'_>,
    ) -> Result<(), FirewallError>;
    /// Removes every rule tagged with this container, whatever it was.
    fn remove_port_mappings(&self, container_id: &str) -> Result<(), FirewallError>;
    /// The ids of the containers that have rules, each once, for crash recovery to find
    /// leftovers of containers that are gone.
    fn containers(&self) -> Result<Vec<String>, FirewallError>;
    /// [`containers`](Self::containers) whose rules send traffic into `subnet`: the ones a
    /// network's crash recovery may take for its own. Another daemon's containers (tests run
    /// one engine each, all in berth's one table) are never someone else's leftovers.
    fn containers_in(&self, subnet: Ipv4Net) -> Result<Vec<String>, FirewallError>;
    /// Removes rules of containers and networks not in the lists (leftovers of a crash);
    /// with both lists empty, removes everything berth added.
    fn cleanup_all(
        &self,
        known_containers: &[&str],
        known_networks: &[&str],
    ) -> Result<(), FirewallError>;
}

/// Whether `nft` is installed, which makes nftables the driver to use.
pub fn nft_available() -> bool {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .iter()
        .any(|p| Path::new(p).exists())
}

/// The driver for this host: nftables when `nft` is installed, iptables otherwise.
pub fn detect() -> Box<dyn FirewallDriver> {
    if nft_available() {
        Box::new(nftables::NftablesDriver::new())
    } else {
        Box::new(iptables::IptablesDriver::new())
    }
}

/// ASCII letters, digits, `_` and `-`: safe inside nft and iptables arguments and comments.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) fn check_container_id(id: &str) -> Result<(), FirewallError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(FirewallError::BadContainerId(id.to_string()))
    }
}

const CTR_PREFIX: &str = "berth:ctr=";
const NET_PREFIX: &str = "berth:net=";

pub(crate) fn ctr_tag(id: &str) -> String {
    format!("{CTR_PREFIX}{id}")
}

pub(crate) fn net_tag(bridge: &str) -> String {
    format!("{NET_PREFIX}{bridge}")
}

/// Who a rule's comment says it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    Container(String),
    Network(String),
}

pub(crate) fn owner_of(comment: &str) -> Option<Owner> {
    if let Some(id) = comment.strip_prefix(CTR_PREFIX) {
        Some(Owner::Container(id.to_string()))
    } else {
        comment
            .strip_prefix(NET_PREFIX)
            .map(|b| Owner::Network(b.to_string()))
    }
}

/// Whether `cleanup_all` should remove a rule with this owner.
pub(crate) fn is_orphan(owner: &Owner, known_containers: &[&str], known_networks: &[&str]) -> bool {
    match owner {
        Owner::Container(id) => !known_containers.contains(&id.as_str()),
        Owner::Network(b) => !known_networks.contains(&b.as_str()),
    }
}

/// The distinct container ids among rule comments, in order of first appearance.
fn container_owners<'a>(comments: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for c in comments {
        if let Some(Owner::Container(id)) = owner_of(c) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// Checks the mappings before any rule is written: only IPv4 (or all) host addresses.
fn check_mappings(mappings: &[PortMapping]) -> Result<(), FirewallError> {
    for m in mappings {
        if let Some(ip @ IpAddr::V6(_)) = m.host_ip {
            return Err(FirewallError::Ipv6Unsupported(ip));
        }
    }
    Ok(())
}

/// Runs a command with `input` on stdin and returns its stdout.
fn run_with_input(cmd: &str, args: &[&str], input: &str) -> Result<String, FirewallError> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let display = format!("{cmd} {}", args.join(" "));
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| FirewallError::Spawn {
            cmd: display.clone(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|source| FirewallError::Spawn {
                cmd: display.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| FirewallError::Spawn {
            cmd: display.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(FirewallError::Command {
            cmd: display,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        assert_eq!(
            owner_of(&ctr_tag("abc")),
            Some(Owner::Container("abc".into()))
        );
        assert_eq!(
            owner_of(&net_tag("br0")),
            Some(Owner::Network("br0".into()))
        );
        assert_eq!(owner_of("someone else's"), None);
        let o = Owner::Container("a".into());
        assert!(!is_orphan(&o, &["a"], &[]));
        assert!(is_orphan(&o, &["b"], &["a"]));
        let comments = [ctr_tag("a"), net_tag("br"), ctr_tag("b"), ctr_tag("a")];
        assert_eq!(
            container_owners(comments.iter().map(String::as_str)),
            vec!["a".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn ids_and_names() {
        assert!(check_container_id("3f2a_b-c.d").is_ok());
        assert!(check_container_id("").is_err());
        assert!(check_container_id("a\"; flush ruleset").is_err());
        assert!(check_container_id(&"a".repeat(129)).is_err());
        assert!(is_plain_name("berth"));
        assert!(!is_plain_name("a b"));
    }
}

//! berth's container networking: addresses (IPAM), the bridge and veth links over netlink,
//! firewall rules for masquerade and published ports (nftables, iptables as a fallback),
//! the parsing of `-p` port specs, network namespaces made in-process, the default bridge
//! network as one object ([`bridge_network::BridgeNetwork`]), and the container's
//! `/etc/hosts` and `/etc/resolv.conf`.
//!
//! Every change to the host has its undo next to it, and the undo is driven by recorded
//! state (IPAM files, rule comments naming the container), so teardown after a crash is the
//! same code path as a normal stop.

pub mod bridge_network;
pub mod etc_files;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod port_spec;
pub mod sysctl;

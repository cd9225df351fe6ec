//! berth's container networking: addresses (IPAM), the bridge and veth links over netlink,
//! firewall rules for masquerade and published ports (nftables, iptables as a fallback),
//! and the parsing of `-p` port specs.
//!
//! Every change to the host has its undo next to it, and the undo is driven by recorded
//! state (IPAM files, rule comments naming the container), so teardown after a crash is the
//! same code path as a normal stop.

pub mod firewall;
pub mod ipam;
pub mod link;
pub mod port_spec;
pub mod sysctl;

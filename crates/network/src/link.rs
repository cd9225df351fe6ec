//! Bridge and veth links over rtnetlink: a small synchronous wrapper around
//! `netlink-packet-route` + `netlink-sys`, in the style of netavark's `netlink.rs`.
//!
//! berth never spawns `ip`: one netlink socket per network namespace, one request and its
//! ACK at a time. A socket is tied to the network namespace of the thread that created it,
//! so [`Netlink::in_netns`] makes one from a short-lived thread that has `setns`-ed into the
//! container's namespace; the daemon's own threads never change namespace.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// What can go wrong talking to the kernel about links.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("netlink {op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink {op}: cannot decode the kernel's answer: {detail}")]
    Decode { op: String, detail: String },
    #[error("no link named {0:?}")]
    NotFound(String),
    #[error(
        "link name {0:?} is not a valid interface name (1 to 15 bytes, no '/', ':' or spaces)"
    )]
    BadName(String),
    #[error("network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sysctl {path}: {source}")]
    Sysctl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, LinkError>;

/// A network namespace, the way callers have it at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsRef {
    /// The namespace a process is in (`/proc/<pid>/ns/net`).
    Pid(i32),
    /// A namespace file: `/proc/<pid>/ns/net`, or a bind mount such as `/run/netns/<name>`.
    Path(PathBuf),
}

impl NetnsRef {
    pub fn path(&self) -> PathBuf {
        match self {
            NetnsRef::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            NetnsRef::Path(p) => p.clone(),
        }
    }

    /// Opens the namespace file; holding it keeps the namespace alive.
    pub fn open(&self) -> Result<File> {
        let path = self.path();
        File::open(&path).map_err(|source| LinkError::Netns { path, source })
    }
}

/// Linux's IFNAMSIZ is 16 including the NUL.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

fn check_ifname(name: &str) -> Result<()> {
    if valid_ifname(name) {
        Ok(())
    } else {
        Err(LinkError::BadName(name.to_string()))
    }
}

/// A route netlink socket in one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    /// A socket in the caller's current network namespace.
    pub fn new() -> Result<Self> {
        let op = || "socket".to_string();
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|source| LinkError::Netlink { op: op(), source })?;
        socket
            .bind_auto()
            .map_err(|source| LinkError::Netlink { op: op(), source })?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|source| LinkError::Netlink { op: op(), source })?;
        // Extended ACKs make the kernel say *why* a request failed; best effort.
        let _ = socket.set_ext_ack(true);
        Ok(Self { socket, seq: 0 })
    }

    /// A socket in the namespace `netns`. A netlink socket belongs to the namespace it was
    /// created in, so a helper thread enters the namespace, creates it and exits; the
    /// calling thread stays where it is.
    pub fn in_netns(netns: &File) -> Result<Self> {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(
                    |errno| LinkError::Netns {
                        path: PathBuf::from(format!("fd {}", netns.as_raw_fd())),
                        source: errno.into(),
                    },
                )?;
                Netlink::new()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(LinkError::Netlink {
                    op: "socket in netns".to_string(),
                    source: std::io::Error::other("helper thread panicked"),
                })
            })
        })
    }

    /// Sends one request and collects the answers: the messages of a dump (up to
    /// `NLMSG_DONE`), or nothing for a request that is answered by an ACK.
    fn request(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let nl_err = |source| LinkError::Netlink {
            op: op.to_string(),
            source,
        };
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(nl_err)?;

        let mut answers = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(nl_err)?;
            let mut offset = 0;
            while offset < data.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| LinkError::Decode {
                        op: op.to_string(),
                        detail: e.to_string(),
                    })?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(LinkError::Decode {
                        op: op.to_string(),
                        detail: "zero-length message".to_string(),
                    });
                }
                // Netlink messages are 4-byte aligned inside a datagram.
                offset += (len + 3) & !3;
                if msg.header.sequence_number != self.seq {
                    continue; // a stale answer to an earlier, abandoned request
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers), // the ACK
                            Some(_) => Err(nl_err(e.to_io())),
                        };
                    }
                    NetlinkPayload::InnerMessage(inner) => {
                        answers.push(inner);
                        // A non-dump GET is answered by one message and no ACK.
                        if msg.header.flags & netlink_packet_core::NLM_F_MULTIPART == 0
                            && flags & NLM_F_ACK == 0
                        {
                            return Ok(answers);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The index of the link called `name`, if there is one.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        check_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("get link {name}"),
            RouteNetlinkMessage::GetLink(msg),
            0,
        ) {
            Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(LinkError::Netlink { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn require_index(&mut self, name: &str) -> Result<u32> {
        self.link_index(name)?
            .ok_or_else(|| LinkError::NotFound(name.to_string()))
    }

    /// Every link in this namespace: name, index, kind and bridge master. Used by crash
    /// recovery to find veths that no recorded container owns.
    pub fn links(&mut self) -> Result<Vec<LinkSummary>> {
        let answers = self.request(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            netlink_packet_core::NLM_F_DUMP,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(LinkSummary::from_message(l)),
                _ => None,
            })
            .collect())
    }

    /// The MAC address of a link.
    pub fn link_mac(&mut self, index: u32) -> Result<Option<Vec<u8>>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let answers = self.request(
            &format!("get link {index}"),
            RouteNetlinkMessage::GetLink(msg),
            0,
        )?;
        Ok(answers.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::Address(mac) => Some(mac),
                _ => None,
            }),
            _ => None,
        }))
    }

    fn new_link(&mut self, op: &str, msg: LinkMessage) -> Result<()> {
        self.request(
            op,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    fn set_link(&mut self, op: &str, msg: LinkMessage) -> Result<()> {
        self.request(op, RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Creates a bridge (down, no address) and returns its index.
    pub fn create_bridge(&mut self, name: &str) -> Result<u32> {
        check_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.new_link(&format!("create bridge {name}"), msg)?;
        self.require_index(name)
    }

    /// Creates a veth pair `host` <-> `peer`. With `peer_netns`, the peer is created straight
    /// inside that namespace (one atomic request, as netavark does), so its name only has to
    /// be free there and no half-moved link is ever left on the host.
    pub fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_netns: Option<&File>,
    ) -> Result<u32> {
        self.create_veth_on(host, peer, peer_netns, None)
    }

    /// [`Netlink::create_veth`] with the host end a port of bridge `master` from the start.
    /// A berthd's recovery deletes masterless veths of ours as crash leftovers, and
    /// another berthd on the host (other roots, other bridge) may run one at any time: a
    /// veth without a master between its creation and `set_master` could be taken.
    pub fn create_veth_on(
        &mut self,
        host: &str,
        peer: &str,
        peer_netns: Option<&File>,
        master: Option<u32>,
    ) -> Result<u32> {
        check_ifname(host)?;
        check_ifname(peer)?;
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        if let Some(ns) = peer_netns {
            peer_msg
                .attributes
                .push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(host.to_string()));
        if let Some(bridge) = master {
            msg.attributes.push(LinkAttribute::Controller(bridge));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.new_link(&format!("create veth {host}"), msg)?;
        self.require_index(host)
    }

    /// Brings a link up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.set_link(&format!("set link {index} up"), msg)
    }

    /// Makes `index` a port of the bridge `master`.
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Controller(master));
        self.set_link(&format!("set link {index} master {master}"), msg)
    }

    /// Turns on hairpin mode on a bridge port, so the bridge may send a frame back out the
    /// port it came in on. A container reaching its own published port needs it when
    /// `br_netfilter` is loaded (Docker installs load it): the DNATed packet is then
    /// bridged back to the sender's port instead of routed (Docker sets it too when the
    /// userland proxy is off).
    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                on,
            )])),
        ]));
        self.request(
            &format!("set hairpin on link {index}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Renames a link (it must be down).
    pub fn set_name(&mut self, index: u32, name: &str) -> Result<()> {
        check_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.set_link(&format!("rename link {index} to {name}"), msg)
    }

    /// Moves a link into another network namespace.
    pub fn set_netns(&mut self, index: u32, netns: &File) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        self.set_link(&format!("move link {index} to netns"), msg)
    }

    /// Sets a fixed MAC address. Used on the bridge: otherwise the kernel gives it the
    /// lowest MAC of its ports, which changes as containers come and go and breaks ARP
    /// caches for up to minutes (netavark's bridge.rs has the story).
    pub fn set_mac(&mut self, index: u32, mac: Vec<u8>) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Address(mac));
        self.set_link(&format!("set link {index} mac"), msg)
    }

    /// Deletes a link. For a veth, the peer goes with it.
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(
            &format!("delete link {index}"),
            RouteNetlinkMessage::DelLink(msg),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Deletes the link called `name`; `false` if there was none.
    pub fn delete_link_by_name(&mut self, name: &str) -> Result<bool> {
        match self.link_index(name)? {
            Some(index) => match self.delete_link(index) {
                Ok(()) => Ok(true),
                // Gone in between (e.g. its veth peer's namespace went away).
                Err(LinkError::Netlink { source, .. })
                    if source.raw_os_error() == Some(libc::ENODEV) =>
                {
                    Ok(false)
                }
                Err(e) => Err(e),
            },
            None => Ok(false),
        }
    }

    /// Adds `ip/prefix_len` to a link.
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix_len;
        msg.header.index = index;
        msg.header.scope = AddressScope::Universe;
        msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V4(ip)));
        if prefix_len < 31 {
            let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
            let broadcast = Ipv4Addr::from(u32::from(ip) | host_bits);
            msg.attributes.push(AddressAttribute::Broadcast(broadcast));
        }
        self.request(
            &format!("add address {ip}/{prefix_len} to link {index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Adds the default route via `gateway` on link `index`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr, index: u32) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            &format!("add default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }
}

/// One link as [`Netlink::links`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSummary {
    pub index: u32,
    pub name: String,
    /// `Some(true)` for a veth, `Some(false)` for any other kind the kernel named, `None`
    /// when it named none (e.g. `lo`).
    pub is_veth: Option<bool>,
    /// The index of the bridge this link is a port of.
    pub master: Option<u32>,
}

impl LinkSummary {
    fn from_message(l: LinkMessage) -> Self {
        let mut out = LinkSummary {
            index: l.header.index,
            name: String::new(),
            is_veth: None,
            master: None,
        };
        for a in l.attributes {
            match a {
                LinkAttribute::IfName(n) => out.name = n,
                LinkAttribute::Controller(m) => out.master = Some(m),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            out.is_veth = Some(k == InfoKind::Veth);
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// A bridge network as the link layer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    pub name: String,
    /// The bridge's own address, the containers' gateway.
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
}

/// Creates the bridge with its gateway address and brings it up, unless it exists already
/// (then it is left as it is: another container is using it). Returns whether it was created.
/// Also sets the sysctls published ports need on it (see [`crate::sysctl`]).
pub fn ensure_bridge(nl: &mut Netlink, cfg: &BridgeConfig) -> Result<bool> {
    if nl.link_index(&cfg.name)?.is_some() {
        crate::sysctl::prepare_bridge(&cfg.name)?;
        return Ok(false);
    }
    let index = nl.create_bridge(&cfg.name)?;
    let configure = |nl: &mut Netlink| -> Result<()> {
        if let Some(mac) = nl.link_mac(index)? {
            nl.set_mac(index, mac)?;
        }
        nl.add_address(index, cfg.gateway, cfg.prefix_len)?;
        nl.set_up(index)?;
        crate::sysctl::prepare_bridge(&cfg.name)
    };
    if let Err(e) = configure(nl) {
        // Undo: a half-made bridge would make the next attempt think it is ready.
        let _ = nl.delete_link(index);
        return Err(e);
    }
    Ok(true)
}

/// Deletes the bridge; `false` if it was not there.
pub fn delete_bridge(nl: &mut Netlink, name: &str) -> Result<bool> {
    nl.delete_link_by_name(name)
}

/// One container's end of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLink {
    /// Host end of the veth pair, attached to the bridge. Derive it from the container id so
    /// teardown can find it from recorded state alone.
    pub host_ifname: String,
    /// Name inside the container, usually `eth0`.
    pub container_ifname: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// Whether the default route goes via `gateway`: only on the container's first network.
    pub default_route: bool,
    /// The container end's MAC; `None` leaves the kernel's random one.
    pub mac: Option<[u8; 6]>,
}

/// Connects the namespace `netns` to `bridge`: a veth pair whose peer is created inside the
/// namespace as `container_ifname`, with its address, the default route via the gateway
/// when `default_route`, `lo` up and the MAC if one is given; the host end joins the bridge
/// (in hairpin mode) and goes up. On failure the veth is deleted.
pub fn attach_container(
    nl: &mut Netlink,
    netns: &NetnsRef,
    bridge: &str,
    link: &ContainerLink,
) -> Result<()> {
    let ns_file = netns.open()?;
    let bridge_index = nl.require_index(bridge)?;
    let host_index = nl.create_veth_on(
        &link.host_ifname,
        &link.container_ifname,
        Some(&ns_file),
        Some(bridge_index),
    )?;
    let configure = |nl: &mut Netlink| -> Result<()> {
        let mut inside = Netlink::in_netns(&ns_file)?;
        let lo = inside.require_index("lo")?;
        inside.set_up(lo)?;
        let eth = inside.require_index(&link.container_ifname)?;
        if let Some(mac) = link.mac {
            // Set while the link is still down: not every driver takes a live change.
            inside.set_mac(eth, mac.to_vec())?;
        }
        inside.add_address(eth, link.address, link.prefix_len)?;
        inside.set_up(eth)?;
        if link.default_route {
            inside.add_default_route(link.gateway, eth)?;
        }
        nl.set_hairpin(host_index, true)?;
        nl.set_up(host_index)
    };
    if let Err(e) = configure(nl) {
        let _ = nl.delete_link(host_index);
        return Err(e);
    }
    Ok(())
}

/// Removes a container's veth pair by its host end; `false` if it was gone already (the
/// kernel deletes the pair when the container's namespace dies).
pub fn detach_container(nl: &mut Netlink, host_ifname: &str) -> Result<bool> {
    nl.delete_link_by_name(host_ifname)
}

/// `/run/netns/<name>`, where `ip netns add` puts named namespaces.
pub fn named_netns(name: &str) -> NetnsRef {
    NetnsRef::Path(Path::new("/run/netns").join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_rules() {
        assert!(valid_ifname("eth0"));
        assert!(valid_ifname("123456789012345"));
        assert!(!valid_ifname("1234567890123456"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("a b"));
        assert!(!valid_ifname("a:b"));
        assert!(!valid_ifname(".."));
    }

    #[test]
    fn netns_paths() {
        assert_eq!(NetnsRef::Pid(42).path(), PathBuf::from("/proc/42/ns/net"));
        assert_eq!(named_netns("x").path(), PathBuf::from("/run/netns/x"));
    }
}

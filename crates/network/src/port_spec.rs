//! `-p`/`--publish` specs, as Docker spells them:
//! `[hostIp:][hostPort:]containerPort[/tcp|/udp]`, with ranges (`8000-8005:80-85`), an empty
//! or missing host port meaning "pick a free one", and IPv6 host addresses in brackets
//! (`[::1]:8080:80`). Parsing is pure; [`reserve`] then binds each host port so that a port
//! already in use is a clear error before any firewall rule exists, and so that nothing
//! else can take it while the mapping lives (Docker's port allocator does the same).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::str::FromStr;

/// A transport protocol a port can be published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An inclusive port range; a single port is `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        Self {
            start: port,
            end: port,
        }
    }

    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Never true (a range holds at least one port); here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> {
        self.start..=self.end
    }
}

/// One parsed publish spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// `None`: every host address (Docker's default `0.0.0.0`).
    pub host_ip: Option<IpAddr>,
    /// `None`: pick free host ports. A range with a single container port means "any one
    /// free port of this range", as in Docker.
    pub host_ports: Option<PortRange>,
    pub container_ports: PortRange,
    pub protocol: Protocol,
}

/// What is wrong with a spec, or why its host port cannot be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortSpecError {
    #[error("invalid port spec {spec:?}: {reason}")]
    Invalid { spec: String, reason: String },
    #[error("host port {addr}/{protocol} is already in use")]
    InUse {
        addr: SocketAddr,
        protocol: Protocol,
    },
    #[error("no free host port in {start}-{end}/{protocol} on {ip}")]
    RangeExhausted {
        ip: IpAddr,
        start: u16,
        end: u16,
        protocol: Protocol,
    },
    #[error("cannot bind host port {addr}/{protocol}: {reason}")]
    Bind {
        addr: SocketAddr,
        protocol: Protocol,
        reason: String,
    },
}

impl FromStr for PortSpec {
    type Err = PortSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses one spec. See the module doc for the grammar.
pub fn parse(spec: &str) -> Result<PortSpec, PortSpecError> {
    let invalid = |reason: &str| PortSpecError::Invalid {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((rest, proto)) => {
            let protocol = match proto.to_ascii_lowercase().as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "" => return Err(invalid("empty protocol after '/'")),
                _ => return Err(invalid("protocol must be tcp or udp")),
            };
            (rest, protocol)
        }
        None => (spec, Protocol::Tcp),
    };

    // Split off a host IP: bracketed IPv6, or the first of three ':'-separated parts.
    let (host_ip, ports) =
        if let Some(after) = rest.strip_prefix('[') {
            let (ip, tail) = after
                .split_once(']')
                .ok_or_else(|| invalid("missing ']' after the IPv6 host address"))?;
            let ip: std::net::Ipv6Addr = ip
                .parse()
                .map_err(|_| invalid("bad IPv6 host address in brackets"))?;
            let tail = tail
                .strip_prefix(':')
                .ok_or_else(|| invalid("expected ':' after the bracketed host address"))?;
            if !tail.contains(':') {
                return Err(invalid(
                    "expected [hostIp]:hostPort:containerPort (the host port may be empty)",
                ));
            }
            (Some(IpAddr::V6(ip)), tail)
        } else {
            match rest.matches(':').count() {
                0 | 1 => (None, rest),
                2 => {
                    let (ip, tail) = rest
                        .split_once(':')
                        .ok_or_else(|| invalid("expected hostIp:hostPort:containerPort"))?;
                    if ip.is_empty() {
                        return Err(invalid("empty host IP"));
                    }
                    let ip: Ipv4Addr = ip.parse().map_err(|_| invalid("bad IPv4 host address"))?;
                    (Some(IpAddr::V4(ip)), tail)
                }
                _ => return Err(invalid(
                    "too many ':'; an IPv6 host address must be in brackets, e.g. [::1]:8080:80",
                )),
            }
        };

    let (host, container) = match ports.split_once(':') {
        Some((host, container)) => (Some(host), container),
        None => (None, ports),
    };
    if container.is_empty() {
        return Err(invalid("missing container port"));
    }
    let container_ports = parse_range(container, false).map_err(|r| invalid(&r))?;
    let host_ports = match host {
        None | Some("") => None,
        Some(h) => {
            let r = parse_range(h, true).map_err(|r| invalid(&r))?;
            // Docker reads a host port of 0 as "pick one".
            if r.start == 0 && r.end == 0 {
                None
            } else if r.start == 0 {
                return Err(invalid("host port range cannot start at 0"));
            } else {
                Some(r)
            }
        }
    };
    if let Some(h) = host_ports {
        if h.len() != container_ports.len() && container_ports.len() != 1 {
            return Err(invalid(
                "host and container port ranges must be the same size",
            ));
        }
    }
    Ok(PortSpec {
        host_ip,
        host_ports,
        container_ports,
        protocol,
    })
}

fn parse_port(s: &str, zero_ok: bool) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a port number"));
    }
    let port: u16 = s
        .parse()
        .map_err(|_| format!("port {s} is out of range (1-65535)"))?;
    if port == 0 && !zero_ok {
        return Err("port 0 is not a valid container port".to_string());
    }
    Ok(port)
}

fn parse_range(s: &str, zero_ok: bool) -> Result<PortRange, String> {
    match s.split_once('-') {
        None => Ok(PortRange::single(parse_port(s, zero_ok)?)),
        Some((a, b)) => {
            let start = parse_port(a, zero_ok)?;
            let end = parse_port(b, zero_ok)?;
            if end < start {
                return Err(format!("range {s} ends before it starts"));
            }
            Ok(PortRange { start, end })
        }
    }
}

/// One resolved host port -> container port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    /// `None`: every host address.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PortMapping {
    /// Whether the mapping is only for the host's own loopback (`127.0.0.0/8`, `::1`), which
    /// must never be reachable from another interface (moby#41872, moby#45610).
    pub fn is_loopback_only(&self) -> bool {
        self.host_ip.is_some_and(|ip| ip.is_loopback())
    }
}

/// The sockets that hold published host ports, and the mappings they stand for. Keep it as
/// long as the mappings exist: dropping it frees the ports for other programs.
#[derive(Debug, Default)]
pub struct PortReservation {
    mappings: Vec<PortMapping>,
    _tcp: Vec<TcpListener>,
    _udp: Vec<UdpSocket>,
}

impl PortReservation {
    pub fn mappings(&self) -> &[PortMapping] {
        &self.mappings
    }
}

/// Binds a socket for one host port (0 = let the kernel pick) and returns the port it got.
fn bind_one(
    res: &mut PortReservation,
    ip: IpAddr,
    port: u16,
    protocol: Protocol,
) -> Result<u16, PortSpecError> {
    let addr = SocketAddr::new(ip, port);
    let fail = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            PortSpecError::InUse { addr, protocol }
        } else {
            PortSpecError::Bind {
                addr,
                protocol,
                reason: e.to_string(),
            }
        }
    };
    let local = match protocol {
        Protocol::Tcp => {
            let l = TcpListener::bind(addr).map_err(fail)?;
            let local = l.local_addr().map_err(fail)?;
            res._tcp.push(l);
            local
        }
        Protocol::Udp => {
            let s = UdpSocket::bind(addr).map_err(fail)?;
            let local = s.local_addr().map_err(fail)?;
            res._udp.push(s);
            local
        }
    };
    Ok(local.port())
}

/// Resolves specs into mappings, binding every host port: free ports are picked where the
/// spec leaves them open, and a port that is taken fails the whole call (nothing stays
/// bound). Call it before adding any firewall rule.
pub fn reserve(specs: &[PortSpec]) -> Result<PortReservation, PortSpecError> {
    let mut res = PortReservation::default();
    for spec in specs {
        let bind_ip = spec.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        match spec.host_ports {
            None => {
                for container_port in spec.container_ports.ports() {
                    let host_port = bind_one(&mut res, bind_ip, 0, spec.protocol)?;
                    res.mappings.push(PortMapping {
                        host_ip: spec.host_ip,
                        host_port,
                        container_port,
                        protocol: spec.protocol,
                    });
                }
            }
            Some(hosts) if spec.container_ports.len() == 1 && hosts.len() > 1 => {
                // Any one free port of the range.
                let found = hosts
                    .ports()
                    .find_map(|p| bind_one(&mut res, bind_ip, p, spec.protocol).ok());
                let host_port = found.ok_or(PortSpecError::RangeExhausted {
                    ip: bind_ip,
                    start: hosts.start,
                    end: hosts.end,
                    protocol: spec.protocol,
                })?;
                res.mappings.push(PortMapping {
                    host_ip: spec.host_ip,
                    host_port,
                    container_port: spec.container_ports.start,
                    protocol: spec.protocol,
                });
            }
            Some(hosts) => {
                for (host_port, container_port) in hosts.ports().zip(spec.container_ports.ports()) {
                    bind_one(&mut res, bind_ip, host_port, spec.protocol)?;
                    res.mappings.push(PortMapping {
                        host_ip: spec.host_ip,
                        host_port,
                        container_port,
                        protocol: spec.protocol,
                    });
                }
            }
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> PortSpec {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        match parse(s) {
            Ok(p) => panic!("{s} parsed as {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn r(a: u16, b: u16) -> PortRange {
        PortRange { start: a, end: b }
    }

    #[test]
    fn full_forms() {
        assert_eq!(
            ok("8080:80"),
            PortSpec {
                host_ip: None,
                host_ports: Some(r(8080, 8080)),
                container_ports: r(80, 80),
                protocol: Protocol::Tcp
            }
        );
        let s = ok("127.0.0.1:8080:80/udp");
        assert_eq!(s.host_ip, Some("127.0.0.1".parse().expect("ip")));
        assert_eq!(s.protocol, Protocol::Udp);
        assert_eq!(ok("80/TCP").protocol, Protocol::Tcp);
        let s = ok("[::1]:8080:80");
        assert_eq!(s.host_ip, Some("::1".parse().expect("ip")));
        assert_eq!(s.host_ports, Some(r(8080, 8080)));
        let s = ok("[2001:db8::1]::80/udp");
        assert_eq!(s.host_ports, None);
        assert_eq!(s.protocol, Protocol::Udp);
    }

    #[test]
    fn open_host_ports() {
        for s in ["80", ":80", "0:80", "127.0.0.1::80", "[::]::80"] {
            let p = ok(s);
            assert_eq!(p.host_ports, None, "{s}");
            assert_eq!(p.container_ports, r(80, 80), "{s}");
        }
        assert_eq!(ok("80-85").container_ports, r(80, 85));
    }

    #[test]
    fn ranges() {
        let s = ok("8000-8005:80-85/tcp");
        assert_eq!(s.host_ports, Some(r(8000, 8005)));
        assert_eq!(s.container_ports, r(80, 85));
        // A host range for one container port: any one port of the range.
        let s = ok("8000-8005:80");
        assert_eq!(s.host_ports, Some(r(8000, 8005)));
        assert_eq!(s.container_ports.len(), 1);
        assert!(err("8000-8001:80-85").contains("same size"));
        assert!(err("8005-8000:80").contains("ends before"));
        assert!(err("1-:80").contains("not a port"));
    }

    #[test]
    fn bad_input() {
        for (s, why) in [
            ("", "missing container port"),
            ("8080:", "missing container port"),
            ("80/sctp", "tcp or udp"),
            ("80/", "empty protocol"),
            ("abc", "not a port"),
            ("+80", "not a port"),
            ("65536", "out of range"),
            ("0", "port 0"),
            ("8080:0", "port 0"),
            ("::1:8080:80", "brackets"),
            ("1.2.3:8080:80", "IPv4"),
            ("::80", "empty host IP"),
            ("[::1:8080:80", "']'"),
            ("[::1]8080:80", "':'"),
            ("[::1]:80", "hostPort"),
            ("[zz]:1:80", "IPv6"),
            ("a:b:c:d", "brackets"),
            ("0-5:80-85", "start at 0"),
            ("8080:80/tcp/udp", "not a port"),
        ] {
            let e = err(s);
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }

    #[test]
    fn loopback_only() {
        let m = |ip: Option<&str>| PortMapping {
            host_ip: ip.map(|s| s.parse().expect("ip")),
            host_port: 1,
            container_port: 1,
            protocol: Protocol::Tcp,
        };
        assert!(m(Some("127.0.0.1")).is_loopback_only());
        assert!(m(Some("127.1.2.3")).is_loopback_only());
        assert!(m(Some("::1")).is_loopback_only());
        assert!(!m(Some("0.0.0.0")).is_loopback_only());
        assert!(!m(None).is_loopback_only());
    }

    #[test]
    fn reserve_picks_free_ports_and_detects_busy_ones() {
        let res = reserve(&[ok("127.0.0.1::80"), ok("127.0.0.1::53/udp")]).expect("reserve");
        let m = res.mappings();
        assert_eq!(m.len(), 2);
        assert!(m.iter().all(|m| m.host_port != 0));
        // Held by the reservation: asking for the same port again fails clearly.
        let again = parse(&format!("127.0.0.1:{}:80", m[0].host_port)).expect("spec");
        let e = reserve(&[again]).expect_err("port is held");
        assert!(matches!(e, PortSpecError::InUse { .. }), "{e}");
        assert!(e.to_string().contains("already in use"));
        let port = m[0].host_port;
        drop(res);
        let freed = parse(&format!("127.0.0.1:{port}:80")).expect("spec");
        reserve(&[freed]).expect("port free after drop");
    }

    #[test]
    fn reserve_range_maps_one_to_one_and_any_of() {
        // Take a free port, then map the one-port range starting there.
        let probe = TcpListener::bind("127.0.0.1:0").expect("probe");
        let p = probe.local_addr().expect("addr").port();
        drop(probe);
        let res = match reserve(&[parse(&format!("127.0.0.1:{p}:80")).expect("spec")]) {
            Ok(r) => r,
            Err(_) => return, // raced with another process for that port; nothing to check
        };
        assert_eq!(res.mappings()[0].host_port, p);
        // Any-of: with p held, a range p-p+1 for a single container port takes p+1 (or
        // fails clearly if that one is busy too).
        if let Some(end) = p.checked_add(1) {
            match reserve(&[parse(&format!("127.0.0.1:{p}-{end}:80")).expect("spec")]) {
                Ok(r2) => assert_eq!(r2.mappings()[0].host_port, end),
                Err(e) => assert!(matches!(e, PortSpecError::RangeExhausted { .. })),
            }
        }
    }
}

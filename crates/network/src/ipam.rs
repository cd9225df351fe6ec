//! IP address management for one bridge network: which container has which address.
//!
//! Allocations live in a small JSON file (one per network) so that they survive a daemon
//! restart and teardown after a crash can find what was handed out. Every operation takes
//! an exclusive `flock` on a sibling lock file, reads the file, changes it and writes it back
//! through a temporary file and `rename`, so a crash leaves either the old or the new state.
//! Addresses are handed out round-robin from the last one given (as Podman's `ipam.go` does)
//! so that a released address is not reused at once by the next container.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// What can go wrong handing out addresses.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("ipam state {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ipam state {path} is corrupt (remove it to start over): {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("ipam state {path} is for subnet {found}, not {wanted}")]
    SubnetMismatch {
        path: PathBuf,
        found: Ipv4Net,
        wanted: Ipv4Net,
    },
    #[error("subnet {0} is too small: it needs room for a gateway and at least one container")]
    SubnetTooSmall(Ipv4Net),
    #[error("no free address left in subnet {0}")]
    Exhausted(Ipv4Net),
    #[error("cannot lock ipam state {path}: {errno}")]
    Lock {
        path: PathBuf,
        errno: nix::errno::Errno,
    },
    #[error("bad line in the route table: {0:?}")]
    BadRoute(String),
}

/// The file's content. `last` is where the round-robin scan resumes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct IpamState {
    subnet: Ipv4Net,
    #[serde(default)]
    last: Option<Ipv4Addr>,
    #[serde(default)]
    allocations: BTreeMap<String, Ipv4Addr>,
}

/// Address allocator for one subnet, backed by `<state_dir>/<network>.json`.
#[derive(Debug, Clone)]
pub struct Ipam {
    path: PathBuf,
    subnet: Ipv4Net,
}

/// The gateway of a subnet: the first host address (`.1` for a /24 or /16), the bridge's own.
pub fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1))
}

impl Ipam {
    /// Opens (without creating anything yet) the allocator for `network` in `state_dir`.
    /// The subnet must leave room for the network, gateway, broadcast and one container.
    pub fn new(state_dir: &Path, network: &str, subnet: Ipv4Net) -> Result<Self, IpamError> {
        let subnet = subnet.trunc();
        if subnet.prefix_len() > 29 {
            return Err(IpamError::SubnetTooSmall(subnet));
        }
        Ok(Self {
            path: state_dir.join(format!("{network}.json")),
            subnet,
        })
    }

    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    pub fn gateway(&self) -> Ipv4Addr {
        gateway(self.subnet)
    }

    /// The file the allocations are kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives `container_id` an address, or the one it already has (so a retried setup after
    /// a crash does not leak an address).
    pub fn allocate(&self, container_id: &str) -> Result<Ipv4Addr, IpamError> {
        self.update(|state| {
            if let Some(ip) = state.allocations.get(container_id) {
                return Ok(*ip);
            }
            let ip = next_free(state)?;
            state.allocations.insert(container_id.to_string(), ip);
            state.last = Some(ip);
            Ok(ip)
        })
    }

    /// Returns `container_id`'s address to the pool; `None` if it had none (already released).
    pub fn release(&self, container_id: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        self.update(|state| Ok(state.allocations.remove(container_id)))
    }

    /// Every container id and its address, for teardown of what a crash left behind.
    pub fn allocations(&self) -> Result<BTreeMap<String, Ipv4Addr>, IpamError> {
        self.update(|state| Ok(state.allocations.clone()))
    }

    /// Runs `f` on the state under the lock and writes the state back if `f` changed it.
    fn update<T>(
        &self,
        f: impl FnOnce(&mut IpamState) -> Result<T, IpamError>,
    ) -> Result<T, IpamError> {
        let io = |source| IpamError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let lock_path = self.path.with_extension("lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        // Held until the end of this function; dropping it unlocks.
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, errno)| {
            IpamError::Lock {
                path: lock_path.clone(),
                errno,
            }
        })?;
        // Every writer holds the lock until its rename: a temporary file seen now is what
        // a writer killed mid-write (berthd SIGKILLed) left.
        match fs::remove_file(self.path.with_extension("json.tmp")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }

        let mut state = match fs::read(&self.path) {
            // What a power loss can leave of an unsynced rename: nothing to keep.
            Ok(bytes) if bytes.is_empty() => IpamState {
                subnet: self.subnet,
                last: None,
                allocations: BTreeMap::new(),
            },
            Ok(bytes) => {
                let state: IpamState =
                    serde_json::from_slice(&bytes).map_err(|source| IpamError::Corrupt {
                        path: self.path.clone(),
                        source,
                    })?;
                if state.subnet != self.subnet {
                    return Err(IpamError::SubnetMismatch {
                        path: self.path.clone(),
                        found: state.subnet,
                        wanted: self.subnet,
                    });
                }
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IpamState {
                subnet: self.subnet,
                last: None,
                allocations: BTreeMap::new(),
            },
            Err(e) => return Err(io(e)),
        };
        let before = state.clone();
        let out = f(&mut state)?;
        if state != before {
            write_atomically(&self.path, &state).map_err(io)?;
        }
        Ok(out)
    }
}

/// Writes `state` to `path.tmp` and renames it over `path`, so that readers (and a daemon
/// that crashed mid-way) see either the old file or the new one, never a torn write.
///
/// No fsync, on purpose: the two it took (file and directory) were ~15 ms of a container's
/// network setup on an ext4 VM disk, three times the whole 5 ms budget. What the file
/// records only means something while the host is up (an address is held by a veth in a
/// live namespace); after a power loss nothing it lists exists any more, and a file the
/// crash left empty reads as an empty pool (see `update`).
fn write_atomically(path: &Path, state: &IpamState) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // A full disk: the old state stays, and no temporary file next to it.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// The next unused host address after `state.last`, wrapping around; skips the network
/// address, the gateway and the broadcast address.
fn next_free(state: &IpamState) -> Result<Ipv4Addr, IpamError> {
    let subnet = state.subnet;
    let first = u32::from(subnet.network()) + 2; // .0 is the network, .1 the gateway
    let end = u32::from(subnet.broadcast()); // exclusive
    let span = end - first;
    let start = match state.last {
        Some(last) if subnet.contains(&last) && (first..end).contains(&u32::from(last)) => {
            u32::from(last) - first + 1
        }
        _ => 0,
    };
    let used: std::collections::HashSet<Ipv4Addr> = state.allocations.values().copied().collect();
    (0..span)
        .map(|i| Ipv4Addr::from(first + (start + i) % span))
        .find(|ip| !used.contains(ip))
        .ok_or(IpamError::Exhausted(subnet))
}

/// Parses `/proc/net/route` into the destinations of its routes. The kernel prints each
/// `__be32` with `%08X` as a host-order integer, so the bytes come back with `to_ne_bytes`.
pub fn parse_proc_net_route(text: &str) -> Result<Vec<Ipv4Net>, IpamError> {
    let mut routes = Vec::new();
    for line in text.lines().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let bad = || IpamError::BadRoute(line.to_string());
        let (Some(dest), Some(mask)) = (fields.get(1), fields.get(7)) else {
            return Err(bad());
        };
        let dest = u32::from_str_radix(dest, 16).map_err(|_| bad())?;
        let mask = u32::from_str_radix(mask, 16).map_err(|_| bad())?;
        let dest = Ipv4Addr::from(dest.to_ne_bytes());
        let mask = Ipv4Addr::from(mask.to_ne_bytes());
        let net = Ipv4Net::with_netmask(dest, mask).map_err(|_| bad())?;
        routes.push(net.trunc());
    }
    Ok(routes)
}

/// The host's IPv4 routes (main table of the current network namespace).
pub fn host_routes() -> Result<Vec<Ipv4Net>, IpamError> {
    let path = Path::new("/proc/net/route");
    let text = fs::read_to_string(path).map_err(|source| IpamError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_proc_net_route(&text)
}

/// Whether two networks share any address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first candidate that overlaps none of `routes`. The default route (`0.0.0.0/0`)
/// overlaps everything and is ignored, as Docker does when it picks a default bridge pool.
pub fn pick_subnet(
    routes: &[Ipv4Net],
    candidates: impl IntoIterator<Item = Ipv4Net>,
) -> Option<Ipv4Net> {
    candidates.into_iter().find(|candidate| {
        routes
            .iter()
            .filter(|r| r.prefix_len() > 0)
            .all(|r| !overlaps(*candidate, *r))
    })
}

/// berth's default pool, in order: Docker's 172.17-31.0.0/16, then 192.168.x.0/24 networks
/// from 192.168.200.0 (away from the usual home-router ranges).
pub fn default_candidates() -> impl Iterator<Item = Ipv4Net> {
    let sixteens = (17u8..=31).filter_map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).ok());
    let twentyfours =
        (200u8..=255).filter_map(|c| Ipv4Net::new(Ipv4Addr::new(192, 168, c, 0), 24).ok());
    sixteens.chain(twentyfours)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test subnet")
    }

    #[test]
    fn allocates_round_robin_skipping_gateway_and_broadcast() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = Ipam::new(dir.path(), "n", net("10.213.9.0/29")).expect("ipam");
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 213, 9, 1));
        let got: Vec<_> = (0..5)
            .map(|i| ipam.allocate(&format!("c{i}")).expect("allocate"))
            .collect();
        let want: Vec<_> = (2..=6).map(|d| Ipv4Addr::new(10, 213, 9, d)).collect();
        assert_eq!(got, want);
        assert!(matches!(ipam.allocate("c5"), Err(IpamError::Exhausted(_))));
        // Idempotent for a container that already has an address.
        assert_eq!(ipam.allocate("c1").expect("again"), want[1]);
        assert_eq!(ipam.release("c1").expect("release"), Some(want[1]));
        assert_eq!(ipam.release("c1").expect("release twice"), None);
        assert_eq!(ipam.allocate("c9").expect("reuse"), want[1]);
    }

    #[test]
    fn round_robin_does_not_reuse_a_just_released_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = Ipam::new(dir.path(), "n", net("10.213.9.0/24")).expect("ipam");
        let a = ipam.allocate("a").expect("a");
        ipam.release("a").expect("release");
        let b = ipam.allocate("b").expect("b");
        assert_ne!(a, b);
    }

    #[test]
    fn persists_across_instances_and_checks_the_subnet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = Ipam::new(dir.path(), "n", net("10.213.9.0/24")).expect("ipam");
        let a = ipam.allocate("a").expect("a");
        let again = Ipam::new(dir.path(), "n", net("10.213.9.0/24")).expect("ipam");
        assert_eq!(again.allocations().expect("list").get("a"), Some(&a));
        assert!(!dir.path().join("n.json.tmp").exists());
        let other = Ipam::new(dir.path(), "n", net("10.213.10.0/24")).expect("ipam");
        assert!(matches!(
            other.allocate("b"),
            Err(IpamError::SubnetMismatch { .. })
        ));
        fs::write(ipam.path(), b"{not json").expect("corrupt");
        assert!(matches!(ipam.allocate("b"), Err(IpamError::Corrupt { .. })));
    }

    #[test]
    fn a_file_left_empty_by_a_power_loss_is_an_empty_pool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = Ipam::new(dir.path(), "n", net("10.213.9.0/24")).expect("ipam");
        ipam.allocate("a").expect("a");
        fs::write(ipam.path(), b"").expect("truncate");
        assert!(ipam.allocations().expect("list").is_empty());
        assert_eq!(ipam.allocate("b").expect("b"), Ipv4Addr::new(10, 213, 9, 2));
        // Anything else unreadable is still reported, not silently dropped.
        fs::write(ipam.path(), b"{").expect("corrupt");
        assert!(matches!(ipam.allocate("c"), Err(IpamError::Corrupt { .. })));
    }

    #[test]
    fn rejects_tiny_subnets() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(Ipam::new(dir.path(), "n", net("10.213.9.0/30")).is_err());
    }

    const PROC_ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";

    #[test]
    fn parses_proc_net_route() {
        // The fixture is little-endian, as the kernel prints it on x86 and arm64.
        if cfg!(target_endian = "big") {
            return;
        }
        let routes = parse_proc_net_route(PROC_ROUTE).expect("parse");
        assert_eq!(
            routes,
            vec![net("0.0.0.0/0"), net("192.0.2.0/24"), net("172.17.0.0/16")]
        );
        assert!(parse_proc_net_route("hdr\neth0 zz\n").is_err());
        assert!(parse_proc_net_route("hdr\n").expect("empty").is_empty());
    }

    #[test]
    fn picks_the_first_subnet_clear_of_routes() {
        let routes = [net("0.0.0.0/0"), net("172.17.0.0/16"), net("172.18.5.0/24")];
        assert_eq!(
            pick_subnet(&routes, default_candidates()),
            Some(net("172.19.0.0/16"))
        );
        // A route wider than the candidate blocks it too.
        let routes = [net("172.16.0.0/12")];
        assert_eq!(
            pick_subnet(&routes, default_candidates()),
            Some(net("192.168.200.0/24"))
        );
        assert_eq!(
            pick_subnet(&[net("10.0.0.0/8")], [net("10.1.0.0/16")]),
            None
        );
        assert_eq!(
            pick_subnet(&[], default_candidates()),
            Some(net("172.17.0.0/16"))
        );
    }

    #[test]
    fn host_routes_reads_this_machine() {
        // Only checks that the real file parses; the content depends on the host.
        host_routes().expect("/proc/net/route parses");
    }
}

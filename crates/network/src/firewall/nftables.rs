//! The nftables driver: everything lives in berth's own `table inet berth`, so that berth
//! never touches another program's tables, and a `flush ruleset` by the admin is the only
//! way its rules go away behind its back.
//!
//! Each operation is one batch in `nft -f -` syntax (nft applies a batch atomically); reading
//! back uses `nft -j list table`. Both go through libnftables in-process
//! ([`super::libnftables`], the library `nft` wraps, taken per call since it is unloaded
//! while idle) and fall back to spawning `nft` when the library cannot be loaded: same
//! text, same rules, no process per container. Layout (base chains hook into the kernel;
//! the others are reached by jumps from them):
//!
//! | chain | hook | what |
//! |---|---|---|
//! | `guard` | filter prerouting, raw prio | drop packets from a bridge to 127/8 (route_localnet is on for the bridge) |
//! | `prerouting` | nat prerouting, dstnat | `fib daddr type local jump hostports` |
//! | `output` | nat output, -100 | same, plus `jump hostports_local` |
//! | `postrouting` | nat postrouting, srcnat | masquerade: egress, localhost-sourced, hairpin |
//! | `forward` | filter forward | accept to/from the bridges |
//! | `isolation` | filter forward, -1 | `jump isolate_from`, unless the flow was DNATed (a published port) |
//! | `isolate_from` | - | per bridge: leaving it for another interface -> `jump isolate_to` |
//! | `isolate_to` | - | per bridge: entering it -> drop |
//!
//! The isolation chains are Docker's `DOCKER-ISOLATION-STAGE-1/2` in one table: a container
//! on one network cannot reach another network's containers by address, while traffic
//! within a bridge and egress to the host's other interfaces pass. Each network adds one
//! rule to each chain, so n networks cost 2n rules rather than n² pairs. `isolation` is its
//! own base chain, ahead of `forward`, so its order against the networks' accept rules does
//! not depend on which network was made first. Published ports stay reachable from every
//! network (the flow is DNATed), as with Docker's userland proxy.
//! | `hostports` | - | DNAT per published port on all or one host address |
//! | `hostports_local` | - | DNAT for ports published on 127.0.0.1: reached from `output` only, so other interfaces can never hit them (moby#41872) |

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::libnftables::LibNftables;
use super::{
    check_container_id, check_mappings, container_owners, ctr_tag, is_orphan, is_plain_name,
    owner_of, run_with_input, ContainerPorts, FirewallDriver, FirewallError, NetworkFirewall,
    Owner,
};

/// `nft` by absolute path when it is in a standard place: the daemon may inherit a long
/// PATH, and every rule change would otherwise search it.
fn nft() -> &'static str {
    static PATH: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nft")
    })
}

/// One rule of berth's table, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRule {
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
    /// Where a DNAT rule sends its traffic.
    pub dnat_to: Option<std::net::Ipv4Addr>,
}

/// How the driver's batches reach the kernel.
#[derive(Debug, Clone)]
enum Backend {
    /// [`LibNftables::shared`] when it loads, else `nft` spawned per batch.
    Shared,
    /// This libnftables instance (tests pin one).
    Pinned(Arc<LibNftables>),
    /// `nft` spawned per batch, by this path.
    Spawn(String),
}

/// nftables driver for `table inet <table>` (`berth` unless a test picks its own).
#[derive(Debug)]
pub struct NftablesDriver {
    table: String,
    /// Serializes read-modify-write operations of this process (listing, then a batch).
    lock: Mutex<()>,
    backend: Backend,
}

impl Default for NftablesDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl NftablesDriver {
    pub fn new() -> Self {
        Self {
            table: "berth".to_string(),
            lock: Mutex::new(()),
            backend: Backend::Shared,
        }
    }

    /// A driver for another table of berth's own; tests use one each so they can run in
    /// parallel and remove the whole table afterwards.
    pub fn with_table(table: &str) -> Result<Self, FirewallError> {
        if !is_plain_name(table) {
            return Err(FirewallError::BadName(table.to_string()));
        }
        Ok(Self {
            table: table.to_string(),
            lock: Mutex::new(()),
            backend: Backend::Shared,
        })
    }

    /// [`with_table`](Self::with_table) with libnftables loaded from `library` (a soname or
    /// a path) and `nft_binary` spawned when that fails. For tests that pin which path
    /// runs: a missing library forces the fallback, a missing binary proves it unused.
    #[doc(hidden)]
    pub fn with_table_and_paths(
        table: &str,
        library: &str,
        nft_binary: &str,
    ) -> Result<Self, FirewallError> {
        let mut driver = Self::with_table(table)?;
        driver.backend = match LibNftables::load(library) {
            Ok(lib) => Backend::Pinned(Arc::new(lib)),
            Err(e) => {
                tracing::debug!("libnftables not loaded ({e}); running {nft_binary} instead");
                Backend::Spawn(nft_binary.to_string())
            }
        };
        Ok(driver)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Whether rule changes go through libnftables in this process (no `nft` spawned).
    pub fn in_process(&self) -> bool {
        self.library().is_some()
    }

    /// The library for one call, if rule changes go in-process.
    fn library(&self) -> Option<Arc<LibNftables>> {
        match &self.backend {
            Backend::Shared => LibNftables::shared(),
            Backend::Pinned(lib) => Some(lib.clone()),
            Backend::Spawn(_) => None,
        }
    }

    /// The `nft` to spawn when there is no library.
    fn nft_binary(&self) -> &str {
        match &self.backend {
            Backend::Spawn(path) => path,
            _ => nft(),
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, batch: &str) -> Result<(), FirewallError> {
        tracing::debug!(table = %self.table, "nft batch:\n{batch}");
        match self.library() {
            Some(lib) => lib.run(batch, false).map(drop),
            None => run_with_input(self.nft_binary(), &["-f", "-"], batch).map(drop),
        }
    }

    /// Every rule in berth's table; empty when the table does not exist.
    pub fn list_rules(&self) -> Result<Vec<ListedRule>, FirewallError> {
        let args = ["-j", "list", "table", "inet", &self.table];
        let listed = match self.library() {
            Some(lib) => lib.run(&args[1..].join(" "), true),
            None => run_with_input(self.nft_binary(), &args, ""),
        };
        let out = match listed {
            Ok(out) => out,
            Err(FirewallError::Command { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e),
        };
        parse_listing(&out).map_err(|detail| FirewallError::Parse {
            cmd: format!("nft {}", args.join(" ")),
            detail,
        })
    }

    /// Deletes the given rules in one batch, then the whole table if no tagged rule is left.
    fn delete_rules(
        &self,
        all: &[ListedRule],
        doomed: &[&ListedRule],
    ) -> Result<(), FirewallError> {
        let left = all
            .iter()
            .filter(|r| r.comment.as_deref().and_then(owner_of).is_some())
            .count();
        let mut batch = String::new();
        if left == doomed.len() && !all.is_empty() {
            // Nothing of berth's is left: remove the table with its base chains, so the
            // host's packet path has no trace of berth.
            batch.push_str(&format!("delete table inet {}\n", self.table));
        } else {
            for r in doomed {
                batch.push_str(&format!(
                    "delete rule inet {} {} handle {}\n",
                    self.table, r.chain, r.handle
                ));
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.apply(&batch)
    }

    fn remove_where(&self, doomed: impl Fn(&Owner) -> bool) -> Result<(), FirewallError> {
        let all = self.list_rules()?;
        let hit: Vec<&ListedRule> = all
            .iter()
            .filter(|r| {
                r.comment
                    .as_deref()
                    .and_then(owner_of)
                    .is_some_and(|o| doomed(&o))
            })
            .collect();
        if hit.is_empty() {
            return Ok(());
        }
        self.delete_rules(&all, &hit)
    }
}

/// The batch that creates berth's table and base chains and (re)writes the static jumps.
/// `add` is a no-op for what exists, and the jump chains are flushed first, so running it
/// again changes nothing.
pub fn base_batch(table: &str) -> String {
    format!(
        "add table inet {t}
add chain inet {t} guard {{ type filter hook prerouting priority raw; policy accept; }}
add chain inet {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain inet {t} output {{ type nat hook output priority -100; policy accept; }}
add chain inet {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain inet {t} forward {{ type filter hook forward priority filter; policy accept; }}
add chain inet {t} isolation {{ type filter hook forward priority -1; policy accept; }}
add chain inet {t} hostports
add chain inet {t} hostports_local
add chain inet {t} isolate_from
add chain inet {t} isolate_to
flush chain inet {t} prerouting
flush chain inet {t} output
flush chain inet {t} isolation
add rule inet {t} isolation ct status dnat accept
add rule inet {t} isolation jump isolate_from
add rule inet {t} prerouting fib daddr type local jump hostports
add rule inet {t} output fib daddr type local jump hostports
add rule inet {t} output ip daddr 127.0.0.0/8 jump hostports_local
",
        t = table
    )
}

/// The network's rules, each `add rule` tagged with the bridge.
pub fn network_batch(table: &str, net: &NetworkFirewall) -> String {
    let t = table;
    let br = &net.bridge;
    let subnet = net.subnet;
    let c = format!("comment \"{}\"", net.tag());
    format!(
        "add rule inet {t} guard iifname \"{br}\" ip daddr 127.0.0.0/8 drop {c}
add rule inet {t} forward oifname \"{br}\" ct state established,related accept {c}
add rule inet {t} forward oifname \"{br}\" ct status dnat accept {c}
add rule inet {t} forward iifname \"{br}\" accept {c}
add rule inet {t} postrouting ip saddr {subnet} oifname != \"{br}\" masquerade {c}
add rule inet {t} postrouting oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade {c}
add rule inet {t} postrouting oifname \"{br}\" ip saddr {subnet} ct status dnat masquerade {c}
{isolation}",
        isolation = isolation_batch(table, net)
    )
}

/// The network's two isolation rules (see the module doc), tagged with the bridge.
pub fn isolation_batch(table: &str, net: &NetworkFirewall) -> String {
    let t = table;
    let br = &net.bridge;
    let c = format!("comment \"{}\"", net.tag());
    format!(
        "add rule inet {t} isolate_from iifname \"{br}\" oifname != \"{br}\" jump isolate_to {c}
add rule inet {t} isolate_to oifname \"{br}\" drop {c}
"
    )
}

/// DNAT rules for a container's mappings, tagged with the container id. One rule per port:
/// nft's port-range DNAT picks *a* port from the range rather than shifting one-to-one.
pub fn ports_batch(table: &str, ports: &ContainerPorts<'_>) -> String {
    let c = format!("comment \"{}\"", ctr_tag(ports.container_id));
    let mut batch = String::new();
    for m in ports.mappings {
        let chain = if m.is_loopback_only() {
            "hostports_local"
        } else {
            "hostports"
        };
        let daddr = match m.host_ip {
            Some(ip) if !ip.is_unspecified() => format!("ip daddr {ip} "),
            _ => String::new(),
        };
        batch.push_str(&format!(
            "add rule inet {table} {chain} {daddr}{proto} dport {hp} dnat ip to {cip}:{cp} {c}\n",
            proto = m.protocol,
            hp = m.host_port,
            cip = ports.container_ip,
            cp = m.container_port,
        ));
    }
    batch
}

/// Reads the rules out of `nft -j list table` output.
pub fn parse_listing(json: &str) -> Result<Vec<ListedRule>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("no \"nftables\" array")?;
    let mut rules = Vec::new();
    for item in items {
        let Some(rule) = item.get("rule") else {
            continue;
        };
        let chain = rule
            .get("chain")
            .and_then(Value::as_str)
            .ok_or("rule without chain")?;
        let handle = rule
            .get("handle")
            .and_then(Value::as_u64)
            .ok_or("rule without handle")?;
        let comment = rule
            .get("comment")
            .and_then(Value::as_str)
            .map(str::to_string);
        let dnat_to = rule
            .get("expr")
            .and_then(Value::as_array)
            .and_then(|exprs| {
                exprs
                    .iter()
                    .find_map(|e| e.get("dnat")?.get("addr")?.as_str()?.parse().ok())
            });
        rules.push(ListedRule {
            chain: chain.to_string(),
            handle,
            comment,
            dnat_to,
        });
    }
    Ok(rules)
}

impl FirewallDriver for NftablesDriver {
    fn setup_network(&self, net: &NetworkFirewall) -> Result<(), FirewallError> {
        net.check()?;
        let _g = self.guard();
        let tag = net.tag();
        let rules = self.list_rules()?;
        let tagged = |chain: Option<&str>| {
            rules.iter().any(|r| {
                r.comment.as_deref() == Some(tag.as_str()) && chain.is_none_or(|c| r.chain == c)
            })
        };
        let mut batch = base_batch(&self.table);
        if !tagged(None) {
            batch.push_str(&network_batch(&self.table, net));
        } else if !tagged(Some("isolate_to")) {
            // Set up by a berth without isolation: add just that.
            batch.push_str(&isolation_batch(&self.table, net));
        }
        self.apply(&batch)
    }

    fn teardown_network(&self, net: &NetworkFirewall) -> Result<(), FirewallError> {
        net.check()?;
        let _g = self.guard();
        let bridge = net.bridge.clone();
        self.remove_where(|o| matches!(o, Owner::Network(b) if *b == bridge))
    }

    fn add_port_mappings(
        &self,
        net: &NetworkFirewall,
        ports: &ContainerPorts<'_>,
    ) -> Result<(), FirewallError> {
        net.check()?;
        check_container_id(ports.container_id)?;
        check_mappings(ports.mappings)?;
        if ports.mappings.is_empty() {
            return Ok(());
        }
        let _g = self.guard();
        let rules = ports_batch(&self.table, ports);
        // The rules alone first: re-declaring the base chains costs ~12 ms of nft's time
        // (it re-registers their hooks), three times the rest of a container's network
        // setup. Only when the table or a chain is gone (a `flush ruleset`, a firewall
        // reload) do the base chains come along, so this still works on its own.
        match self.apply(&rules) {
            Err(FirewallError::Command { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                tracing::info!(table = %self.table, "base chains missing; adding them again");
                let mut batch = base_batch(&self.table);
                batch.push_str(&rules);
                self.apply(&batch)
            }
            other => other,
        }
    }

    fn remove_port_mappings(&self, container_id: &str) -> Result<(), FirewallError> {
        check_container_id(container_id)?;
        let _g = self.guard();
        self.remove_where(|o| matches!(o, Owner::Container(id) if id == container_id))
    }

    fn containers(&self) -> Result<Vec<String>, FirewallError> {
        let rules = self.list_rules()?;
        Ok(container_owners(
            rules.iter().filter_map(|r| r.comment.as_deref()),
        ))
    }

    fn containers_in(&self, subnet: ipnet::Ipv4Net) -> Result<Vec<String>, FirewallError> {
        let rules = self.list_rules()?;
        Ok(container_owners(
            rules
                .iter()
                .filter(|r| r.dnat_to.is_some_and(|ip| subnet.contains(&ip)))
                .filter_map(|r| r.comment.as_deref()),
        ))
    }

    fn cleanup_all(
        &self,
        known_containers: &[&str],
        known_networks: &[&str],
    ) -> Result<(), FirewallError> {
        let _g = self.guard();
        self.remove_where(|o| is_orphan(o, known_containers, known_networks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port_spec::{PortMapping, Protocol};

    #[test]
    fn network_rules_are_tagged_and_scoped_to_the_bridge() {
        let net = NetworkFirewall {
            bridge: "br9".into(),
            subnet: "10.213.1.0/24".parse().expect("subnet"),
        };
        let b = network_batch("berth", &net);
        assert!(b.lines().all(|l| l.ends_with("comment \"berth:net=br9\"")));
        assert!(b.contains("postrouting ip saddr 10.213.1.0/24 oifname != \"br9\" masquerade"));
        assert!(b.contains("guard iifname \"br9\" ip daddr 127.0.0.0/8 drop"));
        assert!(
            b.contains("isolate_from iifname \"br9\" oifname != \"br9\" jump isolate_to comment")
        );
        assert!(b.contains("isolate_to oifname \"br9\" drop comment"));
    }

    #[test]
    fn isolation_skips_published_ports_and_runs_before_forward() {
        let b = base_batch("berth");
        let dnat = b
            .find("add rule inet berth isolation ct status dnat accept")
            .expect("dnat exemption");
        let jump = b
            .find("add rule inet berth isolation jump isolate_from")
            .expect("jump");
        assert!(dnat < jump);
        assert!(b.contains("isolation { type filter hook forward priority -1;"));
    }

    #[test]
    fn loopback_ports_go_to_the_output_only_chain() {
        let m = |ip: Option<&str>, hp| PortMapping {
            host_ip: ip.map(|s| s.parse().expect("ip")),
            host_port: hp,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        let mappings = [
            m(None, 8080),
            m(Some("127.0.0.1"), 8081),
            m(Some("0.0.0.0"), 8082),
        ];
        let b = ports_batch(
            "berth",
            &ContainerPorts {
                container_id: "c1",
                container_ip: "10.213.1.2".parse().expect("ip"),
                mappings: &mappings,
            },
        );
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(
            lines[0],
            "add rule inet berth hostports tcp dport 8080 dnat ip to 10.213.1.2:80 comment \"berth:ctr=c1\""
        );
        assert!(lines[1]
            .starts_with("add rule inet berth hostports_local ip daddr 127.0.0.1 tcp dport 8081"));
        assert!(lines[2].starts_with("add rule inet berth hostports tcp dport 8082"));
    }

    #[test]
    fn parses_a_listing() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "berth", "handle": 1}},
            {"chain": {"family": "inet", "table": "berth", "name": "hostports", "handle": 2}},
            {"rule": {"family": "inet", "table": "berth", "chain": "hostports", "handle": 7,
                      "comment": "berth:ctr=c1", "expr": [{"match": {"op": "==",
                      "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
                      {"dnat": {"family": "ip", "addr": "10.1.2.3", "port": 80}}]}},
            {"rule": {"family": "inet", "table": "berth", "chain": "output", "handle": 8, "expr": []}}]}"#;
        let rules = parse_listing(json).expect("parse");
        assert_eq!(
            rules,
            vec![
                ListedRule {
                    chain: "hostports".into(),
                    handle: 7,
                    comment: Some("berth:ctr=c1".into()),
                    dnat_to: Some(std::net::Ipv4Addr::new(10, 1, 2, 3)),
                },
                ListedRule {
                    chain: "output".into(),
                    handle: 8,
                    comment: None,
                    dnat_to: None,
                },
            ]
        );
        assert!(parse_listing("{}").is_err());
        assert!(parse_listing("nope").is_err());
    }
}

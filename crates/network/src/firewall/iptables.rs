//! The iptables driver, for hosts without `nft`. Rules live only in berth's own chains
//! (`<PREFIX>-FORWARD` in filter, `<PREFIX>-POSTROUTING`, `<PREFIX>-DNAT` and
//! `<PREFIX>-DNAT-LOCAL` in nat, `<PREFIX>-GUARD` in raw; the prefix is `BERTH`), reached by
//! one jump each from the built-in chains. Network isolation (`<PREFIX>-ISOLATE-1/2`, as
//! Docker's `DOCKER-ISOLATION-STAGE-1/2`) is reached from the top of `<PREFIX>-FORWARD`,
//! ahead of every accept there, for flows that were not DNATed. Changes go through `iptables-restore --noflush`
//! in one batch per table; removal reads `iptables-save` and turns berth's tagged `-A`
//! lines into `-D` lines. The same layout as the nftables driver, see there for the why.

use std::sync::Mutex;

use super::{
    check_container_id, check_mappings, container_owners, ctr_tag, is_orphan, is_plain_name,
    owner_of, run_with_input, ContainerPorts, FirewallDriver, FirewallError, NetworkFirewall,
    Owner,
};

/// iptables driver for the chains named `<prefix>-*`.
#[derive(Debug)]
pub struct IptablesDriver {
    prefix: String,
    lock: Mutex<()>,
}

impl Default for IptablesDriver {
    fn default() -> Self {
        Self::new()
    }
}

/// A built-in chain that jumps to a berth chain, and the match on that jump.
type Jump = (&'static str, &'static str);

/// Table, berth chain suffix, built-in chains that jump to it.
const CHAINS: &[(&str, &str, &[Jump])] = &[
    ("filter", "FORWARD", &[("FORWARD", "")]),
    ("filter", "ISOLATE-1", &[]),
    ("filter", "ISOLATE-2", &[]),
    ("raw", "GUARD", &[("PREROUTING", "")]),
    (
        "nat",
        "DNAT",
        &[
            ("PREROUTING", "-m addrtype --dst-type LOCAL "),
            ("OUTPUT", "-m addrtype --dst-type LOCAL "),
        ],
    ),
    ("nat", "DNAT-LOCAL", &[("OUTPUT", "-d 127.0.0.0/8 ")]),
    ("nat", "POSTROUTING", &[("POSTROUTING", "")]),
];

impl IptablesDriver {
    pub fn new() -> Self {
        Self {
            prefix: "BERTH".to_string(),
            lock: Mutex::new(()),
        }
    }

    /// Chains under another prefix of berth's own (tests use one each). At most 12 bytes,
    /// so that `<prefix>-DNAT-LOCAL` fits iptables' 28-byte chain names.
    pub fn with_prefix(prefix: &str) -> Result<Self, FirewallError> {
        if !is_plain_name(prefix) || prefix.len() > 12 {
            return Err(FirewallError::BadName(prefix.to_string()));
        }
        Ok(Self {
            prefix: prefix.to_string(),
            lock: Mutex::new(()),
        })
    }

    fn chain(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, table: &str) -> Result<String, FirewallError> {
        run_with_input("iptables-save", &["-t", table], "")
    }

    fn restore(&self, table: &str, body: &str) -> Result<(), FirewallError> {
        if body.is_empty() {
            return Ok(());
        }
        let batch = format!("*{table}\n{body}COMMIT\n");
        tracing::debug!("iptables-restore batch:\n{batch}");
        run_with_input("iptables-restore", &["--noflush", "-w"], &batch).map(drop)
    }

    /// Creates berth's chains and jumps that are missing. A `:CHAIN` line would flush an
    /// existing chain under `--noflush`, so only missing chains are declared.
    fn ensure_chains(&self) -> Result<(), FirewallError> {
        for table in ["filter", "raw", "nat"] {
            let saved = self.save(table)?;
            let mut body = String::new();
            for (_, suffix, jumps) in CHAINS.iter().filter(|(t, _, _)| *t == table) {
                let chain = self.chain(suffix);
                if !saved
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(&format!(":{chain}")))
                {
                    body.push_str(&format!(":{chain} - [0:0]\n"));
                }
                for (builtin, matcher) in *jumps {
                    let rule = format!("-A {builtin} {matcher}-j {chain}");
                    if !saved.lines().any(|l| l.trim() == rule) {
                        body.push_str(&format!("-I {builtin} 1 {matcher}-j {chain}\n"));
                    }
                }
            }
            if table == "filter" {
                // Untagged and first in berth's FORWARD chain, so that isolation comes
                // before any network's accept whatever order the networks came in.
                let (fwd, iso) = (self.chain("FORWARD"), self.chain("ISOLATE-1"));
                let rule = format!("-A {fwd} -m conntrack ! --ctstate DNAT -j {iso}");
                if !saved.lines().any(|l| l.trim() == rule) {
                    body.push_str(&format!(
                        "-I {fwd} 1 -m conntrack ! --ctstate DNAT -j {iso}\n"
                    ));
                }
            }
            self.restore(table, &body)?;
        }
        Ok(())
    }

    /// Deletes berth's rules whose tag `doomed` accepts, one batch per table.
    fn remove_where(&self, doomed: impl Fn(&Owner) -> bool) -> Result<(), FirewallError> {
        let own = format!("-A {}-", self.prefix);
        for table in ["filter", "raw", "nat"] {
            let saved = self.save(table)?;
            let mut body = String::new();
            for line in saved.lines().filter(|l| l.starts_with(&own)) {
                let Some(comment) = comment_of(line) else {
                    continue;
                };
                if owner_of(&comment).is_some_and(|o| doomed(&o)) {
                    body.push_str(&format!("-D{}\n", &line[2..]));
                }
            }
            self.restore(table, &body)?;
        }
        Ok(())
    }

    /// Lines of berth's chains in `iptables-save` form, for tests and debugging.
    pub fn list_rules(&self) -> Result<Vec<String>, FirewallError> {
        let own = format!("-A {}-", self.prefix);
        let mut out = Vec::new();
        for table in ["filter", "raw", "nat"] {
            out.extend(
                self.save(table)?
                    .lines()
                    .filter(|l| l.starts_with(&own))
                    .map(str::to_string),
            );
        }
        Ok(out)
    }

    /// Removes berth's chains and the jumps to them (when no rule of berth is left).
    pub fn remove_chains(&self) -> Result<(), FirewallError> {
        for table in ["filter", "raw", "nat"] {
            let saved = self.save(table)?;
            let mut body = String::new();
            for (_, suffix, jumps) in CHAINS.iter().filter(|(t, _, _)| *t == table) {
                let chain = self.chain(suffix);
                for (builtin, matcher) in *jumps {
                    let rule = format!("-A {builtin} {matcher}-j {chain}");
                    if saved.lines().any(|l| l.trim() == rule) {
                        body.push_str(&format!("-D {builtin} {matcher}-j {chain}\n"));
                    }
                }
            }
            for (_, suffix, _) in CHAINS.iter().filter(|(t, _, _)| *t == table) {
                let chain = self.chain(suffix);
                if saved
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(&format!(":{chain}")))
                {
                    body.push_str(&format!("-F {chain}\n-X {chain}\n"));
                }
            }
            self.restore(table, &body)?;
        }
        Ok(())
    }
}

/// The address of `--to-destination IP[:port]` in an `iptables-save` line.
fn dnat_target(line: &str) -> Option<std::net::Ipv4Addr> {
    let rest = line.split("--to-destination ").nth(1)?;
    let dest = rest.split_whitespace().next()?;
    dest.split(':').next()?.parse().ok()
}

/// The `--comment` value of an `iptables-save` line (quoted or not).
fn comment_of(line: &str) -> Option<String> {
    let rest = line.split("--comment ").nth(1)?;
    if let Some(q) = rest.strip_prefix('"') {
        q.split('"').next().map(str::to_string)
    } else {
        rest.split_whitespace().next().map(str::to_string)
    }
}

impl FirewallDriver for IptablesDriver {
    fn setup_network(&self, net: &NetworkFirewall) -> Result<(), FirewallError> {
        net.check()?;
        let _g = self.guard();
        self.ensure_chains()?;
        let tag = net.tag();
        if self
            .list_rules()?
            .iter()
            .any(|l| comment_of(l).as_deref() == Some(tag.as_str()))
        {
            return Ok(());
        }
        let br = &net.bridge;
        let s = net.subnet;
        let c = format!("-m comment --comment {tag}");
        let (fwd, guard, post) = (
            self.chain("FORWARD"),
            self.chain("GUARD"),
            self.chain("POSTROUTING"),
        );
        self.restore(
            "filter",
            &format!(
                "-A {fwd} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT {c}\n\
                 -A {fwd} -o {br} -m conntrack --ctstate DNAT -j ACCEPT {c}\n\
                 -A {fwd} -i {br} -j ACCEPT {c}\n\
                 -A {iso1} -i {br} ! -o {br} -j {iso2} {c}\n\
                 -A {iso2} -o {br} -j DROP {c}\n",
                iso1 = self.chain("ISOLATE-1"),
                iso2 = self.chain("ISOLATE-2"),
            ),
        )?;
        self.restore(
            "raw",
            &format!("-A {guard} -i {br} -d 127.0.0.0/8 -j DROP {c}\n"),
        )?;
        self.restore(
            "nat",
            &format!(
                "-A {post} -s {s} ! -o {br} -j MASQUERADE {c}\n\
                 -A {post} -o {br} -s 127.0.0.0/8 -j MASQUERADE {c}\n\
                 -A {post} -o {br} -s {s} -m conntrack --ctstate DNAT -j MASQUERADE {c}\n"
            ),
        )
    }

    fn teardown_network(&self, net: &NetworkFirewall) -> Result<(), FirewallError> {
        net.check()?;
        let _g = self.guard();
        let bridge = net.bridge.clone();
        self.remove_where(|o| matches!(o, Owner::Network(b) if *b == bridge))?;
        // As the nftables driver drops its table: with no rule of berth's left, the chains
        // and jumps go too, so the host's packet path has no trace of berth.
        let left = self
            .list_rules()?
            .iter()
            .any(|l| comment_of(l).as_deref().and_then(owner_of).is_some());
        if !left {
            self.remove_chains()?;
        }
        Ok(())
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
        self.ensure_chains()?;
        let tag = ctr_tag(ports.container_id);
        let mut body = String::new();
        for m in ports.mappings {
            let chain = if m.is_loopback_only() {
                self.chain("DNAT-LOCAL")
            } else {
                self.chain("DNAT")
            };
            let daddr = match m.host_ip {
                Some(ip) if !ip.is_unspecified() => format!("-d {ip}/32 "),
                _ => String::new(),
            };
            body.push_str(&format!(
                "-A {chain} {daddr}-p {p} -m {p} --dport {hp} -m comment --comment {tag} -j DNAT --to-destination {cip}:{cp}\n",
                p = m.protocol,
                hp = m.host_port,
                cip = ports.container_ip,
                cp = m.container_port,
            ));
        }
        self.restore("nat", &body)
    }

    fn remove_port_mappings(&self, container_id: &str) -> Result<(), FirewallError> {
        check_container_id(container_id)?;
        let _g = self.guard();
        self.remove_where(|o| matches!(o, Owner::Container(id) if id == container_id))
    }

    fn containers(&self) -> Result<Vec<String>, FirewallError> {
        let comments: Vec<String> = self
            .list_rules()?
            .iter()
            .filter_map(|l| comment_of(l))
            .collect();
        Ok(container_owners(comments.iter().map(String::as_str)))
    }

    fn containers_in(&self, subnet: ipnet::Ipv4Net) -> Result<Vec<String>, FirewallError> {
        let comments: Vec<String> = self
            .list_rules()?
            .iter()
            .filter(|l| dnat_target(l).is_some_and(|ip| subnet.contains(&ip)))
            .filter_map(|l| comment_of(l))
            .collect();
        Ok(container_owners(comments.iter().map(String::as_str)))
    }

    fn cleanup_all(
        &self,
        known_containers: &[&str],
        known_networks: &[&str],
    ) -> Result<(), FirewallError> {
        let _g = self.guard();
        self.remove_where(|o| is_orphan(o, known_containers, known_networks))?;
        if known_containers.is_empty() && known_networks.is_empty() {
            self.remove_chains()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_comments() {
        assert_eq!(
            comment_of("-A BERTH-DNAT -p tcp -m comment --comment berth:ctr=a -j DNAT").as_deref(),
            Some("berth:ctr=a")
        );
        assert_eq!(
            comment_of("-A X -m comment --comment \"berth:net=b\" -j ACCEPT").as_deref(),
            Some("berth:net=b")
        );
        assert_eq!(comment_of("-A X -j ACCEPT"), None);
        assert_eq!(
            dnat_target("-A BERTH-DNAT -p tcp -m tcp --dport 8080 -m comment --comment berth:ctr=a -j DNAT --to-destination 10.1.2.3:80"),
            Some(std::net::Ipv4Addr::new(10, 1, 2, 3))
        );
        assert_eq!(dnat_target("-A X -j ACCEPT"), None);
        assert!(IptablesDriver::with_prefix("TOOLONGPREFIX1").is_err());
    }
}

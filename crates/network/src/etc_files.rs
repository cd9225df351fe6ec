//! The `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` berth writes for a container,
//! byte for byte what Docker writes (libnetwork's `etchosts` and `resolvconf` packages), so
//! that images and scripts that parse them see nothing new. Pure functions: the daemon
//! writes the strings into the container's directory and bind-mounts them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// Docker's fixed head of `/etc/hosts` (libnetwork/etchosts `defaultContent`).
const HOSTS_DEFAULT: &str = "127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
";

/// `/etc/hosts`: the fixed entries, then `--add-host` entries (`extra`, as name and address)
/// in the order given, then the container's own address and hostname, last, the way Docker's
/// sandbox appends it once the endpoint has an address. A dotted hostname also gets its first
/// label as an alias, as Docker does for an FQDN. `ip: None` (no network): no own line.
pub fn hosts(hostname: &str, ip: Option<Ipv4Addr>, extra: &[(String, IpAddr)]) -> String {
    let mut out = String::from(HOSTS_DEFAULT);
    for (name, addr) in extra {
        out.push_str(&format!("{addr}\t{name}\n"));
    }
    if let Some(ip) = ip {
        let names = match hostname.split_once('.') {
            Some((short, _)) if !short.is_empty() => format!("{hostname} {short}"),
            _ => hostname.to_string(),
        };
        out.push_str(&format!("{ip}\t{names}\n"));
    }
    out
}

/// Docker's fallback when the host has no nameserver a container can reach
/// (libnetwork/resolvconf `defaultIPv4Dns`).
pub const DEFAULT_NAMESERVERS: [Ipv4Addr; 2] =
    [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];

/// Whether a `nameserver` line is one the container can use: not the host's loopback
/// (127.0.0.0/8, `::1`: inside the container that is the container itself), and not IPv6,
/// since berth's containers have no IPv6 address (Docker drops IPv6 nameservers too when
/// the network has IPv6 off). Lines whose address does not parse are kept as they are.
fn usable_nameserver(line: &str) -> bool {
    let mut words = line.split_whitespace();
    if words.next() != Some("nameserver") {
        return true;
    }
    let Some(addr) = words.next() else {
        return true;
    };
    // A scoped IPv6 address (`fe80::1%eth0`) names a host interface.
    let addr = addr.split('%').next().unwrap_or(addr);
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => !v4.is_loopback(),
        Ok(IpAddr::V6(_)) => false,
        Err(_) => true,
    }
}

fn is_nameserver(line: &str) -> bool {
    line.split_whitespace().next() == Some("nameserver")
}

/// The container's `/etc/resolv.conf` from the host's: every line kept (search, options,
/// comments) except nameservers the container cannot reach; if no nameserver is left,
/// Docker's defaults 8.8.8.8 and 8.8.4.4 are appended.
pub fn resolv_conf(host_resolv: &str) -> String {
    let mut out = String::new();
    let mut nameservers = 0;
    for line in host_resolv.lines() {
        if !usable_nameserver(line) {
            continue;
        }
        if is_nameserver(line) {
            nameservers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if nameservers == 0 {
        for ns in DEFAULT_NAMESERVERS {
            out.push_str(&format!("nameserver {ns}\n"));
        }
    }
    out
}

/// Where systemd-resolved keeps the real upstream servers.
pub const SYSTEMD_RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// Which host file to feed to [`resolv_conf`]: when `/etc/resolv.conf` (given as
/// `etc_resolv`) only points at systemd-resolved's stub `127.0.0.53`, which a container
/// cannot reach, the upstream list systemd-resolved writes is the one to use (Docker's
/// `resolvconf.Path`).
pub fn host_resolv_path(etc_resolv: &str) -> &'static Path {
    let servers: Vec<&str> = etc_resolv
        .lines()
        .filter(|l| is_nameserver(l))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    if servers == ["127.0.0.53"] {
        Path::new(SYSTEMD_RESOLVED_UPSTREAM)
    } else {
        Path::new("/etc/resolv.conf")
    }
}

/// `/etc/hostname`: the name and a newline.
pub fn hostname_file(hostname: &str) -> String {
    format!("{hostname}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_matches_docker() {
        // `docker run --rm alpine cat /etc/hosts` on the default bridge.
        let want = "127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
172.17.0.2\t3f2a9c1d0b7e
";
        assert_eq!(
            hosts("3f2a9c1d0b7e", Some(Ipv4Addr::new(172, 17, 0, 2)), &[]),
            want
        );
    }

    #[test]
    fn hosts_extra_entries_come_before_the_own_line() {
        let extra = vec![
            ("db".to_string(), "10.0.0.5".parse().expect("ip")),
            ("v6host".to_string(), "2001:db8::1".parse().expect("ip")),
        ];
        let text = hosts(
            "web.example.com",
            Some(Ipv4Addr::new(172, 17, 0, 3)),
            &extra,
        );
        let tail: Vec<&str> = text.lines().skip(6).collect();
        assert_eq!(
            tail,
            vec![
                "10.0.0.5\tdb",
                "2001:db8::1\tv6host",
                "172.17.0.3\tweb.example.com web",
            ]
        );
    }

    #[test]
    fn hosts_without_network_has_no_own_line() {
        assert_eq!(hosts("x", None, &[]), HOSTS_DEFAULT);
    }

    #[test]
    fn resolv_drops_loopback_and_ipv6_and_keeps_the_rest() {
        let host = "# generated by NetworkManager
search lan example.com
nameserver 127.0.0.53
nameserver 127.1.2.3
nameserver ::1
nameserver fe80::1%eth0
nameserver 192.168.1.1
options edns0 trust-ad
";
        assert_eq!(
            resolv_conf(host),
            "# generated by NetworkManager
search lan example.com
nameserver 192.168.1.1
options edns0 trust-ad
"
        );
    }

    #[test]
    fn resolv_falls_back_to_google_dns() {
        let host = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .";
        assert_eq!(
            resolv_conf(host),
            "options edns0 trust-ad\nsearch .\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(resolv_conf(""), "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }

    #[test]
    fn resolv_path_follows_systemd_resolved() {
        assert_eq!(
            host_resolv_path("nameserver 127.0.0.53\noptions edns0\n"),
            Path::new(SYSTEMD_RESOLVED_UPSTREAM)
        );
        assert_eq!(
            host_resolv_path("nameserver 127.0.0.53\nnameserver 1.1.1.1\n"),
            Path::new("/etc/resolv.conf")
        );
        assert_eq!(host_resolv_path(""), Path::new("/etc/resolv.conf"));
    }

    #[test]
    fn hostname_file_ends_with_newline() {
        assert_eq!(hostname_file("3f2a9c1d0b7e"), "3f2a9c1d0b7e\n");
    }
}

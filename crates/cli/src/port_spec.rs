//! `-p/--publish` specs -> `ExposedPorts` and `HostConfig.PortBindings`, following Docker's
//! `nat.ParsePortSpec` (github.com/docker/go-connections/nat): `[ip:][hostPort:]containerPort
//! [/proto]`, ranges on either side, IPv6 in brackets.

use std::net::IpAddr;

use berth_api::container::{EmptyObject, PortBinding, PortMap, StringSet};

/// One container port and the host side it is published on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// `"80/tcp"`.
    pub port: String,
    pub binding: PortBinding,
}

/// `8000-8010` or `80` -> (start, end). Docker's `ParsePortRange`.
fn parse_range(s: &str) -> Result<(u16, u16), ()> {
    if s.is_empty() {
        return Err(());
    }
    match s.split_once('-') {
        None => {
            let p = s.parse::<u16>().map_err(|_| ())?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let a = a.parse::<u16>().map_err(|_| ())?;
            let b = b.parse::<u16>().map_err(|_| ())?;
            if b < a {
                return Err(());
            }
            Ok((a, b))
        }
    }
}

/// Docker's `splitParts`: everything before the last two colons is the IP.
fn split_parts(raw: &str) -> (String, String, String) {
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let container = parts[n - 1].to_owned();
    match n {
        1 => (String::new(), String::new(), container),
        2 => (String::new(), parts[0].to_owned(), container),
        3 => (parts[0].to_owned(), parts[1].to_owned(), container),
        _ => (parts[..n - 2].join(":"), parts[n - 2].to_owned(), container),
    }
}

/// Docker's `SplitProtoPort`: `80/udp` -> (`udp`, `80`); no proto means tcp.
fn split_proto(raw: &str) -> (String, String) {
    let parts: Vec<&str> = raw.split('/').collect();
    if raw.is_empty() || parts[0].is_empty() {
        return (String::new(), String::new());
    }
    if parts.len() == 1 || parts[1].is_empty() {
        return ("tcp".into(), parts[0].to_owned());
    }
    (parts[1].to_owned(), parts[0].to_owned())
}

/// One `-p` value -> its mappings, with Docker's error texts.
pub fn parse_port_spec(raw: &str) -> Result<Vec<PortMapping>, String> {
    let (ip, host_port, container) = split_parts(raw);
    let (proto, container) = split_proto(&container);
    let mut ip = ip;
    if ip.starts_with('[') {
        ip = ip
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .ok_or_else(|| format!("invalid IP address {ip}"))?
            .to_owned();
    }
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    if container.is_empty() {
        return Err(format!("no port specified: {raw}<empty>"));
    }
    let (start, end) =
        parse_range(&container).map_err(|_| format!("invalid containerPort: {container}"))?;
    let (host_start, host_end) = if host_port.is_empty() {
        (0, 0)
    } else {
        parse_range(&host_port).map_err(|_| format!("invalid hostPort: {host_port}"))?
    };
    if !host_port.is_empty() && end - start != host_end - host_start && end != start {
        // A host range with a single container port is a range to pick from; otherwise the
        // sizes must match.
        return Err(format!(
            "invalid ranges specified for container and host Ports: {container} and {host_port}"
        ));
    }
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let mut out = Vec::new();
    for i in 0..=(end - start) {
        let mut host = if host_port.is_empty() {
            String::new()
        } else {
            (u32::from(host_start) + u32::from(i)).to_string()
        };
        if start == end && host_start != host_end {
            host = format!("{host}-{host_end}");
        }
        out.push(PortMapping {
            port: format!("{}/{proto}", u32::from(start) + u32::from(i)),
            binding: PortBinding {
                host_ip: ip.clone(),
                host_port: host,
            },
        });
    }
    Ok(out)
}

/// All `-p` values -> (`ExposedPorts`, `PortBindings`), as `nat.ParsePortSpecs` merges them.
pub fn parse_port_specs(specs: &[String]) -> Result<(StringSet, PortMap), String> {
    let mut exposed = StringSet::new();
    let mut bindings = PortMap::new();
    for spec in specs {
        for m in parse_port_spec(spec)? {
            exposed.insert(m.port.clone(), EmptyObject {});
            bindings
                .entry(m.port)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(m.binding);
        }
    }
    Ok((exposed, bindings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> (String, String, String) {
        let m = parse_port_spec(spec).expect("valid");
        assert_eq!(m.len(), 1, "{spec}");
        (
            m[0].port.clone(),
            m[0].binding.host_ip.clone(),
            m[0].binding.host_port.clone(),
        )
    }

    #[test]
    fn forms() {
        assert_eq!(one("80"), ("80/tcp".into(), "".into(), "".into()));
        assert_eq!(one("8080:80"), ("80/tcp".into(), "".into(), "8080".into()));
        assert_eq!(
            one("127.0.0.1:8080:80/udp"),
            ("80/udp".into(), "127.0.0.1".into(), "8080".into())
        );
        assert_eq!(
            one("127.0.0.1::53/udp"),
            ("53/udp".into(), "127.0.0.1".into(), "".into())
        );
        assert_eq!(
            one("[::1]:80:80"),
            ("80/tcp".into(), "::1".into(), "80".into())
        );
        assert_eq!(one("80/SCTP"), ("80/sctp".into(), "".into(), "".into()));
    }

    #[test]
    fn ranges() {
        let m = parse_port_spec("8000-8001:80-81").expect("valid");
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[1].port.as_str(), m[1].binding.host_port.as_str()),
            ("81/tcp", "8001")
        );
        // A host range for one container port: the daemon picks within it.
        assert_eq!(
            one("8000-8010:80"),
            ("80/tcp".into(), "".into(), "8000-8010".into())
        );
        assert_eq!(parse_port_spec("7000-7001").expect("valid").len(), 2);
    }

    #[test]
    fn errors_use_dockers_words() {
        assert_eq!(
            parse_port_spec("8000-8002:80-81").expect_err("bad"),
            "invalid ranges specified for container and host Ports: 80-81 and 8000-8002"
        );
        assert_eq!(
            parse_port_spec("x:80").expect_err("bad"),
            "invalid hostPort: x"
        );
        assert_eq!(
            parse_port_spec("80/foo").expect_err("bad"),
            "invalid proto: foo"
        );
        assert_eq!(
            parse_port_spec("1.2.3:80:80").expect_err("bad"),
            "invalid IP address: 1.2.3"
        );
        assert_eq!(
            parse_port_spec("70000").expect_err("bad"),
            "invalid containerPort: 70000"
        );
        assert_eq!(
            parse_port_spec("8080:").expect_err("bad"),
            "no port specified: 8080:<empty>"
        );
    }

    #[test]
    fn specs_merge_bindings_of_one_port() {
        let (exposed, bindings) =
            parse_port_specs(&["8080:80".into(), "127.0.0.1:9090:80".into()]).expect("valid");
        assert_eq!(exposed.keys().collect::<Vec<_>>(), vec!["80/tcp"]);
        let b = bindings["80/tcp"].as_ref().expect("bound");
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].host_ip, "127.0.0.1");
    }
}

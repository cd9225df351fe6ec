//! `ps`: the container list with docker's columns and `--format` fields
//! (docker/cli `cli/command/formatter/container.go`).

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use berth_api::client::{query, Client};
use berth_api::container::{ContainerSummary, Port};
use serde_json::{json, Value};

use super::short_id;
use crate::cli::PsArgs;
use crate::human::{ago, format_unix_utc};
use crate::table::{ellipsis, render_format};

const DEFAULT_FORMAT: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

pub fn ps(client: &Client, args: PsArgs) -> Result<i32> {
    let mut q: Vec<(&str, &str)> = Vec::new();
    if args.all {
        q.push(("all", "1"));
    }
    let filters = filters_json(&args.filter).map_err(|e| anyhow!(e))?;
    if let Some(f) = &filters {
        q.push(("filters", f));
    }
    let list: Vec<ContainerSummary> = client.get_json(format!("/containers/json{}", query(&q)))?;
    let trunc = !args.no_trunc;
    if args.quiet {
        for c in &list {
            println!("{}", if trunc { short_id(&c.id) } else { &c.id });
        }
        return Ok(0);
    }
    let rows: Vec<Value> = list.iter().map(|c| row(c, trunc)).collect();
    let format = args.format.as_deref().unwrap_or(DEFAULT_FORMAT);
    print!("{}", render_format(format, &rows, &header)?);
    Ok(0)
}

/// `-f k=v` flags -> docker's filter JSON, `{"k":{"v":true}}` (the shape the Go client's
/// `filters.ToJSON` sends and dockerd reads).
pub fn filters_json(flags: &[String]) -> Result<Option<String>, String> {
    if flags.is_empty() {
        return Ok(None);
    }
    let mut map: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for f in flags {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| format!("bad format of filter (expected name=value): {f}"))?;
        map.entry(k.trim().to_lowercase())
            .or_default()
            .insert(v.to_owned(), true);
    }
    serde_json::to_string(&map)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The docker CLI's column titles for container fields.
fn header(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID",
        "Image" => "IMAGE",
        "Command" => "COMMAND",
        "CreatedAt" => "CREATED AT",
        "RunningFor" => "CREATED",
        "Ports" => "PORTS",
        "State" => "STATE",
        "Status" => "STATUS",
        "Size" => "SIZE",
        "Names" => "NAMES",
        "Labels" => "LABELS",
        "Mounts" => "MOUNTS",
        "LocalVolumes" => "LOCAL VOLUMES",
        "Networks" => "NETWORKS",
        other => return other.to_uppercase(),
    }
    .to_owned()
}

/// One container as the strings docker's formatter exposes (`{{json .}}` prints this).
fn row(c: &ContainerSummary, trunc: bool) -> Value {
    let names: Vec<&str> = c
        .names
        .iter()
        .filter(|n| !trunc || n.matches('/').count() == 1)
        .map(|n| n.strip_prefix('/').unwrap_or(n))
        .collect();
    let image = if trunc {
        if c.image.starts_with("sha256:") {
            short_id(&c.image).to_owned()
        } else {
            c.image.split('@').next().unwrap_or(&c.image).to_owned()
        }
    } else {
        c.image.clone()
    };
    let command = if trunc {
        ellipsis(&c.command, 20)
    } else {
        c.command.clone()
    };
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut networks: Vec<&str> = c
        .network_settings
        .networks
        .keys()
        .map(String::as_str)
        .collect();
    networks.sort_unstable();
    let mounts: Vec<String> = c
        .mounts
        .iter()
        .map(|m| {
            let n = if m.name.is_empty() {
                &m.source
            } else {
                &m.name
            };
            if trunc {
                ellipsis(n, 15)
            } else {
                n.clone()
            }
        })
        .collect();
    let local_volumes = c.mounts.iter().filter(|m| m.driver == "local").count();
    json!({
        "Command": go_quote(&command),
        "CreatedAt": format_unix_utc(c.created),
        "ID": if trunc { short_id(&c.id) } else { &c.id },
        "Image": image,
        "Labels": labels.join(","),
        "LocalVolumes": local_volumes.to_string(),
        "Mounts": mounts.join(","),
        "Names": names.join(","),
        "Networks": networks.join(","),
        "Ports": displayable_ports(&c.ports),
        "RunningFor": ago(c.created),
        "Size": "0B",
        "State": c.state,
        "Status": c.status,
    })
}

/// Go's `strconv.Quote`: double quotes, backslash escapes for quotes, backslashes and
/// control characters; printable Unicode (the `…` of a cut command) stays as it is.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `net.JoinHostPort`.
fn join_host_port(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// docker/cli `DisplayablePorts`: consecutive ports with the same IP and protocol become a
/// range (`0.0.0.0:8000-8001->8000-8001/tcp`), mappings to a different host port are listed
/// one by one after the groups.
pub fn displayable_ports(ports: &[Port]) -> String {
    let mut ports = ports.to_vec();
    ports.sort_by(|a, b| {
        (a.private_port, &a.ip, a.public_port.unwrap_or(0), &a.kind).cmp(&(
            b.private_port,
            &b.ip,
            b.public_port.unwrap_or(0),
            &b.kind,
        ))
    });
    let mut groups: BTreeMap<String, (u16, u16)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut result = Vec::new();
    let mut host_mappings = Vec::new();
    for p in &ports {
        let current = p.private_port;
        let mut key = p.kind.clone();
        if !p.ip.is_empty() {
            let public = p.public_port.unwrap_or(0);
            if public != current {
                host_mappings.push(format!(
                    "{}->{}/{}",
                    join_host_port(&p.ip, &public.to_string()),
                    p.private_port,
                    p.kind
                ));
                continue;
            }
            key = format!("{}/{}", p.ip, p.kind);
        }
        match groups.get_mut(&key) {
            None => {
                groups.insert(key.clone(), (current, current));
                order.push(key);
            }
            Some(g) if u32::from(current) == u32::from(g.1) + 1 => g.1 = current,
            Some(g) => {
                result.push(form_group(&key, g.0, g.1));
                *g = (current, current);
            }
        }
    }
    for key in &order {
        if let Some(&(first, last)) = groups.get(key) {
            result.push(form_group(key, first, last));
        }
    }
    result.extend(host_mappings);
    result.join(", ")
}

fn form_group(key: &str, first: u16, last: u16) -> String {
    // The key is `proto` or `ip/proto`; IPv6 addresses hold no `/`.
    let (ip, proto) = match key.rsplit_once('/') {
        Some((ip, proto)) => (ip, proto),
        None => ("", key),
    };
    let mut group = first.to_string();
    if first != last {
        group = format!("{group}-{last}");
    }
    if !ip.is_empty() {
        group = format!("{}->{group}", join_host_port(ip, &group));
    }
    format!("{group}/{proto}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(ip: &str, private: u16, public: Option<u16>, kind: &str) -> Port {
        Port {
            ip: ip.into(),
            private_port: private,
            public_port: public,
            kind: kind.into(),
        }
    }

    #[test]
    fn ports_like_docker_ps() {
        assert_eq!(
            displayable_ports(&[
                port("0.0.0.0", 8888, Some(8888), "tcp"),
                port("::", 8888, Some(8888), "tcp"),
            ]),
            "0.0.0.0:8888->8888/tcp, [::]:8888->8888/tcp"
        );
        assert_eq!(
            displayable_ports(&[port("0.0.0.0", 80, Some(8080), "tcp")]),
            "0.0.0.0:8080->80/tcp"
        );
        assert_eq!(
            displayable_ports(&[port("", 80, None, "tcp"), port("", 81, None, "tcp")]),
            "80-81/tcp"
        );
        assert_eq!(displayable_ports(&[]), "");
    }

    #[test]
    fn rows_match_dockers_columns() {
        let c = ContainerSummary {
            id: "0123456789abcdef0123".into(),
            names: vec!["/web".into(), "/other/link".into()],
            image: "busybox".into(),
            command: "sleep 1000000000000000000".into(),
            created: crate::human::now_unix() - 120,
            state: "running".into(),
            status: "Up 2 minutes".into(),
            ..ContainerSummary::default()
        };
        let r = row(&c, true);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Names"], "web");
        assert_eq!(r["Command"], "\"sleep 1000000000000…\"");
        assert_eq!(r["RunningFor"], "2 minutes ago");
        let out = render_format(DEFAULT_FORMAT, &[r], &header).expect("renders");
        let mut lines = out.lines();
        assert_eq!(
            lines.next(),
            Some("CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS         PORTS     NAMES")
        );
        assert_eq!(
            lines.next(),
            Some("0123456789ab   busybox   \"sleep 1000000000000…\"   2 minutes ago   Up 2 minutes             web")
        );
        let full = row(&c, false);
        assert_eq!(full["Names"], "web,other/link");
    }

    #[test]
    fn filters_use_the_go_clients_shape() {
        assert_eq!(
            filters_json(&["status=exited".into(), "label=a=b".into()]).expect("ok"),
            Some(r#"{"label":{"a=b":true},"status":{"exited":true}}"#.to_owned())
        );
        assert!(filters_json(&["nope".into()]).is_err());
        assert_eq!(filters_json(&[]).expect("ok"), None);
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("sh -c \"x\""), r#""sh -c \"x\"""#);
        assert_eq!(go_quote("a\tb"), r#""a\tb""#);
    }
}

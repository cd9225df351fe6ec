//! The one-request container verbs (`stop`, `restart`, `kill`, `rm`, `wait`) and the two
//! readers (`logs`, `port`).

use anyhow::{anyhow, Result};
use berth_api::client::{query, Client};
use berth_api::container::{ContainerInspect, PortBinding, WaitResponse};

use super::{for_each, path_segment};
use crate::cli::{ContainersArgs, KillArgs, LogsArgs, PortArgs, RenameArgs, RmArgs, StopArgs};
use crate::exit_code::container_exit_code;
use crate::stdio_pump::copy_output;

/// `stop` and `restart` take the same flags and differ only in the verb.
pub fn stop(client: &Client, args: StopArgs, verb: &str) -> Result<i32> {
    let t = args.time.map(|t| t.to_string());
    let mut q: Vec<(&str, &str)> = Vec::new();
    if let Some(t) = &t {
        q.push(("t", t));
    }
    if let Some(s) = &args.signal {
        q.push(("signal", s));
    }
    let q = query(&q);
    for_each(&args.containers, |name| {
        client.post_empty(format!("/containers/{}/{verb}{q}", path_segment(name)))?;
        println!("{name}");
        Ok(())
    })
}

/// `pause` and `unpause`: one request per container, its name printed on success.
pub fn pause(client: &Client, args: ContainersArgs, verb: &str) -> Result<i32> {
    for_each(&args.containers, |name| {
        client.post_empty(format!("/containers/{}/{verb}", path_segment(name)))?;
        println!("{name}");
        Ok(())
    })
}

/// `rename OLD NEW`: silent on success, as docker.
pub fn rename(client: &Client, args: RenameArgs) -> Result<i32> {
    client.post_empty(format!(
        "/containers/{}/rename{}",
        path_segment(&args.container),
        query(&[("name", &args.new_name)])
    ))?;
    Ok(0)
}

pub fn kill(client: &Client, args: KillArgs) -> Result<i32> {
    let q = match &args.signal {
        Some(s) => query(&[("signal", s)]),
        None => String::new(),
    };
    for_each(&args.containers, |name| {
        client.post_empty(format!("/containers/{}/kill{q}", path_segment(name)))?;
        println!("{name}");
        Ok(())
    })
}

pub fn rm(client: &Client, args: RmArgs) -> Result<i32> {
    let mut q: Vec<(&str, &str)> = Vec::new();
    if args.volumes {
        q.push(("v", "1"));
    }
    if args.force {
        q.push(("force", "1"));
    }
    let q = query(&q);
    for_each(&args.containers, |name| {
        client
            .delete(format!("/containers/{}{q}", path_segment(name)))
            .send()?
            .discard()?;
        println!("{name}");
        Ok(())
    })
}

pub fn wait(client: &Client, args: ContainersArgs) -> Result<i32> {
    for_each(&args.containers, |name| {
        let w: WaitResponse = client
            .post(format!("/containers/{}/wait", path_segment(name)))
            .send()?
            .json()?;
        if let Some(e) = w.error.filter(|e| !e.message.is_empty()) {
            return Err(anyhow!(e.message));
        }
        println!("{}", container_exit_code(w.status_code));
        Ok(())
    })
}

pub fn logs(client: &Client, args: LogsArgs) -> Result<i32> {
    // The framing depends on the container's TTY, which only inspect tells (docker does
    // the same).
    let c: ContainerInspect = client.get_json(format!(
        "/containers/{}/json",
        path_segment(&args.container)
    ))?;
    let mut q: Vec<(&str, &str)> = vec![("stdout", "1"), ("stderr", "1")];
    if args.follow {
        q.push(("follow", "1"));
    }
    if args.timestamps {
        q.push(("timestamps", "1"));
    }
    if let Some(t) = &args.tail {
        q.push(("tail", t));
    }
    if let Some(s) = &args.since {
        q.push(("since", s));
    }
    let mut body = client
        .get(format!(
            "/containers/{}/logs{}",
            path_segment(&c.id),
            query(&q)
        ))
        .send()?;
    copy_output(&mut body, c.config.tty)?;
    Ok(0)
}

pub fn port(client: &Client, args: PortArgs) -> Result<i32> {
    let c: ContainerInspect = client.get_json(format!(
        "/containers/{}/json",
        path_segment(&args.container)
    ))?;
    let ports = &c.network_settings.ports;
    if let Some(p) = &args.port {
        let key = if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        };
        let bindings = ports.get(&key).and_then(Option::as_ref);
        match bindings {
            Some(b) if !b.is_empty() => {
                for binding in b {
                    println!("{}", host_address(binding));
                }
                Ok(0)
            }
            _ => Err(anyhow!(
                "Error: No public port '{key}' published for {}",
                args.container
            )),
        }
    } else {
        for line in port_lines(ports) {
            println!("{line}");
        }
        Ok(0)
    }
}

/// Go's `net.JoinHostPort`: IPv6 addresses in brackets.
fn host_address(b: &PortBinding) -> String {
    if b.host_ip.contains(':') {
        format!("[{}]:{}", b.host_ip, b.host_port)
    } else {
        format!("{}:{}", b.host_ip, b.host_port)
    }
}

/// `80/tcp -> 0.0.0.0:8080` lines, ordered by port number then protocol.
fn port_lines(ports: &berth_api::container::PortMap) -> Vec<String> {
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort_by_key(|k| {
        let (num, proto) = k.split_once('/').unwrap_or((k.as_str(), ""));
        (num.parse::<u32>().unwrap_or(u32::MAX), proto.to_owned())
    });
    let mut out = Vec::new();
    for k in keys {
        for b in ports.get(k).and_then(Option::as_ref).into_iter().flatten() {
            out.push(format!("{k} -> {}", host_address(b)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::container::PortMap;

    #[test]
    fn port_lines_sort_numerically_and_bracket_ipv6() {
        let b = |ip: &str, p: &str| PortBinding {
            host_ip: ip.into(),
            host_port: p.into(),
        };
        let mut m = PortMap::new();
        m.insert(
            "8888/tcp".into(),
            Some(vec![b("0.0.0.0", "8888"), b("::", "8888")]),
        );
        m.insert("53/udp".into(), Some(vec![b("127.0.0.1", "5353")]));
        m.insert("9/tcp".into(), None);
        assert_eq!(
            port_lines(&m),
            vec![
                "53/udp -> 127.0.0.1:5353",
                "8888/tcp -> 0.0.0.0:8888",
                "8888/tcp -> [::]:8888"
            ]
        );
    }
}

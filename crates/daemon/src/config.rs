//! Command-line configuration of the daemon.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;

/// berthd: serves the Docker Engine API on a Unix socket, so that `berth`, the `docker`
/// CLI and the Docker SDKs can manage containers through it.
#[derive(Debug, Clone, Parser)]
#[command(name = "berthd", version, about, long_about = None)]
pub struct Args {
    /// Where to listen. Only `unix://PATH` is supported: a TCP socket without TLS would hand
    /// root on this host to anyone who can reach the port.
    #[arg(short = 'H', long, default_value = "unix:///run/berth/berth.sock")]
    pub host: String,

    /// The group given the API socket (a name or a gid), as dockerd's `--group`: its
    /// members can use the API, which makes them root on this host. Default: `berth` if
    /// that group exists, else root alone. With socket activation, berthd.socket's
    /// SocketGroup= decides instead.
    #[arg(short = 'G', long)]
    pub group: Option<String>,

    /// Persistent state: image content, container directories, the metadata database.
    #[arg(long, default_value = "/var/lib/berth")]
    pub data_root: PathBuf,

    /// Runtime state that must not survive a reboot: sockets, shim pids, runtime state.
    #[arg(long, default_value = "/run/berth")]
    pub exec_root: PathBuf,

    /// The per-container monitor; default: `berth-shim` next to the berthd binary.
    #[arg(long)]
    pub shim_path: Option<PathBuf>,

    /// The default bridge's subnet (e.g. 172.30.0.0/16); default: the first free one of
    /// berth's candidates, chosen once and kept.
    #[arg(long)]
    pub bridge_subnet: Option<String>,

    /// The default bridge's link name.
    #[arg(long, default_value = "berth0")]
    pub bridge: String,

    /// Remove the default bridge and the bridges of user-defined networks, their firewall
    /// rules and their address records, then exit (the user networks stay defined; their
    /// bridges come back when a container joins).
    /// For uninstalling, and for scripts (make demo) that leave the host as they found it.
    /// Run it with no containers left.
    #[arg(long)]
    pub teardown_network: bool,

    /// A tracing filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or directives
    /// such as `berthd=debug,hyper=info`. `RUST_LOG` overrides it when set.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

impl Args {
    /// The socket path from `--host`.
    pub fn socket_path(&self) -> Result<PathBuf> {
        parse_host(&self.host)
    }
}

/// `unix:///run/berth/berth.sock` -> `/run/berth/berth.sock`, in the form `DOCKER_HOST`
/// uses, so the same string works for the daemon and for its clients.
pub fn parse_host(host: &str) -> Result<PathBuf> {
    let Some(path) = host.strip_prefix("unix://") else {
        let scheme = host.split_once("://").map_or(host, |(scheme, _)| scheme);
        bail!(
            "unsupported --host {host:?} (scheme {scheme:?}): berthd only listens on unix://PATH"
        );
    };
    if !path.starts_with('/') {
        bail!(
            "--host {host:?}: the socket path must be absolute, e.g. unix:///run/berth/berth.sock"
        );
    }
    let path = PathBuf::from(path);
    path.file_name()
        .with_context(|| format!("--host {host:?}: the socket path names a directory"))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_hosts() {
        assert_eq!(
            parse_host("unix:///run/berth/berth.sock").expect("valid"),
            PathBuf::from("/run/berth/berth.sock")
        );
    }

    #[test]
    fn rejects_other_hosts() {
        for host in [
            "tcp://0.0.0.0:2375",
            "/run/x.sock",
            "unix://rel.sock",
            "unix:///",
            "fd://",
        ] {
            assert!(parse_host(host).is_err(), "{host:?} accepted");
        }
    }
}

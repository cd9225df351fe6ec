//! `GET /version` (`SystemVersion`) and `GET /info` (`SystemInfo`), field for field as
//! moby's `api/types/system` and `api/types/types.go` name them.
//!
//! Every struct is `#[serde(default)]` so that `berth` can read replies from daemons that
//! omit fields (dockerd drops some across versions); the Go CLI, for its part, renders
//! missing fields as blanks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The body of `GET /version`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SystemVersion {
    /// Printed as the title of the CLI's `Server:` section.
    #[serde(rename = "Platform")]
    pub platform: Platform,
    /// The CLI prints the `Engine` component's `Details`; without one it rebuilds it from
    /// the top-level fields, so both are filled.
    #[serde(rename = "Components")]
    pub components: Vec<ComponentVersion>,
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "ApiVersion")]
    pub api_version: String,
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
    #[serde(rename = "GitCommit")]
    pub git_commit: String,
    /// Docker reports the Go toolchain here; berth reports its Rust toolchain.
    #[serde(rename = "GoVersion")]
    pub go_version: String,
    #[serde(rename = "Os")]
    pub os: String,
    /// A Go `GOARCH` name (`amd64`, `arm64`), not Rust's (`x86_64`, `aarch64`).
    #[serde(rename = "Arch")]
    pub arch: String,
    #[serde(rename = "KernelVersion")]
    pub kernel_version: String,
    #[serde(rename = "Experimental", skip_serializing_if = "std::ops::Not::not")]
    pub experimental: bool,
    #[serde(rename = "BuildTime")]
    pub build_time: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Platform {
    #[serde(rename = "Name")]
    pub name: String,
}

/// One entry of `Components`. `Details` is a Go `map[string]string`: every value is a
/// string, `Experimental` included (`"false"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComponentVersion {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "Details", skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

/// The body of `GET /info`: the fields `docker info` prints, plus `Swarm`, which untyped
/// `docker inspect` reads to decide whether to look for swarm objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Info {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Containers")]
    pub containers: i64,
    #[serde(rename = "ContainersRunning")]
    pub containers_running: i64,
    #[serde(rename = "ContainersPaused")]
    pub containers_paused: i64,
    #[serde(rename = "ContainersStopped")]
    pub containers_stopped: i64,
    #[serde(rename = "Images")]
    pub images: i64,
    #[serde(rename = "Driver")]
    pub driver: String,
    /// Go `[][2]string`: label/value pairs printed under the storage driver.
    #[serde(rename = "DriverStatus")]
    pub driver_status: Vec<[String; 2]>,
    #[serde(rename = "Plugins")]
    pub plugins: PluginsInfo,
    #[serde(rename = "MemoryLimit")]
    pub memory_limit: bool,
    #[serde(rename = "SwapLimit")]
    pub swap_limit: bool,
    #[serde(rename = "CpuCfsPeriod")]
    pub cpu_cfs_period: bool,
    #[serde(rename = "CpuCfsQuota")]
    pub cpu_cfs_quota: bool,
    #[serde(rename = "CPUShares")]
    pub cpu_shares: bool,
    #[serde(rename = "CPUSet")]
    pub cpu_set: bool,
    #[serde(rename = "PidsLimit")]
    pub pids_limit: bool,
    #[serde(rename = "OomKillDisable")]
    pub oom_kill_disable: bool,
    #[serde(rename = "IPv4Forwarding")]
    pub ipv4_forwarding: bool,
    #[serde(rename = "Debug")]
    pub debug: bool,
    #[serde(rename = "NFd")]
    pub nfd: i64,
    #[serde(rename = "NGoroutines")]
    pub ngoroutines: i64,
    /// RFC 3339 with nanoseconds in dockerd; printed only in debug mode.
    #[serde(rename = "SystemTime")]
    pub system_time: String,
    #[serde(rename = "LoggingDriver")]
    pub logging_driver: String,
    /// `cgroupfs` or `systemd`.
    #[serde(rename = "CgroupDriver")]
    pub cgroup_driver: String,
    /// `"1"` or `"2"`, a string on the wire.
    #[serde(rename = "CgroupVersion")]
    pub cgroup_version: String,
    #[serde(rename = "NEventsListener")]
    pub nevents_listener: i64,
    #[serde(rename = "KernelVersion")]
    pub kernel_version: String,
    #[serde(rename = "OperatingSystem")]
    pub operating_system: String,
    #[serde(rename = "OSVersion")]
    pub os_version: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    /// `uname -m` style (`x86_64`), unlike `/version`'s `Arch`.
    #[serde(rename = "Architecture")]
    pub architecture: String,
    #[serde(rename = "IndexServerAddress")]
    pub index_server_address: String,
    #[serde(rename = "NCPU")]
    pub ncpu: i64,
    #[serde(rename = "MemTotal")]
    pub mem_total: i64,
    #[serde(rename = "DockerRootDir")]
    pub docker_root_dir: String,
    #[serde(rename = "HttpProxy")]
    pub http_proxy: String,
    #[serde(rename = "HttpsProxy")]
    pub https_proxy: String,
    #[serde(rename = "NoProxy")]
    pub no_proxy: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Labels")]
    pub labels: Vec<String>,
    #[serde(rename = "ExperimentalBuild")]
    pub experimental_build: bool,
    #[serde(rename = "ServerVersion")]
    pub server_version: String,
    #[serde(rename = "Runtimes")]
    pub runtimes: BTreeMap<String, Runtime>,
    #[serde(rename = "DefaultRuntime")]
    pub default_runtime: String,
    #[serde(rename = "Swarm")]
    pub swarm: SwarmInfo,
    #[serde(rename = "LiveRestoreEnabled")]
    pub live_restore_enabled: bool,
    #[serde(rename = "Isolation")]
    pub isolation: String,
    #[serde(rename = "InitBinary")]
    pub init_binary: String,
    #[serde(rename = "ContainerdCommit")]
    pub containerd_commit: Commit,
    #[serde(rename = "RuncCommit")]
    pub runc_commit: Commit,
    #[serde(rename = "InitCommit")]
    pub init_commit: Commit,
    /// `name=seccomp,profile=builtin` style; the CLI splits these on `,` and `=`.
    #[serde(rename = "SecurityOptions")]
    pub security_options: Vec<String>,
    #[serde(rename = "Warnings")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginsInfo {
    #[serde(rename = "Volume")]
    pub volume: Vec<String>,
    #[serde(rename = "Network")]
    pub network: Vec<String>,
    #[serde(rename = "Authorization")]
    pub authorization: Vec<String>,
    #[serde(rename = "Log")]
    pub log: Vec<String>,
}

/// An OCI runtime the daemon can run containers with. Lower-case keys: that is how moby's
/// `system.RuntimeWithStatus` is tagged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Runtime {
    pub path: String,
    #[serde(rename = "runtimeArgs", skip_serializing_if = "Vec::is_empty")]
    pub runtime_args: Vec<String>,
}

/// Swarm state; berth has no swarm, and `inactive` keeps the CLI's swarm commands hidden.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SwarmInfo {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    #[serde(rename = "NodeAddr")]
    pub node_addr: String,
    #[serde(rename = "LocalNodeState")]
    pub local_node_state: String,
    #[serde(rename = "ControlAvailable")]
    pub control_available: bool,
    #[serde(rename = "Error")]
    pub error: String,
}

/// A component's commit, printed by `docker info` as e.g. `runc version: <ID>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Commit {
    #[serde(rename = "ID")]
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_uses_docker_field_names() {
        let v = SystemVersion {
            api_version: "1.44".into(),
            min_api_version: "1.24".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(&v).expect("serializes");
        assert_eq!(json["ApiVersion"], "1.44");
        assert_eq!(json["MinAPIVersion"], "1.24");
        for key in [
            "Platform",
            "Components",
            "Version",
            "GoVersion",
            "Os",
            "Arch",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert!(
            json.get("Experimental").is_none(),
            "false is omitted, as in Go"
        );
    }

    #[test]
    fn info_uses_docker_field_names() {
        let mut info = Info {
            ncpu: 2,
            docker_root_dir: "/var/lib/berth".into(),
            ..Default::default()
        };
        info.runtimes.insert(
            "berth".into(),
            Runtime {
                path: "berth-runtime".into(),
                ..Default::default()
            },
        );
        let json = serde_json::to_value(&info).expect("serializes");
        assert_eq!(json["NCPU"], 2);
        assert_eq!(json["DockerRootDir"], "/var/lib/berth");
        assert_eq!(
            json["Runtimes"],
            serde_json::json!({"berth": {"path": "berth-runtime"}})
        );
        for key in [
            "ID",
            "MemTotal",
            "CgroupVersion",
            "OSType",
            "Swarm",
            "SecurityOptions",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
    }

    #[test]
    fn reads_sparse_replies() {
        let info: Info =
            serde_json::from_str(r#"{"Name":"h","Swarm":{"LocalNodeState":"inactive"}}"#)
                .expect("parses");
        assert_eq!(info.name, "h");
        assert_eq!(info.swarm.local_node_state, "inactive");
    }
}

//! `/_ping`, `/version` and `/info`: what a client asks before anything else.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_api::{
    ComponentVersion, Info, Platform, PluginsInfo, Runtime, SwarmInfo, SystemVersion,
    MAX_API_VERSION, MIN_API_VERSION,
};

use crate::host_facts::{go_arch, HostFacts};
use crate::metadata_store::Counts;

/// berthd's own version, from Cargo.
pub const DAEMON_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The toolchain berthd was built with, reported where dockerd reports its Go version.
const RUSTC_VERSION: &str = env!("BERTHD_RUSTC_VERSION");

/// Static inputs of `/version` and `/info`, gathered once at startup.
#[derive(Debug, Clone)]
pub struct SystemFacts {
    pub host: HostFacts,
    pub engine_id: String,
    pub data_root: PathBuf,
}

pub fn version(facts: &SystemFacts) -> SystemVersion {
    let arch = go_arch(std::env::consts::ARCH).to_owned();
    let details: BTreeMap<String, String> = [
        ("ApiVersion", MAX_API_VERSION.to_string()),
        ("MinAPIVersion", MIN_API_VERSION.to_string()),
        ("GitCommit", String::new()),
        ("GoVersion", RUSTC_VERSION.to_owned()),
        ("Os", "linux".to_owned()),
        ("Arch", arch.clone()),
        ("BuildTime", String::new()),
        ("Experimental", "false".to_owned()),
        ("KernelVersion", facts.host.kernel_version.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    SystemVersion {
        platform: Platform {
            name: "berth".to_owned(),
        },
        components: vec![ComponentVersion {
            name: "Engine".to_owned(),
            version: DAEMON_VERSION.to_owned(),
            details,
        }],
        version: DAEMON_VERSION.to_owned(),
        api_version: MAX_API_VERSION.to_string(),
        min_api_version: MIN_API_VERSION.to_string(),
        git_commit: String::new(),
        go_version: RUSTC_VERSION.to_owned(),
        os: "linux".to_owned(),
        arch,
        kernel_version: facts.host.kernel_version.clone(),
        experimental: false,
        build_time: String::new(),
    }
}

pub fn info(facts: &SystemFacts, counts: Counts) -> Info {
    let host = &facts.host;
    let cg = host.cgroup_controllers;
    let mut runtimes = BTreeMap::new();
    runtimes.insert(
        "berth".to_owned(),
        Runtime {
            path: "berth-runtime".to_owned(),
            runtime_args: Vec::new(),
        },
    );
    Info {
        id: facts.engine_id.clone(),
        containers: counts.containers,
        // Nothing runs yet: containers are created but never started by this skeleton.
        containers_stopped: counts.containers,
        images: counts.images,
        driver: "overlay2".to_owned(),
        plugins: PluginsInfo {
            volume: vec!["local".to_owned()],
            network: vec!["bridge".to_owned(), "host".to_owned(), "none".to_owned()],
            authorization: Vec::new(),
            log: vec!["json-file".to_owned()],
        },
        memory_limit: cg.memory,
        swap_limit: cg.memory,
        cpu_cfs_period: cg.cpu,
        cpu_cfs_quota: cg.cpu,
        cpu_shares: cg.cpu,
        cpu_set: cg.cpuset,
        pids_limit: cg.pids,
        ipv4_forwarding: host.ipv4_forwarding,
        logging_driver: "json-file".to_owned(),
        cgroup_driver: "cgroupfs".to_owned(),
        cgroup_version: host.cgroup_version.to_owned(),
        kernel_version: host.kernel_version.clone(),
        operating_system: host.operating_system.clone(),
        os_version: host.os_version.clone(),
        os_type: "linux".to_owned(),
        architecture: host.machine.clone(),
        index_server_address: "https://index.docker.io/v1/".to_owned(),
        ncpu: host.ncpu,
        mem_total: host.mem_total,
        docker_root_dir: facts.data_root.display().to_string(),
        name: host.hostname.clone(),
        server_version: DAEMON_VERSION.to_owned(),
        runtimes,
        default_runtime: "berth".to_owned(),
        swarm: SwarmInfo {
            local_node_state: "inactive".to_owned(),
            ..Default::default()
        },
        security_options: vec!["name=seccomp,profile=builtin".to_owned()],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> SystemFacts {
        SystemFacts {
            host: HostFacts {
                kernel_version: "6.1.0".into(),
                cgroup_version: "2",
                ..Default::default()
            },
            engine_id: "id".into(),
            data_root: "/var/lib/berth".into(),
        }
    }

    #[test]
    fn version_reports_the_engine_component() {
        let v = version(&facts());
        assert_eq!(v.api_version, "1.44");
        assert_eq!(v.min_api_version, "1.24");
        assert_eq!(v.components[0].name, "Engine");
        assert_eq!(v.components[0].details["ApiVersion"], "1.44");
        assert_eq!(v.components[0].details["KernelVersion"], "6.1.0");
        assert_ne!(v.arch, "x86_64", "Go arch names");
    }

    #[test]
    fn info_reports_store_counts_and_roots() {
        let i = info(
            &facts(),
            Counts {
                containers: 2,
                images: 3,
            },
        );
        assert_eq!((i.containers, i.images), (2, 3));
        assert_eq!(i.docker_root_dir, "/var/lib/berth");
        assert_eq!(i.cgroup_version, "2");
        assert_eq!(i.runtimes["berth"].path, "berth-runtime");
    }
}

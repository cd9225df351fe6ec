//! The container's `config.json`, planned from its record: pure, so every Docker default
//! and flag mapping is unit tested without running anything.
//!
//! Docker's defaults (moby `oci/defaults.go`, `daemon/oci_linux.go`): its 14 default
//! capabilities, a writable root, no `noNewPrivileges`, `/dev/shm` of 64 MiB, the masked
//! and read-only `/proc` paths, the cgroup at `/berth/<id>` (dockerd's `/docker/<id>`),
//! and Docker's default seccomp profile unless `--privileged` or `seccomp=unconfined`
//! (see `seccomp_profile`).

use std::path::{Path, PathBuf};

use berth_api::container::HostConfig;
use berth_image::runtime_spec::ProcessPlan;
use serde_json::{json, Value};

use crate::container_record::ContainerRecord;
use crate::response::ApiError;
use crate::seccomp_profile::{self, Host, SecurityOptError, SecurityOptions};

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability up to CAP_CHECKPOINT_RESTORE (40), for `--privileged` and `ALL`.
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// How the container joins a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsPlan {
    /// The host's namespace (`--network host`).
    Host,
    /// A namespace the daemon made (bind-mounted file), configured before start.
    Path(PathBuf),
    /// A fresh namespace from the runtime with only `lo` (`--network none`).
    New,
}

/// Files the daemon writes per container and binds over the image's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
}

/// One bind mount from `-v` or `--mount type=bind`, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// `--cap-add`/`--cap-drop` over Docker's default set (`ALL` on either side as Docker).
fn capabilities(hc: &HostConfig) -> Result<Vec<String>, ApiError> {
    if hc.privileged {
        return Ok(ALL_CAPS.iter().map(|c| (*c).to_owned()).collect());
    }
    let norm = |c: &str| {
        let up = c.to_ascii_uppercase();
        if up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        }
    };
    let known = |c: &str| c == "CAP_ALL" || ALL_CAPS.contains(&c);
    for c in hc.cap_add.iter().chain(&hc.cap_drop) {
        if !known(&norm(c)) {
            return Err(ApiError::bad_request(format!("invalid capability: {c}")));
        }
    }
    let mut caps: Vec<String> = if hc.cap_drop.iter().any(|c| norm(c) == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS.iter().map(|c| (*c).to_owned()).collect()
    };
    caps.retain(|c| !hc.cap_drop.iter().any(|d| norm(d) == *c));
    if hc.cap_add.iter().any(|c| norm(c) == "CAP_ALL") {
        caps = ALL_CAPS.iter().map(|c| (*c).to_owned()).collect();
    } else {
        for c in &hc.cap_add {
            let c = norm(c);
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    }
    Ok(caps)
}

/// Checks `HostConfig.SecurityOpt` at create, so a bad option or profile is a 400 from
/// `create` rather than a failed `start`. A `seccomp=/path` profile is read now and kept
/// inline (as the docker CLI sends it), and every profile is converted and compiled for the
/// container's capabilities exactly as `plan` will at start.
pub fn check_security(mut hc: HostConfig) -> Result<HostConfig, ApiError> {
    seccomp_profile::inline_profile_paths(&mut hc.security_opt).map_err(security_error)?;
    security_plan(&hc)?;
    Ok(hc)
}

/// `noNewPrivileges` and `linux.seccomp` from the security options and the capabilities.
fn security_plan(hc: &HostConfig) -> Result<(SecurityOptions, Option<Value>), ApiError> {
    let opts = seccomp_profile::parse_security_opts(&hc.security_opt).map_err(security_error)?;
    let caps = capabilities(hc)?;
    let seccomp =
        seccomp_profile::for_container(&opts.seccomp, hc.privileged, &caps, Host::current())
            .map_err(|e| security_error(e.into()))?;
    Ok((opts, seccomp))
}

/// Every security-option error is the client's (400) except one berth has not built (501).
fn security_error(e: SecurityOptError) -> ApiError {
    match e {
        SecurityOptError::Unsupported(_) => {
            ApiError::new(hyper::StatusCode::NOT_IMPLEMENTED, e.to_string())
        }
        _ => ApiError::bad_request(e.to_string()),
    }
}

/// The whole `config.json`.
pub fn plan(
    record: &ContainerRecord,
    process: &ProcessPlan,
    rootfs: &Path,
    netns: &NetnsPlan,
    etc: &EtcFiles,
    binds: &[BindMount],
) -> Result<Value, ApiError> {
    let hc = &record.host_config;
    let caps = capabilities(hc)?;
    let (security, seccomp) = security_plan(hc)?;
    let tty = record.config.tty;
    let mut env = process.env.clone();
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.insert(0, format!("HOSTNAME={}", hostname(record)));
    }
    if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_owned());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", process.user.home));
    }
    let mut user = json!({"uid": process.user.uid, "gid": process.user.gid});
    if !process.user.additional_gids.is_empty() {
        user["additionalGids"] = json!(process.user.additional_gids);
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}),
    ];
    for (dest, src) in [
        ("/etc/resolv.conf", &etc.resolv_conf),
        ("/etc/hostname", &etc.hostname),
        ("/etc/hosts", &etc.hosts),
    ] {
        mounts.push(json!({"destination": dest, "type": "bind", "source": src,
                           "options": ["rbind", "rprivate"]}));
    }
    let mut user_mounts = Vec::new();
    for bind in binds {
        let mut options = vec!["rbind", "rprivate"];
        if bind.read_only {
            options.push("ro");
        }
        user_mounts.push(json!({"destination": bind.destination, "type": "bind",
                           "source": bind.source, "options": options}));
    }
    for (dest, opts) in crate::container_mounts::tmpfs(record) {
        let mut options = vec!["nosuid".to_owned(), "nodev".to_owned(), "noexec".to_owned()];
        options.extend(opts.split(',').filter(|o| !o.is_empty()).map(str::to_owned));
        user_mounts.push(
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                           "options": options}),
        );
    }
    // Parents before children (`/data` before `/data/cache`), as dockerd sorts mounts:
    // the runtime mounts in order, and a parent mounted later would hide the child.
    user_mounts.sort_by_key(|m| {
        m["destination"]
            .as_str()
            .map_or(0, |d| d.split('/').filter(|c| !c.is_empty()).count())
    });
    mounts.extend(user_mounts);
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    match netns {
        NetnsPlan::Host => {}
        NetnsPlan::New => namespaces.push(json!({"type": "network"})),
        NetnsPlan::Path(path) => namespaces.push(json!({"type": "network", "path": path})),
    }
    let (masked, readonly): (Vec<&str>, Vec<&str>) = if hc.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            vec![
                "/proc/asound",
                "/proc/acpi",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/proc/scsi",
                "/sys/firmware",
                "/sys/devices/virtual/powercap",
            ],
            vec![
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        )
    };
    let devices = if hc.privileged {
        json!([{"allow": true, "access": "rwm"}])
    } else {
        json!([{"allow": false, "access": "rwm"}])
    };
    let mut spec = json!({
        "ociVersion": berth_runtime::spec_template::OCI_VERSION,
        "process": {
            "terminal": tty,
            "user": user,
            "args": process.args,
            "env": env,
            "cwd": process.cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "noNewPrivileges": security.no_new_privileges,
        },
        "root": {"path": rootfs, "readonly": hc.readonly_rootfs},
        "hostname": hostname(record),
        "mounts": mounts,
        "linux": {
            "cgroupsPath": format!("/berth/{}", record.id),
            "resources": {"devices": devices},
            "namespaces": namespaces,
            "maskedPaths": masked,
            "readonlyPaths": readonly,
        }
    });
    if let Some(seccomp) = seccomp {
        spec["linux"]["seccomp"] = seccomp;
    }
    if let Some([rows, cols]) = hc.console_size.filter(|[r, c]| *r > 0 && *c > 0) {
        spec["process"]["consoleSize"] = json!({"height": rows, "width": cols});
    }
    Ok(spec)
}

/// `--hostname`, else the first 12 characters of the id, as Docker.
pub fn hostname(record: &ContainerRecord) -> String {
    if record.config.hostname.is_empty() {
        record.id.chars().take(12).collect()
    } else {
        record.config.hostname.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_image::runtime_spec::ResolvedUser;

    fn record() -> ContainerRecord {
        ContainerRecord {
            id: "0123456789abcdef".repeat(4),
            name: "web".into(),
            created: String::new(),
            image_name: "busybox".into(),
            image_id: String::new(),
            image_config: None,
            requested: Default::default(),
            config: Default::default(),
            host_config: Default::default(),
            path: "sh".into(),
            args: vec![],
            state: Default::default(),
            network: None,
            aliases: Vec::new(),
            extra_networks: Vec::new(),
            extra_endpoints: Vec::new(),
            detached: false,
            restart_count: 0,
            mounts: vec![],
        }
    }

    fn process() -> ProcessPlan {
        ProcessPlan {
            args: vec!["httpd".into(), "-f".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: ResolvedUser {
                home: "/root".into(),
                ..Default::default()
            },
            exposed_ports: vec![],
            volumes: vec![],
            stop_signal: None,
            annotations: Default::default(),
        }
    }

    fn etc() -> EtcFiles {
        EtcFiles {
            hosts: "/d/hosts".into(),
            hostname: "/d/hostname".into(),
            resolv_conf: "/d/resolv.conf".into(),
        }
    }

    #[test]
    fn docker_defaults() {
        let spec = plan(
            &record(),
            &process(),
            Path::new("/r"),
            &NetnsPlan::New,
            &etc(),
            &[],
        )
        .expect("plans");
        assert_eq!(spec["hostname"], "0123456789ab");
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .map(Vec::len),
            Some(14)
        );
        assert_eq!(spec["process"]["noNewPrivileges"], false);
        assert_eq!(spec["root"]["readonly"], false);
        let env = spec["process"]["env"].to_string();
        assert!(env.contains("HOSTNAME=0123456789ab") && env.contains("HOME=/root"));
        assert!(spec["linux"]["maskedPaths"]
            .to_string()
            .contains("/proc/kcore"));
        let typed: oci_spec::runtime::Spec = serde_json::from_value(spec).expect("a valid spec");
        assert!(typed
            .mounts()
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m.destination() == Path::new("/etc/hosts"))));
    }

    #[test]
    fn caps_add_drop_and_privileged() {
        let mut r = record();
        r.host_config.cap_drop = vec!["net_raw".into()];
        r.host_config.cap_add = vec!["SYS_ADMIN".into()];
        let caps = capabilities(&r.host_config).expect("caps");
        assert!(!caps.contains(&"CAP_NET_RAW".to_owned()));
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_owned()));
        r.host_config.cap_add = vec!["NOPE".into()];
        assert_eq!(
            capabilities(&r.host_config).expect_err("bad cap").message,
            "invalid capability: NOPE"
        );
        let mut p = record();
        p.host_config.privileged = true;
        assert_eq!(
            capabilities(&p.host_config).expect("all").len(),
            ALL_CAPS.len()
        );
        p.host_config.cap_drop = vec!["ALL".into()];
        let spec = plan(
            &p,
            &process(),
            Path::new("/r"),
            &NetnsPlan::Host,
            &etc(),
            &[],
        )
        .expect("ok");
        assert_eq!(spec["linux"]["maskedPaths"], json!([]));
        assert!(!spec["linux"]["namespaces"].to_string().contains("network"));
    }

    fn plan_of(r: &ContainerRecord) -> Result<Value, ApiError> {
        plan(r, &process(), Path::new("/r"), &NetnsPlan::New, &etc(), &[])
    }

    #[test]
    fn seccomp_default_unconfined_and_privileged() {
        let spec = plan_of(&record()).expect("plans");
        assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        let seccomp = spec["linux"]["seccomp"].to_string();
        assert!(
            !seccomp.contains("\"unshare\""),
            "unshare refused by default"
        );
        let mut admin = record();
        admin.host_config.cap_add = vec!["SYS_ADMIN".into()];
        let seccomp = plan_of(&admin).expect("plans")["linux"]["seccomp"].to_string();
        assert!(seccomp.contains("\"unshare\"") && seccomp.contains("\"mount\""));
        let mut r = record();
        r.host_config.security_opt = vec!["seccomp=unconfined".into()];
        assert!(plan_of(&r).expect("plans")["linux"]["seccomp"].is_null());
        let mut p = record();
        p.host_config.privileged = true;
        assert!(plan_of(&p).expect("plans")["linux"]["seccomp"].is_null());
        let typed: oci_spec::runtime::Spec =
            serde_json::from_value(plan_of(&record()).expect("plans")).expect("a valid spec");
        assert!(typed
            .linux()
            .as_ref()
            .is_some_and(|l| l.seccomp().is_some()));
    }

    #[test]
    fn security_opts_are_checked_at_create() {
        let mut hc = HostConfig {
            security_opt: vec!["no-new-privileges".into()],
            ..Default::default()
        };
        hc = check_security(hc).expect("valid");
        let mut r = record();
        r.host_config = hc.clone();
        assert_eq!(
            plan_of(&r).expect("plans")["process"]["noNewPrivileges"],
            true
        );
        hc.security_opt = vec!["bogus=1".into()];
        let e = check_security(hc.clone()).expect_err("unknown option");
        assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST);
        assert_eq!(e.message, "invalid --security-opt: \"bogus=1\"");
        hc.security_opt = vec![r#"seccomp={"defaultAction":"SCMP_ACT_BOGUS"}"#.into()];
        let e = check_security(hc.clone()).expect_err("bad profile");
        assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST);
        assert!(
            e.message.starts_with("invalid seccomp profile:"),
            "{}",
            e.message
        );
        hc.security_opt = vec!["seccomp={not json".into()];
        let e = check_security(hc).expect_err("not JSON");
        assert!(
            e.message.starts_with("decoding seccomp profile failed:"),
            "{}",
            e.message
        );
    }
}

//! Bundles: a rootfs with the probe in it and a config.json made from a minimal base spec.
//!
//! The base is runc's `spec` output trimmed to what every check needs: the probe as the
//! process, a read-only root, the standard filesystems, new pid/network/ipc/uts/mount
//! namespaces, a deny-all device rule and a unique absolute cgroupsPath. A check changes
//! only the field it is about.

use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where the probe sits in every rootfs.
pub const PROBE: &str = "/oci-probe";
/// The host's static busybox (Debian's busybox-static), for checks that need a shell.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// The runtime-spec version the checks follow (where 1.3 changed a rule, both are accepted
/// and the report notes which one the runtime follows).
pub const SPEC_VERSION: &str = "1.2.0";

pub const DEFAULT_CAPS: &[&str] = &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
pub const HOSTNAME: &str = "oci-conformance";

pub fn base_config(args: &[String], cgroups_path: &str) -> Value {
    json!({
        "ociVersion": SPEC_VERSION,
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": DEFAULT_CAPS,
                "effective": DEFAULT_CAPS,
                "permitted": DEFAULT_CAPS
            },
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": HOSTNAME,
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ]
        }
    })
}

/// A bundle directory: `config.json` plus `rootfs/`. The container's stdout and stderr (and
/// the runtime's, for the command that started it) go to `stdout` and `stderr` here.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    /// Makes `dir/rootfs` with the probe (hard-linked from `probe` when possible) and the
    /// usual mount points, and writes the base config.
    pub fn create(
        dir: &Path,
        probe: &Path,
        args: &[String],
        cgroups_path: &str,
    ) -> Result<Bundle, String> {
        let rootfs = dir.join("rootfs");
        let err = |what: &str, e: std::io::Error| format!("{what}: {e}");
        for d in ["proc", "dev", "sys", "tmp", "etc"] {
            fs::create_dir_all(rootfs.join(d)).map_err(|e| err(d, e))?;
        }
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))
            .map_err(|e| err("chmod tmp", e))?;
        let target = rootfs.join(PROBE.trim_start_matches('/'));
        if fs::hard_link(probe, &target).is_err() {
            fs::copy(probe, &target).map_err(|e| err("copying oci-probe", e))?;
        }
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
            .map_err(|e| err("chmod oci-probe", e))?;
        let b = Bundle {
            dir: dir.to_path_buf(),
            config: base_config(args, cgroups_path),
        };
        b.write()?;
        Ok(b)
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn stdout_path(&self) -> PathBuf {
        self.dir.join("stdout")
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.dir.join("stderr")
    }

    /// What the container (and the runtime command that made it) wrote to stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.stdout_path()).unwrap_or_default()
    }

    pub fn cgroups_path(&self) -> String {
        self.config["linux"]["cgroupsPath"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn write(&self) -> Result<(), String> {
        let text = serde_json::to_string_pretty(&self.config).map_err(|e| e.to_string())?;
        fs::write(self.dir.join("config.json"), text).map_err(|e| format!("config.json: {e}"))
    }

    /// Adds busybox as /bin/busybox (for hooks that run in the container). `busybox` is the
    /// run's own copy of the host's, never the host's file itself: a hard link to that would
    /// let a container with a writable root change the host's busybox.
    pub fn add_busybox(&self, busybox: &Path) -> Result<(), String> {
        let bin = self.rootfs().join("bin");
        fs::create_dir_all(&bin).map_err(|e| format!("rootfs/bin: {e}"))?;
        let target = bin.join("busybox");
        if fs::hard_link(busybox, &target).is_err() {
            fs::copy(busybox, &target).map_err(|e| format!("copying busybox: {e}"))?;
        }
        Ok(())
    }

    pub fn process(&mut self) -> &mut Value {
        &mut self.config["process"]
    }

    pub fn linux(&mut self) -> &mut Value {
        &mut self.config["linux"]
    }

    pub fn set_args(&mut self, args: &[&str]) {
        self.config["process"]["args"] = json!(args);
    }

    pub fn add_mount(&mut self, mount: Value) {
        if let Some(list) = self.config["mounts"].as_array_mut() {
            list.push(mount);
        }
    }

    /// A read-write bind of a host directory or file at `destination`.
    pub fn bind(&mut self, host: &Path, destination: &str, extra: &[&str]) {
        let mut options = vec!["rbind"];
        options.extend_from_slice(extra);
        self.add_mount(json!({
            "destination": destination, "type": "bind",
            "source": host, "options": options
        }));
    }

    fn namespaces(&mut self) -> &mut Vec<Value> {
        if !self.config["linux"]["namespaces"].is_array() {
            self.config["linux"]["namespaces"] = json!([]);
        }
        self.config["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces is an array")
    }

    pub fn remove_namespace(&mut self, typ: &str) {
        self.namespaces().retain(|n| n["type"] != typ);
    }

    /// Adds a namespace of `typ` (replacing one of that type), new or joined at `path`.
    pub fn set_namespace(&mut self, typ: &str, path: Option<&str>) {
        self.remove_namespace(typ);
        let ns = match path {
            Some(p) => json!({ "type": typ, "path": p }),
            None => json!({ "type": typ }),
        };
        self.namespaces().push(ns);
    }

    /// Adds a namespace entry without removing others of the same type.
    pub fn push_namespace(&mut self, entry: Value) {
        self.namespaces().push(entry);
    }
}

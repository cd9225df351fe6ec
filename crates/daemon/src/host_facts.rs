//! Facts about the host that `/version` and `/info` report, read once at startup: they do
//! not change while the daemon runs (a kernel or OS upgrade needs a reboot).

use std::path::Path;

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
use nix::sys::utsname::uname;

/// What the host is, as the Engine API spells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `uname -r`.
    pub kernel_version: String,
    /// `uname -n`; Docker's `Name`.
    pub hostname: String,
    /// `uname -m` (`x86_64`); `/info`'s `Architecture`.
    pub machine: String,
    /// `PRETTY_NAME` from os-release.
    pub operating_system: String,
    /// `VERSION_ID` from os-release.
    pub os_version: String,
    pub ncpu: i64,
    /// Bytes.
    pub mem_total: i64,
    /// `"1"` or `"2"`.
    pub cgroup_version: &'static str,
    pub cgroup_controllers: CgroupControllers,
    pub ipv4_forwarding: bool,
}

/// Which resource controllers are usable; `docker info` prints a warning for each missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupControllers {
    pub memory: bool,
    pub cpu: bool,
    pub cpuset: bool,
    pub pids: bool,
}

impl HostFacts {
    /// Reads the facts. Nothing here fails the daemon: an unreadable file leaves its field
    /// blank, which the CLI prints as blank, as dockerd does.
    pub fn gather() -> Self {
        let (kernel_version, hostname, machine) = match uname() {
            Ok(u) => (
                u.release().to_string_lossy().into_owned(),
                u.nodename().to_string_lossy().into_owned(),
                u.machine().to_string_lossy().into_owned(),
            ),
            Err(err) => {
                tracing::warn!(%err, "uname failed");
                Default::default()
            }
        };
        let os_release = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .unwrap_or_default();
        let cgroup2 =
            statfs("/sys/fs/cgroup").is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC);
        Self {
            kernel_version,
            hostname,
            machine,
            operating_system: os_release_field(&os_release, "PRETTY_NAME")
                .unwrap_or_else(|| "Linux".to_owned()),
            os_version: os_release_field(&os_release, "VERSION_ID").unwrap_or_default(),
            // Honours the CPU affinity mask, like Go's runtime.NumCPU that dockerd reports.
            ncpu: std::thread::available_parallelism().map_or(1, |n| n.get() as i64),
            mem_total: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| mem_total_bytes(&m))
                .unwrap_or(0),
            cgroup_version: if cgroup2 { "2" } else { "1" },
            cgroup_controllers: if cgroup2 {
                let list = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                    .unwrap_or_default();
                v2_controllers(&list)
            } else {
                let root = Path::new("/sys/fs/cgroup");
                CgroupControllers {
                    memory: root.join("memory").is_dir(),
                    cpu: root.join("cpu").is_dir(),
                    cpuset: root.join("cpuset").is_dir(),
                    pids: root.join("pids").is_dir(),
                }
            },
            ipv4_forwarding: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .is_ok_and(|v| v.trim() == "1"),
        }
    }
}

/// Go's `GOARCH` name for a Rust target architecture: clients compare `/version`'s `Arch`
/// with image platforms, which use Go's names.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// One `KEY=value` of an os-release file, unquoted (os-release(5) allows `"` or `'`).
fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix(key)?.strip_prefix('=')?;
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        Some(value.to_owned())
    })
}

/// `MemTotal:  16318412 kB` from /proc/meminfo, in bytes (the kernel's "kB" is KiB).
fn mem_total_bytes(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The controllers listed in the root's `cgroup.controllers` (space separated).
fn v2_controllers(list: &str) -> CgroupControllers {
    let has = |name: &str| list.split_whitespace().any(|c| c == name);
    CgroupControllers {
        memory: has("memory"),
        cpu: has("cpu"),
        cpuset: has("cpuset"),
        pids: has("pids"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_rust_arch_to_go_arch() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("s390x"), "s390x");
    }

    #[test]
    fn reads_os_release() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID='12'\nID=debian\n";
        assert_eq!(
            os_release_field(text, "PRETTY_NAME").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os_release_field(text, "VERSION_ID").as_deref(), Some("12"));
        assert_eq!(os_release_field(text, "ID").as_deref(), Some("debian"));
        assert_eq!(os_release_field(text, "NAM"), None);
    }

    #[test]
    fn reads_meminfo() {
        assert_eq!(
            mem_total_bytes("MemTotal:       16318412 kB\nMemFree: 1 kB\n"),
            Some(16318412 * 1024)
        );
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn reads_v2_controllers() {
        let c = v2_controllers("cpuset cpu io memory pids\n");
        assert!(c.memory && c.cpu && c.cpuset && c.pids);
        assert!(!v2_controllers("io").memory);
    }
}

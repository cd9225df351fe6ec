//! What the host is like, read once: the cgroup layout, the capabilities the runtime can
//! hand out, the LSMs, and the runner's own namespaces (what a container that does not ask
//! for a new namespace must share).

use crate::caps;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// One line of /proc/self/mountinfo, the fields the suite needs.
#[derive(Debug, Clone)]
pub struct MountInfo {
    /// The path inside the mounted filesystem (for cgroups: which cgroup the mount shows).
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: String,
}

/// Parses a mountinfo text (proc(5)); unparseable lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some(MountInfo {
                root: unescape(left.get(3)?),
                mount_point: PathBuf::from(unescape(left.get(4)?)),
                fs_type: right.first()?.to_string(),
                super_options: right.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

pub fn mountinfo() -> Vec<MountInfo> {
    parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            out.push(
                b[i + 1..i + 4]
                    .iter()
                    .fold(0u32, |v, d| v * 8 + u32::from(d - b'0')) as u8,
            );
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Controllers on v1 hierarchies, no cgroup2 mount.
    Legacy,
    /// Controllers on v1, an (empty or partly used) cgroup2 mount beside them.
    Hybrid,
    /// cgroup2 only.
    Unified,
}

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone)]
pub struct CgroupMount {
    pub mount_point: PathBuf,
    /// The cgroup the mount shows at its mount point (usually "/").
    pub root: String,
    /// v1 controllers (and `name=systemd`); empty for cgroup2.
    pub controllers: Vec<String>,
    pub v2: bool,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub cgroup_layout: CgroupLayout,
    pub cgroup_mounts: Vec<CgroupMount>,
    /// The runner's capability bounding set: what a runtime started from here can grant.
    pub bounding: u64,
    pub apparmor: bool,
    pub selinux: bool,
    /// The runner's own namespaces, type -> `type:[inode]`.
    pub ns: BTreeMap<String, String>,
    /// The runner's RLIMIT_NOFILE (soft, hard): a container may lower it without privilege.
    pub nofile: (u64, u64),
    pub oom_score_adj: i64,
}

const V1_OPTS_NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "nosuid",
    "nodev",
    "noexec",
    "relatime",
    "noatime",
    "xattr",
    "clone_children",
    "noprefix",
    "cpuset_v2_mode",
    "favordynmods",
];

impl Host {
    pub fn detect() -> Host {
        let mounts = mountinfo();
        let mut cgroup_mounts = Vec::new();
        for m in &mounts {
            match m.fs_type.as_str() {
                "cgroup" => cgroup_mounts.push(CgroupMount {
                    mount_point: m.mount_point.clone(),
                    root: m.root.clone(),
                    controllers: m
                        .super_options
                        .split(',')
                        .filter(|o| !V1_OPTS_NOT_CONTROLLERS.contains(o))
                        .filter(|o| !o.starts_with("release_agent="))
                        .map(str::to_owned)
                        .collect(),
                    v2: false,
                }),
                "cgroup2" => cgroup_mounts.push(CgroupMount {
                    mount_point: m.mount_point.clone(),
                    root: m.root.clone(),
                    controllers: Vec::new(),
                    v2: true,
                }),
                _ => {}
            }
        }
        let has_v1 = cgroup_mounts.iter().any(|m| !m.v2);
        let has_v2 = cgroup_mounts.iter().any(|m| m.v2);
        let cgroup_layout = match (has_v1, has_v2) {
            (true, true) => CgroupLayout::Hybrid,
            (true, false) => CgroupLayout::Legacy,
            _ => CgroupLayout::Unified,
        };
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let bounding = status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .unwrap_or(0);
        let apparmor = fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .map(|s| s.trim() == "Y")
            .unwrap_or(false);
        let selinux = Path::new("/sys/fs/selinux/enforce").exists();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into a valid struct.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        Host {
            cgroup_layout,
            cgroup_mounts,
            bounding,
            apparmor,
            selinux,
            ns: namespaces_of("self"),
            nofile: (lim.rlim_cur, lim.rlim_max),
            oom_score_adj: fs::read_to_string("/proc/self/oom_score_adj")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
        }
    }

    /// Capabilities that exist in the table but not in our bounding set: no runtime started
    /// from here can grant them.
    pub fn missing_caps(&self) -> Vec<String> {
        let all = (1u64 << caps::NAMES.len()) - 1;
        caps::names(all & !self.bounding)
    }

    /// One line for the TAP header.
    pub fn describe(&self) -> String {
        let layout = match self.cgroup_layout {
            CgroupLayout::Legacy => "cgroup v1".to_string(),
            CgroupLayout::Hybrid => format!(
                "cgroup v1 hybrid (controllers on v1, cgroup2 at {})",
                self.cgroup_mounts
                    .iter()
                    .find(|m| m.v2)
                    .map(|m| m.mount_point.display().to_string())
                    .unwrap_or_default()
            ),
            CgroupLayout::Unified => "cgroup v2".to_string(),
        };
        let missing = self.missing_caps();
        let caps = if missing.is_empty() {
            "full capability bounding set".to_string()
        } else {
            format!("bounding set lacks {}", missing.join(", "))
        };
        let onoff = |b: bool| if b { "on" } else { "off" };
        format!(
            "{layout}; {caps}; AppArmor {}; SELinux {}",
            onoff(self.apparmor),
            onoff(self.selinux)
        )
    }

    /// Directories that exist for `cgroups_path` (as in `linux.cgroupsPath`, absolute) in
    /// any mounted hierarchy.
    pub fn cgroup_dirs(&self, cgroups_path: &str) -> Vec<PathBuf> {
        let rel = cgroups_path.trim_matches('/');
        if rel.is_empty() {
            return Vec::new();
        }
        let mut dirs = Vec::new();
        for m in &self.cgroup_mounts {
            let mut candidates = vec![m.mount_point.join(rel)];
            // A mount of a sub-cgroup (root "/a") shows "/a/x" at "<mount>/x".
            let mroot = m.root.trim_matches('/');
            if !mroot.is_empty() {
                if let Some(rest) = rel.strip_prefix(mroot).and_then(|r| r.strip_prefix('/')) {
                    candidates.push(m.mount_point.join(rest));
                }
            }
            for d in candidates {
                if d.is_dir() && !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
        dirs
    }

    /// The v1 mount of `controller`, or the v2 mount on a unified host.
    pub fn controller_mount(&self, controller: &str) -> Option<&CgroupMount> {
        match self.cgroup_layout {
            CgroupLayout::Unified => self.cgroup_mounts.iter().find(|m| m.v2),
            _ => self
                .cgroup_mounts
                .iter()
                .find(|m| !m.v2 && m.controllers.iter().any(|c| c == controller)),
        }
    }
}

/// `/proc/PID/ns/*` links, type -> `type:[inode]`. `pid` may be "self".
pub fn namespaces_of(pid: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for t in ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"] {
        if let Ok(l) = fs::read_link(format!("/proc/{pid}/ns/{t}")) {
            out.insert(t.to_string(), l.display().to_string());
        }
    }
    out
}

/// `/proc/PID/cgroup` as (controllers, path) pairs; controllers is "" for v2.
pub fn proc_cgroup(pid: i64) -> Vec<(String, String)> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// The directory of `pid`'s cgroup for `controller` on this host, from /proc/PID/cgroup.
pub fn controller_dir(host: &Host, pid: i64, controller: &str) -> Option<PathBuf> {
    let mount = host.controller_mount(controller)?;
    let path = proc_cgroup(pid).into_iter().find_map(|(ctrls, path)| {
        let hit = if mount.v2 {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        hit.then_some(path)
    })?;
    let rel = path.trim_start_matches('/');
    let mroot = mount.root.trim_matches('/');
    let rel = if mroot.is_empty() {
        rel
    } else {
        rel.strip_prefix(mroot)?.trim_start_matches('/')
    };
    Some(mount.mount_point.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse_with_escapes() {
        let text = "36 25 0:31 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n\
                    40 25 0:35 /a\\040b /mnt/x\\040y rw - tmpfs tmpfs rw,size=10k\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].fs_type, "cgroup");
        assert_eq!(m[0].super_options, "rw,memory");
        assert_eq!(m[1].root, "/a b");
        assert_eq!(m[1].mount_point, PathBuf::from("/mnt/x y"));
    }
}

//! Which cgroup hierarchies the host has and where we sit in each.

use crate::error::{Context, Result};
use std::path::PathBuf;

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted on the host, e.g. /sys/fs/cgroup/cpu.
    pub mountpoint: PathBuf,
    /// v1 controllers (and `name=...`) of this hierarchy; empty for v2.
    pub controllers: Vec<String>,
    pub v2: bool,
    /// The runtime's own cgroup in this hierarchy, from /proc/self/cgroup.
    pub own: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Only cgroup2 (the unified layout most hosts have today).
    Unified,
    /// cgroup v1 controllers, possibly with an extra v2 tree (the hybrid layout).
    Legacy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub layout: Layout,
    pub mounts: Vec<Mount>,
}

/// Super options of a v1 mount that are not controllers.
const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "noprefix",
    "clone_children",
    "xattr",
    "cpuset_v2_mode",
];

impl Hierarchy {
    pub fn detect() -> Result<Hierarchy> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .context("reading /proc/self/mountinfo")?;
        let own =
            std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        Ok(Hierarchy::parse(&mountinfo, &own))
    }

    /// Builds the hierarchy list from the text of /proc/self/mountinfo and /proc/self/cgroup.
    pub fn parse(mountinfo: &str, own_cgroups: &str) -> Hierarchy {
        let mut own_v1: Vec<(Vec<String>, PathBuf)> = Vec::new();
        let mut own_v2 = PathBuf::from("/");
        for line in own_cgroups.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if ctrls.is_empty() {
                own_v2 = PathBuf::from(path);
            } else {
                let mut c: Vec<String> = ctrls.split(',').map(str::to_string).collect();
                c.sort();
                own_v1.push((c, PathBuf::from(path)));
            }
        }
        let mut mounts: Vec<Mount> = Vec::new();
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let (Some(mp), Some(fstype), Some(opts)) = (pre.get(4), post.first(), post.get(2))
            else {
                continue;
            };
            let mountpoint = PathBuf::from(unescape(mp));
            match *fstype {
                "cgroup2" if !mounts.iter().any(|m| m.v2) => {
                    mounts.push(Mount {
                        mountpoint,
                        controllers: vec![],
                        v2: true,
                        own: own_v2.clone(),
                    });
                }
                "cgroup" => {
                    let mut controllers: Vec<String> = opts
                        .split(',')
                        .filter(|o| {
                            !NOT_CONTROLLERS.contains(o) && !o.starts_with("release_agent=")
                        })
                        .map(str::to_string)
                        .collect();
                    controllers.sort();
                    if controllers.is_empty() || mounts.iter().any(|m| m.controllers == controllers)
                    {
                        continue;
                    }
                    let own = own_v1
                        .iter()
                        .find(|(c, _)| *c == controllers)
                        .map(|(_, p)| p.clone())
                        .unwrap_or_else(|| PathBuf::from("/"));
                    mounts.push(Mount {
                        mountpoint,
                        controllers,
                        v2: false,
                        own,
                    });
                }
                _ => {}
            }
        }
        let layout = if mounts.iter().any(|m| !m.v2) {
            Layout::Legacy
        } else {
            Layout::Unified
        };
        Hierarchy { layout, mounts }
    }

    /// The v2 tree, if there is one (the whole hierarchy on unified hosts).
    pub fn v2_mount(&self) -> Option<&Mount> {
        self.mounts.iter().find(|m| m.v2)
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
25 1 0:23 / / rw,relatime - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
36 30 0:32 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
";
    const HYBRID_SELF: &str = "\
7:net_cls,net_prio:/
5:memory:/work
4:cpuacct:/
3:cpu:/
1:name=systemd:/session
0::/
";

    #[test]
    fn hybrid_layout() {
        let h = Hierarchy::parse(HYBRID_MOUNTINFO, HYBRID_SELF);
        assert_eq!(h.layout, Layout::Legacy);
        assert_eq!(h.mounts.len(), 6);
        let mem = h
            .mounts
            .iter()
            .find(|m| m.controllers == ["memory"])
            .unwrap();
        assert_eq!(mem.own, PathBuf::from("/work"));
        let sd = h
            .mounts
            .iter()
            .find(|m| m.controllers == ["name=systemd"])
            .unwrap();
        assert_eq!(sd.own, PathBuf::from("/session"));
        let net = h.mounts.iter().find(|m| m.controllers.len() == 2).unwrap();
        assert_eq!(
            net.mountpoint,
            PathBuf::from("/sys/fs/cgroup/net_cls,net_prio")
        );
        assert_eq!(
            h.v2_mount().unwrap().mountpoint,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn unified_layout() {
        let h = Hierarchy::parse(
            "40 1 0:35 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/user.slice/user-0.slice/session-3.scope\n",
        );
        assert_eq!(h.layout, Layout::Unified);
        assert_eq!(h.mounts.len(), 1);
        assert_eq!(
            h.mounts[0].own,
            PathBuf::from("/user.slice/user-0.slice/session-3.scope")
        );
    }

    #[test]
    fn escaped_mountpoints() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}

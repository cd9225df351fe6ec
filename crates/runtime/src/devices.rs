//! Device nodes in the container's /dev: the defaults every container gets, the config's
//! `linux.devices`, and the standard symlinks. In a user namespace mknod is not allowed, so
//! nodes are bind mounts of the host's devices there, as runc does.

use crate::error::{Context, Result};
use crate::secure_path::{fd_path, Leaf, RootDir};
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use std::path::{Path, PathBuf};

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    pub path: PathBuf,
    pub kind: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices the runtime spec says every Linux container has.
const DEFAULTS: &[(&str, i64, i64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

const LINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
];

/// Plans the nodes: the config's devices, plus each default it does not redefine.
pub fn plan(configured: &[LinuxDevice]) -> Vec<DeviceNode> {
    let mut nodes: Vec<DeviceNode> = configured
        .iter()
        .map(|d| DeviceNode {
            path: d.path().clone(),
            kind: d.typ(),
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        })
        .collect();
    for (path, major, minor) in DEFAULTS {
        if !nodes.iter().any(|n| n.path == Path::new(path)) {
            nodes.push(DeviceNode {
                path: PathBuf::from(path),
                kind: LinuxDeviceType::C,
                major: *major,
                minor: *minor,
                mode: 0o666,
                uid: 0,
                gid: 0,
            });
        }
    }
    nodes
}

pub fn create(root: &RootDir, nodes: &[DeviceNode], in_userns: bool) -> Result<()> {
    for node in nodes {
        if in_userns {
            bind_host_device(root, node)?;
        } else {
            mknod(root, node)?;
        }
    }
    Ok(())
}

fn mknod(root: &RootDir, node: &DeviceNode) -> Result<()> {
    let (dir, name) = root.parent_and_name(&node.path)?;
    let kind = match node.kind {
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        _ => libc::S_IFCHR,
    };
    let dev = libc::makedev(node.major as u32, node.minor as u32);
    use std::os::fd::AsRawFd;
    // SAFETY: syscalls on a directory fd we own and a NUL-terminated single name. The old
    // entry (an image's placeholder file) is removed first; unlinkat does not follow symlinks.
    unsafe {
        libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0);
        if libc::mknodat(
            dir.as_raw_fd(),
            name.as_ptr(),
            kind | (node.mode & 0o7777),
            dev,
        ) < 0
        {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("creating device {}", node.path.display()));
        }
        if libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            node.uid,
            node.gid,
            libc::AT_SYMLINK_NOFOLLOW,
        ) < 0
        {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("chown of device {}", node.path.display()));
        }
    }
    Ok(())
}

fn bind_host_device(root: &RootDir, node: &DeviceNode) -> Result<()> {
    let target = root.ensure(&node.path, Leaf::File)?;
    mount(
        Some(&node.path),
        fd_path(&target).as_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| format!("bind mounting device {}", node.path.display()))
}

/// /dev/fd and friends, and /dev/ptmx pointing at the container's own devpts instance.
pub fn create_links(root: &RootDir, with_ptmx: bool) -> Result<()> {
    let ptmx = [("pts/ptmx", "/dev/ptmx")];
    let links = LINKS.iter().chain(ptmx.iter().filter(|_| with_ptmx));
    for (target, link) in links {
        let (dir, name) = root.parent_and_name(Path::new(link))?;
        let t = std::ffi::CString::new(*target).expect("static link target has no NUL");
        use std::os::fd::AsRawFd;
        // SAFETY: symlinkat on a directory fd we own; unlinkat first so /dev/ptmx from the
        // image (a device node) is replaced by the link.
        let ret = unsafe {
            if *link == "/dev/ptmx" {
                libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0);
            }
            libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), name.as_ptr())
        };
        if ret < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e).with_context(|| format!("creating symlink {link}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_and_config_overrides() {
        let custom: LinuxDevice = serde_json::from_value(serde_json::json!({
            "path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600
        }))
        .unwrap();
        let fuse: LinuxDevice = serde_json::from_value(serde_json::json!({
            "path": "/dev/fuse", "type": "c", "major": 10, "minor": 229
        }))
        .unwrap();
        let nodes = plan(&[custom, fuse]);
        assert_eq!(nodes.len(), 7);
        let null: Vec<_> = nodes
            .iter()
            .filter(|n| n.path == Path::new("/dev/null"))
            .collect();
        assert_eq!(null.len(), 1);
        assert_eq!(null[0].mode, 0o600);
        assert!(nodes
            .iter()
            .any(|n| n.path == Path::new("/dev/tty") && n.major == 5));
    }
}

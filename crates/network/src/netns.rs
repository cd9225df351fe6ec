//! Network namespaces that outlive any process: a new namespace bind-mounted on a file, as
//! `ip netns add` does, but in-process (no `ip` spawn, no re-exec).
//!
//! The daemon makes the container's namespace before the container exists, so that the
//! network is ready when the runtime starts init in it, and a namespace that no process holds
//! can still be torn down from its path after a crash.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// What can go wrong making or removing a namespace file.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("network namespace {0} exists already (remove it first)")]
    Exists(PathBuf),
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> NetnsError + 'a {
    move |source| NetnsError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn errno_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(Errno) -> NetnsError + 'a {
    move |errno| NetnsError::Io {
        path: path.to_path_buf(),
        op,
        source: errno.into(),
    }
}

/// Makes `dir` a shared mount point, bind-mounting it onto itself first if it is not a mount
/// point yet (exactly what iproute2's `netns_add` does for `/run/netns`). Shared propagation
/// makes our later `umount` of a namespace file reach the copies that mount namespaces
/// created in between (the runtime's, systemd services') hold; without it those copies keep
/// the namespace alive after the container is gone.
fn make_shared_dir(dir: &Path) -> Result<(), NetnsError> {
    let shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(errno_err(dir, "bind mount the directory onto itself"))?;
            shared().map_err(errno_err(dir, "make the directory a shared mount"))
        }
        Err(e) => Err(errno_err(dir, "make the directory a shared mount")(e)),
    }
}

/// Creates a new network namespace and bind-mounts it on `path` (an empty file made here;
/// the parent directory is created and made a shared mount point). The namespace lives
/// until [`remove_netns`], whether or not a process is in it.
///
/// `unshare(CLONE_NEWNET)` changes only the calling thread, so it runs on a short-lived
/// thread of its own and the caller's threads never leave the host namespace.
pub fn create_netns(path: &Path) -> Result<(), NetnsError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| NetnsError::Io {
            path: path.to_path_buf(),
            op: "find the parent directory",
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
    fs::create_dir_all(dir).map_err(io_err(dir, "create the directory"))?;
    make_shared_dir(dir)?;
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // An empty file left by a crash between create and mount can be reused; a
            // mounted one is a live namespace that must not be shadowed.
            if is_mounted(path)? {
                return Err(NetnsError::Exists(path.to_path_buf()));
            }
        }
        Err(e) => return Err(io_err(path, "create the mount point file")(e)),
    }

    let result = std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("berth-netns".to_string())
            .spawn_scoped(s, || -> Result<(), NetnsError> {
                unshare(CloneFlags::CLONE_NEWNET).map_err(errno_err(path, "unshare"))?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(errno_err(path, "bind mount the namespace"))
            })
            .map_err(io_err(path, "start the helper thread"))?;
        helper.join().unwrap_or_else(|_| {
            Err(NetnsError::Io {
                path: path.to_path_buf(),
                op: "create",
                source: io::Error::other("helper thread panicked"),
            })
        })
    });
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// Whether `path` is a mount point, from `/proc/self/mountinfo` (field 5 is the mount point,
/// with spaces and other specials octal-escaped).
fn is_mounted(path: &Path) -> Result<bool, NetnsError> {
    let info = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(info).map_err(io_err(info, "read mountinfo"))?;
    Ok(mountinfo_has(&text, path))
}

/// Whether the mountinfo `text` lists a mount on `path`.
fn mountinfo_has(text: &str, path: &Path) -> bool {
    let want = escape_mountinfo(&path.to_string_lossy());
    text.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|mp| mp == want))
}

/// The kernel's `mangle_path` escaping for space, tab, newline and backslash.
fn escape_mountinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// Unmounts and deletes a namespace file made by [`create_netns`]. The namespace itself goes
/// when nothing else holds it (a process in it, an open fd). Idempotent: `false` when there
/// was nothing to remove.
pub fn remove_netns(path: &Path) -> Result<bool, NetnsError> {
    let mut removed = false;
    // Shared propagation can stack the same mount more than once on the path (as with
    // `ip netns add` on a systemd host); unmount until nothing is left. Bounded so that a
    // kernel that keeps answering success cannot spin us forever.
    for _ in 0..16 {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => removed = true,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(e) => return Err(errno_err(path, "unmount")(e)),
        }
    }
    match fs::remove_file(path) {
        Ok(()) => removed = true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path, "delete the mount point file")(e)),
    }
    Ok(removed)
}

/// Undoes the self bind mount [`create_netns`] put on a namespace directory, for a full
/// cleanup once every namespace in it is removed; `false` when `dir` was not a mount point.
/// Only call it for a directory berth made (e.g. `/run/berth/netns`), never `/run/netns`.
pub fn unmount_netns_dir(dir: &Path) -> Result<bool, NetnsError> {
    if !is_mounted(dir)? {
        return Ok(false);
    }
    let mut removed = false;
    for _ in 0..16 {
        match umount2(dir, MntFlags::MNT_DETACH) {
            Ok(()) => removed = true,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(e) => return Err(errno_err(dir, "unmount")(e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mount_points_in_mountinfo() {
        let text = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    40 22 0:4 net:[4026532] /run/berth/netns/a\\040b rw - nsfs nsfs rw\n";
        assert!(mountinfo_has(text, Path::new("/run/berth/netns/a b")));
        assert!(mountinfo_has(text, Path::new("/")));
        assert!(!mountinfo_has(text, Path::new("/run/berth/netns/a")));
        assert_eq!(escape_mountinfo("a\\b\tc"), "a\\134b\\011c");
    }
}

//! Opening and creating paths inside the container's root without ever leaving it.
//!
//! Mount destinations come from config.json but are resolved in a rootfs that the image
//! controls: a symlink `/mnt -> /` in the image must not turn a mount on `/mnt/x` into a
//! mount on the host's `/x`. Every lookup goes through openat2(RESOLVE_IN_ROOT), which makes
//! the kernel treat the rootfs as `/` for `..` and absolute symlinks; the mount itself then
//! targets `/proc/self/fd/N`, the exact object we opened. nix has no openat2 wrapper yet, so
//! the syscall is called directly.

use crate::error::{Context, Error, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// What to create when the last component of a path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    Dir,
    File,
}

/// An open handle on a container root directory.
pub struct RootDir {
    fd: OwnedFd,
    pub path: PathBuf,
}

/// The path that names an open fd for mount(2) and friends.
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::InvalidState(format!("path {p:?} contains a NUL byte")))
}

/// The components of an in-container path, without the leading `/` or `.` parts.
fn components(path: &Path) -> Vec<PathBuf> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect()
}

impl RootDir {
    pub fn open(path: &Path) -> Result<RootDir> {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| format!("opening rootfs {}", path.display()))?;
        Ok(RootDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// openat2 relative to the root with the root as `/`.
    fn openat2(&self, rel: &Path, flags: i32) -> std::io::Result<OwnedFd> {
        let c = CString::new(rel.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        let how = OpenHow {
            flags: (flags | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: `how` and `c` outlive the call; the size matches the struct we pass.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }

    /// Opens an existing path inside the root as an O_PATH fd; `None` if it does not exist.
    pub fn open_path(&self, path: &Path) -> Result<Option<OwnedFd>> {
        let rel: PathBuf = components(path).iter().collect();
        let rel = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel
        };
        match self.openat2(&rel, libc::O_PATH) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("resolving {} in the rootfs", path.display())),
        }
    }

    /// Opens `path` inside the root, creating missing directories on the way and the last
    /// component as `leaf`. Returns an O_PATH fd on the resolved object.
    pub fn ensure(&self, path: &Path, leaf: Leaf) -> Result<OwnedFd> {
        let comps = components(path);
        if comps.is_empty() {
            return self
                .openat2(Path::new("."), libc::O_PATH)
                .context("opening the rootfs");
        }
        let mut prefix = PathBuf::new();
        let mut parent = self
            .openat2(Path::new("."), libc::O_PATH)
            .context("opening the rootfs")?;
        for (i, comp) in comps.iter().enumerate() {
            prefix.push(comp);
            let last = i + 1 == comps.len();
            let fd = match self.openat2(&prefix, libc::O_PATH) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    self.create_in(&parent, comp, if last { leaf } else { Leaf::Dir }, path)?;
                    self.openat2(&prefix, libc::O_PATH)
                        .with_context(|| format!("opening {} in the rootfs", prefix.display()))?
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("resolving {} in the rootfs", prefix.display()))
                }
            };
            parent = fd;
        }
        Ok(parent)
    }

    fn create_in(&self, parent: &OwnedFd, name: &Path, leaf: Leaf, whole: &Path) -> Result<()> {
        let dir = self
            .reopen_dir(parent)
            .with_context(|| format!("creating {} in the rootfs", whole.display()))?;
        let cname = cstr(name)?;
        // SAFETY: plain syscalls on a valid dirfd with a NUL-terminated single name.
        let ret = unsafe {
            match leaf {
                Leaf::Dir => libc::mkdirat(dir.as_raw_fd(), cname.as_ptr(), 0o755),
                Leaf::File => {
                    let fd = libc::openat(
                        dir.as_raw_fd(),
                        cname.as_ptr(),
                        libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_WRONLY
                            | libc::O_NOFOLLOW
                            | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd >= 0 {
                        libc::close(fd);
                        0
                    } else {
                        -1
                    }
                }
            }
        };
        if ret < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EEXIST) {
                // The name exists but did not resolve: a dangling symlink. Creating its
                // target would mean following it, which is how escapes happen; refuse.
                return Err(Error::InvalidState(format!(
                    "{} in the rootfs is a dangling symlink",
                    whole.display()
                )));
            }
            return Err(e).with_context(|| format!("creating {} in the rootfs", whole.display()));
        }
        Ok(())
    }

    /// An O_PATH fd cannot be used with mkdirat; reopen it as a real directory fd.
    fn reopen_dir(&self, fd: &OwnedFd) -> std::io::Result<OwnedFd> {
        let c = CString::new(fd_path(fd))
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: opening a magic link to a descriptor we hold.
        let ret = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: new descriptor owned by us.
        Ok(unsafe { OwnedFd::from_raw_fd(ret) })
    }

    /// The parent directory of `path` inside the root (created if missing) as a real
    /// directory fd, and the last component's name: for mknodat/symlinkat.
    pub fn parent_and_name(&self, path: &Path) -> Result<(OwnedFd, CString)> {
        let comps = components(path);
        let name = comps
            .last()
            .filter(|n| n.as_os_str() != "..")
            .ok_or_else(|| Error::InvalidState(format!("{} names no file", path.display())))?;
        let parent_path: PathBuf = comps[..comps.len() - 1].iter().collect();
        let parent = self.ensure(&Path::new("/").join(parent_path), Leaf::Dir)?;
        let dir = self
            .reopen_dir(&parent)
            .with_context(|| format!("opening the directory of {}", path.display()))?;
        Ok((dir, cstr(name)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("berth-secure-path-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("root")).unwrap();
        d
    }

    #[test]
    fn absolute_symlinks_stay_inside_the_root() {
        let d = scratch("abs");
        let root = d.join("root");
        symlink("/", root.join("escape")).unwrap();
        symlink("../../../../outside", root.join("up")).unwrap();
        let r = RootDir::open(&root).unwrap();
        r.ensure(Path::new("/escape/made/here"), Leaf::Dir).unwrap();
        assert!(root.join("made/here").is_dir());
        std::fs::create_dir(root.join("outside")).unwrap();
        r.ensure(Path::new("/up/file"), Leaf::Dir).unwrap();
        assert!(
            root.join("outside/file").is_dir(),
            "`..` is clamped at the root"
        );
        assert!(!d.join("outside").exists());
        r.ensure(Path::new("/../../x/f"), Leaf::File).unwrap();
        assert!(root.join("x/f").is_file());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn dangling_symlinks_are_refused() {
        let d = scratch("dangling");
        let root = d.join("root");
        symlink("/nowhere", root.join("dangling")).unwrap();
        let r = RootDir::open(&root).unwrap();
        // "dangling" resolves to a missing "/nowhere"; creating the name itself hits EEXIST,
        // and following it to create the target is exactly what an escape needs.
        let e = r.ensure(Path::new("/dangling"), Leaf::Dir).err().unwrap();
        assert!(e.to_string().contains("dangling"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}

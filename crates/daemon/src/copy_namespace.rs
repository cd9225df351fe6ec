//! The container's files as its processes see them, for `docker cp`: its rootfs with its
//! bind mounts and volumes mounted on top, in a mount namespace of its own.
//!
//! The binds live in the container's mount namespace (or nowhere, when it is stopped), so
//! the daemon's view of the rootfs has the overlay underneath them. dockerd mounts the
//! volumes onto the rootfs for each copy (`mountVolumes`); berth does the same, but in a
//! private namespace made by a short-lived thread, so nothing is ever mounted in the
//! daemon's (or the host's) namespace and nothing needs unmounting on any error path.
//! An fd on that namespace keeps its mounts alive after the thread is gone; path lookups
//! from the root fd cross into them from any thread.
//!
//! Mount points are resolved like every copy path: `openat2(RESOLVE_IN_ROOT)` below the
//! root, and the mount goes onto that fd (`/proc/self/fd/N`, as runc mounts), so a
//! symlink in the container cannot aim a bind at a host path. Read-only binds and volumes
//! are remounted read-only, so a copy cannot write them even if a check above is raced.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags};

use crate::container_spec::BindMount;

#[derive(Debug, thiserror::Error)]
pub enum CopyNamespaceError {
    #[error("cannot make a mount namespace for the copy: {0}")]
    Namespace(#[source] std::io::Error),
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot mount {source_path} at {destination} for the copy: {source}")]
    Mount {
        source_path: String,
        destination: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the copy's worker thread failed")]
    Thread,
}

type Result<T> = std::result::Result<T, CopyNamespaceError>;

/// The root of a namespaced view, and the namespace that keeps its mounts.
pub struct CopyView {
    pub root: OwnedFd,
    /// Dropped after `root`: closing it tears the namespace (and its mounts) down.
    pub namespace: OwnedFd,
}

/// Opens `rootfs` with `mounts` on top (in the order given: parents before children, as
/// the runtime mounts them), in a new private mount namespace.
pub fn open(rootfs: &Path, mounts: &[BindMount]) -> Result<CopyView> {
    let rootfs = rootfs.to_owned();
    let mut mounts = mounts.to_vec();
    // Parents first, so a child is mounted on the parent's bind, not under it.
    mounts.sort_by_key(|m| depth(&m.destination));
    std::thread::Builder::new()
        .name("cp-namespace".into())
        .spawn(move || in_new_namespace(&rootfs, &mounts))
        .map_err(CopyNamespaceError::Namespace)?
        .join()
        .map_err(|_| CopyNamespaceError::Thread)?
}

fn depth(destination: &str) -> usize {
    Path::new(destination)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

/// Runs on a thread of its own that ends right after: `unshare` moves only this thread.
fn in_new_namespace(rootfs: &Path, mounts: &[BindMount]) -> Result<CopyView> {
    // SAFETY: CLONE_NEWNS (which implies CLONE_FS) affects only the calling thread, which
    // is ours and exits when this function returns; no other thread shares its fs state.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .map_err(|e| CopyNamespaceError::Namespace(e.into()))?;
    // The copied mounts are in the host's peer groups: make them private before mounting,
    // or the binds would propagate back out.
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| CopyNamespaceError::Namespace(e.into()))?;
    let namespace = rustix::fs::open(
        "/proc/thread-self/ns/mnt",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| CopyNamespaceError::Namespace(e.into()))?;
    // Opened in this namespace: lookups from it see the mounts made here.
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| CopyNamespaceError::Open {
        path: rootfs.display().to_string(),
        source: e.into(),
    })?;
    for m in mounts {
        mount_one(&root, m)?;
    }
    Ok(CopyView { root, namespace })
}

fn mount_one(root: &OwnedFd, m: &BindMount) -> Result<()> {
    let fail = |e: Errno| CopyNamespaceError::Mount {
        source_path: m.source.display().to_string(),
        destination: m.destination.clone(),
        source: e.into(),
    };
    // The source is the host's (a path the user gave, or a volume's directory).
    let source =
        rustix::fs::open(&m.source, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).map_err(fail)?;
    let source_stat = rustix::fs::fstat(&source).map_err(fail)?;
    let is_dir = FileType::from_raw_mode(source_stat.st_mode) == FileType::Directory;
    let components = components(&m.destination);
    let target = open_or_create(root, &components, is_dir).map_err(fail)?;
    rustix::mount::mount_bind_recursive(fd_path(&source).as_str(), fd_path(&target).as_str())
        .map_err(fail)?;
    if m.read_only {
        // The fd above is the mount point underneath; the new mount is what a fresh
        // lookup finds. Check it is ours before remounting it.
        let mounted = open_in_root(root, &components, OFlags::PATH).map_err(fail)?;
        let st = rustix::fs::fstat(&mounted).map_err(fail)?;
        if (st.st_dev, st.st_ino) != (source_stat.st_dev, source_stat.st_ino) {
            return Err(fail(Errno::BUSY));
        }
        rustix::mount::mount_remount(
            fd_path(&mounted).as_str(),
            MountFlags::BIND | MountFlags::RDONLY,
            "",
        )
        .map_err(fail)?;
    }
    Ok(())
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn components(destination: &str) -> Vec<OsString> {
    let mut out = Vec::new();
    for c in Path::new(destination).components() {
        match c {
            Component::Normal(n) => out.push(n.to_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn open_in_root(
    root: &OwnedFd,
    components: &[OsString],
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    let mut path = OsString::from(".");
    for c in components {
        path.push("/");
        path.push(c);
    }
    rustix::fs::openat2(
        root,
        &path,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// The mount point, made if missing (a container that never ran has none yet), as
/// dockerd's `CreateIfNotExists`: directories 0755, a file for a file's bind. Each missing
/// element is made by its single name in a parent resolved inside the root.
fn open_or_create(
    root: &OwnedFd,
    components: &[OsString],
    is_dir: bool,
) -> rustix::io::Result<OwnedFd> {
    match open_in_root(root, components, OFlags::PATH) {
        Err(Errno::NOENT) => {}
        other => return other,
    }
    for i in 0..components.len() {
        match open_in_root(root, &components[..=i], OFlags::PATH) {
            Ok(_) => continue,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
        let parent = open_in_root(root, &components[..i], OFlags::PATH | OFlags::DIRECTORY)?;
        let name = components[i].as_os_str();
        let last = i + 1 == components.len();
        let made = if last && !is_dir {
            rustix::fs::openat(
                &parent,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o755),
            )
            .map(drop)
        } else {
            rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755))
        };
        match made {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
    }
    open_in_root(root, components, OFlags::PATH)
}

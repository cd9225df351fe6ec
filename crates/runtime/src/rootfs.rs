//! The container's filesystem view: propagation, the rootfs bind, the config's mounts in
//! order, /dev, pivot_root (or MS_MOVE + chroot with --no-pivot), then readonly and masked
//! paths and a read-only root. Runs inside the init, in its new mount namespace.

use crate::cgroups::{Layout, Mount as CgroupMount};
use crate::devices;
use crate::error::{Context, Error, Result};
use crate::mount_options::{self, ParsedOptions};
use crate::secure_path::{fd_path, Leaf, RootDir};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use oci_spec::runtime::{Mount, Spec};
use std::path::{Path, PathBuf};

/// What rootfs setup needs to know besides the spec.
pub struct RootfsContext<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub in_userns: bool,
    pub new_cgroupns: bool,
    pub cgroup_layout: Layout,
    pub cgroup_leaves: &'a [(CgroupMount, PathBuf)],
}

const NONE: Option<&str> = None;

/// Everything before the pivot.
pub fn prepare(ctx: &RootfsContext) -> Result<()> {
    let linux = ctx.spec.linux().as_ref();
    let propagation = linux.and_then(|l| l.rootfs_propagation().as_deref());
    let root_flag = match propagation {
        Some(p) if !p.is_empty() => {
            mount_options::root_propagation(p).ok_or_else(|| Error::Config {
                path: "config.json".into(),
                cause: format!("linux.rootfsPropagation: unknown value {p:?}"),
            })?
        }
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    // Keep our mounts from reaching the host (slave is the default, as in runc); shared only
    // when the config asks, and then the rootfs parent must still be private for pivot_root.
    mount(NONE, "/", NONE, root_flag, NONE).context("setting propagation of /")?;
    if root_flag.contains(MsFlags::MS_SHARED) {
        make_parent_mount_private(ctx.rootfs)?;
    }
    mount(
        Some(ctx.rootfs),
        ctx.rootfs,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .with_context(|| format!("bind mounting rootfs {}", ctx.rootfs.display()))?;

    let root = RootDir::open(ctx.rootfs)?;
    let mounts: &[Mount] = ctx.spec.mounts().as_deref().unwrap_or(&[]);
    for (i, m) in mounts.iter().enumerate() {
        mount_one(&root, ctx, m).map_err(|e| {
            Error::InvalidState(format!("mounts[{i}] ({}): {e}", m.destination().display()))
        })?;
    }

    let dev_is_bind = mounts
        .iter()
        .any(|m| m.destination() == Path::new("/dev") && parse_options(m).bind);
    let configured = linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]);
    let nodes = if dev_is_bind {
        devices::plan(configured)
            .into_iter()
            .take(configured.len())
            .collect()
    } else {
        devices::plan(configured)
    };
    // mknod obeys the umask; the modes in the config are exact.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let made = devices::create(&root, &nodes, ctx.in_userns);
    nix::sys::stat::umask(old);
    made?;
    if !dev_is_bind {
        let has_devpts = mounts
            .iter()
            .any(|m| m.destination() == Path::new("/dev/pts"));
        devices::create_links(&root, has_devpts)?;
    }
    Ok(())
}

fn parse_options(m: &Mount) -> ParsedOptions {
    let mut p = mount_options::parse(m.options().as_deref().unwrap_or(&[]));
    if m.typ().as_deref() == Some("bind") {
        p.bind = true;
    }
    p
}

fn mount_one(root: &RootDir, ctx: &RootfsContext, m: &Mount) -> Result<()> {
    let opts = parse_options(m);
    let typ = m.typ().as_deref().unwrap_or("");
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(root, ctx, m, &opts);
    }
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let leaf = if opts.bind && !source.is_dir() {
        Leaf::File
    } else {
        Leaf::Dir
    };
    if opts.bind && !source.exists() {
        return Err(Error::InvalidState(format!(
            "bind source {} does not exist",
            source.display()
        )));
    }
    let target = root.ensure(m.destination(), leaf)?;
    if opts.bind {
        let mut flags = MsFlags::MS_BIND;
        if opts.recursive {
            flags |= MsFlags::MS_REC;
        }
        mount(Some(&source), fd_path(&target).as_str(), NONE, flags, NONE)
            .with_context(|| format!("bind mounting {}", source.display()))?;
    } else {
        let data = opts.data_string();
        mount(
            Some(&source),
            fd_path(&target).as_str(),
            Some(typ),
            opts.flags - MsFlags::MS_REMOUNT,
            data.as_deref(),
        )
        .with_context(|| format!("mounting {typ}"))?;
    }
    // The fd we mounted on names the directory underneath; look the path up again to reach
    // the new mount for the remount and propagation calls.
    let mounted = root
        .open_path(m.destination())?
        .ok_or_else(|| Error::InvalidState("vanished after mounting".into()))?;
    let target = fd_path(&mounted);
    if opts.bind && !(opts.flags - MsFlags::MS_REMOUNT).is_empty() {
        remount_bind(&target, opts.flags - MsFlags::MS_REMOUNT)?;
    }
    for p in &opts.propagation {
        mount(NONE, target.as_str(), NONE, *p, NONE).context("setting mount propagation")?;
    }
    Ok(())
}

/// Bind mounts take their flags only on a remount. Flags that are locked on the source (in a
/// user namespace: nosuid/nodev/noexec/ro of the original) must be repeated or the kernel
/// refuses, so they are read back with statvfs and kept.
fn remount_bind(target: &str, flags: MsFlags) -> Result<()> {
    let mut all = flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    if let Ok(st) = statvfs(target) {
        let f = st.flags();
        for (fs, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        ] {
            if f.contains(fs) {
                all |= ms;
            }
        }
    }
    mount(NONE, target, NONE, all, NONE).context("remounting bind mount with its flags")
}

/// A `cgroup` mount shows the container its own cgroup. On v2 with a cgroup namespace, that
/// is a fresh cgroup2 mount; otherwise the container's own directories are bound in (for v1:
/// a tmpfs with one directory per hierarchy, named as on the host).
fn mount_cgroup(
    root: &RootDir,
    ctx: &RootfsContext,
    m: &Mount,
    opts: &ParsedOptions,
) -> Result<()> {
    let target = root.ensure(m.destination(), Leaf::Dir)?;
    let flags = opts.flags - MsFlags::MS_REMOUNT;
    if ctx.cgroup_layout == Layout::Unified {
        if ctx.new_cgroupns {
            return mount(
                Some("cgroup2"),
                fd_path(&target).as_str(),
                Some("cgroup2"),
                flags,
                NONE,
            )
            .context("mounting cgroup2");
        }
        let leaf = &ctx
            .cgroup_leaves
            .first()
            .ok_or_else(|| Error::Cgroup("no cgroup to mount".into()))?
            .1;
        mount(
            Some(leaf),
            fd_path(&target).as_str(),
            NONE,
            MsFlags::MS_BIND,
            NONE,
        )
        .context("binding cgroup")?;
        let again = root
            .open_path(m.destination())?
            .ok_or_else(|| Error::Cgroup("cgroup mount vanished".into()))?;
        return remount_bind(&fd_path(&again), flags);
    }
    mount(
        Some("tmpfs"),
        fd_path(&target).as_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .context("mounting tmpfs for cgroup v1 hierarchies")?;
    for (hier, leaf) in ctx.cgroup_leaves {
        let Some(name) = hier.mountpoint.file_name() else {
            continue;
        };
        let dest = m.destination().join(name);
        let sub = root.ensure(&dest, Leaf::Dir)?;
        mount(
            Some(leaf),
            fd_path(&sub).as_str(),
            NONE,
            MsFlags::MS_BIND,
            NONE,
        )
        .with_context(|| format!("binding cgroup {}", leaf.display()))?;
        let again = root
            .open_path(&dest)?
            .ok_or_else(|| Error::Cgroup("cgroup mount vanished".into()))?;
        remount_bind(
            &fd_path(&again),
            flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )?;
        // A co-mounted hierarchy ("cpu,cpuacct") is also reachable under each name.
        let name = name.to_string_lossy();
        if name.contains(',') {
            for part in name.split(',') {
                let (dir, link) = root.parent_and_name(&m.destination().join(part))?;
                let t = std::ffi::CString::new(name.as_bytes())
                    .map_err(|_| Error::Cgroup("bad name".into()))?;
                use std::os::fd::AsRawFd;
                // SAFETY: symlinkat on a directory fd we own.
                unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), link.as_ptr()) };
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let again = root
            .open_path(m.destination())?
            .ok_or_else(|| Error::Cgroup("cgroup mount vanished".into()))?;
        mount(
            NONE,
            fd_path(&again).as_str(),
            NONE,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )
        .context("making the cgroup tmpfs read-only")?;
    }
    Ok(())
}

/// pivot_root(2) needs the new root's parent mount not to be shared.
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    let parent = rootfs.parent().unwrap_or(Path::new("/"));
    let best = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|mp| parent.starts_with(mp))
        .max_by_key(|mp| mp.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/"));
    mount(NONE, &best, NONE, MsFlags::MS_PRIVATE, NONE)
        .context("making the rootfs parent mount private")
}

/// Switches root. pivot_root with both arguments "." avoids needing a directory for the old
/// root: the old root ends up on top and is detached right after.
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<()> {
    nix::unistd::chdir(rootfs).with_context(|| format!("chdir to {}", rootfs.display()))?;
    if no_pivot {
        mount(Some(rootfs), "/", NONE, MsFlags::MS_MOVE, NONE).context("moving the rootfs to /")?;
        nix::unistd::chroot(".").context("chroot")?;
    } else {
        let old_root = nix::fcntl::open(
            "/",
            nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .context("opening the old root")?;
        nix::unistd::pivot_root(".", ".").context("pivot_root")?;
        nix::unistd::fchdir(&old_root).context("fchdir to the old root")?;
        mount(NONE, ".", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE)
            .context("making the old root a slave")?;
        umount2(".", MntFlags::MNT_DETACH).context("detaching the old root")?;
    }
    nix::unistd::chdir("/").context("chdir to /")
}

/// After the pivot: readonly paths, masked paths, propagation and the read-only root.
pub fn finalize(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or(&[])
    {
        make_readonly(p)?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or(&[])
    {
        mask(p)?;
    }
    if let Some(p) = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|p| !p.is_empty())
    {
        if let Some(f) = mount_options::root_propagation(p) {
            mount(NONE, "/", NONE, f, NONE).context("setting rootfsPropagation")?;
        }
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount_bind("/", MsFlags::MS_RDONLY).context("making the root read-only")?;
    }
    Ok(())
}

fn make_readonly(path: &str) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("readonlyPaths {path}")),
        Ok(_) => {}
    }
    mount(
        Some(path),
        path,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .with_context(|| format!("readonlyPaths: binding {path}"))?;
    remount_bind(path, MsFlags::MS_RDONLY | MsFlags::MS_REC)
        .with_context(|| format!("readonlyPaths {path}"))
}

/// Directories are covered with an empty read-only tmpfs, files with /dev/null.
fn mask(path: &str) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("maskedPaths {path}")),
        Ok(m) => m,
    };
    if meta.is_dir() {
        mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, NONE)
    } else {
        mount(Some("/dev/null"), path, NONE, MsFlags::MS_BIND, NONE)
    }
    .with_context(|| format!("maskedPaths {path}"))
}

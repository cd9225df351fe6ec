//! `docker cp`'s filesystem side: stat a path, tar it out, and extract a tar in, all
//! inside a container's root filesystem without ever touching the host's.
//!
//! The container owns its rootfs: any symlink in it (`/escape -> /`, `/up -> ../../..`)
//! may be an attempt to make the daemon, which runs as root on the host, read or write a
//! host path. So nothing here joins strings onto a host path and calls `std::fs`:
//!
//! - Request paths are resolved with `openat2(RESOLVE_IN_ROOT)` from an fd on the root,
//!   so the kernel treats the container root as `/` for `..` and absolute symlinks (what
//!   dockerd gets from `FollowSymlinkInScope` plus a chroot).
//! - A tree is walked by directory fds, opening each child by its single name with
//!   `O_NOFOLLOW`, so a symlink is archived as a symlink and never entered.
//! - Tar entries are cleaned lexically (`/` stripped: they are relative to the
//!   destination; `..` may not climb above it), their parent dir is opened below the
//!   destination with `RESOLVE_NO_SYMLINKS`, and the entry is created by name with
//!   `O_EXCL`/`O_NOFOLLOW` after removing what was there. A symlink in the archive is
//!   created as a symlink; a later entry under it is refused instead of written through
//!   it (stricter than dockerd, which follows it inside its chroot). Metadata is set
//!   through an fd on the new object, never by a path the container could swap.
//!
//! The container may change its files while we work (it can be running): the fd-relative
//! calls make that a race over which of its own files we copy, never a way out.
//!
//! Not copied: extended attributes, and sockets (dockerd skips sockets too).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

/// A directory tree deeper than this is refused: each level holds an fd while it is
/// walked, and a container could build a tree deep enough to exhaust them.
pub const MAX_DEPTH: usize = 1024;

/// Why a copy failed. The HTTP layer maps each to Docker's status.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The path (as the client gave it) does not exist in the container.
    #[error("no such file or directory: {0}")]
    NotFound(String),
    /// dockerd's `ErrExtractPointNotDirectory`.
    #[error("extraction point is not a directory")]
    NotADirectory(String),
    #[error("invalid tar entry {entry:?}: it would land outside of {dest:?}")]
    Escape { entry: String, dest: String },
    #[error("invalid tar entry {entry:?}: {why}")]
    BadEntry { entry: String, why: String },
    /// `noOverwriteDirNonDir`, dockerd's wording.
    #[error("cannot overwrite directory {path:?} with non-directory {dest:?}")]
    DirWithNonDir { path: String, dest: String },
    #[error("cannot overwrite non-directory {path:?} with directory {dest:?}")]
    NonDirWithDir { path: String, dest: String },
    #[error("reading the archive: {0}")]
    Read(#[source] io::Error),
    #[error("writing the archive: {0}")]
    Write(#[source] io::Error),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}: directory tree deeper than {MAX_DEPTH} levels")]
    TooDeep(String),
}

type Result<T> = std::result::Result<T, FsError>;

fn io_err(op: &'static str, path: &str) -> impl FnOnce(Errno) -> FsError {
    let path = path.to_owned();
    move |e| FsError::Io {
        op,
        path,
        source: e.into(),
    }
}

/// `stat` of a container path, as `HEAD /containers/{id}/archive` reports it (moby's
/// `ContainerPathStat`, before the daemon puts it in Docker's wire shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    /// The last element of the requested path (`.` for `/dir/.`, `/` for `/`).
    pub name: String,
    pub size: i64,
    /// The raw `st_mode`; see [`go_file_mode`].
    pub st_mode: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    /// For a symlink: where it leads, fully resolved inside the container, absolute.
    pub link_target: String,
}

#[cfg(test)]
impl PathStat {
    pub fn is_dir(&self) -> bool {
        FileType::from_raw_mode(self.st_mode) == FileType::Directory
    }
}

/// `st_mode` as Go's `os.FileMode`, which Docker clients decode.
pub fn go_file_mode(st_mode: u32) -> u32 {
    use berth_api::container::file_mode as m;
    let mut mode = st_mode & m::PERM;
    mode |= match FileType::from_raw_mode(st_mode) {
        FileType::Directory => m::DIR,
        FileType::Symlink => m::SYMLINK,
        FileType::BlockDevice => m::DEVICE,
        FileType::CharacterDevice => m::DEVICE | m::CHAR_DEVICE,
        FileType::Fifo => m::NAMED_PIPE,
        FileType::Socket => m::SOCKET,
        _ => 0,
    };
    if st_mode & 0o4000 != 0 {
        mode |= m::SETUID;
    }
    if st_mode & 0o2000 != 0 {
        mode |= m::SETGID;
    }
    if st_mode & 0o1000 != 0 {
        mode |= m::STICKY;
    }
    mode
}

/// A request path split as dockerd does (`filepath.Join("/", p)`, then
/// `SplitPathDirEntry`): lexically cleaned components, and whether the last one is taken
/// as is (not followed when it is a symlink) or the path ended in `/.` (follow it all).
#[derive(Debug, Clone, PartialEq, Eq)]
struct RequestPath {
    components: Vec<OsString>,
    /// The path ended in `/.` (or was `.`): name the directory itself, symlinks followed.
    current_dir: bool,
}

impl RequestPath {
    fn parse(raw: &str) -> RequestPath {
        let mut components: Vec<OsString> = Vec::new();
        for c in Path::new(raw).components() {
            match c {
                Component::Normal(n) => components.push(n.to_owned()),
                // Clean clamps `..` at `/`, as `filepath.Join("/", p)` does.
                Component::ParentDir => {
                    components.pop();
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        let current_dir = raw == "." || raw.ends_with("/.");
        RequestPath {
            components,
            current_dir,
        }
    }

    /// `filepath.Base` of the request: the name the archive's entries start with.
    fn base_name(&self) -> String {
        if self.current_dir {
            ".".to_owned()
        } else {
            match self.components.last() {
                Some(n) => n.to_string_lossy().into_owned(),
                None => "/".to_owned(),
            }
        }
    }

    fn display(&self) -> String {
        let mut s = String::new();
        for c in &self.components {
            s.push('/');
            s.push_str(&c.to_string_lossy());
        }
        if s.is_empty() {
            s.push('/');
        }
        s
    }
}

fn join_components(components: &[OsString]) -> OsString {
    let mut s = OsString::from(".");
    for c in components {
        s.push("/");
        s.push(c);
    }
    s
}

/// What a request path names: `name` in the directory `dir`, or `dir` itself.
struct Resolved {
    dir: OwnedFd,
    name: Option<OsString>,
    stat: Stat,
}

/// An open container root.
pub struct ContainerRoot {
    fd: OwnedFd,
    /// Where the root is in the daemon's mount namespace; only used to turn a resolved
    /// fd back into a container path (`linkTarget`), never to open anything.
    host: PathBuf,
}

impl ContainerRoot {
    pub fn open(path: &Path) -> Result<ContainerRoot> {
        let shown = path.display().to_string();
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("open container root", &shown))?;
        let host = fd_host_path(fd.as_fd()).unwrap_or_else(|| path.to_owned());
        Ok(ContainerRoot { fd, host })
    }

    /// A root opened elsewhere (in a copy's own mount namespace, with the container's
    /// binds and volumes on it).
    pub fn from_fd(fd: OwnedFd, path: &Path) -> ContainerRoot {
        let host = fd_host_path(fd.as_fd()).unwrap_or_else(|| path.to_owned());
        ContainerRoot { fd, host }
    }

    /// Where `dest` leads in the container, symlinks followed inside it: the absolute
    /// container path that dockerd checks against the container's mounts before a copy in.
    pub fn resolved_path(&self, dest: &str) -> Result<String> {
        let request = RequestPath::parse(dest);
        let shown = request.display();
        let fd = self
            .open_in_root(&request.components, OFlags::PATH)
            .map_err(|e| match e {
                Errno::NOENT | Errno::NOTDIR | Errno::LOOP => FsError::NotFound(shown.clone()),
                e => io_err("resolve", &shown)(e),
            })?;
        Ok(fd_host_path(fd.as_fd())
            .and_then(|host| {
                host.strip_prefix(&self.host)
                    .ok()
                    .map(|rel| format!("/{}", rel.display()))
            })
            .unwrap_or(shown))
    }

    /// openat2 below the root with the root as `/`: `..` and absolute symlinks stay in.
    fn open_in_root(&self, components: &[OsString], flags: OFlags) -> rustix::io::Result<OwnedFd> {
        let path = join_components(components);
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(
                &self.fd,
                &path,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                // The kernel refuses to vouch for `..` while a rename races; try again.
                Err(Errno::AGAIN) if tries < 16 => tries += 1,
                other => return other,
            }
        }
    }

    fn resolve(&self, request: &RequestPath) -> Result<Resolved> {
        let shown = request.display();
        let missing = |e: Errno| match e {
            Errno::NOENT | Errno::NOTDIR | Errno::LOOP => FsError::NotFound(shown.clone()),
            e => io_err("resolve", &shown)(e),
        };
        if request.current_dir || request.components.is_empty() {
            let dir = self
                .open_in_root(&request.components, OFlags::PATH)
                .map_err(missing)?;
            let stat = rustix::fs::fstat(&dir).map_err(io_err("stat", &shown))?;
            return Ok(Resolved {
                dir,
                name: None,
                stat,
            });
        }
        let (name, parent) = match request.components.split_last() {
            Some(split) => split,
            None => return Err(FsError::NotFound(shown)),
        };
        let dir = self
            .open_in_root(parent, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(missing)?;
        let stat = rustix::fs::statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(missing)?;
        Ok(Resolved {
            dir,
            name: Some(name.clone()),
            stat,
        })
    }

    /// `HEAD /containers/{id}/archive`: the last element is not followed (a symlink is
    /// reported as one, with its resolved target), as dockerd's `StatPath`.
    pub fn stat(&self, path: &str) -> Result<PathStat> {
        let request = RequestPath::parse(path);
        let resolved = self.resolve(&request)?;
        Ok(self.path_stat(&request, &resolved))
    }

    fn path_stat(&self, request: &RequestPath, resolved: &Resolved) -> PathStat {
        let st = &resolved.stat;
        let link_target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            self.link_target(request, resolved)
        } else {
            String::new()
        };
        PathStat {
            name: request.base_name(),
            size: st.st_size,
            st_mode: st.st_mode,
            mtime_sec: st.st_mtime,
            mtime_nsec: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
            link_target,
        }
    }

    /// The symlink's target resolved in the container, as an absolute container path.
    /// A dangling link cannot be opened: then its text, made absolute lexically.
    fn link_target(&self, request: &RequestPath, resolved: &Resolved) -> String {
        if let Ok(fd) = self.open_in_root(&request.components, OFlags::PATH) {
            if let Some(host) = fd_host_path(fd.as_fd()) {
                if let Ok(rel) = host.strip_prefix(&self.host) {
                    return format!("/{}", rel.display());
                }
            }
        }
        let Some(name) = &resolved.name else {
            return String::new();
        };
        let Ok(text) = rustix::fs::readlinkat(&resolved.dir, name.as_os_str(), Vec::new()) else {
            return String::new();
        };
        let text = OsStr::from_bytes(text.as_bytes())
            .to_string_lossy()
            .into_owned();
        let joined = if text.starts_with('/') {
            text
        } else {
            let parent = &request.components[..request.components.len().saturating_sub(1)];
            let mut p = join_components(parent).to_string_lossy().into_owned();
            p.push('/');
            p.push_str(&text);
            p
        };
        RequestPath::parse(&joined).display()
    }

    /// Resolves `path` for `GET /containers/{id}/archive`; the stat goes in the response
    /// header before the tar is streamed by [`ArchiveSource::write_tar`].
    pub fn archive(&self, path: &str) -> Result<(PathStat, ArchiveSource)> {
        let request = RequestPath::parse(path);
        let resolved = self.resolve(&request)?;
        let stat = self.path_stat(&request, &resolved);
        // dockerd rebases the archive on the requested name: `/a/b` gives `b/...`, `/a/.`
        // gives `./...`, and `/` gives `/...`.
        let top = match request.base_name().as_str() {
            "/" => Vec::new(),
            name => name.as_bytes().to_vec(),
        };
        Ok((
            stat,
            ArchiveSource {
                resolved,
                top,
                shown: request.display(),
            },
        ))
    }

    /// `PUT /containers/{id}/archive`: extracts `tar` into the directory `dest` (symlinks
    /// followed inside the container, the last one too, so a link to a directory works).
    pub fn extract<R: Read>(&self, dest: &str, tar: R, opts: &ExtractOptions) -> Result<()> {
        let request = RequestPath::parse(dest);
        let shown = request.display();
        let dir = self
            .open_in_root(&request.components, OFlags::PATH)
            .map_err(|e| match e {
                Errno::NOENT | Errno::NOTDIR | Errno::LOOP => FsError::NotFound(shown.clone()),
                e => io_err("resolve", &shown)(e),
            })?;
        let st = rustix::fs::fstat(&dir).map_err(io_err("stat", &shown))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(FsError::NotADirectory(shown));
        }
        Extractor {
            dest: dir,
            shown,
            opts,
            dir_times: Vec::new(),
        }
        .run(tar)
    }
}

/// The host path of an fd, from `/proc/self/fd`.
fn fd_host_path(fd: BorrowedFd<'_>) -> Option<PathBuf> {
    let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    std::fs::read_link(link).ok()
}

/// A resolved path, ready to be written as a tar.
pub struct ArchiveSource {
    resolved: Resolved,
    /// The name entries start with; empty for the root (entries `/`, `/etc`, ...).
    top: Vec<u8>,
    shown: String,
}

impl ArchiveSource {
    /// Writes the tar: a file as one entry, a directory with everything below it. An error
    /// midway leaves the archive without its end marker, so a reader can tell.
    pub fn write_tar<W: Write>(self, out: W) -> Result<()> {
        let mut tar = TarOut {
            out,
            hardlinks: HashMap::new(),
        };
        let Resolved { dir, name, stat } = self.resolved;
        let is_dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
        match (&name, is_dir) {
            (_, true) => {
                let opened = match &name {
                    Some(n) => rustix::fs::openat(
                        &dir,
                        n.as_os_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ),
                    None => rustix::fs::openat(
                        &dir,
                        ".",
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    ),
                }
                .map_err(io_err("open", &self.shown))?;
                let st = rustix::fs::fstat(&opened).map_err(io_err("stat", &self.shown))?;
                let mut top_entry = self.top.clone();
                top_entry.push(b'/');
                tar.dir_entry(&top_entry, &st)?;
                tar.walk(opened.as_fd(), &self.top, &self.shown, 1)?;
            }
            (Some(n), false) => tar.entry(dir.as_fd(), n, &self.top, &stat, &self.shown)?,
            // `/x/.` that resolved to a non-directory: dockerd fails the same way.
            (None, false) => return Err(FsError::NotFound(self.shown)),
        }
        tar.finish()
    }
}

/// A tar writer that controls every name byte: entry names may start with `/` (the
/// root's archive, as dockerd writes it) and may be any length (GNU long names).
struct TarOut<W: Write> {
    out: W,
    /// (dev, ino) of files with several links -> the entry name they were first written as.
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
}

const BLOCK: usize = 512;
const NAME_FIELD: usize = 100;

impl<W: Write> TarOut<W> {
    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(FsError::Write)
    }

    fn pad(&mut self, len: u64) -> Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.write_raw(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// A GNU `L`/`K` record carrying a name longer than the 100-byte field.
    fn long_name(&mut self, kind: tar::EntryType, name: &[u8]) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        set_name_field(&mut h, b"././@LongLink");
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(name.len() as u64 + 1);
        h.set_cksum();
        self.write_raw(h.as_bytes())?;
        self.write_raw(name)?;
        self.write_raw(&[0])?;
        self.pad(name.len() as u64 + 1)
    }

    fn header(&mut self, mut h: tar::Header, name: &[u8], link: Option<&[u8]>) -> Result<()> {
        if name.len() > NAME_FIELD {
            self.long_name(tar::EntryType::GNULongName, name)?;
        }
        set_name_field(&mut h, &name[..name.len().min(NAME_FIELD)]);
        if let Some(link) = link {
            if link.len() > NAME_FIELD {
                self.long_name(tar::EntryType::GNULongLink, link)?;
            }
            let field = &mut h.as_old_mut().linkname;
            field.fill(0);
            let n = link.len().min(NAME_FIELD);
            field[..n].copy_from_slice(&link[..n]);
        }
        h.set_cksum();
        self.write_raw(h.as_bytes())
    }

    fn dir_entry(&mut self, name: &[u8], st: &Stat) -> Result<()> {
        let mut h = base_header(st);
        h.set_entry_type(tar::EntryType::Directory);
        self.header(h, name, None)
    }

    /// Writes the children of `dir` (entry names `prefix/child`), depth first, sorted.
    fn walk(
        &mut self,
        dir: BorrowedFd<'_>,
        prefix: &[u8],
        shown: &str,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(FsError::TooDeep(shown.to_owned()));
        }
        let mut names: Vec<OsString> = Vec::new();
        for item in rustix::fs::Dir::read_from(dir).map_err(io_err("list", shown))? {
            let item = item.map_err(io_err("list", shown))?;
            let name = OsStr::from_bytes(item.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_owned());
            }
        }
        names.sort();
        for name in names {
            let child_shown = format!("{shown}/{}", name.to_string_lossy());
            let mut entry = prefix.to_vec();
            entry.push(b'/');
            entry.extend_from_slice(name.as_bytes());
            let st = match rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Deleted by the container while we listed: not part of the copy.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(io_err("stat", &child_shown)(e)),
            };
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let child = match rustix::fs::openat(
                    dir,
                    name.as_os_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => continue,
                    Err(e) => return Err(io_err("open", &child_shown)(e)),
                };
                let st = rustix::fs::fstat(&child).map_err(io_err("stat", &child_shown))?;
                let mut dir_name = entry.clone();
                dir_name.push(b'/');
                self.dir_entry(&dir_name, &st)?;
                self.walk(child.as_fd(), &entry, &child_shown, depth + 1)?;
            } else {
                self.entry(dir, &name, &entry, &st, &child_shown)?;
            }
        }
        Ok(())
    }

    /// One non-directory entry: `name` in `dir`, written as `entry`.
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        entry: &[u8],
        st: &Stat,
        shown: &str,
    ) -> Result<()> {
        let mut h = base_header(st);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.hardlinks.get(&key).cloned() {
                        h.set_entry_type(tar::EntryType::Link);
                        h.set_size(0);
                        return self.header(h, entry, Some(&first));
                    }
                    self.hardlinks.insert(key, entry.to_vec());
                }
                // O_NONBLOCK: if the container swapped the file for a fifo since the stat,
                // the open must not hang; the fstat below then sees it.
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY
                        | OFlags::NOFOLLOW
                        | OFlags::NONBLOCK
                        | OFlags::NOCTTY
                        | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io_err("open", shown))?;
                let st = rustix::fs::fstat(&fd).map_err(io_err("stat", shown))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    return Err(io_err("open", shown)(Errno::INVAL));
                }
                let mut h = base_header(&st);
                h.set_entry_type(tar::EntryType::Regular);
                let size = u64::try_from(st.st_size).unwrap_or(0);
                h.set_size(size);
                self.header(h, entry, None)?;
                // Exactly `size` bytes whatever the file does meanwhile: a file that
                // shrank is padded with zeros, one that grew is cut.
                let mut file = File::from(fd).take(size);
                let copied = io::copy(&mut file, &mut self.out).map_err(|e| FsError::Io {
                    op: "read",
                    path: shown.to_owned(),
                    source: e,
                })?;
                let mut missing = size - copied;
                while missing > 0 {
                    let n = missing.min(BLOCK as u64) as usize;
                    self.write_raw(&[0u8; BLOCK][..n])?;
                    missing -= n as u64;
                }
                self.pad(size)
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())
                    .map_err(io_err("readlink", shown))?;
                h.set_entry_type(tar::EntryType::Symlink);
                self.header(h, entry, Some(target.as_bytes()))
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let kind = match FileType::from_raw_mode(st.st_mode) {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                h.set_entry_type(kind);
                if kind != tar::EntryType::Fifo {
                    h.set_device_major(rustix::fs::major(st.st_rdev))
                        .map_err(FsError::Write)?;
                    h.set_device_minor(rustix::fs::minor(st.st_rdev))
                        .map_err(FsError::Write)?;
                }
                self.header(h, entry, None)
            }
            // Sockets: dockerd's archiver skips them too.
            _ => Ok(()),
        }
    }

    fn finish(mut self) -> Result<()> {
        self.write_raw(&[0u8; 2 * BLOCK])?;
        self.out.flush().map_err(FsError::Write)
    }
}

fn set_name_field(h: &mut tar::Header, name: &[u8]) {
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    let n = name.len().min(field.len());
    field[..n].copy_from_slice(&name[..n]);
}

fn base_header(st: &Stat) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

/// The query flags of `PUT /containers/{id}/archive`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// `noOverwriteDirNonDir`: refuse to replace a directory with a non-directory or the
    /// other way round (the docker CLI always sets it).
    pub no_overwrite_dir_non_dir: bool,
    /// Owner for every new entry; `None` keeps the archive's uid/gid, as dockerd does.
    pub chown: Option<(u32, u32)>,
}

struct Extractor<'a> {
    dest: OwnedFd,
    shown: String,
    opts: &'a ExtractOptions,
    /// Directories whose mtime is set at the end: creating their children changes it.
    dir_times: Vec<(Vec<OsString>, Timestamps)>,
}

struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    times: Timestamps,
}

impl Extractor<'_> {
    fn run<R: Read>(mut self, tar: R) -> Result<()> {
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries().map_err(FsError::Read)? {
            let mut entry = entry.map_err(FsError::Read)?;
            self.entry(&mut entry)?;
        }
        let mut dirs = std::mem::take(&mut self.dir_times);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.0.len()));
        for (components, times) in dirs {
            let shown = self.entry_display(&components);
            let Some((name, parent)) = components.split_last() else {
                continue;
            };
            let parent = self.parent_dir(parent, &shown, false)?;
            if let Ok(fd) = open_nofollow_dir(parent.as_fd(), name) {
                rustix::fs::futimens(&fd, &times).map_err(io_err("set times", &shown))?;
            }
        }
        Ok(())
    }

    fn entry_display(&self, components: &[OsString]) -> String {
        let mut s = self.shown.trim_end_matches('/').to_owned();
        for c in components {
            s.push('/');
            s.push_str(&c.to_string_lossy());
        }
        s
    }

    /// Opens the directory `components` below the destination without following any
    /// symlink, creating missing ones (0755, as dockerd's `MkdirAll`) when `create`.
    fn parent_dir(&self, components: &[OsString], entry: &str, create: bool) -> Result<OwnedFd> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let resolve =
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let map = |e: Errno| match e {
            Errno::LOOP => FsError::BadEntry {
                entry: entry.to_owned(),
                why: "a parent directory is a symlink, which is not followed".to_owned(),
            },
            Errno::NOTDIR => FsError::BadEntry {
                entry: entry.to_owned(),
                why: "a parent is not a directory".to_owned(),
            },
            e => io_err("open parent of", entry)(e),
        };
        let joined = join_components(components);
        match rustix::fs::openat2(&self.dest, &joined, flags, Mode::empty(), resolve) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            Err(e) => return Err(map(e)),
        }
        let mut dir =
            rustix::fs::openat2(&self.dest, ".", flags, Mode::empty(), resolve).map_err(map)?;
        for c in components {
            match rustix::fs::mkdirat(&dir, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(map(e)),
            }
            dir = rustix::fs::openat2(&dir, c.as_os_str(), flags, Mode::empty(), resolve)
                .map_err(map)?;
        }
        Ok(dir)
    }

    /// Makes room for `name`: removes what is there, except a directory when a directory
    /// comes (tar semantics: it merges). Returns whether a directory was kept.
    fn clear_slot(
        &self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        want_dir: bool,
        entry: &str,
    ) -> Result<bool> {
        let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(io_err("stat", entry)(e)),
            Ok(st) => st,
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if is_dir && want_dir {
            return Ok(true);
        }
        if self.opts.no_overwrite_dir_non_dir && is_dir != want_dir {
            let (path, dest) = (entry.to_owned(), self.shown.clone());
            return Err(if is_dir {
                FsError::DirWithNonDir { path, dest }
            } else {
                FsError::NonDirWithDir { path, dest }
            });
        }
        if is_dir {
            remove_tree(parent, name).map_err(io_err("remove", entry))?;
        } else {
            rustix::fs::unlinkat(parent, name, AtFlags::empty())
                .map_err(io_err("remove", entry))?;
        }
        Ok(false)
    }

    fn owner(&self, meta: &Meta) -> (rustix::fs::Uid, rustix::fs::Gid) {
        let (uid, gid) = self.opts.chown.unwrap_or((meta.uid, meta.gid));
        (
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(gid),
        )
    }

    /// chown, then chmod (chown clears setuid), then times, through `fd`.
    fn apply_meta(&self, fd: BorrowedFd<'_>, meta: &Meta, entry: &str) -> Result<()> {
        let (uid, gid) = self.owner(meta);
        rustix::fs::fchown(fd, Some(uid), Some(gid)).map_err(io_err("chown", entry))?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(io_err("chmod", entry))?;
        rustix::fs::futimens(fd, &meta.times).map_err(io_err("set times", entry))
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let raw = entry.path().map_err(FsError::Read)?.into_owned();
        let raw_shown = raw.display().to_string();
        let mut components = clean_entry(&raw, &raw_shown, &self.shown)?;
        let Some(name) = components.pop() else {
            // `.`: the destination itself. dockerd would apply its metadata to the
            // destination (chmod of `/tmp` by `cp dir/. c:/tmp`); berth leaves it alone.
            return Ok(());
        };
        let parent_components = components;
        let mut full = parent_components.clone();
        full.push(name.clone());
        let shown = self.entry_display(&full);
        let parent = self.parent_dir(&parent_components, &shown, true)?;
        let parent = parent.as_fd();
        match kind {
            tar::EntryType::Directory => {
                let meta = read_meta(entry, &shown)?;
                if !self.clear_slot(parent, &name, true, &shown)? {
                    rustix::fs::mkdirat(parent, name.as_os_str(), Mode::from_raw_mode(0o700))
                        .map_err(io_err("mkdir", &shown))?;
                }
                let fd = open_nofollow_dir(parent, &name).map_err(io_err("open", &shown))?;
                self.apply_meta(fd.as_fd(), &meta, &shown)?;
                self.dir_times.push((full, meta.times));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let meta = read_meta(entry, &shown)?;
                self.clear_slot(parent, &name, false, &shown)?;
                let fd = rustix::fs::openat(
                    parent,
                    name.as_os_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(io_err("create", &shown))?;
                let mut file = File::from(fd);
                io::copy(entry, &mut file).map_err(FsError::Read)?;
                self.apply_meta(file.as_fd(), &meta, &shown)?;
            }
            tar::EntryType::Symlink => {
                let meta = read_meta(entry, &shown)?;
                let target = entry
                    .link_name()
                    .map_err(FsError::Read)?
                    .ok_or_else(|| FsError::BadEntry {
                        entry: shown.clone(),
                        why: "symlink without a target".to_owned(),
                    })?
                    .into_owned();
                self.clear_slot(parent, &name, false, &shown)?;
                // Stored as is: it is only ever resolved inside the container's root.
                rustix::fs::symlinkat(target.as_os_str(), parent, name.as_os_str())
                    .map_err(io_err("symlink", &shown))?;
                let (uid, gid) = self.owner(&meta);
                rustix::fs::chownat(
                    parent,
                    name.as_os_str(),
                    Some(uid),
                    Some(gid),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(io_err("chown", &shown))?;
                rustix::fs::utimensat(
                    parent,
                    name.as_os_str(),
                    &meta.times,
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(io_err("set times", &shown))?;
            }
            tar::EntryType::Link => {
                let target_raw = entry
                    .link_name()
                    .map_err(FsError::Read)?
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                let bad = || FsError::BadEntry {
                    entry: shown.clone(),
                    why: format!(
                        "hardlink target {:?} is not a file in the destination",
                        target_raw.display()
                    ),
                };
                // Relative to the destination, as dockerd reads `Linkname`.
                let mut target = clean_entry(&target_raw, &shown, &self.shown)?;
                let target_name = target.pop().ok_or_else(bad)?;
                let target_parent = self.parent_dir(&target, &shown, false)?;
                match rustix::fs::statat(
                    &target_parent,
                    target_name.as_os_str(),
                    AtFlags::SYMLINK_NOFOLLOW,
                ) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {}
                    _ => return Err(bad()),
                }
                if target == parent_components && target_name == name {
                    return Ok(());
                }
                self.clear_slot(parent, &name, false, &shown)?;
                // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked as itself.
                rustix::fs::linkat(
                    &target_parent,
                    target_name.as_os_str(),
                    parent,
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(io_err("link", &shown))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let meta = read_meta(entry, &shown)?;
                let header = entry.header();
                let (file_type, dev) = match kind {
                    tar::EntryType::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let major = header.device_major().ok().flatten().unwrap_or(0);
                        let minor = header.device_minor().ok().flatten().unwrap_or(0);
                        let ty = if kind == tar::EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ty, rustix::fs::makedev(major, minor))
                    }
                };
                self.clear_slot(parent, &name, false, &shown)?;
                rustix::fs::mknodat(
                    parent,
                    name.as_os_str(),
                    file_type,
                    Mode::from_raw_mode(0o600),
                    dev,
                )
                .map_err(io_err("mknod", &shown))?;
                // No plain fd on a device or fifo without opening it; an O_PATH fd and
                // its /proc magic link reach exactly the node we made.
                let fd = rustix::fs::openat(
                    parent,
                    name.as_os_str(),
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io_err("open", &shown))?;
                let (uid, gid) = self.owner(&meta);
                let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
                rustix::fs::chown(proc.as_str(), Some(uid), Some(gid))
                    .map_err(io_err("chown", &shown))?;
                rustix::fs::chmod(proc.as_str(), Mode::from_raw_mode(meta.mode))
                    .map_err(io_err("chmod", &shown))?;
                rustix::fs::utimensat(
                    rustix::fs::CWD,
                    proc.as_str(),
                    &meta.times,
                    AtFlags::empty(),
                )
                .map_err(io_err("set times", &shown))?;
            }
            other => {
                return Err(FsError::BadEntry {
                    entry: shown,
                    why: format!("unsupported tar entry type {:?}", other.as_byte() as char),
                })
            }
        }
        Ok(())
    }
}

fn open_nofollow_dir(parent: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Lexically cleans a tar path into components below the destination. A leading `/` is
/// dropped (tar paths are relative to where they are extracted, as dockerd joins them);
/// a `..` that would climb above the destination is refused, as dockerd's breakout check.
fn clean_entry(raw: &Path, entry: &str, dest: &str) -> Result<Vec<OsString>> {
    let mut out: Vec<OsString> = Vec::new();
    for component in raw.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err(FsError::Escape {
                        entry: entry.to_owned(),
                        dest: dest.to_owned(),
                    });
                }
            }
            Component::Normal(name) => out.push(name.to_owned()),
        }
    }
    Ok(out)
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<Meta> {
    let header = entry.header();
    // Like Go's archive/tar, a blank numeric field reads as 0; other garbage is an error.
    let num = |r: io::Result<u64>, raw: &[u8]| {
        if raw.iter().all(|b| *b == 0 || *b == b' ') {
            Ok(0)
        } else {
            r.map_err(FsError::Read)
        }
    };
    let old = header.as_old();
    let id = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| FsError::BadEntry {
            entry: shown.to_owned(),
            why: format!("{what} does not fit 32 bits"),
        })
    };
    let uid = id(num(header.uid(), &old.uid)?, "uid")?;
    let gid = id(num(header.gid(), &old.gid)?, "gid")?;
    let mode = num(header.mode().map(u64::from), &old.mode)? as u32 & 0o7777;
    let mut mtime = Timespec {
        tv_sec: num(header.mtime(), &old.mtime)?.min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    };
    if let Some(pax) = entry.pax_extensions().map_err(FsError::Read)? {
        for ext in pax {
            let ext = ext.map_err(FsError::Read)?;
            if ext.key() == Ok("mtime") {
                if let Some(ts) = ext.value().ok().and_then(parse_pax_time) {
                    mtime = ts;
                }
            }
        }
    }
    Ok(Meta {
        uid,
        gid,
        mode,
        times: Timestamps {
            last_access: mtime,
            last_modification: mtime,
        },
    })
}

/// PAX times: decimal seconds with an optional fraction (`1700000000.5`).
fn parse_pax_time(s: &str) -> Option<Timespec> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let tv_nsec = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    Some(Timespec { tv_sec, tv_nsec })
}

/// `rm -r` of `name` inside `parent`, by fds only.
fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<()> {
    let fd = open_nofollow_dir(parent, name)?;
    let mut children: Vec<(OsString, bool)> = Vec::new();
    for item in rustix::fs::Dir::read_from(&fd)? {
        let item = item?;
        let child = OsStr::from_bytes(item.file_name().to_bytes());
        if child == "." || child == ".." {
            continue;
        }
        children.push((child.to_owned(), item.file_type() == FileType::Directory));
    }
    for (child, is_dir) in children {
        if is_dir {
            remove_tree(fd.as_fd(), &child)?;
        } else {
            match rustix::fs::unlinkat(&fd, child.as_os_str(), AtFlags::empty()) {
                // A file system without d_type said "unknown": it was a directory.
                Err(Errno::ISDIR) => remove_tree(fd.as_fd(), &child)?,
                other => other?,
            }
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
}

#[cfg(test)]
mod tests;

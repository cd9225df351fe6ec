//! Unpacks one layer tar (gzip, zstd or plain) into its own directory, in overlayfs's
//! format, so the directory can be used as a `lowerdir` as it is.
//!
//! - `.wh.<name>` becomes a 0/0 character device `<name>` (overlayfs's whiteout);
//!   `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory; other `.wh..wh.*`
//!   names (aufs bookkeeping) are skipped, as Docker does.
//! - Hardlinks, symlinks, device nodes, fifos, xattrs, ownership, modes (setuid too),
//!   and mtimes are kept.
//!
//! Containment: the tar crate only parses; every file is created here with `*at` calls
//! relative to a directory fd that was resolved inside the layer dir with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)`. Names are cleaned lexically first
//! (`/` stripped, `..` that would climb above the root refused), the last component is
//! a single name, and any existing entry there is removed before creating with
//! `O_EXCL`/`O_NOFOLLOW`. So `a -> /etc` followed by `a/passwd` fails (the parent is a
//! symlink), and a hardlink can only name a file already in this layer.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::digest::{Digest, HashingReader};

/// Why a layer could not be unpacked. The layer dir is then incomplete and the caller
/// throws it away.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading layer: {0}")]
    Read(#[source] io::Error),
    #[error("layer entry {entry:?}: {op}: {source}")]
    Io {
        entry: String,
        op: &'static str,
        source: io::Error,
    },
    #[error("layer entry {entry:?} would write outside the layer: {why}")]
    Escape { entry: String, why: &'static str },
    #[error(
        "layer entry {entry:?}: hardlink target {target:?} is not a file earlier in this layer"
    )]
    BadHardlink { entry: String, target: String },
    #[error("layer entry {entry:?}: unsupported tar entry type {kind:?}")]
    Unsupported { entry: String, kind: u8 },
    #[error("layer is compressed with {0}, which is not supported (gzip, zstd or none)")]
    UnsupportedCompression(&'static str),
}

type Result<T> = std::result::Result<T, UnpackError>;

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// The compression of a layer blob, told by its first bytes (media types lie more often
/// than magic numbers do, and Docker sniffs too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Wraps `blob` in the right decompressor.
pub fn decompress<'a, R: Read + 'a>(blob: R) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buffered = BufReader::with_capacity(1 << 16, blob);
    let head = buffered.fill_buf().map_err(UnpackError::Read)?;
    let compression = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(b"BZh") {
        return Err(UnpackError::UnsupportedCompression("bzip2"));
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(UnpackError::UnsupportedCompression("xz"));
    } else {
        Compression::None
    };
    let reader: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(buffered),
        // MultiGzDecoder: pigz and some builders write several gzip members.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(UnpackError::Read)?)
        }
    };
    Ok((compression, reader))
}

/// Unpacks `blob` into `dest` (an existing, empty directory) and returns the layer's
/// DiffID: the sha256 of the uncompressed tar, for the caller to check against the image
/// config. Ends with one `syncfs` instead of an fsync per file (containerd's `SyncFs`).
pub fn unpack_layer<R: Read>(blob: R, dest: &Path) -> Result<Digest> {
    let (_, reader) = decompress(blob)?;
    let mut hashing = HashingReader::new(reader);
    let root: OwnedFd = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Io {
        entry: dest.display().to_string(),
        op: "open layer dir",
        source: e.into(),
    })?;
    let mut dir_times: Vec<(Vec<OsString>, Timestamps)> = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(UnpackError::Read)? {
            let mut entry = entry.map_err(UnpackError::Read)?;
            if let Some(dir) = unpack_entry(root.as_fd(), &mut entry)? {
                dir_times.push(dir);
            }
        }
    }
    // Directory mtimes last: creating their children changed them. Deepest first.
    dir_times.sort_by_key(|d| std::cmp::Reverse(d.0.len()));
    for (mut components, times) in dir_times {
        let entry = display(&components);
        let Some(name) = components.pop() else {
            continue;
        };
        let parent = resolve_dir(root.as_fd(), &components, &entry, false)?;
        rustix::fs::utimensat(&parent, name.as_os_str(), &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(op_err(&entry, "set times"))?;
    }
    rustix::fs::syncfs(&root).map_err(op_err(&dest.display().to_string(), "syncfs"))?;
    hashing.finish().map_err(UnpackError::Read)
}

/// `io::copy` with a buffer sized to the file (up to 256 KiB) instead of 8 KiB: big
/// layer files then cost a few dozen decompressor calls and writes per MiB, not 128;
/// small files get no bigger allocation than they need.
fn copy_contents<R: Read>(entry: &mut tar::Entry<'_, R>, file: &mut File) -> io::Result<()> {
    let size = entry.header().entry_size().unwrap_or(0);
    let mut buf = vec![0u8; size.clamp(512, 256 << 10) as usize];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        file.write_all(&buf[..n])?;
    }
}

fn op_err(entry: &str, op: &'static str) -> impl FnOnce(Errno) -> UnpackError {
    let entry = entry.to_owned();
    move |e| UnpackError::Io {
        entry,
        op,
        source: e.into(),
    }
}

fn display(components: &[OsString]) -> String {
    let parts: Vec<Cow<str>> = components.iter().map(|c| c.to_string_lossy()).collect();
    parts.join("/")
}

/// Lexically cleans a tar path into components below the layer root. A leading `/` is
/// dropped (tar paths are relative to the archive root, whatever they say); `..` may not
/// climb above the root.
fn clean_path(raw: &Path, entry: &str) -> Result<Vec<OsString>> {
    let mut out: Vec<OsString> = Vec::new();
    for component in raw.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err(UnpackError::Escape {
                        entry: entry.to_owned(),
                        why: "`..` climbs above the layer root",
                    });
                }
            }
            Component::Normal(name) => out.push(name.to_owned()),
        }
    }
    Ok(out)
}

/// Opens the directory `components` below `root` without following any symlink, creating
/// missing directories (0755, as Docker does for implied parents) when `create`.
fn resolve_dir(
    root: BorrowedFd<'_>,
    components: &[OsString],
    entry: &str,
    create: bool,
) -> Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let escape = |why| UnpackError::Escape {
        entry: entry.to_owned(),
        why,
    };
    let map = |e: Errno| match e {
        Errno::LOOP => escape("a parent directory is a symlink"),
        Errno::XDEV => escape("a parent directory crosses a mount"),
        Errno::NOTDIR => UnpackError::Io {
            entry: entry.to_owned(),
            op: "resolve parent",
            source: io::Error::other("a parent is not a directory"),
        },
        e => UnpackError::Io {
            entry: entry.to_owned(),
            op: "resolve parent",
            source: e.into(),
        },
    };
    let joined: OsString = {
        let mut s = OsString::from(".");
        for c in components {
            s.push("/");
            s.push(c);
        }
        s
    };
    match rustix::fs::openat2(root, &joined, flags, Mode::empty(), resolve) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) if create => {}
        Err(e) => return Err(map(e)),
    }
    // Slow path: walk and create one component at a time.
    let mut dir = rustix::fs::openat2(root, ".", flags, Mode::empty(), resolve).map_err(map)?;
    for c in components {
        match rustix::fs::mkdirat(&dir, c.as_os_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(map(e)),
        }
        dir =
            rustix::fs::openat2(&dir, c.as_os_str(), flags, Mode::empty(), resolve).map_err(map)?;
    }
    Ok(dir)
}

/// Makes room for a new entry `name` in `parent`: removes whatever is there, except a
/// directory when a directory is wanted (tar semantics: a later dir entry only updates
/// metadata). Returns whether a directory was kept.
fn clear_slot(parent: BorrowedFd<'_>, name: &OsStr, keep_dir: bool, entry: &str) -> Result<bool> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(op_err(entry, "stat existing")(e)),
        Ok(st) => {
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                if keep_dir {
                    return Ok(true);
                }
                remove_tree(parent, name).map_err(op_err(entry, "remove existing dir"))?;
            } else {
                rustix::fs::unlinkat(parent, name, AtFlags::empty())
                    .map_err(op_err(entry, "remove existing"))?;
            }
            Ok(false)
        }
    }
}

/// `rm -r` of `name` inside `parent`, by fds only.
fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<()> {
    let fd = rustix::fs::openat2(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    )?;
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
            rustix::fs::unlinkat(&fd, child.as_os_str(), AtFlags::empty())?;
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
}

/// The path through which xattrs are set on an entry that we have no plain fd for
/// (symlinks, devices, fifos, dirs): `/proc/self/fd/<parent>/<name>`. The magic link
/// pins the already-resolved parent; `lsetxattr` does not follow the last component.
fn proc_path(parent: BorrowedFd<'_>, name: &OsStr) -> OsString {
    let mut p = OsString::from(format!("/proc/self/fd/{}/", parent.as_raw_fd()));
    p.push(name);
    p
}

/// Whether an xattr from the tar may be applied. overlay's own xattrs are refused: a
/// layer that carried `trusted.overlay.redirect` or `.metacopy` could make overlayfs
/// look up paths the layer does not own. Opaque dirs come only from `.wh..wh..opq`.
fn xattr_allowed(name: &str) -> bool {
    !(name.starts_with("trusted.overlay.") || name.starts_with("user.overlay."))
}

struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    times: Timestamps,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta> {
    let header = entry.header();
    // Like Go's archive/tar, an all-NUL or blank numeric field reads as 0; other
    // garbage is an error.
    let read = |r: io::Result<u64>, raw: &[u8]| {
        if raw.iter().all(|b| *b == 0 || *b == b' ') {
            Ok(0)
        } else {
            r.map_err(UnpackError::Read)
        }
    };
    let old = header.as_old();
    let uid = u32::try_from(read(header.uid(), &old.uid)?).map_err(|_| UnpackError::Io {
        entry: name.to_owned(),
        op: "uid",
        source: io::Error::other("uid does not fit 32 bits"),
    })?;
    let gid = u32::try_from(read(header.gid(), &old.gid)?).map_err(|_| UnpackError::Io {
        entry: name.to_owned(),
        op: "gid",
        source: io::Error::other("gid does not fit 32 bits"),
    })?;
    let mode = header.mode().map_err(UnpackError::Read)? & 0o7777;
    let mut mtime = Timespec {
        tv_sec: read(header.mtime(), &old.mtime)?.min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    };
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions().map_err(UnpackError::Read)? {
        for ext in pax {
            let ext = ext.map_err(UnpackError::Read)?;
            let Ok(key) = ext.key() else { continue };
            if let Some(xattr) = key.strip_prefix("SCHILY.xattr.") {
                if xattr_allowed(xattr) {
                    xattrs.push((xattr.to_owned(), ext.value_bytes().to_vec()));
                } else {
                    tracing::warn!(entry = name, xattr, "ignoring overlay xattr in layer");
                }
            } else if key == "mtime" {
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
        xattrs,
    })
}

/// PAX times are decimal seconds with an optional fraction (`1700000000.123456789`).
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
    // A negative time with a fraction is before the second, not after it.
    if tv_sec < 0 && tv_nsec > 0 {
        return Some(Timespec {
            tv_sec: tv_sec - 1,
            tv_nsec: 1_000_000_000 - tv_nsec,
        });
    }
    Some(Timespec { tv_sec, tv_nsec })
}

fn uid_gid(meta: &Meta) -> (rustix::fs::Uid, rustix::fs::Gid) {
    // SAFETY-free: from_raw only wraps the number.
    (
        rustix::fs::Uid::from_raw(meta.uid),
        rustix::fs::Gid::from_raw(meta.gid),
    )
}

/// Applies ownership, then mode (chown clears setuid bits), then xattrs (chown also drops
/// `security.capability`), then times, to `name` in `parent`.
fn apply_meta_at(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    meta: &Meta,
    is_symlink: bool,
    entry: &str,
) -> Result<()> {
    let (uid, gid) = uid_gid(meta);
    rustix::fs::chownat(
        parent,
        name,
        Some(uid),
        Some(gid),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(op_err(entry, "chown"))?;
    if !is_symlink {
        rustix::fs::chmodat(
            parent,
            name,
            Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )
        .map_err(op_err(entry, "chmod"))?;
    }
    if !meta.xattrs.is_empty() {
        let path = proc_path(parent, name);
        for (key, value) in &meta.xattrs {
            rustix::fs::lsetxattr(&path, key.as_str(), value, XattrFlags::empty())
                .map_err(op_err(entry, "set xattr"))?;
        }
    }
    rustix::fs::utimensat(parent, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(op_err(entry, "set times"))
}

/// Unpacks one entry. Returns the components and times of a directory, whose mtime is
/// set at the very end.
fn unpack_entry<R: Read>(
    root: BorrowedFd<'_>,
    entry: &mut tar::Entry<'_, R>,
) -> Result<Option<(Vec<OsString>, Timestamps)>> {
    let raw_path = entry.path().map_err(UnpackError::Read)?.into_owned();
    let name_str = raw_path.display().to_string();
    let kind = entry.header().entry_type();
    if matches!(kind, tar::EntryType::XGlobalHeader) {
        return Ok(None);
    }
    let mut components = clean_path(&raw_path, &name_str)?;
    let Some(name) = components.pop() else {
        // "./": the layer root itself. Its metadata belongs to the lower layers' root.
        return Ok(None);
    };
    let parent_components = components;

    // Whiteouts.
    if let Some(name_utf8) = name.to_str() {
        if name_utf8 == OPAQUE_WHITEOUT {
            let parent = resolve_dir(root, &parent_components, &name_str, true)?;
            let dir = rustix::fs::openat(
                &parent,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(op_err(&name_str, "open opaque dir"))?;
            rustix::fs::fsetxattr(&dir, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(op_err(&name_str, "set opaque xattr"))?;
            return Ok(None);
        }
        if name_utf8.starts_with(WHITEOUT_META_PREFIX) {
            return Ok(None);
        }
        if let Some(hidden) = name_utf8.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(UnpackError::Escape {
                    entry: name_str,
                    why: "whiteout of an empty, `.` or `..` name",
                });
            }
            let meta = read_meta(entry, &name_str)?;
            let parent = resolve_dir(root, &parent_components, &name_str, true)?;
            let hidden = OsStr::new(hidden);
            clear_slot(parent.as_fd(), hidden, false, &name_str)?;
            rustix::fs::mknodat(&parent, hidden, FileType::CharacterDevice, Mode::empty(), 0)
                .map_err(op_err(&name_str, "mknod whiteout"))?;
            let (uid, gid) = uid_gid(&meta);
            rustix::fs::chownat(
                &parent,
                hidden,
                Some(uid),
                Some(gid),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(op_err(&name_str, "chown whiteout"))?;
            return Ok(None);
        }
    }

    let parent = resolve_dir(root, &parent_components, &name_str, true)?;
    let parent = parent.as_fd();
    match kind {
        tar::EntryType::Directory => {
            let meta = read_meta(entry, &name_str)?;
            if !clear_slot(parent, &name, true, &name_str)? {
                rustix::fs::mkdirat(parent, name.as_os_str(), Mode::from_raw_mode(0o700))
                    .map_err(op_err(&name_str, "mkdir"))?;
            }
            apply_meta_at(parent, &name, &meta, false, &name_str)?;
            let mut full = parent_components;
            full.push(name);
            return Ok(Some((full, meta.times)));
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            let meta = read_meta(entry, &name_str)?;
            clear_slot(parent, &name, false, &name_str)?;
            let fd = rustix::fs::openat(
                parent,
                name.as_os_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(op_err(&name_str, "create"))?;
            let mut file = File::from(fd);
            copy_contents(entry, &mut file).map_err(|e| UnpackError::Io {
                entry: name_str.clone(),
                op: "write",
                source: e,
            })?;
            let (uid, gid) = uid_gid(&meta);
            rustix::fs::fchown(&file, Some(uid), Some(gid)).map_err(op_err(&name_str, "chown"))?;
            rustix::fs::fchmod(&file, Mode::from_raw_mode(meta.mode))
                .map_err(op_err(&name_str, "chmod"))?;
            for (key, value) in &meta.xattrs {
                rustix::fs::fsetxattr(&file, key.as_str(), value, XattrFlags::empty())
                    .map_err(op_err(&name_str, "set xattr"))?;
            }
            rustix::fs::futimens(&file, &meta.times).map_err(op_err(&name_str, "set times"))?;
        }
        tar::EntryType::Symlink => {
            let meta = read_meta(entry, &name_str)?;
            let target = entry
                .link_name()
                .map_err(UnpackError::Read)?
                .ok_or_else(|| UnpackError::Io {
                    entry: name_str.clone(),
                    op: "symlink",
                    source: io::Error::other("symlink without a target"),
                })?
                .into_owned();
            clear_slot(parent, &name, false, &name_str)?;
            // The target is stored as is: it is resolved later, inside the container's
            // root, never by this unpacker.
            rustix::fs::symlinkat(target.as_os_str(), parent, name.as_os_str())
                .map_err(op_err(&name_str, "symlink"))?;
            apply_meta_at(parent, &name, &meta, true, &name_str)?;
        }
        tar::EntryType::Link => {
            let target_raw = entry
                .link_name()
                .map_err(UnpackError::Read)?
                .map(Cow::into_owned)
                .unwrap_or_default();
            let target_str = target_raw.display().to_string();
            let bad = || UnpackError::BadHardlink {
                entry: name_str.clone(),
                target: target_str.clone(),
            };
            let mut target = clean_path(&target_raw, &name_str).map_err(|_| bad())?;
            let target_name = target.pop().ok_or_else(bad)?;
            let target_parent =
                resolve_dir(root, &target, &name_str, false).map_err(|e| match e {
                    UnpackError::Escape { .. } => e,
                    _ => bad(),
                })?;
            if target == parent_components && target_name == name {
                return Ok(None); // a link to itself: nothing to do
            }
            match rustix::fs::statat(
                &target_parent,
                target_name.as_os_str(),
                AtFlags::SYMLINK_NOFOLLOW,
            ) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {}
                _ => return Err(bad()),
            }
            clear_slot(parent, &name, false, &name_str)?;
            rustix::fs::linkat(
                &target_parent,
                target_name.as_os_str(),
                parent,
                name.as_os_str(),
                AtFlags::empty(),
            )
            .map_err(op_err(&name_str, "link"))?;
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let meta = read_meta(entry, &name_str)?;
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
            clear_slot(parent, &name, false, &name_str)?;
            rustix::fs::mknodat(
                parent,
                name.as_os_str(),
                file_type,
                Mode::from_raw_mode(0o600),
                dev,
            )
            .map_err(op_err(&name_str, "mknod"))?;
            apply_meta_at(parent, &name, &meta, false, &name_str)?;
        }
        other => {
            return Err(UnpackError::Unsupported {
                entry: name_str,
                kind: other.as_byte(),
            })
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;

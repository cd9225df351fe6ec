//! `berth cp`: files between a container and the host, with docker's rules (the docker
//! CLI's `cp.go` and moby's `archive/copy.go`): which side is the container, what a
//! trailing `/` or `/.` means, when the copy is renamed, and the errors, word for word.
//!
//! The daemon only ever extracts a tar into an existing directory and archives a path
//! under its own name; everything about "copy to a new name" is decided here by renaming
//! the archive's top entry before it is sent or unpacked.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use berth_api::client::{query, Client};
use berth_api::container::{file_mode, ContainerPathStat, PATH_STAT_HEADER};

use super::path_segment;
use crate::cli::CpArgs;

/// moby `archive.ErrCannotCopyDir`.
const CANNOT_COPY_DIR: &str = "cannot copy directory";
/// moby `archive.ErrDirNotExists`.
const NO_SUCH_DIR: &str = "no such directory";

/// docker's `splitCpArg`: `CONTAINER:PATH`, unless the argument is an absolute path or
/// starts with `.` (a local `./file:with:colons`).
fn split_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((container, path)) if !container.starts_with('.') => (Some(container), path),
        _ => (None, arg),
    }
}

pub fn cp(client: &Client, args: CpArgs) -> Result<i32> {
    if args.src.is_empty() {
        bail!("source can not be empty");
    }
    if args.dest.is_empty() {
        bail!("destination can not be empty");
    }
    match (split_arg(&args.src), split_arg(&args.dest)) {
        ((Some(_), _), (Some(_), _)) => bail!("copying between containers is not supported"),
        ((None, _), (None, _)) => bail!("must specify at least one container source"),
        ((Some(container), path), (None, dest)) => {
            from_container(client, container, path, dest, args.follow_link)
        }
        ((None, src), (Some(container), path)) => to_container(client, src, container, path, &args),
    }?;
    Ok(0)
}

// ---- paths, as moby's archive package reads them ----

fn has_trailing_separator(p: &str) -> bool {
    p.ends_with('/')
}

fn specifies_current_dir(p: &str) -> bool {
    p == "." || p.ends_with("/.")
}

/// Go's `filepath.Clean` for our purposes: `.`/`..` folded, no trailing slash.
fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// `SplitPathDirEntry`: (dir, base), base `.` when the path ends in `/.`.
fn split_dir_entry(p: &str) -> (String, String) {
    let mut cleaned = clean(p);
    if specifies_current_dir(p) {
        cleaned.push_str("/.");
    }
    match cleaned.rfind('/') {
        Some(0) if cleaned.len() == 1 => ("/".to_owned(), "/".to_owned()),
        Some(0) => ("/".to_owned(), cleaned[1..].to_owned()),
        Some(i) => (cleaned[..i].to_owned(), cleaned[i + 1..].to_owned()),
        None => (".".to_owned(), cleaned),
    }
}

/// `filepath.Abs`, keeping a trailing `/` or `/.` (moby `PreserveTrailingDotOrSeparator`).
fn local_abs(p: &str) -> Result<String> {
    let abs = if p.starts_with('/') {
        clean(p)
    } else {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        clean(&format!("{}/{p}", cwd.display()))
    };
    Ok(preserve_trailing(abs, p))
}

fn preserve_trailing(mut cleaned: String, original: &str) -> String {
    if specifies_current_dir(original) && !specifies_current_dir(&cleaned) {
        if !cleaned.ends_with('/') {
            cleaned.push('/');
        }
        cleaned.push('.');
    } else if has_trailing_separator(original) && !has_trailing_separator(&cleaned) {
        cleaned.push('/');
    }
    cleaned
}

fn base(p: &str) -> String {
    split_dir_entry(p).1
}

/// What one side of the copy is (moby `CopyInfo`).
#[derive(Debug, Clone, Default)]
struct CopyInfo {
    path: String,
    exists: bool,
    is_dir: bool,
    /// The name the source should be archived under, when it is not its own.
    rebase_name: Option<String>,
}

/// moby `PrepareArchiveCopy`: the directory to extract into, and the (old, new) name of
/// the archive's top entry when it must be renamed.
fn prepare_copy(src: &CopyInfo, dst: &CopyInfo) -> Result<(String, Option<(String, String)>)> {
    let (dst_dir, dst_base) = split_dir_entry(&dst.path);
    let src_base = src.rebase_name.clone().unwrap_or_else(|| base(&src.path));
    if dst.exists && dst.is_dir {
        return Ok((dst.path.clone(), None));
    }
    if dst.exists && src.is_dir {
        bail!(CANNOT_COPY_DIR);
    }
    if !dst.exists && !src.is_dir && has_trailing_separator_or_dot(&dst.path) {
        bail!(NO_SUCH_DIR);
    }
    Ok((dst_dir, Some((src_base, dst_base))))
}

/// moby `assertsDirectory`.
fn has_trailing_separator_or_dot(p: &str) -> bool {
    has_trailing_separator(p) || specifies_current_dir(p)
}

/// Replaces the leading `old` of an entry name with `new` (moby `RebaseArchiveEntries`).
fn rebase(name: &str, old: &str, new: &str) -> String {
    let old = if old == "/" { "" } else { old };
    match name.strip_prefix(old) {
        Some(rest) if old.is_empty() || rest.is_empty() || rest.starts_with('/') => {
            format!("{new}{rest}")
        }
        _ => name.to_owned(),
    }
}

// ---- container -> host ----

fn stat_path(client: &Client, container: &str, path: &str) -> Result<ContainerPathStat> {
    let resp = client
        .request(
            "HEAD",
            format!(
                "/containers/{}/archive{}",
                path_segment(container),
                query(&[("path", path)])
            ),
        )
        .send()
        .map_err(|e| match e.status() {
            Some(404) => anyhow!("Error: No such container:path: {container}:{path}"),
            _ => anyhow!(e),
        })?;
    decode_stat(resp.header(PATH_STAT_HEADER))
}

fn decode_stat(header: Option<&str>) -> Result<ContainerPathStat> {
    let header = header.ok_or_else(|| anyhow!("the daemon sent no {PATH_STAT_HEADER}"))?;
    let json = base64::engine::general_purpose::STANDARD
        .decode(header)
        .context("unable to decode container path stat header")?;
    serde_json::from_slice(&json).context("unable to decode container path stat header")
}

fn from_container(
    client: &Client,
    container: &str,
    src: &str,
    dest: &str,
    follow_link: bool,
) -> Result<()> {
    let dest = if dest == "-" {
        dest.to_owned()
    } else {
        let d = local_abs(dest)?;
        validate_output_path(&d)?;
        d
    };
    let mut src_path = src.to_owned();
    let mut rebase_name = None;
    if follow_link {
        if let Ok(stat) = stat_path(client, container, src) {
            if stat.mode & file_mode::SYMLINK != 0 {
                let mut target = stat.link_target.clone();
                if !target.starts_with('/') {
                    target = format!("{}/{target}", split_dir_entry(src).0);
                }
                let target = preserve_trailing(clean(&target), src);
                if base(src) != base(&target) {
                    rebase_name = Some(base(src));
                }
                src_path = target;
            }
        }
    }
    let mut resp = client
        .get(format!(
            "/containers/{}/archive{}",
            path_segment(container),
            query(&[("path", &src_path)])
        ))
        .send()?;
    if dest == "-" {
        io::copy(&mut resp, &mut io::stdout().lock())?;
        return Ok(());
    }
    let stat = decode_stat(resp.header(PATH_STAT_HEADER))?;
    let src_info = CopyInfo {
        path: src_path,
        exists: true,
        is_dir: stat.mode & file_mode::DIR != 0,
        rebase_name,
    };
    let dst_info = destination_info(&dest)?;
    let (dst_dir, renamed) = prepare_copy(&src_info, &dst_info)?;
    // The daemon names entries after the path it archived: rename them to the
    // destination's name, or else to the link's name after `-L`.
    let renamed = match (renamed, &src_info.rebase_name) {
        (Some((_, new)), _) => Some((base(&src_info.path), new)),
        (None, Some(name)) => Some((base(&src_info.path), name.clone())),
        (None, None) => None,
    };
    unpack(resp, Path::new(&dst_dir), renamed.as_ref())
}

/// docker's `ValidateOutputPath`.
fn validate_output_path(path: &str) -> Result<()> {
    let dir = split_dir_entry(&clean(path)).0;
    if dir != "." && !Path::new(&dir).exists() {
        bail!("invalid output path: directory {dir:?} does not exist");
    }
    if let Ok(meta) = fs::metadata(path) {
        if !meta.is_dir() && !meta.is_file() {
            bail!("invalid output path: {path:?} must be a directory or a regular file");
        }
    }
    Ok(())
}

/// moby `CopyInfoDestinationPath`: the destination after following symlinks (up to 10);
/// a missing one is fine when its parent is a directory.
fn destination_info(path: &str) -> Result<CopyInfo> {
    let mut path = path.to_owned();
    let original = path.clone();
    let mut n = 0;
    loop {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                n += 1;
                if n > 10 {
                    bail!("too many symlinks in {original}");
                }
                let target = fs::read_link(&path)
                    .with_context(|| format!("readlink {path}"))?
                    .display()
                    .to_string();
                path = if target.starts_with('/') {
                    target
                } else {
                    clean(&format!("{}/{target}", split_dir_entry(&path).0))
                };
            }
            Ok(meta) => {
                return Ok(CopyInfo {
                    path,
                    exists: true,
                    is_dir: meta.is_dir(),
                    rebase_name: None,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = split_dir_entry(&path).0;
                let meta = fs::metadata(&parent).map_err(|e| anyhow!("stat {path}: {e}"))?;
                if !meta.is_dir() {
                    bail!("not a directory");
                }
                return Ok(CopyInfo {
                    path,
                    ..CopyInfo::default()
                });
            }
            Err(e) => return Err(anyhow!("lstat {path}: {e}")),
        }
    }
}

/// A relative, `..`-free entry name, or an error (the archive came from the daemon, but
/// the host side is where a bad name would do harm).
fn safe_relative(name: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            _ => bail!("invalid tar entry {name:?}: it would land outside of the destination"),
        }
    }
    Ok(out)
}

/// Extracts the daemon's tar into `dst_dir` as docker's CLI does (`NoLchown`,
/// `NoOverwriteDirNonDir`): what is in the way is removed first (so a symlink there is
/// replaced, not written through), a directory never replaces a file or the other way.
fn unpack(tar: impl Read, dst_dir: &Path, renamed: Option<&(String, String)>) -> Result<()> {
    let root = fs::canonicalize(dst_dir).with_context(|| format!("stat {}", dst_dir.display()))?;
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    let name_of = |raw: &str| match renamed {
        Some((old, new)) => rebase(raw, old, new),
        None => raw.to_owned(),
    };
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = safe_relative(&name_of(&raw))?;
        let Some(file_name) = rel.file_name().map(ToOwned::to_owned) else {
            continue; // the destination itself
        };
        let parent = root.join(rel.parent().unwrap_or(Path::new("")));
        fs::create_dir_all(&parent).with_context(|| format!("mkdir {}", parent.display()))?;
        // A parent that is a symlink on the host is the user's own choice, as for docker,
        // but it must not lead out of the destination.
        let real_parent = fs::canonicalize(&parent)?;
        if !real_parent.starts_with(&root) {
            bail!("invalid tar entry {raw:?}: it would land outside of the destination");
        }
        let target = real_parent.join(&file_name);
        let kind = entry.header().entry_type();
        let is_dir = kind == tar::EntryType::Directory;
        if let Ok(existing) = fs::symlink_metadata(&target) {
            let existing_dir = existing.is_dir();
            if existing_dir && !is_dir {
                bail!(
                    "cannot overwrite directory {:?} with non-directory {:?}",
                    target.display().to_string(),
                    dst_dir.display().to_string()
                );
            }
            if !existing_dir && is_dir {
                bail!(
                    "cannot overwrite non-directory {:?} with directory {:?}",
                    target.display().to_string(),
                    dst_dir.display().to_string()
                );
            }
            if !existing_dir {
                fs::remove_file(&target).with_context(|| format!("remove {}", target.display()))?;
            }
        }
        if kind == tar::EntryType::Link {
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default();
            let source = root.join(safe_relative(&name_of(&link))?);
            fs::hard_link(&source, &target)
                .with_context(|| format!("link {} to {}", target.display(), source.display()))?;
            continue;
        }
        entry
            .unpack(&target)
            .with_context(|| format!("extracting {}", target.display()))?;
    }
    Ok(())
}

// ---- host -> container ----

fn to_container(
    client: &Client,
    src: &str,
    container: &str,
    dst_path: &str,
    args: &CpArgs,
) -> Result<()> {
    let mut dst_info = CopyInfo {
        path: dst_path.to_owned(),
        ..CopyInfo::default()
    };
    let mut stat = stat_path(client, container, dst_path);
    if let Ok(s) = &stat {
        if s.mode & file_mode::SYMLINK != 0 {
            let mut target = s.link_target.clone();
            if !target.starts_with('/') {
                target = format!("{}/{target}", split_dir_entry(dst_path).0);
            }
            dst_info.path = target.clone();
            stat = stat_path(client, container, &target);
        }
    }
    // As docker: a failed stat means "does not exist"; the daemon has the last word.
    if let Ok(s) = &stat {
        dst_info.exists = true;
        dst_info.is_dir = s.mode & file_mode::DIR != 0;
    }
    let path_query = |dir: &str| {
        format!(
            "/containers/{}/archive{}",
            path_segment(container),
            query(&[
                ("path", dir),
                ("noOverwriteDirNonDir", "true"),
                ("copyUIDGID", if args.archive { "true" } else { "false" }),
            ])
        )
    };
    if src == "-" {
        if !dst_info.is_dir {
            bail!("destination \"{container}:{dst_path}\" must be a directory");
        }
        client
            .request("PUT", path_query(&dst_info.path))
            .body_reader(io::stdin().lock(), "application/x-tar")
            .send()?
            .discard()?;
        return Ok(());
    }
    let src_info = source_info(src, args.follow_link)?;
    let (dst_dir, renamed) = prepare_copy(&src_info, &dst_info)?;
    let top = match renamed {
        Some((_, new)) => new,
        None => src_info
            .rebase_name
            .clone()
            .unwrap_or_else(|| base(&src_info.path)),
    };
    let (reader, writer) = io::pipe().context("cannot make a pipe")?;
    let source = PathBuf::from(&src_info.path);
    let keep_owner = args.archive;
    let producer = std::thread::spawn(move || -> Result<()> {
        let mut builder = tar::Builder::new(writer);
        builder.follow_symlinks(false);
        append_tree(&mut builder, &source, &top, keep_owner)?;
        builder.into_inner()?.flush()?;
        Ok(())
    });
    let sent = client
        .request("PUT", path_query(&dst_dir))
        .body_reader(reader, "application/x-tar")
        .send()
        .and_then(|r| r.discard());
    let produced = producer
        .join()
        .map_err(|_| anyhow!("the archive writer panicked"))?;
    sent?;
    produced
}

/// moby `CopyInfoSourcePath`: symlinks before the last element are followed, the last
/// one only with `-L` (the copy is then named after the link).
fn source_info(src: &str, follow_link: bool) -> Result<CopyInfo> {
    let path = local_abs(src)?;
    let (resolved, rebase_name) = if follow_link {
        let real = fs::canonicalize(&path).map_err(|e| anyhow!("lstat {path}: {e}"))?;
        let real = preserve_trailing(real.display().to_string(), &path);
        let rebase = (base(&path) != base(&real)).then(|| base(&path));
        (real, rebase)
    } else {
        let (dir, name) = split_dir_entry(&path);
        let real_dir = fs::canonicalize(&dir).map_err(|e| anyhow!("lstat {path}: {e}"))?;
        let mut resolved = real_dir.display().to_string();
        if !resolved.ends_with('/') {
            resolved.push('/');
        }
        resolved.push_str(&name);
        let resolved = preserve_trailing(resolved, &path);
        let rebase =
            (has_trailing_separator(&path) && base(&path) != base(&resolved)).then(|| base(&path));
        (resolved, rebase)
    };
    let meta = fs::symlink_metadata(&resolved).map_err(|e| anyhow!("lstat {resolved}: {e}"))?;
    Ok(CopyInfo {
        path: resolved,
        exists: true,
        is_dir: meta.is_dir(),
        rebase_name,
    })
}

/// Adds `path` as `name`, recursively. `name` `.` (a `dir/.` source) adds the contents
/// at the top. Without `-a` every entry is root's, as files copied into a container are
/// with docker.
fn append_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &str,
    keep_owner: bool,
) -> Result<()> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("lstat {}", path.display()))?;
    let child_name = |child: &str| {
        if name == "." {
            child.to_owned()
        } else {
            format!("{name}/{child}")
        }
    };
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    if !keep_owner {
        header.set_uid(0);
        header.set_gid(0);
    }
    let ft = meta.file_type();
    if ft.is_dir() {
        if name != "." {
            header.set_size(0);
            builder.append_data(&mut header, format!("{name}/"), io::empty())?;
        }
        let mut children: Vec<_> = fs::read_dir(path)
            .with_context(|| format!("read {}", path.display()))?
            .collect::<io::Result<_>>()?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let child_str = child.file_name().to_string_lossy().into_owned();
            append_tree(builder, &child.path(), &child_name(&child_str), keep_owner)?;
        }
    } else if ft.is_symlink() {
        let target = fs::read_link(path)?;
        header.set_size(0);
        builder.append_link(&mut header, name, target)?;
    } else if ft.is_file() {
        let file = fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        builder.append_data(&mut header, name, file)?;
    } else {
        // Devices, fifos: metadata only. Sockets are skipped, as docker's archiver does.
        use std::os::unix::fs::FileTypeExt;
        if ft.is_socket() {
            return Ok(());
        }
        header.set_size(0);
        builder.append_data(&mut header, name, io::empty())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_arguments() {
        assert_eq!(split_arg("c:/tmp"), (Some("c"), "/tmp"));
        assert_eq!(split_arg("/abs:x"), (None, "/abs:x"));
        assert_eq!(split_arg("./f:x"), (None, "./f:x"));
        assert_eq!(split_arg("file"), (None, "file"));
        assert_eq!(split_arg("-"), (None, "-"));
    }

    #[test]
    fn paths_split_as_moby() {
        assert_eq!(split_dir_entry("/a/b/"), ("/a".into(), "b".into()));
        assert_eq!(split_dir_entry("/a/b/."), ("/a/b".into(), ".".into()));
        assert_eq!(split_dir_entry("/"), ("/".into(), "/".into()));
        assert_eq!(split_dir_entry("b"), (".".into(), "b".into()));
        assert_eq!(clean("/a/../../b/./c/"), "/b/c");
        assert_eq!(preserve_trailing("/a/b".into(), "x/."), "/a/b/.");
        assert_eq!(rebase("data/x", "data", "out"), "out/x");
        assert_eq!(rebase("data", "data", "out"), "out");
        assert_eq!(rebase("database", "data", "out"), "database");
        assert_eq!(rebase("/etc", "/", "root"), "root/etc");
    }

    #[test]
    fn copy_rules() {
        let dir = |p: &str, exists: bool| CopyInfo {
            path: p.into(),
            exists,
            is_dir: true,
            rebase_name: None,
        };
        let file = |p: &str, exists: bool| CopyInfo {
            path: p.into(),
            exists,
            is_dir: false,
            rebase_name: None,
        };
        // Into an existing directory: no rename.
        assert_eq!(
            prepare_copy(&file("/h/f", true), &dir("/c/tmp", true)).expect("ok"),
            ("/c/tmp".into(), None)
        );
        // A directory to a new name: extracted in the parent, renamed.
        assert_eq!(
            prepare_copy(&dir("/h/tree", true), &dir("/c/new", false)).expect("ok"),
            ("/c".into(), Some(("tree".into(), "new".into())))
        );
        // File onto file: renamed onto it.
        assert_eq!(
            prepare_copy(&file("/h/f", true), &file("/c/g", true)).expect("ok"),
            ("/c".into(), Some(("f".into(), "g".into())))
        );
        let err = prepare_copy(&dir("/h/tree", true), &file("/c/g", true)).expect_err("dir");
        assert_eq!(err.to_string(), CANNOT_COPY_DIR);
        let err = prepare_copy(&file("/h/f", true), &file("/c/new/", false)).expect_err("dir");
        assert_eq!(err.to_string(), NO_SUCH_DIR);
    }
}

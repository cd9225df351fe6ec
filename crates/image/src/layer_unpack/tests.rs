//! Unpack tests. They run as root (mknod, chown, trusted.* xattrs), as berth does.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tar::{EntryType, Header};

use super::*;

/// Builds tars by hand, writing names straight into the header so that hostile paths
/// (`..`, absolute) survive: the tar crate's own setters refuse them.
struct Tar {
    b: tar::Builder<Vec<u8>>,
}

const MTIME: u64 = 1_600_000_000;

impl Tar {
    fn new() -> Tar {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(path: &str, kind: EntryType, size: u64, mode: u32) -> Header {
        let mut h = Header::new_ustar();
        assert!(path.len() <= 100, "test paths fit the old header");
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h
    }

    fn push(&mut self, mut h: Header, data: &[u8]) -> &mut Tar {
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    fn dir(&mut self, path: &str, mode: u32) -> &mut Tar {
        let h = Self::header(path, EntryType::Directory, 0, mode);
        self.push(h, &[])
    }

    fn file(&mut self, path: &str, data: &[u8]) -> &mut Tar {
        let h = Self::header(path, EntryType::Regular, data.len() as u64, 0o644);
        self.push(h, data)
    }

    fn file_owned(&mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> &mut Tar {
        let mut h = Self::header(path, EntryType::Regular, data.len() as u64, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        self.push(h, data)
    }

    fn link(&mut self, kind: EntryType, path: &str, target: &str) -> &mut Tar {
        let mut h = Self::header(path, kind, 0, 0o777);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        self.push(h, &[])
    }

    fn symlink(&mut self, path: &str, target: &str) -> &mut Tar {
        self.link(EntryType::Symlink, path, target)
    }

    fn hardlink(&mut self, path: &str, target: &str) -> &mut Tar {
        self.link(EntryType::Link, path, target)
    }

    fn device(&mut self, path: &str, kind: EntryType, major: u32, minor: u32) -> &mut Tar {
        let mut h = Self::header(path, kind, 0, 0o666);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.push(h, &[])
    }

    fn xattrs(&mut self, pairs: &[(&str, &[u8])]) -> &mut Tar {
        let keys: Vec<(String, &[u8])> = pairs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.b
            .append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
        self
    }

    fn bytes(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd_compress(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

fn layer_dir(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("layer");
    fs::create_dir(&dir).unwrap();
    dir
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(_) => None,
    }
}

fn sample_layer() -> Vec<u8> {
    Tar::new()
        .dir("etc/", 0o755)
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .dir("bin/", 0o755)
        .file_owned("bin/su", b"#!suid", 0o4755, 0, 0)
        .file_owned("home/u/f", b"user file", 0o640, 1000, 1001)
        .symlink("bin/sh", "busybox")
        .hardlink("bin/hl", "bin/su")
        .device("dev/null", EntryType::Char, 1, 3)
        .device("dev/loop0", EntryType::Block, 7, 0)
        .device("run/fifo", EntryType::Fifo, 0, 0)
        .file("etc/.wh.shadow", b"")
        .dir("var/", 0o755)
        .file("var/.wh..wh..opq", b"")
        .file("var/new", b"new")
        .dir(".wh..wh.plnk/", 0o700)
        .xattrs(&[("user.berth", b"v"), ("trusted.overlay.redirect", b"/etc")])
        .file("x", b"x")
        .bytes()
}

fn check_sample(dir: &Path) {
    assert_eq!(
        fs::read(dir.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    let su = fs::metadata(dir.join("bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(su.mtime(), MTIME as i64);
    let f = fs::metadata(dir.join("home/u/f")).unwrap();
    assert_eq!((f.uid(), f.gid(), f.mode() & 0o777), (1000, 1001, 0o640));
    // Implied parent dirs are created 0755.
    assert_eq!(
        fs::metadata(dir.join("home/u")).unwrap().mode() & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_link(dir.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::metadata(dir.join("bin/hl")).unwrap().ino(),
        su.ino(),
        "hardlink"
    );
    let null = fs::symlink_metadata(dir.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    let lp = fs::symlink_metadata(dir.join("dev/loop0")).unwrap();
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), rustix::fs::makedev(7, 0));
    assert!(fs::symlink_metadata(dir.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    // Whiteout: a 0/0 char device under the hidden name, no .wh. file.
    let wh = fs::symlink_metadata(dir.join("etc/shadow")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!dir.join("etc/.wh.shadow").exists());
    // Opaque dir.
    assert_eq!(
        xattr(&dir.join("var"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!dir.join("var/.wh..wh..opq").exists());
    assert_eq!(fs::read(dir.join("var/new")).unwrap(), b"new");
    assert_eq!(xattr(&dir.join("etc"), "trusted.overlay.opaque"), None);
    // aufs metadata skipped.
    assert!(!dir.join(".wh..wh.plnk").exists());
    // xattrs: user ones kept, overlay ones refused.
    assert_eq!(
        xattr(&dir.join("x"), "user.berth").as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(xattr(&dir.join("x"), "trusted.overlay.redirect"), None);
    // Directory mtimes survive their children being created.
    assert_eq!(fs::metadata(dir.join("etc")).unwrap().mtime(), MTIME as i64);
    assert_eq!(fs::metadata(dir.join("var")).unwrap().mtime(), MTIME as i64);
}

#[test]
fn overlay_format_and_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = layer_dir(tmp.path());
    let tar = sample_layer();
    let diff_id = unpack_layer(&tar[..], &dir).unwrap();
    assert_eq!(diff_id, Digest::of(&tar));
    check_sample(&dir);
}

#[test]
fn gzip_zstd_and_plain_give_the_same_layer() {
    let tar = sample_layer();
    for (what, blob) in [("gzip", gzip(&tar)), ("zstd", zstd_compress(&tar))] {
        assert_eq!(
            decompress(&blob[..]).unwrap().0,
            match what {
                "gzip" => Compression::Gzip,
                _ => Compression::Zstd,
            }
        );
        let tmp = tempfile::tempdir().unwrap();
        let dir = layer_dir(tmp.path());
        assert_eq!(
            unpack_layer(&blob[..], &dir).unwrap(),
            Digest::of(&tar),
            "{what}"
        );
        check_sample(&dir);
    }
    assert!(matches!(
        unpack_layer(&b"BZh91AY&SY"[..], Path::new("/nonexistent")),
        Err(UnpackError::UnsupportedCompression("bzip2"))
    ));
}

#[test]
fn later_entries_replace_earlier_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = layer_dir(tmp.path());
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let target = outside.join("f");
    let tar = Tar::new()
        // A symlink pointing out, then a file of the same name: the link is replaced,
        // not followed.
        .symlink("a", target.to_str().unwrap())
        .file("a", b"inside")
        // A dir replaced by a file, and a file by a dir.
        .file("d/child", b"c")
        .file("d", b"now a file")
        .file("e", b"file")
        .dir("e/", 0o755)
        .bytes();
    unpack_layer(&tar[..], &dir).unwrap();
    assert_eq!(fs::read(dir.join("a")).unwrap(), b"inside");
    assert!(!target.exists());
    assert_eq!(fs::read(dir.join("d")).unwrap(), b"now a file");
    assert!(dir.join("e").is_dir());
}

/// Every escape attempt: the unpack fails or stays inside, and nothing outside the layer
/// dir changes.
#[test]
fn entries_cannot_leave_the_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    let out = outside.to_str().unwrap();
    let nlink_before = fs::metadata(outside.join("secret")).unwrap().nlink();
    let host_abs = format!("/berth-unpack-test-{}", std::process::id());

    let attempts: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            Tar::new().file("../outside/escaped", b"x").bytes(),
        ),
        (
            "dotdot inside",
            Tar::new().file("a/../../outside/escaped", b"x").bytes(),
        ),
        (
            "symlink parent",
            Tar::new().symlink("a", out).file("a/escaped", b"x").bytes(),
        ),
        (
            "relative symlink parent",
            Tar::new()
                .symlink("a", "../outside")
                .file("a/escaped", b"x")
                .bytes(),
        ),
        (
            "nested symlink parent",
            Tar::new()
                .dir("d/", 0o755)
                .symlink("d/up", "../..")
                .file("d/up/outside/escaped", b"x")
                .bytes(),
        ),
        (
            "symlink dir entry",
            Tar::new().symlink("a", out).dir("a/sub/", 0o755).bytes(),
        ),
        (
            "hardlink dotdot",
            Tar::new().hardlink("h", "../outside/secret").bytes(),
        ),
        (
            "hardlink through symlink",
            Tar::new()
                .symlink("s", out)
                .hardlink("h", "s/secret")
                .bytes(),
        ),
        (
            "hardlink absolute",
            Tar::new().hardlink("h", &format!("{out}/secret")).bytes(),
        ),
        (
            "hardlink to host passwd",
            Tar::new().hardlink("h", "/etc/passwd").bytes(),
        ),
        (
            "whiteout through symlink",
            Tar::new()
                .symlink("a", out)
                .file("a/.wh.secret", b"")
                .bytes(),
        ),
        (
            "opaque through symlink",
            Tar::new()
                .symlink("a", out)
                .file("a/.wh..wh..opq", b"")
                .bytes(),
        ),
        ("whiteout dotdot", Tar::new().file(".wh..", b"").bytes()),
        (
            "device through symlink",
            Tar::new()
                .symlink("a", out)
                .device("a/null", EntryType::Char, 1, 3)
                .bytes(),
        ),
    ];
    for (what, tar) in attempts {
        let dir = tmp.path().join(format!("layer-{}", what.replace(' ', "-")));
        fs::create_dir(&dir).unwrap();
        let result = unpack_layer(&tar[..], &dir);
        assert!(
            result.is_err(),
            "{what}: unpack should fail, got {result:?}"
        );
        assert!(
            matches!(
                result,
                Err(UnpackError::Escape { .. } | UnpackError::BadHardlink { .. })
            ),
            "{what}: {result:?}"
        );
        let mut names: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")], "{what}");
        assert_eq!(
            fs::read(outside.join("secret")).unwrap(),
            b"secret",
            "{what}"
        );
        assert_eq!(
            fs::metadata(outside.join("secret")).unwrap().nlink(),
            nlink_before,
            "{what}"
        );
        assert!(
            xattr(&outside, "trusted.overlay.opaque").is_none(),
            "{what}"
        );
    }

    // An absolute name lands inside the layer.
    let dir = tmp.path().join("layer-abs");
    fs::create_dir(&dir).unwrap();
    let tar = Tar::new().file(&format!("{host_abs}/x"), b"x").bytes();
    unpack_layer(&tar[..], &dir).unwrap();
    assert_eq!(fs::read(dir.join(&host_abs[1..]).join("x")).unwrap(), b"x");
    assert!(!Path::new(&host_abs).exists());
    // And so does an absolute hardlink target that exists in the layer.
    let dir = tmp.path().join("layer-abs-link");
    fs::create_dir(&dir).unwrap();
    let tar = Tar::new()
        .file("etc/passwd", b"layer passwd")
        .hardlink("h", "/etc/passwd")
        .bytes();
    unpack_layer(&tar[..], &dir).unwrap();
    assert_eq!(fs::read(dir.join("h")).unwrap(), b"layer passwd");
}

#[test]
fn pax_times() {
    assert_eq!(
        parse_pax_time("1700000000.5"),
        Some(Timespec {
            tv_sec: 1_700_000_000,
            tv_nsec: 500_000_000
        })
    );
    assert_eq!(
        parse_pax_time("12"),
        Some(Timespec {
            tv_sec: 12,
            tv_nsec: 0
        })
    );
    assert_eq!(
        parse_pax_time("-1.25"),
        Some(Timespec {
            tv_sec: -2,
            tv_nsec: 750_000_000
        })
    );
    assert_eq!(parse_pax_time("x"), None);
    assert_eq!(parse_pax_time("1.x"), None);
}

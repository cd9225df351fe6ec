use super::*;
use std::os::unix::fs::{symlink, MetadataExt};

/// `scratch/root` plays the container root; `scratch/outside` the host around it.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("root/etc")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("root/tmp")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("outside")).expect("mkdir");
        std::fs::write(dir.path().join("root/etc/marker"), "container\n").expect("write");
        std::fs::write(dir.path().join("outside/secret"), "host\n").expect("write");
        // The escapes a container can plant.
        symlink("/", dir.path().join("root/escape")).expect("symlink");
        symlink("../../../..", dir.path().join("root/up")).expect("symlink");
        symlink("../outside", dir.path().join("root/sibling")).expect("symlink");
        Scratch { dir }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }
    fn open(&self) -> ContainerRoot {
        ContainerRoot::open(&self.root()).expect("open root")
    }
}

/// (name, type, link name, content) of every entry of a tar.
fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, String, Vec<u8>)> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let kind = e.header().entry_type();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        out.push((name, kind, link, data));
    }
    out
}

fn archive_of(root: &ContainerRoot, path: &str) -> (PathStat, Vec<u8>) {
    let (stat, source) = root.archive(path).expect("archive");
    let mut out = Vec::new();
    source.write_tar(&mut out).expect("write tar");
    (stat, out)
}

/// A tar built byte by byte, so that it can say what a hostile client would: `..`,
/// absolute names, links anywhere (the tar crate's builder refuses those).
struct RawTar(Vec<u8>);

impl RawTar {
    fn new() -> RawTar {
        RawTar(Vec::new())
    }
    fn push(mut self, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> RawTar {
        let mut h = tar::Header::new_gnu();
        set_name_field(&mut h, name.as_bytes());
        let l = &mut h.as_old_mut().linkname;
        l[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }
    fn file(self, name: &str, data: &[u8]) -> RawTar {
        self.push(name, tar::EntryType::Regular, "", data)
    }
    fn done(mut self) -> Vec<u8> {
        self.0.extend([0u8; 1024]);
        self.0
    }
}

fn extract(root: &ContainerRoot, dest: &str, tar: &[u8]) -> Result<()> {
    root.extract(dest, tar, &ExtractOptions::default())
}

#[test]
fn request_paths_split_as_dockerd() {
    let p = RequestPath::parse("/a/b/");
    assert_eq!((p.base_name(), p.current_dir), ("b".to_owned(), false));
    let p = RequestPath::parse("a/b/.");
    assert_eq!((p.base_name(), p.current_dir), (".".to_owned(), true));
    assert_eq!(p.display(), "/a/b");
    let p = RequestPath::parse("/../../etc/./x/..");
    assert_eq!(
        (p.display(), p.base_name()),
        ("/etc".to_owned(), "etc".to_owned())
    );
    assert_eq!(RequestPath::parse("/").base_name(), "/");
    assert_eq!(RequestPath::parse("").display(), "/");
}

#[test]
fn stat_reports_go_modes_and_resolved_link_targets() {
    let s = Scratch::new();
    let root = s.open();
    let st = root.stat("/etc/marker").expect("file");
    assert_eq!((st.name.as_str(), st.size), ("marker", 10));
    assert_eq!(
        go_file_mode(st.st_mode) & berth_api::container::file_mode::DIR,
        0
    );
    let st = root.stat("/etc").expect("dir");
    assert!(st.is_dir());
    assert_eq!(
        go_file_mode(st.st_mode) & !0o777,
        berth_api::container::file_mode::DIR
    );
    // The link is reported as a link, its target resolved inside the root.
    let st = root.stat("/escape").expect("link");
    assert_eq!(
        go_file_mode(st.st_mode) & !0o777,
        berth_api::container::file_mode::SYMLINK
    );
    assert_eq!(st.link_target, "/");
    assert_eq!(root.stat("/up").expect("up").link_target, "/");
    // `../outside` clamps to the root's own (missing) /outside: lexical fallback.
    assert_eq!(
        root.stat("/sibling").expect("sibling").link_target,
        "/outside"
    );
    // Through a link in the middle, the container's file.
    assert_eq!(root.stat("/escape/etc/marker").expect("through").size, 10);
    assert!(matches!(
        root.stat("/nope"),
        Err(FsError::NotFound(p)) if p == "/nope"
    ));
    // The host's file next to the root is not reachable by any spelling.
    for path in [
        "/sibling/secret",
        "/up/outside/secret",
        "/../outside/secret",
        "/escape/../outside/secret",
    ] {
        assert!(
            matches!(root.stat(path), Err(FsError::NotFound(_))),
            "{path}"
        );
    }
}

#[test]
fn archives_a_file_as_one_entry_under_the_requested_name() {
    let s = Scratch::new();
    let root = s.open();
    let (stat, tar) = archive_of(&root, "/escape/etc/marker");
    assert_eq!(stat.name, "marker");
    let e = entries(&tar);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "marker");
    assert_eq!(e[0].3, b"container\n");
    // A symlink is archived as itself, not followed.
    let (_, tar) = archive_of(&root, "/escape");
    let e = entries(&tar);
    assert_eq!(
        (e[0].0.as_str(), e[0].1, e[0].2.as_str()),
        ("escape", tar::EntryType::Symlink, "/")
    );
}

#[test]
fn archives_a_directory_recursively_without_following_links() {
    let s = Scratch::new();
    let r = s.root();
    std::fs::create_dir_all(r.join("d/sub")).expect("mkdir");
    std::fs::write(r.join("d/a"), "A").expect("write");
    std::fs::write(r.join("d/sub/b"), "B").expect("write");
    std::fs::hard_link(r.join("d/a"), r.join("d/hard")).expect("link");
    symlink("/", r.join("d/out")).expect("symlink");
    let long = "n".repeat(150);
    std::fs::write(r.join("d").join(&long), "L").expect("write");
    let root = s.open();

    let (stat, tar) = archive_of(&root, "/d");
    assert!(stat.is_dir());
    let e = entries(&tar);
    let names: Vec<&str> = e.iter().map(|e| e.0.as_str()).collect();
    let long_entry = format!("d/{long}");
    assert_eq!(
        names,
        vec![
            "d/",
            "d/a",
            "d/hard",
            long_entry.as_str(),
            "d/out",
            "d/sub/",
            "d/sub/b"
        ]
    );
    assert_eq!(e[2].1, tar::EntryType::Link);
    assert_eq!(e[2].2, "d/a");
    assert_eq!(e[3].3, b"L");
    assert_eq!((e[4].1, e[4].2.as_str()), (tar::EntryType::Symlink, "/"));

    // `/.`: the contents, entries under `./`.
    let (stat, tar) = archive_of(&root, "/d/.");
    assert_eq!(stat.name, ".");
    let e = entries(&tar);
    assert_eq!(e[0].0, "./");
    assert_eq!(e[1].0, "./a");

    // A link to a directory with `/.` is followed (inside the root): the whole root.
    let (_, tar) = archive_of(&root, "/escape/.");
    assert!(entries(&tar).iter().any(|e| e.0 == "./etc/marker"));
    // The root itself: names start with `/`, as dockerd's.
    let (stat, tar) = archive_of(&root, "/");
    assert_eq!(stat.name, "/");
    let e = entries(&tar);
    assert_eq!(e[0].0, "/");
    assert!(e.iter().any(|e| e.0 == "/etc/marker"));
    assert!(!e.iter().any(|e| e.3 == b"host\n"));
}

#[test]
fn extracts_files_dirs_links_with_their_metadata() {
    let s = Scratch::new();
    let root = s.open();
    let tar = RawTar::new()
        .push("new/", tar::EntryType::Directory, "", b"")
        .file("new/f", b"hello")
        .push("new/l", tar::EntryType::Symlink, "/etc/marker", b"")
        .push("new/h", tar::EntryType::Link, "new/f", b"")
        .file("/abs", b"absolute names land under the destination")
        .done();
    extract(&root, "/tmp", &tar).expect("extract");
    let r = s.root();
    assert_eq!(std::fs::read(r.join("tmp/new/f")).expect("f"), b"hello");
    assert_eq!(
        std::fs::read_link(r.join("tmp/new/l")).expect("l"),
        Path::new("/etc/marker")
    );
    let f = std::fs::metadata(r.join("tmp/new/f")).expect("meta");
    assert_eq!(
        f.ino(),
        std::fs::metadata(r.join("tmp/new/h")).expect("h").ino()
    );
    assert_eq!((f.mode() & 0o7777, f.mtime()), (0o644, 1_700_000_000));
    assert!(r.join("tmp/abs").is_file());
    let d = std::fs::metadata(r.join("tmp/new")).expect("dir");
    assert_eq!((d.mode() & 0o7777, d.mtime()), (0o755, 1_700_000_000));
}

#[test]
fn extraction_destination_is_resolved_inside_the_root() {
    let s = Scratch::new();
    let root = s.open();
    let tar = RawTar::new().file("dropped", b"x").done();
    // `/escape/tmp` is the container's /tmp, `/sibling` its (missing) /outside.
    extract(&root, "/escape/tmp", &tar).expect("through /escape");
    assert!(s.root().join("tmp/dropped").is_file());
    extract(&root, "/up/tmp/", &tar).expect("through /up");
    assert!(matches!(
        extract(&root, "/sibling", &tar),
        Err(FsError::NotFound(_))
    ));
    assert!(!s.outside().join("dropped").exists());
    assert!(matches!(
        extract(&root, "/etc/marker", &tar),
        Err(FsError::NotADirectory(_))
    ));
    assert!(matches!(
        extract(&root, "/nope", &tar),
        Err(FsError::NotFound(_))
    ));
}

#[test]
fn hostile_entries_write_nothing_outside() {
    let s = Scratch::new();
    let root = s.open();
    let outside = s.outside();
    // `..` climbing out of the destination.
    let tar = RawTar::new().file("../../../../outside/pwned", b"x").done();
    assert!(matches!(
        extract(&root, "/tmp", &tar),
        Err(FsError::Escape { .. })
    ));
    let tar = RawTar::new().file("a/../../pwned", b"x").done();
    assert!(matches!(
        extract(&root, "/tmp", &tar),
        Err(FsError::Escape { .. })
    ));
    // A symlink entry, then a file through it: refused, not written through.
    for target in ["/", "../../outside", "/etc"] {
        let tar = RawTar::new()
            .push("l", tar::EntryType::Symlink, target, b"")
            .file("l/pwned", b"x")
            .done();
        let err = extract(&root, "/tmp", &tar).expect_err(target);
        assert!(matches!(err, FsError::BadEntry { .. }), "{err}");
    }
    // An existing symlink in the container below the destination is not followed either.
    let tar = RawTar::new().file("escape/pwned", b"x").done();
    assert!(matches!(
        extract(&root, "/", &tar),
        Err(FsError::BadEntry { .. })
    ));
    // A hardlink to something outside the destination, or to a host file.
    for target in ["../../outside/secret", "/../outside/secret"] {
        let tar = RawTar::new()
            .push("h", tar::EntryType::Link, target, b"")
            .done();
        assert!(extract(&root, "/tmp", &tar).is_err(), "{target}");
    }
    let tar = RawTar::new()
        .push("h", tar::EntryType::Link, "escape/etc/marker", b"")
        .done();
    assert!(extract(&root, "/", &tar).is_err());
    // A symlink entry replacing a directory that a later entry then uses.
    let tar = RawTar::new()
        .push("etc", tar::EntryType::Symlink, "/", b"")
        .file("etc/pwned", b"x")
        .done();
    assert!(extract(&root, "/tmp", &tar).is_err());
    assert!(std::fs::read_dir(&outside)
        .expect("list")
        .all(|e| e.expect("entry").file_name() == "secret"));
    assert!(!s.root().join("pwned").exists());
    assert!(!s.root().join("etc/pwned").exists());
    assert_eq!(
        std::fs::read(outside.join("secret")).expect("secret"),
        b"host\n"
    );
}

#[test]
fn no_overwrite_dir_non_dir_as_dockerd() {
    let s = Scratch::new();
    let root = s.open();
    let strict = ExtractOptions {
        no_overwrite_dir_non_dir: true,
        chown: None,
    };
    let tar = RawTar::new().file("etc", b"x").done();
    assert!(matches!(
        root.extract("/", tar.as_slice(), &strict),
        Err(FsError::DirWithNonDir { .. })
    ));
    let tar = RawTar::new()
        .push("marker/", tar::EntryType::Directory, "", b"")
        .done();
    assert!(matches!(
        root.extract("/etc", tar.as_slice(), &strict),
        Err(FsError::NonDirWithDir { .. })
    ));
    // Without the flag, the file replaces the directory (and a file a file).
    std::fs::create_dir(s.root().join("tmp/gone")).expect("mkdir");
    let tar = RawTar::new().file("gone", b"now a file").done();
    extract(&root, "/tmp", &tar).expect("replace");
    assert!(s.root().join("tmp/gone").is_file());
}

#[test]
fn chown_option_overrides_archive_owner() {
    let s = Scratch::new();
    let root = s.open();
    let opts = ExtractOptions {
        no_overwrite_dir_non_dir: false,
        chown: Some((1234, 5678)),
    };
    let tar = RawTar::new().file("owned", b"x").done();
    if root.extract("/tmp", tar.as_slice(), &opts).is_err() {
        // Not root: chown is refused, nothing to check here.
        return;
    }
    let m = std::fs::metadata(s.root().join("tmp/owned")).expect("meta");
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
}

#[test]
fn round_trip_keeps_long_names_and_contents() {
    let s = Scratch::new();
    let r = s.root();
    let deep = format!("{}/{}", "x".repeat(120), "y".repeat(120));
    std::fs::create_dir_all(r.join("src").join(&deep)).expect("mkdir");
    std::fs::write(r.join("src").join(&deep).join("f"), "deep").expect("write");
    symlink("z".repeat(200), r.join("src/longlink")).expect("symlink");
    let root = s.open();
    let (_, tar) = archive_of(&root, "/src");
    extract(&root, "/tmp", &tar).expect("extract");
    assert_eq!(
        std::fs::read(r.join("tmp/src").join(&deep).join("f")).expect("f"),
        b"deep"
    );
    assert_eq!(
        std::fs::read_link(r.join("tmp/src/longlink")).expect("l"),
        Path::new(&"z".repeat(200))
    );
}

#[test]
fn go_file_modes() {
    use berth_api::container::file_mode as m;
    assert_eq!(go_file_mode(0o040755), m::DIR | 0o755);
    assert_eq!(go_file_mode(0o120777), m::SYMLINK | 0o777);
    assert_eq!(go_file_mode(0o020666), m::DEVICE | m::CHAR_DEVICE | 0o666);
    assert_eq!(go_file_mode(0o104755), m::SETUID | 0o755);
    assert_eq!(go_file_mode(0o041777), m::DIR | m::STICKY | 0o777);
}

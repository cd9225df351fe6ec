//! `docker cp` end to end: the real docker CLI, the `berth` CLI and raw HTTP against a real
//! berthd, both ways, on running and stopped containers, and the escapes a container can
//! plant (`/escape -> /`, `/up -> ../../..`, hostile tars) that must never reach the host.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::cli::{berth, berth_ok, berth_stdin, err, ok, succeeded};
use support::engine::{parse_reply, Engine, Reply};

/// A name no other run of this test uses, for files that must not appear on the host.
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("berth-cp-{tag}-{}-{nanos}", std::process::id())
}

fn container_id(engine: &Engine, name: &str) -> String {
    ok(engine, &["inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_owned()
}

/// The container's writable layer, where a copy into it lands.
fn upper(engine: &Engine, name: &str) -> PathBuf {
    engine
        .data_root()
        .join("snapshots")
        .join(container_id(engine, name))
        .join("upper")
}

/// Runs `docker run -d` with a script that plants what the test needs, then sleeps;
/// waits until `ready` exists in the container's upper dir.
fn run_planted(engine: &Engine, name: &str, script: &str, ready: &str) {
    let full = format!("{script} && touch /{ready} && sleep 300");
    ok(
        engine,
        &["run", "-d", "--name", name, "busybox", "sh", "-c", &full],
    );
    let up = upper(engine, name);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !up.join(ready).exists() {
        assert!(
            Instant::now() < deadline,
            "{name} never got ready:\n{}",
            engine.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One raw request with a binary body; the whole reply.
fn raw_request(engine: &Engine, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut stream = UnixStream::connect(&engine.sock).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send");
    stream.write_all(body).expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    parse_reply(&raw)
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn decode_stat(reply: &Reply) -> serde_json::Value {
    let h = header(reply, "X-Docker-Container-Path-Stat")
        .unwrap_or_else(|| panic!("no stat header in {}", reply.head));
    let json = base64::engine::general_purpose::STANDARD
        .decode(h)
        .expect("base64");
    serde_json::from_slice(&json).expect("json")
}

/// A tar written byte by byte: names a hostile client would send (the tar crate's builder
/// refuses `..` and absolute names).
fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .expect("entries")
        .map(|e| String::from_utf8_lossy(&e.expect("entry").path_bytes()).into_owned())
        .collect()
}

#[test]
fn docker_cp_into_a_running_container_and_back_out() {
    let engine = Engine::start();
    let host = engine.dir.path().join("host");
    std::fs::create_dir_all(host.join("tree/sub")).expect("mkdir");
    std::fs::write(host.join("hello.txt"), "hello container\n").expect("write");
    std::fs::write(host.join("tree/a"), "A").expect("write");
    std::fs::write(host.join("tree/sub/b"), "B").expect("write");
    ok(
        &engine,
        &["run", "-d", "--name", "live", "busybox", "sleep", "300"],
    );

    let file = host.join("hello.txt").display().to_string();
    ok(&engine, &["cp", &file, "live:/tmp/"]);
    ok(&engine, &["cp", &file, "live:/tmp/renamed.txt"]);
    let up = upper(&engine, "live");
    assert_eq!(
        std::fs::read_to_string(up.join("tmp/hello.txt")).expect("copied"),
        "hello container\n"
    );
    assert!(up.join("tmp/renamed.txt").is_file());
    // A directory to a new name is created; into an existing one it is nested.
    let tree = host.join("tree").display().to_string();
    ok(&engine, &["cp", &tree, "live:/tmp/newtree"]);
    ok(&engine, &["cp", &tree, "live:/tmp"]);
    assert_eq!(
        std::fs::read_to_string(up.join("tmp/newtree/sub/b")).expect("b"),
        "B"
    );
    assert!(up.join("tmp/tree/a").is_file());

    // And back out, next to the originals.
    let back = host.join("back.txt");
    ok(
        &engine,
        &["cp", "live:/tmp/hello.txt", &back.display().to_string()],
    );
    assert_eq!(
        std::fs::read_to_string(&back).expect("back"),
        "hello container\n"
    );
    // The container still runs and its rootfs is still mounted.
    assert_eq!(
        ok(&engine, &["inspect", "-f", "{{.State.Status}}", "live"]).trim(),
        "running"
    );
    let merged = up.with_file_name("merged");
    assert!(!support::engine::mounts_under(&merged).is_empty());
}

#[test]
fn docker_cp_out_of_a_stopped_container() {
    let engine = Engine::start();
    ok(
        &engine,
        &[
            "run",
            "--name",
            "done",
            "busybox",
            "sh",
            "-c",
            "mkdir -p /data/sub && echo a > /data/a && echo b > /data/sub/b && ln -s /data/a /data/link",
        ],
    );
    let host = engine.dir.path().join("host");
    std::fs::create_dir_all(host.join("existing")).expect("mkdir");
    let fresh = host.join("fresh").display().to_string();
    ok(&engine, &["cp", "done:/data", &fresh]);
    assert_eq!(
        std::fs::read_to_string(host.join("fresh/sub/b")).expect("b"),
        "b\n"
    );
    assert_eq!(
        std::fs::read_link(host.join("fresh/link")).expect("link"),
        Path::new("/data/a")
    );
    let existing = host.join("existing").display().to_string();
    ok(&engine, &["cp", "done:/data", &existing]);
    assert!(host.join("existing/data/a").is_file());
    ok(&engine, &["cp", "done:/data/.", &existing]);
    assert!(host.join("existing/a").is_file());
    // `-L` follows the link in the container.
    let followed = host.join("followed").display().to_string();
    ok(&engine, &["cp", "-L", "done:/data/link", &followed]);
    assert_eq!(std::fs::read_to_string(&followed).expect("followed"), "a\n");

    // The stopped container's rootfs was mounted for the copies only.
    let merged = upper(&engine, "done").with_file_name("merged");
    assert!(
        support::engine::mounts_under(&merged).is_empty(),
        "left mounted after cp"
    );
    // It still starts afterwards (nothing held its mount or lock).
    ok(&engine, &["start", "done"]);
}

#[test]
fn tar_streams_and_stat_header() {
    let engine = Engine::start();
    ok(
        &engine,
        &[
            "run",
            "--name",
            "tt",
            "busybox",
            "sh",
            "-c",
            "mkdir /data && echo x > /data/x && ln -s x /data/l",
        ],
    );
    let o = engine.docker(&["cp", "tt:/data", "-"]);
    assert!(o.status.success(), "{}", err(&o));
    let names = tar_names(&o.stdout);
    assert_eq!(names, vec!["data/", "data/l", "data/x"], "{names:?}");

    let tar = raw_tar(&[("in/f", tar::EntryType::Regular, "", b"from stdin")]);
    let o = engine.docker_stdin(&["cp", "-", "tt:/tmp"], Some(&tar));
    assert!(o.status.success(), "{}\n{}", err(&o), engine.log());
    let o = engine.docker(&["cp", "tt:/tmp/in/f", "-"]);
    assert_eq!(tar_names(&o.stdout), vec!["f"]);
    // `-` into a file is refused by the CLI, as Docker's.
    let o = engine.docker_stdin(&["cp", "-", "tt:/data/x"], Some(&tar));
    assert!(!o.status.success());

    let head = engine.request("HEAD", "/containers/tt/archive?path=/data/l", None);
    assert_eq!(head.status, 200, "{}", head.head);
    let stat = decode_stat(&head);
    assert_eq!(stat["name"], "l");
    assert_eq!(stat["linkTarget"], "/data/x");
    assert_eq!(stat["mode"].as_u64().expect("mode") & (1 << 27), 1 << 27);
    let dir = decode_stat(&engine.request("HEAD", "/containers/tt/archive?path=/data", None));
    assert_eq!(dir["mode"].as_u64().expect("mode") & (1 << 31), 1 << 31);
    assert!(dir["mtime"].as_str().expect("mtime").ends_with('Z'));
    let missing = engine.request("HEAD", "/containers/tt/archive?path=/nope", None);
    assert_eq!(missing.status, 404);
    let missing = engine.request("GET", "/containers/tt/archive?path=/nope", None);
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json()["message"],
        "Could not find the file /nope in container tt"
    );
    let put = raw_request(&engine, "PUT", "/containers/tt/archive?path=/data/x", &tar);
    assert_eq!(put.status, 400, "{}", put.text());
    assert!(put.text().contains("not a directory"), "{}", put.text());
    let put = raw_request(&engine, "PUT", "/containers/tt/archive?path=/nope", &tar);
    assert_eq!(put.status, 404, "{}", put.text());
    let none = engine.request("GET", "/containers/nope/archive?path=/", None);
    assert_eq!(none.status, 404);
}

#[test]
fn container_symlinks_never_reach_the_host() {
    let engine = Engine::start();
    run_planted(
        &engine,
        "evil",
        "ln -s / /escape && ln -s ../../.. /up && ln -s ../../../../../../tmp /uptmp && echo inside > /etc/berth-marker",
        "planted",
    );
    let host = engine.dir.path().join("host");
    std::fs::create_dir_all(&host).expect("mkdir");
    let up = upper(&engine, "evil");

    // Reading through the links gets the container's files.
    let marker = host.join("marker").display().to_string();
    ok(&engine, &["cp", "evil:/escape/etc/berth-marker", &marker]);
    assert_eq!(
        std::fs::read_to_string(&marker).expect("marker"),
        "inside\n"
    );
    // The host has /etc/os-release; the busybox image has none: the copy must fail.
    assert!(Path::new("/etc/os-release").exists());
    for path in [
        "evil:/escape/etc/os-release",
        "evil:/up/etc/os-release",
        "evil:/up/../etc/os-release",
    ] {
        let dest = host.join("os-release");
        let o = engine.docker(&["cp", path, &dest.display().to_string()]);
        assert!(!o.status.success(), "{path} copied the host's file");
        assert!(err(&o).contains("Could not find the file"), "{}", err(&o));
        assert!(!dest.exists());
    }
    // Both have /etc/passwd: the copy is the container's.
    let dest = host.join("passwd");
    ok(
        &engine,
        &["cp", "evil:/up/etc/passwd", &dest.display().to_string()],
    );
    assert!(std::fs::read_to_string(&dest)
        .expect("passwd")
        .starts_with("root:x:0:0:root:/root:/bin/sh\nnobody:"));
    // /etc/hostname, if copied at all, is not the host's.
    let dest = host.join("hostname");
    let o = engine.docker(&[
        "cp",
        "evil:/escape/etc/hostname",
        &dest.display().to_string(),
    ]);
    if o.status.success() {
        let host_name = std::fs::read("/etc/hostname").unwrap_or_default();
        let copied = std::fs::read(&dest).unwrap_or_default();
        assert!(host_name.is_empty() || copied != host_name);
    }

    // Writing through the links lands in the container.
    let name = unique("through");
    let src = host.join(&name);
    std::fs::write(&src, "payload").expect("write");
    let src = src.display().to_string();
    for dest in ["evil:/escape/tmp/", "evil:/uptmp/", "evil:/up/"] {
        ok(&engine, &["cp", &src, dest]);
    }
    assert!(up.join("tmp").join(&name).is_file());
    assert!(up.join(&name).is_file());
    assert!(
        !Path::new("/tmp").join(&name).exists(),
        "wrote the host's /tmp"
    );
    assert!(!Path::new("/").join(&name).exists(), "wrote the host's /");

    // Hostile archives: `..`, absolute names, a symlink then a file through it.
    let dotdot = unique("dotdot");
    let abs = unique("abs");
    let via = unique("via");
    let snapshot = up.parent().expect("snapshot dir").to_owned();
    let climb = format!("../../../../../../../../tmp/{dotdot}");
    let tar = raw_tar(&[(climb.as_str(), tar::EntryType::Regular, "", b"x")]);
    let r = raw_request(&engine, "PUT", "/containers/evil/archive?path=/tmp", &tar);
    assert_eq!(r.status, 400, "{}", r.text());
    let short = format!("../../{dotdot}");
    let tar = raw_tar(&[(short.as_str(), tar::EntryType::Regular, "", b"x")]);
    let r = raw_request(&engine, "PUT", "/containers/evil/archive?path=/tmp", &tar);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!Path::new("/tmp").join(&dotdot).exists());
    assert!(!snapshot.join(&dotdot).exists());
    assert!(!snapshot.parent().expect("snapshots").join(&dotdot).exists());

    let abs_name = format!("/tmp/{abs}");
    let tar = raw_tar(&[(abs_name.as_str(), tar::EntryType::Regular, "", b"x")]);
    let r = raw_request(&engine, "PUT", "/containers/evil/archive?path=/", &tar);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        up.join("tmp").join(&abs).is_file(),
        "absolute names land inside"
    );
    assert!(!Path::new("/tmp").join(&abs).exists());

    let through = format!("l/tmp/{via}");
    let tar = raw_tar(&[
        ("l", tar::EntryType::Symlink, "/", b""),
        (through.as_str(), tar::EntryType::Regular, "", b"x"),
    ]);
    let r = raw_request(&engine, "PUT", "/containers/evil/archive?path=/tmp", &tar);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!Path::new("/tmp").join(&via).exists());
    assert!(
        !up.join("tmp").join(&via).exists(),
        "wrote through the symlink"
    );
    // The same with the host-relative spelling.
    let tar = raw_tar(&[
        (
            "l2",
            tar::EntryType::Symlink,
            "../../../../../../../../tmp",
            b"",
        ),
        (
            format!("l2/{via}").as_str(),
            tar::EntryType::Regular,
            "",
            b"x",
        ),
    ]);
    let r = raw_request(&engine, "PUT", "/containers/evil/archive?path=/tmp", &tar);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!Path::new("/tmp").join(&via).exists());

    // A hardlink to the host's /etc/passwd.
    let tar = raw_tar(&[(
        "h",
        tar::EntryType::Link,
        "../../../../../../../../etc/passwd",
        b"",
    )]);
    let r = raw_request(&engine, "PUT", "/containers/evil/archive?path=/tmp", &tar);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!up.join("tmp/h").exists());
}

#[test]
fn docker_cp_bad_destinations_write_nothing() {
    let engine = Engine::start();
    ok(
        &engine,
        &["run", "-d", "--name", "cc", "busybox", "sleep", "300"],
    );
    let host = engine.dir.path().join("host");
    std::fs::create_dir_all(host.join("dir")).expect("mkdir");
    std::fs::write(host.join("f"), "f").expect("write");
    let f = host.join("f").display().to_string();
    let dir = host.join("dir").display().to_string();
    let up = upper(&engine, "cc");

    // The CLI refuses a file onto a missing `dir/`; without the slash the daemon says
    // the parent is missing.
    let o = engine.docker(&["cp", &f, "cc:/nope/deeper/"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("no such directory"), "{}", err(&o));
    let o = engine.docker(&["cp", &f, "cc:/nope/deeper"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("Could not find the file /nope in container cc"),
        "{}",
        err(&o)
    );
    assert!(!up.join("nope").exists());
    let o = engine.docker(&["cp", "cc:/nope", &host.join("out").display().to_string()]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("Could not find the file /nope in container cc"),
        "{}",
        err(&o)
    );
    assert!(!host.join("out").exists());
    // A directory onto an existing file, both ways.
    ok(&engine, &["cp", &f, "cc:/tmp/file"]);
    let o = engine.docker(&["cp", &dir, "cc:/tmp/file"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("cannot copy"), "{}", err(&o));
    let o = engine.docker(&["cp", "cc:/tmp", &f]);
    assert!(!o.status.success());
    assert!(err(&o).contains("cannot copy"), "{}", err(&o));
    let o = engine.docker(&[
        "cp",
        "cc:/tmp/file",
        &host.join("missing/x").display().to_string(),
    ]);
    assert!(!o.status.success());
    assert!(err(&o).contains("does not exist"), "{}", err(&o));
    let o = engine.docker(&[
        "cp",
        "cc:/tmp/file",
        &host.join("missing/").display().to_string(),
    ]);
    assert!(!o.status.success());
    assert!(err(&o).contains("no such directory"), "{}", err(&o));
    let o = engine.docker(&[
        "cp",
        "cc:/tmp/file",
        &host.join("f/x").display().to_string(),
    ]);
    assert!(!o.status.success());
    assert!(err(&o).contains("not a directory"), "{}", err(&o));
    let o = engine.docker(&["cp", &f, &host.join("g").display().to_string()]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("must specify at least one container source"),
        "{}",
        err(&o)
    );
    let o = engine.docker(&["cp", "cc:/a", "cc:/b"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("copying between containers is not supported"),
        "{}",
        err(&o)
    );
    let o = engine.docker(&["cp", "-", "cc:/tmp/file"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("destination \"cc:/tmp/file\" must be a directory"),
        "{}",
        err(&o)
    );
}

#[test]
fn berth_cp_both_ways() {
    let engine = Engine::start();
    ok(
        &engine,
        &["run", "-d", "--name", "bb", "busybox", "sleep", "300"],
    );
    ok(
        &engine,
        &[
            "run",
            "--name",
            "stopped",
            "busybox",
            "sh",
            "-c",
            "mkdir /data && echo s > /data/s && ln -s / /data/root",
        ],
    );
    let host = engine.dir.path().join("host");
    std::fs::create_dir_all(host.join("tree/sub")).expect("mkdir");
    std::fs::write(host.join("tree/sub/x"), "x").expect("write");
    std::fs::write(host.join("f"), "file").expect("write");
    let tree = host.join("tree").display().to_string();
    let f = host.join("f").display().to_string();
    let up = upper(&engine, "bb");

    berth_ok(&engine, &["cp", &f, "bb:/tmp/"]);
    berth_ok(&engine, &["cp", &tree, "bb:/tmp/newtree"]);
    berth_ok(&engine, &["cp", &tree, "bb:/tmp/"]);
    berth_ok(&engine, &["cp", &format!("{tree}/."), "bb:/root"]);
    assert_eq!(std::fs::read(up.join("tmp/f")).expect("f"), b"file");
    assert!(up.join("tmp/newtree/sub/x").is_file());
    assert!(up.join("tmp/tree/sub/x").is_file());
    assert!(up.join("root/sub/x").is_file());
    // Without -a the files are root's; the tar carries 0:0.
    let meta = std::fs::metadata(up.join("tmp/f")).expect("meta");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);

    let out_dir = host.join("out");
    berth_ok(
        &engine,
        &["cp", "stopped:/data", &out_dir.display().to_string()],
    );
    assert_eq!(std::fs::read(out_dir.join("s")).expect("s"), b"s\n");
    assert_eq!(
        std::fs::read_link(out_dir.join("root")).expect("link"),
        Path::new("/")
    );
    let args = ["cp", "stopped:/data/s", "-"];
    let o = succeeded(&engine, "berth", &args, berth(&engine, &args));
    assert_eq!(tar_names(&o.stdout), vec!["s"]);
    let tar = raw_tar(&[("piped", tar::EntryType::Regular, "", b"p")]);
    let o = berth_stdin(&engine, &["cp", "-", "bb:/tmp"], Some(&tar));
    assert!(o.status.success(), "{}", err(&o));
    assert!(up.join("tmp/piped").is_file());

    // Docker's errors.
    let o = berth(&engine, &["cp", &tree, "bb:/tmp/f"]);
    assert!(!o.status.success());
    // The docker CLI's words (moby `ErrCannotCopyDir`, `ErrDirNotExists`).
    assert!(err(&o).contains("cannot copy directory"), "{}", err(&o));
    let o = berth(&engine, &["cp", "bb:/tmp", &f]);
    assert!(err(&o).contains("cannot copy directory"), "{}", err(&o));
    let o = berth(&engine, &["cp", &f, "bb:/nope/x/"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("no such directory"), "{}", err(&o));
    let o = berth(&engine, &["cp", &f, "bb:/nope/x"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("Could not find the file /nope in container bb"),
        "{}",
        err(&o)
    );
    let o = berth_stdin(&engine, &["cp", "-", "bb:/tmp/f"], Some(&tar));
    assert!(
        err(&o).contains("destination \"bb:/tmp/f\" must be a directory"),
        "{}",
        err(&o)
    );
    assert!(!up.join("nope").exists());
    let o = berth(
        &engine,
        &["cp", "bb:/nope", &host.join("n").display().to_string()],
    );
    assert!(!o.status.success());
    assert!(
        err(&o).contains("Could not find the file /nope in container bb"),
        "{}",
        err(&o)
    );
    let o = berth(&engine, &["cp", &f, &host.join("g").display().to_string()]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("must specify at least one container source"),
        "{}",
        err(&o)
    );
    let o = berth(&engine, &["cp", "bb:/tmp", "stopped:/tmp"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("copying between containers is not supported"),
        "{}",
        err(&o)
    );
    let o = berth(
        &engine,
        &[
            "cp",
            "bb:/tmp/f",
            &host.join("missing/x").display().to_string(),
        ],
    );
    assert!(!o.status.success());
    assert!(err(&o).contains("does not exist"), "{}", err(&o));
    assert!(!host.join("missing").exists());
    // `-L` on the container side, and a file onto an existing file.
    let followed = host.join("followed").display().to_string();
    berth_ok(&engine, &["cp", "-L", "stopped:/data/root", &followed]);
    assert!(
        host.join("followed/bin/busybox").is_file(),
        "the link's target: the whole root"
    );
    let onto = host.join("onto");
    std::fs::write(&onto, "old").expect("write");
    berth_ok(
        &engine,
        &["cp", "stopped:/data/s", &onto.display().to_string()],
    );
    assert_eq!(std::fs::read(&onto).expect("onto"), b"s\n");
}

/// `docker cp` sees `-v` binds and volumes as the container does (dockerd mounts them for
/// the copy): in and out reach the host directory or the volume's data, not the rootfs
/// underneath, on a running and on a stopped container. A read-only bind or volume refuses
/// with Docker's error and nothing is written. Symlinks inside a volume (`-> /`,
/// `-> ../..`) resolve inside the container, never on the host.
#[test]
fn docker_cp_reaches_binds_and_volumes() {
    let engine = Engine::start();
    let bind = engine.dir.path().join("bind");
    let ro_bind = engine.dir.path().join("ro-bind");
    let local = engine.dir.path().join("local");
    for d in [&bind, &ro_bind, &local] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(bind.join("from-host.txt"), "host data\n").expect("write");
    std::fs::write(local.join("payload.txt"), "payload\n").expect("write");
    let payload = local.join("payload.txt").display().to_string();
    ok(&engine, &["volume", "create", "cpvol"]);
    ok(&engine, &["volume", "create", "cpro"]);
    let bind_arg = format!("{}:/bind", bind.display());
    // `,z` (an SELinux relabel request) is accepted and shown, as Docker's.
    let ro_arg = format!("{}:/robind:ro,z", ro_bind.display());
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "cpv",
            "-v",
            &bind_arg,
            "-v",
            &ro_arg,
            "-v",
            "cpvol:/vol",
            "--mount",
            "type=volume,src=cpro,dst=/rovol,readonly",
            "busybox",
            "sh",
            "-c",
            "echo in-vol > /vol/inside.txt; ln -s / /vol/root; ln -s ../.. /vol/up; \
             touch /ready; exec sleep 1000",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !engine
        .docker(&["exec", "cpv", "test", "-e", "/ready"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "container not ready\n{}",
            engine.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let volume_dir = PathBuf::from(
        ok(
            &engine,
            &["volume", "inspect", "-f", "{{.Mountpoint}}", "cpvol"],
        )
        .trim(),
    );
    let up = upper(&engine, "cpv");
    let modes = ok(
        &engine,
        &[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Destination}}={{.Mode}},{{.RW}} {{end}}",
            "cpv",
        ],
    );
    assert!(modes.contains("/robind=ro,z,false"), "{modes}");

    for phase in ["running", "stopped"] {
        // Out of the bind and the volume: what the host and the volume hold.
        let got = local.join(format!("got-{phase}.txt"));
        let _ = std::fs::remove_file(&got);
        ok(
            &engine,
            &["cp", "cpv:/bind/from-host.txt", &got.display().to_string()],
        );
        assert_eq!(
            std::fs::read_to_string(&got).expect("out of bind"),
            "host data\n"
        );
        let _ = std::fs::remove_file(&got);
        ok(
            &engine,
            &["cp", "cpv:/vol/inside.txt", &got.display().to_string()],
        );
        assert_eq!(
            std::fs::read_to_string(&got).expect("out of volume"),
            "in-vol\n"
        );

        // Into them: the host directory and the volume's data, not the writable layer.
        let name = format!("to-{phase}.txt");
        ok(&engine, &["cp", &payload, &format!("cpv:/bind/{name}")]);
        ok(&engine, &["cp", &payload, &format!("cpv:/vol/{name}")]);
        assert_eq!(
            std::fs::read_to_string(bind.join(&name)).expect("in bind"),
            "payload\n"
        );
        assert_eq!(
            std::fs::read_to_string(volume_dir.join(&name)).expect("in volume"),
            "payload\n"
        );
        assert!(
            !up.join("bind").join(&name).exists(),
            "written under the bind"
        );
        assert!(
            !up.join("vol").join(&name).exists(),
            "written under the volume"
        );

        // Read-only: Docker's error, nothing written anywhere.
        for dest in ["cpv:/robind/x.txt", "cpv:/robind/", "cpv:/rovol/x.txt"] {
            let o = engine.docker(&["cp", &payload, dest]);
            assert!(!o.status.success(), "cp to {dest} ({phase}) succeeded");
            assert!(
                err(&o).contains("mounted volume is marked read-only"),
                "{dest}: {}",
                err(&o)
            );
        }
        assert_eq!(std::fs::read_dir(&ro_bind).expect("ro bind").count(), 0);
        assert!(!up.join("robind/x.txt").exists() && !up.join("rovol/x.txt").exists());

        // Symlinks in the volume lead to the container's root, not the host's.
        for via in ["root", "up"] {
            let passwd = local.join(format!("passwd-{via}-{phase}"));
            ok(
                &engine,
                &[
                    "cp",
                    &format!("cpv:/vol/{via}/etc/passwd"),
                    &passwd.display().to_string(),
                ],
            );
            let text = std::fs::read_to_string(&passwd).expect("passwd");
            assert!(
                text.starts_with("root:x:0:0:root:/root:/bin/sh\nnobody:")
                    && text.lines().count() == 2,
                "the host's /etc/passwd came out through /vol/{via}: {text}"
            );
        }
        let escape = unique(phase);
        ok(
            &engine,
            &["cp", &payload, &format!("cpv:/vol/up/tmp/{escape}")],
        );
        assert!(
            !Path::new("/tmp").join(&escape).exists(),
            "written to the host's /tmp"
        );
        assert!(
            up.join("tmp").join(&escape).is_file(),
            "not in the container's /tmp"
        );

        if phase == "running" {
            ok(&engine, &["stop", "-t", "1", "cpv"]);
        }
    }
    // What was copied in while it was stopped is there when it runs again.
    ok(&engine, &["start", "cpv"]);
    assert_eq!(
        ok(&engine, &["exec", "cpv", "cat", "/vol/to-stopped.txt"]),
        "payload\n"
    );
    assert_eq!(
        ok(&engine, &["exec", "cpv", "cat", "/bind/to-stopped.txt"]),
        "payload\n"
    );
    // No copy left a mount behind: only the running container's rootfs is mounted.
    let mounts = support::engine::mounts_under(engine.dir.path());
    assert!(
        mounts
            .iter()
            .all(|m| !m.contains("/bind") && !m.contains("/volumes/")),
        "{mounts:?}"
    );
}

/// `docker cp -a` into a container with a numeric `--user` gives the new files that owner
/// (dockerd's `copyUIDGID`); without `-a` the archive's owners stay.
#[test]
fn docker_cp_archive_mode_chowns_to_the_user() {
    use std::os::unix::fs::MetadataExt;
    let engine = Engine::start();
    let file = engine.dir.path().join("owned.txt");
    std::fs::write(&file, "mine\n").expect("write");
    std::os::unix::fs::chown(&file, Some(4321), Some(4322)).expect("chown");
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "who",
            "--user",
            "1234:5678",
            "busybox",
            "sleep",
            "300",
        ],
    );
    let src = file.display().to_string();
    ok(&engine, &["cp", "-a", &src, "who:/tmp/archived.txt"]);
    ok(&engine, &["cp", &src, "who:/tmp/plain.txt"]);
    let up = upper(&engine, "who");
    let archived = std::fs::metadata(up.join("tmp/archived.txt")).expect("archived");
    assert_eq!((archived.uid(), archived.gid()), (1234, 5678));
    let plain = std::fs::metadata(up.join("tmp/plain.txt")).expect("plain");
    assert_eq!((plain.uid(), plain.gid()), (4321, 4322));
}

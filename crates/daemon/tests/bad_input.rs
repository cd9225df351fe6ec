//! Untrusted API input (issue 9): bodies that are huge, deeply nested, malformed or of the
//! wrong shape, and names and references with path characters, against a real berthd.
//! Each is refused with a 4xx and a one-line message in Docker's wording where Docker has
//! one; afterwards the daemon still serves, the lists of containers, images, volumes and
//! networks are as before, and the leak checker finds nothing new on the host.
//!
//! Already covered elsewhere, so not repeated here: `{not json` and `name=a/b` on
//! container create and `PortBindings` out of range (container_api.rs), rename to `a/b`
//! (daily_use.rs), `Bad/Name` on pull (image_api.rs), volume `bad/name` and `../../etc`
//! (volume_api.rs).

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use support::engine::{parse_reply, Engine, Reply};
use support::leaks::{HostSnapshot, Ignore};

/// The lists a refused request must not change.
fn inventory(engine: &Engine) -> Vec<String> {
    [
        "/containers/json?all=1",
        "/images/json",
        "/volumes",
        "/networks",
    ]
    .iter()
    .map(|path| {
        let r = engine.request("GET", path, None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        format!("{path} {}", r.text())
    })
    .collect()
}

/// One request with raw bytes as its body.
fn send_bytes(engine: &Engine, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut stream = UnixStream::connect(&engine.sock).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(body).expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    parse_reply(&raw)
}

/// The reply is `status` with a JSON `message` on one line; returns the message.
#[track_caller]
fn refused(r: &Reply, status: u16, what: &str) -> String {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        !message.is_empty() && !message.contains('\n'),
        "{what}: message {message:?}"
    );
    message
}

/// `VmHWM` (peak RSS) of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("VmHWM")
}

/// Streams `total` bytes of a JSON string's inside (after `prefix`) to `path`, with a
/// Content-Length or chunked, while reading the reply: the daemon may answer and close
/// before the body ends, and then the writes fail, which is fine.
fn send_huge(engine: &Engine, path: &str, prefix: &str, total: usize, chunked: bool) -> Huge {
    let stream = UnixStream::connect(&engine.sock).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", prefix.len() + total)
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    );
    let prefix = prefix.to_owned();
    let sender = std::thread::spawn(move || -> std::io::Result<usize> {
        let frame = |data: &[u8]| -> Vec<u8> {
            if !chunked {
                return data.to_vec();
            }
            let mut out = format!("{:x}\r\n", data.len()).into_bytes();
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
            out
        };
        writer.write_all(head.as_bytes())?;
        writer.write_all(&frame(prefix.as_bytes()))?;
        let block = frame(&vec![b'a'; 1 << 20]);
        let mut sent = 0;
        while sent < total {
            writer.write_all(&block)?;
            sent += 1 << 20;
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n")?;
        }
        Ok(sent)
    });
    // The daemon answers and closes with the body unread; the kernel then resets our
    // end, and the reply it had queued may or may not still be readable.
    let mut raw = Vec::new();
    let mut reader = stream;
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the reply: {e}"),
        }
    }
    let sent = sender.join().expect("sender thread");
    Huge {
        reply: (!raw.is_empty()).then(|| parse_reply(&raw)),
        sent_all: sent.is_ok_and(|n| n >= total),
    }
}

struct Huge {
    reply: Option<Reply>,
    /// Whether the daemon read the whole body (it must not: it stops at its limit).
    sent_all: bool,
}

#[test]
fn huge_bodies_are_refused_without_the_daemon_growing() {
    let engine = Engine::start();
    let before = HostSnapshot::of(&engine);
    let listed = inventory(&engine);
    let pid = engine.daemon_pid().expect("berthd pid");
    let peak_before = peak_rss_kib(pid);
    const HUNDRED_MIB: usize = 100 << 20;

    for (path, prefix, chunked) in [
        (
            "/containers/create?name=huge",
            r#"{"Image":"busybox","Env":[""#,
            false,
        ),
        (
            "/containers/create?name=huge",
            r#"{"Image":"busybox","Env":[""#,
            true,
        ),
        ("/networks/create", r#"{"Name":""#, false),
        ("/volumes/create", r#"{"Name":""#, true),
    ] {
        let huge = send_huge(&engine, path, prefix, HUNDRED_MIB, chunked);
        let what = format!("100 MiB to {path} (chunked: {chunked})");
        assert!(!huge.sent_all, "{what}: the daemon read the whole body");
        match &huge.reply {
            Some(r) => {
                let message = refused(r, 400, &what);
                assert!(
                    message.contains("length limit exceeded"),
                    "{what}: {message}"
                );
            }
            None => eprintln!("{what}: connection reset before the reply was read"),
        }
    }

    let peak_after = peak_rss_kib(pid);
    eprintln!("berthd VmHWM: {peak_before} KiB before, {peak_after} KiB after 4 x 100 MiB bodies");
    // The limit is 4 MiB per body; buffering any whole body would add 100 MiB.
    assert!(
        peak_after < peak_before + 32 * 1024,
        "peak RSS grew from {peak_before} KiB to {peak_after} KiB"
    );
    assert_eq!(engine.request("GET", "/_ping", None).status, 200);
    assert_eq!(inventory(&engine), listed);
    before.assert_no_leaks(&engine, &Ignore::none());
}

#[test]
fn malformed_nested_and_mistyped_bodies_are_400() {
    let engine = Engine::start();
    let before = HostSnapshot::of(&engine);
    let listed = inventory(&engine);

    let deep_arrays = "[".repeat(100_000);
    let deep_objects = r#"{"a":"#.repeat(100_000);
    // Into a field serde buffers (the create body's flattened config): recursion limit.
    let deep_labels = format!(
        r#"{{"Image":"busybox","Labels":{}"#,
        r#"{"a":"#.repeat(100_000)
    );
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    for path in ["/containers/create", "/networks/create", "/volumes/create"] {
        cases.push((path, deep_arrays.clone().into_bytes()));
        cases.push((path, deep_objects.clone().into_bytes()));
        cases.push((path, b"{\"Name\":\"x\xff\xfe\"}".to_vec()));
        cases.push((path, b"[]".to_vec()));
        cases.push((path, br#"{"Name":"#.to_vec()));
    }
    cases.push(("/containers/create", deep_labels.into_bytes()));
    cases.push(("/containers/create", br#"{"Image":5}"#.to_vec()));
    cases.push((
        "/containers/create",
        br#"{"Image":"busybox","HostConfig":{"Privileged":"yes"}}"#.to_vec(),
    ));
    cases.push((
        "/containers/create",
        br#"{"Image":"busybox","Cmd":{"sh":"-c"}}"#.to_vec(),
    ));
    cases.push((
        "/containers/create",
        br#"{"Image":"busybox","HostConfig":{"Binds":"/:/host"}}"#.to_vec(),
    ));
    cases.push(("/networks/create", br#"{"Name":["n"]}"#.to_vec()));
    // serde would read these as structs by field order; dockerd refuses an array.
    cases.push(("/networks/create", br#"["n","bridge"]"#.to_vec()));
    cases.push(("/volumes/create", br#"["v"]"#.to_vec()));
    cases.push(("/volumes/create", br#"{"Name":"v","Labels":[1]}"#.to_vec()));

    let r = send_bytes(
        &engine,
        "POST",
        "/containers/create",
        deep_objects.as_bytes(),
    );
    let message = refused(&r, 400, "deep objects to /containers/create");
    assert!(message.contains("recursion limit exceeded"), "{message}");

    for (path, body) in &cases {
        let shown: String = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
        let what = format!("POST {path} {shown:?}");
        let r = send_bytes(&engine, "POST", path, body);
        let message = refused(&r, 400, &what);
        assert!(message.starts_with("invalid JSON: "), "{what}: {message}");
        if body.first() == Some(&b'[') {
            assert!(
                message.contains("cannot unmarshal array") || message.contains("EOF"),
                "{what}: {message}"
            );
        }
    }

    // A 1 MiB header: hyper's limit answers 431 (or closes) and the daemon goes on.
    let mut stream = UnixStream::connect(&engine.sock).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let junk = "a".repeat(1 << 20);
    let _ = stream.write_all(
        format!("GET /_ping HTTP/1.1\r\nHost: berth\r\nX-Junk: {junk}\r\n\r\n").as_bytes(),
    );
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    if !raw.is_empty() {
        let status = parse_reply(&raw).status;
        assert!(
            (400..500).contains(&status),
            "1 MiB header answered {status}"
        );
    }

    assert_eq!(engine.request("GET", "/_ping", None).status, 200);
    assert_eq!(inventory(&engine), listed);
    before.assert_no_leaks(&engine, &Ignore::none());
}

#[test]
fn names_and_references_with_path_characters_create_nothing() {
    let engine = Engine::start();
    let before = HostSnapshot::of(&engine);
    let listed = inventory(&engine);
    let marker = format!("berth-bad-input-{}", std::process::id());
    let climb = format!("../../../../../../../../tmp/{marker}");
    let climb_q = climb.replace('/', "%2F");

    // Container names (query string, percent-encoded as a client sends them).
    for name in [
        climb_q.as_str(),
        "..",
        ".",
        "..%2Fx",
        "x%2F..%2F..%2Fy",
        "a%00b",
        "%2F..%2Fx",
    ] {
        let r = engine.request(
            "POST",
            &format!("/containers/create?name={name}"),
            Some(r#"{"Image":"busybox"}"#),
        );
        let message = refused(&r, 400, &format!("container name {name}"));
        assert!(
            message.starts_with("Invalid container name"),
            "{name}: {message}"
        );
    }

    // Pull: references and tags. Refused before anything is fetched or streamed.
    for query in [
        format!("fromImage={climb_q}&tag=latest"),
        "fromImage=..%2Fx&tag=latest".to_owned(),
        "fromImage=a%00b&tag=latest".to_owned(),
        "fromImage=busybox&tag=..%2Fx".to_owned(),
        "fromImage=busybox&tag=a%00b".to_owned(),
    ] {
        let r = engine.request("POST", &format!("/images/create?{query}"), None);
        let message = refused(&r, 400, &format!("pull {query}"));
        assert!(
            message.starts_with("invalid reference format"),
            "{query}: {message}"
        );
    }

    // Tag: the new repository and tag.
    for query in [
        format!("repo={climb_q}&tag=1"),
        "repo=..%2Fx&tag=1".to_owned(),
        "repo=a%00b&tag=1".to_owned(),
        "repo=x&tag=..%2Fy".to_owned(),
        "repo=x&tag=a%2Fb".to_owned(),
    ] {
        let r = engine.request("POST", &format!("/images/busybox/tag?{query}"), None);
        let message = refused(&r, 400, &format!("tag {query}"));
        assert!(message.starts_with("invalid "), "{query}: {message}");
    }

    // Volumes: the name becomes a directory under the data root.
    for name in [climb.as_str(), "..", ".", "/abs", "a\\u0000b", "x/.."] {
        let r = engine.request(
            "POST",
            "/volumes/create",
            Some(&format!(r#"{{"Name":"{name}"}}"#)),
        );
        let message = refused(&r, 400, &format!("volume {name}"));
        assert!(
            message.contains("includes invalid characters for a local volume name"),
            "{name}: {message}"
        );
    }

    // Networks.
    for name in [climb.as_str(), "..", "a/b", "a\\u0000b", "/n"] {
        let r = engine.request(
            "POST",
            "/networks/create",
            Some(&format!(r#"{{"Name":"{name}"}}"#)),
        );
        let message = refused(&r, 400, &format!("network {name}"));
        assert!(
            message.starts_with("invalid network name"),
            "{name}: {message}"
        );
    }

    assert!(
        !std::path::Path::new("/tmp").join(&marker).exists(),
        "/tmp/{marker} was created"
    );
    assert_eq!(engine.request("GET", "/_ping", None).status, 200);
    assert_eq!(inventory(&engine), listed);
    before.assert_no_leaks(&engine, &Ignore::none());
}

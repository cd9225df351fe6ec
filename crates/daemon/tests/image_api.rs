//! End to end: berthd's image endpoints, on a temporary socket and roots, against a real
//! registry (Debian's `docker-registry` on 127.0.0.1), driven by raw HTTP and by the real
//! `docker` CLI. Test images are built here from the host's static busybox as an OCI
//! layout; skopeo pushes them to the registry and turns them into `docker save` archives.
//!
//! Needs `docker-registry`, `skopeo`, `tar`, `busybox-static` (scripts/install-deps.sh);
//! the docker CLI test is skipped without `docker`.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use berth_image::Digest;
use support::bare_daemon::BareDaemon as Daemon;
use support::oci_layout::{host_arch, write_layout};
use support::registry::Registry;

/// This file's HTTP client and checks on the daemon.
impl Daemon {
    /// One request on its own connection; the whole reply, de-chunked.
    fn request(&self, method: &str, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Reply {
        let mut stream = UnixStream::connect(&self.sock).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("write head");
        stream.write_all(body).expect("write body");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).expect("read response");
        Reply::parse(&bytes)
    }

    fn get(&self, path: &str) -> Reply {
        self.request("GET", path, b"", &[])
    }

    fn post(&self, path: &str, body: &[u8]) -> Reply {
        self.request("POST", path, body, &[])
    }

    fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, b"", &[])
    }

    /// `docker ARGS`, which must succeed; its stdout.
    fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}{}\n--- berthd log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Mount points below the temp dir: there must be none once images are handled.
    fn mounts_below(&self) -> Vec<String> {
        let root = std::fs::canonicalize(self.dir.path()).expect("canonical tempdir");
        let root = root.to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&root))
            .map(str::to_owned)
            .collect()
    }

    /// Files under `data/<sub>` (blobs, unpacked layers): what gc must clear.
    fn entries(&self, sub: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.data_root().join(sub)];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() && sub == "content" {
                    stack.push(path);
                } else {
                    out.push(path.display().to_string());
                }
            }
        }
        out
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn parse(bytes: &[u8]) -> Reply {
        let split = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header terminator");
        let head = String::from_utf8_lossy(&bytes[..split]);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let raw = &bytes[split + 4..];
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked { dechunk(raw) } else { raw.to_vec() };
        Reply {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    /// The lines of a JSON-message stream.
    fn lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?}: {e}")))
            .collect()
    }

    fn assert_status(&self, status: u16) -> &Reply {
        assert_eq!(self.status, status, "body: {}", self.text());
        self
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        raw = &raw[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// Statuses of a stream, for asserting on.
fn statuses(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l["status"].as_str().map(str::to_owned))
        .collect()
}

fn errors(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l["error"].as_str().map(str::to_owned))
        .collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A one-layer busybox image as an OCI layout (tag `v1`), with a label and a `created`
/// to check inspect against.
struct TestImage {
    dir: tempfile::TempDir,
    config: Digest,
    diff_id: Digest,
}

impl TestImage {
    fn build() -> TestImage {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("rootfs");
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("/bin/busybox: install busybox-static");
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).expect("symlink");
        let layer_path = dir.path().join("layer.tar");
        run(Command::new("tar")
            .args([
                "--numeric-owner",
                "--owner=0",
                "--group=0",
                "--mtime=@1700000000",
                "-C",
            ])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&layer_path)
            .arg("bin"));
        let layer = std::fs::read(&layer_path).expect("layer");
        let diff_id = Digest::of(&layer);
        let config = serde_json::json!({
            "architecture": host_arch(), "os": "linux", "created": "2024-01-02T03:04:05Z",
            "author": "berth tests",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "Labels": {"berth.test": "yes"}},
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}
        })
        .to_string();
        let config_digest = write_layout(&dir.path().join("layout"), &config, &[&layer]);
        TestImage {
            dir,
            config: config_digest,
            diff_id,
        }
    }

    fn layout(&self) -> String {
        format!("oci:{}:v1", self.dir.path().join("layout").display())
    }

    /// Pushes the image to `registry` as `repo:v1` with skopeo; the manifest digest
    /// the registry has (skopeo compresses the plain layer on the way, so it is not
    /// the layout's).
    fn push(&self, registry: &Registry, repo: &str) -> Digest {
        let remote = format!("docker://{}/{repo}:v1", registry.host());
        run(Command::new("skopeo").args([
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            &self.layout(),
            &remote,
        ]));
        let out = run(Command::new("skopeo").args(["inspect", "--tls-verify=false", &remote]));
        let inspect: serde_json::Value = serde_json::from_str(&out).expect("skopeo json");
        inspect["Digest"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .expect("a manifest digest")
    }

    /// The image as a classic `docker save` archive tagged `name`.
    fn docker_archive(&self, name: &str) -> Vec<u8> {
        let path = self.dir.path().join("save.tar");
        let _ = std::fs::remove_file(&path);
        run(Command::new("skopeo").args([
            "--insecure-policy",
            "copy",
            &self.layout(),
            &format!("docker-archive:{}:{name}", path.display()),
        ]));
        std::fs::read(&path).expect("archive")
    }
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[test]
fn load_list_inspect_tag_and_remove() {
    let d = Daemon::start();
    let image = TestImage::build();
    let archive = image.docker_archive("berth-test/busybox:v1");

    // Load: one JSON line per image, as `docker load` prints it.
    let r = d.post("/v1.44/images/load?quiet=0", &archive);
    r.assert_status(200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let lines = r.lines();
    assert_eq!(lines[0]["stream"], "Loaded image: berth-test/busybox:v1\n");

    // A docker-save archive has no manifest: the ID (config digest) is what survives.
    let list = d.get("/images/json");
    list.assert_status(200);
    let list = list.json();
    let entries = list.as_array().expect("array");
    assert_eq!(entries.len(), 1, "{list}");
    let id = image.config.to_string();
    assert_eq!(entries[0]["Id"], id);
    assert_eq!(
        entries[0]["RepoTags"],
        serde_json::json!(["berth-test/busybox:v1"])
    );
    assert_eq!(entries[0]["Created"], 1_704_164_645);
    assert_eq!(entries[0]["Labels"]["berth.test"], "yes");
    assert!(entries[0]["Size"].as_i64().unwrap_or(0) > 100_000, "{list}");

    let r = d.get("/images/berth-test/busybox:v1/json");
    r.assert_status(200);
    let inspect = r.json();
    assert_eq!(inspect["Id"], id);
    assert_eq!(inspect["Created"], "2024-01-02T03:04:05Z");
    assert_eq!(inspect["Author"], "berth tests");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(inspect["Config"]["Env"], serde_json::json!(["PATH=/bin"]));
    assert_eq!(
        inspect["RootFS"]["Layers"],
        serde_json::json!([image.diff_id.to_string()])
    );
    // By ID and by a short ID prefix too.
    d.get(&format!("/images/{id}/json")).assert_status(200);
    d.get(&format!("/images/{}/json", &image.config.hex()[..12]))
        .assert_status(200);

    // Filters.
    let only = |filters: &str| {
        let r = d.get(&format!("/images/json?filters={}", encode(filters)));
        r.assert_status(200);
        r.json().as_array().map_or(0, Vec::len)
    };
    assert_eq!(only(r#"{"reference":["berth-test/*"]}"#), 1);
    assert_eq!(only(r#"{"reference":["other"]}"#), 0);
    assert_eq!(only(r#"{"label":["berth.test=yes"]}"#), 1);
    assert_eq!(only(r#"{"dangling":["true"]}"#), 0);
    d.get(&format!(
        "/images/json?filters={}",
        encode(r#"{"bogus":["x"]}"#)
    ))
    .assert_status(400);

    // Tag: 201, then both names list.
    d.post(
        "/images/berth-test/busybox:v1/tag?repo=example.com/team/app&tag=2",
        b"",
    )
    .assert_status(201);
    let list = d.get("/images/json").json();
    assert_eq!(
        list[0]["RepoTags"],
        serde_json::json!(["berth-test/busybox:v1", "example.com/team/app:2"])
    );
    d.post("/images/berth-test/busybox:v1/tag?repo=Bad", b"")
        .assert_status(400);
    let r = d.post("/images/nope/tag?repo=x", b"");
    r.assert_status(404);
    assert_eq!(r.json()["message"], "No such image: nope");

    // rmi of one of two tags only untags.
    let r = d.delete("/images/berth-test/busybox:v1");
    r.assert_status(200);
    assert_eq!(
        r.json(),
        serde_json::json!([{"Untagged": "berth-test/busybox:v1"}])
    );
    d.get(&format!("/images/{id}/json")).assert_status(200);
    assert!(!d.entries("content").is_empty());

    // The last tag: untag and delete, then gc clears blobs and layers.
    let r = d.delete("/images/example.com/team/app:2");
    r.assert_status(200);
    let items = r.json();
    assert_eq!(
        items[0],
        serde_json::json!({"Untagged": "example.com/team/app:2"})
    );
    assert_eq!(items[1], serde_json::json!({"Deleted": id}));
    let r = d.get("/images/example.com/team/app:2/json");
    r.assert_status(404);
    assert_eq!(r.json()["message"], "No such image: example.com/team/app:2");
    d.delete("/images/example.com/team/app:2")
        .assert_status(404);
    assert_eq!(d.get("/images/json").json(), serde_json::json!([]));
    assert_eq!(d.entries("content"), Vec::<String>::new(), "blobs left");
    assert_eq!(d.entries("layers"), Vec::<String>::new(), "layers left");

    // A bad archive is a 400 and stores nothing.
    d.post("/images/load", b"not a tar at all")
        .assert_status(400);
    assert_eq!(d.get("/images/json").json(), serde_json::json!([]));

    // Import a rootfs tar from the body.
    let rootfs = std::fs::read(image.dir.path().join("layer.tar")).expect("layer");
    let r = d.post(
        &format!(
            "/images/create?fromSrc=-&repo=imported&tag=t1&changes={}",
            encode(r#"CMD ["/bin/sh"]"#)
        ),
        &rootfs,
    );
    r.assert_status(200);
    let imported = r.lines()[0]["status"].as_str().unwrap_or("").to_owned();
    assert!(imported.starts_with("sha256:"), "{}", r.text());
    let inspect = d.get("/images/imported:t1/json").json();
    assert_eq!(inspect["Id"], imported);
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    d.delete("/images/imported:t1").assert_status(200);

    assert_eq!(d.mounts_below(), Vec::<String>::new());
}

#[test]
fn pull_push_save_and_load_with_a_registry() {
    let registry = Registry::start();
    let image = TestImage::build();
    let manifest = image.push(&registry, "test/busybox");
    let d = Daemon::start();
    let host = registry.host();

    // Invalid references are refused before streaming.
    let r = d.post("/images/create?fromImage=Bad/Name&tag=latest", b"");
    r.assert_status(400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("invalid reference format"));

    // Pull, with Docker's progress lines.
    let r = d.post(
        &format!("/images/create?fromImage={host}/test/busybox&tag=v1"),
        b"",
    );
    r.assert_status(200);
    let lines = r.lines();
    assert_eq!(errors(&lines), Vec::<String>::new());
    let st = statuses(&lines);
    assert_eq!(st[0], "Pulling from test/busybox");
    assert_eq!(lines[0]["id"], "v1");
    for wanted in ["Pulling fs layer", "Download complete", "Pull complete"] {
        assert!(st.iter().any(|s| s == wanted), "{wanted} in {st:?}");
    }
    assert!(st.contains(&format!("Digest: {}", manifest)), "{st:?}");
    assert_eq!(
        st.last().map(String::as_str),
        Some(format!("Status: Downloaded newer image for {host}/test/busybox:v1").as_str())
    );
    let inspect = d
        .get(&format!("/images/{host}/test/busybox:v1/json"))
        .json();
    assert_eq!(inspect["Id"], image.config.to_string());
    assert_eq!(
        inspect["RepoDigests"],
        serde_json::json!([format!("{host}/test/busybox@{}", manifest)])
    );

    // Again: nothing to fetch.
    let lines = d
        .post(
            &format!("/images/create?fromImage={host}/test/busybox:v1"),
            b"",
        )
        .lines();
    let st = statuses(&lines);
    assert!(st.iter().any(|s| s == "Already exists"), "{st:?}");
    assert_eq!(
        st.last().map(String::as_str),
        Some(format!("Status: Image is up to date for {host}/test/busybox:v1").as_str())
    );

    // A missing tag fails inside the 200 stream.
    let r = d.post(
        &format!("/images/create?fromImage={host}/test/busybox&tag=nope"),
        b"",
    );
    r.assert_status(200);
    let errs = errors(&r.lines());
    assert_eq!(errs.len(), 1, "{}", r.text());
    assert!(errs[0].contains("not found"), "{errs:?}");

    // Push under another name; the registry then serves the same manifest.
    d.post(
        &format!("/images/{host}/test/busybox:v1/tag?repo={host}/test/pushed&tag=v2"),
        b"",
    )
    .assert_status(201);
    let r = d.request(
        "POST",
        &format!("/images/{host}/test/pushed/push?tag=v2"),
        b"",
        // What the Go client sends for anonymous access: base64url of `{}`.
        &[("X-Registry-Auth", "e30=")],
    );
    r.assert_status(200);
    let lines = r.lines();
    assert_eq!(errors(&lines), Vec::<String>::new(), "{}", r.text());
    let st = statuses(&lines);
    assert_eq!(
        st[0],
        format!("The push refers to repository [{host}/test/pushed]")
    );
    assert!(
        st.iter()
            .any(|s| s.starts_with(&format!("v2: digest: {}", manifest))),
        "{st:?}"
    );
    let aux = lines.iter().find_map(|l| l.get("aux")).expect("aux line");
    assert_eq!(aux["Digest"], manifest.to_string());
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{host}/test/pushed:v2"),
    ]));
    let remote: serde_json::Value = serde_json::from_str(&out).expect("skopeo json");
    assert_eq!(remote["Digest"], manifest.to_string());
    d.post(&format!("/images/{host}/test/nothing/push?tag=v1"), b"")
        .assert_status(404);

    // Save both names (one image) into one archive, remove everything, load it back.
    let r = d.get(&format!(
        "/images/get?names={}&names={}",
        encode(&format!("{host}/test/busybox:v1")),
        encode(&format!("{host}/test/pushed:v2"))
    ));
    r.assert_status(200);
    assert_eq!(r.header("content-type"), Some("application/x-tar"));
    let saved = r.body;
    assert!(saved.len() > 100_000);
    d.delete(&format!("/images/{}?force=1", image.config))
        .assert_status(200);
    assert_eq!(d.get("/images/json").json(), serde_json::json!([]));
    assert_eq!(d.entries("content"), Vec::<String>::new(), "blobs left");
    d.get("/images/get?names=nope").assert_status(404);

    let r = d.post("/images/load", &saved);
    r.assert_status(200);
    let loaded: Vec<String> = r
        .lines()
        .iter()
        .filter_map(|l| l["stream"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        loaded,
        vec![
            format!("Loaded image: {host}/test/busybox:v1\n"),
            format!("Loaded image: {host}/test/pushed:v2\n"),
        ]
    );
    // The manifest survives the round trip byte for byte.
    let inspect = d.get(&format!("/images/{host}/test/pushed:v2/json")).json();
    assert_eq!(inspect["Id"], image.config.to_string());
    assert_eq!(
        inspect["RepoDigests"],
        serde_json::json!([
            format!("{host}/test/busybox@{}", manifest),
            format!("{host}/test/pushed@{}", manifest)
        ])
    );
    // The single-image form.
    let r = d.get(&format!("/images/{host}/test/pushed:v2/get"));
    r.assert_status(200);
    assert!(r.body.len() > 100_000);

    assert_eq!(d.mounts_below(), Vec::<String>::new());
}

#[test]
fn docker_cli_pull_images_inspect_push_save_load_rmi() {
    if Command::new("docker")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        eprintln!("skipping: no docker CLI");
        return;
    }
    let registry = Registry::start();
    let image = TestImage::build();
    let manifest = image.push(&registry, "cli/busybox");
    let d = Daemon::start();
    let name = format!("{}/cli/busybox:v1", registry.host());

    let out = d.docker_ok(&["pull", &name]);
    assert!(out.contains(&format!("Digest: {}", manifest)), "{out}");
    assert!(out.contains("Status: Downloaded newer image"), "{out}");

    let out = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert_eq!(
        out.trim(),
        format!("{name} {}", &image.config.hex()[..12]),
        "{out}"
    );
    let out = d.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Config.Cmd}}",
        &name,
    ]);
    assert_eq!(out.trim(), format!("{} [/bin/sh]", image.config));
    let out = d.docker_ok(&["inspect", "--type", "image", "--format", "{{.Os}}", &name]);
    assert_eq!(out.trim(), "linux");

    let pushed = format!("{}/cli/pushed:v9", registry.host());
    d.docker_ok(&["tag", &name, &pushed]);
    let out = d.docker_ok(&["push", &pushed]);
    assert!(out.contains(&format!("v9: digest: {}", manifest)), "{out}");

    let archive = tempfile::tempdir().expect("tempdir");
    let tar = archive.path().join("saved.tar");
    let tar_arg = tar.display().to_string();
    d.docker_ok(&["save", "-o", &tar_arg, &pushed]);

    let out = d.docker_ok(&["rmi", &name, &pushed]);
    assert!(out.contains(&format!("Untagged: {name}")), "{out}");
    assert!(out.contains(&format!("Deleted: {}", image.config)), "{out}");
    let out = d.docker(&["image", "inspect", &name]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such image"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = d.docker_ok(&["load", "-i", &tar_arg]);
    assert!(out.contains(&format!("Loaded image: {pushed}")), "{out}");
    let out = d.docker_ok(&["images", "-q"]);
    assert_eq!(out.trim(), &image.config.hex()[..12]);
    d.docker_ok(&["rmi", &pushed]);

    let out = d.docker(&["pull", &format!("{}/cli/missing:v1", registry.host())]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(d.mounts_below(), Vec::<String>::new());
}

//! The rest of daily use, end to end against a real berthd: `top`, `stats`, `pause` and
//! `unpause`, `rename`, `diff`, the prunes and `system df`, through the real docker CLI
//! (Docker's own reading of our replies) and through `berth`.

mod support;

use std::time::{Duration, Instant};

use support::cli::{berth, berth_ok, err, ok, ok_stdin};
use support::engine::Engine;

/// Polls `f` until it is true, for up to 10 s.
#[track_caller]
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn full_id(engine: &Engine, name: &str) -> String {
    ok(engine, &["inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_owned()
}

/// The counter file a container writes, read from its writable layer on the host (a
/// paused container cannot be exec'd into).
fn counter(engine: &Engine, id: &str) -> u64 {
    let path = engine
        .data_root()
        .join("snapshots")
        .join(id)
        .join("upper/tmp/n");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done";

#[test]
fn top_and_stats_read_the_containers_cgroup() {
    let engine = Engine::start();
    ok(
        &engine,
        &[
            "run", "-d", "--name", "web", "busybox", "httpd", "-f", "-p", "80", "-h", "/www",
        ],
    );
    let top = ok(&engine, &["top", "web"]);
    let header = top.lines().next().unwrap_or_default();
    for col in ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"] {
        assert!(header.contains(col), "{top}");
    }
    assert!(
        top.lines()
            .any(|l| l.starts_with("root") && l.contains("httpd -f -p 80")),
        "{top}"
    );
    // ps_args go to the host's ps, filtered to the container's processes.
    let top = ok(&engine, &["top", "web", "-o", "pid,args"]);
    assert!(top.starts_with("PID"), "{top}");
    assert_eq!(
        top.lines().count(),
        2,
        "only the container's one process: {top}"
    );

    let stats = ok(&engine, &["stats", "--no-stream"]);
    assert!(stats.starts_with("CONTAINER ID"), "{stats}");
    let line = stats
        .lines()
        .find(|l| l.contains("web"))
        .unwrap_or_else(|| panic!("no line for web: {stats}"));
    assert!(line.contains("iB / "), "a memory figure: {line}");
    let named = ok(
        &engine,
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.MemUsage}} {{.PIDs}}",
            "web",
        ],
    );
    assert!(
        named.starts_with("web ") && named.trim().ends_with(" 1"),
        "{named}"
    );

    let r = engine.request("GET", "/containers/web/stats?stream=false", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let s = r.json();
    assert_eq!(s["name"], "/web");
    assert!(s["memory_stats"]["usage"].as_u64().unwrap_or(0) > 0, "{s}");
    assert!(s["memory_stats"]["limit"].as_u64().unwrap_or(0) > 0, "{s}");
    assert!(
        s["cpu_stats"]["online_cpus"].as_u64().unwrap_or(0) > 0,
        "{s}"
    );
    assert!(
        s["cpu_stats"]["system_cpu_usage"].as_u64().unwrap_or(0) > 0,
        "{s}"
    );
    assert!(
        s["precpu_stats"]["system_cpu_usage"].as_u64().unwrap_or(0) > 0,
        "{s}"
    );
    assert_eq!(s["pids_stats"]["current"], 1, "{s}");
    assert!(s["networks"]["eth0"]["rx_bytes"].is_u64(), "{s}");
    assert!(s["preread"] != "0001-01-01T00:00:00Z", "{s}");

    ok(&engine, &["stop", "-t", "1", "web"]);
    let r = engine.request("GET", "/containers/web/top", None);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("is not running"), "{}", r.text());
    // A stopped container's stats: zeroed, not an error.
    let r = engine.request("GET", "/containers/web/stats?stream=0", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["read"], "0001-01-01T00:00:00Z");
}

#[test]
fn pause_freezes_the_container_and_stop_still_works() {
    let engine = Engine::start();
    ok(
        &engine,
        &[
            "run", "-d", "--name", "counter", "busybox", "sh", "-c", COUNTER,
        ],
    );
    let id = full_id(&engine, "counter");
    eventually("the counter to run", || counter(&engine, &id) > 2);

    assert_eq!(ok(&engine, &["pause", "counter"]).trim(), "counter");
    let ps = ok(&engine, &["ps"]);
    assert!(ps.contains("(Paused)"), "{ps}");
    assert_eq!(
        ok(
            &engine,
            &[
                "inspect",
                "-f",
                "{{.State.Status}} {{.State.Paused}}",
                "counter"
            ]
        )
        .trim(),
        "paused true"
    );
    let frozen_at = counter(&engine, &id);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        counter(&engine, &id),
        frozen_at,
        "the counter moved while paused"
    );
    let o = engine.docker(&["pause", "counter"]);
    assert!(
        !o.status.success() && err(&o).contains("already paused"),
        "{}",
        err(&o)
    );

    assert_eq!(ok(&engine, &["unpause", "counter"]).trim(), "counter");
    eventually("the counter to move again", || {
        counter(&engine, &id) > frozen_at
    });
    assert!(!ok(&engine, &["ps"]).contains("Paused"));
    let o = engine.docker(&["unpause", "counter"]);
    assert!(
        !o.status.success() && err(&o).contains("is not paused"),
        "{}",
        err(&o)
    );

    // Stop of a paused container: Docker thaws it so the signal is acted on.
    ok(&engine, &["pause", "counter"]);
    let started = Instant::now();
    ok(&engine, &["stop", "-t", "2", "counter"]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stop hung on a frozen container"
    );
    let status = ok(&engine, &["inspect", "-f", "{{.State.Status}}", "counter"]);
    assert_eq!(status.trim(), "exited");
    let o = engine.docker(&["pause", "counter"]);
    assert!(
        !o.status.success() && err(&o).contains("is not running"),
        "{}",
        err(&o)
    );

    // Kill and rm -f of a paused container.
    ok(&engine, &["start", "counter"]);
    ok(&engine, &["pause", "counter"]);
    ok(&engine, &["kill", "counter"]);
    eventually("the killed container to exit", || {
        ok(&engine, &["inspect", "-f", "{{.State.Status}}", "counter"]).trim() == "exited"
    });
    ok(&engine, &["start", "counter"]);
    ok(&engine, &["pause", "counter"]);
    ok(&engine, &["rm", "-f", "counter"]);
    assert_eq!(ok(&engine, &["ps", "-aq"]), "");
}

#[test]
fn rename_follows_dockers_rules() {
    let engine = Engine::start();
    ok(&engine, &["create", "--name", "first", "busybox"]);
    ok(&engine, &["create", "--name", "other", "busybox"]);
    ok(&engine, &["rename", "first", "second"]);
    assert_eq!(
        ok(&engine, &["inspect", "-f", "{{.Name}}", "second"]).trim(),
        "/second"
    );
    assert!(!engine.docker(&["inspect", "first"]).status.success());
    let o = engine.docker(&["rename", "second", "other"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("is already in use"), "{}", err(&o));
    let r = engine.request("POST", "/containers/second/rename?name=other", None);
    assert_eq!(r.status, 409, "{}", r.text());
    let r = engine.request("POST", "/containers/second/rename?name=a%2Fb", None);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("Invalid container name"), "{}", r.text());
    let r = engine.request("POST", "/containers/second/rename?name=second", None);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = engine.request("POST", "/containers/nope/rename?name=x1", None);
    assert_eq!(r.status, 404, "{}", r.text());
    // The new name survives a daemon restart (it is in the database, not only memory).
    let mut engine = engine;
    engine.stop_daemon();
    engine.start_daemon();
    assert_eq!(
        ok(&engine, &["inspect", "-f", "{{.Name}}", "second"]).trim(),
        "/second"
    );
}

#[test]
fn diff_lists_what_the_container_changed() {
    let engine = Engine::start();
    ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "changer",
            "busybox",
            "sh",
            "-c",
            "touch /newfile; rm /www/index.html; echo x > /tmp/t; sleep 1000",
        ],
    );
    let mut diff = String::new();
    eventually("the changes", || {
        diff = ok(&engine, &["diff", "changer"]);
        diff.contains("/tmp/t")
    });
    let lines: Vec<&str> = diff.lines().collect();
    for want in [
        "A /newfile",
        "D /www/index.html",
        "C /www",
        "C /tmp",
        "A /tmp/t",
    ] {
        assert!(lines.contains(&want), "{want:?} missing from:\n{diff}");
    }
    // The engine's own mount points are not the user's changes.
    for hidden in ["/etc/hosts", "/proc", "/dev", "/sys"] {
        assert!(!diff.contains(hidden), "{hidden} in:\n{diff}");
    }
    // It reads the layer, so it works stopped too, and through berth.
    ok(&engine, &["kill", "changer"]);
    let berth_diff = berth_ok(&engine, &["diff", "changer"]);
    assert_eq!(berth_diff, diff);
}

/// A one-file rootfs tar (distinct content makes a distinct image).
fn tiny_rootfs(text: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(text.len() as u64);
    tar.append_data(&mut h, "hello.txt", text.as_bytes())
        .expect("file");
    tar.into_inner().expect("tar")
}

#[test]
fn prunes_and_disk_usage() {
    let engine = Engine::start();
    ok(&engine, &["run", "--name", "done", "busybox", "true"]);
    ok(
        &engine,
        &["run", "-d", "--name", "live", "busybox", "sleep", "1000"],
    );
    let done_id = full_id(&engine, "done");

    let df = ok(&engine, &["system", "df"]);
    assert!(df.starts_with("TYPE"), "{df}");
    let containers = df
        .lines()
        .find(|l| l.starts_with("Containers"))
        .unwrap_or_else(|| panic!("{df}"));
    let cols: Vec<&str> = containers.split_whitespace().collect();
    assert_eq!(&cols[1..3], ["2", "1"], "{df}");
    let images = df
        .lines()
        .find(|l| l.starts_with("Images"))
        .unwrap_or_default();
    assert!(images.split_whitespace().nth(1) == Some("1"), "{df}");
    let r = engine.request("GET", "/system/df", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let du = r.json();
    assert!(du["LayersSize"].as_i64().unwrap_or(0) > 0, "{du}");
    assert_eq!(du["Images"][0]["Containers"], 2, "{du}");
    assert!(
        du["BuildCache"].as_array().is_some_and(Vec::is_empty),
        "{du}"
    );

    let pruned = ok(&engine, &["container", "prune", "-f"]);
    assert!(pruned.contains("Deleted Containers:"), "{pruned}");
    assert!(pruned.contains(&done_id), "{pruned}");
    assert!(pruned.contains("Total reclaimed space:"), "{pruned}");
    let all = ok(&engine, &["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(all.trim(), "live", "the running one stays");

    // Two imports to one tag: the first becomes dangling.
    ok_stdin(&engine, &["import", "-", "junk:1"], &tiny_rootfs("one"));
    ok_stdin(&engine, &["import", "-", "junk:1"], &tiny_rootfs("two"));
    let images = ok(&engine, &["images", "-a"]);
    assert!(images.contains("<none>"), "{images}");
    let pruned = ok(&engine, &["image", "prune", "-f"]);
    assert!(pruned.contains("Deleted Images:"), "{pruned}");
    assert!(pruned.contains("deleted: sha256:"), "{pruned}");
    assert!(
        !pruned.contains("untagged:"),
        "only the dangling one: {pruned}"
    );
    let images = ok(&engine, &["images", "-a"]);
    assert!(
        !images.contains("<none>") && images.contains("junk"),
        "{images}"
    );
    // Nothing dangling left: an empty report.
    let r = engine.request("POST", "/images/prune", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["ImagesDeleted"], serde_json::Value::Null);

    // -a: every image no container uses; busybox is used by `live`.
    let pruned = ok(&engine, &["image", "prune", "-a", "-f"]);
    assert!(pruned.contains("untagged: junk:1"), "{pruned}");
    let images = ok(&engine, &["images", "--format", "{{.Repository}}"]);
    assert_eq!(images.trim(), "busybox", "{images}");

    // system prune with the docker CLI (it also asks for networks and the build cache).
    ok(&engine, &["stop", "-t", "1", "live"]);
    let pruned = ok(&engine, &["system", "prune", "-f"]);
    assert!(pruned.contains("Total reclaimed space:"), "{pruned}");
    assert_eq!(ok(&engine, &["ps", "-aq"]), "");
    let r = engine.request(
        "POST",
        "/images/prune?filters=%7B%22dangling%22%3A%5B%22maybe%22%5D%7D",
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn berth_cli_daily_verbs() {
    let engine = Engine::start();
    berth_ok(
        &engine,
        &["run", "-d", "--name", "b1", "busybox", "sh", "-c", COUNTER],
    );
    let top = berth_ok(&engine, &["top", "b1"]);
    assert!(top.starts_with("UID "), "{top}");
    assert!(top.contains("sh -c"), "{top}");
    let stats = berth_ok(&engine, &["stats", "--no-stream", "b1"]);
    assert!(stats.starts_with("CONTAINER ID"), "{stats}");
    assert!(
        stats
            .lines()
            .any(|l| l.contains(" b1 ") && l.contains("iB / ")),
        "{stats}"
    );
    assert_eq!(berth_ok(&engine, &["pause", "b1"]).trim(), "b1");
    assert!(berth_ok(&engine, &["ps"]).contains("(Paused)"));
    assert_eq!(berth_ok(&engine, &["unpause", "b1"]).trim(), "b1");
    berth_ok(&engine, &["rename", "b1", "b2"]);
    assert!(berth_ok(&engine, &["ps"]).contains("b2"));
    let o = berth(&engine, &["rename", "b2", "bad/name"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("Invalid container name"), "{}", err(&o));
    let diff = berth_ok(&engine, &["diff", "b2"]);
    assert!(diff.lines().any(|l| l == "A /tmp/n"), "{diff}");
    berth_ok(&engine, &["rm", "-f", "b2"]);
    berth_ok(&engine, &["run", "--name", "gone", "busybox", "true"]);
    let pruned = berth_ok(&engine, &["container", "prune", "-f"]);
    assert!(pruned.contains("Deleted Containers:"), "{pruned}");
    let pruned = berth_ok(&engine, &["image", "prune", "-f"]);
    assert!(pruned.contains("Total reclaimed space: 0B"), "{pruned}");
    let df = berth_ok(&engine, &["system", "df"]);
    assert!(df.starts_with("TYPE"), "{df}");
    assert!(df.contains("Build Cache"), "{df}");
    let pruned = berth_ok(&engine, &["system", "prune", "-f", "-a"]);
    assert!(pruned.contains("untagged: busybox:latest"), "{pruned}");
}

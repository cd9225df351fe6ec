//! `update` (JSON on stdin or single-limit flags) on a running container, and `events`
//! (runc's stats JSON), read back from the container's own cgroup files.

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;
use support::*;

fn v1_memory_limit(cg: &str) -> Option<u64> {
    let p = format!("/sys/fs/cgroup/memory{cg}/memory.limit_in_bytes");
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn v2_pids_max(cg: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/fs/cgroup{cg}/pids.max"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn pids_max(cg: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup/pids{cg}/pids.max"))
        .map(|s| s.trim().to_string())
        .or_else(|_| v2_pids_max(cg).ok_or(()))
        .expect("pids.max in the v1 pids hierarchy or the v2 tree")
}

#[test]
fn update_with_flags_and_stdin_json() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::busybox(&["sleep", "60"]);
    let cg = b.cgroups_path().unwrap();
    let _g = rt.guard("u1", &b);
    assert_success(&rt.create("u1", &b), "create");
    assert_success(&rt.start("u1"), "start");

    assert_success(
        &rt.run(&["update", "--pids-limit", "50", "u1"]),
        "update --pids-limit",
    );
    assert_eq!(pids_max(&cg), "50");

    let mut child = rt
        .cmd()
        .args(["update", "--resources", "-", "u1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"pids": {"limit": 77}, "memory": {"limit": 268435456}}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out, "update --resources -");
    assert_eq!(pids_max(&cg), "77");
    if let Some(limit) = v1_memory_limit(&cg) {
        assert_eq!(limit, 268435456);
        assert_success(
            &rt.run(&["update", "--memory", "128m", "u1"]),
            "update --memory 128m",
        );
        assert_eq!(v1_memory_limit(&cg), Some(128 << 20));
    } else {
        eprintln!("memory check skipped: no v1 memory hierarchy on this host");
    }
}

#[test]
fn bad_updates_keep_the_old_limits() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::busybox(&["sleep", "60"]);
    let cg = b.cgroups_path().unwrap();
    let _g = rt.guard("u2", &b);
    assert_success(&rt.create("u2", &b), "create");
    assert_success(&rt.start("u2"), "start");
    assert_success(&rt.run(&["update", "--pids-limit", "40", "u2"]), "update");

    let file = TempDir::new();
    for (name, body, needle) in [
        ("malformed.json", "{\"pids\": ", "invalid JSON"),
        (
            "wrongtype.json",
            "{\"pids\": {\"limit\": \"many\"}}",
            "pids.limit",
        ),
        (
            "impossible.json",
            "{\"pids\": {\"limit\": 10}, \"cpu\": {\"cpus\": \"0-4095\"}}",
            "cpus",
        ),
    ] {
        let path = file.path().join(name);
        std::fs::write(&path, body).unwrap();
        let out = rt.run(&["update", "--resources", path.to_str().unwrap(), "u2"]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(
            stderr_text(&out).contains(needle),
            "{name}: {}",
            stderr_text(&out)
        );
        assert_eq!(pids_max(&cg), "40", "{name} must not change the limits");
    }
    let out = rt.run(&["update", "--memory", "lots", "u2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("--memory lots"));
    assert_eq!(rt.state("u2")["status"], "running");
}

#[test]
fn events_stats_have_runcs_shape() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::busybox(&["sh", "-c", "sleep 60 & sleep 60"]);
    b.config_mut()["linux"]["resources"] = serde_json::json!({"pids": {"limit": 64}});
    b.write_config();
    let _g = rt.guard("e1", &b);
    assert_success(&rt.create("e1", &b), "create");
    assert_success(&rt.start("e1"), "start");
    std::thread::sleep(Duration::from_millis(100));
    let out = rt.run(&["events", "--stats", "e1"]);
    assert_success(&out, "events --stats");
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], "e1");
    let data = &ev["data"];
    assert!(data["pids"]["current"].as_u64().unwrap() >= 2, "{data}");
    assert_eq!(data["pids"]["limit"], 64);
    assert!(data["cpu"]["usage"]["total"].as_u64().is_some(), "{data}");
    assert!(
        data["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{data}"
    );

    // Without --stats: one event per interval until the container stops.
    let child = rt
        .cmd()
        .args(["events", "--interval", "100ms", "e1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(350));
    assert_success(&rt.kill("e1", "KILL"), "kill");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(
        (2..=6).contains(&lines),
        "{lines} events in 350 ms at 100 ms"
    );

    let bad = rt.run(&["events", "--interval", "soon", "e1"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr_text(&bad).contains("--interval"));
}

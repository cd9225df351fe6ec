//! OCI hooks: every kind, in the spec's order, with the state on stdin, env and args as
//! given, `timeout` enforced, and failures handled as the runtime spec says.

mod support;

use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::time::Duration;
use support::*;

/// A hook that appends its name (and $TAG from its env) to `log` and saves its stdin.
fn hook(name: &str, dir: &Path) -> Value {
    let d = dir.display();
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("echo {name}$TAG >> {d}/order; cat > {d}/{name}.json")],
        "env": ["TAG=-env"]
    })
}

/// A bundle whose host dir `dir` is bound at the same path inside the container, so hooks on
/// either side of the pivot write to one place.
fn hooked_bundle(dir: &Path, args: &[&str], hooks: Value) -> Bundle {
    let mut b = Bundle::busybox(args);
    let c = b.config_mut();
    c["hooks"] = hooks;
    c["mounts"].as_array_mut().unwrap().push(json!({
        "destination": dir, "type": "bind", "source": dir, "options": ["rbind", "rw"]
    }));
    b.write_config();
    b
}

fn order(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("order"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_hook_runs_in_order_with_the_state() {
    require_root!();
    let rt = Runtime::new();
    let dir = TempDir::new();
    let d = dir.path();
    let hooks = json!({
        "prestart": [hook("prestart", d)],
        "createRuntime": [hook("createRuntime", d)],
        "createContainer": [hook("createContainer", d)],
        "startContainer": [hook("startContainer", d)],
        "poststart": [hook("poststart", d)],
        "poststop": [hook("poststop", d)]
    });
    let b = hooked_bundle(d, &["sleep", "30"], hooks);
    let _g = rt.guard("h1", &b);
    assert_success(&rt.create("h1", &b), "create");
    assert_eq!(
        order(d),
        ["prestart-env", "createRuntime-env", "createContainer-env"]
    );
    let pid = rt.state("h1")["pid"].as_i64().unwrap();
    let st: Value =
        serde_json::from_slice(&fs::read(d.join("createRuntime.json")).unwrap()).unwrap();
    assert_eq!(st["id"], "h1");
    assert_eq!(st["status"], "creating");
    assert_eq!(st["pid"].as_i64().unwrap(), pid);
    assert_eq!(st["bundle"], b.path().to_str().unwrap());

    assert_success(&rt.start("h1"), "start");
    assert_eq!(
        order(d),
        [
            "prestart-env",
            "createRuntime-env",
            "createContainer-env",
            "startContainer-env",
            "poststart-env"
        ]
    );
    let st: Value = serde_json::from_slice(&fs::read(d.join("poststart.json")).unwrap()).unwrap();
    assert_eq!(st["status"], "running");

    assert_success(&rt.delete_force("h1"), "delete");
    assert_eq!(order(d).last().unwrap(), "poststop-env");
    let st: Value = serde_json::from_slice(&fs::read(d.join("poststop.json")).unwrap()).unwrap();
    assert_eq!(st["status"], "stopped");
    assert_eq!(st["id"], "h1");
}

fn assert_nothing_left(rt: &Runtime, id: &str, b: &Bundle) {
    assert!(!rt.state_dir(id).exists(), "state dir left");
    let cg = b.cgroups_path().unwrap();
    assert!(
        host_cgroup_dirs(&cg).is_empty(),
        "cgroup left: {:?}",
        host_cgroup_dirs(&cg)
    );
    assert!(pids_in_cgroup(&cg).is_empty());
}

#[test]
fn a_failing_create_hook_fails_create_and_leaves_nothing() {
    require_root!();
    let rt = Runtime::new();
    let dir = TempDir::new();
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let hooks = json!({ kind: [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}] });
        let b = hooked_bundle(dir.path(), &["true"], hooks);
        let id = format!("f-{kind}");
        let _g = rt.guard(&id, &b);
        let out = rt.create(&id, &b);
        assert_eq!(out.status.code(), Some(1), "{kind}");
        let err = stderr_text(&out);
        assert!(
            err.contains("hook /bin/sh") && err.contains("exit status: 3"),
            "{kind}: {err}"
        );
        assert_nothing_left(&rt, &id, &b);
    }
}

#[test]
fn a_hook_past_its_timeout_is_killed_and_fails_create() {
    require_root!();
    let rt = Runtime::new();
    let dir = TempDir::new();
    let hooks =
        json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "20"], "timeout": 1}]});
    let b = hooked_bundle(dir.path(), &["true"], hooks);
    let _g = rt.guard("t1", &b);
    let started = std::time::Instant::now();
    let out = rt.create("t1", &b);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_text(&out).contains("timed out after 1s"),
        "{}",
        stderr_text(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the hook was not killed"
    );
    assert_nothing_left(&rt, "t1", &b);
}

#[test]
fn a_failing_start_container_hook_fails_start() {
    require_root!();
    let rt = Runtime::new();
    let dir = TempDir::new();
    let hooks = json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 4"]}]});
    let b = hooked_bundle(dir.path(), &["sleep", "30"], hooks);
    let _g = rt.guard("s1", &b);
    assert_success(&rt.create("s1", &b), "create");
    let out = rt.start("s1");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_text(&out).contains("exit status: 4"),
        "{}",
        stderr_text(&out)
    );
    rt.wait_for_status("s1", "stopped", Duration::from_secs(5));
}

#[test]
fn poststart_and_poststop_failures_are_warnings() {
    require_root!();
    let rt = Runtime::new();
    let dir = TempDir::new();
    let d = dir.path();
    let fail = json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 5"]});
    let hooks = json!({
        "poststart": [fail.clone(), hook("poststart", d)],
        "poststop": [fail, hook("poststop", d)]
    });
    let b = hooked_bundle(d, &["sleep", "30"], hooks);
    let _g = rt.guard("w1", &b);
    assert_success(&rt.create("w1", &b), "create");
    let out = rt.start("w1");
    assert_success(&out, "start with a failing poststart");
    assert!(
        stderr_text(&out).contains("warning"),
        "{}",
        stderr_text(&out)
    );
    assert_eq!(rt.state("w1")["status"], "running");
    assert_success(&rt.delete_force("w1"), "delete with a failing poststop");
    assert_eq!(
        order(d),
        ["poststart-env", "poststop-env"],
        "the remaining hooks still run"
    );
}

//! Bad input: each case gets exit status 1, one line on stderr naming the field and the
//! cause, and leaves nothing behind (no state directory, cgroup or process).

mod support;

use serde_json::{json, Value};
use std::fs;
use support::*;

/// (container id, how to break the config, what the error must mention)
type Case = (&'static str, Box<dyn Fn(&mut Value)>, &'static str);

/// Runs `create` on `b` and checks the failure contract; returns the error line.
fn refused(rt: &Runtime, id: &str, b: &Bundle) -> String {
    let out = rt.create(id, b);
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(1), "create {id} should fail: {err}");
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 1, "one line, got: {err}");
    assert!(!rt.state_dir(id).exists(), "{id}: state dir left");
    if let Some(cg) = b.cgroups_path() {
        assert!(
            host_cgroup_dirs(&cg).is_empty(),
            "{id}: cgroup left: {:?}",
            host_cgroup_dirs(&cg)
        );
    }
    lines[0].to_string()
}

fn with_config(patch: impl FnOnce(&mut Value)) -> Bundle {
    let mut b = Bundle::busybox(&["true"]);
    patch(b.config_mut());
    b.write_config();
    b
}

#[test]
fn malformed_json_names_the_file() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::busybox(&["true"]);
    fs::write(b.config_path(), "{\"ociVersion\": \"1.0.2\", \"process\": ").unwrap();
    let _g = rt.guard("j1", &b);
    let e = refused(&rt, "j1", &b);
    assert!(
        e.contains("config.json") && e.contains("invalid JSON"),
        "{e}"
    );
}

#[test]
fn missing_bundle_and_config() {
    require_root!();
    let rt = Runtime::new();
    let out = rt.run(&["create", "--bundle", "/nonexistent/berth-bundle", "m1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_text(&out).contains("/nonexistent/berth-bundle"),
        "{}",
        stderr_text(&out)
    );
    assert!(!rt.state_dir("m1").exists());

    let b = Bundle::busybox(&["true"]);
    fs::remove_file(b.config_path()).unwrap();
    let _g = rt.guard("m2", &b);
    let e = refused(&rt, "m2", &b);
    assert!(
        e.contains("config.json") && e.contains("No such file"),
        "{e}"
    );
}

#[test]
fn missing_or_wrong_rootfs() {
    require_root!();
    let rt = Runtime::new();
    let b = with_config(|c| c["root"]["path"] = "no-such-rootfs".into());
    let _g = rt.guard("r1", &b);
    let e = refused(&rt, "r1", &b);
    assert!(
        e.contains("root.path") && e.contains("no-such-rootfs"),
        "{e}"
    );

    let b = with_config(|c| c["root"]["path"] = "config.json".into());
    let _g2 = rt.guard("r2", &b);
    let e = refused(&rt, "r2", &b);
    assert!(
        e.contains("root.path") && e.contains("not a directory"),
        "{e}"
    );
}

#[test]
fn unknown_namespace_and_rlimit_names_are_named() {
    require_root!();
    let rt = Runtime::new();
    let b = with_config(|c| c["linux"]["namespaces"][2]["type"] = "bogus".into());
    let _g = rt.guard("n1", &b);
    let e = refused(&rt, "n1", &b);
    assert!(
        e.contains("linux.namespaces[2].type") && e.contains("bogus"),
        "{e}"
    );

    let b = with_config(|c| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}])
    });
    let _g2 = rt.guard("n2", &b);
    let e = refused(&rt, "n2", &b);
    assert!(
        e.contains("process.rlimits[0].type") && e.contains("RLIMIT_BOGUS"),
        "{e}"
    );
}

#[test]
fn unsupported_version_and_bad_fields() {
    require_root!();
    let rt = Runtime::new();
    let cases: Vec<Case> = vec![
        (
            "v1",
            Box::new(|c| c["ociVersion"] = "2.0.0".into()),
            "ociVersion",
        ),
        (
            "v2",
            Box::new(|c| c["process"]["args"] = json!([])),
            "process.args",
        ),
        (
            "v3",
            Box::new(|c| c["process"]["cwd"] = "relative".into()),
            "process.cwd",
        ),
        (
            "v4",
            Box::new(|c| c["mounts"][0]["destination"] = "proc".into()),
            "mounts[0].destination",
        ),
        (
            "v5",
            Box::new(|c| c["process"]["user"]["uid"] = "root".into()),
            "process.user.uid",
        ),
        (
            "v6",
            Box::new(|c| c["linux"]["cgroupsPath"] = "/a/../../etc".into()),
            "cgroupsPath",
        ),
        (
            "v7",
            Box::new(|c| {
                c["process"]["terminal"] = true.into();
            }),
            "console-socket",
        ),
    ];
    for (id, patch, field) in cases {
        let b = with_config(patch);
        let _g = rt.guard(id, &b);
        let e = refused(&rt, id, &b);
        assert!(e.contains(field), "{id}: expected {field:?} in {e}");
    }
}

/// Failures after the init exists: the rollback must kill it and remove its cgroup.
#[test]
fn failures_inside_the_init_are_rolled_back() {
    require_root!();
    let rt = Runtime::new();
    let cases: Vec<Case> = vec![
        (
            "i1",
            Box::new(|c| c["process"]["args"] = json!(["no-such-program"])),
            "executable file not found",
        ),
        (
            "i2",
            Box::new(|c| {
                c["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"destination": "/x", "type": "nosuchfs", "source": "none"}))
            }),
            "mounts[7]",
        ),
        (
            "i3",
            Box::new(|c| c["linux"]["sysctl"] = json!({"kernel.no_such_sysctl": "1"})),
            "linux.sysctl",
        ),
        (
            "i4",
            Box::new(|c| c["linux"]["rootfsPropagation"] = "sideways".into()),
            "rootfsPropagation",
        ),
        (
            "i5",
            Box::new(|c| {
                c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/y", "type": "bind", "source": "/nonexistent/src", "options": ["bind"]}))
            }),
            "/nonexistent/src",
        ),
    ];
    for (id, patch, needle) in cases {
        let b = with_config(patch);
        let _g = rt.guard(id, &b);
        let e = refused(&rt, id, &b);
        assert!(e.contains(needle), "{id}: expected {needle:?} in {e}");
    }
}

//! Checks the test-support module itself; runs no container.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{Bundle, Runtime, TempDir};

#[test]
fn busybox_bundle_has_rootfs_and_config() {
    let bundle = Bundle::busybox(&["sh", "-c", "echo hi"]);
    let rootfs = bundle.rootfs();
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    for file in ["etc/passwd", "etc/group", "etc/hostname"] {
        assert!(rootfs.join(file).is_file(), "{file} missing");
    }
    for dir in ["sbin", "dev", "proc", "sys", "tmp", "root"] {
        assert!(rootfs.join(dir).is_dir(), "{dir} missing");
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp_mode = std::fs::metadata(rootfs.join("tmp"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(tmp_mode & 0o7777, 0o1777);

    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.config_path()).unwrap()).unwrap();
    assert_eq!(written, bundle.config);
    assert_eq!(
        written["process"]["args"],
        serde_json::json!(["sh", "-c", "echo hi"])
    );
    assert_eq!(written["process"]["terminal"], false);
    assert_eq!(written["root"]["path"], "rootfs");
    let cgroups_path = bundle.cgroups_path().unwrap();
    assert!(cgroups_path.starts_with("/berth-test-"), "{cgroups_path}");
}

#[test]
fn config_edits_are_written() {
    let mut bundle = Bundle::busybox(&["true"]);
    bundle.config_mut()["hostname"] = "edited".into();
    bundle.write_config();
    let text = std::fs::read_to_string(bundle.config_path()).unwrap();
    assert!(text.contains("\"edited\""));
}

#[test]
fn temp_dirs_are_unique_and_removed() {
    let (a, b) = (TempDir::new(), TempDir::new());
    assert_ne!(a.path(), b.path());
    std::fs::create_dir_all(a.path().join("x/y")).unwrap();
    std::fs::write(a.path().join("x/y/z"), "z").unwrap();
    let path = a.path().to_path_buf();
    drop(a);
    assert!(!path.exists());
}

#[test]
fn commands_time_out_and_capture_output() {
    let mut echo = std::process::Command::new("/bin/busybox");
    echo.args(["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let output = support::output_with_timeout(echo, Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(support::stdout_text(&output), "out\n");
    assert_eq!(support::stderr_text(&output), "err\n");

    let mut sleep = std::process::Command::new("/bin/busybox");
    sleep.args(["sleep", "10"]);
    let started = std::time::Instant::now();
    let result = support::try_output_with_timeout(sleep, Duration::from_millis(200));
    let error = result.expect_err("sleep 10 was not killed");
    assert!(error.contains("killed after"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn runtime_root_is_a_temp_dir() {
    let runtime = Runtime::new();
    assert!(runtime.root.path().is_dir());
    let cmd = runtime.cmd();
    let args: Vec<_> = cmd.get_args().collect();
    assert_eq!(
        args,
        [
            std::ffi::OsStr::new("--root"),
            runtime.root.path().as_os_str()
        ]
    );
    assert!(support::host_cgroup_dirs("/berth-test/does-not-exist").is_empty());
}

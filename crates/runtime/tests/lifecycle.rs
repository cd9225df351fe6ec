//! The OCI lifecycle through the command line: create parks the init, start runs the
//! program, state reports each step, kill and delete behave as runc's, and every error case
//! changes nothing.

mod support;

use std::fs;
use std::time::Duration;
use support::*;

/// The program writes a marker into a host directory bound into the container, so the test
/// can tell from outside whether the user's program has run.
fn marker_bundle(marker_dir: &std::path::Path, script: &str) -> Bundle {
    let mut b = Bundle::busybox(&["sh", "-c", script]);
    b.config_mut()["mounts"].as_array_mut().unwrap().push(serde_json::json!({
        "destination": "/marker", "type": "bind", "source": marker_dir, "options": ["rbind", "rw"]
    }));
    b.write_config();
    b
}

#[test]
fn create_parks_the_init_until_start() {
    require_root!();
    let rt = Runtime::new();
    let markers = TempDir::new();
    let b = marker_bundle(markers.path(), "echo ran > /marker/ran; exec sleep 30");
    let _g = rt.guard("c1", &b);
    let pid_file = b.path().join("init.pid");
    let out = rt.create_with("c1", &b, &["--pid-file", pid_file.to_str().unwrap()]);
    assert_success(&out, "create");

    let st = rt.state("c1");
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], "c1");
    assert_eq!(st["ociVersion"], "1.0.2-dev");
    assert_eq!(st["bundle"], b.path().to_str().unwrap());
    assert!(st["rootfs"].as_str().unwrap().ends_with("/rootfs"));
    assert!(st["created"].as_str().unwrap().contains('T'));
    assert_eq!(st["owner"], "root");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !markers.path().join("ran").exists(),
        "the program ran before start"
    );
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        !cmdline.starts_with(b"sh"),
        "the init already exec'd the program"
    );

    assert_success(&rt.start("c1"), "start");
    rt.wait_for_status("c1", "running", Duration::from_secs(5));
    for _ in 0..200 {
        if markers.path().join("ran").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        fs::read_to_string(markers.path().join("ran")).unwrap(),
        "ran\n"
    );
    assert_eq!(
        rt.state("c1")["pid"].as_i64().unwrap(),
        pid,
        "exec keeps the init's pid"
    );

    assert_success(&rt.kill("c1", "KILL"), "kill");
    let st = rt.wait_for_status("c1", "stopped", Duration::from_secs(5));
    assert_eq!(st["pid"], 0);
    assert_success(&rt.delete("c1"), "delete");
    assert!(!rt.state_dir("c1").exists());
}

#[test]
fn errors_change_nothing() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::busybox(&["sleep", "30"]);
    let _g = rt.guard("c2", &b);
    assert_success(&rt.create("c2", &b), "create");

    // A duplicate id.
    let dup = rt.create("c2", &b);
    assert_eq!(dup.status.code(), Some(1));
    assert!(
        stderr_text(&dup).contains("container with id exists: c2"),
        "{}",
        stderr_text(&dup)
    );
    assert_eq!(rt.state("c2")["status"], "created");

    assert_success(&rt.start("c2"), "start");
    rt.wait_for_status("c2", "running", Duration::from_secs(5));
    let again = rt.start("c2");
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr_text(&again).contains("cannot start an already running container"));

    let del = rt.delete("c2");
    assert_eq!(del.status.code(), Some(1));
    assert!(
        stderr_text(&del).contains("not stopped: running"),
        "{}",
        stderr_text(&del)
    );
    assert_eq!(
        rt.state("c2")["status"],
        "running",
        "a refused delete must not stop it"
    );

    // delete --force kills a running container.
    assert_success(&rt.delete_force("c2"), "delete --force");
    assert!(!rt.state_dir("c2").exists());
    let gone = rt.run(&["state", "c2"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr_text(&gone).contains("does not exist"));
    // runc: delete --force of a container that is not there succeeds; plain delete fails.
    assert_success(
        &rt.delete_force("c2"),
        "delete --force of a missing container",
    );
    assert_eq!(rt.delete("c2").status.code(), Some(1));
}

#[test]
fn start_of_a_stopped_container_is_refused() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::busybox(&["true"]);
    let _g = rt.guard("c3", &b);
    assert_success(&rt.create("c3", &b), "create");
    assert_success(&rt.start("c3"), "start");
    rt.wait_for_status("c3", "stopped", Duration::from_secs(5));
    let out = rt.start("c3");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("cannot start a container that has stopped"));
    assert_success(&rt.delete("c3"), "delete of a stopped container");
}

#[test]
fn bad_ids_are_refused_before_anything_is_made() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::busybox(&["true"]);
    for id in ["a/b", "..", ".", "../escape", "with space", ""] {
        let out = rt.run(&["create", "--bundle", b.path().to_str().unwrap(), id]);
        assert_eq!(out.status.code(), Some(1), "id {id:?}");
        let err = stderr_text(&out);
        assert!(err.contains("invalid container id"), "id {id:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    for id in ["a/b", "../escape", "x/../y"] {
        for cmd in [
            &["start", id][..],
            &["state", id],
            &["delete", id],
            &["kill", id],
        ] {
            let out = rt.run(cmd);
            assert_eq!(out.status.code(), Some(1), "{cmd:?}");
        }
    }
    assert!(!rt.root.path().join("escape").exists());
    let left: Vec<_> = fs::read_dir(rt.root.path())
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "state root has {left:?}");
    assert!(host_cgroup_dirs(&b.cgroups_path().unwrap()).is_empty());
}

#[test]
fn run_exits_with_the_container_status() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::busybox(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let _g = rt.guard("r1", &b);
    let out = rt.run_container("r1", &b);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout_text(&out), "out\n");
    assert!(stderr_text(&out).contains("err"));
    assert!(!rt.state_dir("r1").exists(), "run without --keep deletes");

    // The init of a pid namespace cannot SIGKILL itself; without one it can.
    let mut b = Bundle::busybox(&["sh", "-c", "kill -9 $$"]);
    let ns = b.config_mut()["linux"]["namespaces"]
        .as_array_mut()
        .unwrap();
    ns.retain(|n| n["type"] != "pid");
    b.write_config();
    let _g2 = rt.guard("r2", &b);
    let out = rt.run_container("r2", &b);
    assert_eq!(out.status.code(), Some(128 + 9), "killed by SIGKILL is 137");
}

#[test]
fn run_keep_and_detach() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::busybox(&["true"]);
    let _g = rt.guard("k1", &b);
    let out = rt.run(&[
        "run",
        "--keep",
        "--bundle",
        b.path().to_str().unwrap(),
        "k1",
    ]);
    assert_success(&out, "run --keep");
    assert_eq!(rt.state("k1")["status"], "stopped");
    assert_success(&rt.delete("k1"), "delete");

    let b = Bundle::busybox(&["sleep", "30"]);
    let _g2 = rt.guard("d1", &b);
    let out = rt.run(&["run", "-d", "--bundle", b.path().to_str().unwrap(), "d1"]);
    assert_success(&out, "run -d");
    assert_eq!(rt.state("d1")["status"], "running");
}

#[test]
fn run_forwards_signals_to_the_container() {
    require_root!();
    let rt = Runtime::new();
    // A shell as pid 1 ignores SIGTERM unless it traps it.
    let b = Bundle::busybox(&[
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done",
    ]);
    let _g = rt.guard("s1", &b);
    let out_file = b.path().join("out");
    let mut child = rt
        .cmd()
        .args(["run", "--bundle", b.path().to_str().unwrap(), "s1"])
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&out_file).unwrap())
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if fs::read_to_string(&out_file)
            .unwrap_or_default()
            .contains("ready")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7));
    assert!(fs::read_to_string(&out_file).unwrap().contains("got-term"));
}

#[test]
fn kill_takes_names_numbers_and_all() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::busybox(&[
        "sh",
        "-c",
        "trap 'exit 10' USR1; sleep 30 & sleep 30 & while true; do sleep 0.05; done",
    ]);
    let _g = rt.guard("k2", &b);
    assert_success(&rt.create("k2", &b), "create");
    assert_success(&rt.start("k2"), "start");
    rt.wait_for_status("k2", "running", Duration::from_secs(5));

    let bad = rt.kill("k2", "SIGNOPE");
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr_text(&bad).contains("invalid signal"),
        "{}",
        stderr_text(&bad)
    );
    assert_eq!(rt.kill("k2", "0").status.code(), Some(1));
    assert_eq!(rt.state("k2")["status"], "running");

    for sig in ["SIGCONT", "CONT", "18", "cont"] {
        assert_success(&rt.kill("k2", sig), format!("kill {sig}"));
    }
    // USR1 is trapped: the init exits 10, its two sleeps stay until --all.
    let cg = b.cgroups_path().unwrap();
    for _ in 0..200 {
        if pids_in_cgroup(&cg).len() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(pids_in_cgroup(&cg).len() >= 3, "{:?}", pids_in_cgroup(&cg));
    assert_success(&rt.run(&["kill", "--all", "k2", "KILL"]), "kill --all");
    rt.wait_for_status("k2", "stopped", Duration::from_secs(5));
    for _ in 0..200 {
        if pids_in_cgroup(&cg).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(pids_in_cgroup(&cg).is_empty());
    let out = rt.kill("k2", "TERM");
    assert_eq!(
        out.status.code(),
        Some(1),
        "kill of a stopped container is an error"
    );
    assert!(stderr_text(&out).contains("not running"));
}

#[test]
fn list_in_table_json_and_quiet() {
    require_root!();
    let rt = Runtime::new();
    let empty = rt.run(&["list", "--format", "json"]);
    assert_success(&empty, "list");
    assert_eq!(stdout_text(&empty).trim(), "[]");
    let b = Bundle::busybox(&["sleep", "30"]);
    let _g = rt.guard("l1", &b);
    assert_success(&rt.create("l1", &b), "create");

    let json: serde_json::Value =
        serde_json::from_slice(&rt.run(&["list", "--format", "json"]).stdout).unwrap();
    assert_eq!(json[0]["id"], "l1");
    assert_eq!(json[0]["status"], "created");
    assert_eq!(json[0]["owner"], "root");
    let table = stdout_text(&rt.run(&["list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID          PID         STATUS"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("l1 ") && lines[1].contains("created"),
        "{table}"
    );
    assert_eq!(stdout_text(&rt.run(&["list", "-q"])), "l1\n");
}

#[test]
fn spec_writes_a_runnable_config_once() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::busybox(&["true"]);
    fs::remove_file(b.config_path()).unwrap();
    assert_success(
        &rt.run(&["spec", "--bundle", b.path().to_str().unwrap()]),
        "spec",
    );
    let mut config: serde_json::Value =
        serde_json::from_slice(&fs::read(b.config_path()).unwrap()).unwrap();
    assert_eq!(config["process"]["terminal"], true);
    assert_eq!(config["root"]["path"], "rootfs");
    let again = rt.run(&["spec", "--bundle", b.path().to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr_text(&again).contains("exists"));

    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["sh", "-c", "echo from-spec"]);
    fs::write(b.config_path(), config.to_string()).unwrap();
    let _g = ContainerGuard::new(&rt, "sp", Some("/berth/sp".into()));
    let out = rt.run_container("sp", &b);
    assert_success(&out, "run from spec");
    assert_eq!(stdout_text(&out), "from-spec\n");

    let rootless = TempDir::new();
    assert_success(
        &rt.run(&[
            "spec",
            "--rootless",
            "--bundle",
            rootless.path().to_str().unwrap(),
        ]),
        "spec --rootless",
    );
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(rootless.path().join("config.json")).unwrap()).unwrap();
    assert!(config["linux"]["uidMappings"].is_array());
    assert!(config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "user"));
}

#[test]
fn json_log_lines_carry_the_error() {
    require_root!();
    let rt = Runtime::new();
    let log = TempDir::new();
    let log_file = log.path().join("log.json");
    let out = rt.run(&[
        "--log",
        log_file.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = fs::read_to_string(&log_file).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains("nope"));
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
    assert!(
        stderr_text(&out).contains("nope"),
        "a person still sees the error"
    );
}

#[test]
fn version_names_the_spec() {
    let out = std::process::Command::new(runtime_bin())
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("berth-runtime "), "{text}");
    assert!(text.contains("spec: 1."), "{text}");
}

#[test]
fn delete_takes_the_processes_an_init_left_behind() {
    require_root!();
    let rt = Runtime::new();
    // No pid namespace: the init's background child outlives it.
    let mut b = Bundle::busybox(&["sh", "-c", "sleep 60 & exit 0"]);
    b.config_mut()["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    b.write_config();
    let cg = b.cgroups_path().unwrap();
    let _g = rt.guard("o1", &b);
    assert_success(&rt.create("o1", &b), "create");
    assert_success(&rt.start("o1"), "start");
    rt.wait_for_status("o1", "stopped", Duration::from_secs(5));
    assert_eq!(
        pids_in_cgroup(&cg).len(),
        1,
        "the orphaned sleep is still there"
    );
    assert_success(&rt.delete("o1"), "delete");
    assert!(pids_in_cgroup(&cg).is_empty());
    assert!(host_cgroup_dirs(&cg).is_empty());
}

/// Runs `run` with `file` open as fd 3 in the runtime process.
fn run_with_fd3(
    rt: &Runtime,
    id: &str,
    b: &Bundle,
    file: &std::path::Path,
    flags: &[&str],
) -> std::process::Output {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let f = fs::File::open(file).unwrap();
    let raw = f.as_raw_fd();
    let mut cmd = rt.cmd();
    cmd.arg("run")
        .arg("--bundle")
        .arg(b.path())
        .args(flags)
        .arg(id);
    // SAFETY: dup2 between fork and exec, on descriptors this process owns.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec set: clear it instead.
            let ret = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if ret < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = output_with_timeout(cmd, COMMAND_TIMEOUT);
    drop(f);
    out
}

#[test]
fn preserve_fds_passes_extra_descriptors_and_only_those() {
    require_root!();
    let rt = Runtime::new();
    let dir = TempDir::new();
    let file = dir.path().join("passed");
    fs::write(&file, "through fd 3\n").unwrap();
    let b = Bundle::busybox(&["sh", "-c", "cat <&3"]);
    let _g = rt.guard("f1", &b);
    let out = run_with_fd3(&rt, "f1", &b, &file, &["--preserve-fds", "1"]);
    assert_success(&out, "run --preserve-fds 1");
    assert_eq!(stdout_text(&out), "through fd 3\n");
    let _g2 = rt.guard("f2", &b);
    let out = run_with_fd3(&rt, "f2", &b, &file, &[]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "fd 3 must be closed without --preserve-fds"
    );
    assert!(stdout_text(&out).is_empty());
}

#[test]
fn lsm_labels_without_the_lsm_are_a_warning() {
    require_root!();
    if std::path::Path::new("/sys/kernel/security/apparmor").exists() {
        eprintln!("skipped: this host has AppArmor, so the profile would really be applied");
        return;
    }
    let rt = Runtime::new();
    let mut b = Bundle::busybox(&["echo", "ran"]);
    b.config_mut()["process"]["apparmorProfile"] = "berth-test-profile".into();
    b.write_config();
    let _g = rt.guard("a1", &b);
    let out = rt.run_container("a1", &b);
    assert_success(
        &out,
        "run with an apparmorProfile on a host without AppArmor",
    );
    assert_eq!(stdout_text(&out), "ran\n");
    let err = stderr_text(&out);
    assert!(
        err.contains("level=warning") && err.contains("AppArmor is not enabled"),
        "{err}"
    );
}

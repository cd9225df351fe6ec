//! `exec`: a second process in a running container, in all its namespaces and its cgroup,
//! with its own user, env, cwd and capabilities; exit status returned unless detached.

mod support;

use serde_json::json;
use std::fs;
use std::time::Duration;
use support::*;

fn running(rt: &Runtime, id: &str) -> Bundle {
    let b = Bundle::busybox(&["sleep", "60"]);
    assert_success(&rt.create(id, &b), "create");
    assert_success(&rt.start(id), "start");
    rt.wait_for_status(id, "running", Duration::from_secs(5));
    b
}

fn exec(rt: &Runtime, args: &[&str]) -> std::process::Output {
    let mut all = vec!["exec"];
    all.extend_from_slice(args);
    rt.run(&all)
}

fn status_field(text: &str, field: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in {text}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn exec_joins_the_container() {
    require_root!();
    let rt = Runtime::new();
    let b = running(&rt, "x1");
    let _g = rt.guard("x1", &b);
    let out = exec(&rt, &["x1", "sh", "-c", "echo pid=$$; hostname; tr '\\0' ' ' < /proc/1/cmdline; echo; ls /proc/self/ns/ >/dev/null; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr_text(&out));
    let text = stdout_text(&out);
    let pid: i64 = text
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("pid=")
        .parse()
        .unwrap();
    assert!(
        pid > 1,
        "a new process in the container's pid namespace: {text}"
    );
    assert!(text.contains("berth-test"), "uts namespace: {text}");
    assert!(
        text.contains("sleep 60"),
        "sees the container's pid 1: {text}"
    );

    // Its cgroup and namespaces are the init's, seen from the host.
    let init = rt.state("x1")["pid"].as_i64().unwrap();
    let pid_file = b.path().join("exec.pid");
    let out = exec(
        &rt,
        &[
            "--detach",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "x1",
            "sleep",
            "30",
        ],
    );
    assert_success(&out, "exec --detach");
    let epid: i64 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(
        fs::read_to_string(format!("/proc/{epid}/cgroup")).unwrap(),
        fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap()
    );
    for ns in ["mnt", "net", "ipc", "uts", "pid", "cgroup"] {
        assert_eq!(
            fs::read_link(format!("/proc/{epid}/ns/{ns}")).unwrap(),
            fs::read_link(format!("/proc/{init}/ns/{ns}")).unwrap(),
            "{ns}"
        );
    }
    let listed = stdout_text(&rt.run(&["ps", "--format", "json", "x1"]));
    let pids: Vec<i64> = serde_json::from_str(&listed).unwrap();
    assert!(pids.contains(&init) && pids.contains(&epid), "{pids:?}");
}

#[test]
fn exec_flags_set_user_env_cwd_and_caps() {
    require_root!();
    let rt = Runtime::new();
    let b = running(&rt, "x2");
    let _g = rt.guard("x2", &b);
    let out = exec(
        &rt,
        &[
            "--user",
            "1000:1001",
            "-g",
            "2000",
            "--env",
            "FOO=bar",
            "--cwd",
            "/tmp",
            "x2",
            "sh",
            "-c",
            "id; echo $FOO; pwd",
        ],
    );
    assert_success(&out, "exec with flags");
    let text = stdout_text(&out);
    assert!(text.contains("uid=1000 gid=1001 groups=2000"), "{text}");
    assert!(text.contains("bar\n/tmp\n"), "{text}");

    let out = exec(&rt, &["x2", "cat", "/proc/self/status"]);
    let base = status_field(&stdout_text(&out), "CapEff:");
    assert_eq!(base & (1 << 12), 0, "no CAP_NET_ADMIN from the config");
    let out = exec(
        &rt,
        &[
            "--cap",
            "CAP_NET_ADMIN",
            "--no-new-privs",
            "x2",
            "cat",
            "/proc/self/status",
        ],
    );
    let text = stdout_text(&out);
    assert_ne!(
        status_field(&text, "CapEff:") & (1 << 12),
        0,
        "--cap adds CAP_NET_ADMIN: {text}"
    );
    assert!(text.contains("NoNewPrivs:\t1"));
}

#[test]
fn exec_with_a_process_file() {
    require_root!();
    let rt = Runtime::new();
    let b = running(&rt, "x3");
    let _g = rt.guard("x3", &b);
    let process = b.path().join("process.json");
    fs::write(
        &process,
        json!({
            "args": ["sh", "-c", "echo $GREETING from $(pwd) as $(id -u)"],
            "env": ["PATH=/bin", "GREETING=hello"],
            "cwd": "/etc",
            "user": {"uid": 65534, "gid": 65534}
        })
        .to_string(),
    )
    .unwrap();
    let out = exec(&rt, &["--process", process.to_str().unwrap(), "x3"]);
    assert_success(&out, "exec --process");
    assert_eq!(stdout_text(&out), "hello from /etc as 65534\n");

    fs::write(&process, "{\"args\": [\"sh\"], \"cwd\": 5}").unwrap();
    let out = exec(&rt, &["--process", process.to_str().unwrap(), "x3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("cwd"), "{}", stderr_text(&out));
}

#[test]
fn exec_errors() {
    require_root!();
    let rt = Runtime::new();
    let b = running(&rt, "x4");
    let _g = rt.guard("x4", &b);
    let out = exec(&rt, &["x4", "no-such-program"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_text(&out).contains("executable file not found"),
        "{}",
        stderr_text(&out)
    );
    let out = exec(&rt, &["x4"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_text(&out).contains("no command"),
        "{}",
        stderr_text(&out)
    );
    let out = exec(&rt, &["nope", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("does not exist"));

    assert_success(&rt.run(&["pause", "x4"]), "pause");
    assert_eq!(rt.state("x4")["status"], "paused");
    let out = exec(&rt, &["x4", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_text(&out).contains("paused"));
    assert_success(&rt.run(&["resume", "x4"]), "resume");
    assert_eq!(rt.state("x4")["status"], "running");
    assert_success(&exec(&rt, &["x4", "true"]), "exec after resume");

    assert_success(&rt.kill("x4", "KILL"), "kill");
    rt.wait_for_status("x4", "stopped", Duration::from_secs(5));
    let out = exec(&rt, &["x4", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_text(&out).contains("stopped"),
        "{}",
        stderr_text(&out)
    );
}

#[test]
fn pause_freezes_every_process() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::busybox(&[
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /dev/shm/tick; sleep 0.01; done",
    ]);

    assert_success(&rt.create("p1", &b), "create");
    let _g = rt.guard("p1", &b);
    assert_success(&rt.start("p1"), "start");
    let pid = rt.state("p1")["pid"].as_i64().unwrap();
    assert_success(&rt.run(&["pause", "p1"]), "pause");
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let before = fs::read_to_string(format!("/proc/{pid}/root/dev/shm/tick")).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(100));
    let after = fs::read_to_string(format!("/proc/{pid}/root/dev/shm/tick")).unwrap_or_default();
    assert_eq!(
        before, after,
        "a paused container makes no progress ({stat})"
    );
    let again = rt.run(&["pause", "p1"]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "pausing a paused container is an error"
    );
    assert_success(&rt.run(&["resume", "p1"]), "resume");
    std::thread::sleep(Duration::from_millis(100));
    let resumed = fs::read_to_string(format!("/proc/{pid}/root/dev/shm/tick")).unwrap_or_default();
    assert_ne!(after, resumed, "resumed");
    assert_eq!(
        rt.run(&["resume", "p1"]).status.code(),
        Some(1),
        "resume of a running one"
    );
    // A paused container can still be deleted with --force.
    assert_success(&rt.run(&["pause", "p1"]), "pause");
    assert_success(
        &rt.delete_force("p1"),
        "delete --force of a paused container",
    );
}

#[test]
fn features_describe_the_runtime() {
    let out = std::process::Command::new(runtime_bin())
        .arg("features")
        .output()
        .unwrap();
    assert!(out.status.success());
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert_eq!(f["ociVersionMax"], "1.3.0");
    assert!(f["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h == "createRuntime"));
    let ns = f["linux"]["namespaces"].as_array().unwrap();
    assert!(ns.iter().any(|n| n == "time") && ns.iter().any(|n| n == "user"));
    assert!(f["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "CAP_SYS_ADMIN"));
    assert!(f["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "rbind"));
    assert_eq!(f["linux"]["cgroup"]["v1"], true);
}

//! Security defaults seen from inside containers, as Docker's: the default capability set
//! and `--cap-drop`, Docker's default seccomp profile (and `unconfined`, custom profiles,
//! `--privileged`), masked and read-only `/proc` paths, the pid and mount namespaces
//! hiding the host, `--read-only`, `--user` and `no-new-privileges`. The real docker CLI
//! against a real berthd running busybox containers (see support/engine.rs).

mod support;

use std::process::Output;

use support::cli::{err, out};
use support::engine::Engine;

/// `docker run --rm [flags] busybox sh -c script`, expected to succeed; its stdout.
#[track_caller]
fn run_ok(engine: &Engine, flags: &[&str], script: &str) -> String {
    let o = run(engine, flags, script);
    assert!(
        o.status.success(),
        "run {flags:?} {script:?} failed: {}\n{}{}\n--- berthd log ---\n{}",
        o.status,
        out(&o),
        err(&o),
        engine.log()
    );
    out(&o)
}

/// `docker run --rm [flags] busybox sh -c script`, expected to fail inside the container
/// (not at create or start); its stderr.
#[track_caller]
fn run_fails(engine: &Engine, flags: &[&str], script: &str) -> String {
    let o = run(engine, flags, script);
    let code = o.status.code();
    assert!(
        code.is_some_and(|c| c != 0 && c < 125),
        "run {flags:?} {script:?} should fail inside the container, got {}\n{}{}",
        o.status,
        out(&o),
        err(&o)
    );
    err(&o)
}

fn run(engine: &Engine, flags: &[&str], script: &str) -> Output {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    engine.docker(&args)
}

/// The value of a `Key:\t<value>` line of /proc/self/status as the container sees it.
#[track_caller]
fn status_field(engine: &Engine, flags: &[&str], key: &str) -> String {
    let line = run_ok(engine, flags, &format!("grep '^{key}:' /proc/self/status"));
    line.split_once(':')
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

#[track_caller]
fn cap_eff(engine: &Engine, flags: &[&str]) -> u64 {
    let hex = status_field(engine, flags, "CapEff");
    u64::from_str_radix(&hex, 16).unwrap_or_else(|e| panic!("CapEff {hex:?}: {e}"))
}

const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
/// Docker's 14 default capabilities as a bit set (moby `oci/caps/defaults.go`).
const DOCKER_DEFAULT_CAPS: u64 = 0x0000_0000_a804_25fb;

#[test]
fn capabilities_default_drop_add_and_privileged() {
    let engine = Engine::start();
    assert_eq!(
        cap_eff(&engine, &[]),
        DOCKER_DEFAULT_CAPS,
        "Docker's 14 capabilities"
    );
    let dropped = cap_eff(&engine, &["--cap-drop", "NET_RAW"]);
    assert_eq!(dropped & (1 << CAP_NET_RAW), 0, "NET_RAW is gone");
    assert_eq!(dropped, DOCKER_DEFAULT_CAPS & !(1 << CAP_NET_RAW));
    let added = cap_eff(&engine, &["--cap-add", "SYS_ADMIN"]);
    assert_eq!(added, DOCKER_DEFAULT_CAPS | (1 << CAP_SYS_ADMIN));
    assert_eq!(cap_eff(&engine, &["--cap-drop", "ALL"]), 0);
    let all = cap_eff(&engine, &["--privileged"]);
    assert_eq!(all & (1 << CAP_SYS_ADMIN), 1 << CAP_SYS_ADMIN);
}

#[test]
fn seccomp_default_profile_unconfined_custom_and_privileged() {
    let engine = Engine::start();
    // Mode 2 is a filter; every container has one unless asked otherwise.
    assert_eq!(status_field(&engine, &[], "Seccomp"), "2");
    let unconfined = ["--security-opt", "seccomp=unconfined"];
    assert_eq!(status_field(&engine, &unconfined, "Seccomp"), "0");
    assert_eq!(status_field(&engine, &["--privileged"], "Seccomp"), "0");

    // mount(2): refused by default (no CAP_SYS_ADMIN, and the profile refuses it),
    // allowed with --privileged.
    let e = run_fails(&engine, &[], "mkdir -p /mnt && mount -t tmpfs none /mnt");
    assert!(e.to_lowercase().contains("permission denied"), "{e}");
    let mounts = run_ok(
        &engine,
        &["--privileged"],
        "mkdir -p /mnt && mount -t tmpfs none /mnt && grep ' /mnt ' /proc/mounts",
    );
    assert!(mounts.contains("tmpfs"), "{mounts}");

    // unshare(2): refused by default, allowed unconfined with CAP_SYS_ADMIN, and (as
    // Docker's profile allows it to holders of CAP_SYS_ADMIN) with --cap-add SYS_ADMIN.
    let e = run_fails(&engine, &[], "unshare -n true");
    assert!(e.contains("unshare"), "{e}");
    run_ok(
        &engine,
        &[
            "--security-opt",
            "seccomp=unconfined",
            "--cap-add",
            "SYS_ADMIN",
        ],
        "unshare -n true",
    );
    run_ok(&engine, &["--cap-add", "SYS_ADMIN"], "unshare -n true");

    // A custom profile (Docker's format; the CLI reads the file) refusing only unshare:
    // with CAP_SYS_ADMIN held, the refusal is seccomp's alone.
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("no-unshare.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .expect("profile");
    let custom = format!("seccomp={}", profile.display());
    let flags = ["--security-opt", &custom, "--cap-add", "SYS_ADMIN"];
    let e = run_fails(&engine, &flags, "unshare -n true");
    assert!(e.contains("unshare"), "{e}");
    run_ok(&engine, &flags, "mkdir -p /mnt && mount -t tmpfs none /mnt");
}

#[test]
fn bad_security_opts_and_profiles_are_refused_at_create() {
    let engine = Engine::start();
    let o = engine.docker(&["create", "--security-opt", "foo=bar", "busybox", "true"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains(r#"invalid --security-opt: "foo=bar""#),
        "{}",
        err(&o)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("bad.json");
    std::fs::write(&profile, r#"{"defaultAction": "SCMP_ACT_BOGUS"}"#).expect("profile");
    let custom = format!("seccomp={}", profile.display());
    let o = engine.docker(&["create", "--security-opt", &custom, "busybox", "true"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("invalid seccomp profile"), "{}", err(&o));

    // Over the API: a 400 with the message.
    let reply = engine.request(
        "POST",
        "/containers/create",
        Some(r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"SecurityOpt":["seccomp={\"defaultAction\":1}"]}}"#),
    );
    assert_eq!(reply.status, 400, "{}", reply.text());
    let message = reply.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with("decoding seccomp profile failed:"),
        "{message}"
    );
    // Nothing was created by the refused requests.
    let list = engine.request("GET", "/containers/json?all=1", None);
    assert_eq!(list.json(), serde_json::json!([]));
}

#[test]
fn proc_is_masked_and_the_host_is_hidden() {
    let engine = Engine::start();
    // Masked paths have /dev/null bound over them and read empty. /proc/kcore is one, but
    // a kernel without CONFIG_PROC_KCORE (as some VMs') has none to mask; /proc/timer_list
    // is another, and shows that the same file is readable when unmasked (--privileged).
    let kcore = if std::path::Path::new("/proc/kcore").exists() {
        "wc -c < /proc/kcore"
    } else {
        "test ! -e /proc/kcore && echo 0"
    };
    assert_eq!(run_ok(&engine, &[], kcore).trim(), "0");
    assert_eq!(run_ok(&engine, &[], "wc -c < /proc/timer_list").trim(), "0");
    let unmasked = run_ok(&engine, &["--privileged"], "wc -c < /proc/timer_list");
    assert_ne!(
        unmasked.trim(),
        "0",
        "timer_list unmasked with --privileged"
    );
    // /proc/sys is read-only (kernel.hostname is the container's own UTS namespace's, so
    // even a failure of this test changes nothing on the host).
    let e = run_fails(&engine, &[], "echo x > /proc/sys/kernel/hostname");
    assert!(e.contains("Read-only file system"), "{e}");
    // ip_forward is per network namespace: the container's own.
    let e = run_fails(&engine, &[], "echo 1 > /proc/sys/net/ipv4/ip_forward");
    assert!(e.contains("Read-only file system"), "{e}");

    // Its own pid namespace: the shell is pid 1 and ps sees nothing else of the host's.
    let ps = run_ok(&engine, &[], "echo $$; ps -o pid,comm");
    let mut lines = ps.lines();
    assert_eq!(lines.next(), Some("1"), "{ps}");
    let procs: Vec<&str> = lines.skip(1).collect();
    assert!(procs.len() <= 2, "only sh and ps: {ps}");
    assert!(!ps.contains("berthd") && !ps.contains("cargo"), "{ps}");

    // Its own root: a host file that is not bind-mounted is neither visible nor writable.
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("host-secret");
    std::fs::write(&secret, "host data\n").expect("host file");
    let path = secret.display().to_string();
    let seen = run_ok(
        &engine,
        &[],
        &format!("test -e {path} && echo visible; mkdir -p $(dirname {path}) && echo owned > {path}; echo done"),
    );
    assert_eq!(seen.trim(), "done", "{seen}");
    assert_eq!(
        std::fs::read_to_string(&secret).expect("host file"),
        "host data\n"
    );
}

#[test]
fn read_only_rootfs_user_and_no_new_privileges() {
    let engine = Engine::start();
    run_ok(&engine, &[], "touch /x");
    let e = run_fails(&engine, &["--read-only"], "touch /x");
    assert!(e.contains("Read-only file system"), "{e}");

    // The image's /etc/passwd gives uid 65534 (nobody) the group 65534, as with Docker.
    let id = run_ok(&engine, &["--user", "65534"], "id -u; id -g");
    assert_eq!(id, "65534\n65534\n");
    let id = run_ok(&engine, &["--user", "65534:0"], "id -u; id -g");
    assert_eq!(id, "65534\n0\n");
    assert_eq!(
        cap_eff(&engine, &["--user", "65534"]),
        0,
        "no caps as non-root"
    );

    assert_eq!(status_field(&engine, &[], "NoNewPrivs"), "0");
    let nnp = ["--security-opt", "no-new-privileges"];
    assert_eq!(status_field(&engine, &nnp, "NoNewPrivs"), "1");
    let nnp = ["--security-opt", "no-new-privileges=true"];
    assert_eq!(status_field(&engine, &nnp, "NoNewPrivs"), "1");
}

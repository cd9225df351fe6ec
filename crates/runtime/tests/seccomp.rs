//! `linux.seccomp` from inside busybox containers: Docker's default profile, custom profiles
//! (ERRNO, KILL_PROCESS, argument comparisons), noNewPrivileges=false, and bad input. Plus
//! Docker's profile compiled and run through the filter interpreter for what busybox cannot
//! reach (other ABIs, clone flags, syscalls newer than the profile).
//!
//! The container tests run as root (each skips itself otherwise).

mod support;

use std::process::Output;

use berth_runtime::seccomp::{self, Filter, SeccompData};
use oci_spec::runtime::{Arch, LinuxSeccomp};
use serde_json::{json, Value};
use support::{assert_success, describe_status, stderr_text, stdout_text, Bundle, Runtime};

/// Docker's default profile, in Docker's format; see fixtures/seccomp/README.md.
const DOCKER_DEFAULT: &str = include_str!("fixtures/seccomp/docker-default.json");

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
const DOCKER_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The running kernel's (major, minor), for `minKernel`.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parse_version(&release).unwrap_or((0, 0))
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Docker's profile to OCI `linux.seccomp` the way moby's `setupSeccomp` does it for
/// `arch` (a Go GOARCH name) and a process with the bounding set `caps`: the archMap entry
/// of the native architecture gives `architectures`; a syscall entry is kept when no
/// `excludes` applies and every `includes` holds.
fn docker_to_oci(docker: &Value, arch: &str, native: &str, caps: &[&str]) -> Value {
    let kernel = kernel_version();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let min_kernel = |v: &Value| v.as_str().and_then(parse_version);

    let mut architectures = Vec::new();
    for entry in docker["archMap"].as_array().into_iter().flatten() {
        if entry["architecture"] == native {
            architectures.push(entry["architecture"].clone());
            architectures.extend(
                strings(&entry["subArchitectures"])
                    .into_iter()
                    .map(Value::from),
            );
        }
    }

    let mut syscalls = Vec::new();
    for call in docker["syscalls"].as_array().into_iter().flatten() {
        let (inc, exc) = (&call["includes"], &call["excludes"]);
        if strings(&exc["arches"]).iter().any(|a| a == arch)
            || strings(&exc["caps"])
                .iter()
                .any(|c| caps.contains(&c.as_str()))
            || min_kernel(&exc["minKernel"]).is_some_and(|v| kernel >= v)
        {
            continue;
        }
        let inc_arches = strings(&inc["arches"]);
        if !inc_arches.is_empty() && !inc_arches.iter().any(|a| a == arch)
            || !strings(&inc["caps"])
                .iter()
                .all(|c| caps.contains(&c.as_str()))
            || min_kernel(&inc["minKernel"]).is_some_and(|v| kernel < v)
        {
            continue;
        }
        let mut out = json!({ "names": call["names"], "action": call["action"] });
        for key in ["args", "errnoRet"] {
            if !call[key].is_null() {
                out[key] = call[key].clone();
            }
        }
        syscalls.push(out);
    }

    let mut profile = json!({
        "defaultAction": docker["defaultAction"],
        "architectures": architectures,
        "syscalls": syscalls,
    });
    if !docker["defaultErrnoRet"].is_null() {
        profile["defaultErrnoRet"] = docker["defaultErrnoRet"].clone();
    }
    profile
}

fn docker_profile() -> Value {
    let docker: Value = serde_json::from_str(DOCKER_DEFAULT).expect("fixture is JSON");
    docker_to_oci(&docker, "amd64", "SCMP_ARCH_X86_64", &DOCKER_CAPS)
}

/// A busybox bundle running `sh -c script` with `profile` as linux.seccomp, Docker's
/// capabilities and a writable rootfs (so a refused mkdir is seccomp's doing, not EROFS).
fn bundle(script: &str, profile: Value) -> Bundle {
    let mut b = Bundle::busybox(&["sh", "-c", script]);
    let config = b.config_mut();
    config["linux"]["seccomp"] = profile;
    config["root"]["readonly"] = json!(false);
    let caps = json!(DOCKER_CAPS);
    config["process"]["capabilities"] =
        json!({ "bounding": caps, "effective": caps, "permitted": caps });
    b.write_config();
    b
}

fn run(what: &str, b: &Bundle) -> Output {
    let rt = Runtime::new();
    let id = format!("{what}-{}", b.dir.unique());
    let _guard = rt.guard(&id, b);
    rt.run_container(&id, b)
}

fn all_output(out: &Output) -> String {
    format!("{}{}", stdout_text(out), stderr_text(out))
}

// ---------------------------------------------------------------------------------------
// In containers
// ---------------------------------------------------------------------------------------

const UNSHARE_SCRIPT: &str =
    "echo hi; ls / >/dev/null && echo listed; unshare -U true; echo unshare=$?";

#[test]
fn docker_default_allows_ordinary_work_and_refuses_the_rest() {
    require_root!();
    // The control: without seccomp, a new user namespace is allowed (no capability needed).
    let mut control = bundle(UNSHARE_SCRIPT, Value::Null);
    control.config_mut()["linux"]
        .as_object_mut()
        .expect("linux is an object")
        .remove("seccomp");
    control.write_config();
    let out = run("sc-docker-control", &control);
    assert_success(&out, "control run");
    assert!(
        stdout_text(&out).contains("unshare=0"),
        "unshare -U should work without seccomp here: {}",
        all_output(&out)
    );

    let b = bundle(UNSHARE_SCRIPT, docker_profile());
    let out = run("sc-docker", &b);
    assert_success(&out, "run under Docker's profile");
    let text = all_output(&out);
    assert!(text.contains("hi\n") && text.contains("listed\n"), "{text}");
    assert!(text.contains("unshare=1"), "{text}");
    assert!(text.contains("Operation not permitted"), "{text}");
}

#[test]
fn errno_rule_returns_the_given_errno() {
    require_root!();
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [ { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38 } ]
    });
    let b = bundle(
        "touch /tmp/f && echo touched; mkdir /tmp/x; echo mkdir=$?; test -d /tmp/x || echo absent",
        profile,
    );
    let out = run("sc-errno", &b);
    assert_success(&out, "run");
    let text = all_output(&out);
    assert!(text.contains("touched"), "{text}");
    assert!(text.contains("Function not implemented"), "{text}");
    assert!(
        text.contains("mkdir=1") && text.contains("absent"),
        "{text}"
    );
}

#[test]
fn argument_comparison_refuses_only_matching_modes() {
    require_root!();
    // Refuse modes that give others rwx: (mode & 0o007) == 0o007. chmod's mode is its
    // second argument, fchmodat's and fchmodat2's the third; busybox uses chmod(2).
    let masked = |index: u32| json!([ { "index": index, "value": 0o007, "valueTwo": 0o007, "op": "SCMP_CMP_MASKED_EQ" } ]);
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18, "args": masked(1) },
            { "names": ["fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18,
              "args": masked(2) }
        ]
    });
    let b = bundle(
        "touch /tmp/f; chmod 0700 /tmp/f && echo first=ok; chmod 0777 /tmp/f; echo second=$?; \
         chmod 0775 /tmp/f && echo third=ok; stat -c mode=%a /tmp/f",
        profile,
    );
    let out = run("sc-args", &b);
    assert_success(&out, "run");
    let text = all_output(&out);
    assert!(text.contains("first=ok"), "{text}");
    assert!(text.contains("Invalid cross-device link"), "EXDEV: {text}");
    assert!(text.contains("second=1"), "{text}");
    assert!(
        text.contains("third=ok") && text.contains("mode=775"),
        "{text}"
    );
}

#[test]
fn log_lets_the_call_through_and_trace_without_a_tracer_is_enosys() {
    require_root!();
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["symlink", "symlinkat"], "action": "SCMP_ACT_LOG" },
            { "names": ["link", "linkat"], "action": "SCMP_ACT_TRACE", "errnoRet": 3 }
        ]
    });
    let b = bundle(
        "touch /tmp/f; ln -s f /tmp/s && echo symlinked; ln /tmp/f /tmp/h; echo link=$?",
        profile,
    );
    let out = run("sc-log-trace", &b);
    assert_success(&out, "run");
    let text = all_output(&out);
    assert!(text.contains("symlinked"), "{text}");
    // seccomp(2): with no tracer attached, a TRACE'd call fails with ENOSYS.
    assert!(
        text.contains("Function not implemented") && text.contains("link=1"),
        "{text}"
    );
}

#[test]
fn kill_and_trap_actions_end_the_process_with_sigsys() {
    require_root!();
    // TRAP sends SIGSYS, which the program does not handle: it dies of it like the kills.
    for action in [
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
    ] {
        let profile = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [ { "names": ["mkdir", "mkdirat"], "action": action } ]
        });
        let mut b = bundle("", profile);
        b.config_mut()["process"]["args"] = json!(["mkdir", "/tmp/x"]);
        b.write_config();
        let out = run("sc-kill", &b);
        assert_eq!(
            out.status.code(),
            Some(128 + libc::SIGSYS),
            "{action}: {}: {}",
            describe_status(out.status),
            all_output(&out)
        );
    }
}

#[test]
fn loads_without_no_new_privileges() {
    require_root!();
    // The process keeps neither CAP_SYS_ADMIN nor no_new_privs, so the filter has to be
    // loaded before the capabilities are dropped.
    for (user, want) in [(0, "uid=0"), (1000, "uid=1000")] {
        let mut b = bundle(
            "id -u | sed s/^/uid=/; unshare -U true; echo unshare=$?",
            docker_profile(),
        );
        let config = b.config_mut();
        config["process"]["noNewPrivileges"] = json!(false);
        config["process"]["user"] = json!({ "uid": user, "gid": user });
        b.write_config();
        let out = run("sc-nnp", &b);
        assert_success(&out, format!("run as {user} without noNewPrivileges"));
        let text = all_output(&out);
        assert!(text.contains(want), "{text}");
        assert!(
            text.contains("unshare=1"),
            "the filter must be in force: {text}"
        );
    }
}

#[test]
fn bad_profiles_fail_create_with_one_line_naming_linux_seccomp() {
    require_root!();
    let cases = [
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [ { "names": ["mkdir"], "action": "SCMP_ACT_BOGUS" } ] }),
            "linux.seccomp.syscalls[0].action",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [ { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                                    "args": [ { "index": 0, "value": 1, "op": "SCMP_CMP_ALMOST" } ] } ] }),
            "linux.seccomp.syscalls[0].args[0].op",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"] }),
            "linux.seccomp.flags[0]",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_NOTIFY" }),
            "linux.seccomp.defaultAction",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [ { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                                    "args": [ { "index": 9, "value": 1, "op": "SCMP_CMP_EQ" } ] } ] }),
            "linux.seccomp.syscalls[0].args[0].index",
        ),
    ];
    for (n, (profile, field)) in cases.into_iter().enumerate() {
        let b = bundle("true", profile);
        let rt = Runtime::new();
        let id = format!("sc-bad{n}-{}", b.dir.unique());
        let _guard = rt.guard(&id, &b);
        let out = rt.create(&id, &b);
        let err = stderr_text(&out);
        assert_eq!(out.status.code(), Some(1), "{field}: {err}");
        let lines: Vec<&str> = err.trim().lines().collect();
        assert_eq!(lines.len(), 1, "one line, got: {err}");
        assert!(lines[0].contains(field), "{field}: {err}");
        assert!(!rt.state_dir(&id).exists(), "{id}: state dir left");
    }
}

// ---------------------------------------------------------------------------------------
// Docker's profile through the interpreter
// ---------------------------------------------------------------------------------------

const AUDIT_AARCH64: u32 = 0xc000_00b7;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

fn docker_filter() -> Filter {
    let profile: LinuxSeccomp =
        serde_json::from_value(docker_profile()).expect("converted profile parses");
    seccomp::compile(&profile).expect("Docker's profile compiles")
}

fn eval(f: &Filter, arch: Arch, name: &str, args: [u64; 6]) -> u32 {
    let nr = seccomp::syscall_number(arch, name).unwrap_or_else(|| panic!("{name} on {arch}"));
    eval_nr(f, arch, nr, args)
}

fn eval_nr(f: &Filter, arch: Arch, nr: u32, args: [u64; 6]) -> u32 {
    let data = SeccompData {
        nr: nr as i32,
        arch: seccomp::audit_arch(arch).unwrap_or(AUDIT_AARCH64),
        instruction_pointer: 0,
        args,
    };
    f.evaluate(&data).expect("the filter runs")
}

#[test]
fn docker_profile_converts_like_docker() {
    let p = docker_profile();
    assert_eq!(
        p["architectures"],
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    );
    let names: Vec<&str> = p["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["names"].as_array().unwrap().iter())
        .filter_map(Value::as_str)
        .collect();
    for kept in [
        "read",
        "chroot",
        "arch_prctl",
        "modify_ldt",
        "clone",
        "clone3",
        "ptrace",
    ] {
        assert!(names.contains(&kept), "{kept} kept");
    }
    for dropped in [
        "mount",
        "unshare",
        "reboot",
        "arm_fadvise64_64",
        "open_by_handle_at",
        "bpf",
    ] {
        assert!(!names.contains(&dropped), "{dropped} dropped");
    }
}

#[test]
fn docker_profile_decisions() {
    let f = docker_filter();
    assert!(
        f.instruction_count() < 4096,
        "{} instructions",
        f.instruction_count()
    );
    let x64 = Arch::ScmpArchX86_64;
    let none = [0u64; 6];
    // Allowed and refused on every covered ABI.
    for arch in [x64, Arch::ScmpArchX86, Arch::ScmpArchX32] {
        assert_eq!(eval(&f, arch, "mkdir", none), ALLOW, "mkdir on {arch}");
        assert_eq!(eval(&f, arch, "mount", none), EPERM, "mount on {arch}");
        assert_eq!(eval(&f, arch, "unshare", none), EPERM, "unshare on {arch}");
        assert_eq!(eval(&f, arch, "clone3", none), ENOSYS, "clone3 on {arch}");
    }
    assert_eq!(eval(&f, Arch::ScmpArchX86, "socketcall", none), ALLOW);
    // An ABI the profile does not list.
    assert_eq!(
        eval_nr(&f, Arch::ScmpArchAarch64, 34, none),
        libc::SECCOMP_RET_KILL_PROCESS
    );
    // clone without namespace flags only; the 32-bit ABIs compare the low word.
    let sigchld = libc::SIGCHLD as u64;
    let newuser = libc::CLONE_NEWUSER as u64;
    for arch in [x64, Arch::ScmpArchX86, Arch::ScmpArchX32] {
        assert_eq!(eval(&f, arch, "clone", [sigchld, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            eval(&f, arch, "clone", [sigchld | newuser, 0, 0, 0, 0, 0]),
            EPERM
        );
    }
    // socket: anything but AF_VSOCK (40).
    assert_eq!(eval(&f, x64, "socket", [2, 1, 0, 0, 0, 0]), ALLOW);
    assert_eq!(eval(&f, x64, "socket", [40, 1, 0, 0, 0, 0]), EPERM);
    // personality: a few exact values, 64-bit compared on x86_64.
    assert_eq!(
        eval(&f, x64, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        eval(&f, x64, "personality", [0x1_ffff_ffff, 0, 0, 0, 0, 0]),
        EPERM
    );
    assert_eq!(
        eval(
            &f,
            Arch::ScmpArchX86,
            "personality",
            [0x1_ffff_ffff, 0, 0, 0, 0, 0]
        ),
        ALLOW,
        "x86 compares the low word only"
    );
    assert_eq!(eval(&f, x64, "personality", [1, 0, 0, 0, 0, 0]), EPERM);
    // Newer than anything the profile names (futex_waitv, 449): ENOSYS, so libc falls back.
    assert_eq!(eval(&f, x64, "fchmodat2", none), ENOSYS);
    assert_eq!(eval_nr(&f, x64, 449, none), ALLOW);
    assert_eq!(eval_nr(&f, x64, 999, none), ENOSYS);
    assert_eq!(
        eval_nr(&f, Arch::ScmpArchX32, 999 | X32_SYSCALL_BIT, none),
        ENOSYS
    );
}

//! `linux.resources` for real: each limit is checked from inside the container (its own
//! cgroup files, or the effect: a failed fork, a refused device) and from the host's cgroup
//! files; `update` and `stats` are driven through the library on a running container; a
//! limit this host cannot apply fails `create` with an error naming it and leaves nothing.

mod support;

use berth_runtime::cgroups::{devices_bpf, resources, stats, Mount, Placement};
use oci_spec::runtime::LinuxResources;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

/// Where the v1 hierarchy holding `controller` is mounted, if it is.
fn v1_mount(controller: &str) -> Option<PathBuf> {
    mountinfo()
        .into_iter()
        .find(|m| m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == controller))
        .map(|m| m.mount_point)
}

fn v2_mount() -> Option<PathBuf> {
    mountinfo()
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
}

/// A cgroup v2-only host (no v1 hierarchy at all).
fn unified_host() -> bool {
    !mountinfo().iter().any(|m| m.fs_type == "cgroup")
}

/// Skips a test (returning) that needs a v1 controller.
macro_rules! require_v1 {
    ($ctrl:expr) => {
        match v1_mount($ctrl) {
            Some(m) => m,
            None => {
                eprintln!(
                    "skipped: no cgroup v1 {} controller here (this test reads v1 files; the \
                     v2 variant covers unified hosts)",
                    $ctrl
                );
                return;
            }
        }
    };
}

fn with_resources(args: &[&str], resources: Value) -> Bundle {
    let mut b = Bundle::busybox(args);
    for (k, v) in resources.as_object().unwrap() {
        b.config_mut()["linux"]["resources"][k] = v.clone();
    }
    b.write_config();
    b
}

fn host_file(mount: &Path, b: &Bundle, file: &str) -> String {
    let cg = b.cgroups_path().unwrap();
    let path = mount.join(cg.trim_start_matches('/')).join(file);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The container's recorded cgroup directories, from its state.json.
fn recorded_dirs(rt: &Runtime, id: &str) -> Vec<PathBuf> {
    let text = fs::read_to_string(rt.state_dir(id).join("state.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cgroup_dirs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| PathBuf::from(d.as_str().unwrap()))
        .collect()
}

fn res(v: Value) -> LinuxResources {
    serde_json::from_value(v).unwrap()
}

#[test]
fn memory_limit_swap_and_friends_v1() {
    require_root!();
    let mem = require_v1!("memory");
    let memsw = mem.join("memory.memsw.limit_in_bytes").exists();
    let mut memory = json!({"limit": 67108864, "reservation": 33554432, "swappiness": 10});
    if memsw {
        memory["swap"] = json!(134217728);
    }
    let script = "cd /sys/fs/cgroup/memory && cat memory.limit_in_bytes \
                  memory.soft_limit_in_bytes memory.swappiness && \
                  { cat memory.memsw.limit_in_bytes 2>/dev/null || true; }";
    let b = with_resources(&["sh", "-c", script], json!({ "memory": memory }));
    let rt = Runtime::new();
    let _g = rt.guard("mem", &b);
    let out = rt.run_container("mem", &b);
    assert_success(&out, "run");
    let text = stdout_text(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..3], ["67108864", "33554432", "10"], "{text}");
    if memsw {
        assert_eq!(lines[3], "134217728", "{text}");
    } else {
        eprintln!("note: no swap accounting here, memory.swap not checked");
    }
}

#[test]
fn cpu_shares_quota_and_cpus_v1() {
    require_root!();
    let cpu = require_v1!("cpu");
    let cpuset = require_v1!("cpuset");
    let last_cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let cpus = last_cpu.to_string();
    let b = with_resources(
        &[
            "sh",
            "-c",
            "cd /sys/fs/cgroup/cpu && cat cpu.shares cpu.cfs_quota_us cpu.cfs_period_us && \
             grep Cpus_allowed_list /proc/self/status",
        ],
        json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": cpus}}),
    );
    let rt = Runtime::new();
    // From the host: create parks the init in its cgroup with the limits set.
    {
        let _g = rt.guard("cpu-host", &b);
        assert_success(&rt.create("cpu-host", &b), "create");
        assert_eq!(host_file(&cpu, &b, "cpu.shares"), "512");
        assert_eq!(host_file(&cpu, &b, "cpu.cfs_quota_us"), "50000");
        assert_eq!(host_file(&cpuset, &b, "cpuset.cpus"), cpus);
    }
    let _g = rt.guard("cpu", &b);
    let out = rt.run_container("cpu", &b);
    assert_success(&out, "run");
    let text = stdout_text(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..3], ["512", "50000", "100000"], "{text}");
    assert_eq!(
        lines[3].split_whitespace().nth(1),
        Some(cpus.as_str()),
        "{text}"
    );
}

#[test]
fn pids_limit_bounds_a_fork_bomb() {
    require_root!();
    let b = with_resources(
        &[
            "sh",
            "-c",
            "for i in $(seq 20); do sleep 2 & done; wait; echo finished",
        ],
        json!({"pids": {"limit": 5}}),
    );
    let rt = Runtime::new();
    {
        let _g = rt.guard("pids-host", &b);
        assert_success(&rt.create("pids-host", &b), "create");
        let dirs = recorded_dirs(&rt, "pids-host");
        let leaf = dirs
            .iter()
            .find(|d| d.join("pids.max").exists())
            .expect("a pids cgroup");
        assert_eq!(
            fs::read_to_string(leaf.join("pids.max")).unwrap().trim(),
            "5"
        );
    }
    let _g = rt.guard("pids", &b);
    let out = rt.run_container("pids", &b);
    let err = stderr_text(&out);
    assert!(err.contains("can't fork"), "no fork failure: {err}");
}

#[test]
fn device_rule_denies_dev_zero_and_keeps_dev_null() {
    require_root!();
    let b = with_resources(
        &[
            "sh",
            "-c",
            "echo x > /dev/null && echo null-ok; head -c1 /dev/zero | wc -c",
        ],
        json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "rwm"}
        ]}),
    );
    let rt = Runtime::new();
    let _g = rt.guard("dev-deny", &b);
    let out = rt.run_container("dev-deny", &b);
    let (text, err) = (stdout_text(&out), stderr_text(&out));
    assert!(
        text.contains("null-ok"),
        "/dev/null should work: {text} {err}"
    );
    assert!(
        err.contains("/dev/zero: Operation not permitted"),
        "stdout: {text}\nstderr: {err}"
    );
}

#[test]
fn device_defaults_and_explicit_allow() {
    require_root!();
    let rt = Runtime::new();
    // The default spec: deny all, then the built-in allowances.
    let b = Bundle::busybox(&["sh", "-c", "head -c1 /dev/zero | wc -c"]);
    let _g = rt.guard("dev-default", &b);
    let out = rt.run_container("dev-default", &b);
    assert_success(&out, "run");
    assert_eq!(stdout_text(&out).trim(), "1");

    // An explicit read-only rule for /dev/zero replaces the built-in read-write one.
    let b = with_resources(
        &[
            "sh",
            "-c",
            "head -c1 /dev/zero | wc -c; echo x > /dev/zero || echo write-refused",
        ],
        json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}
        ]}),
    );
    let _g2 = rt.guard("dev-ro", &b);
    let out = rt.run_container("dev-ro", &b);
    let text = stdout_text(&out);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["1", "write-refused"],
        "{text}"
    );
    assert!(stderr_text(&out).contains("Operation not permitted"));
}

#[test]
fn v1_devices_list_on_the_host() {
    require_root!();
    let devices = require_v1!("devices");
    let b = Bundle::busybox(&["true"]);
    let rt = Runtime::new();
    let _g = rt.guard("dev-list", &b);
    assert_success(&rt.create("dev-list", &b), "create");
    let list = host_file(&devices, &b, "devices.list");
    for want in [
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 136:* rwm",
    ] {
        assert!(list.lines().any(|l| l == want), "{want} missing: {list}");
    }
    assert!(!list.contains("a *:*"), "still allow-all: {list}");
}

/// Each case: what to set, and what the one-line error must say. Cases this host can
/// apply are left out.
fn impossible_cases() -> Vec<(&'static str, Value, &'static str)> {
    let mut cases = vec![
        (
            "cpus",
            json!({"cpu": {"cpus": "0-4095"}}),
            "linux.resources.cpu.cpus",
        ),
        (
            "swap",
            json!({"memory": {"limit": 104857600, "swap": 52428800}}),
            "linux.resources.memory.swap",
        ),
        (
            "hugetlb",
            json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}),
            "linux.resources.hugepageLimits",
        ),
        (
            "devtype",
            json!({"devices": [{"allow": true, "type": "a", "major": 1, "access": "r"}]}),
            "linux.resources.devices[0]",
        ),
    ];
    // CFQ's leaf weights are gone from current kernels (and v2 never had them).
    if !v1_mount("blkio").is_some_and(|m| m.join("blkio.leaf_weight").exists()) {
        cases.push((
            "leafweight",
            json!({"blockIO": {"leafWeight": 500}}),
            "linux.resources.blockIO.leafWeight:",
        ));
    }
    if !unified_host() {
        cases.push((
            "unified",
            json!({"unified": {"memory.high": "100000000"}}),
            "linux.resources.unified[memory.high]",
        ));
    }
    if v1_mount("net_cls").is_none() {
        cases.push((
            "netcls",
            json!({"network": {"classID": 1048577}}),
            "linux.resources.network.classID",
        ));
    }
    cases
}

#[test]
fn impossible_limits_fail_clearly_and_leave_nothing() {
    require_root!();
    let rt = Runtime::new();
    for (id, resources, want) in impossible_cases() {
        let b = with_resources(&["true"], resources);
        let _g = rt.guard(id, &b);
        let out = rt.create(id, &b);
        let err = stderr_text(&out);
        assert_eq!(out.status.code(), Some(1), "{id} should fail: {err}");
        assert!(err.contains(want), "{id}: wanted {want:?} in: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{id}: one line: {err}");
        assert!(!rt.state_dir(id).exists(), "{id}: state left");
        let cg = b.cgroups_path().unwrap();
        assert!(
            host_cgroup_dirs(&cg).is_empty(),
            "{id}: cgroup left: {:?}",
            host_cgroup_dirs(&cg)
        );
    }
}

/// CFQ's blkio.weight is gone; BFQ's blkio.bfq.weight takes the weight where it exists
/// (as runc does). Either the weight lands in one of them or create fails naming it.
#[test]
fn blkio_weight_lands_or_fails_naming_it_v1() {
    require_root!();
    let blkio = require_v1!("blkio");
    let b = with_resources(&["true"], json!({"blockIO": {"weight": 500}}));
    let rt = Runtime::new();
    let _g = rt.guard("blkio", &b);
    let out = rt.create("blkio", &b);
    if out.status.success() {
        let dir = blkio.join(b.cgroups_path().unwrap().trim_start_matches('/'));
        let file = ["blkio.weight", "blkio.bfq.weight"]
            .into_iter()
            .find(|f| dir.join(f).exists())
            .expect("a weight file");
        assert_eq!(host_file(&blkio, &b, file), "500");
    } else {
        let err = stderr_text(&out);
        assert!(
            err.contains("linux.resources.blockIO.weight: this host's blkio controller has no"),
            "{err}"
        );
    }
}

#[test]
fn update_changes_limits_and_keeps_them_on_failure_v1() {
    require_root!();
    let mem = require_v1!("memory");
    let pids = require_v1!("pids");
    let b = with_resources(
        &["sleep", "30"],
        json!({"memory": {"limit": 209715200}, "pids": {"limit": 50}}),
    );
    let rt = Runtime::new();
    let _g = rt.guard("upd", &b);
    assert_success(&rt.create("upd", &b), "create");
    assert_success(&rt.start("upd"), "start");
    let dirs = recorded_dirs(&rt, "upd");

    resources::update(
        &dirs,
        &res(
            json!({"memory": {"limit": 104857600}, "pids": {"limit": 20}, "cpu": {"shares": 256}}),
        ),
    )
    .unwrap();
    assert_eq!(host_file(&mem, &b, "memory.limit_in_bytes"), "104857600");
    assert_eq!(host_file(&pids, &b, "pids.max"), "20");

    // Refused before anything is written: pids changes nothing either.
    let e = resources::update(
        &dirs,
        &res(json!({"pids": {"limit": 7}, "cpu": {"cpus": "0-4095"}})),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("linux.resources.cpu.cpus"), "{e}");
    assert_eq!(host_file(&pids, &b, "pids.max"), "20");

    // Passes the checks but fails in the kernel (a real-time budget larger than the
    // parent's): the memory limit written before it is put back.
    let e = resources::update(
        &dirs,
        &res(json!({
            "memory": {"limit": 157286400},
            "cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 1000000}
        })),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("linux.resources.cpu.realtimeRuntime: writing cpu.rt_runtime_us"),
        "{e}"
    );
    assert_eq!(
        host_file(&mem, &b, "memory.limit_in_bytes"),
        "104857600",
        "memory limit not rolled back"
    );

    // A limit below what the container uses cannot be reclaimed without swap: the error
    // says so and the old limit stays.
    match resources::update(&dirs, &res(json!({"memory": {"limit": 4096}}))) {
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("linux.resources.memory.limit: writing memory.limit_in_bytes"),
                "{e}"
            );
            assert_eq!(host_file(&mem, &b, "memory.limit_in_bytes"), "104857600");
        }
        Ok(()) => eprintln!("note: the kernel reclaimed down to 4096 bytes here"),
    }
}

#[test]
fn stats_of_a_running_container() {
    require_root!();
    let b = with_resources(
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 30",
        ],
        json!({"memory": {"limit": 104857600}, "pids": {"limit": 30}}),
    );
    let rt = Runtime::new();
    let _g = rt.guard("st", &b);
    assert_success(&rt.create("st", &b), "create");
    assert_success(&rt.start("st"), "start");
    std::thread::sleep(Duration::from_millis(500));
    let s = stats::stats(&recorded_dirs(&rt, "st")).unwrap();
    assert!(s.pids.current >= 1, "{s:?}");
    assert_eq!(s.pids.limit, 30);
    assert_eq!(s.memory.usage.limit, 104857600);
    assert!(s.memory.usage.usage > 0, "{s:?}");
    assert!(s.cpu.usage.total > 0, "{s:?}");
    let v = serde_json::to_value(&s).unwrap();
    assert!(v["memory"]["raw"].is_object(), "{v}");
    assert!(v["cpu"]["usage"]["user"].is_u64(), "{v}");
}

/// A cgroup made directly on the v2 tree (the whole tree on a unified host, the empty
/// `unified` one on a hybrid host), handled as a v2-only container would be.
struct V2Cgroup {
    dir: PathBuf,
    placement: Placement,
}

impl V2Cgroup {
    fn new() -> Option<V2Cgroup> {
        let root = v2_mount()?;
        let dir = root.join(format!("berth-test-bpf-{}", unique_name()));
        fs::create_dir(&dir).ok()?;
        let mount = Mount {
            mountpoint: root,
            controllers: vec![],
            v2: true,
            own: PathBuf::from("/"),
        };
        let placement = Placement {
            leaves: vec![(mount, dir.clone())],
            created: vec![dir.clone()],
            freezer: None,
        };
        Some(V2Cgroup { dir, placement })
    }

    /// Runs `script` with /bin/sh after moving the shell into the cgroup.
    fn sh(&self, script: &str) -> std::process::Output {
        let procs = self.dir.join("cgroup.procs");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("echo $$ > {} && {script}", procs.display()));
        output_with_timeout(cmd, COMMAND_TIMEOUT)
    }
}

impl Drop for V2Cgroup {
    fn drop(&mut self) {
        if let Err(e) = self.placement.remove() {
            eprintln!("removing {}: {e}", self.dir.display());
        }
    }
}

#[test]
fn v2_device_program_enforces_rules_and_is_replaced_on_update() {
    require_root!();
    let Some(cg) = V2Cgroup::new() else {
        eprintln!("skipped: no writable cgroup v2 tree here");
        return;
    };
    let deny_zero = res(json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "rwm"}
    ]}));
    resources::apply(&cg.placement, &deny_zero).unwrap();
    assert_eq!(devices_bpf::attached_count(&cg.dir).unwrap(), 1);
    let out = cg.sh("echo x > /dev/null && echo null-ok && head -c1 /dev/zero");
    assert!(
        stdout_text(&out).contains("null-ok"),
        "{}",
        stderr_text(&out)
    );
    assert!(
        stderr_text(&out).contains("Operation not permitted"),
        "/dev/zero readable: {}",
        stderr_text(&out)
    );

    // update swaps the program: the old one is detached, /dev/zero opens.
    let allow_zero = res(json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}
    ]}));
    resources::update(std::slice::from_ref(&cg.dir), &allow_zero).unwrap();
    assert_eq!(devices_bpf::attached_count(&cg.dir).unwrap(), 1);
    let out = cg.sh("head -c1 /dev/zero | wc -c");
    assert_success(&out, "reading /dev/zero after update");
    assert_eq!(stdout_text(&out).trim(), "1");

    // A failed update (a limit this cgroup cannot take) leaves the program as it was.
    let bad =
        res(json!({"cpu": {"cpus": "0-4095"}, "devices": [{"allow": false, "access": "rwm"}]}));
    assert!(resources::update(std::slice::from_ref(&cg.dir), &bad).is_err());
    let out = cg.sh("head -c1 /dev/zero | wc -c");
    assert_eq!(stdout_text(&out).trim(), "1", "{}", stderr_text(&out));
}

#[test]
fn v2_limits_seen_in_the_container() {
    require_root!();
    if !unified_host() {
        eprintln!(
            "skipped: this host has cgroup v1 controllers; the v2 limit files are checked on \
             unified hosts (the v1 tests cover this one)"
        );
        return;
    }
    let b = with_resources(
        &[
            "sh",
            "-c",
            "cd /sys/fs/cgroup && cat memory.max memory.swap.max pids.max cpu.max cpu.weight",
        ],
        json!({
            "memory": {"limit": 67108864, "swap": 134217728},
            "pids": {"limit": 10},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000}
        }),
    );
    let rt = Runtime::new();
    let _g = rt.guard("v2", &b);
    let out = rt.run_container("v2", &b);
    assert_success(&out, "run");
    let text = stdout_text(&out);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["67108864", "67108864", "10", "50000 100000", "39"],
        "{text}"
    );
}

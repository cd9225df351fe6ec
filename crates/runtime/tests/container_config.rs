//! One test per config.json feature, each checked from inside the container: a busybox
//! script prints what the container sees and the test compares it with the config.
//!
//! Runs as root (each test skips itself otherwise). Host facts these tests rely on are
//! checked where they are used, with a message when a check cannot apply here (a cgroup
//! layout, a missing tool).

mod support;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};
use support::{
    assert_success, describe_status, host_cgroup_dirs, pids_in_cgroup, stderr_text, stdout_text,
    Bundle, Runtime, TempDir,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A bundle whose process is `sh -c SCRIPT`.
fn script_bundle(script: &str) -> Bundle {
    Bundle::busybox(&["sh", "-c", script])
}

/// A container id that says which test made it and cannot collide with another test's.
fn container_id(what: &str, bundle: &Bundle) -> String {
    format!("{what}-{}", bundle.dir.unique())
}

/// Runs the bundle in the foreground with a fresh runtime root and returns the output;
/// the container is deleted and checked for leftovers before this returns.
fn run_output(what: &str, bundle: &Bundle, flags: &[&str]) -> Output {
    let rt = Runtime::new();
    let id = container_id(what, bundle);
    let _guard = rt.guard(&id, bundle);
    rt.run_container_with(&id, bundle, flags)
}

/// [`run_output`] that requires exit status 0 and returns the container's stdout.
fn run_stdout(what: &str, bundle: &Bundle) -> String {
    let output = run_output(what, bundle, &[]);
    assert_success(&output, format!("run {what}"));
    stdout_text(&output)
}

fn namespaces_mut(config: &mut Value) -> &mut Vec<Value> {
    config["linux"]["namespaces"]
        .as_array_mut()
        .expect("linux.namespaces is an array")
}

fn remove_namespace(config: &mut Value, typ: &str) {
    namespaces_mut(config).retain(|ns| ns["type"] != typ);
}

/// Adds a namespace of `typ` (replacing one of that type), new or joined at `path`.
fn set_namespace(config: &mut Value, typ: &str, path: Option<&str>) {
    remove_namespace(config, typ);
    let entry = match path {
        Some(p) => json!({ "type": typ, "path": p }),
        None => json!({ "type": typ }),
    };
    namespaces_mut(config).push(entry);
}

fn add_mount(config: &mut Value, mount: Value) {
    config["mounts"]
        .as_array_mut()
        .expect("mounts is an array")
        .push(mount);
}

/// The value of `Key:` in a /proc/<pid>/status text.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}:");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in status:\n{status}"))
        .trim()
}

/// A capability mask as /proc/<pid>/status prints it (hex).
fn cap_mask(status: &str, key: &str) -> u64 {
    let text = status_field(status, key);
    u64::from_str_radix(text, 16).unwrap_or_else(|e| panic!("{key} {text:?}: {e}"))
}

/// One line of a mountinfo text printed by the container.
#[derive(Debug)]
struct MountLine {
    mount_point: String,
    /// Per-mount options (ro, nosuid, ...).
    options: Vec<String>,
    /// Optional fields: `shared:N`, `master:N`, ...
    tags: Vec<String>,
    fs_type: String,
    /// Per-superblock options (size=, mode=, ...).
    super_options: Vec<String>,
}

fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let split = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
            Some(MountLine {
                mount_point: left.get(4)?.to_string(),
                options: split(left.get(5)?),
                tags: left[6..].iter().map(|s| s.to_string()).collect(),
                fs_type: right.first()?.to_string(),
                super_options: split(right.get(2).unwrap_or(&"")),
            })
        })
        .collect()
}

/// The last (topmost) mount at `mount_point`.
fn mount_at<'a>(mounts: &'a [MountLine], mount_point: &str) -> &'a MountLine {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == mount_point)
        .unwrap_or_else(|| panic!("nothing mounted at {mount_point}: {mounts:#?}"))
}

/// The part of a script's output after the line `== name ==` and before the next header.
fn section<'a>(output: &'a str, name: &str) -> &'a str {
    let header = format!("== {name} ==\n");
    let start = output
        .find(&header)
        .unwrap_or_else(|| panic!("no section {name} in output:\n{output}"))
        + header.len();
    let rest = &output[start..];
    let end = rest.find("\n== ").map(|i| i + 1).unwrap_or(rest.len());
    &rest[..end]
}

/// The container's init pid, from `state`.
fn init_pid(rt: &Runtime, id: &str) -> i32 {
    let state = rt.state(id);
    state["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("state {id} has no pid: {state}")) as i32
}

fn assert_create_ok(rt: &Runtime, id: &str, bundle: &Bundle) {
    let output = rt.create(id, bundle);
    assert_success(&output, format!("create {id}"));
}

fn assert_start_ok(rt: &Runtime, id: &str) {
    let output = rt.start(id);
    assert_success(&output, format!("start {id}"));
}

/// A host directory bound read-write at `destination`, for containers run with create and
/// start, whose stdout nobody reads: they write their findings there instead.
fn bind_host_dir(config: &mut Value, host: &Path, destination: &str) {
    add_mount(
        config,
        json!({
            "destination": destination, "type": "bind",
            "source": host, "options": ["rbind", "rw"]
        }),
    );
}

/// Host paths that must not exist; removed on drop if a runtime bug created them, so that
/// a failing run leaves the host as it found it.
struct MustNotExist(Vec<PathBuf>);

impl MustNotExist {
    fn existing(&self) -> Vec<&PathBuf> {
        self.0
            .iter()
            .filter(|p| fs::symlink_metadata(p).is_ok())
            .collect()
    }
}

impl Drop for MustNotExist {
    fn drop(&mut self) {
        for path in &self.0 {
            if path.is_dir() {
                let _ = fs::remove_dir_all(path);
            } else if fs::symlink_metadata(path).is_ok() {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// Whether the host has only cgroup2 (no v1 controller hierarchies).
fn cgroup_v2_only() -> bool {
    let mounts = support::mountinfo();
    !mounts.iter().any(|m| m.fs_type == "cgroup") && mounts.iter().any(|m| m.fs_type == "cgroup2")
}

/// `/proc/<pid>/cgroup` as (controllers, path) pairs; controllers is "" for v2.
fn proc_cgroups(pid: i32) -> Vec<(String, String)> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/cgroup: {e}"));
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------------------

#[test]
fn pid_namespace_makes_the_process_pid_1() {
    require_root!();
    let bundle = script_bundle("echo $$; ls /proc | grep -c '^[0-9][0-9]*$'");
    let out = run_stdout("pidns", &bundle);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"1"), "sh is not pid 1:\n{out}");
    // sh, and the ls and grep of the pipeline: nothing of the host's.
    let count: usize = lines
        .get(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(count <= 4, "/proc inside shows {count} pids:\n{out}");
}

#[test]
fn uts_namespace_sets_hostname_and_domainname() {
    require_root!();
    let mut bundle = script_bundle("hostname; cat /proc/sys/kernel/domainname");
    let hostname = format!("h-{}", bundle.dir.unique());
    bundle.config["hostname"] = json!(hostname);
    bundle.config["domainname"] = json!("berth.example");
    bundle.write_config();
    let host_before = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();

    let out = run_stdout("utsns", &bundle);
    assert_eq!(out, format!("{hostname}\nberth.example\n"));
    let host_after = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(host_before, host_after, "the host's hostname changed");
}

#[test]
fn ipc_namespace_is_new_or_inherited() {
    require_root!();
    let host = fs::read_link("/proc/self/ns/ipc").unwrap();
    let host = host.to_str().unwrap();

    let bundle = script_bundle("readlink /proc/self/ns/ipc");
    let inside = run_stdout("ipcns", &bundle);
    assert!(inside.starts_with("ipc:["), "{inside}");
    assert_ne!(inside.trim(), host, "a new ipc namespace was asked for");

    // Not listed: the container stays in the runtime's namespace (config-linux.md).
    let mut bundle = script_bundle("readlink /proc/self/ns/ipc");
    remove_namespace(&mut bundle.config, "ipc");
    bundle.write_config();
    let inside = run_stdout("ipcns-host", &bundle);
    assert_eq!(inside.trim(), host);
}

#[test]
fn network_namespace_has_only_loopback() {
    require_root!();
    let bundle = script_bundle("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    let out = run_stdout("netns", &bundle);
    assert_eq!(out, "lo\n", "interfaces in a new network namespace");

    let mut bundle = script_bundle("readlink /proc/self/ns/net");
    remove_namespace(&mut bundle.config, "network");
    bundle.write_config();
    let inside = run_stdout("netns-host", &bundle);
    let host = fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(inside.trim(), host.to_str().unwrap());
}

#[test]
fn mount_namespace_keeps_container_mounts_off_the_host() {
    require_root!();
    let out_dir = TempDir::new();
    let mut bundle = script_bundle(
        "readlink /proc/self/ns/mnt > /out/ns; \
         awk '$5 == \"/berth-mnt\" { print $9 }' /proc/self/mountinfo > /out/fstype",
    );
    add_mount(
        &mut bundle.config,
        json!({"destination": "/berth-mnt", "type": "tmpfs", "source": "tmpfs"}),
    );
    bind_host_dir(&mut bundle.config, out_dir.path(), "/out");
    bundle.write_config();
    let rt = Runtime::new();
    let id = container_id("mntns", &bundle);
    let _guard = rt.guard(&id, &bundle);
    assert_create_ok(&rt, &id, &bundle);

    // While the container exists its mounts are in its own namespace only.
    let pid = init_pid(&rt, &id);
    let leaked: Vec<_> = support::mountinfo()
        .into_iter()
        .filter(|m| m.mount_point.starts_with(bundle.path()))
        .collect();
    assert!(
        leaked.is_empty(),
        "container mounts on the host: {leaked:?}"
    );
    let ours = fs::read_link("/proc/self/ns/mnt").unwrap();
    let theirs = fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_ne!(ours, theirs);

    assert_start_ok(&rt, &id);
    rt.wait_for_status(&id, "stopped", Duration::from_secs(10));
    let inside = fs::read_to_string(out_dir.path().join("ns")).unwrap();
    assert_eq!(Path::new(inside.trim()), theirs.as_path());
    assert_ne!(Path::new(inside.trim()), ours.as_path());
    let fstype = fs::read_to_string(out_dir.path().join("fstype")).unwrap();
    assert_eq!(fstype, "tmpfs\n", "the config's tmpfs is mounted inside");
}

#[test]
fn cgroup_namespace_roots_the_container_cgroup() {
    require_root!();
    let bundle = script_bundle("cat /proc/self/cgroup");
    let out = run_stdout("cgroupns", &bundle);
    assert!(!out.is_empty());
    for line in out.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        assert_eq!(path, "/", "cgroup line {line:?} in:\n{out}");
    }
}

/// lchown everything under `dir`, symlinks themselves included.
fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).unwrap();
    if fs::symlink_metadata(dir).unwrap().is_dir() {
        for entry in fs::read_dir(dir).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

#[test]
fn user_namespace_maps_ids() {
    require_root!();
    let mut bundle = script_bundle(
        "echo '== uid_map =='; cat /proc/self/uid_map; \
         echo '== gid_map =='; cat /proc/self/gid_map; \
         echo '== id =='; id -u; id -g; stat -c '%u:%g' /bin/busybox; \
         echo '== dev =='; stat -c '%t:%T' /dev/null; echo x > /dev/null && echo null-ok",
    );
    set_namespace(&mut bundle.config, "user", None);
    let mapping = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    bundle.config["linux"]["uidMappings"] = mapping.clone();
    bundle.config["linux"]["gidMappings"] = mapping;
    bundle.write_config();
    // The spec leaves the rootfs to the caller: owned by the mapped root, as an engine would.
    chown_tree(&bundle.rootfs(), 100000, 100000);

    let out = run_stdout("userns", &bundle);
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(words(section(&out, "uid_map")), ["0", "100000", "65536"]);
    assert_eq!(words(section(&out, "gid_map")), ["0", "100000", "65536"]);
    assert_eq!(section(&out, "id"), "0\n0\n0:0\n", "ids inside");
    // Device nodes cannot be made in a user namespace; they must still be the real ones.
    assert_eq!(section(&out, "dev"), "1:3\nnull-ok\n");
}

#[test]
fn time_namespace_applies_offsets() {
    require_root!();
    const YEAR: i64 = 86400 * 365;
    let mut bundle = script_bundle(
        "echo '== uptime =='; cut -d' ' -f1 /proc/uptime; \
         echo '== offsets =='; cat /proc/self/timens_offsets",
    );
    set_namespace(&mut bundle.config, "time", None);
    bundle.config["linux"]["timeOffsets"] = json!({
        "boottime": { "secs": YEAR, "nanosecs": 0 },
        "monotonic": { "secs": 2 * YEAR, "nanosecs": 0 }
    });
    bundle.write_config();

    let out = run_stdout("timens", &bundle);
    let uptime: f64 = section(&out, "uptime")
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("uptime: {e}:\n{out}"));
    assert!(
        uptime > YEAR as f64,
        "uptime inside {uptime} is not > 1 year"
    );
    let offsets: Vec<Vec<&str>> = section(&out, "offsets")
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let offset = |clock: &str| {
        offsets
            .iter()
            .find(|o| o.first() == Some(&clock))
            .map(|o| o[1..].join(" "))
            .unwrap_or_else(|| panic!("no {clock} offset in:\n{out}"))
    };
    assert_eq!(offset("boottime"), format!("{YEAR} 0"));
    assert_eq!(offset("monotonic"), format!("{} 0", 2 * YEAR));
}

#[test]
fn joining_a_uts_namespace_by_path() {
    require_root!();
    let rt = Runtime::new();
    let mut first = Bundle::busybox(&["sleep", "100"]);
    let first_host = format!("a-{}", first.dir.unique());
    first.config["hostname"] = json!(first_host);
    first.write_config();
    let first_id = container_id("uts-a", &first);
    let _first_guard = rt.guard(&first_id, &first);
    assert_create_ok(&rt, &first_id, &first);
    assert_start_ok(&rt, &first_id);
    rt.wait_for_status(&first_id, "running", Duration::from_secs(10));
    let pid = init_pid(&rt, &first_id);

    let mut second = script_bundle("hostname; readlink /proc/self/ns/uts");
    let path = format!("/proc/{pid}/ns/uts");
    set_namespace(&mut second.config, "uts", Some(&path));
    second.config.as_object_mut().unwrap().remove("hostname");
    second.write_config();
    let second_id = container_id("uts-b", &second);
    let _second_guard = rt.guard(&second_id, &second);
    let output = rt.run_container(&second_id, &second);
    assert_success(&output, "run of the joining container");
    let ns = fs::read_link(&path).unwrap();
    assert_eq!(
        stdout_text(&output),
        format!("{first_host}\n{}\n", ns.display())
    );
}

/// `ip netns add NAME`, and `ip netns del NAME` on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn add(name: String) -> Option<NetNs> {
        let output = Command::new("ip").args(["netns", "add", &name]).output();
        match output {
            Ok(o) if o.status.success() => Some(NetNs { name }),
            Ok(o) => panic!("ip netns add {name}: {}", stderr_text(&o)),
            Err(e) => {
                eprintln!("skipped: cannot run `ip` ({e}); install iproute2");
                None
            }
        }
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("ip netns del {}: {}", self.name, stderr_text(&o)),
            Err(e) => eprintln!("ip netns del {}: {e}", self.name),
        }
    }
}

#[test]
fn joining_a_network_namespace_by_path() {
    require_root!();
    let mut bundle = script_bundle("readlink /proc/self/ns/net");
    let Some(netns) = NetNs::add(format!("berth-test-{}", bundle.dir.unique())) else {
        return;
    };
    let path = netns.path();
    set_namespace(&mut bundle.config, "network", Some(path.to_str().unwrap()));
    bundle.write_config();
    let out = run_stdout("netns-join", &bundle);
    let inode = fs::metadata(&path).unwrap().ino();
    assert_eq!(out, format!("net:[{inode}]\n"));
}

// ---------------------------------------------------------------------------------------
// root
// ---------------------------------------------------------------------------------------

#[test]
fn readonly_root_refuses_writes() {
    require_root!();
    let mut bundle = script_bundle("touch /x 2>&1; echo \"rc=$?\"");
    bundle.config["root"]["readonly"] = json!(true);
    bundle.write_config();
    let out = run_stdout("root-ro", &bundle);
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.ends_with("rc=1\n"), "{out}");
    assert!(!bundle.rootfs().join("x").exists());

    // The program's exit status is run's.
    let bundle = Bundle::busybox(&["touch", "/x"]);
    let output = run_output("root-ro-status", &bundle, &[]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        describe_status(output.status)
    );
    assert!(
        stderr_text(&output).contains("Read-only file system"),
        "{}",
        stderr_text(&output)
    );
}

#[test]
fn writable_root_accepts_writes() {
    require_root!();
    let mut bundle = script_bundle("echo written > /x && cat /x");
    bundle.config["root"]["readonly"] = json!(false);
    bundle.write_config();
    let out = run_stdout("root-rw", &bundle);
    assert_eq!(out, "written\n");
    let on_host = fs::read_to_string(bundle.rootfs().join("x")).unwrap();
    assert_eq!(on_host, "written\n");
}

#[test]
fn no_pivot_makes_the_rootfs_root() {
    require_root!();
    let bundle = script_bundle(
        "cat /berth-marker; awk '$5 == \"/\" { print $4 }' /proc/self/mountinfo; ls /",
    );
    let marker = format!("marker-{}\n", bundle.dir.unique());
    fs::write(bundle.rootfs().join("berth-marker"), &marker).unwrap();
    let output = run_output("nopivot", &bundle, &["--no-pivot"]);
    assert_success(&output, "run --no-pivot");
    let out = stdout_text(&output);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(marker.trim_end()), "{out}");
    // The mount at / is the rootfs directory of the host filesystem.
    // (mountinfo's root field is relative to the filesystem the rootfs is on.)
    let rootfs = fs::canonicalize(bundle.rootfs()).unwrap();
    let roots: Vec<&str> = out
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with('/'))
        .collect();
    let root = roots.last().map(Path::new);
    assert!(
        root.is_some_and(|r| r != Path::new("/") && rootfs.ends_with(r.strip_prefix("/").unwrap())),
        "/ is not the rootfs {}:\n{out}",
        rootfs.display()
    );
    for dir in ["bin", "proc", "dev", "etc"] {
        assert!(out.lines().any(|l| l == dir), "no /{dir} in:\n{out}");
    }
}

const ROOT_MOUNT_LINE: &str = "awk '$5 == \"/\"' /proc/self/mountinfo";

#[test]
fn rootfs_propagation_rshared_makes_root_a_shared_mount() {
    require_root!();
    let mut bundle = script_bundle(ROOT_MOUNT_LINE);
    bundle.config["linux"]["rootfsPropagation"] = json!("rshared");
    bundle.write_config();
    let out = run_stdout("prop-shared", &bundle);
    let mounts = parse_mountinfo(&out);
    let root = mount_at(&mounts, "/");
    // config-linux.md: "the rootfs mount belongs to a new peer group".
    assert!(
        root.tags.iter().any(|t| t.starts_with("shared:")),
        "/ is not shared: {out}"
    );
}

#[test]
fn rootfs_propagation_default_is_not_shared() {
    require_root!();
    let bundle = script_bundle(ROOT_MOUNT_LINE);
    let out = run_stdout("prop-default", &bundle);
    let mounts = parse_mountinfo(&out);
    let root = mount_at(&mounts, "/");
    // runc's default is rslave: never a peer of anything, so nothing propagates out.
    assert!(
        !root.tags.iter().any(|t| t.starts_with("shared:")),
        "/ is shared by default: {out}"
    );
}

// ---------------------------------------------------------------------------------------
// mounts
// ---------------------------------------------------------------------------------------

#[test]
fn tmpfs_mount_takes_its_options() {
    require_root!();
    let mut bundle = script_bundle(
        "awk '$5 == \"/scratch\"' /proc/self/mountinfo; stat -c '%a' /scratch; \
         echo x > /scratch/f && echo write-ok",
    );
    add_mount(
        &mut bundle.config,
        json!({
            "destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=1770"]
        }),
    );
    bundle.write_config();
    let out = run_stdout("tmpfs", &bundle);
    let mounts = parse_mountinfo(&out);
    let m = mount_at(&mounts, "/scratch");
    assert_eq!(m.fs_type, "tmpfs");
    for opt in ["rw", "nosuid", "nodev", "noexec"] {
        assert!(m.options.iter().any(|o| o == opt), "no {opt}: {m:?}");
    }
    assert!(
        m.super_options.iter().any(|o| o == "size=1024k"),
        "size: {m:?}"
    );
    assert!(out.contains("\n1770\nwrite-ok\n"), "{out}");
}

#[test]
fn bind_mount_rw_writes_reach_the_host() {
    require_root!();
    let host = TempDir::new();
    fs::write(host.path().join("from-host"), "host data\n").unwrap();
    let mut bundle =
        script_bundle("cat /data/from-host; echo container data > /data/from-container");
    add_mount(
        &mut bundle.config,
        json!({"destination": "/data", "type": "bind", "source": host.path(), "options": ["rbind", "rw"]}),
    );
    bundle.write_config();
    let out = run_stdout("bind-rw", &bundle);
    assert_eq!(out, "host data\n");
    let written = fs::read_to_string(host.path().join("from-container")).unwrap();
    assert_eq!(written, "container data\n");
}

#[test]
fn bind_mount_ro_refuses_writes() {
    require_root!();
    let host = TempDir::new();
    fs::write(host.path().join("from-host"), "host data\n").unwrap();
    let mut bundle = script_bundle(
        "cat /data/from-host; echo x > /data/new; echo \"rc=$?\"; \
         awk '$5 == \"/data\" { print $6 }' /proc/self/mountinfo",
    );
    add_mount(
        &mut bundle.config,
        json!({"destination": "/data", "type": "bind", "source": host.path(), "options": ["bind", "ro"]}),
    );
    bundle.write_config();
    let output = run_output("bind-ro", &bundle, &[]);
    assert_success(&output, "run");
    let out = stdout_text(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"host data"), "{out}");
    assert_eq!(lines.get(1), Some(&"rc=1"), "{out}");
    assert!(
        stderr_text(&output).contains("Read-only file system"),
        "{}",
        stderr_text(&output)
    );
    let options = lines.last().unwrap_or(&"");
    assert!(options.split(',').any(|o| o == "ro"), "{out}");
    assert!(
        !host.path().join("new").exists(),
        "the write reached the host"
    );
}

#[test]
fn bind_mount_of_a_single_file() {
    require_root!();
    let host = TempDir::new();
    let file = host.path().join("file");
    fs::write(&file, "one file\n").unwrap();
    let mut bundle =
        script_bundle("cat /etc/berth-file; stat -c '%F' /etc/berth-file; cat /etc/hostname");
    for destination in ["/etc/berth-file", "/etc/hostname"] {
        add_mount(
            &mut bundle.config,
            json!({"destination": destination, "type": "bind", "source": file, "options": ["bind", "ro"]}),
        );
    }
    bundle.write_config();
    let out = run_stdout("bind-file", &bundle);
    assert_eq!(out, "one file\nregular file\none file\n");
    // The new mount point is a file made in the rootfs, and the host file is untouched.
    assert!(bundle.rootfs().join("etc/berth-file").is_file());
    assert_eq!(fs::read_to_string(&file).unwrap(), "one file\n");
}

#[test]
fn mounts_are_applied_in_order() {
    require_root!();
    let host = TempDir::new();
    fs::write(host.path().join("marker"), "bound\n").unwrap();
    let mut bundle =
        script_bundle("cat /a/b/marker; awk '$5 ~ \"^/a\" { print $5 }' /proc/self/mountinfo");
    add_mount(
        &mut bundle.config,
        json!({"destination": "/a", "type": "tmpfs", "source": "tmpfs"}),
    );
    add_mount(
        &mut bundle.config,
        json!({"destination": "/a/b", "type": "bind", "source": host.path(), "options": ["rbind"]}),
    );
    bundle.write_config();
    let out = run_stdout("order", &bundle);
    assert_eq!(out, "bound\n/a\n/a/b\n");
    // /a/b was made inside the tmpfs, not in the rootfs underneath it.
    assert!(bundle.rootfs().join("a").is_dir());
    assert!(!bundle.rootfs().join("a/b").exists());
}

#[test]
fn symlinks_in_mount_destinations_stay_in_the_rootfs() {
    require_root!();
    let mut bundle = script_bundle("awk '{ print $5, $9 }' /proc/self/mountinfo");
    let escape = format!("berth-escape-{}", bundle.dir.unique());
    let escape2 = format!("berth-escape2-{}", bundle.dir.unique());
    let host_paths = MustNotExist(vec![
        Path::new("/").join(&escape),
        Path::new("/").join(&escape2),
    ]);
    assert!(host_paths.existing().is_empty(), "left from an earlier run");
    symlink("/", bundle.rootfs().join("evil")).unwrap();
    symlink("../../../../..", bundle.rootfs().join("up")).unwrap();
    add_mount(
        &mut bundle.config,
        json!({"destination": format!("/evil/{escape}"), "type": "tmpfs", "source": "tmpfs"}),
    );
    add_mount(
        &mut bundle.config,
        json!({"destination": format!("/up/{escape2}"), "type": "tmpfs", "source": "tmpfs"}),
    );
    bundle.write_config();

    let output = run_output("escape", &bundle, &[]);
    let leaked = host_paths.existing();
    assert!(
        leaked.is_empty(),
        "mount destinations escaped the rootfs: {leaked:?}"
    );
    assert_success(&output, "run");
    let out = stdout_text(&output);
    for name in [&escape, &escape2] {
        let line = format!("/{name} tmpfs");
        assert!(
            out.lines().any(|l| l == line),
            "no tmpfs at /{name}:\n{out}"
        );
        assert!(
            bundle.rootfs().join(name).is_dir(),
            "{name} not made in the rootfs"
        );
    }
}

#[test]
fn dangling_symlink_mount_destination_fails_cleanly() {
    require_root!();
    let mut bundle = script_bundle("true");
    let target = format!("/berth-dangling-{}", bundle.dir.unique());
    let host_path = MustNotExist(vec![PathBuf::from(&target)]);
    symlink(&target, bundle.rootfs().join("dangling")).unwrap();
    add_mount(
        &mut bundle.config,
        json!({"destination": "/dangling", "type": "tmpfs", "source": "tmpfs"}),
    );
    bundle.write_config();
    let rt = Runtime::new();
    let id = container_id("dangling", &bundle);
    let _guard = rt.guard(&id, &bundle);

    let output = rt.create(&id, &bundle);
    assert!(host_path.existing().is_empty(), "{target} made on the host");
    assert_eq!(
        output.status.code(),
        Some(1),
        "create: {}\nstderr:\n{}",
        describe_status(output.status),
        stderr_text(&output)
    );
    assert!(
        stderr_text(&output).contains("dangling"),
        "the error should name the problem: {}",
        stderr_text(&output)
    );
    assert!(
        !rt.state_dir(&id).exists(),
        "state dir left after a failed create"
    );
    let cgroups_path = bundle.cgroups_path().unwrap();
    assert_eq!(host_cgroup_dirs(&cgroups_path), Vec::<PathBuf>::new());
    assert_eq!(pids_in_cgroup(&cgroups_path), Vec::<i32>::new());
    let state = rt.run(&["state", &id]);
    assert!(
        !state.status.success(),
        "state after a failed create: {}",
        stdout_text(&state)
    );
}

// ---------------------------------------------------------------------------------------
// /dev
// ---------------------------------------------------------------------------------------

#[test]
fn default_devices_exist() {
    require_root!();
    const DEVICES: &[(&str, &str)] = &[
        ("/dev/null", "1:3"),
        ("/dev/zero", "1:5"),
        ("/dev/full", "1:7"),
        ("/dev/random", "1:8"),
        ("/dev/urandom", "1:9"),
        ("/dev/tty", "5:0"),
    ];
    let paths: Vec<&str> = DEVICES.iter().map(|(p, _)| *p).collect();
    // busybox stat prints major and minor in hex (%t:%T); all of these are below 10.
    let bundle = script_bundle(&format!(
        "stat -c '%n %F %t:%T %a' {}; head -c 4 /dev/zero | wc -c",
        paths.join(" ")
    ));
    let out = run_stdout("devices", &bundle);
    let mut lines = out.lines();
    for (path, numbers) in DEVICES {
        let expected = format!("{path} character special file {numbers} 666");
        assert_eq!(lines.next(), Some(expected.as_str()), "{out}");
    }
    assert_eq!(lines.next().map(str::trim), Some("4"), "reading /dev/zero");
}

#[test]
fn dev_symlinks_exist() {
    require_root!();
    let bundle = script_bundle(
        "for l in ptmx fd stdin stdout stderr; do echo \"$l $(readlink /dev/$l)\"; done; \
         stat -c '%F' /dev/pts/ptmx",
    );
    let out = run_stdout("devlinks", &bundle);
    assert_eq!(
        out,
        "ptmx pts/ptmx\nfd /proc/self/fd\nstdin /proc/self/fd/0\n\
         stdout /proc/self/fd/1\nstderr /proc/self/fd/2\ncharacter special file\n"
    );
}

#[test]
fn configured_device_is_created() {
    require_root!();
    let mut bundle = script_bundle(
        "stat -c '%A %t:%T %u:%g' /dev/berthnull; echo x > /dev/berthnull && echo write-ok",
    );
    bundle.config["linux"]["devices"] = json!([{
        "path": "/dev/berthnull", "type": "c", "major": 1, "minor": 3,
        "fileMode": 0o640, "uid": 0, "gid": 5
    }]);
    bundle.write_config();
    let out = run_stdout("device", &bundle);
    assert_eq!(out, "crw-r----- 1:3 0:5\nwrite-ok\n");
}

// ---------------------------------------------------------------------------------------
// maskedPaths, readonlyPaths, sysctl
// ---------------------------------------------------------------------------------------

/// The paths of `candidates` that exist on this host (kernels differ: /proc/kcore needs
/// CONFIG_PROC_KCORE, /proc/sysrq-trigger CONFIG_MAGIC_SYSRQ). A runtime skips the missing
/// ones, as runc does.
fn existing_on_host<'a>(candidates: &[&'a str]) -> Vec<&'a str> {
    candidates
        .iter()
        .copied()
        .filter(|p| fs::symlink_metadata(p).is_ok())
        .collect()
}

#[test]
fn masked_paths_hide_contents() {
    require_root!();
    // Files from runc's default maskedPaths (all in Bundle::busybox's config).
    let files = existing_on_host(&["/proc/kcore", "/proc/keys", "/proc/timer_list"]);
    assert!(
        !files.is_empty(),
        "none of the masked files exists on this host"
    );
    let host_firmware = fs::read_dir("/sys/firmware")
        .map(|d| d.count())
        .unwrap_or(0);
    let mut script = String::new();
    for file in &files {
        script.push_str(&format!(
            "echo '== {file} =='; stat -c '%F %t:%T' {file}; cat {file} | wc -c; "
        ));
    }
    script.push_str(
        "echo '== /sys/firmware =='; ls -A /sys/firmware | wc -l; \
         touch /sys/firmware/x 2>/dev/null; echo \"rc=$?\"",
    );
    let bundle = script_bundle(&script);
    let out = run_stdout("masked", &bundle);
    // Files are covered with /dev/null, directories with an empty read-only tmpfs.
    for file in &files {
        let seen: Vec<&str> = section(&out, file).lines().map(str::trim).collect();
        assert_eq!(seen, ["character special file 1:3", "0"], "{file}:\n{out}");
    }
    let firmware: Vec<&str> = section(&out, "/sys/firmware")
        .lines()
        .map(str::trim)
        .collect();
    assert_eq!(firmware, ["0", "rc=1"], "{out}");
    if host_firmware == 0 {
        eprintln!("note: /sys/firmware is empty on this host; the mask check proves little");
    }
}

#[test]
fn readonly_paths_refuse_writes() {
    require_root!();
    // runc's default readonlyPaths (all in Bundle::busybox's config).
    let paths = existing_on_host(&[
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]);
    assert!(paths.contains(&"/proc/sys"), "no /proc/sys on this host");
    let bundle = script_bundle(
        "echo x > /proc/sys/kernel/domainname; echo \"rc=$?\"; \
         awk '{ print $5, $6 }' /proc/self/mountinfo",
    );
    let output = run_output("ro-paths", &bundle, &[]);
    assert_success(&output, "run");
    let out = stdout_text(&output);
    assert!(out.starts_with("rc=1\n"), "{out}");
    assert!(
        stderr_text(&output).contains("Read-only file system"),
        "{}",
        stderr_text(&output)
    );
    for path in paths {
        let line = out
            .lines()
            .rev()
            .find(|l| l.split(' ').next() == Some(path))
            .unwrap_or_else(|| panic!("{path} is not a mount:\n{out}"));
        let options = line.split(' ').nth(1).unwrap_or("");
        assert!(options.split(',').any(|o| o == "ro"), "{line}");
    }
}

#[test]
fn sysctls_apply_in_the_container_namespaces() {
    require_root!();
    let host_forward = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_shmmax = fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let mut bundle = script_bundle("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax");
    bundle.config["linux"]["sysctl"] = json!({
        "net.ipv4.ip_forward": "1",
        "kernel.shmmax": "123456789"
    });
    bundle.write_config();
    let out = run_stdout("sysctl", &bundle);
    assert_eq!(out, "1\n123456789\n");
    // Both are per-namespace: the host keeps its values.
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        host_shmmax
    );
}

// ---------------------------------------------------------------------------------------
// process
// ---------------------------------------------------------------------------------------

#[test]
fn process_args_are_passed_verbatim() {
    require_root!();
    let bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "printf '[%s]' \"$0\" \"$@\"",
        "zero",
        "a b",
        "",
        "*",
        "$HOME",
    ]);
    let out = run_stdout("args", &bundle);
    assert_eq!(out, "[zero][a b][][*][$HOME]");
}

#[test]
fn process_env_is_the_configs() {
    require_root!();
    let mut bundle = script_bundle("echo \"$BERTH_VAR\"; echo \"${CARGO:-unset}\"; echo \"$PATH\"");
    bundle.config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("BERTH_VAR=a value=with equals"));
    bundle.write_config();
    let out = run_stdout("env", &bundle);
    // Nothing of the runtime's own environment (cargo sets CARGO for tests) leaks in.
    assert_eq!(
        out,
        "a value=with equals\nunset\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
}

#[test]
fn process_cwd_is_the_configs() {
    require_root!();
    let mut bundle = script_bundle("pwd");
    bundle.config["process"]["cwd"] = json!("/etc");
    bundle.write_config();
    assert_eq!(run_stdout("cwd", &bundle), "/etc\n");
}

#[test]
fn process_cwd_is_created_when_missing() {
    require_root!();
    // runc makes a missing cwd (libcontainer/rootfs_linux.go: MkdirAll of the cwd) before
    // the root goes read-only.
    let mut bundle = script_bundle("pwd");
    bundle.config["process"]["cwd"] = json!("/work/dir");
    bundle.write_config();
    let output = run_output("cwd-missing", &bundle, &[]);
    assert_success(&output, "run with a cwd missing from the rootfs");
    assert_eq!(stdout_text(&output), "/work/dir\n");
}

#[test]
fn process_user_and_groups() {
    require_root!();
    let mut bundle = script_bundle(
        "grep -E '^(Uid|Gid|Groups):' /proc/self/status; echo '== id =='; id -u; id -g",
    );
    bundle.config["process"]["user"] =
        json!({ "uid": 1000, "gid": 1000, "additionalGids": [5, 2000] });
    bundle.write_config();
    let out = run_stdout("user", &bundle);
    assert_eq!(status_field(&out, "Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(status_field(&out, "Gid"), "1000\t1000\t1000\t1000");
    let mut groups: Vec<&str> = status_field(&out, "Groups").split_whitespace().collect();
    groups.sort();
    assert_eq!(
        groups,
        ["2000", "5"],
        "supplementary groups are exactly additionalGids"
    );
    assert_eq!(section(&out, "id"), "1000\n1000\n");
}

#[test]
fn process_umask() {
    require_root!();
    let mut bundle = script_bundle("umask");
    bundle.config["process"]["user"]["umask"] = json!(0o027);
    bundle.write_config();
    assert_eq!(run_stdout("umask", &bundle), "0027\n");

    // Unset: runc's 0022, whatever the runtime's own umask.
    let bundle = script_bundle("umask");
    assert_eq!(run_stdout("umask-default", &bundle), "0022\n");
}

#[test]
fn process_rlimits() {
    require_root!();
    let mut bundle =
        script_bundle("ulimit -n; ulimit -Hn; grep 'Max open files' /proc/self/limits");
    bundle.config["process"]["rlimits"] =
        json!([{ "type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024 }]);
    bundle.write_config();
    let out = run_stdout("rlimits", &bundle);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["512", "1024"], "{out}");
    let limits: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(limits[3..5], ["512", "1024"], "{out}");
}

const CAP_CHOWN: u64 = 1 << 0;
const CAP_KILL: u64 = 1 << 5;

#[test]
fn process_capabilities_for_root() {
    require_root!();
    let mut bundle = script_bundle("grep '^Cap' /proc/self/status");
    let caps = json!(["CAP_CHOWN", "CAP_KILL"]);
    bundle.config["process"]["capabilities"] =
        json!({ "bounding": caps, "effective": caps, "permitted": caps });
    bundle.write_config();
    let out = run_stdout("caps", &bundle);
    for key in ["CapBnd", "CapEff", "CapPrm"] {
        assert_eq!(cap_mask(&out, key), CAP_CHOWN | CAP_KILL, "{key}:\n{out}");
    }
    assert_eq!(cap_mask(&out, "CapInh"), 0, "{out}");
    assert_eq!(cap_mask(&out, "CapAmb"), 0, "{out}");
}

#[test]
fn process_capabilities_for_a_user_with_ambient() {
    require_root!();
    let mut bundle = script_bundle("grep '^Cap' /proc/self/status");
    let caps = json!(["CAP_KILL"]);
    bundle.config["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
    bundle.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": caps, "permitted": caps,
        "inheritable": caps, "ambient": caps
    });
    bundle.write_config();
    let out = run_stdout("caps-user", &bundle);
    assert_eq!(cap_mask(&out, "CapBnd"), CAP_CHOWN | CAP_KILL, "{out}");
    // Ambient capabilities survive the exec of a non-root program.
    for key in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(cap_mask(&out, key), CAP_KILL, "{key}:\n{out}");
    }
}

#[test]
fn no_new_privileges_true() {
    require_root!();
    let mut bundle = script_bundle("grep NoNewPrivs /proc/self/status");
    bundle.config["process"]["noNewPrivileges"] = json!(true);
    bundle.write_config();
    let out = run_stdout("nnp", &bundle);
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
}

#[test]
fn no_new_privileges_false() {
    require_root!();
    let ours = fs::read_to_string("/proc/self/status").unwrap();
    if status_field(&ours, "NoNewPrivs") != "0" {
        eprintln!("skipped: the test process has no_new_privs set; every child inherits it");
        return;
    }
    let mut bundle = script_bundle("grep NoNewPrivs /proc/self/status");
    bundle.config["process"]["noNewPrivileges"] = json!(false);
    bundle.write_config();
    let out = run_stdout("nnp-false", &bundle);
    assert_eq!(status_field(&out, "NoNewPrivs"), "0");
}

#[test]
fn oom_score_adj() {
    require_root!();
    let mut bundle = script_bundle("cat /proc/self/oom_score_adj");
    bundle.config["process"]["oomScoreAdj"] = json!(500);
    bundle.write_config();
    assert_eq!(run_stdout("oom", &bundle), "500\n");
}

// ---------------------------------------------------------------------------------------
// cgroups
// ---------------------------------------------------------------------------------------

#[test]
fn cgroups_v1_absolute_path_in_every_hierarchy() {
    require_root!();
    if cgroup_v2_only() {
        eprintln!("skipped: this host has only cgroup v2; the v1 placement check does not apply");
        return;
    }
    let bundle = Bundle::busybox(&["true"]);
    let cgroups_path = bundle.cgroups_path().unwrap();
    let rt = Runtime::new();
    let id = container_id("cg-v1", &bundle);
    let _guard = rt.guard(&id, &bundle);
    assert_create_ok(&rt, &id, &bundle);
    let pid = init_pid(&rt, &id);
    let lines = proc_cgroups(pid);

    let v1_mounts = support::mountinfo()
        .into_iter()
        .filter(|m| m.fs_type == "cgroup")
        .count();
    let v1: Vec<_> = lines.iter().filter(|(c, _)| !c.is_empty()).collect();
    assert!(!v1.is_empty() && v1.len() <= v1_mounts, "{lines:?}");
    for (controllers, path) in &v1 {
        assert_eq!(path, &cgroups_path, "hierarchy {controllers}: {lines:?}");
    }
    // On a hybrid host runc also places the init in the (controller-less) v2 tree.
    if let Some((_, path)) = lines.iter().find(|(c, _)| c.is_empty()) {
        assert_eq!(path, &cgroups_path, "v2 tree: {lines:?}");
    }
}

/// Removes cgroup directories a test expects the runtime to have removed, innermost first.
struct CgroupDirs(Vec<PathBuf>);

impl CgroupDirs {
    fn existing(&self) -> Vec<&PathBuf> {
        self.0.iter().filter(|d| d.is_dir()).collect()
    }
}

impl Drop for CgroupDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = fs::remove_dir(dir);
        }
    }
}

#[test]
fn cgroups_v1_relative_path_is_under_our_own_cgroup() {
    require_root!();
    if cgroup_v2_only() {
        eprintln!("skipped: this host has only cgroup v2; the v1 placement check does not apply");
        return;
    }
    let mut bundle = Bundle::busybox(&["true"]);
    let relative = format!("berth-rel-{}", bundle.dir.unique());
    bundle.config["linux"]["cgroupsPath"] = json!(relative);
    bundle.write_config();

    // Our cgroup in each hierarchy: the runtime we start inherits it.
    let ours = proc_cgroups(std::process::id() as i32);
    let expected = |controllers: &str| -> String {
        let own = ours
            .iter()
            .find(|(c, _)| c == controllers)
            .map(|(_, p)| p.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| panic!("we are in no {controllers:?} cgroup: {ours:?}"));
        format!("{own}/{relative}")
    };
    // Where the directories should be (our cgroup in the hierarchy, plus the relative path)
    // and where a runtime that ignored our cgroup would put them (the hierarchy's root):
    // all must be gone after delete. Candidates, not checked for existence: a name with
    // our unique suffix is ours wherever it turns up.
    let mut dirs = Vec::new();
    for mount in support::mountinfo() {
        if mount.fs_type != "cgroup" && mount.fs_type != "cgroup2" {
            continue;
        }
        dirs.push(mount.mount_point.join(&relative));
        for (_, own) in &ours {
            dirs.push(
                mount
                    .mount_point
                    .join(own.trim_start_matches('/'))
                    .join(&relative),
            );
        }
    }
    let cleanup = CgroupDirs(dirs);

    let rt = Runtime::new();
    let id = container_id("cg-rel", &bundle);
    {
        let _guard = rt.guard(&id, &bundle);
        assert_create_ok(&rt, &id, &bundle);
        let pid = init_pid(&rt, &id);
        let lines = proc_cgroups(pid);
        for (controllers, path) in lines.iter().filter(|(c, _)| !c.is_empty()) {
            assert_eq!(
                path,
                &expected(controllers),
                "hierarchy {controllers}: {lines:?}"
            );
        }
    }
    // The guard deleted the container; its directories go with it wherever they were.
    let left = cleanup.existing();
    assert!(
        left.is_empty(),
        "cgroup directories left after delete: {left:?}"
    );
}

#[test]
fn cgroups_v2_path() {
    require_root!();
    if !cgroup_v2_only() {
        eprintln!(
            "skipped: this host has cgroup v1 controllers (hybrid or legacy layout); \
             the unified-only placement check does not apply"
        );
        return;
    }
    let bundle = Bundle::busybox(&["true"]);
    let cgroups_path = bundle.cgroups_path().unwrap();
    let rt = Runtime::new();
    let id = container_id("cg-v2", &bundle);
    let _guard = rt.guard(&id, &bundle);
    assert_create_ok(&rt, &id, &bundle);
    let pid = init_pid(&rt, &id);
    let lines = proc_cgroups(pid);
    assert_eq!(lines, vec![(String::new(), cgroups_path)]);
}

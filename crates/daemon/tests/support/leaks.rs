//! A leak checker: what one engine under test holds on the host — mounts under its
//! directory, the cgroups of its containers, its bridge and its containers' veths, its
//! nftables/iptables rules, processes started with its directory in their command line
//! (berthd itself excepted) and the files under its directory — taken before a test and
//! compared after. Other tests run in parallel in this process and on this host, so only
//! what can be traced to the engine is recorded: its bridge name, its directory, and the
//! ids of its containers (those its API lists, those in its data root and every container
//! id its log ever named, so that removed containers are still traced).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use super::engine::Engine;

/// What to leave out of a comparison: entries containing any of these substrings.
#[derive(Default, Clone)]
pub struct Ignore {
    pub patterns: Vec<String>,
}

impl Ignore {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn with(patterns: &[&str]) -> Self {
        Self {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn skips(&self, entry: &str) -> bool {
        self.patterns.iter().any(|p| entry.contains(p.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSnapshot {
    /// Container ids of the engine known when the snapshot was taken.
    pub ids: BTreeSet<String>,
    pub mounts: BTreeSet<String>,
    pub cgroups: BTreeSet<String>,
    pub links: BTreeSet<String>,
    pub nft: BTreeSet<String>,
    pub iptables: BTreeSet<String>,
    pub processes: BTreeSet<String>,
    pub files: BTreeSet<String>,
}

/// Files under the engine's directory that change in the normal course of things.
const ALWAYS_IGNORED_FILES: &[&str] = &["berthd.log", "docker-config"];

impl HostSnapshot {
    /// Everything on the host traced to `engine`.
    pub fn of(engine: &Engine) -> Self {
        Self::of_with_ids(engine, &[])
    }

    /// As [`HostSnapshot::of`], also tracing the containers with these ids (or prefixes of
    /// ids of 12 hex digits or more).
    pub fn of_with_ids(engine: &Engine, extra_ids: &[&str]) -> Self {
        let dir = engine.dir.path();
        let ids = engine_ids(engine, extra_ids);

        let mounts = super::engine::mounts_under(dir).into_iter().collect();

        let cgroups = berth_cgroups()
            .into_iter()
            .filter(|p| ids.iter().any(|id| p.contains(id.as_str())))
            .collect();

        let bridge = engine.bridge.as_str();
        let links = run_lines("ip", &["-o", "link"])
            .into_iter()
            .filter_map(|l| {
                // "7: name@peer: <FLAGS> ... master br0 ..."
                let name = l.split(':').nth(1)?.trim().split('@').next()?.to_string();
                let mastered = l.contains(&format!(" master {bridge} "));
                // A container's veths on every network it is on, found from its id.
                let its_veth = ids
                    .iter()
                    .any(|id| berth_network::bridge_network::is_veth_of(&name, id));
                (name == bridge || mastered || its_veth).then_some(name)
            })
            .collect();

        let ours = |line: &str| {
            line.contains(&format!("berth:net={bridge}"))
                || line.contains(&format!("\"{bridge}\""))
                || line.contains(&format!(" {bridge} "))
                || ids
                    .iter()
                    .any(|id| line.contains(&format!("berth:ctr={id}")))
        };
        let nft = run_lines("nft", &["list", "ruleset"])
            .into_iter()
            .filter(|l| l.contains("berth") && ours(l))
            .map(|l| l.trim().to_string())
            .collect();
        let iptables = run_lines("iptables-save", &[])
            .into_iter()
            .filter(|l| l.contains("BERTH") && ours(l))
            .collect();

        let processes = processes_mentioning(dir, engine.daemon_pid());
        let files = files_under(dir);

        Self {
            ids,
            mounts,
            cgroups,
            links,
            nft,
            iptables,
            processes,
            files,
        }
    }

    /// The differences to `after`, one line each (`+` appeared, `-` disappeared), entries
    /// matching `ignore` left out; empty when nothing changed.
    pub fn diff(&self, after: &HostSnapshot, ignore: &Ignore) -> Vec<String> {
        let mut lines = Vec::new();
        let kinds: [(&str, &BTreeSet<String>, &BTreeSet<String>); 7] = [
            ("mount", &self.mounts, &after.mounts),
            ("cgroup", &self.cgroups, &after.cgroups),
            ("link", &self.links, &after.links),
            ("nft", &self.nft, &after.nft),
            ("iptables", &self.iptables, &after.iptables),
            ("process", &self.processes, &after.processes),
            ("file", &self.files, &after.files),
        ];
        for (kind, before, now) in kinds {
            let ignored = |e: &String| {
                ignore.skips(e)
                    || (kind == "file"
                        && ALWAYS_IGNORED_FILES
                            .iter()
                            .any(|p| e.starts_with(p) || e.starts_with(&format!("d {p}"))))
            };
            for gone in before.difference(now).filter(|e| !ignored(e)) {
                lines.push(format!("- {kind}: {gone}"));
            }
            for new in now.difference(before).filter(|e| !ignored(e)) {
                lines.push(format!("+ {kind}: {new}"));
            }
        }
        lines
    }

    /// [`diff`](Self::diff) against a snapshot of `engine` now (tracing also `ids`), taken
    /// again for up to five seconds while the only differences are container veths that
    /// appeared: a stopped container's veth goes with its network namespace, which the
    /// kernel tears down asynchronously after berthd removed it. Anything else counts at
    /// once, and a veth still there after the wait is a leak.
    ///
    /// A container veth that was there before and is gone now is no difference: the
    /// baseline caught an earlier container's namespace mid-teardown.
    pub fn settled_diff(&self, engine: &Engine, ids: &[&str], ignore: &Ignore) -> Vec<String> {
        settled(
            || {
                let mut diff = self.diff(&HostSnapshot::of_with_ids(engine, ids), ignore);
                diff.retain(|l| !is_veth_line(l, "- link: "));
                diff
            },
            "+ link: ",
        )
    }

    /// Panics with a readable diff if `after` differs from this snapshot.
    #[track_caller]
    pub fn assert_same_as(&self, after: &HostSnapshot, ignore: &Ignore) {
        let diff = self.diff(after, ignore);
        if !diff.is_empty() {
            let shown = diff.len().min(80);
            panic!(
                "host state changed ({} differences{}):\n{}",
                diff.len(),
                if shown < diff.len() {
                    format!(", first {shown} shown")
                } else {
                    String::new()
                },
                diff[..shown].join("\n")
            );
        }
    }

    /// Takes a snapshot of `engine` now (tracing also the ids this one knew) and asserts
    /// it is the same as this one.
    #[track_caller]
    pub fn assert_no_leaks(&self, engine: &Engine, ignore: &Ignore) {
        let ids: Vec<&str> = self.ids.iter().map(String::as_str).collect();
        let diff = self.settled_diff(engine, &ids, ignore);
        if !diff.is_empty() {
            panic!(
                "leaks of engine {} ({} differences):\n{}\n--- berthd log (tail) ---\n{}",
                engine.dir.path().display(),
                diff.len(),
                diff[..diff.len().min(80)].join("\n"),
                tail(&engine.log(), 60)
            );
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The engine's container ids: from its API (if the daemon runs), its data root and its log.
fn engine_ids(engine: &Engine, extra: &[&str]) -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = extra.iter().map(|s| s.to_string()).collect();
    if engine.daemon_pid().is_some() {
        let list = engine.request("GET", "/containers/json?all=1", None);
        if list.status == 200 {
            for c in list.json().as_array().cloned().unwrap_or_default() {
                if let Some(id) = c["Id"].as_str() {
                    ids.insert(id.to_string());
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(engine.data_root().join("containers")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_id(&name) {
                ids.insert(name);
            }
        }
    }
    ids.extend(hex_ids_in(&engine.log()));
    ids
}

fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Every run of exactly 64 lower-case hex digits in `text`.
fn hex_ids_in(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || (b'a'..=b'f').contains(&bytes[i])) {
            i += 1;
        }
        if i - start == 64 {
            ids.insert(text[start..i].to_string());
        }
        if i == start {
            i += 1;
        }
    }
    ids
}

/// Directories named `berth*` within three levels of /sys/fs/cgroup (v1 hierarchies and
/// v2) and every directory below them.
fn berth_cgroups() -> Vec<String> {
    let mut out = Vec::new();
    for top in run_lines(
        "find",
        &[
            "/sys/fs/cgroup",
            "-maxdepth",
            "3",
            "-type",
            "d",
            "-name",
            "berth*",
        ],
    ) {
        out.extend(run_lines("find", &[&top, "-mindepth", "1", "-type", "d"]));
    }
    out.sort();
    out.dedup();
    out
}

/// `pid cmdline` of every process whose command line mentions `dir`, but `except`.
fn processes_mentioning(dir: &Path, except: Option<u32>) -> BTreeSet<String> {
    let needle = dir.display().to_string();
    let mut out = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if Some(pid) == except || pid == std::process::id() {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if !cmdline.contains(&needle) {
            continue;
        }
        // The docker CLI of a parallel thread of the same test is no leak.
        if cmdline.starts_with("docker ") {
            continue;
        }
        out.insert(format!("{pid} {}", cmdline.trim_end()));
    }
    out
}

/// Every entry under `dir` (relative, `d ` prefixed for directories), not descending into
/// other file systems (mounted rootfs, nsfs bind mounts) nor into the image store.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return out;
    };
    walk(dir, dir, root.dev(), &mut out);
    out
}

fn walk(root: &Path, dir: &Path, dev: u64, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            out.insert(format!("d {rel}"));
            // The data root may be a tmpfs of its own (a test that fills it): still ours.
            if rel == "data" {
                walk(root, &path, meta.dev(), out);
            } else if meta.dev() == dev && !is_image_store(&rel) {
                walk(root, &path, dev, out);
            }
        } else {
            out.insert(rel);
        }
    }
}

/// Content and layers of images: large, and not what containers leak.
fn is_image_store(rel: &str) -> bool {
    ["data/content", "data/layers", "data/blobs"].contains(&rel)
}

fn run_lines(program: &str, args: &[&str]) -> Vec<String> {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Ends what the engine left behind once its daemon is stopped: the processes in its
/// containers' cgroups and those started with its directory in their command line (shims),
/// then removes those cgroups. Only for the engine's own things (see the module doc).
/// Returns what it found, for the cleanup message.
pub fn reap(engine: &Engine) -> Vec<String> {
    let snap = HostSnapshot::of(engine);
    let mut found = Vec::new();
    let mut pids = Vec::new();
    for cg in &snap.cgroups {
        let procs = std::fs::read_to_string(format!("{cg}/cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()));
    }
    for p in &snap.processes {
        found.push(format!("process {p}"));
        if let Some(pid) = p.split(' ').next().and_then(|p| p.parse::<i32>().ok()) {
            pids.push(pid);
        }
    }
    pids.sort();
    pids.dedup();
    for pid in &pids {
        // SAFETY: kill(2) with a pid that is in this engine's cgroups or runs its shim.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while pids
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}/cgroup")).exists() && !is_zombie(*p))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Deepest first.
    for cg in snap.cgroups.iter().rev() {
        found.push(format!("cgroup {cg}"));
        let _ = std::fs::remove_dir(cg);
    }
    // Runtime state of containers the daemon no longer knows (all, when it is stopped).
    let listed = if engine.daemon_pid().is_some() {
        engine_ids(engine, &[])
            .into_iter()
            .filter(|id| {
                engine
                    .request("GET", &format!("/containers/{id}/json"), None)
                    .status
                    == 200
            })
            .collect()
    } else {
        BTreeSet::new()
    };
    if let Ok(entries) = std::fs::read_dir(engine.exec_root().join("runtime")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_id(&name) && !listed.contains(&name) {
                found.push(format!("runtime state {name}"));
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    found
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 2..].split(' ').next().map(|st| st == "Z"))
        })
        .unwrap_or(true)
}

/// What a stopped engine must not hold after its containers were removed through the API:
/// a container's veth (a link of its bridge, or one named after a container id) or a
/// firewall rule of a container. The bridge and its network-wide rules stay until teardown.
/// Container veths get the kernel's asynchronous namespace teardown as in
/// [`HostSnapshot::settled_diff`].
pub fn container_endpoints_left(engine: &Engine) -> Vec<String> {
    let left = || {
        let snap = HostSnapshot::of(engine);
        let links = snap
            .links
            .iter()
            .filter(|l| **l != engine.bridge)
            .map(|l| format!("link {l}"));
        let rules = snap
            .nft
            .iter()
            .chain(&snap.iptables)
            .filter(|r| r.contains("berth:ctr="))
            .map(|r| format!("rule {r}"));
        links.chain(rules).collect()
    };
    settled(left, "link ")
}

/// `lines()` again, for up to five seconds, while all it lists are container veths
/// (`veth_prefix` and a veth's name): the kernel's namespace teardown removes those.
fn settled(mut lines: impl FnMut() -> Vec<String>, veth_prefix: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let found = lines();
        let only_veths = found.iter().all(|l| is_veth_line(l, veth_prefix));
        if found.is_empty() || !only_veths || std::time::Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `line` is `prefix` and a container veth's name.
fn is_veth_line(line: &str, prefix: &str) -> bool {
    line.strip_prefix(prefix)
        .is_some_and(berth_network::bridge_network::is_veth_name)
}

/// An engine that has run one container already, so that what it sets up once (its
/// bridge, its firewall base rules, its directories) is in the baseline snapshot.
pub fn warm_engine() -> (Engine, HostSnapshot) {
    let engine = Engine::start();
    super::cli::ok(&engine, &["run", "--rm", "busybox", "true"]);
    let before = HostSnapshot::of(&engine);
    (engine, before)
}

//! Faults injected into a real berthd and its shims (issue 9): SIGKILL of the daemon with
//! running containers, during create and during start; SIGKILL of a shim; two clients
//! racing for one name; a hundred containers started and removed at once; a daemon restart
//! under a published port; a soak of `run --rm` and API requests under which berthd's
//! memory and descriptors stay flat. Each test compares the host before and after with
//! the leak checker (support/leaks.rs): whatever the engine made must be gone.

mod support;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use support::cli::{err, fetch, ok, out};
use support::engine::Engine;
use support::leaks::{warm_engine, HostSnapshot, Ignore};

#[track_caller]
fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn inspect(engine: &Engine, format: &str, id: &str) -> String {
    out(&engine.docker(&["inspect", "-f", format, id]))
        .trim()
        .to_string()
}

fn alive(pid: i32) -> bool {
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// The parent pid of `pid`, from /proc/<pid>/stat.
fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    rest.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("ppid")
}

/// Every container of the engine as (id, state), from the API.
fn states(engine: &Engine) -> Vec<(String, String)> {
    let list = engine.request("GET", "/containers/json?all=1", None);
    assert_eq!(list.status, 200, "{}", list.text());
    list.json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["Id"].as_str().unwrap_or_default().to_string(),
                c["State"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn sigkill_of_the_daemon_leaves_containers_running() {
    let (mut engine, before) = warm_engine();
    let a = ok(
        &engine,
        &["run", "-d", "--name", "alpha", "busybox", "sleep", "300"],
    );
    let b = ok(
        &engine,
        &["run", "-d", "--name", "beta", "busybox", "sleep", "300"],
    );
    let pids: Vec<i32> = [a.trim(), b.trim()]
        .iter()
        .map(|id| inspect(&engine, "{{.State.Pid}}", id).parse().unwrap())
        .collect();

    engine.kill_daemon();
    std::thread::sleep(Duration::from_millis(300));
    for pid in &pids {
        assert!(alive(*pid), "container process {pid} died with the daemon");
    }

    engine.start_daemon();
    let ps = ok(&engine, &["ps", "--format", "{{.Names}} {{.Status}}"]);
    for name in ["alpha", "beta"] {
        assert!(
            ps.lines().any(|l| l.starts_with(&format!("{name} Up"))),
            "{name} not running after the restart:\n{ps}\n{}",
            engine.log()
        );
    }
    for (id, pid) in [a.trim(), b.trim()].iter().zip(&pids) {
        assert_eq!(
            inspect(&engine, "{{.State.Running}} {{.State.Pid}}", id),
            format!("true {pid}")
        );
    }
    ok(&engine, &["stop", "-t", "1", "alpha"]);
    assert_eq!(inspect(&engine, "{{.State.Status}}", "alpha"), "exited");
    for pid in &pids[..1] {
        wait_for("alpha's process to end", 10, || !alive(*pid));
    }
    ok(&engine, &["rm", "alpha"]);
    ok(&engine, &["rm", "-f", "beta"]);
    assert_eq!(ok(&engine, &["ps", "-aq"]), "");
    before.assert_no_leaks(&engine, &Ignore::none());
}

#[test]
fn sigkill_of_a_shim_reports_the_container_exited() {
    let (engine, before) = warm_engine();
    let id = ok(
        &engine,
        &["run", "-d", "--name", "victim", "busybox", "sleep", "300"],
    );
    let id = id.trim();
    let pid: i32 = inspect(&engine, "{{.State.Pid}}", id).parse().unwrap();
    let shim = parent_of(pid);
    let cmdline = std::fs::read(format!("/proc/{shim}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("shim"),
        "parent {shim} of {pid} is no shim: {}",
        String::from_utf8_lossy(&cmdline)
    );
    assert_eq!(unsafe { libc::kill(shim, libc::SIGKILL) }, 0);

    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        last = inspect(&engine, "{{.State.Status}} {{.State.ExitCode}}", id);
        if !last.starts_with("running") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        last,
        "exited 137",
        "state after the shim died\n--- berthd log ---\n{}",
        engine.log()
    );
    let mut problems = Vec::new();
    if inspect(&engine, "{{.State.Error}}", id).is_empty() {
        problems.push("exited 137 but no State.Error says the shim died".to_string());
    }
    // The container's own process must not outlive its shim.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(&engine, &["rm", "victim"]);
    if alive(pid) {
        let diff = before.settled_diff(&engine, &[id], &Ignore::none());
        problems.push(format!(
            "the container's process {pid} outlived its shim and `docker rm`; left then:\n{}",
            diff.join("\n")
        ));
        // It is this test's own container: end it and remove its cgroups.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_for("the orphaned container process to end", 10, || !alive(pid));
        for cg in HostSnapshot::of_with_ids(&engine, &[id])
            .cgroups
            .iter()
            .rev()
        {
            let _ = std::fs::remove_dir(cg);
        }
    }
    let leaks = before.settled_diff(&engine, &[id], &Ignore::none());
    if !leaks.is_empty() {
        problems.push(format!("left behind:\n{}", leaks.join("\n")));
    }
    assert!(
        problems.is_empty(),
        "{}\n--- berthd log (tail) ---\n{}",
        problems.join("\n"),
        engine
            .log()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Runs `docker args` in a thread and SIGKILLs the daemon `delay` after it began.
fn kill_during(engine: &mut Engine, args: &[&str], delay: Duration) {
    let sock = engine.sock.clone();
    let config = engine.dir.path().join("docker-config");
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let client = std::thread::spawn(move || {
        std::process::Command::new("docker")
            .args(&args)
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .env("DOCKER_CONFIG", config)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("docker")
    });
    std::thread::sleep(delay);
    engine.kill_daemon();
    let _ = client.join();
}

#[track_caller]
fn assert_consistent(engine: &Engine, round: &str, before: &HostSnapshot, leaks: &mut Vec<String>) {
    let listed = states(engine);
    for (id, state) in &listed {
        assert!(
            ["running", "created", "exited"].contains(&state.as_str()),
            "{round}: container {id} is {state:?} after the restart\n{}",
            engine.log()
        );
        let o = engine.docker(&["rm", "-f", id]);
        assert!(
            o.status.success(),
            "{round}: rm -f {id} ({state}) failed: {}\n{}",
            err(&o),
            engine.log()
        );
    }
    assert_eq!(ok(engine, &["ps", "-aq"]), "", "{round}");
    // Leaks are gathered over all rounds, so one failure shows every round that leaks.
    let ids: Vec<&str> = before
        .ids
        .iter()
        .chain(listed.iter().map(|(id, _)| id))
        .map(String::as_str)
        .collect();
    let diff = before.settled_diff(engine, &ids, &Ignore::none());
    if !diff.is_empty() {
        let states: Vec<String> = listed
            .iter()
            .map(|(id, s)| format!("{:.12} {s}", id))
            .collect();
        let log = engine.log();
        let about: Vec<&str> = log
            .lines()
            .filter(|l| listed.iter().any(|(id, _)| l.contains(&id[..12])))
            .collect();
        leaks.push(format!(
            "{round} (listed after restart: {states:?}):\n{}\nberthd on it:\n{}",
            diff.join("\n"),
            about[about.len().saturating_sub(30)..].join("\n")
        ));
        // Later rounds compare against a clean host again.
        support::leaks::reap(engine);
    }
}

#[test]
fn sigkill_of_the_daemon_during_create_and_start() {
    let (mut engine, before) = warm_engine();
    let delays = [0u64, 5, 15, 40, 80, 150];
    let mut leaks = Vec::new();

    // Right after a create has returned.
    let id = ok(&engine, &["create", "busybox", "sleep", "300"]);
    engine.kill_daemon();
    engine.start_daemon();
    assert_eq!(
        inspect(&engine, "{{.State.Status}}", id.trim()),
        "created",
        "{}",
        engine.log()
    );
    ok(&engine, &["start", id.trim()]);
    assert_consistent(&engine, "after create", &before, &mut leaks);

    // During a create.
    for ms in delays {
        kill_during(
            &mut engine,
            &["create", "busybox", "sleep", "300"],
            Duration::from_millis(ms),
        );
        engine.start_daemon();
        assert_consistent(
            &engine,
            &format!("create, killed after {ms} ms"),
            &before,
            &mut leaks,
        );
    }

    // During a start.
    for ms in delays {
        let id = ok(&engine, &["create", "busybox", "sleep", "300"]);
        kill_during(
            &mut engine,
            &["start", id.trim()],
            Duration::from_millis(ms),
        );
        engine.start_daemon();
        assert_consistent(
            &engine,
            &format!("start, killed after {ms} ms"),
            &before,
            &mut leaks,
        );
    }

    // During a run (create, attach, start).
    for ms in delays {
        kill_during(
            &mut engine,
            &["run", "-d", "busybox", "sleep", "300"],
            Duration::from_millis(ms),
        );
        engine.start_daemon();
        assert_consistent(
            &engine,
            &format!("run, killed after {ms} ms"),
            &before,
            &mut leaks,
        );
    }
    assert!(
        leaks.is_empty(),
        "{} of the rounds leaked:\n{}",
        leaks.len(),
        leaks.join("\n\n")
    );
    before.assert_no_leaks(&engine, &Ignore::none());
}

#[test]
fn two_clients_racing_for_one_name() {
    let (engine, before) = warm_engine();
    for round in 0..5 {
        let name = format!("racer{round}");
        let path = format!("/containers/create?name={name}");
        let barrier = Barrier::new(2);
        let mut statuses: Vec<u16> = std::thread::scope(|s| {
            let clients: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        engine
                            .request("POST", &path, Some(r#"{"Image":"busybox","Cmd":["true"]}"#))
                            .status
                    })
                })
                .collect();
            clients.into_iter().map(|c| c.join().unwrap()).collect()
        });
        statuses.sort();
        assert_eq!(statuses, [201, 409], "round {round}\n{}", engine.log());
        let list = states(&engine);
        assert_eq!(list.len(), 1, "round {round}: {list:?}");
        ok(&engine, &["rm", &name]);
    }
    before.assert_no_leaks(&engine, &Ignore::none());
}

/// Runs `f(worker)` on `workers` threads at once; the failures they report, together.
fn on_workers(workers: usize, f: impl Fn(usize) -> Vec<String> + Sync) -> Vec<String> {
    let barrier = Barrier::new(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    f(w)
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec!["a worker panicked".into()])
            })
            .collect()
    })
}

#[test]
fn a_hundred_containers_started_and_removed_at_once() {
    let (engine, before) = warm_engine();
    const WORKERS: usize = 10;
    const EACH: usize = 10;
    let started = Instant::now();
    let name = |w: usize, i: usize| format!("many{w}x{i}");
    let failures = on_workers(WORKERS, |w| {
        let mut failures = Vec::new();
        for i in 0..EACH {
            let o = engine.docker(&[
                "run",
                "-d",
                "--name",
                &name(w, i),
                "busybox",
                "sleep",
                "300",
            ]);
            if !o.status.success() {
                failures.push(format!("run {}: {}", name(w, i), err(&o)));
            }
        }
        failures
    });
    assert!(
        failures.is_empty(),
        "{} failures:\n{}\n--- berthd log ---\n{}",
        failures.len(),
        failures.join("\n"),
        engine.log()
    );
    // All of them up at once, each with its own process.
    let running = states(&engine);
    assert_eq!(running.len(), WORKERS * EACH, "{running:?}");
    assert!(running.iter().all(|(_, s)| s == "running"), "{running:?}");
    let failures = on_workers(WORKERS, |w| {
        let mut failures = Vec::new();
        for i in 0..EACH {
            let o = engine.docker(&["rm", "-f", &name(w, i)]);
            if !o.status.success() {
                failures.push(format!("rm -f {}: {}", name(w, i), err(&o)));
            }
        }
        failures
    });
    let took = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}\n--- berthd log ---\n{}",
        failures.len(),
        failures.join("\n"),
        engine.log()
    );
    eprintln!("100 containers run and removed by {WORKERS} clients at once in {took:?}");
    assert_eq!(ok(&engine, &["ps", "-aq"]), "");
    before.assert_no_leaks(&engine, &Ignore::none());
}

/// berthd's resident memory (VmRSS, kB) and open descriptors.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count();
    (rss, fds)
}

/// `count` API requests over `threads` clients (one connection each), cycling through
/// reads a client makes all the time, spread evenly over `over`; the failures.
fn hammer(engine: &Engine, threads: usize, count: usize, over: Duration) -> Vec<String> {
    const PATHS: &[&str] = &[
        "/_ping",
        "/version",
        "/containers/json?all=1",
        "/images/json",
        "/containers/steady/json",
        "/info",
        "/containers/steady/stats?stream=false&one-shot=true",
        "/networks",
    ];
    let began = Instant::now();
    let gap = over / (count / threads).max(1) as u32;
    on_workers(threads, |w| {
        let mut failures = Vec::new();
        for (n, i) in (w..count).step_by(threads).enumerate() {
            if let Some(wait) = (gap * n as u32).checked_sub(began.elapsed()) {
                std::thread::sleep(wait);
            }
            let path = PATHS[i % PATHS.len()];
            let r = engine.request("GET", path, None);
            if r.status != 200 {
                failures.push(format!("GET {path}: {} {}", r.status, r.text()));
            }
        }
        failures
    })
}

/// `docker run --rm` in a loop until `until`; the number of runs and the failures.
fn run_rm_loop(engine: &Engine, until: Instant) -> (usize, Vec<String>) {
    let mut runs = 0;
    let mut failures = Vec::new();
    while Instant::now() < until {
        let o = engine.docker(&["run", "--rm", "busybox", "echo", "soak"]);
        runs += 1;
        if !o.status.success() || out(&o) != "soak\n" {
            failures.push(format!("run --rm #{runs}: {} {:?}", err(&o), out(&o)));
        }
    }
    (runs, failures)
}

/// Load: `run --rm` in a loop for BERTH_SOAK_SECS (30 by default) and 2000 API requests
/// over 16 clients meanwhile; berthd's RSS and descriptors after a warm-up of the same
/// work and at the end must be about the same (the figures are printed for the report).
#[test]
fn soak_of_run_rm_and_api_requests_keeps_the_daemon_flat() {
    let secs: u64 = std::env::var("BERTH_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let (engine, before) = warm_engine();
    ok(
        &engine,
        &["run", "-d", "--name", "steady", "busybox", "sleep", "3600"],
    );
    let pid = engine.daemon_pid().expect("berthd runs");

    let mut failures = hammer(&engine, 16, 320, Duration::ZERO);
    let (_, f) = run_rm_loop(&engine, Instant::now() + Duration::from_secs(5));
    failures.extend(f);
    std::thread::sleep(Duration::from_secs(1));
    let (rss0, fds0) = footprint(pid);

    let until = Instant::now() + Duration::from_secs(secs);
    let ((runs, f), g) = std::thread::scope(|s| {
        let looping = s.spawn(|| run_rm_loop(&engine, until));
        let began = Instant::now();
        // Spread over the soak, ending a little before the loop does.
        let requests = hammer(&engine, 16, 2000, Duration::from_secs(secs) * 9 / 10);
        eprintln!("soak: 2000 requests answered in {:?}", began.elapsed());
        (looping.join().expect("run loop"), requests)
    });
    failures.extend(f);
    failures.extend(g);
    // Let exits, auto-removals and idle connections settle.
    std::thread::sleep(Duration::from_secs(2));
    let (rss1, fds1) = footprint(pid);
    eprintln!(
        "soak: {secs} s, {runs} `run --rm`, 2000 requests over 16 clients; \
         berthd VmRSS {rss0} kB -> {rss1} kB ({:+} kB), fds {fds0} -> {fds1}",
        rss1 as i64 - rss0 as i64
    );
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(runs > 0, "no run in {secs} s");
    assert!(
        fds1.abs_diff(fds0) <= 3,
        "berthd's descriptors went from {fds0} to {fds1}: {:?}",
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d
                .flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .collect::<Vec<_>>())
            .unwrap_or_default()
    );
    assert!(
        rss1 < rss0 + 20 * 1024,
        "berthd's RSS grew from {rss0} kB to {rss1} kB over {runs} runs and 2000 requests"
    );
    ok(&engine, &["rm", "-f", "steady"]);
    assert_eq!(ok(&engine, &["ps", "-aq"]), "");
    before.assert_no_leaks(&engine, &Ignore::none());
}

#[test]
fn published_port_survives_daemon_restarts() {
    let (mut engine, before) = warm_engine();
    ok(
        &engine,
        &[
            "run",
            "-d",
            "-p",
            "127.0.0.1::80",
            "--name",
            "web",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    let port_line = ok(&engine, &["port", "web", "80"]);
    let port: u16 = port_line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("docker port said {port_line:?}"));
    assert!(fetch(port).contains("hello from berth"));

    engine.stop_daemon();
    engine.start_daemon();
    assert!(
        fetch(port).contains("hello from berth"),
        "after SIGTERM restart"
    );
    assert_eq!(ok(&engine, &["port", "web", "80"]), port_line);

    engine.kill_daemon();
    engine.start_daemon();
    assert!(
        fetch(port).contains("hello from berth"),
        "after SIGKILL restart"
    );

    ok(&engine, &["rm", "-f", "web"]);
    before.assert_no_leaks(&engine, &Ignore::none());
}

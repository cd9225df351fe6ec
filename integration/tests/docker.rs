//! berth-runtime under dockerd: `dockerd --add-runtime berth=<berth-runtime>` and
//! `docker run --runtime berth`, through dockerd's own managed containerd and its runc v2
//! shim.
//!
//! Each test starts its own dockerd (Debian's docker.io) with data root, exec root, pid
//! file, socket and daemon.json in a sandbox dir, no bridge and no iptables (containers
//! run with `--network none`), and the sandbox's name as cgroup parent; dockerd then
//! starts a containerd whose config and state are under the exec root too. Containers get
//! docker's defaults otherwise, its seccomp profile included.
//!
//! Run: `cargo build -p berth-runtime && cargo test -p berth-integration --test docker`.

mod support;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{
    busybox_image, check_limits, containerd_shim_socket, find_program, is_root, overlay_usable,
    run, run_on_a_terminal, run_with_input, runtime_bin, runtime_state, version_of, wait_until,
    Daemon, Limit, Run, Sandbox, DAEMON_START_TIMEOUT, IMAGE,
};

/// A private dockerd and what the tests need to drive it.
struct Dockerd {
    // Dropped before the sandbox, whose drop cleans up after it.
    daemon: Daemon,
    sandbox: Sandbox,
    docker: PathBuf,
    socket: PathBuf,
}

/// `docker run` options of every test: the runtime under test, and no network (no bridge
/// here).
const RUN: &[&str] = &["run", "--runtime", "berth", "--network", "none"];

impl Dockerd {
    /// Err: why the test cannot run here (it is then skipped).
    fn start() -> Result<Dockerd, String> {
        if !is_root() {
            return Err("needs root".into());
        }
        let dockerd = find_program("dockerd")
            .ok_or("`dockerd` is not installed (scripts/install-deps.sh installs docker.io)")?;
        // The client from the daemon's package when there is one: a newer docker on PATH
        // works too, but the pair is what Debian users run.
        let docker = Some(PathBuf::from("/usr/bin/docker"))
            .filter(|p| p.is_file())
            .or_else(|| find_program("docker"))
            .ok_or("the `docker` client is not installed (docker.io)")?;
        find_program("containerd").ok_or("dockerd needs containerd, which is not installed")?;
        let runtime = runtime_bin();
        let mut sandbox = Sandbox::new();
        // Places dockerd and its containerd use whatever their config: the shim socket dir
        // (containerd 1.6) and the plugin discovery dir; /etc/docker gets the daemon's key
        // unless daemon.json moves it (docker < 23).
        for path in [
            "/run/containerd",
            "/run/containerd/s",
            "/run/docker",
            "/run/docker/plugins",
            "/etc/docker",
        ] {
            sandbox.watch_host_path(path);
        }
        let version = version_of(&dockerd, &["--version"]);
        let mut config = serde_json::json!({});
        if docker_major(&version).is_some_and(|major| major < 23) {
            config["deprecated-key-path"] = sandbox.path("key.json").display().to_string().into();
        }
        let config_file = sandbox.path("daemon.json");
        fs::write(&config_file, config.to_string()).expect("write daemon.json");
        let storage = if overlay_usable(&sandbox.dir) {
            "overlay2"
        } else {
            "vfs"
        };
        let socket = sandbox.path("docker.sock");
        let mut cmd = Command::new(&dockerd);
        cmd.arg("--config-file")
            .arg(&config_file)
            .arg("--data-root")
            .arg(sandbox.path("data"))
            .arg("--exec-root")
            .arg(sandbox.path("exec"))
            .arg("--pidfile")
            .arg(sandbox.path("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--bridge",
                "none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
            ])
            .arg("--userland-proxy=false")
            .arg("--add-runtime")
            .arg(format!("berth={}", runtime.display()))
            .args(["--storage-driver", storage])
            .arg("--cgroup-parent")
            .arg(format!("/{}", sandbox.name))
            .args([
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
                "--log-level",
                "warn",
            ]);
        let mut daemon = Daemon::spawn("dockerd", &mut cmd, &sandbox.path("dockerd.log"));
        daemon
            .wait_for_socket(&socket, DAEMON_START_TIMEOUT)
            .map_err(|e| format!("dockerd cannot start here: {e}"))?;
        let mut env = Dockerd {
            daemon,
            sandbox,
            docker,
            socket,
        };
        // The socket accepts connections before the API answers.
        let deadline = Instant::now() + DAEMON_START_TIMEOUT;
        loop {
            let out = run(env.docker().arg("version"));
            if out.status.success() {
                break;
            }
            env.daemon
                .check_running()
                .map_err(|e| format!("dockerd cannot start here: {e}"))?;
            if Instant::now() >= deadline {
                return Err(format!("dockerd did not answer: {}", out.describe()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "{version}; storage driver {storage}; runtime {}",
            runtime.display()
        );
        let image = busybox_image(&env.sandbox.dir)?;
        run(env.docker().arg("load").arg("--input").arg(&image)).ok();
        Ok(env)
    }

    /// The docker client for this daemon, with its own config dir.
    fn docker(&self) -> Command {
        let mut cmd = Command::new(&self.docker);
        cmd.env("DOCKER_CONFIG", self.sandbox.path("client"))
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()));
        cmd
    }

    fn docker_run(&self, opts: &[&str], args: &[&str]) -> Command {
        let mut cmd = self.docker();
        cmd.args(RUN).args(opts).arg(IMAGE).args(args);
        cmd
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        run(self.docker().args(["inspect", "--format", format, name]))
            .ok()
            .stdout
            .trim()
            .to_string()
    }

    /// A container whose shim socket must be gone at the end; returns its full id.
    fn track(&mut self, name: &str) -> String {
        let id = self.inspect(name, "{{.Id}}");
        let address = self.sandbox.path("exec/containerd/containerd.sock");
        let socket = containerd_shim_socket(&address, "moby", &id);
        self.sandbox.must_vanish(socket);
        id
    }

    /// The `--root` dockerd gives the runtime (`<exec-root>/runtime-<name>/moby`; 20.10
    /// names it after runc whatever the runtime) that holds container `id`.
    fn runtime_root_of(&self, id: &str) -> Option<PathBuf> {
        let exec = self.sandbox.path("exec");
        fs::read_dir(&exec)
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("runtime-"))
            .map(|e| e.path().join("moby"))
            .find(|root| root.join(id).exists())
    }

    #[track_caller]
    fn wait_status(&self, name: &str, status: &str) {
        let ok = wait_until(Duration::from_secs(15), || {
            self.inspect(name, "{{.State.Status}}") == status
        });
        assert!(
            ok,
            "{name} never became {status}: {}",
            self.inspect(name, "{{.State.Status}}")
        );
    }

    /// Stop dockerd (which stops its containerd), then check that nothing is left.
    fn shutdown(self) {
        let left = run(self.docker().args(["ps", "--all", "--quiet"])).ok();
        let Dockerd {
            mut daemon,
            sandbox,
            ..
        } = self;
        let stopped = daemon.stop(Duration::from_secs(20));
        sandbox.wait_for_engine_exit(Duration::from_secs(10));
        sandbox.finish();
        assert!(
            left.stdout.trim().is_empty(),
            "containers left: {}",
            left.stdout
        );
        if let Err(e) = stopped {
            panic!("{e}");
        }
    }
}

/// 20 from "Docker version 20.10.24+dfsg1, build 297e128".
fn docker_major(version: &str) -> Option<u32> {
    version
        .strip_prefix("Docker version ")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

macro_rules! dockerd_or_skip {
    () => {
        match Dockerd::start() {
            Ok(env) => env,
            Err(why) => skip!("{why}"),
        }
    };
}

fn runs(env: &Dockerd, opts: &[&str], args: &[&str]) -> Run {
    run(&mut env.docker_run(opts, args))
}

#[test]
fn docker_run_prints_output_and_exit_codes() {
    let env = dockerd_or_skip!();
    let script = "echo hello from berth; echo pid=$$; id -u";
    let out = runs(&env, &["--rm"], &["sh", "-c", script]).ok();
    assert!(
        out.stdout.contains("hello from berth\npid=1\n0\n"),
        "{}",
        out.describe()
    );

    runs(&env, &["--rm"], &["sh", "-c", "exit 3"]).expect_code(3);
    // docker's default seccomp profile is a filter (mode 2); unconfined is none.
    let seccomp = ["grep", "Seccomp:", "/proc/self/status"];
    runs(&env, &["--rm"], &seccomp)
        .ok()
        .expect_stdout("Seccomp:\t2");
    runs(
        &env,
        &["--rm", "--security-opt", "seccomp=unconfined"],
        &seccomp,
    )
    .ok()
    .expect_stdout("Seccomp:\t0");
    runs(&env, &["--rm", "--user", "65534:65534"], &["id", "-u"])
        .ok()
        .expect_stdout("65534");
    let input = run_with_input(
        &mut env.docker_run(&["--rm", "--interactive"], &["cat"]),
        b"piped in\n",
    );
    input.ok().expect_stdout("piped in");

    // docker turns a start error that names a missing file into 127, as a shell would
    // (daemon/start.go translateContainerdStartErr matches runc's wording).
    let missing = runs(&env, &["--rm"], &["/no/such/program"]);
    assert_eq!(missing.code(), 127, "{}", missing.describe());
    env.shutdown();
}

#[test]
fn docker_run_interactive_with_a_terminal() {
    let env = dockerd_or_skip!();
    let cmd = env.docker_run(
        &["--rm", "--interactive", "--tty"],
        &[
            "sh",
            "-c",
            "tty; test -t 0 && test -t 1 && echo stdio-is-a-tty; exit 4",
        ],
    );
    let out = run_on_a_terminal(&cmd).expect_code(4);
    assert!(out.stdout.contains("/dev/pts/"), "{}", out.describe());
    assert!(out.stdout.contains("stdio-is-a-tty"), "{}", out.describe());
    env.shutdown();
}

#[test]
fn docker_exec_top_pause_stop_start_kill() {
    let mut env = dockerd_or_skip!();
    let name = "life";
    let script = "echo started; trap 'echo got TERM; exit 0' TERM; while :; do sleep 0.1; done";
    runs(&env, &["--detach", "--name", name], &["sh", "-c", script]).ok();
    let id = env.track(name);
    let logs = |env: &Dockerd| run(env.docker().args(["logs", name])).ok().stdout;
    assert!(
        wait_until(Duration::from_secs(10), || logs(&env).contains("started")),
        "no output: {:?}",
        logs(&env)
    );
    assert_eq!(env.inspect(name, "{{.HostConfig.Runtime}}"), "berth");
    // berth-runtime, not runc, keeps this container.
    let root = env.runtime_root_of(&id).unwrap_or_else(|| {
        panic!(
            "no runtime state for {id} under {}/exec",
            env.sandbox.dir.display()
        )
    });
    let state = runtime_state(&root, &id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(
        state["pid"].to_string(),
        env.inspect(name, "{{.State.Pid}}"),
        "{state}"
    );

    let exec = |args: &[&str]| run(env.docker().arg("exec").args(args));
    exec(&[
        name,
        "sh",
        "-c",
        "echo in exec; cat /proc/1/cmdline | tr '\\0' ' '",
    ])
    .ok()
    .expect_stdout("in exec\nsh -c echo started;");
    exec(&[name, "sh", "-c", "exit 5"]).expect_code(5);
    run_with_input(
        env.docker().args(["exec", "--interactive", name, "cat"]),
        b"exec stdin\n",
    )
    .ok()
    .expect_stdout("exec stdin");
    let mut exec_tty = env.docker();
    exec_tty.args([
        "exec",
        "--interactive",
        "--tty",
        name,
        "sh",
        "-c",
        "tty; exit 6",
    ]);
    run_on_a_terminal(&exec_tty)
        .expect_code(6)
        .expect_stdout("/dev/pts/");

    // top: `berth-runtime ps --format json`, then ps on the host.
    run(env.docker().args(["top", name]))
        .ok()
        .expect_stdout("sleep");

    run(env.docker().args(["pause", name])).ok();
    env.wait_status(name, "paused");
    let state = runtime_state(&root, &id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state["status"], "paused", "{state}");
    run(env.docker().args(["unpause", name])).ok();
    env.wait_status(name, "running");
    exec(&[name, "echo", "after unpause"])
        .ok()
        .expect_stdout("after unpause");

    // stop: SIGTERM reaches PID 1's trap well before the 10 s grace period ends.
    let started = Instant::now();
    run(env.docker().args(["stop", "--time", "10", name])).ok();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "docker stop took {:?}: SIGTERM did not end the container",
        started.elapsed()
    );
    assert_eq!(env.inspect(name, "{{.State.ExitCode}}"), "0");
    assert!(logs(&env).contains("got TERM"), "{:?}", logs(&env));

    // start again: a new create/start under the same id.
    run(env.docker().args(["start", name])).ok();
    env.wait_status(name, "running");
    run(env.docker().args(["kill", name])).ok();
    env.wait_status(name, "exited");
    assert_eq!(env.inspect(name, "{{.State.ExitCode}}"), "137");
    run(env.docker().args(["rm", name])).ok();
    assert!(
        !root.join(&id).exists(),
        "berth-runtime's state of {id} is still there after `docker rm`"
    );

    runs(&env, &["--detach", "--name", "forced"], &["sleep", "1000"]).ok();
    env.track("forced");
    run(env.docker().args(["rm", "--force", "forced"])).ok();
    env.shutdown();
}

#[test]
fn docker_run_applies_resource_limits_and_update() {
    let mut env = dockerd_or_skip!();
    let name = "limited";
    let limits = [
        "--detach",
        "--name",
        name,
        "--memory",
        "64m",
        "--cpu-shares",
        "512",
        "--cpus",
        "0.5",
        "--pids-limit",
        "100",
    ];
    runs(&env, &limits, &["sleep", "1000"]).ok();
    let id = env.track(name);
    // cgroupfs driver: <cgroup parent>/<id>.
    let path = format!("/{}/{id}", env.sandbox.name);
    let wrong = check_limits(
        &path,
        &[
            Limit::MemoryBytes(64 << 20),
            Limit::CpuShares(512),
            Limit::CpuQuota(50_000, 100_000),
            Limit::Pids(100),
        ],
    );
    assert!(wrong.is_empty(), "limits not applied: {wrong:#?}");

    // docker update: the shim runs `berth-runtime update --resources - ID`.
    run(env
        .docker()
        .args(["update", "--memory", "128m", "--memory-swap", "256m"])
        .args(["--pids-limit", "200", name]))
    .ok();
    let wrong = check_limits(&path, &[Limit::MemoryBytes(128 << 20), Limit::Pids(200)]);
    assert!(wrong.is_empty(), "update not applied: {wrong:#?}");
    // stats: containerd's metrics from the cgroups berth-runtime made.
    run(env
        .docker()
        .args(["stats", "--no-stream", "--format", "{{.MemUsage}}", name]))
    .ok()
    .expect_stdout("128MiB");
    run(env.docker().args(["rm", "--force", name])).ok();
    env.shutdown();
}

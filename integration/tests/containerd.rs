//! berth-runtime under containerd, the way Kubernetes nodes run it: containerd's
//! `io.containerd.runc.v2` shim (containerd-shim-runc-v2) with berth-runtime as its runc
//! binary, driven by `ctr`.
//!
//! Each test starts its own containerd (Debian's, 1.6) with root, state, socket and config
//! in a sandbox dir, imports the busybox image made by scripts/make-busybox-image.sh and
//! uses namespace = cgroup parent = the sandbox's name. `ctr run --runc-binary` and
//! `--runc-root` are the runc options the shim gets (`BinaryName`, `Root`), so the shim
//! calls `berth-runtime --root <sandbox>/runc/<ns> --log <bundle>/log.json --log-format
//! json create|start|state|exec|ps|pause|resume|kill|delete ...`. (A `--runtime-config-path`
//! TOML is ignored by the 1.6 shim, and the CRI plugin's runtime table needs CRI.)
//!
//! Run: `cargo build -p berth-runtime && cargo test -p berth-integration --test containerd`.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{
    busybox_image, check_limits, containerd_shim_socket, find_programs, is_root, overlay_usable,
    read_lossy, run, run_on_a_terminal, runtime_bin, runtime_state, version_of, wait_until, Daemon,
    Limit, Run, Sandbox, DAEMON_START_TIMEOUT, IMAGE,
};

/// A private containerd and what the tests need to drive it.
struct Containerd {
    // Dropped before the sandbox, whose drop cleans up after it.
    daemon: Daemon,
    sandbox: Sandbox,
    ctr: PathBuf,
    address: PathBuf,
    namespace: String,
    runtime: PathBuf,
    snapshotter: &'static str,
}

impl Containerd {
    /// Err: why the test cannot run here (it is then skipped).
    fn start() -> Result<Containerd, String> {
        if !is_root() {
            return Err("needs root".into());
        }
        let [containerd, ctr, _shim] =
            find_programs(["containerd", "ctr", "containerd-shim-runc-v2"])?;
        let runtime = runtime_bin();
        let mut sandbox = Sandbox::new();
        // The shim's socket dir is fixed in containerd 1.6 (see containerd_shim_socket);
        // ctr's default fifo dir is too, though every ctr call here passes --fifo-dir.
        sandbox.watch_host_path("/run/containerd");
        sandbox.watch_host_path("/run/containerd/s");
        sandbox.watch_host_path("/run/containerd/fifo");
        let address = sandbox.path("containerd.sock");
        let snapshotter = if overlay_usable(&sandbox.dir) {
            "overlayfs"
        } else {
            "native"
        };
        let dir = sandbox.dir.display().to_string();
        let config = sandbox.path("containerd.toml");
        // CRI would want CNI, a pause image and a registry; devmapper is unconfigured.
        let toml = format!(
            r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"
"#
        );
        fs::write(&config, toml).expect("write containerd.toml");
        let mut daemon = Daemon::spawn(
            "containerd",
            Command::new(&containerd)
                .arg("--config")
                .arg(&config)
                .args(["--log-level", "warn"]),
            &sandbox.path("containerd.log"),
        );
        daemon
            .wait_for_socket(&address, DAEMON_START_TIMEOUT)
            .map_err(|e| format!("containerd cannot start here: {e}"))?;
        eprintln!(
            "{}; snapshotter {snapshotter}; runtime {}",
            version_of(&containerd, &["--version"]),
            runtime.display()
        );
        let namespace = sandbox.name.clone();
        let env = Containerd {
            daemon,
            sandbox,
            ctr,
            address,
            namespace,
            runtime,
            snapshotter,
        };
        let image = busybox_image(&env.sandbox.dir)?;
        run(env.ctr().args(["images", "import"]).arg(&image)).ok();
        Ok(env)
    }

    /// `ctr` against this containerd, in the test's namespace.
    fn ctr(&self) -> Command {
        let mut cmd = Command::new(&self.ctr);
        cmd.arg("--address")
            .arg(&self.address)
            .arg("--namespace")
            .arg(&self.namespace)
            .env("CONTAINERD_SNAPSHOTTER", self.snapshotter);
        cmd
    }

    /// Where the shim tells berth-runtime to keep state: `--root <runc-root>/<namespace>`.
    fn runtime_root(&self) -> PathBuf {
        self.sandbox.path("runc").join(&self.namespace)
    }

    fn fifo_dir(&self) -> PathBuf {
        self.sandbox.path("fifo")
    }

    /// `ctr run [opts] --runc-binary berth-runtime --runc-root ... IMAGE ID ARGS`, with
    /// ctr's default spec (which has `cpu.shares = 1024`).
    fn run_command(&mut self, opts: &[&str], id: &str, args: &[&str]) -> Command {
        self.track(id);
        let mut cmd = self.ctr();
        cmd.arg("run")
            .args(opts)
            .arg("--runc-binary")
            .arg(&self.runtime)
            .arg("--runc-root")
            .arg(self.sandbox.path("runc"))
            .arg("--fifo-dir")
            .arg(self.fifo_dir())
            .arg(IMAGE)
            .arg(id)
            .args(args);
        cmd
    }

    fn run(&mut self, opts: &[&str], id: &str, args: &[&str]) -> Run {
        run(&mut self.run_command(opts, id, args))
    }

    /// A container id whose shim socket and runtime state must be gone at the end.
    fn track(&mut self, id: &str) {
        let socket = containerd_shim_socket(&self.address, &self.namespace, id);
        self.sandbox.must_vanish(socket);
        let state = self.runtime_root().join(id);
        self.sandbox.must_vanish(state);
    }

    fn task(&self, args: &[&str]) -> Run {
        run(self.ctr().arg("task").args(args))
    }

    /// (pid, status) of a task from `ctr task ls`.
    fn task_status(&self, id: &str) -> Option<(u32, String)> {
        let out = self.task(&["ls"]).ok();
        out.stdout.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| (f[1].parse().unwrap_or(0), f[2].to_string()))
        })
    }

    #[track_caller]
    fn wait_status(&self, id: &str, status: &str) {
        let ok = wait_until(Duration::from_secs(10), || {
            self.task_status(id).is_some_and(|(_, s)| s == status)
        });
        assert!(
            ok,
            "task {id} never became {status}: {:?}",
            self.task_status(id)
        );
    }

    /// Stop containerd, then check that it, its shims and the containers left nothing.
    fn shutdown(self) {
        let Containerd {
            mut daemon,
            sandbox,
            ..
        } = self;
        let stopped = daemon.stop(Duration::from_secs(10));
        sandbox.wait_for_engine_exit(Duration::from_secs(10));
        sandbox.finish();
        if let Err(e) = stopped {
            panic!("{e}");
        }
    }
}

macro_rules! containerd_or_skip {
    () => {
        match Containerd::start() {
            Ok(env) => env,
            Err(why) => skip!("{why}"),
        }
    };
}

#[test]
fn ctr_run_prints_output_and_exit_codes() {
    let mut env = containerd_or_skip!();
    let script = "echo hello from berth; echo pid=$$; cat /proc/self/cgroup";
    let out = env.run(&["--rm"], "run-output", &["sh", "-c", script]).ok();
    assert!(
        out.stdout.contains("hello from berth\n"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains("pid=1\n"),
        "not PID 1 of its own pid namespace\n{}",
        out.describe()
    );
    // ctr's cgroupsPath is /<namespace>/<id>.
    let cgroup = format!("/{}/run-output", env.namespace);
    assert!(
        out.stdout.lines().any(|l| l.ends_with(&cgroup)),
        "not in cgroup {cgroup}\n{}",
        out.describe()
    );

    env.run(&["--rm"], "run-exit-3", &["sh", "-c", "exit 3"])
        .expect_code(3);
    env.run(&["--rm"], "run-true", &["true"]).expect_code(0);

    let missing = env.run(&["--rm"], "run-missing", &["/no/such/program"]);
    assert_ne!(missing.code(), 0, "{}", missing.describe());
    assert!(
        missing.stderr.contains("/no/such/program"),
        "the error does not name the program\n{}",
        missing.describe()
    );
    env.shutdown();
}

#[test]
fn ctr_run_with_a_terminal() {
    let mut env = containerd_or_skip!();
    let cmd = env.run_command(
        &["--rm", "--tty"],
        "run-tty",
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
fn ctr_detached_task_exec_ps_pause_resume_kill_delete() {
    let mut env = containerd_or_skip!();
    let id = "lifecycle";
    let log = env.sandbox.path("lifecycle.log");
    let script = "echo started; trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.1; done";
    env.run(
        &[
            "--detach",
            "--log-uri",
            &format!("file://{}", log.display()),
        ],
        id,
        &["sh", "-c", script],
    )
    .ok();
    assert!(
        wait_until(Duration::from_secs(10), || read_lossy(&log)
            .contains("started")),
        "no output from the detached task: {:?}",
        read_lossy(&log)
    );
    let (pid, status) = env.task_status(id).expect("task listed");
    assert_eq!(status, "RUNNING");

    // berth-runtime, not runc, keeps this container: its state is in the shim's --root.
    let state = runtime_state(&env.runtime_root(), id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(state["pid"], pid, "{state}");

    // exec: the shim runs `berth-runtime exec --process <json> --detach --pid-file ...`.
    let fifo = env.fifo_dir();
    let exec = |exec_id: &str, args: &[&str]| {
        run(env
            .ctr()
            .args(["task", "exec", "--exec-id", exec_id, "--fifo-dir"])
            .arg(&fifo)
            .arg(id)
            .args(args))
    };
    exec(
        "x1",
        &[
            "sh",
            "-c",
            "echo in exec; cat /proc/1/cmdline | tr '\\0' ' '",
        ],
    )
    .ok()
    .expect_stdout("in exec\nsh -c echo started;");
    exec("x2", &["sh", "-c", "exit 5"]).expect_code(5);
    let mut exec_tty = env.ctr();
    exec_tty
        .args(["task", "exec", "--tty", "--exec-id", "x3", "--fifo-dir"])
        .arg(&fifo)
        .arg(id)
        .args(["sh", "-c", "tty; exit 6"]);
    run_on_a_terminal(&exec_tty)
        .expect_code(6)
        .expect_stdout("/dev/pts/");

    // ps: `berth-runtime ps --format json`.
    let ps = env.task(&["ps", id]).ok();
    assert!(
        ps.stdout
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "ps lacks the init pid {pid}\n{}",
        ps.describe()
    );

    // metrics: the shim reads the cgroups berth-runtime put the task in.
    env.task(&["metrics", id]).ok();

    env.task(&["pause", id]).ok();
    env.wait_status(id, "PAUSED");
    let freezer = Path::new("/sys/fs/cgroup/freezer")
        .join(&env.namespace)
        .join(id)
        .join("freezer.state");
    if freezer.exists() {
        assert_eq!(read_lossy(&freezer).trim(), "FROZEN");
    }
    let state = runtime_state(&env.runtime_root(), id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state["status"], "paused", "{state}");
    env.task(&["resume", id]).ok();
    env.wait_status(id, "RUNNING");
    exec("x4", &["echo", "after resume"])
        .ok()
        .expect_stdout("after resume");

    // kill: SIGTERM reaches the trap of PID 1.
    env.task(&["kill", id]).ok();
    env.wait_status(id, "STOPPED");
    assert!(
        read_lossy(&log).contains("got TERM"),
        "the task did not see SIGTERM: {:?}",
        read_lossy(&log)
    );
    env.task(&["delete", id]).ok();
    run(env.ctr().args(["containers", "delete", id])).ok();
    assert!(
        !env.runtime_root().join(id).exists(),
        "berth-runtime's state of {id} is still there after `ctr task delete`"
    );

    // SIGKILL, and deleting a running task with --force.
    let id = "killed";
    env.run(&["--detach"], id, &["sleep", "1000"]).ok();
    env.wait_status(id, "RUNNING");
    env.task(&["kill", "--signal", "SIGKILL", id]).ok();
    env.wait_status(id, "STOPPED");
    env.task(&["delete", id]).ok();
    run(env.ctr().args(["containers", "delete", id])).ok();

    let id = "forced";
    env.run(&["--detach"], id, &["sleep", "1000"]).ok();
    env.wait_status(id, "RUNNING");
    env.task(&["delete", "--force", id]).ok();
    run(env.ctr().args(["containers", "delete", id])).ok();
    env.shutdown();
}

#[test]
fn ctr_run_applies_resource_limits() {
    let mut env = containerd_or_skip!();
    // ctr's default spec: cpu.shares 1024.
    let id = "default-limits";
    env.run(&["--detach"], id, &["sleep", "1000"]).ok();
    env.wait_status(id, "RUNNING");
    let wrong = check_limits(
        &format!("/{}/{id}", env.namespace),
        &[Limit::CpuShares(1024)],
    );
    assert!(wrong.is_empty(), "limits not applied: {wrong:#?}");
    env.task(&["delete", "--force", id]).ok();
    run(env.ctr().args(["containers", "delete", id])).ok();

    let id = "limited";
    let limits = [
        "--memory-limit",
        "67108864",
        "--cpu-shares",
        "512",
        "--cpus",
        "0.5",
        "--detach",
    ];
    env.run(&limits, id, &["sleep", "1000"]).ok();
    env.wait_status(id, "RUNNING");
    let wrong = check_limits(
        &format!("/{}/{id}", env.namespace),
        &[
            Limit::MemoryBytes(64 << 20),
            Limit::CpuShares(512),
            Limit::CpuQuota(50_000, 100_000),
        ],
    );
    assert!(wrong.is_empty(), "limits not applied: {wrong:#?}");
    env.task(&["delete", "--force", id]).ok();
    run(env.ctr().args(["containers", "delete", id])).ok();
    env.shutdown();
}

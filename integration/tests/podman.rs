//! berth-runtime under podman: `podman --runtime <berth-runtime>`, with conmon calling
//! the runtime.
//!
//! Each test gives podman its own storage root, run root, tmp dir, volume and network
//! config dirs in a sandbox dir; cgroupfs with the sandbox's name as cgroup parent; file
//! events (no journald here); `--network none`. Podman calls the runtime without `--root`
//! (it has `--runtime-flag root=...`, but 4.3 leaves runtime flags off `delete`, so the
//! state would leak), so containers live in berth-runtime's default root,
//! /run/berth-runtime; the sandbox checks that the test's are gone from there too.
//!
//! Containers get podman's defaults otherwise (its seccomp profile, pids limit 2048),
//! except rlimits where the test may not raise them (see `Podman::start`).
//!
//! Run: `cargo build -p berth-runtime && cargo test -p berth-integration --test podman`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{
    busybox_image, check_limits, find_programs, has_cap_sys_resource, is_root, overlay_usable, run,
    run_on_a_terminal, run_with_input, runtime_bin, runtime_state, version_of, wait_until, Limit,
    Run, Sandbox, IMAGE,
};

/// berth-runtime's default `--root`.
const RUNTIME_ROOT: &str = "/run/berth-runtime";

struct Podman {
    sandbox: Sandbox,
    podman: PathBuf,
    runtime: PathBuf,
    storage: &'static str,
    /// `podman run` options every test uses.
    run_opts: Vec<String>,
}

impl Podman {
    /// Err: why the test cannot run here (it is then skipped).
    fn start() -> Result<Podman, String> {
        if !is_root() {
            return Err("needs root".into());
        }
        let [podman, _conmon] = find_programs(["podman", "conmon"])?;
        let runtime = runtime_bin();
        let mut sandbox = Sandbox::new();
        // containers/image keeps a blob info cache there for root whatever --root says.
        for path in [
            "/var/lib/containers",
            "/var/lib/containers/cache",
            "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
            RUNTIME_ROOT,
        ] {
            sandbox.watch_host_path(path);
        }
        sandbox.watch_runtime_root(RUNTIME_ROOT);
        // With cgroupfs, conmon moves itself to <cgroup parent>/conmon and podman keeps it.
        sandbox.expect_cgroup("conmon");
        // containers/storage makes its driver dir a private bind mount and may leave it.
        let storage_dir = if overlay_usable(&sandbox.dir) {
            "overlay"
        } else {
            "vfs"
        };
        sandbox.expect_mount(sandbox.path("storage").join(storage_dir));
        let storage = if overlay_usable(&sandbox.dir) {
            "overlay"
        } else {
            "vfs"
        };
        let mut run_opts: Vec<String> = ["--network", "none", "--cgroup-parent"]
            .map(String::from)
            .into();
        run_opts.push(format!("/{}", sandbox.name));
        if !has_cap_sys_resource() {
            // Podman raises nofile and nproc to 1048576 for root; without CAP_SYS_RESOURCE
            // no runtime can (runc fails the same way: "error setting rlimits").
            eprintln!(
                "note: no CAP_SYS_RESOURCE here, so containers get --ulimit nofile=1024 nproc=1024"
            );
            for ulimit in ["nofile=1024:1024", "nproc=1024:1024"] {
                run_opts.push("--ulimit".into());
                run_opts.push(ulimit.into());
            }
        }
        eprintln!(
            "{}; storage driver {storage}; runtime {}",
            version_of(&podman, &["--version"]),
            runtime.display()
        );
        let env = Podman {
            sandbox,
            podman,
            runtime,
            storage,
            run_opts,
        };
        let image = busybox_image(&env.sandbox.dir)?;
        run(env.podman().arg("load").arg("--input").arg(&image)).ok();
        Ok(env)
    }

    /// podman with every piece of state in the sandbox.
    fn podman(&self) -> Command {
        let dir = &self.sandbox.dir;
        let mut cmd = Command::new(&self.podman);
        // `podman load` unpacks the archive in /var/tmp (containers.conf image_copy_tmp_dir)
        // and removes it again.
        cmd.arg("--root")
            .arg(dir.join("storage"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .arg("--tmpdir")
            .arg(dir.join("libpod"))
            .arg("--volumepath")
            .arg(dir.join("volumes"))
            .arg("--network-config-dir")
            .arg(dir.join("net"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(["--storage-driver", self.storage])
            .arg("--runtime")
            .arg(&self.runtime);
        cmd
    }

    fn podman_run(&self, opts: &[&str], args: &[&str]) -> Command {
        let mut cmd = self.podman();
        cmd.arg("run")
            .args(&self.run_opts)
            .args(opts)
            .arg(IMAGE)
            .args(args);
        cmd
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        run(self.podman().args(["inspect", "--format", format, name]))
            .ok()
            .stdout
            .trim()
            .to_string()
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

    /// Check that no container is left, wait for podman's cleanup processes, then check
    /// that nothing is left on the host.
    fn shutdown(self) {
        let left = run(self.podman().args(["ps", "--all", "--quiet"])).ok();
        let Podman { sandbox, .. } = self;
        sandbox.wait_for_engine_exit(Duration::from_secs(10));
        sandbox.finish();
        assert!(
            left.stdout.trim().is_empty(),
            "containers left: {}",
            left.stdout
        );
    }
}

macro_rules! podman_or_skip {
    () => {
        match Podman::start() {
            Ok(env) => env,
            Err(why) => skip!("{why}"),
        }
    };
}

fn runs(env: &Podman, opts: &[&str], args: &[&str]) -> Run {
    run(&mut env.podman_run(opts, args))
}

#[test]
fn podman_run_prints_output_and_exit_codes() {
    let env = podman_or_skip!();
    let script = "echo hello from berth; echo pid=$$; cat /proc/self/cgroup";
    let out = runs(&env, &["--rm"], &["sh", "-c", script]).ok();
    assert!(
        out.stdout.contains("hello from berth\npid=1\n"),
        "{}",
        out.describe()
    );
    let cgroup = format!(":/{}/libpod-", env.sandbox.name);
    assert!(
        out.stdout.contains(&cgroup),
        "not under {cgroup}\n{}",
        out.describe()
    );

    runs(&env, &["--rm"], &["sh", "-c", "exit 3"]).expect_code(3);
    // podman's default seccomp profile is a filter (mode 2); unconfined is none.
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
    run_with_input(
        &mut env.podman_run(&["--rm", "--interactive"], &["cat"]),
        b"piped in\n",
    )
    .ok()
    .expect_stdout("piped in");

    // podman, like docker, reports a missing program as 127 when the runtime's error says
    // so the way runc's does ("no such file or directory", "executable file not found").
    let missing = runs(&env, &["--rm"], &["/no/such/program"]);
    assert_eq!(missing.code(), 127, "{}", missing.describe());
    env.shutdown();
}

#[test]
fn podman_run_interactive_with_a_terminal() {
    let env = podman_or_skip!();
    let cmd = env.podman_run(
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
fn podman_exec_top_pause_stop_start_kill() {
    let env = podman_or_skip!();
    let name = "life";
    let script = "echo started; trap 'echo got TERM; exit 0' TERM; while :; do sleep 0.1; done";
    runs(&env, &["--detach", "--name", name], &["sh", "-c", script]).ok();
    let logs = |env: &Podman| run(env.podman().args(["logs", name])).ok().stdout;
    assert!(
        wait_until(Duration::from_secs(10), || logs(&env).contains("started")),
        "no output: {:?}",
        logs(&env)
    );
    // berth-runtime, not runc, keeps this container.
    let id = env.inspect(name, "{{.Id}}");
    let root = Path::new(RUNTIME_ROOT);
    let state = runtime_state(root, &id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(
        state["pid"].to_string(),
        env.inspect(name, "{{.State.Pid}}"),
        "{state}"
    );

    let exec = |args: &[&str]| run(env.podman().arg("exec").args(args));
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
        env.podman().args(["exec", "--interactive", name, "cat"]),
        b"exec stdin\n",
    )
    .ok()
    .expect_stdout("exec stdin");
    let mut exec_tty = env.podman();
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

    run(env.podman().args(["top", name]))
        .ok()
        .expect_stdout("sleep");

    run(env.podman().args(["pause", name])).ok();
    env.wait_status(name, "paused");
    let state = runtime_state(root, &id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state["status"], "paused", "{state}");
    run(env.podman().args(["unpause", name])).ok();
    env.wait_status(name, "running");
    exec(&[name, "echo", "after unpause"])
        .ok()
        .expect_stdout("after unpause");

    let started = Instant::now();
    run(env.podman().args(["stop", "--time", "10", name])).ok();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "podman stop took {:?}: SIGTERM did not end the container",
        started.elapsed()
    );
    assert_eq!(env.inspect(name, "{{.State.ExitCode}}"), "0");
    assert!(logs(&env).contains("got TERM"), "{:?}", logs(&env));

    run(env.podman().args(["start", name])).ok();
    env.wait_status(name, "running");
    run(env.podman().args(["kill", name])).ok();
    env.wait_status(name, "exited");
    assert_eq!(env.inspect(name, "{{.State.ExitCode}}"), "137");
    run(env.podman().args(["rm", name])).ok();
    assert!(
        !root.join(&id).exists(),
        "berth-runtime's state of {id} is still there after `podman rm`"
    );

    runs(&env, &["--detach", "--name", "forced"], &["sleep", "1000"]).ok();
    run(env.podman().args(["rm", "--force", "forced"])).ok();
    env.shutdown();
}

#[test]
fn podman_run_applies_resource_limits() {
    let env = podman_or_skip!();
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
    let id = env.inspect(name, "{{.Id}}");
    // cgroupfs: <cgroup parent>/libpod-<id>.
    let path = format!("/{}/libpod-{id}", env.sandbox.name);
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
    run(env.podman().args(["rm", "--force", name])).ok();
    env.shutdown();
}

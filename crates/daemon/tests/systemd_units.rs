//! berthd under systemd: the unit files in contrib/systemd pass `systemd-analyze verify`,
//! scripts/install.sh puts them and the binaries where they belong, and the built berthd
//! speaks both protocols the units rely on: socket activation (berthd.socket) and
//! readiness notification (Type=notify). systemd itself need not be running: the tests
//! play its part with a listening socket at fd 3 and a datagram socket for NOTIFY_SOCKET.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");
const UNITS: [&str; 2] = ["berthd.socket", "berthd.service"];
/// The binary path the shipped berthd.service names; tests swap in the built one.
const SHIPPED_EXEC_START: &str = "ExecStart=/usr/local/bin/berthd";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// Copies the units into `dir` with ExecStart= naming the test's berthd, because
/// `systemd-analyze verify` fails on a unit whose binary does not exist.
fn stage_units(dir: &Path) {
    for unit in UNITS {
        let mut text = read(&repo_root().join("contrib/systemd").join(unit));
        if unit == "berthd.service" {
            assert!(
                text.lines().any(|line| line == SHIPPED_EXEC_START),
                "berthd.service should say {SHIPPED_EXEC_START} (scripts/install.sh rewrites it)"
            );
            text = text.replace(SHIPPED_EXEC_START, &format!("ExecStart={BERTHD}"));
        }
        std::fs::write(dir.join(unit), text).expect("write unit");
    }
}

/// Runs `systemd-analyze verify` on the units in `dir`; returns success and the lines of
/// its output that are about our units (it may also warn about unrelated system units).
fn verify(dir: &Path) -> (ExitStatus, Vec<String>) {
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(UNITS.map(|unit| dir.join(unit)))
        // verify reads no user or system manager state; keep the pager and colours away.
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run systemd-analyze ({err}): it comes with Debian's systemd package; \
                 run scripts/install-deps.sh (as root) to install it"
            )
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let ours = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|line| line.contains("berthd") || line.contains(&*dir.to_string_lossy()))
        .map(str::to_owned)
        .collect();
    (output.status, ours)
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    stage_units(dir.path());
    let (status, ours) = verify(dir.path());
    assert!(
        status.success() && ours.is_empty(),
        "systemd-analyze verify: {status}\n{}",
        ours.join("\n")
    );

    // The check above must be able to fail: a misspelt key is only a warning (exit 0).
    let service = dir.path().join("berthd.service");
    let text = read(&service).replace("Delegate=yes", "Delegat=yes");
    std::fs::write(&service, text).expect("write unit");
    let (_, ours) = verify(dir.path());
    assert!(
        ours.iter().any(|line| line.contains("Delegat")),
        "a misspelt key went unnoticed: {ours:?}"
    );
}

/// The socket unit must listen where berthd (and its clients' DOCKER_HOST) expect it.
#[test]
fn socket_unit_listens_on_berthds_default_host() {
    let socket_unit = read(&repo_root().join("contrib/systemd/berthd.socket"));
    let listen: Vec<&str> = socket_unit
        .lines()
        .filter_map(|line| line.strip_prefix("ListenStream="))
        .collect();
    assert_eq!(listen, ["/run/berth/berth.sock"], "one ListenStream=");
    let help = Command::new(BERTHD)
        .arg("--help")
        .output()
        .expect("berthd --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("[default: unix:///run/berth/berth.sock]"),
        "berthd's default --host changed; update berthd.socket:\n{help}"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn run_install(bin_dir: &Path, destdir: &Path) -> std::process::Output {
    Command::new(repo_root().join("scripts/install.sh"))
        .env("DESTDIR", destdir)
        .env("PREFIX", "/usr")
        .env("BIN_DIR", bin_dir)
        // Not the static shim a `make build` left in target/shim: this test's own.
        .env("SHIM", bin_dir.join("berth-shim"))
        .output()
        .expect("run scripts/install.sh")
}

fn group_exists(name: &str) -> bool {
    nix::unistd::Group::from_name(name)
        .expect("look up group")
        .is_some()
}

#[test]
fn install_sh_stages_into_destdir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin_dir = dir.path().join("release");
    std::fs::create_dir(&bin_dir).expect("mkdir");
    // berthd and the runtime built, the CLI and shim not (yet): those are skipped.
    for bin in ["berthd", "berth-runtime"] {
        std::fs::copy(BERTHD, bin_dir.join(bin)).expect("copy binary");
    }
    let destdir = dir.path().join("stage");
    let had_group = group_exists("berth");
    let real_unit = Path::new("/etc/systemd/system/berthd.service");
    let had_real_unit = real_unit.exists();

    // Twice: the second run replaces what the first installed.
    for run in 1..=2 {
        let out = run_install(&bin_dir, &destdir);
        assert!(
            out.status.success(),
            "install.sh run {run}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    for bin in ["berthd", "berth-runtime"] {
        assert_eq!(mode(&destdir.join("usr/bin").join(bin)), 0o755, "{bin}");
    }
    for bin in ["berth", "berth-shim"] {
        assert!(
            !destdir.join("usr/bin").join(bin).exists(),
            "{bin} invented"
        );
    }
    let unit_dir = destdir.join("etc/systemd/system");
    for unit in UNITS {
        assert_eq!(mode(&unit_dir.join(unit)), 0o644, "{unit}");
    }
    let service = read(&unit_dir.join("berthd.service"));
    assert!(
        service
            .lines()
            .any(|line| line == "ExecStart=/usr/bin/berthd"),
        "ExecStart= should follow PREFIX:\n{service}"
    );
    assert_eq!(
        read(&unit_dir.join("berthd.socket")),
        read(&repo_root().join("contrib/systemd/berthd.socket"))
    );
    // DESTDIR stages a package: the host is not touched.
    assert_eq!(
        group_exists("berth"),
        had_group,
        "DESTDIR run changed group berth"
    );
    assert_eq!(real_unit.exists(), had_real_unit, "DESTDIR run wrote /etc");

    // Without berthd there is nothing worth installing.
    std::fs::remove_file(bin_dir.join("berthd")).expect("rm");
    let empty = dir.path().join("empty-stage");
    let out = run_install(&bin_dir, &empty);
    assert!(!out.status.success(), "install.sh without berthd succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("make build"),
        "the error should say how to build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!empty.exists(), "install.sh without berthd staged files");
}

/// A berthd started as systemd would start it; killed and reaped on drop, so a failing
/// test leaves no daemon behind.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn pid(&self) -> Pid {
        let id = self.child.as_ref().expect("daemon running").id();
        Pid::from_raw(i32::try_from(id).expect("pid fits in pid_t"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("daemon running");
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("berthd exited with {status}:\n{}", self.log());
        }
    }

    /// SIGTERM, as `systemctl stop` sends (KillMode=process), and wait for a clean exit.
    fn terminate(&mut self) {
        kill(self.pid(), Signal::SIGTERM).expect("SIGTERM");
        self.wait_exit();
    }

    /// Waits for the exit a SIGTERM started; it must be clean and prompt.
    fn wait_exit(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let child = self.child.as_mut().expect("daemon running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                assert!(
                    status.success(),
                    "berthd exited with {status}:\n{}",
                    self.log()
                );
                self.child = None;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not exit within 15 s of SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// berthd's command line with its state in `dir`, logging to `dir/berthd.log`.
///
/// With `set_listen_pid`, berthd is started as `sh -c 'LISTEN_PID=$$ ... exec berthd ...'`:
/// LISTEN_PID must be berthd's own pid, unknown before the fork, and exec keeps the shell's
/// pid. Setting it from a pre_exec hook instead does not work: when a Command changes the
/// environment, std hands exec the environment it built before the fork, so a setenv in
/// the child is lost (and setenv is not async-signal-safe there anyway).
fn berthd_command(dir: &Path, sock: &Path, set_listen_pid: bool) -> (Command, PathBuf) {
    let mut cmd = if set_listen_pid {
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c")
            .arg(r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#)
            .arg(BERTHD);
        sh
    } else {
        Command::new(BERTHD)
    };
    let log = dir.join("berthd.log");
    cmd.arg("--host")
        .arg(format!("unix://{}", sock.display()))
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--log-level")
        .arg("debug")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")));
    (cmd, log)
}

/// `GET /_ping` over the socket at `sock`; the body, or a panic with the daemon's log.
fn ping(daemon: &mut Daemon, sock: &Path) -> String {
    let mut stream = UnixStream::connect(sock).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")
        .expect("send request");
    let mut response = Vec::new();
    if let Err(err) = stream.read_to_end(&mut response) {
        daemon.assert_running();
        panic!("no answer to GET /_ping ({err}):\n{}", daemon.log());
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "GET /_ping: {response}"
    );
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The next datagram on the NOTIFY_SOCKET stand-in, as newline-separated assignments.
fn next_notification(socket: &UnixDatagram, daemon: &Daemon, waiting_for: &str) -> Vec<String> {
    let mut buf = [0u8; 4096];
    match socket.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_owned)
            .collect(),
        Err(err) => panic!(
            "no {waiting_for} on NOTIFY_SOCKET within 10 s ({err}):\n{}",
            daemon.log()
        ),
    }
}

/// berthd.socket hands berthd a listening socket at fd 3 with LISTEN_PID=<berthd's pid>
/// and LISTEN_FDS=1; berthd must serve on it instead of binding --host itself (which it
/// could not: the path is live, held by "systemd", here this test).
#[test]

fn serves_the_socket_systemd_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec_root = dir.path().join("exec");
    std::fs::create_dir(&exec_root).expect("mkdir exec root");
    let sock = exec_root.join("berth.sock");
    let listener = UnixListener::bind(&sock).expect("bind the activation socket");
    let listen_fd = listener.as_raw_fd();

    let (mut cmd, log) = berthd_command(dir.path(), &sock, true);
    cmd.env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "berthd.socket");
    // SAFETY: the hook runs in the child between fork and exec and calls only dup2 and
    // fcntl, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // The listener is close-on-exec; dup2 gives fd 3 without that flag, except
            // dup2(3, 3), which changes nothing.
            let ok = if listen_fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(listen_fd, 3) >= 0
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let child = cmd.spawn().expect("spawn berthd");
    let mut daemon = Daemon {
        child: Some(child),
        log,
    };

    // The kernel queues the connection on our listener; only berthd can accept it.
    assert_eq!(ping(&mut daemon, &sock), "OK");
    assert_eq!(ping(&mut daemon, &sock), "OK", "a second connection");
    daemon.terminate();

    // The socket belongs to systemd, which keeps it open across daemon restarts: berthd
    // must leave the file in place, and the listener keeps queueing clients.
    assert!(
        sock.exists(),
        "berthd removed the socket file systemd owns:\n{}",
        daemon.log()
    );
    UnixStream::connect(&sock).expect("the activation socket still accepts connections");
    drop(listener);
}

/// Type=notify: systemd considers berthd started when it sends READY=1, which must come
/// only once the API answers, and STOPPING=1 when it begins to shut down.
#[test]

fn notifies_ready_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("exec/berth.sock");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind NOTIFY_SOCKET");
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");

    let (mut cmd, log) = berthd_command(dir.path(), &sock, false);
    cmd.env("NOTIFY_SOCKET", &notify_path);
    let child = cmd.spawn().expect("spawn berthd");
    let mut daemon = Daemon {
        child: Some(child),
        log,
    };

    let ready = next_notification(&notify, &daemon, "READY=1");
    assert!(ready.iter().any(|line| line == "READY=1"), "{ready:?}");
    // Ready means serving: no retry loop here, the first request must be answered.
    assert_eq!(ping(&mut daemon, &sock), "OK");

    kill(daemon.pid(), Signal::SIGTERM).expect("SIGTERM");
    let stopping = next_notification(&notify, &daemon, "STOPPING=1");
    assert!(
        stopping.iter().any(|line| line == "STOPPING=1"),
        "{stopping:?}"
    );
    daemon.wait_exit();
}

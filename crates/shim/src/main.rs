//! `berth-shim`: one small process per container that holds its stdio, terminal and exit
//! status, so the container outlives a restart of `berthd`.
//!
//! ```text
//! berth-shim start --id ID --bundle DIR --runtime-root DIR --state-dir DIR
//!                  [--terminal] [--stdin] [--no-start] [--log-path FILE]
//! ```
//!
//! `start` detaches (fork, setsid, PR_SET_CHILD_SUBREAPER; stdin and stdout on /dev/null,
//! stderr on `STATE_DIR/shim.log`), creates the container through the runtime library in
//! its own process (the container's init is the shim's child), starts it, and then serves
//! `STATE_DIR/shim.sock`; once idle it goes on from a fresh image of itself (`handoff.rs`:
//! the creation code's pages do not stay resident for the container's lifetime). The command returns 0 once the container runs, or 1 with the
//! error as one line on stderr, in which case nothing is left behind (no shim, no runtime
//! state, no cgroup; `STATE_DIR` is removed if `start` made it). `--no-start` leaves the
//! container created (parked) until a `start` request, so that a client can attach first
//! and miss no output, as Docker's create/attach/start does.
//!
//! # Files in `STATE_DIR`
//!
//! | file | what |
//! |---|---|
//! | `shim.pid` | the shim's pid |
//! | `shim.sock` | the control socket (below) |
//! | `shim.log` | the shim's own messages |
//! | `container.log` | the container's output in Docker's json-file format: one `{"log":"...","stream":"stdout"\|"stderr","time":"RFC 3339 nanos"}` per line of output |
//! | `exit.json` | `{"exit_code":N,"finished_at":"RFC 3339"}`, written atomically when the container has exited, before any `wait` is answered |
//!
//! # Protocol of `shim.sock`
//!
//! One request per connection: a JSON object on one line. The answer is one JSON line;
//! failures are `{"error":"message"}`, then the shim closes the connection.
//!
//! | request | answer |
//! |---|---|
//! | `{"op":"state"}` | `{"status":"created"\|"running"\|"paused"\|"stopped","pid":N}`; once exited also `"exit_code"` and `"finished_at"` |
//! | `{"op":"wait"}` | blocks until the container has exited and its output is drained: `{"exit_code":N,"finished_at":"..."}` (N is 128+signal when killed by a signal) |
//! | `{"op":"start"}` | `{"ok":true}`: starts a container made with `--no-start`. If it fails the container is deleted and the shim exits |
//! | `{"op":"kill","signal":15}` | `{"ok":true}`; `"all":true` signals every process of the container |
//! | `{"op":"resize","rows":R,"cols":C}` | `{"ok":true}`; terminal only |
//! | `{"op":"attach","stdin":B,"stdout":B,"stderr":B,"close_stdin":B}` (`close_stdin` defaults to true) | `{"ok":true}`, then the connection is a raw stream (below) |
//! | `{"op":"delete"}` | `{"ok":true}` once the runtime deleted the exited (or never started) container; the shim then removes `shim.sock` and `shim.pid` and exits. `container.log`, `exit.json` and `shim.log` stay for the daemon |
//! | `{"op":"exec","id":"EXEC_ID","process":{...},"terminal":B,"stdin":B}` | `{"ok":true,"pid":N}` once the process (an OCI `process` object, as runc's `exec --process` file) runs in the container, then the connection is its stream, as after `attach`; or the runtime's error (`exec: "x": executable file not found in $PATH`) and nothing runs. `terminal` overrides `process.terminal`; without `stdin` the process's stdin is /dev/null |
//! | `{"op":"exec_wait","id":"EXEC_ID"}` | blocks until the exec has exited and its output is drained: `{"exit_code":N}`; answers at once after that, for as long as the shim runs |
//! | `{"op":"exec_resize","id":"EXEC_ID","rows":R,"cols":C}` | `{"ok":true}`; an exec with a terminal, while it runs |
//!
//! After the `attach` answer line:
//! - with a terminal, bytes are raw in both directions;
//! - without one, the container's output comes in Docker's multiplexed frames (an 8-byte
//!   header: stream 1 = stdout or 2 = stderr, three zero bytes, the big-endian u32 length;
//!   then the payload), which a daemon can copy to an API client unchanged;
//! - the client's bytes go to the container's stdin (only with `--stdin` and `"stdin":true`);
//!   the client's half-close (shutdown of its write side) closes the container's stdin pipe
//!   (unless the attach said `"close_stdin":false`);
//! - the shim closes the stream when the container has exited and its output is sent.
//!
//! An `exec` stream is the same for its own process, with stdout and stderr always sent:
//! raw with a terminal, framed without; the half-close closes its stdin pipe; the shim
//! closes the stream once the process exited and its output is sent (output of children
//! that outlive it is waited for up to two seconds after the last of it). Exec output goes
//! to the stream only, never to `container.log`, as Docker's. The shim reaps exec'd
//! processes itself (it is their parent) and keeps their exit codes for `exec_wait`.

mod exec_session;
mod handoff;
mod json_log;
mod launch;
mod process_io;
mod protocol;
mod server;

use anyhow::{Context as _, Result};
use berth_runtime::state::StateRoot;
use clap::{Args, Parser, Subcommand};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::ForkResult;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "berth-shim",
    version,
    about = "Holds one container's stdio, terminal and exit status for berthd",
    long_about = "Holds one container's stdio, terminal and exit status for berthd, so the \
                  container outlives a daemon restart. See the crate documentation for the \
                  socket protocol."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create and start the container, detach, and serve STATE_DIR/shim.sock.
    Start(StartArgs),
}

#[derive(Args)]
struct StartArgs {
    /// The container's id.
    #[arg(long)]
    id: String,
    /// The OCI bundle (config.json and the rootfs).
    #[arg(long)]
    bundle: PathBuf,
    /// The runtime's state root (berth-runtime --root).
    #[arg(long)]
    runtime_root: PathBuf,
    /// Where the shim keeps its socket, pid, logs and exit status.
    #[arg(long)]
    state_dir: PathBuf,
    /// The container has a terminal (process.terminal): the shim holds the pty master.
    #[arg(long)]
    terminal: bool,
    /// Keep the container's stdin open for attached clients (otherwise it is /dev/null).
    #[arg(long)]
    stdin: bool,
    /// Create the container but wait for a `start` request to start it.
    #[arg(long)]
    no_start: bool,
    /// Where to append the container's output (json-file); default STATE_DIR/container.log.
    /// The daemon keeps logs under its data root, where they outlive the state dir.
    #[arg(long)]
    log_path: Option<PathBuf>,
}

fn main() -> ExitCode {
    // The serving image skips clap: its parser is the largest code it would touch.
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some(handoff::SERVE) {
        return ExitCode::from(handoff::serve(&raw[2..]) as u8);
    }
    let Command::Start(args) = Cli::parse().command;
    start(args)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("current directory")?
            .join(p))
    }
}

/// The command's side: fork the shim and relay its report of how the start went.
fn start(mut args: StartArgs) -> ExitCode {
    let resolved = (|| -> Result<()> {
        args.bundle = absolute(&args.bundle)?;
        args.runtime_root = absolute(&args.runtime_root)?;
        args.state_dir = absolute(&args.state_dir)?;
        if let Some(log) = &args.log_path {
            args.log_path = Some(absolute(log)?);
        }
        Ok(())
    })();
    if let Err(e) = resolved {
        eprintln!("berth-shim: {e:#}");
        return ExitCode::FAILURE;
    }
    let (mut report_r, report_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok((r, w)) => (std::fs::File::from(r), w),
        Err(e) => {
            eprintln!("berth-shim: pipe: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SAFETY: single-threaded here, so the child may do anything after fork.
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            eprintln!("berth-shim: fork: {e}");
            ExitCode::FAILURE
        }
        Ok(ForkResult::Child) => {
            drop(report_r);
            std::process::exit(shim_main(args, report_w))
        }
        Ok(ForkResult::Parent { child }) => {
            drop(report_w);
            // Success is one zero byte, not EOF: a parked (`--no-start`) init holds a copy
            // of the pipe until its exec. A failure is 1 and the message, and by then the
            // init is gone.
            let mut first = [0u8; 1];
            let got = loop {
                match report_r.read(&mut first) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            if matches!(got, Ok(1)) && first[0] == 0 {
                return ExitCode::SUCCESS;
            }
            let mut report = Vec::new();
            let _ = report_r.read_to_end(&mut report);
            // A failed shim exits right after its report: let it be gone when we return.
            let _ = nix::sys::wait::waitpid(child, None);
            let msg = String::from_utf8_lossy(&report);
            if msg.is_empty() {
                eprintln!(
                    "berth-shim: the shim exited before the container started (see {})",
                    args.state_dir.join("shim.log").display()
                );
            } else {
                eprintln!("berth-shim: {msg}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The shim process. `report` gets one zero byte once the container runs, or the error.
fn shim_main(args: StartArgs, report: OwnedFd) -> i32 {
    let _ = nix::unistd::setsid();
    close_inherited_fds(report.as_raw_fd());
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let made_dir = !args.state_dir.exists();
    let result = detach(&args).and_then(|own| setup(&args, own));
    match result {
        Ok(parts) => {
            let _ = nix::unistd::write(&report, &[0]);
            drop(report);
            match parts.into_server([Vec::new(), Vec::new()]) {
                Ok(mut server) => {
                    server.hand_off_when_idle();
                    server.run()
                }
                Err(e) => {
                    eprintln!("berth-shim: {e:#}");
                    let _ = berth_runtime::lifecycle::delete(
                        &StateRoot::new(&args.runtime_root),
                        &args.id,
                        true,
                    );
                    1
                }
            }
        }
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("berth-shim: {msg}");
            clean_state_dir(&args.state_dir, made_dir);
            let _ = nix::unistd::write(&report, format!("\x01{msg}").as_bytes());
            1
        }
    }
}

/// Closes every descriptor above stdio that we inherited, except `keep`: the shim lives for
/// as long as its container, and must not hold the caller's pipes (a caller waiting for EOF
/// on one would wait that long).
fn close_inherited_fds(keep: RawFd) {
    let close_range = |first: RawFd, last: RawFd| {
        // SAFETY: close_range(2) on descriptor numbers; none of them is in use by us.
        unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0) }
    };
    let mut ok = true;
    if keep > 3 {
        ok &= close_range(3, keep - 1) == 0;
    }
    ok &= close_range(keep.max(2) + 1, RawFd::MAX) == 0;
    if ok {
        return;
    }
    // Kernels before 5.9: the slow way.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|&fd| fd > 2 && fd != keep) {
        // SAFETY: closing a descriptor number we inherited (or the listing's own, now gone).
        unsafe { libc::close(fd) };
    }
}

/// Our stdio off the caller's terminal or pipes: /dev/null, and stderr to shim.log.
fn detach(args: &StartArgs) -> Result<launch::OwnStdio> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(args.state_dir.join("shim.log"))
        .context("opening shim.log")?;
    let own = launch::OwnStdio {
        null: null.into(),
        log: log.into(),
    };
    own.restore();
    std::env::set_current_dir("/").context("chdir /")?;
    Ok(own)
}

fn setup(args: &StartArgs, own: launch::OwnStdio) -> Result<handoff::Parts> {
    // Blocked before the init exists so its exit cannot slip past the signalfd; the init
    // resets its mask before exec.
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .context("blocking SIGCHLD")?;

    let sock = args.state_dir.join(server::SOCKET);
    // sun_path holds 108 bytes; a deep state dir (a test's temp dir plus a 64-hex id) does
    // not fit. Through an open fd of the dir the path is short however deep the dir is.
    let dir = std::fs::File::open(&args.state_dir)
        .with_context(|| format!("opening {}", args.state_dir.display()))?;
    let short = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), server::SOCKET);
    if UnixStream::connect(&short).is_ok() {
        anyhow::bail!("a shim already serves {}", sock.display());
    }
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(args.state_dir.join(server::EXIT_FILE));
    let listener =
        UnixListener::bind(&short).with_context(|| format!("binding {}", sock.display()))?;
    drop(dir);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(
            args.log_path
                .clone()
                .unwrap_or_else(|| args.state_dir.join(server::CONTAINER_LOG)),
        )
        .context("opening container.log")?;
    server::write_atomic(
        &args.state_dir.join(server::PID_FILE),
        std::process::id().to_string().as_bytes(),
    )?;

    let req = launch::Request {
        id: args.id.clone(),
        bundle: args.bundle.clone(),
        root: StateRoot::new(&args.runtime_root),
        terminal: args.terminal,
        stdin: args.stdin,
    };
    let launched = launch::create(&req, &own)?;
    if !args.no_start {
        launch::start(&req)?;
    }
    eprintln!(
        "berth-shim: container {} {} (init {}), serving {}",
        args.id,
        if args.no_start { "created" } else { "started" },
        launched.pid,
        sock.display()
    );
    Ok(handoff::Parts {
        req,
        own,
        state_dir: args.state_dir.clone(),
        listener,
        launched,
        log,
        started: !args.no_start,
        waiters: Vec::new(),
        past_execs: Vec::new(),
    })
}

/// After a failed start: what the shim made in STATE_DIR goes (all of it if it made the
/// directory); shim.log stays otherwise, holding the error.
fn clean_state_dir(dir: &Path, made_dir: bool) {
    if made_dir {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    for f in [
        server::SOCKET,
        server::PID_FILE,
        server::CONTAINER_LOG,
        server::EXIT_FILE,
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from([
            "berth-shim",
            "start",
            "--id",
            "c1",
            "--bundle",
            "b",
            "--runtime-root",
            "/run/r",
            "--state-dir",
            "/run/s",
            "--terminal",
        ])
        .unwrap();
        let Command::Start(a) = cli.command;
        assert_eq!(a.id, "c1");
        assert!(a.terminal && !a.stdin && !a.no_start);
        assert!(Cli::try_parse_from(["berth-shim", "start", "--id", "x"]).is_err());
    }
}

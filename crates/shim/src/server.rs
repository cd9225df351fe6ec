//! The shim's event loop: one poll(2) over the listening socket, the clients, the
//! container's output, its stdin (while a write is pending), the same for every exec'd
//! process, and a signalfd for SIGCHLD.
//!
//! Every descriptor is non-blocking, so no slow client or container stalls the others: a
//! client's unsent output is buffered (and the client dropped past `MAX_CLIENT_BUFFER`),
//! and client input is not read while stdin has a write pending.

use crate::exec_session::{self, ExecRequest, ExecSession};
use crate::handoff::{self, Parts};
use crate::json_log::JsonLog;
use crate::launch::{self, Launched, OwnStdio, Stdio};
use crate::process_io::{read_fd, set_nonblocking, Output, StdinWriter};
use crate::protocol::{self, Request, STDERR, STDOUT};
use anyhow::{Context as _, Result};
use berth_runtime::lifecycle;
use berth_runtime::state::{now_rfc3339, Status};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SOCKET: &str = "shim.sock";
pub const PID_FILE: &str = "shim.pid";
pub const EXIT_FILE: &str = "exit.json";
pub const CONTAINER_LOG: &str = "container.log";

/// How long output may keep coming after the init exited (from processes that outlived it
/// and still hold the pipes, without a pid namespace) before the exit is reported anyway.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// A client that falls this far behind the container's output is disconnected.
const MAX_CLIENT_BUFFER: usize = 4 << 20;
/// An exec's output is not read while its client has this much unsent: the exec has one
/// reader, so it is paced by it (the pipe fills and the process blocks) instead of dropped.
const EXEC_BACKLOG: usize = 256 << 10;

enum Mode {
    /// Reading the request line.
    Request(Vec<u8>),
    /// `wait`: answered when the exit is known.
    Waiting,
    Attached {
        stdin: bool,
        stdout: bool,
        stderr: bool,
        input_open: bool,
        /// The client's EOF is the container's (Docker's `StdinOnce`).
        close_stdin: bool,
    },
    /// The stream of exec `execs[exec]`: its output in, the client's bytes to its stdin.
    Exec { exec: usize, input_open: bool },
    /// `exec_wait` on `execs[exec]`: answered when it has finished.
    ExecWaiting(usize),
    /// Answered; closed once the answer is sent.
    Replied,
}

struct Client {
    sock: UnixStream,
    mode: Mode,
    out: Vec<u8>,
    close_when_flushed: bool,
    dead: bool,
}

impl Client {
    fn reply(&mut self, line: Vec<u8>) {
        self.out.extend_from_slice(&line);
        self.mode = Mode::Replied;
        self.close_when_flushed = true;
        self.flush();
    }

    fn flush(&mut self) {
        while !self.out.is_empty() && !self.dead {
            match self.sock.write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => self.dead = true,
            }
        }
        if self.out.is_empty() && self.close_when_flushed {
            let _ = self.sock.shutdown(std::net::Shutdown::Both);
            self.dead = true;
        }
    }

    fn wants(&self, stream: u8) -> bool {
        match self.mode {
            Mode::Attached { stdout, stderr, .. } => {
                (stream == STDOUT && stdout) || (stream == STDERR && stderr)
            }
            _ => false,
        }
    }
}

pub struct Server {
    req: launch::Request,
    state_dir: PathBuf,
    init: Pid,
    started: bool,
    listener: UnixListener,
    signals: SignalFd,
    /// Where attached clients' input goes: the stdin pipe or the pty master.
    stdin: StdinWriter,
    pty: Option<OwnedFd>,
    outputs: Vec<Output>,
    log: JsonLog,
    clients: Vec<Client>,
    exit_code: Option<i32>,
    exited_at: Option<Instant>,
    /// exit.json's content, once written.
    finished: Option<Value>,
    quit: bool,
    /// Our /dev/null and log, put back on 0, 1 and 2 after an exec borrowed them.
    own: OwnStdio,
    /// Every exec of this container, finished ones included (for `exec_wait`); indices are
    /// stable, clients refer to them.
    execs: Vec<ExecSession>,
    /// Exit codes of execs that finished before a handoff (id, code): `exec_wait` still
    /// answers for them, and their ids stay taken.
    past_execs: Vec<(String, i32)>,
    /// When to hand the loop over to a fresh image of the shim (`handoff.rs`), if it is
    /// idle then; put off while it is not. None once handed over, until an exec or an
    /// attached client has come and gone (they bring code and buffers in again).
    handoff_at: Option<Instant>,
}

/// How long a shim is idle after the start before it hands itself over. A container that
/// lives shorter never pays for the exec; one that lives longer sheds the creation code.
const HANDOFF_IDLE: Duration = Duration::from_millis(500);

/// How many finished execs' exit codes a handoff carries.
const PAST_EXECS_KEPT: usize = 256;

/// What one slot of the poll set belongs to.
#[derive(Clone, Copy)]
enum Slot {
    Listener,
    Signals,
    Output(usize),
    Stdin,
    Client(usize),
    /// (exec, output)
    ExecOutput(usize, usize),
    ExecStdin(usize),
}

/// The status a reaped child reports, as Docker's exit codes: 128+signal when killed.
fn exit_code(status: libc::c_int) -> Option<i32> {
    if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Some(128 + libc::WTERMSIG(status))
    } else {
        None
    }
}

impl Server {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        req: launch::Request,
        own: OwnStdio,
        state_dir: PathBuf,
        listener: UnixListener,
        signals: SignalFd,
        launched: Launched,
        log: JsonLog,
        started: bool,
        waiters: Vec<UnixStream>,
    ) -> Result<Server> {
        listener
            .set_nonblocking(true)
            .context("non-blocking listener")?;
        let (stdin, pty, outputs) = match launched.stdio {
            Stdio::Pipes {
                stdin,
                stdout,
                stderr,
            } => (
                stdin,
                None,
                vec![
                    Output {
                        fd: Some(stdout),
                        stream: STDOUT,
                    },
                    Output {
                        fd: Some(stderr),
                        stream: STDERR,
                    },
                ],
            ),
            Stdio::Terminal { master } => {
                let reader = master.try_clone().context("dup of the pty master")?;
                let writer = match req.stdin {
                    true => Some(master.try_clone().context("dup of the pty master")?),
                    false => None,
                };
                (
                    writer,
                    Some(master),
                    vec![Output {
                        fd: Some(reader),
                        stream: STDOUT,
                    }],
                )
            }
        };
        for fd in outputs.iter().filter_map(|o| o.fd.as_ref()) {
            set_nonblocking(fd.as_raw_fd());
        }
        let stdin = StdinWriter::new(stdin, pty.is_some());
        Ok(Server {
            req,
            state_dir,
            init: launched.pid,
            started,
            listener,
            signals,
            stdin,
            pty,
            outputs,
            log,
            clients: waiters
                .into_iter()
                .map(|sock| Client {
                    sock,
                    mode: Mode::Waiting,
                    out: Vec::new(),
                    close_when_flushed: false,
                    dead: false,
                })
                .collect(),
            exit_code: None,
            exited_at: None,
            finished: None,
            quit: false,
            own,
            execs: Vec::new(),
            past_execs: Vec::new(),
            handoff_at: None,
        })
    }

    /// The exit codes of execs an earlier image of the shim ran (see `past_execs`).
    pub fn remember_execs(&mut self, past: Vec<(String, i32)>) {
        self.past_execs = past;
    }

    /// After an exec or an attached session ended: hand over again once idle, unless a
    /// handoff is already due.
    fn hand_off_again(&mut self) {
        if self.handoff_at.is_none() {
            self.hand_off_when_idle();
        }
    }

    /// Hand over to a fresh image once idle ([`HANDOFF_IDLE`] from now, or later).
    pub fn hand_off_when_idle(&mut self) {
        self.handoff_at = Some(Instant::now() + HANDOFF_IDLE);
    }

    /// Nothing in flight that a handoff could not carry: clients only waiting for the exit
    /// (the daemon keeps one per container), no exec running (finished ones' exit codes go
    /// along), no pending stdin, the container running (or parked) with its output open.
    fn idle(&self) -> bool {
        self.clients
            .iter()
            .all(|c| matches!(c.mode, Mode::Waiting) && c.out.is_empty() && !c.dead)
            && self.execs.iter().all(|e| e.finished)
            && self.exit_code.is_none()
            && self.exited_at.is_none()
            && !self.stdin.has_pending()
            && !self.outputs.is_empty()
            && self.outputs.iter().all(|o| o.fd.is_some())
    }

    /// Back into what `setup` made, for [`handoff::reexec`](crate::handoff::reexec). Only
    /// when [`Server::idle`].
    fn into_parts(self) -> (Parts, [Vec<u8>; 2]) {
        let mut outputs = self.outputs.into_iter().filter_map(|o| o.fd);
        let stdio = match self.pty {
            Some(master) => Stdio::Terminal { master },
            None => {
                let (stdout, stderr) = (outputs.next(), outputs.next());
                match (stdout, stderr) {
                    (Some(stdout), Some(stderr)) => Stdio::Pipes {
                        stdin: self.stdin.into_fd(),
                        stdout,
                        stderr,
                    },
                    // `idle` saw both open.
                    _ => unreachable!("a pipes container without its two outputs"),
                }
            }
        };
        let (log, partial) = self.log.into_parts();
        let waiters = self.clients.into_iter().map(|c| c.sock).collect();
        let mut past_execs = self.past_execs;
        past_execs.extend(
            self.execs
                .into_iter()
                .map(|e| (e.id, e.exit_code.unwrap_or(0))),
        );
        // The newest ones: the daemon asks right after an exec ends, and the handoff's
        // command line must stay far below the kernel's 128 kB per argument (a health
        // check every few seconds makes thousands of execs).
        past_execs.drain(..past_execs.len().saturating_sub(PAST_EXECS_KEPT));
        let parts = Parts {
            req: self.req,
            own: self.own,
            state_dir: self.state_dir,
            listener: self.listener,
            launched: Launched {
                pid: self.init,
                stdio,
            },
            log,
            started: self.started,
            waiters,
            past_execs,
        };
        (parts, partial)
    }

    /// Re-executes the shim with this loop's state; if that fails, goes on serving here.
    fn hand_off(self) -> i32 {
        let (parts, partial) = self.into_parts();
        let (parts, e) = handoff::reexec(parts, partial.clone());
        eprintln!("berth-shim: serving without a fresh image: {e:#}");
        match parts.into_server(partial) {
            Ok(server) => server.run(),
            Err(e) => {
                eprintln!("berth-shim: {e:#}");
                1
            }
        }
    }

    /// Serves until `delete`; returns the shim's exit status.
    pub fn run(mut self) -> i32 {
        // The init may already be gone (a program that exits at once).
        self.reap();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            self.maybe_finish();
            if self.quit {
                self.shut_down();
                return 0;
            }
            let (mut fds, slots) = self.poll_set();
            let draining = self
                .execs
                .iter()
                .filter(|e| !e.finished)
                .filter_map(|e| e.exited_at)
                .chain(self.exited_at.filter(|_| self.finished.is_none()))
                .min();
            if let Some(at) = self.handoff_at {
                if Instant::now() >= at {
                    if self.idle() {
                        return self.hand_off();
                    }
                    self.handoff_at = Some(Instant::now() + HANDOFF_IDLE);
                }
            }
            let drain = draining.map(|t| DRAIN_GRACE.saturating_sub(t.elapsed()));
            let handoff = self
                .handoff_at
                .map(|at| at.saturating_duration_since(Instant::now()));
            let timeout = match drain.into_iter().chain(handoff).min() {
                Some(d) => d.as_millis() as i32 + 1,
                None => -1,
            };
            // SAFETY: poll(2) over a live array of pollfd.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("berth-shim: poll: {e}");
                return 1;
            }
            for (pfd, slot) in fds.iter().zip(slots) {
                if pfd.revents == 0 {
                    continue;
                }
                match slot {
                    Slot::Listener => self.accept(),
                    Slot::Signals => self.reap(),
                    Slot::Output(i) => self.read_output(i, &mut buf),
                    Slot::Stdin => self.stdin.flush(),
                    Slot::Client(i) => self.client_ready(i, pfd.revents, &mut buf),
                    Slot::ExecOutput(e, i) => self.read_exec_output(e, i, &mut buf),
                    Slot::ExecStdin(e) => self.execs[e].stdin.flush(),
                }
            }
            self.outputs.retain(|o| o.fd.is_some());
            for e in &mut self.execs {
                e.outputs.retain(|o| o.fd.is_some());
            }
            let sessions_ended = self
                .clients
                .iter()
                .any(|c| c.dead && matches!(c.mode, Mode::Attached { .. } | Mode::Exec { .. }));
            self.clients.retain(|c| !c.dead);
            if sessions_ended {
                self.hand_off_again();
            }
        }
    }

    fn poll_set(&self) -> (Vec<libc::pollfd>, Vec<Slot>) {
        let mut fds = Vec::new();
        let mut slots = Vec::new();
        let mut add = |fd: RawFd, events: libc::c_short, slot: Slot| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            slots.push(slot);
        };
        add(self.listener.as_raw_fd(), libc::POLLIN, Slot::Listener);
        add(self.signals.as_raw_fd(), libc::POLLIN, Slot::Signals);
        for (i, o) in self.outputs.iter().enumerate() {
            if let Some(fd) = &o.fd {
                add(fd.as_raw_fd(), libc::POLLIN, Slot::Output(i));
            }
        }
        if let Some(fd) = self.stdin.pending_fd() {
            add(fd, libc::POLLOUT, Slot::Stdin);
        }
        for (e, exec) in self.execs.iter().enumerate() {
            let backlog = self.exec_client(e).map_or(0, |c| self.clients[c].out.len());
            if backlog < EXEC_BACKLOG {
                for (i, o) in exec.outputs.iter().enumerate() {
                    if let Some(fd) = &o.fd {
                        add(fd.as_raw_fd(), libc::POLLIN, Slot::ExecOutput(e, i));
                    }
                }
            }
            if let Some(fd) = exec.stdin.pending_fd() {
                add(fd, libc::POLLOUT, Slot::ExecStdin(e));
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            let mut events = 0;
            match c.mode {
                Mode::Request(_) | Mode::Waiting | Mode::ExecWaiting(_) => events |= libc::POLLIN,
                Mode::Attached { input_open, .. } => {
                    // Backpressure: no more input while stdin has a write pending.
                    if input_open && !self.stdin.has_pending() {
                        events |= libc::POLLIN;
                    }
                }
                Mode::Exec { exec, input_open } => {
                    if input_open && !self.execs[exec].stdin.has_pending() {
                        events |= libc::POLLIN;
                    }
                }
                Mode::Replied => {}
            }
            if !c.out.is_empty() {
                events |= libc::POLLOUT;
            }
            add(c.sock.as_raw_fd(), events, Slot::Client(i));
        }
        (fds, slots)
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.clients.push(Client {
                        sock,
                        mode: Mode::Request(Vec::new()),
                        out: Vec::new(),
                        close_when_flushed: false,
                        dead: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    eprintln!("berth-shim: accept: {e}");
                    return;
                }
            }
        }
    }

    /// The live (not dead) client streaming exec `e`, if any.
    fn exec_client(&self, e: usize) -> Option<usize> {
        self.clients
            .iter()
            .position(|c| !c.dead && matches!(c.mode, Mode::Exec { exec, .. } if exec == e))
    }

    /// Reaps every exited child: the container's init, the exec'd processes, and (as a
    /// subreaper) whatever of their descendants was orphaned onto us.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        loop {
            let mut status = 0;
            // SAFETY: waitpid(2) with a status out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let Some(code) = exit_code(status) else {
                continue;
            };
            if pid == self.init.as_raw() {
                eprintln!("berth-shim: container init {pid} exited: {code}");
                self.exit_code = Some(code);
                self.exited_at = Some(Instant::now());
            } else if let Some(e) = self
                .execs
                .iter_mut()
                .find(|e| e.pid.as_raw() == pid && e.exit_code.is_none())
            {
                e.exit_code = Some(code);
                e.exited_at = Some(Instant::now());
            }
        }
    }

    /// An exec's output goes to its stream only (Docker does not log exec output); with
    /// no client left it is read and dropped, so the process does not block on a full pipe.
    fn read_exec_output(&mut self, e: usize, i: usize, buf: &mut [u8]) {
        let Some(fd) = self.execs[e].outputs[i].fd.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        let stream = self.execs[e].outputs[i].stream;
        match read_fd(fd, buf) {
            Ok(n) if n > 0 => {
                if self.execs[e].exit_code.is_some() {
                    // The grace counts from the last output, not the exit: a reader that
                    // paced us must not lose what is still in the pipe.
                    self.execs[e].exited_at = Some(Instant::now());
                }
                let raw = self.execs[e].pty.is_some();
                if let Some(c) = self.exec_client(e) {
                    let c = &mut self.clients[c];
                    if raw {
                        c.out.extend_from_slice(&buf[..n]);
                    } else {
                        protocol::frame(stream, &buf[..n], &mut c.out);
                    }
                    c.flush();
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            // EOF, or EIO from a pty master whose last slave is closed.
            _ => self.execs[e].outputs[i].fd = None,
        }
    }

    fn read_output(&mut self, i: usize, buf: &mut [u8]) {
        let Some(fd) = self.outputs[i].fd.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        let stream = self.outputs[i].stream;
        match read_fd(fd, buf) {
            Ok(n) if n > 0 => self.dispatch(stream, &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            // EOF, or EIO from a pty master whose last slave is closed.
            _ => {
                self.log.flush(stream);
                self.outputs[i].fd = None;
            }
        }
    }

    fn dispatch(&mut self, stream: u8, data: &[u8]) {
        self.log.write(stream, data);
        let raw = self.pty.is_some();
        for c in self
            .clients
            .iter_mut()
            .filter(|c| !c.dead && c.wants(stream))
        {
            if raw {
                c.out.extend_from_slice(data);
            } else {
                protocol::frame(stream, data, &mut c.out);
            }
            if c.out.len() > MAX_CLIENT_BUFFER {
                eprintln!("berth-shim: dropping an attached client that stopped reading");
                c.dead = true;
            } else {
                c.flush();
            }
        }
    }

    fn client_ready(&mut self, i: usize, revents: libc::c_short, buf: &mut [u8]) {
        if revents & libc::POLLOUT != 0 {
            self.clients[i].flush();
        }
        if self.clients[i].dead {
            return;
        }
        let reading = match &self.clients[i].mode {
            Mode::Request(_) | Mode::Waiting | Mode::ExecWaiting(_) => true,
            Mode::Attached { input_open, .. } | Mode::Exec { input_open, .. } => *input_open,
            Mode::Replied => false,
        };
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
            return;
        }
        if !reading {
            // Hung up (or failed) with nothing left to read from it.
            if revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                self.clients[i].dead = true;
            }
            return;
        }
        let n = match self.clients[i].sock.read(buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return,
            Err(_) => {
                self.clients[i].dead = true;
                return;
            }
        };
        let data = &buf[..n];
        match &mut self.clients[i].mode {
            Mode::Request(line) => {
                line.extend_from_slice(data);
                let end = line.iter().position(|&b| b == b'\n');
                let complete = match end {
                    Some(pos) => Some((line[..pos].to_vec(), line[pos + 1..].to_vec())),
                    // A request without its newline, ended by a half-close, counts.
                    None if n == 0 && !line.is_empty() => Some((std::mem::take(line), vec![])),
                    None if n == 0 => {
                        self.clients[i].dead = true;
                        None
                    }
                    None if line.len() > protocol::MAX_REQUEST => {
                        let e = protocol::RequestError::TooLong;
                        self.clients[i].reply(protocol::error(e));
                        None
                    }
                    None => None,
                };
                if let Some((req, rest)) = complete {
                    self.request(i, &req, rest, n == 0);
                }
            }
            Mode::Waiting | Mode::ExecWaiting(_) => {
                if n == 0 {
                    self.clients[i].dead = true;
                }
            }
            Mode::Exec { exec, input_open } => {
                let stdin = &mut self.execs[*exec].stdin;
                if n == 0 {
                    *input_open = false;
                    stdin.close();
                } else {
                    stdin.feed(&buf[..n]);
                }
            }
            Mode::Attached {
                stdin,
                input_open,
                close_stdin,
                ..
            } => {
                let to_stdin = *stdin;
                if n == 0 {
                    *input_open = false;
                    // Docker's StdinOnce: the client's half-close is the container's EOF.
                    if to_stdin && *close_stdin {
                        self.stdin.close();
                    }
                } else if to_stdin {
                    self.stdin.feed(&buf[..n]);
                }
            }
            Mode::Replied => {}
        }
    }

    fn request(&mut self, i: usize, line: &[u8], rest: Vec<u8>, input_ended: bool) {
        let req = match protocol::parse(line) {
            Ok(r) => r,
            Err(e) => return self.clients[i].reply(protocol::error(e)),
        };
        let answer = match req {
            Request::State => self.state(),
            Request::Wait => match &self.finished {
                Some(v) => protocol::line(v),
                None => {
                    self.clients[i].mode = Mode::Waiting;
                    return;
                }
            },
            Request::Start => self.start(),
            Request::Kill { signal, all } => {
                if self.exit_code.is_some() {
                    protocol::error("container has exited")
                } else {
                    match lifecycle::kill(&self.req.root, &self.req.id, signal, all) {
                        Ok(()) => protocol::ok(),
                        Err(e) => protocol::error(e),
                    }
                }
            }
            Request::Resize { rows, cols } => self.resize(rows, cols),
            Request::Attach {
                stdin,
                stdout,
                stderr,
                close_stdin,
            } => {
                if self.finished.is_some() {
                    protocol::error("container has exited")
                } else {
                    let stdin = stdin && self.stdin.is_open();
                    let c = &mut self.clients[i];
                    c.out.extend_from_slice(&protocol::ok());
                    c.mode = Mode::Attached {
                        stdin,
                        stdout,
                        stderr,
                        input_open: !input_ended,
                        close_stdin,
                    };
                    c.flush();
                    if stdin && !rest.is_empty() {
                        self.stdin.feed(&rest);
                    }
                    if stdin && input_ended && close_stdin {
                        self.stdin.close();
                    }
                    return;
                }
            }
            Request::Delete => self.delete(),
            Request::Exec {
                id,
                process,
                terminal,
                stdin,
            } => {
                let req = ExecRequest {
                    id,
                    process: *process,
                    terminal,
                    stdin,
                };
                return self.exec(i, req, rest, input_ended);
            }
            Request::ExecWait { id } => match self.execs.iter().position(|e| e.id == id) {
                None => match self.past_execs.iter().find(|(past, _)| *past == id) {
                    Some((_, code)) => protocol::line(&json!({"exit_code": code})),
                    None => protocol::error(format!("no such exec: {id}")),
                },
                Some(e) if self.execs[e].finished => {
                    protocol::line(&json!({"exit_code": self.execs[e].exit_code}))
                }
                Some(e) => {
                    self.clients[i].mode = Mode::ExecWaiting(e);
                    return;
                }
            },
            Request::ExecResize { id, rows, cols } => {
                match self.execs.iter().find(|e| e.id == id && !e.finished) {
                    None => protocol::error(format!("no such running exec: {id}")),
                    Some(e) => match e.resize(rows, cols) {
                        Ok(()) => protocol::ok(),
                        Err(msg) => protocol::error(msg),
                    },
                }
            }
        };
        self.clients[i].reply(answer);
    }

    /// Starts an exec and turns client `i` into its stream; `rest` is what the client sent
    /// after the request line (the first stdin bytes).
    fn exec(&mut self, i: usize, req: ExecRequest, rest: Vec<u8>, input_ended: bool) {
        if !self.started || self.exit_code.is_some() {
            return self.clients[i].reply(protocol::error("container is not running"));
        }
        if self.execs.iter().any(|e| e.id == req.id)
            || self.past_execs.iter().any(|(id, _)| *id == req.id)
        {
            let msg = format!("exec {} already exists", req.id);
            return self.clients[i].reply(protocol::error(msg));
        }
        let id = req.id.clone();
        let session = match exec_session::spawn(&self.req, &self.own, req) {
            Ok(s) => s,
            Err(e) => return self.clients[i].reply(protocol::error(e)),
        };
        eprintln!("berth-shim: exec {id} started (pid {})", session.pid);
        let pid = session.pid.as_raw();
        self.execs.push(session);
        let e = self.execs.len() - 1;
        let c = &mut self.clients[i];
        c.out
            .extend_from_slice(&protocol::line(&json!({"ok": true, "pid": pid})));
        c.mode = Mode::Exec {
            exec: e,
            input_open: !input_ended,
        };
        c.flush();
        let stdin = &mut self.execs[e].stdin;
        if !rest.is_empty() {
            stdin.feed(&rest);
        }
        if input_ended {
            stdin.close();
        }
    }

    fn state(&self) -> Vec<u8> {
        if let (Some(code), Some(f)) = (self.exit_code, &self.finished) {
            return protocol::line(&json!({
                "status": Status::Stopped,
                "pid": self.init.as_raw(),
                "exit_code": code,
                "finished_at": f["finished_at"],
            }));
        }
        match lifecycle::state(&self.req.root, &self.req.id) {
            Ok(s) => protocol::line(&json!({"status": s.status, "pid": self.init.as_raw()})),
            Err(e) => protocol::error(e),
        }
    }

    fn start(&mut self) -> Vec<u8> {
        if self.started {
            return protocol::error("container already started");
        }
        self.started = true;
        match launch::start(&self.req) {
            Ok(()) => protocol::ok(),
            Err(e) => {
                // start() deleted the container: nothing is left to serve.
                self.quit = true;
                protocol::error(format!("{e:#}"))
            }
        }
    }

    fn resize(&self, rows: u16, cols: u16) -> Vec<u8> {
        let Some(master) = &self.pty else {
            return protocol::error("the container has no terminal");
        };
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid winsize on the pty master.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return protocol::error(format!("resize: {}", std::io::Error::last_os_error()));
        }
        protocol::ok()
    }

    fn delete(&mut self) -> Vec<u8> {
        if self.exit_code.is_none() && self.started {
            return protocol::error("container is running: kill it first");
        }
        // A never-started container is killed; its init is reaped when we exit.
        let force = !self.started;
        if self.finished.is_none() && self.exit_code.is_some() {
            self.finish();
        }
        match lifecycle::delete(&self.req.root, &self.req.id, force) {
            Ok(()) | Err(berth_runtime::Error::NotFound(_)) => {
                self.quit = true;
                protocol::ok()
            }
            Err(e) => protocol::error(e),
        }
    }

    /// Once the init is reaped and its output drained (or the grace is over), records the
    /// exit and tells the waiters; attached streams end. The same for each exec.
    fn maybe_finish(&mut self) {
        for e in 0..self.execs.len() {
            let exec = &self.execs[e];
            if exec.finished {
                continue;
            }
            let paced = self
                .exec_client(e)
                .is_some_and(|c| self.clients[c].out.len() >= EXEC_BACKLOG);
            match exec.exited_at {
                Some(_) if exec.outputs.is_empty() => self.finish_exec(e),
                Some(t) if t.elapsed() >= DRAIN_GRACE && !paced => self.finish_exec(e),
                _ => {}
            }
        }
        if self.finished.is_some() {
            return;
        }
        match self.exited_at {
            Some(t) if self.outputs.is_empty() || t.elapsed() >= DRAIN_GRACE => self.finish(),
            _ => {}
        }
    }

    fn finish(&mut self) {
        let code = self.exit_code.unwrap_or(0);
        self.log.flush(STDOUT);
        self.log.flush(STDERR);
        let value = json!({"exit_code": code, "finished_at": now_rfc3339()});
        // Before any waiter hears of it: a daemon that restarts reads the file instead.
        if let Err(e) = write_atomic(&self.state_dir.join(EXIT_FILE), &protocol::line(&value)) {
            eprintln!("berth-shim: {e:#}");
        }
        self.stdin.discard();
        for c in &mut self.clients {
            match c.mode {
                Mode::Waiting => c.reply(protocol::line(&value)),
                Mode::Attached { .. } => {
                    c.close_when_flushed = true;
                    c.flush();
                }
                _ => {}
            }
        }
        self.finished = Some(value);
    }

    fn finish_exec(&mut self, e: usize) {
        let exec = &mut self.execs[e];
        exec.finish();
        let code = exec.exit_code.unwrap_or(0);
        eprintln!("berth-shim: exec {} exited: {code}", exec.id);
        let answer = protocol::line(&json!({"exit_code": code}));
        for c in &mut self.clients {
            match c.mode {
                Mode::ExecWaiting(w) if w == e => c.reply(answer.clone()),
                Mode::Exec { exec, .. } if exec == e => {
                    c.close_when_flushed = true;
                    c.flush();
                }
                _ => {}
            }
        }
        // The exec ran the runtime library's code in this image (`exec -d` has no client
        // whose end would say so).
        self.hand_off_again();
    }

    /// Sends what the clients still have coming (briefly, blocking) and leaves.
    fn shut_down(&mut self) {
        let _ = std::fs::remove_file(self.state_dir.join(SOCKET));
        let _ = std::fs::remove_file(self.state_dir.join(PID_FILE));
        for c in self.clients.iter_mut().filter(|c| !c.dead) {
            let _ = c.sock.set_nonblocking(false);
            let _ = c.sock.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = c.sock.write_all(&c.out);
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
        }
        eprintln!("berth-shim: container {} deleted, exiting", self.req.id);
    }
}

/// Temp file, fsync, rename: a reader sees the whole file or none.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

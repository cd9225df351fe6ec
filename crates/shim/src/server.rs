//! The shim's event loop: one poll(2) over the listening socket, the clients, the
//! container's output, its stdin (while a write is pending) and a signalfd for SIGCHLD.
//!
//! Every descriptor is non-blocking, so no slow client or container stalls the others: a
//! client's unsent output is buffered (and the client dropped past `MAX_CLIENT_BUFFER`),
//! and client input is not read while stdin has a write pending.

use crate::json_log::JsonLog;
use crate::launch::{self, Launched, Stdio};
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
    },
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

struct Output {
    /// None once it reached EOF; the entry goes at the end of that round of the loop.
    fd: Option<OwnedFd>,
    stream: u8,
}

pub struct Server {
    req: launch::Request,
    state_dir: PathBuf,
    init: Pid,
    started: bool,
    listener: UnixListener,
    signals: SignalFd,
    /// Where attached clients' input goes: the stdin pipe or the pty master.
    stdin: Option<OwnedFd>,
    stdin_pending: Vec<u8>,
    close_stdin_when_flushed: bool,
    pty: Option<OwnedFd>,
    outputs: Vec<Output>,
    log: JsonLog,
    clients: Vec<Client>,
    exit_code: Option<i32>,
    exited_at: Option<Instant>,
    /// exit.json's content, once written.
    finished: Option<Value>,
    quit: bool,
}

/// What one slot of the poll set belongs to.
#[derive(Clone, Copy)]
enum Slot {
    Listener,
    Signals,
    Output(usize),
    Stdin,
    Client(usize),
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own; only O_NONBLOCK changes.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: read(2) into a live buffer of the given length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl Server {
    pub fn new(
        req: launch::Request,
        state_dir: PathBuf,
        listener: UnixListener,
        signals: SignalFd,
        launched: Launched,
        log: JsonLog,
        started: bool,
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
        if let Some(s) = &stdin {
            set_nonblocking(s.as_raw_fd());
        }
        Ok(Server {
            req,
            state_dir,
            init: launched.pid,
            started,
            listener,
            signals,
            stdin,
            stdin_pending: Vec::new(),
            close_stdin_when_flushed: false,
            pty,
            outputs,
            log,
            clients: Vec::new(),
            exit_code: None,
            exited_at: None,
            finished: None,
            quit: false,
        })
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
            let timeout = match self.exited_at {
                Some(t) if self.finished.is_none() => {
                    DRAIN_GRACE.saturating_sub(t.elapsed()).as_millis() as i32 + 1
                }
                _ => -1,
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
                    Slot::Stdin => self.flush_stdin(),
                    Slot::Client(i) => self.client_ready(i, pfd.revents, &mut buf),
                }
            }
            self.outputs.retain(|o| o.fd.is_some());
            self.clients.retain(|c| !c.dead);
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
        if let (Some(s), false) = (&self.stdin, self.stdin_pending.is_empty()) {
            add(s.as_raw_fd(), libc::POLLOUT, Slot::Stdin);
        }
        for (i, c) in self.clients.iter().enumerate() {
            let mut events = 0;
            match c.mode {
                Mode::Request(_) | Mode::Waiting => events |= libc::POLLIN,
                Mode::Attached { input_open, .. } => {
                    // Backpressure: no more input while stdin has a write pending.
                    if input_open && self.stdin_pending.is_empty() {
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

    /// Reaps every exited child: the container's init, and (as a subreaper) whatever of
    /// its descendants was orphaned onto us.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        loop {
            let mut status = 0;
            // SAFETY: waitpid(2) with a status out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if pid != self.init.as_raw() {
                continue;
            }
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                continue;
            };
            eprintln!("berth-shim: container init {pid} exited: {code}");
            self.exit_code = Some(code);
            self.exited_at = Some(Instant::now());
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
            Mode::Request(_) | Mode::Waiting => true,
            Mode::Attached { input_open, .. } => *input_open,
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
            Mode::Waiting => {
                if n == 0 {
                    self.clients[i].dead = true;
                }
            }
            Mode::Attached {
                stdin, input_open, ..
            } => {
                let to_stdin = *stdin;
                if n == 0 {
                    *input_open = false;
                    // Docker's StdinOnce: the client's half-close is the container's EOF.
                    if to_stdin {
                        self.close_stdin();
                    }
                } else if to_stdin {
                    self.feed_stdin(&buf[..n]);
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
            } => {
                if self.finished.is_some() {
                    protocol::error("container has exited")
                } else {
                    let stdin = stdin && self.stdin.is_some();
                    let c = &mut self.clients[i];
                    c.out.extend_from_slice(&protocol::ok());
                    c.mode = Mode::Attached {
                        stdin,
                        stdout,
                        stderr,
                        input_open: !input_ended,
                    };
                    c.flush();
                    if stdin && !rest.is_empty() {
                        self.feed_stdin(&rest);
                    }
                    if stdin && input_ended {
                        self.close_stdin();
                    }
                    return;
                }
            }
            Request::Delete => self.delete(),
        };
        self.clients[i].reply(answer);
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

    fn feed_stdin(&mut self, data: &[u8]) {
        if self.stdin.is_none() {
            return;
        }
        self.stdin_pending.extend_from_slice(data);
        self.flush_stdin();
    }

    fn flush_stdin(&mut self) {
        let Some(fd) = &self.stdin else {
            self.stdin_pending.clear();
            return;
        };
        while !self.stdin_pending.is_empty() {
            // SAFETY: write(2) from a live buffer.
            let n = unsafe {
                libc::write(
                    fd.as_raw_fd(),
                    self.stdin_pending.as_ptr().cast(),
                    self.stdin_pending.len(),
                )
            };
            if n >= 0 {
                self.stdin_pending.drain(..n as usize);
                continue;
            }
            match std::io::Error::last_os_error().kind() {
                ErrorKind::Interrupted => continue,
                ErrorKind::WouldBlock => return,
                // EPIPE: the container closed its stdin; what is pending has nowhere to go.
                _ => {
                    self.stdin_pending.clear();
                    self.stdin = None;
                    return;
                }
            }
        }
        if self.close_stdin_when_flushed {
            self.stdin = None;
        }
    }

    /// EOF for the container's stdin pipe, once pending input is written. A terminal has no
    /// EOF to give (a ^D is the program's business), so its master stays open.
    fn close_stdin(&mut self) {
        if self.pty.is_some() {
            return;
        }
        self.close_stdin_when_flushed = true;
        self.flush_stdin();
    }

    /// Once the init is reaped and its output drained (or the grace is over), records the
    /// exit and tells the waiters; attached streams end.
    fn maybe_finish(&mut self) {
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
        self.stdin = None;
        self.stdin_pending.clear();
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

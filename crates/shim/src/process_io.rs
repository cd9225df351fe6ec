//! A process's stdio as the shim's event loop holds it: the outputs it reads, and the stdin
//! it writes without blocking (what did not fit yet is kept until poll(2) says the
//! descriptor is writable). Shared by the container's init and every exec'd process.

use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// One output of a process: the read end of its stdout or stderr pipe, or the pty master.
pub struct Output {
    /// None once it reached EOF; the entry goes at the end of that round of the loop.
    pub fd: Option<OwnedFd>,
    pub stream: u8,
}

pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: read(2) into a live buffer of the given length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub struct StdinWriter {
    /// None when the process has no stdin from us (/dev/null), or once it is closed.
    fd: Option<OwnedFd>,
    pending: Vec<u8>,
    close_when_flushed: bool,
    /// A terminal has no EOF to give (a ^D is the program's business), so
    /// [`StdinWriter::close`] leaves a pty master open.
    terminal: bool,
}

/// Sets O_NONBLOCK: the shim's loop must never block on one process's descriptors.
pub fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own; only O_NONBLOCK changes.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

impl StdinWriter {
    pub fn new(fd: Option<OwnedFd>, terminal: bool) -> Self {
        if let Some(f) = &fd {
            set_nonblocking(f.as_raw_fd());
        }
        Self {
            fd,
            pending: Vec::new(),
            close_when_flushed: false,
            terminal,
        }
    }

    pub fn is_open(&self) -> bool {
        self.fd.is_some()
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The descriptor to poll for POLLOUT, while a write is pending.
    pub fn pending_fd(&self) -> Option<RawFd> {
        match (&self.fd, self.pending.is_empty()) {
            (Some(fd), false) => Some(fd.as_raw_fd()),
            _ => None,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.fd.is_none() {
            return;
        }
        self.pending.extend_from_slice(data);
        self.flush();
    }

    pub fn flush(&mut self) {
        let Some(fd) = &self.fd else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            // SAFETY: write(2) from a live buffer.
            let n = unsafe {
                libc::write(
                    fd.as_raw_fd(),
                    self.pending.as_ptr().cast(),
                    self.pending.len(),
                )
            };
            if n >= 0 {
                self.pending.drain(..n as usize);
                continue;
            }
            match std::io::Error::last_os_error().kind() {
                ErrorKind::Interrupted => continue,
                ErrorKind::WouldBlock => return,
                // EPIPE: the process closed its stdin; what is pending has nowhere to go.
                _ => {
                    self.pending.clear();
                    self.fd = None;
                    return;
                }
            }
        }
        if self.close_when_flushed {
            self.fd = None;
        }
    }

    /// EOF for the process's stdin pipe once pending input is written (Docker's StdinOnce:
    /// the client's half-close is the process's EOF).
    pub fn close(&mut self) {
        if self.terminal {
            return;
        }
        self.close_when_flushed = true;
        self.flush();
    }

    /// The descriptor, for a handoff (nothing may be pending: see `Server::idle`).
    pub fn into_fd(self) -> Option<OwnedFd> {
        self.fd
    }

    /// The process is gone: drop the descriptor and whatever was still to be written.
    pub fn discard(&mut self) {
        self.fd = None;
        self.pending.clear();
    }
}

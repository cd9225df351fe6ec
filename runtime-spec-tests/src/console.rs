//! The receiving end of `--console-socket`: a unix socket the runtime connects to and sends
//! the pty master over with SCM_RIGHTS (runc's protocol; the message data is the pty's name).

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct ConsoleSocket {
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn bind(path: &Path) -> Result<ConsoleSocket, String> {
        let listener =
            UnixListener::bind(path).map_err(|e| format!("binding {}: {e}", path.display()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("console socket: {e}"))?;
        Ok(ConsoleSocket { listener })
    }

    /// Waits for one connection and the descriptor it carries.
    pub fn receive(&self, timeout: Duration) -> Result<OwnedFd, String> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err("nobody connected to the console socket".into());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(format!("accept on the console socket: {e}")),
            }
        };
        stream
            .set_nonblocking(false)
            .and_then(|_| stream.set_read_timeout(Some(timeout)))
            .map_err(|e| format!("console socket: {e}"))?;
        recv_fd(stream.as_raw_fd())
    }
}

/// One recvmsg with room for one descriptor.
fn recv_fd(sock: i32) -> Result<OwnedFd, String> {
    let mut data = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // u64 storage keeps the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is zeroed and then pointed at live buffers of the given sizes.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // A receive timeout makes recvmsg return EINTR on any signal, even a restartable one.
    let n = loop {
        // SAFETY: recvmsg into the buffers above.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("recvmsg on the console socket: {e}"));
        }
    };
    // SAFETY: walking the control messages the kernel wrote, with the libc macros.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const i32);
                return Ok(OwnedFd::from_raw_fd(fd));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Err(format!(
        "the console socket message ({n} bytes: {:?}) carried no descriptor",
        String::from_utf8_lossy(&data[..n as usize])
    ))
}

/// Reads the pty master until the slave side is closed everywhere (EIO) or `timeout`.
/// Terminal output has `\r\n` line ends; they are turned back into `\n`.
pub fn read_master(master: OwnedFd, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut file = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(100) as i32) };
        if r <= 0 {
            continue;
        }
        match file.read(&mut buf) {
            Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO once the slave is closed everywhere: the process is done.
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

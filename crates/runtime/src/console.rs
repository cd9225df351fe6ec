//! The container's terminal. The init opens a pty in its own devpts instance and sends the
//! master to whoever listens on `--console-socket`, with SCM_RIGHTS, as runc does (containerd
//! and podman read it with the same protocol); the slave becomes the init's stdio and
//! controlling terminal and is bound over /dev/console.

use crate::error::{Context, Result};
use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, Winsize};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);

/// Opens a new pty pair inside the container (after pivot) and returns (master, slave path).
pub fn open_pty(size: Option<(u16, u16)>) -> Result<(OwnedFd, String)> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .context("opening /dev/ptmx")?;
    grantpt(&master).context("grantpt")?;
    unlockpt(&master).context("unlockpt")?;
    let name = ptsname_r(&master).context("ptsname")?;
    if let Some((rows, cols)) = size {
        let ws = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid Winsize on a pty master fd.
        unsafe { set_winsize(master.as_raw_fd(), &ws) }.context("process.consoleSize")?;
    }
    Ok((OwnedFd::from(master), name))
}

/// Sends `fd` over the connected unix socket `socket` with `name` as the payload.
pub fn send_fd(socket: RawFd, fd: &OwnedFd, name: &str) -> Result<()> {
    let fds = [fd.as_raw_fd()];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        socket,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .context("sending the pty master to --console-socket")?;
    Ok(())
}

/// The whole terminal setup of a container process: a pty of its own, the master sent to
/// the console socket, the slave as stdio and controlling terminal. Returns the slave's path.
pub fn take_terminal(socket: RawFd, size: Option<&oci_spec::runtime::Box>) -> Result<String> {
    let size = size.map(|b| (b.height() as u16, b.width() as u16));
    let (master, slave) = open_pty(size)?;
    send_fd(socket, &master, &slave)?;
    drop(master);
    attach_slave(&slave)?;
    Ok(slave)
}

/// Makes the slave the caller's stdio and controlling terminal.
pub fn attach_slave(slave_path: &str) -> Result<()> {
    let slave = nix::fcntl::open(slave_path, OFlag::O_RDWR, nix::sys::stat::Mode::empty())
        .with_context(|| format!("opening {slave_path}"))?;
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error()).context("dup2 of the pty slave");
        }
    }
    // SAFETY: TIOCSCTTY on our own session's terminal.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error())
            .context("making the pty the controlling terminal");
    }
    Ok(())
}

/// Binds the container init's pty over /dev/console, as the spec asks when terminal is set.
pub fn bind_console(slave_path: &str) -> Result<()> {
    match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/dev/console")
    {
        Ok(_) => {}
        Err(e) => return Err(e).context("creating /dev/console"),
    }
    nix::mount::mount(
        Some(slave_path),
        "/dev/console",
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .context("binding the pty over /dev/console")
}

/// A connected pair for callers that take the terminal themselves (foreground `run` and
/// `exec`, the shim): the second end goes to `create_with_console`, the first to
/// [`receive_pty`].
pub fn socket_pair() -> Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair for the terminal")
}

/// Receives the pty master a container process sends over the console socket.
pub fn receive_pty(sock: &OwnedFd) -> Result<OwnedFd> {
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("receiving the container's terminal")?;
    for c in msg.cmsgs().context("reading control messages")? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(crate::Error::Init(
        "the container did not send its terminal".into(),
    ))
}

//! systemd integration: readiness notification (`Type=notify`) and socket activation
//! (`berthd.socket`), so that systemd starts dependent units only once the API answers, and
//! clients can connect while the daemon restarts (the socket stays open in systemd).
//!
//! Both protocols are documented stable interfaces, sd_notify(3) and sd_listen_fds(3)
//! (<https://systemd.io/PORTABILITY_AND_STABILITY/>), and each is about 20 lines over plain
//! sockets: they are written here by hand rather than linking libsystemd or adding a crate.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
};

/// The first fd systemd passes (`SD_LISTEN_FDS_START`): 0-2 stay stdio.
const LISTEN_FDS_START: RawFd = 3;

/// The variables of the socket activation protocol, consumed by `listener_from_env`.
const LISTEN_ENV: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// Set once fd 3 has been adopted, so that it is never owned twice (two `OwnedFd`s would
/// close it twice, the second time closing whatever fd reused the number).
static LISTEN_FD_TAKEN: AtomicBool = AtomicBool::new(false);

/// Sends `state` (e.g. `"READY=1"`, `"STOPPING=1"`, `"STATUS=..."`, newline separated) to
/// the service manager, as sd_notify(3) does: one datagram to `$NOTIFY_SOCKET`, a path or
/// an abstract socket when it starts with `@`.
///
/// Ok(false) when `NOTIFY_SOCKET` is unset, i.e. not run by systemd as `Type=notify`. The
/// variable is left in place, because the daemon notifies more than once (ready, stopping).
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET").filter(|t| !t.is_empty()) else {
        return Ok(false);
    };
    let addr = notify_addr(target.as_bytes())?;
    let with_context = |err: io::Error| {
        io::Error::new(
            err.kind(),
            format!("cannot notify systemd at NOTIFY_SOCKET={target:?}: {err}"),
        )
    };
    // Unbound: systemd identifies the sender by SCM_CREDENTIALS (NotifyAccess=main), which
    // the kernel attaches because systemd sets SO_PASSCRED on its end.
    let socket = UnixDatagram::unbound().map_err(with_context)?;
    socket
        .send_to_addr(state.as_bytes(), &addr)
        .map_err(with_context)?;
    Ok(true)
}

/// `NOTIFY_SOCKET` -> socket address. `@name` is Linux's abstract namespace (the leading
/// NUL of the kernel's encoding spelled as `@`), anything else must be an absolute path.
/// systemd 253+ also knows `vsock:CID:PORT`, used only for VMs, which berthd never is run in
/// as a notifying guest service.
fn notify_addr(target: &[u8]) -> io::Result<SocketAddr> {
    match target {
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name),
        [b'/', ..] => SocketAddr::from_pathname(OsStr::from_bytes(target)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "NOTIFY_SOCKET={:?} is neither an absolute path nor an abstract socket (@name)",
                String::from_utf8_lossy(target)
            ),
        )),
    }
}

/// The listening socket systemd passed by socket activation (`berthd.socket`), if any.
///
/// Following sd_listen_fds(3): the fds are for us only when `LISTEN_PID` is our pid
/// (a variable inherited by a child is not an invitation); they start at fd 3. berthd uses
/// the first one and checks that it is a listening Unix stream socket, since a unit that
/// passes, say, a datagram socket would otherwise fail later at the first accept. All passed
/// fds are made close-on-exec, and `LISTEN_*` are removed from the environment, so that
/// shims and runtimes the daemon starts never see them.
///
/// The listener is blocking, as systemd passes it; set it non-blocking before handing it to
/// tokio (`tokio::net::UnixListener::from_std` requires that). The socket file belongs to
/// systemd: the daemon must not remove it on shutdown, or the socket unit stops working.
pub fn listener_from_env() -> io::Result<Option<UnixListener>> {
    let listen_pid = env_value("LISTEN_PID");
    if listen_pid.is_none() {
        return Ok(None);
    }
    let listen_fds = env_value("LISTEN_FDS");
    let count = passed_fd_count(
        listen_pid.as_deref(),
        listen_fds.as_deref(),
        std::process::id(),
    );
    // Consumed whatever they said, as sd_listen_fds(1) does: wrong values must not reach
    // children either.
    for name in LISTEN_ENV {
        std::env::remove_var(name);
    }
    let count = count.map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    if count == 0 || LISTEN_FD_TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    let last = LISTEN_FDS_START.saturating_add(RawFd::try_from(count).unwrap_or(RawFd::MAX));
    for fd in LISTEN_FDS_START..last {
        // SAFETY: systemd passed fds 3..3+count to this process (LISTEN_PID is ours); the
        // borrow lives for this call only.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|errno| {
            io::Error::new(
                io::Error::from(errno).kind(),
                format!("socket activation: LISTEN_FDS={count} but fd {fd} is not open ({errno})"),
            )
        })?;
    }
    if count > 1 {
        tracing::warn!(
            count,
            "systemd passed {count} sockets; berthd serves only the first (fd 3): \
             berthd.socket should have one ListenStream="
        );
    }
    // SAFETY: fd 3 is open (checked above), was passed to this process by systemd, and
    // LISTEN_FD_TAKEN makes this the only place that ever takes ownership of it.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    listener_from_fd(fd).map(Some)
}

/// `LISTEN_PID` or `LISTEN_FDS`; a non-UTF-8 value is kept (lossily) so that parsing
/// rejects it with the value in the message rather than treating it as unset.
fn env_value(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

/// Why `LISTEN_PID`/`LISTEN_FDS` cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListenEnvError {
    #[error("socket activation: LISTEN_PID={0:?} is not a process id")]
    Pid(String),
    #[error("socket activation: LISTEN_FDS={0:?} is not a number of file descriptors")]
    Count(String),
}

/// How many fds systemd passed to the process `our_pid`, from `LISTEN_PID` and
/// `LISTEN_FDS`: 0 when they are unset or meant for another process (sd_listen_fds(3)).
fn passed_fd_count(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    our_pid: u32,
) -> Result<u32, ListenEnvError> {
    let Some(listen_pid) = listen_pid else {
        return Ok(0);
    };
    let pid = listen_pid
        .parse::<u32>()
        .ok()
        .filter(|&pid| pid > 0)
        .ok_or_else(|| ListenEnvError::Pid(listen_pid.to_owned()))?;
    if pid != our_pid {
        return Ok(0);
    }
    let Some(listen_fds) = listen_fds else {
        return Ok(0);
    };
    // Bounded like libsystemd: the fd numbers 3..3+n must fit in an int.
    listen_fds
        .parse::<u32>()
        .ok()
        .filter(|&n| i64::from(n) + i64::from(LISTEN_FDS_START) <= i64::from(RawFd::MAX))
        .ok_or_else(|| ListenEnvError::Count(listen_fds.to_owned()))
}

/// Adopts `fd` as the API listener after checking it is what `berthd.socket` declares: a
/// Unix stream socket that is listening (`ListenStream=/path`, not `Accept=yes`).
fn listener_from_fd(fd: OwnedFd) -> io::Result<UnixListener> {
    let raw = fd.as_raw_fd();
    let wrong = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket activation: fd {raw} is {what}, not a listening Unix stream socket; \
                 berthd.socket must use ListenStream=/path"
            ),
        )
    };
    let failed = |call: &str, errno: nix::Error| {
        io::Error::new(
            io::Error::from(errno).kind(),
            format!("socket activation: {call} on fd {raw}: {errno}"),
        )
    };
    let kind = match getsockopt(&fd, sockopt::SockType) {
        Ok(kind) => kind,
        Err(nix::Error::ENOTSOCK) => return Err(wrong("not a socket".to_owned())),
        Err(errno) => return Err(failed("getsockopt(SO_TYPE)", errno)),
    };
    if kind != SockType::Stream {
        return Err(wrong(format!("a {kind:?} socket")));
    }
    let addr: SockaddrStorage = getsockname(raw).map_err(|errno| failed("getsockname", errno))?;
    match addr.family() {
        Some(AddressFamily::Unix) => {}
        Some(family) => return Err(wrong(format!("a {family:?} socket"))),
        None => return Err(wrong("a socket of unknown family".to_owned())),
    }
    let listening = getsockopt(&fd, sockopt::AcceptConn)
        .map_err(|errno| failed("getsockopt(SO_ACCEPTCONN)", errno))?;
    if !listening {
        return Err(wrong(
            "a Unix stream socket that is not listening".to_owned(),
        ));
    }
    Ok(UnixListener::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{TcpListener, UdpSocket};
    use std::os::unix::net::UnixStream;

    use nix::sys::socket::{bind, socket, SockFlag, UnixAddr};

    #[test]
    fn counts_fds_only_for_our_pid() {
        assert_eq!(passed_fd_count(None, None, 42), Ok(0));
        assert_eq!(passed_fd_count(None, Some("1"), 42), Ok(0));
        assert_eq!(passed_fd_count(Some("42"), Some("1"), 42), Ok(1));
        assert_eq!(passed_fd_count(Some("42"), Some("3"), 42), Ok(3));
        assert_eq!(passed_fd_count(Some("42"), Some("0"), 42), Ok(0));
        assert_eq!(passed_fd_count(Some("42"), None, 42), Ok(0));
        // Inherited from a parent that was activated: not ours, whatever LISTEN_FDS says.
        assert_eq!(passed_fd_count(Some("41"), Some("1"), 42), Ok(0));
        assert_eq!(passed_fd_count(Some("41"), Some("junk"), 42), Ok(0));
    }

    #[test]
    fn rejects_malformed_listen_env() {
        for pid in ["", "0", "-1", "abc", "42 ", "99999999999"] {
            assert_eq!(
                passed_fd_count(Some(pid), Some("1"), 42),
                Err(ListenEnvError::Pid(pid.to_owned())),
                "LISTEN_PID={pid:?}"
            );
        }
        for fds in ["", "-1", "one", "2147483645", "4294967295"] {
            assert_eq!(
                passed_fd_count(Some("42"), Some(fds), 42),
                Err(ListenEnvError::Count(fds.to_owned())),
                "LISTEN_FDS={fds:?}"
            );
        }
        assert_eq!(
            passed_fd_count(Some("42"), Some("2147483644"), 42),
            Ok(2_147_483_644)
        );
    }

    #[test]
    fn parses_notify_socket_addresses() {
        let path = notify_addr(b"/run/systemd/notify").expect("path");
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let abstract_addr = notify_addr(b"@berth/notify").expect("abstract");
        assert_eq!(abstract_addr.as_abstract_name(), Some(&b"berth/notify"[..]));
        for bad in [&b"relative/notify"[..], b"vsock:2:1234"] {
            assert!(notify_addr(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn adopts_a_listening_unix_stream_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api.sock");
        let original = UnixListener::bind(&path).expect("bind");
        let adopted = listener_from_fd(OwnedFd::from(original)).expect("a unix listener");
        let _client = UnixStream::connect(&path).expect("connect");
        adopted.accept().expect("accept on the adopted listener");
    }

    #[test]
    fn refuses_other_fds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let expect_refused = |fd: OwnedFd, what: &str| {
            let err = listener_from_fd(fd).expect_err(what);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{what}: {err}");
            assert!(err.to_string().contains("ListenStream="), "{what}: {err}");
        };
        let file = std::fs::File::open("/dev/null").expect("/dev/null");
        expect_refused(file.into(), "a file");
        let datagram = UnixDatagram::bind(dir.path().join("dgram.sock")).expect("dgram");
        expect_refused(datagram.into(), "a datagram socket");
        let tcp = TcpListener::bind("127.0.0.1:0").expect("tcp");
        expect_refused(tcp.into(), "a TCP listener");
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
        expect_refused(udp.into(), "a UDP socket");
        // Bound but never listen()ed: accept() on it would fail forever.
        let unlistened = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("socket");
        let addr = UnixAddr::new(&dir.path().join("bound.sock")).expect("addr");
        bind(unlistened.as_raw_fd(), &addr).expect("bind");
        expect_refused(unlistened, "a bound, not listening stream socket");
        // What a socket unit with Accept=yes passes: one connection, not the listener.
        let (connected, _peer) = UnixStream::pair().expect("pair");
        expect_refused(connected.into(), "a connected stream socket");
    }

    /// Everything that sets or reads NOTIFY_SOCKET and LISTEN_*: the environment is
    /// process-wide, so these run in one test, in order, and no other test touches them.
    #[test]
    fn environment_protocols() {
        let dir = tempfile::tempdir().expect("tempdir");

        std::env::remove_var("NOTIFY_SOCKET");
        assert!(!notify("READY=1").expect("no NOTIFY_SOCKET is not an error"));
        std::env::set_var("NOTIFY_SOCKET", "");
        assert!(!notify("READY=1").expect("an empty NOTIFY_SOCKET is not an error"));

        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).expect("bind notify socket");
        std::env::set_var("NOTIFY_SOCKET", &path);
        let state = format!("READY=1\nMAINPID={}", std::process::id());
        assert!(notify(&state).expect("notify a path socket"));
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).expect("receive");
        assert_eq!(
            &buf[..n],
            state.as_bytes(),
            "one datagram, the state verbatim"
        );

        let name = format!("berth-test-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract addr");
        let abstract_receiver = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        std::env::set_var("NOTIFY_SOCKET", format!("@{name}"));
        assert!(notify("STOPPING=1").expect("notify an abstract socket"));
        let n = abstract_receiver.recv(&mut buf).expect("receive");
        assert_eq!(&buf[..n], b"STOPPING=1");

        drop(receiver);
        std::env::set_var("NOTIFY_SOCKET", &path);
        let err = notify("READY=1").expect_err("nobody listening");
        assert!(err.to_string().contains("NOTIFY_SOCKET"), "{err}");
        std::env::set_var("NOTIFY_SOCKET", "relative");
        notify("READY=1").expect_err("a relative NOTIFY_SOCKET");
        std::env::remove_var("NOTIFY_SOCKET");

        // Not activated: nothing to take, nothing removed.
        for name in LISTEN_ENV {
            std::env::remove_var(name);
        }
        assert!(listener_from_env().expect("no LISTEN_PID").is_none());

        // Meant for another process (an inherited environment): ignored and consumed, fd 3
        // left alone.
        let parent = std::os::unix::process::parent_id().to_string();
        std::env::set_var("LISTEN_PID", &parent);
        std::env::set_var("LISTEN_FDS", "1");
        std::env::set_var("LISTEN_FDNAMES", "berthd.socket");
        assert!(listener_from_env().expect("foreign LISTEN_PID").is_none());
        for name in LISTEN_ENV {
            assert!(std::env::var_os(name).is_none(), "{name} left set");
        }

        // Ours but malformed: an error that names the variable, and still consumed.
        std::env::set_var("LISTEN_PID", std::process::id().to_string());
        std::env::set_var("LISTEN_FDS", "many");
        let err = listener_from_env().expect_err("malformed LISTEN_FDS");
        assert!(err.to_string().contains("LISTEN_FDS=\"many\""), "{err}");
        for name in LISTEN_ENV {
            assert!(std::env::var_os(name).is_none(), "{name} left set");
        }

        // Ours with zero fds: nothing to adopt.
        std::env::set_var("LISTEN_PID", std::process::id().to_string());
        std::env::set_var("LISTEN_FDS", "0");
        assert!(listener_from_env().expect("LISTEN_FDS=0").is_none());
    }
}

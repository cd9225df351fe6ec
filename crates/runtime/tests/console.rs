//! The terminal: with `process.terminal`, the pty master arrives on `--console-socket` by
//! SCM_RIGHTS (runc's protocol, which containerd and podman speak), the program has the
//! slave as its stdio and controlling terminal, /dev/console is that pty, and consoleSize
//! is applied.

mod support;

use serde_json::json;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixListener;
use std::time::Duration;
use support::*;

/// Accepts one connection and receives one fd, as containerd's console.RecvFd does.
fn receive_fd(listener: UnixListener) -> (OwnedFd, String) {
    let (conn, _) = listener.accept().unwrap();
    let mut name = [0u8; 1024];
    let mut iov = libc::iovec {
        iov_base: name.as_mut_ptr().cast(),
        iov_len: name.len(),
    };
    let mut cbuf = [0u8; 64];
    // SAFETY: a zeroed msghdr pointing at live buffers, as recvmsg(2) expects.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.len();
    // SAFETY: recvmsg on a connected socket with the buffers above.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, 0) };
    assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: walking the control buffer the kernel filled.
    let fd = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null(), "no control message");
        assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
        *(libc::CMSG_DATA(cmsg) as *const i32)
    };
    // SAFETY: the kernel installed this fd for us.
    (
        unsafe { OwnedFd::from_raw_fd(fd) },
        String::from_utf8_lossy(&name[..n as usize]).into_owned(),
    )
}

#[test]
fn the_pty_master_arrives_on_the_console_socket() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "tty; stty size; test -t 0 && echo stdin-is-a-tty; ls -l /dev/console; echo done",
    ]);
    b.config_mut()["process"]["terminal"] = true.into();
    b.config_mut()["process"]["consoleSize"] = json!({"height": 40, "width": 100});
    b.write_config();
    let _g = rt.guard("t1", &b);
    let sock_dir = TempDir::new();
    let sock = sock_dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || receive_fd(listener));
    let out = rt.create_with("t1", &b, &["--console-socket", sock.to_str().unwrap()]);
    assert_success(&out, "create with a terminal");
    let (master, name) = receiver.join().unwrap();
    assert!(name.starts_with("/dev/pts/"), "{name}");
    assert_success(&rt.start("t1"), "start");

    let mut file = std::fs::File::from(master);
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !text.contains("done") && std::time::Instant::now() < deadline {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(text.contains("/dev/pts/0"), "{text}");
    assert!(text.contains("40 100"), "consoleSize: {text}");
    assert!(text.contains("stdin-is-a-tty"), "{text}");
    assert!(text.contains("136,"), "/dev/console is a pty: {text}");
    rt.wait_for_status("t1", "stopped", Duration::from_secs(5));
}

#[test]
fn a_console_socket_without_a_terminal_is_refused() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::busybox(&["true"]);
    let _g = rt.guard("t2", &b);
    let sock_dir = TempDir::new();
    let sock = sock_dir.path().join("console.sock");
    let _listener = UnixListener::bind(&sock).unwrap();
    let out = rt.create_with("t2", &b, &["--console-socket", sock.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_text(&out).contains("process.terminal is false"),
        "{}",
        stderr_text(&out)
    );
    assert!(!rt.state_dir("t2").exists());
}

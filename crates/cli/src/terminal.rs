//! The user's terminal during `run -t`/`attach`: raw mode (restored on every way out,
//! panics included), its size, and SIGWINCH.

use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Mutex;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::termios::{self, SetArg, Termios};

/// The settings to put back, reachable from the panic hook (a `Drop` does not run when a
/// panic aborts or when `process::exit` is called).
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Raw mode on stdin for as long as this lives.
pub struct RawMode {
    _private: (),
}

impl RawMode {
    /// Puts stdin in raw mode if it is a terminal; `None` when it is not.
    pub fn enable() -> nix::Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let original = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = original.clone();
        termios::cfmakeraw(&mut raw);
        if let Ok(mut saved) = SAVED.lock() {
            *saved = Some(original);
        }
        install_panic_restore();
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(Some(RawMode { _private: () }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the saved settings back, once.
pub fn restore() {
    let saved = SAVED.lock().ok().and_then(|mut s| s.take());
    if let Some(t) = saved {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &t);
    }
}

fn install_panic_restore() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);

/// (rows, cols) of the terminal on `fd`, when it is one.
pub fn size_of(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointed-to struct, which lives here.
    let res = unsafe { tiocgwinsz(fd.as_raw_fd(), &mut ws) };
    match res {
        Ok(_) if ws.ws_row > 0 && ws.ws_col > 0 => Some((ws.ws_row, ws.ws_col)),
        _ => None,
    }
}

/// The size of the terminal on stdout, as the docker CLI measures it.
pub fn stdout_size() -> Option<(u16, u16)> {
    let out = std::io::stdout();
    if !out.is_terminal() {
        return None;
    }
    size_of(out.as_fd())
}

/// Blocks SIGWINCH in this thread and in every thread spawned after: called first thing in
/// `main`, so that [`on_resize`]'s thread is the only one that receives it.
pub fn block_sigwinch() {
    let _ = SigSet::from(Signal::SIGWINCH).thread_block();
}

/// Calls `f(rows, cols)` on a thread every time the terminal is resized.
pub fn on_resize(f: impl Fn(u16, u16) + Send + 'static) {
    std::thread::spawn(move || {
        let set = SigSet::from(Signal::SIGWINCH);
        while set.wait().is_ok() {
            if let Some((rows, cols)) = stdout_size() {
                f(rows, cols);
            }
        }
    });
}

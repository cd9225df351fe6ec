//! The typed channel between the runtime (parent) and the container's init while the
//! container is being created: one socketpair, each direction its own message type, so every
//! step of the handshake has a name.

use crate::error::{Context, Error, Result};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd};

/// What the init tells the runtime.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromInit {
    /// Namespaces and mounts are in place: run prestart and createRuntime hooks now.
    RuntimeHooks,
    /// Parked and waiting for `start`.
    Ready,
    /// Setup failed; the init exits after sending this.
    Failed(String),
}

/// What the runtime tells the init.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToInit {
    /// Id maps are written and the init is in its cgroup: go on with setup.
    Go,
    /// The runtime-namespace hooks have run.
    HooksDone,
}

/// One end of the channel; `S` is what this end sends, `R` what it receives.
pub struct Endpoint<S, R> {
    fd: OwnedFd,
    _types: PhantomData<(S, R)>,
}

pub type RuntimeEnd = Endpoint<ToInit, FromInit>;
pub type InitEnd = Endpoint<FromInit, ToInit>;

/// Makes the pair. SOCK_SEQPACKET keeps message boundaries, so one `recv` is one message.
pub fn pair() -> Result<(RuntimeEnd, InitEnd)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair for the init channel")?;
    Ok((
        Endpoint {
            fd: a,
            _types: PhantomData,
        },
        Endpoint {
            fd: b,
            _types: PhantomData,
        },
    ))
}

impl<S: Serialize, R: DeserializeOwned> Endpoint<S, R> {
    pub fn send(&self, msg: &S) -> Result<()> {
        let data = serde_json::to_vec(msg).map_err(|e| Error::Init(e.to_string()))?;
        send(self.fd.as_raw_fd(), &data, MsgFlags::empty())
            .context("sending on the init channel")?;
        Ok(())
    }

    /// Waits for the next message. `None` means the other end closed (for the runtime: the
    /// init died without a word).
    pub fn recv(&self) -> Result<Option<R>> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::Error::EINTR) => continue,
                other => break other.context("reading the init channel")?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(|e| Error::Init(format!("garbled message from the other side: {e}")))
    }
}

//! A client's input on an attach or exec stream, on its way to the shim. With a terminal
//! the daemon watches for the detach keys itself, as dockerd's `copyEscapable` does, so
//! that a client which leaves that to the server (docker-py, a raw API client) can detach.
//! The docker CLI watches too and simply closes the connection: for a terminal session
//! the end of the client's input ends the session either way, and the process runs on.

use berth_api::detach_keys::DetachScanner;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why the relay stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEnd {
    /// The client's input ended (or the shim stopped taking it).
    Closed,
    /// The client typed the detach keys; they were not forwarded.
    Detached,
}

/// Copies `client` to `shim` until the input ends or, with a `scanner`, the detach keys
/// are seen (what came before them in the same read is forwarded, nothing after).
pub async fn relay<R, W>(
    client: &mut R,
    shim: &mut W,
    mut scanner: Option<DetachScanner>,
) -> InputEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = Vec::new();
    loop {
        let n = match client.read(&mut buf).await {
            Ok(0) | Err(_) => return InputEnd::Closed,
            Ok(n) => n,
        };
        let chunk: &[u8] = match scanner.as_mut() {
            Some(s) => {
                out.clear();
                if s.feed(&buf[..n], &mut out) {
                    let _ = shim.write_all(&out).await;
                    return InputEnd::Detached;
                }
                &out
            }
            None => &buf[..n],
        };
        if shim.write_all(chunk).await.is_err() {
            return InputEnd::Closed;
        }
    }
}

/// The keys of a session: the request's, else Docker's default; Docker's 400 for text
/// that names no key (`what` is dockerd's word for it: "detach" or "escape").
pub fn keys(text: &str, what: &str) -> Result<Vec<u8>, crate::response::ApiError> {
    berth_api::detach_keys::parse(text).map_err(|_| {
        crate::response::ApiError::bad_request(format!("Invalid {what} keys ({text}) provided"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::detach_keys::DEFAULT;

    #[tokio::test]
    async fn stops_at_the_keys_and_keeps_them() {
        let mut input: &[u8] = b"echo hi\n\x10\x11exit\n";
        let mut to_shim = Vec::new();
        let end = relay(
            &mut input,
            &mut to_shim,
            Some(DetachScanner::new(DEFAULT.to_vec())),
        )
        .await;
        assert_eq!(end, InputEnd::Detached);
        assert_eq!(to_shim, b"echo hi\n");
    }

    #[tokio::test]
    async fn without_a_terminal_everything_passes() {
        let mut input: &[u8] = b"a\x10\x11b";
        let mut to_shim = Vec::new();
        assert_eq!(
            relay(&mut input, &mut to_shim, None).await,
            InputEnd::Closed
        );
        assert_eq!(to_shim, b"a\x10\x11b");
    }

    #[test]
    fn bad_keys_are_dockers_400() {
        assert_eq!(keys("", "detach").ok(), Some(DEFAULT.to_vec()));
        let e = keys("ctrl-1", "escape")
            .err()
            .map(|e| (e.status.as_u16(), e.message));
        assert_eq!(
            e,
            Some((400, "Invalid escape keys (ctrl-1) provided".to_owned()))
        );
    }
}

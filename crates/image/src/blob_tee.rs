//! The second reader of a blob download: the pull writes each chunk to the content
//! store's ingest file and hands the same chunk to a layer unpacker on a blocking
//! thread, so a layer is unpacked by the time its last byte has arrived (containerd and
//! Docker unpack only after the download). The unpacker's result counts only when it saw
//! the whole blob in one pass ([`BlobTee::finish`]); any resume, restart or shortfall
//! abandons it, and the pull unpacks from the committed blob instead.

use std::io::{self, Read};

use bytes::Bytes;
use tokio::sync::mpsc;

/// How many chunks may wait for the unpacker: bounded, so a slow disk slows the
/// download instead of filling memory.
const QUEUED_CHUNKS: usize = 32;

enum Message {
    Data(Bytes),
    /// Every byte of the blob was sent, in order, in one pass.
    End,
}

/// The download's end of the tee.
pub(crate) struct BlobTee {
    tx: Option<mpsc::Sender<Message>>,
    abandoned: bool,
}

/// The unpacker's end: a blocking [`Read`] of the downloaded bytes. It reads to the end
/// only after [`BlobTee::finish`]; an abandoned tee is an error, never a short layer.
pub(crate) struct TeeReader {
    rx: mpsc::Receiver<Message>,
    current: Bytes,
    ended: bool,
}

pub(crate) fn channel() -> (BlobTee, TeeReader) {
    let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
    (
        BlobTee {
            tx: Some(tx),
            abandoned: false,
        },
        TeeReader {
            rx,
            current: Bytes::new(),
            ended: false,
        },
    )
}

impl BlobTee {
    /// A tee that feeds nothing (plain downloads).
    pub(crate) fn none() -> BlobTee {
        BlobTee {
            tx: None,
            abandoned: true,
        }
    }

    /// Offers `chunk` to the unpacker, waiting while its queue is full. An unpacker that
    /// has stopped reading (it failed, or the layer was there already) has its answer;
    /// the download goes on without it.
    pub(crate) async fn send(&mut self, chunk: &Bytes) {
        if let Some(tx) = &self.tx {
            if tx.send(Message::Data(chunk.clone())).await.is_err() {
                self.tx = None;
            }
        }
    }

    /// The bytes will not reach the unpacker in one ordered pass (a resumed or restarted
    /// download): its result is void.
    pub(crate) fn abandon(&mut self) {
        self.tx = None;
        self.abandoned = true;
    }

    /// Tells the unpacker the blob is complete. Returns whether its result stands: it was
    /// offered every byte, in order, once.
    pub(crate) async fn finish(&mut self) -> bool {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Message::End).await;
        }
        !self.abandoned
    }
}

impl Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Message::Data(chunk)) => self.current = chunk,
                Some(Message::End) => self.ended = true,
                None => return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the download was resumed or failed; unpacking from the stored blob instead",
                )),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    /// Runs `feed` on the download's end while a thread reads the unpacker's end to its
    /// end: what `finish` said, and what the reader got.
    fn tee_through<F>(feed: impl FnOnce(BlobTee) -> F) -> (bool, io::Result<Vec<u8>>)
    where
        F: Future<Output = bool>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tee, mut reader) = channel();
        let reading = std::thread::spawn(move || {
            let mut out = Vec::new();
            reader.read_to_end(&mut out).map(|_| out)
        });
        let whole = rt.block_on(feed(tee));
        (whole, reading.join().unwrap())
    }

    #[test]
    fn reads_everything_only_after_finish() {
        let (whole, read) = tee_through(|mut tee| async move {
            tee.send(&Bytes::from_static(b"hello ")).await;
            tee.send(&Bytes::from_static(b"world")).await;
            tee.finish().await
        });
        assert!(whole);
        assert_eq!(read.unwrap(), b"hello world");
    }

    #[test]
    fn an_abandoned_tee_is_an_error_not_a_short_read() {
        let (whole, read) = tee_through(|mut tee| async move {
            tee.send(&Bytes::from_static(b"hel")).await;
            tee.abandon();
            tee.send(&Bytes::from_static(b"lo")).await;
            tee.finish().await
        });
        assert!(!whole);
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}

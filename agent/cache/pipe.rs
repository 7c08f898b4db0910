//! A byte pipe between two threads of one process, as `|` is between two: the producer writes
//! into a [`ChunkSender`] on the calling thread, a second thread consumes the [`Chunks`]. Used by
//! a small save (tar | zstd | hash-and-write) to overlap reading, compressing and writing.

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Bytes per chunk.
const CHUNK: usize = 128 << 10;

/// Run `produce` on this thread and `consume` on a new thread named `name`, joined by a pipe.
/// Both results come back; when one side fails the other sees the pipe close (a `BrokenPipe`
/// write, or the end of the chunks), so the failing side's error is the one to report. `Err`
/// only when the thread cannot be started (then `produce` never ran).
pub fn pipe<T, E, U: Send>(
    name: &str,
    produce: impl FnOnce(ChunkSender) -> Result<T, E>,
    consume: impl FnOnce(Chunks) -> io::Result<U> + Send,
) -> io::Result<(Result<T, E>, io::Result<U>)> {
    let (tx, rx) = sync_channel::<Vec<u8>>(4);
    let (back_tx, back_rx) = sync_channel::<Vec<u8>>(8);
    std::thread::scope(|scope| {
        let consumer = std::thread::Builder::new()
            .name(name.into())
            .spawn_scoped(scope, move || consume(Chunks { rx, back: back_tx }))?;
        let produced = produce(ChunkSender {
            buf: Vec::with_capacity(CHUNK),
            tx,
            recycle: back_rx,
        });
        let consumed = consumer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a pipe thread panicked")));
        Ok((produced, consumed))
    })
}

/// The writing end: buffers writes into chunks of [`CHUNK`] bytes and sends each full one,
/// taking emptied ones back for reuse. [`ChunkSender::finish`] sends the last one; dropping the
/// sender closes the pipe.
pub struct ChunkSender {
    buf: Vec<u8>,
    tx: SyncSender<Vec<u8>>,
    recycle: Receiver<Vec<u8>>,
}

impl ChunkSender {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .recycle
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.buf, next);
        self.tx.send(full).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the other end of the pipe stopped",
            )
        })
    }

    /// Send what is buffered and close the pipe.
    pub fn finish(mut self) -> io::Result<()> {
        self.send()
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reading end: every chunk sent, in order, until the sender finishes or is dropped.
pub struct Chunks {
    rx: Receiver<Vec<u8>>,
    back: SyncSender<Vec<u8>>,
}

impl Chunks {
    /// Write every chunk into `out`, handing each back once written.
    pub fn write_into(self, out: &mut impl Write) -> io::Result<()> {
        for mut chunk in self.rx {
            out.write_all(&chunk)?;
            chunk.clear();
            let _ = self.back.try_send(chunk);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_arrives_in_order() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 253) as u8).collect();
        let (produced, consumed) = pipe(
            "test-pipe",
            |mut s| {
                for part in data.chunks(7777) {
                    s.write_all(part)?;
                }
                s.finish()
            },
            |chunks| {
                let mut got = Vec::new();
                chunks.write_into(&mut got)?;
                Ok(got)
            },
        )
        .unwrap();
        produced.unwrap();
        assert_eq!(consumed.unwrap(), data);
    }

    #[test]
    fn a_consumer_that_stops_closes_the_pipe_for_the_producer() {
        let (produced, consumed) = pipe(
            "test-pipe",
            |mut s| -> io::Result<()> {
                loop {
                    s.write_all(&[7u8; 4096])?;
                }
            },
            |_chunks| -> io::Result<()> { Err(io::Error::other("disk full")) },
        )
        .unwrap();
        assert_eq!(produced.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(consumed.unwrap_err().to_string(), "disk full");
    }
}

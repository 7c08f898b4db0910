//! The zstd layer of a cache archive: the tar stream cut into independent frames of
//! [`FRAME_SIZE`] bytes, each compressed on its own, so both save and restore use every core.
//!
//! Why frames of our own rather than zstd's multi-threaded stream: zstd decompresses one frame
//! on one thread, so an archive made of a single frame restores at one core's speed. Frames that
//! each declare their content size can be decompressed in parallel and put back in order; the
//! result is still one valid zstd stream (concatenated frames), so `zstd -d | tar x` and older
//! Kiln versions read it as before, and archives written before this layout (one frame of unknown
//! size) are read by the streaming decoder in [`super::extract`].
//!
//! Why it stays safe on hostile input: the parallel path is taken only when the first frame
//! declares a content size of at most [`MAX_FRAME_CONTENT`]; after that every frame must do the
//! same (and be a plain zstd frame, with a window under the cap, no larger than its compressed
//! bound), or the archive is refused as corrupt. The declared sizes are added up against the
//! restore's byte bound *before* a frame is decompressed, zstd checks that each frame decodes to
//! exactly its declared size (and its checksum), and at most `2 × workers` frames are in memory.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx};

use super::archive::ArchiveError;
use super::extract::MAX_WINDOW_LOG;

/// Bytes of tar stream per frame Kiln writes.
pub const FRAME_SIZE: usize = 4 << 20;

/// The largest frame content the parallel restore accepts (Kiln writes [`FRAME_SIZE`]).
pub const MAX_FRAME_CONTENT: u64 = 8 << 20;

/// zstd's frame magic number, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Threads that compress or decompress frames: every core.
pub fn frame_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 16)
}

/// Worker threads taking jobs from one queue and answering on another; on drop, the job queue
/// closes and the workers finish what they hold (the answer queue has room for all of it).
struct Pool<J> {
    jobs: Option<SyncSender<J>>,
    handles: Vec<JoinHandle<()>>,
}

impl<J: Send + 'static> Pool<J> {
    /// `threads` workers, each running its own `work` (made by `make`); `depth` jobs and answers
    /// may wait in the queues.
    fn spawn<T, F>(threads: usize, depth: usize, mut make: impl FnMut() -> F) -> (Self, Receiver<T>)
    where
        T: Send + 'static,
        F: FnMut(J) -> T + Send + 'static,
    {
        let (jobs, job_rx) = sync_channel::<J>(depth);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let (tx, answers) = sync_channel::<T>(depth);
        let handles = (0..threads.max(1))
            .map(|_| {
                let (rx, tx, mut work) = (job_rx.clone(), tx.clone(), make());
                std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    if tx.send(work(job)).is_err() {
                        return;
                    }
                })
            })
            .collect();
        let pool = Pool {
            jobs: Some(jobs),
            handles,
        };
        (pool, answers)
    }

    fn send(&self, job: J) -> io::Result<()> {
        let stopped = || io::Error::other("frame threads stopped");
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())
    }
}

impl<J> Drop for Pool<J> {
    fn drop(&mut self) {
        self.jobs = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// A frame to compress: its sequence number, the tar bytes, a buffer for the result.
type Job = (u64, Vec<u8>, Vec<u8>);

/// One compressed frame back from a worker, with the input buffer for reuse.
type Compressed = (u64, io::Result<Vec<u8>>, Vec<u8>);

/// A `Write` that cuts what it is given into [`FRAME_SIZE`] pieces, compresses them on worker
/// threads, and has a writer thread put the frames into `out` in order. Its buffers go round
/// (producer → worker → writer → producer), at most `2 × threads` pairs of them: that bounds
/// the memory, and since each frame is given its output buffer when it is queued, in order, the
/// frame the writer waits for always has one.
pub struct FrameEncoder<W: Write + Send + 'static> {
    chunk: Vec<u8>,
    next_seq: u64,
    created: usize,
    max_in_flight: usize,
    /// (input, output) buffer pairs coming back from the writer.
    spare: Receiver<(Vec<u8>, Vec<u8>)>,
    pool: Option<Pool<Job>>,
    writer: Option<JoinHandle<(W, io::Result<u64>)>>,
}

impl<W: Write + Send + 'static> FrameEncoder<W> {
    /// Frames at zstd `level` with a checksum each, on `threads` workers.
    pub fn new(out: W, level: i32, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let mut contexts = Vec::new();
        for _ in 0..threads {
            let mut cctx = CCtx::create();
            for p in [
                CParameter::CompressionLevel(level),
                CParameter::ChecksumFlag(true),
                CParameter::ContentSizeFlag(true),
            ] {
                cctx.set_parameter(p).map_err(zstd_err)?;
            }
            contexts.push(cctx);
        }
        let (pool, answers) = Pool::spawn(threads, threads * 2, || {
            let mut cctx = contexts.pop().unwrap_or_else(CCtx::create);
            move |(seq, input, mut out): Job| {
                out.clear();
                out.reserve(zstd_safe::compress_bound(input.len()));
                let res = cctx
                    .compress2(&mut out, &input)
                    .map(|_| out)
                    .map_err(zstd_err);
                (seq, res, input)
            }
        });
        let (spare_tx, spare) = sync_channel(threads * 2);
        let writer = std::thread::spawn(move || write_in_order(out, answers, spare_tx));
        Ok(FrameEncoder {
            chunk: Vec::with_capacity(FRAME_SIZE),
            next_seq: 0,
            created: 0,
            max_in_flight: threads * 2,
            spare,
            pool: Some(pool),
            writer: Some(writer),
        })
    }

    /// Queue the current chunk (waiting for a spare buffer pair when all are in use).
    fn submit(&mut self) -> io::Result<()> {
        let (fresh, out) = if self.created < self.max_in_flight {
            self.created += 1;
            (Vec::with_capacity(FRAME_SIZE), Vec::new())
        } else {
            self.spare.recv().map_err(|_| stopped())?
        };
        let input = std::mem::replace(&mut self.chunk, fresh);
        let pool = self.pool.as_ref().ok_or_else(stopped)?;
        pool.send((self.next_seq, input, out))?;
        self.next_seq += 1;
        Ok(())
    }

    /// Compress what is left, wait for every frame to be written, and return the writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.chunk.is_empty() || self.next_seq == 0 {
            self.submit()?;
        }
        drop(self.pool.take()); // the workers finish their frames and stop
        let writer = self.writer.take().ok_or_else(stopped)?;
        let (mut out, written) = writer.join().map_err(|_| stopped())?;
        if written? != self.next_seq {
            return Err(stopped());
        }
        out.flush()?;
        Ok(out)
    }
}

/// The writer thread: frames into `out` in sequence order, buffers back through `spare`.
/// After a failure it keeps taking frames (so nobody waits on it) but writes no more; returns
/// how many frames it wrote, or the first failure.
fn write_in_order<W: Write>(
    mut out: W,
    answers: Receiver<Compressed>,
    spare: SyncSender<(Vec<u8>, Vec<u8>)>,
) -> (W, io::Result<u64>) {
    let mut ready: BTreeMap<u64, (io::Result<Vec<u8>>, Vec<u8>)> = BTreeMap::new();
    let mut next = 0u64;
    let mut failed: Option<io::Error> = None;
    for (seq, res, input) in answers {
        ready.insert(seq, (res, input));
        while let Some((res, mut input)) = ready.remove(&next) {
            next += 1;
            let frame = match res {
                Ok(frame) if failed.is_none() => match out.write_all(&frame) {
                    Ok(()) => frame,
                    Err(e) => {
                        failed = Some(e);
                        frame
                    }
                },
                Ok(frame) => frame,
                Err(e) => {
                    failed.get_or_insert(e);
                    Vec::new()
                }
            };
            input.clear();
            let _ = spare.send((input, frame));
        }
    }
    match failed {
        Some(e) => (out, Err(e)),
        None => (out, Ok(next)),
    }
}

impl<W: Write + Send + 'static> Write for FrameEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(FRAME_SIZE - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == FRAME_SIZE {
            self.submit()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn zstd_err(code: usize) -> io::Error {
    io::Error::other(zstd_safe::get_error_name(code))
}

fn stopped() -> io::Error {
    io::Error::other("frame compression threads stopped")
}

/// The content size the frame starting at `head` declares, when the frame can take the
/// parallel path: a plain zstd frame declaring at most [`MAX_FRAME_CONTENT`] bytes.
pub fn small_frame_size(head: &[u8]) -> Option<u64> {
    if !head.starts_with(&ZSTD_MAGIC) {
        return None;
    }
    match zstd_safe::get_frame_content_size(head) {
        Ok(Some(n)) if n <= MAX_FRAME_CONTENT => Some(n),
        _ => None,
    }
}

/// A frame header's window, refused above [`MAX_WINDOW_LOG`] as the streaming decoder does.
fn check_window(frame: &[u8]) -> Result<(), ArchiveError> {
    let single_segment = frame.get(4).is_some_and(|d| d & 0x20 != 0);
    if single_segment {
        return Ok(()); // the window is the content size, already bounded
    }
    let Some(wd) = frame.get(5) else {
        return Err(corrupt("frame header cut short"));
    };
    if 10 + u32::from(wd >> 3) > MAX_WINDOW_LOG {
        return Err(ArchiveError::Bound(format!(
            "the zstd frame asks for a window larger than the {} MiB limit",
            (1u64 << MAX_WINDOW_LOG) >> 20
        )));
    }
    Ok(())
}

fn corrupt(msg: &str) -> ArchiveError {
    ArchiveError::Corrupt(io::Error::new(io::ErrorKind::InvalidData, msg.to_string()))
}

/// Cuts a compressed stream into whole frames.
struct Splitter<R> {
    input: R,
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`.
    start: usize,
    /// Frame buffers back from the workers.
    spare: Vec<Vec<u8>>,
}

impl<R: BufRead> Splitter<R> {
    /// The next frame with its declared content size, `None` at the end of the stream.
    fn next_frame(&mut self) -> Result<Option<(Vec<u8>, u64)>, ArchiveError> {
        let max_len = zstd_safe::compress_bound(MAX_FRAME_CONTENT as usize) + 64;
        loop {
            let avail = self.buf.len() - self.start;
            // 18 bytes hold the largest frame header.
            if avail >= 18 || self.at_end()? {
                if avail == 0 {
                    return Ok(None);
                }
                let pending = &self.buf[self.start..];
                let size = small_frame_size(pending)
                    .ok_or_else(|| corrupt("a frame without a small declared size"))?;
                check_window(pending)?;
                if let Ok(len) = zstd_safe::find_frame_compressed_size(pending) {
                    let mut frame = self.spare.pop().unwrap_or_default();
                    frame.clear();
                    frame.extend_from_slice(&pending[..len]);
                    self.start += len;
                    return Ok(Some((frame, size)));
                }
                if avail > max_len {
                    return Err(corrupt("a frame larger than its declared content allows"));
                }
                if self.at_end()? {
                    return Err(corrupt("the last frame is cut short"));
                }
            }
            self.read_more()?;
        }
    }

    fn at_end(&mut self) -> Result<bool, ArchiveError> {
        Ok(self
            .input
            .fill_buf()
            .map_err(ArchiveError::Corrupt)?
            .is_empty())
    }

    fn read_more(&mut self) -> Result<(), ArchiveError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let avail = self.input.fill_buf().map_err(ArchiveError::Corrupt)?;
        let n = avail.len();
        self.buf.extend_from_slice(avail);
        self.input.consume(n);
        Ok(())
    }
}

/// One decompressed frame from a worker, with the compressed buffer for reuse.
type Decoded = (u64, Result<Vec<u8>, ArchiveError>, Vec<u8>);

/// Decompress the frames of `input` on `threads` workers and send their content, in order, into
/// `tx` (see the module docs for the bounds). Used buffers come back through `recycle`.
pub fn pump_frames<R: BufRead>(
    input: R,
    max_bytes: u64,
    threads: usize,
    tx: SyncSender<io::Result<Vec<u8>>>,
    recycle: Receiver<Vec<u8>>,
) -> Result<(), ArchiveError> {
    let (pool, results) = Pool::spawn(threads, threads.max(1) * 2, || {
        let mut dctx = DCtx::create();
        move |(seq, frame, mut out): (u64, Vec<u8>, Vec<u8>)| {
            let res = dctx
                .decompress(&mut out, &frame)
                .map(|_| out)
                .map_err(|c| ArchiveError::Corrupt(io::Error::other(zstd_safe::get_error_name(c))));
            (seq, res, frame)
        }
    });
    let mut order = Ordered {
        splitter: Splitter {
            input,
            buf: Vec::new(),
            start: 0,
            spare: Vec::new(),
        },
        results,
        pool,
        tx,
        recycle,
        max_bytes,
        total: 0,
        max_in_flight: threads.max(1) * 2,
    };
    let result = order.run();
    if let Err(e) = &result {
        let _ = order.tx.send(Err(io::Error::other(e.to_string())));
    }
    result
}

/// The dispatching side of [`pump_frames`]: frames out to the workers, content back in order.
struct Ordered<R> {
    splitter: Splitter<R>,
    results: Receiver<Decoded>,
    /// Dropped after `results` (see [`FrameEncoder`]).
    pool: Pool<(u64, Vec<u8>, Vec<u8>)>,
    tx: SyncSender<io::Result<Vec<u8>>>,
    recycle: Receiver<Vec<u8>>,
    max_bytes: u64,
    total: u64,
    max_in_flight: usize,
}

impl<R: BufRead> Ordered<R> {
    fn run(&mut self) -> Result<(), ArchiveError> {
        let mut ready: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let (mut next_seq, mut next_out) = (0u64, 0u64);
        let mut more = true;
        while more || next_out < next_seq {
            if more && next_seq - next_out < self.max_in_flight as u64 {
                match self.splitter.next_frame()? {
                    Some((frame, size)) => {
                        self.dispatch(next_seq, frame, size)?;
                        next_seq += 1;
                    }
                    None => more = false,
                }
                continue;
            }
            let (seq, res, frame) = self
                .results
                .recv()
                .map_err(|_| corrupt("frame decompression threads stopped"))?;
            self.splitter.spare.push(frame);
            ready.insert(seq, res?);
            while let Some(content) = ready.remove(&next_out) {
                next_out += 1;
                if self.tx.send(Ok(content)).is_err() {
                    return Ok(()); // the extractor stopped (a bad entry): its reason wins
                }
            }
        }
        Ok(())
    }

    /// Count the frame's declared size against the bound, then queue it.
    fn dispatch(&mut self, seq: u64, frame: Vec<u8>, size: u64) -> Result<(), ArchiveError> {
        self.total += size;
        if self.total > self.max_bytes {
            return Err(ArchiveError::Bound(format!(
                "the archive expands past the {} bytes its manifest declares",
                self.max_bytes
            )));
        }
        let mut out = self.recycle.try_recv().unwrap_or_default();
        out.clear();
        out.reserve(size as usize);
        self.pool
            .send((seq, frame, out))
            .map_err(ArchiveError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(data: &[u8]) -> Vec<u8> {
        let mut enc = FrameEncoder::new(Vec::new(), 3, 2).unwrap();
        for piece in data.chunks(100_000) {
            enc.write_all(piece).unwrap();
        }
        enc.finish().unwrap()
    }

    fn unframe(z: &[u8], max: u64) -> Result<Vec<u8>, ArchiveError> {
        let (tx, rx) = sync_channel(4);
        let (_keep, recycle) = sync_channel(4);
        let reader = io::BufReader::with_capacity(1000, z);
        let pump = std::thread::scope(|s| {
            let h = s.spawn(|| pump_frames(reader, max, 2, tx, recycle));
            let mut out = Vec::new();
            for c in rx {
                match c {
                    Ok(c) => out.extend_from_slice(&c),
                    Err(_) => break,
                }
            }
            h.join().unwrap().map(|_| out)
        });
        pump
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| ((i * 7919) % 251) as u8 ^ (i >> 13) as u8)
            .collect()
    }

    #[test]
    fn frames_round_trip_in_order_and_are_one_zstd_stream() {
        let data = sample(3 * FRAME_SIZE + 12_345);
        let z = framed(&data);
        assert_eq!(unframe(&z, data.len() as u64).unwrap(), data);
        // Any zstd decoder reads it as one stream.
        assert_eq!(zstd::decode_all(z.as_slice()).unwrap(), data);
        assert_eq!(small_frame_size(&z), Some(FRAME_SIZE as u64));
        assert_eq!(unframe(&framed(b""), 0).unwrap(), b"");
    }

    #[test]
    fn a_cut_a_lie_or_a_bound_is_refused() {
        let data = sample(2 * FRAME_SIZE + 10);
        let z = framed(&data);
        let cut = unframe(&z[..z.len() / 2], u64::MAX).unwrap_err();
        assert!(cut.to_string().contains("cut short"), "{cut}");
        let bound = unframe(&z, FRAME_SIZE as u64).unwrap_err();
        assert!(bound.to_string().contains("expands past"), "{bound}");
        // The second frame declares one byte more than it holds.
        let first = zstd_safe::find_frame_compressed_size(&z).unwrap();
        let mut lying = z.clone();
        // Magic, descriptor, a window byte unless single-segment, then a 4-byte content size.
        let single_segment = lying[first + 4] & 0x20 != 0;
        let fcs = first + 5 + usize::from(!single_segment);
        assert_eq!(lying[first + 4] >> 6, 2, "a 4-byte content size");
        let declared = u32::from_le_bytes(lying[fcs..fcs + 4].try_into().unwrap());
        lying[fcs..fcs + 4].copy_from_slice(&(declared + 1).to_le_bytes());
        let lie = unframe(&lying, u64::MAX).unwrap_err();
        assert!(matches!(lie, ArchiveError::Corrupt(_)), "{lie}");
    }
}

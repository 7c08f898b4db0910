//! A small save's compressor on both cores: the tar stream is cut into zstd frames of
//! [`FRAME`] bytes, the frames alternate between two compressor threads (the lanes), and a
//! writer thread takes them back in order, as if two `zstd` processes were each given every
//! other 256 KiB of `tar`'s output.
//!
//! Why: with one compressor, compressing was the slowest of a small save's stages (reading
//! the files, compressing, hashing and writing). zstd's own worker threads did not help there,
//! since the calling thread still copies every byte into their job buffers. Independent frames
//! cost about 1 % of the archive's size on the fixture's caches (no match reaches into the
//! previous frame) and make it decode faster: each frame's window is its 256 KiB.
//!
//! The archive is an ordinary series of zstd frames, which every zstd decoder reads one after
//! another (`zstd -d` and Kiln's restore alike).

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective;
use zstd::zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer};

/// Bytes per chunk passed between threads.
const CHUNK: usize = 128 << 10;
/// Uncompressed bytes per zstd frame. The producer hands a lane a whole frame at once (the
/// lane's channel holds it), so both lanes stay busy while the producer reads on.
const FRAME: usize = 2 * CHUNK;
/// The zstd window: a frame's own size, since no match can reach past its start.
pub const FRAME_WINDOW_LOG: u32 = FRAME.trailing_zeros();
/// Compressor threads.
const LANES: usize = 2;

/// What travels down a lane: bytes, or the end of the current frame.
enum Piece {
    Bytes(Vec<u8>),
    EndOfFrame,
}

/// What each thread ended with, furthest down the stream last.
pub struct LaneResults<T, E, W> {
    pub produced: Result<T, E>,
    pub compressed: io::Result<()>,
    pub written: io::Result<W>,
}

/// Run `produce` (writing the uncompressed stream into a [`LaneSender`]) on this thread,
/// compress it at `level` in two lanes, and write the frames in order into `out` on another
/// thread. When one thread fails, the ones before it see their pipe closed (`BrokenPipe`), so
/// the failure to report is the one furthest down the stream. `Err` only when a thread cannot
/// be started.
pub fn compress_in_lanes<W: Write + Send, T, E>(
    out: W,
    level: i32,
    produce: impl FnOnce(LaneSender) -> Result<T, E>,
) -> io::Result<LaneResults<T, E, W>> {
    let (back_tx, back_rx) = sync_channel::<Vec<u8>>(LANES * (FRAME / CHUNK + 1));
    let (mut inputs, mut outputs, mut returns) = (Vec::new(), Vec::new(), Vec::new());
    std::thread::scope(|scope| {
        let mut lanes = Vec::with_capacity(LANES);
        for i in 0..LANES {
            let (in_tx, in_rx) = sync_channel::<Piece>(FRAME / CHUNK + 1);
            let (out_tx, out_rx) = sync_channel::<Piece>(4);
            let (ret_tx, ret_rx) = sync_channel::<Vec<u8>>(5);
            let back = back_tx.clone();
            let lane = std::thread::Builder::new()
                .name(format!("kiln-compress-{i}"))
                .spawn_scoped(scope, move || {
                    compress_lane(level, in_rx, back, out_tx, ret_rx)
                })?;
            lanes.push(lane);
            inputs.push(in_tx);
            outputs.push(out_rx);
            returns.push(ret_tx);
        }
        drop(back_tx);
        let writer = std::thread::Builder::new()
            .name("kiln-write".into())
            .spawn_scoped(scope, move || {
                let mut out = out;
                write_frames(outputs, returns, &mut out).map(|()| out)
            })?;
        let produced = produce(LaneSender {
            buf: Vec::with_capacity(CHUNK),
            lanes: inputs,
            lane: 0,
            in_frame: 0,
            frames: 0,
            recycle: back_rx,
        });
        let mut compressed = Ok(());
        for lane in lanes {
            let result = joined(lane.join());
            if compressed.is_ok() {
                compressed = result;
            }
        }
        Ok(LaneResults {
            produced,
            compressed,
            written: joined(writer.join()),
        })
    })
}

/// A thread's result; a panic becomes an error.
fn joined<U>(result: std::thread::Result<io::Result<U>>) -> io::Result<U> {
    result.unwrap_or_else(|_| Err(io::Error::other("a compressor thread panicked")))
}

/// Take the filled `buf` to send on, leaving in its place an emptied chunk handed back by the
/// other end, or a new one.
fn take_full(buf: &mut Vec<u8>, recycled: &Receiver<Vec<u8>>) -> Vec<u8> {
    let next = recycled
        .try_recv()
        .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
    std::mem::replace(buf, next)
}

/// The producer's end: fills chunks, sends them down the current lane, and moves to the next
/// lane every [`FRAME`] bytes. [`LaneSender::finish`] ends the last frame; dropping the sender
/// without it closes every lane, leaving the archive incomplete (the producer's error is then
/// the one reported).
pub struct LaneSender {
    buf: Vec<u8>,
    lanes: Vec<SyncSender<Piece>>,
    lane: usize,
    in_frame: usize,
    frames: usize,
    recycle: Receiver<Vec<u8>>,
}

impl LaneSender {
    fn send(&mut self, piece: Piece) -> io::Result<()> {
        self.lanes[self.lane]
            .send(piece)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "a compressor thread stopped"))
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = take_full(&mut self.buf, &self.recycle);
        self.in_frame += full.len();
        self.send(Piece::Bytes(full))
    }

    fn end_frame(&mut self) -> io::Result<()> {
        self.send(Piece::EndOfFrame)?;
        self.lane = (self.lane + 1) % LANES;
        self.in_frame = 0;
        self.frames += 1;
        Ok(())
    }

    /// Send what is buffered and end the last frame (an empty stream still gets one frame).
    pub fn finish(mut self) -> io::Result<()> {
        self.send_buffered()?;
        if self.in_frame > 0 || self.frames == 0 {
            self.end_frame()?;
        }
        Ok(())
    }
}

impl Write for LaneSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = (CHUNK - self.buf.len()).min(FRAME - self.in_frame - self.buf.len());
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK || self.in_frame + self.buf.len() == FRAME {
            self.send_buffered()?;
        }
        if self.in_frame == FRAME {
            self.end_frame()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One lane: compress each frame it is given into chunks for the writer, ending each with
/// [`Piece::EndOfFrame`]. One zstd context serves every frame, so its tables are set up once.
fn compress_lane(
    level: i32,
    input: Receiver<Piece>,
    back: SyncSender<Vec<u8>>,
    output: SyncSender<Piece>,
    returned: Receiver<Vec<u8>>,
) -> io::Result<()> {
    let mut out = LaneOutput {
        cctx: context(level)?,
        chunk: Vec::with_capacity(CHUNK),
        output,
        returned,
    };
    for piece in input {
        match piece {
            Piece::Bytes(mut data) => {
                let mut src = InBuffer::around(&data);
                while src.pos() < data.len() {
                    out.step(&mut src, ZSTD_EndDirective::ZSTD_e_continue)?;
                }
                data.clear();
                let _ = back.try_send(data);
            }
            Piece::EndOfFrame => {
                let mut none = InBuffer::around(&[]);
                while out.step(&mut none, ZSTD_EndDirective::ZSTD_e_end)? > 0 {}
                out.send_chunk()?;
                out.send(Piece::EndOfFrame)?;
            }
        }
    }
    Ok(())
}

/// A zstd context for Kiln's frames: the level, the frame-sized window, and a checksum in
/// every frame (corruption is caught by the decoder itself, not only by the manifest's).
fn context(level: i32) -> io::Result<CCtx<'static>> {
    let mut cctx = CCtx::create();
    for p in [
        CParameter::CompressionLevel(level),
        CParameter::ChecksumFlag(true),
        CParameter::WindowLog(FRAME_WINDOW_LOG),
    ] {
        cctx.set_parameter(p).map_err(zstd_error)?;
    }
    Ok(cctx)
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))
}

/// A lane's compressed output: chunks filled by zstd and sent to the writer, which hands
/// emptied ones back.
struct LaneOutput {
    cctx: CCtx<'static>,
    chunk: Vec<u8>,
    output: SyncSender<Piece>,
    returned: Receiver<Vec<u8>>,
}

impl LaneOutput {
    /// One call to zstd with room left in the chunk; returns what zstd still has to flush.
    fn step(&mut self, src: &mut InBuffer<'_>, op: ZSTD_EndDirective) -> io::Result<usize> {
        if self.chunk.len() == self.chunk.capacity() {
            self.send_chunk()?;
        }
        let pos = self.chunk.len();
        let mut dst = OutBuffer::around_pos(&mut self.chunk, pos);
        self.cctx
            .compress_stream2(&mut dst, src, op)
            .map_err(zstd_error)
    }

    fn send_chunk(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let full = take_full(&mut self.chunk, &self.returned);
        self.send(Piece::Bytes(full))
    }

    fn send(&mut self, piece: Piece) -> io::Result<()> {
        self.output
            .send(piece)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the archive writer stopped"))
    }
}

/// The writer: frame 0 from lane 0, frame 1 from lane 1, and so on, until the lane whose turn
/// it is has no more frames.
fn write_frames(
    lanes: Vec<Receiver<Piece>>,
    returns: Vec<SyncSender<Vec<u8>>>,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut lane = 0;
    loop {
        loop {
            match lanes[lane].recv() {
                Ok(Piece::Bytes(mut bytes)) => {
                    out.write_all(&bytes)?;
                    bytes.clear();
                    let _ = returns[lane].try_send(bytes);
                }
                Ok(Piece::EndOfFrame) => break,
                Err(_) => return Ok(()),
            }
        }
        lane = (lane + 1) % LANES;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn through_lanes(data: &[u8], write_size: usize) -> Vec<u8> {
        let r = compress_in_lanes(Vec::new(), 3, |mut s| {
            for part in data.chunks(write_size) {
                s.write_all(part)?;
            }
            s.finish()
        })
        .unwrap();
        r.produced.unwrap();
        r.compressed.unwrap();
        r.written.unwrap()
    }

    fn frames(mut archive: &[u8]) -> usize {
        let mut n = 0;
        while !archive.is_empty() {
            let size = zstd::zstd_safe::find_frame_compressed_size(archive).unwrap();
            archive = &archive[size..];
            n += 1;
        }
        n
    }

    #[test]
    fn every_byte_comes_back_in_order_whatever_the_size() {
        for len in [
            0,
            1,
            FRAME - 1,
            FRAME,
            FRAME + 1,
            3 * FRAME,
            5 * FRAME + 12_345,
        ] {
            let data: Vec<u8> = (0..len as u32)
                .map(|i| ((i % 251) ^ (i >> 11)) as u8)
                .collect();
            let archive = through_lanes(&data, 7777);
            assert_eq!(zstd::decode_all(&archive[..]).unwrap(), data, "{len} bytes");
            assert_eq!(frames(&archive), len.div_ceil(FRAME).max(1), "{len} bytes");
        }
    }

    #[test]
    fn frames_are_compressed_with_a_frame_sized_window() {
        let data: Vec<u8> = (0..3 * FRAME as u32).map(|i| (i % 97) as u8).collect();
        let archive = through_lanes(&data, FRAME);
        assert!(archive.len() < data.len() / 20, "{} bytes", archive.len());
        let mut d = zstd::stream::read::Decoder::new(&archive[..]).unwrap();
        d.window_log_max(FRAME_WINDOW_LOG).unwrap();
        let mut back = Vec::new();
        io::copy(&mut d, &mut back).unwrap();
        assert_eq!(back, data);
    }

    /// An archive destination whose disk is full.
    pub(in crate::cache) struct FullDisk;

    impl Write for FullDisk {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// 4 MB that zstd cannot shrink: more than the lanes' channels hold.
    pub(in crate::cache) fn noise() -> Vec<u8> {
        (0..4_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn a_write_failure_is_reported_and_the_producer_sees_the_pipe_close() {
        let noise = noise();
        let r = compress_in_lanes(FullDisk, 3, |mut s| {
            s.write_all(&noise)?;
            s.finish()
        })
        .unwrap();
        assert_eq!(r.written.err().unwrap().to_string(), "disk full");
        assert_eq!(r.produced.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}

//! The compressor side of a save: zstd's settings, its worker threads for large trees, and for
//! small ones a pipe of three threads (reading the files, compressing them and writing the
//! archive overlap, as in `tar | zstd | tee`).

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use super::archive::ArchiveError;
use super::pipe::{pipe, ChunkSender};

/// The input zstd hands each worker thread at a time.
const ZSTD_JOB: u64 = 4 << 20;

/// zstd worker threads: every core, since a save is usually the only thing running; none for
/// a tree smaller than one job, where the workers could not share anything and their threads
/// and job buffers cost a small save a fifth of its CPU.
pub(super) fn zstd_threads(paths: &[PathBuf]) -> u32 {
    if !holds_at_least(paths, ZSTD_JOB) {
        return 0;
    }
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(2)
        .max(1)
}

/// Whether the regular files under `paths` add up to `bytes` or more. Stops as soon as they do,
/// so a large tree costs a few `stat`s; an unreadable directory counts as large.
fn holds_at_least(paths: &[PathBuf], bytes: u64) -> bool {
    let mut total = 0u64;
    let mut dirs: Vec<PathBuf> = paths.to_vec();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            if dir.exists() {
                return true;
            }
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(entry.path()),
                Ok(t) if t.is_file() => {
                    total += entry.metadata().map(|m| m.len()).unwrap_or(bytes);
                    if total >= bytes {
                        return true;
                    }
                }
                _ => {}
            }
        }
    }
    false
}

/// A zstd encoder at `level` with `threads` workers (0: compress on the writing thread), a
/// checksum in every frame (corruption is caught by the decoder itself, not only by the
/// manifest's sha256), and jobs of [`ZSTD_JOB`] (big jobs keep every worker busy on small-file
/// trees).
pub(super) fn zstd_encoder<W: Write>(
    out: W,
    level: i32,
    threads: u32,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(out, level)?;
    enc.multithread(threads)?;
    enc.include_checksum(true)?;
    let _ = enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB as u32));
    Ok(enc)
}

/// The zstd window of a small tree's archive: 1 MiB instead of level 3's 2 MiB. The decoder's
/// buffer is the window, so a restore touches half the memory (about 250 fewer page faults, a
/// tenth of a small restore's time); the archive grows by a few bytes at most, and nothing for
/// content that is already compressed (wheels, ccache objects).
const SMALL_TREE_WINDOW_LOG: u32 = 20;

/// Run `produce` (the tar stream) on this thread, compress what it writes on a second thread,
/// and hash and write the compressed bytes into `out` on a third, as `tar | zstd | tee` would:
/// on a small tree, reading the files, compressing them and writing the archive overlap. The
/// failure reported is the one furthest down the pipe (a full disk, not the compressor then
/// finding its output closed).
pub(super) fn piped<W, T>(
    out: W,
    level: i32,
    produce: impl FnOnce(ChunkSender) -> Result<T, ArchiveError>,
) -> Result<(W, T), ArchiveError>
where
    W: Write + Send,
{
    let (produced, written) = pipe("kiln-compress", produce, move |tar| {
        let (encoded, written) = pipe(
            "kiln-write",
            |sender| {
                let mut enc = zstd_encoder(sender, level, 0)?;
                enc.window_log(SMALL_TREE_WINDOW_LOG)?;
                tar.write_into(&mut enc)?;
                enc.finish()?.finish()
            },
            move |zstd| {
                let mut out = out;
                zstd.write_into(&mut out)?;
                Ok(out)
            },
        )?;
        let out = written?;
        encoded?;
        Ok(out)
    })
    .map_err(ArchiveError::Thread)?;
    match (produced, written) {
        (_, Err(e)) => Err(ArchiveError::Write(e)),
        (Err(e), Ok(_)) => Err(e),
        (Ok(t), Ok(out)) => Ok((out, t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_trees_are_compressed_without_worker_threads() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b/deep"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        fs::write(a.join("x"), vec![1u8; 3000]).unwrap();
        fs::write(b.join("y"), vec![2u8; 3000]).unwrap();
        let both = [a.clone(), dir.path().join("b"), dir.path().join("missing")];
        assert!(holds_at_least(&both, 6000));
        assert!(!holds_at_least(&both, 6001));
        assert_eq!(zstd_threads(&both), 0);
        fs::write(b.join("big"), vec![0u8; ZSTD_JOB as usize]).unwrap();
        assert!(zstd_threads(&both) >= 1);
    }

    #[test]
    fn piped_output_is_one_zstd_frame_of_everything_written() {
        let data: Vec<u8> = (0..1_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let (out, n) = piped(Vec::new(), 3, |mut s| {
            for part in data.chunks(7777) {
                s.write_all(part).map_err(ArchiveError::Write)?;
            }
            s.finish().map_err(ArchiveError::Write)?;
            Ok(data.len())
        })
        .unwrap();
        assert_eq!(n, data.len());
        assert!(
            out.len() < data.len() / 2,
            "compressed: {} bytes",
            out.len()
        );
        assert_eq!(zstd::decode_all(&out[..]).unwrap(), data);
    }

    #[test]
    fn a_compressor_failure_is_the_error_reported() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let noise: Vec<u8> = (0..4_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let err = piped(Full, 3, |mut s| {
            s.write_all(&noise).map_err(ArchiveError::Write)?;
            s.finish().map_err(ArchiveError::Write)
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("disk full"), "{err}");
    }
}

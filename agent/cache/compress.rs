//! The compressor side of a save: zstd's settings, its worker threads for large trees, and for
//! small ones two lanes of frames (reading the files, compressing on both cores and writing the
//! archive overlap, as in `tar | zstd | tee`).

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use super::archive_error::ArchiveError;
use super::lanes::{compress_in_lanes, LaneSender};

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
/// manifest's checksum), and jobs of [`ZSTD_JOB`] (big jobs keep every worker busy on small-file
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

/// Compress what `produce` writes (the tar stream of a small tree) in two lanes of zstd frames
/// and hash and write them into `out` (see [`super::lanes`]): reading the files, compressing
/// on both cores and writing the archive overlap, as in `tar | zstd | tee`. The failure
/// reported is the one furthest down the stream (a full disk, not the compressor then finding
/// its output closed).
pub(super) fn in_lanes<W, T>(
    out: W,
    level: i32,
    produce: impl FnOnce(LaneSender) -> Result<T, ArchiveError>,
) -> Result<(W, T), ArchiveError>
where
    W: Write + Send,
{
    let r = compress_in_lanes(out, level, produce).map_err(ArchiveError::Thread)?;
    let out = r.written.map_err(ArchiveError::Write)?;
    r.compressed.map_err(ArchiveError::Write)?;
    Ok((out, r.produced?))
}

#[cfg(test)]
mod tests {
    use super::super::lanes::tests::{noise, FullDisk};
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
    fn a_write_failure_is_the_error_reported_not_the_closed_pipe() {
        let noise = noise();
        let err = in_lanes(FullDisk, 3, |mut s| {
            s.write_all(&noise).map_err(ArchiveError::Write)?;
            s.finish().map_err(ArchiveError::Write)
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("disk full"), "{err}");
    }

    #[test]
    fn a_producer_failure_is_reported_when_the_rest_went_well() {
        let err = in_lanes(Vec::new(), 3, |mut s| -> Result<(), ArchiveError> {
            s.write_all(b"half a tar").map_err(ArchiveError::Write)?;
            Err(ArchiveError::Write(io::Error::other("file vanished")))
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("file vanished"), "{err}");
    }
}

//! The error of writing or unpacking an archive (its own module: the archive writer and the
//! compressor below it both end with it).

use std::io;
use std::path::PathBuf;

/// Why an archive could not be written or was refused on extraction.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading {path}: {source}")]
    ReadSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the archive: {0}")]
    Write(#[source] io::Error),
    #[error("archive stream is corrupt or truncated: {0}")]
    Corrupt(#[source] io::Error),
    #[error("archive entry {entry:?} is unsafe: {reason}")]
    Unsafe { entry: String, reason: String },
    #[error("archive entry {entry:?} has unsupported type {kind}")]
    Unsupported { entry: String, kind: String },
    /// The archive crossed a bound: more bytes, files or entries than allowed, or a zstd window
    /// above the cap.
    #[error("{0}")]
    Bound(String),
    #[error("cannot start a thread: {0}")]
    Thread(#[source] io::Error),
    #[error("extracting {path}: {source}")]
    Extract {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

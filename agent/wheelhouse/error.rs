//! What can go wrong exporting or importing a wheelhouse archive.

use std::path::PathBuf;

use crate::cache::store::StoreError;
use crate::index::IndexError;

#[derive(Debug, thiserror::Error)]
pub enum WheelhouseError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading wheel files or sidecars (the index's layout) failed.
    #[error(transparent)]
    Index(IndexError),
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no wheels to export in {source_desc}{}", if platforms.is_empty() { String::new() } else { format!(" for platform(s) {}", platforms.join(", ")) })]
    NoWheels {
        source_desc: String,
        platforms: Vec<String>,
    },
    #[error("wheelhouse archive {archive} is unusable: {message}")]
    Corrupt { archive: String, message: String },
    #[error("wheelhouse archive {archive}: {filename} does not match its sha256 in the manifest (expected {expected}, got {actual}); the archive was altered or damaged in transit: nothing was imported")]
    HashMismatch {
        archive: String,
        filename: String,
        expected: String,
        actual: String,
    },
    #[error("wheelhouse archive {archive}: {filename} is listed in the manifest but missing from the archive; nothing was imported")]
    Missing { archive: String, filename: String },
    #[error("wheelhouse archive {archive} holds {entry:?}, which its manifest does not list; nothing was imported")]
    Unexpected { archive: String, entry: String },
    #[error(
        "store {store}: {filename} does not match the sha256 of its sidecar; publish it again"
    )]
    StoreHashMismatch { store: String, filename: String },
    #[error("{0}")]
    Usage(String),
}

impl From<IndexError> for WheelhouseError {
    /// A store fault met through the index's layout is still a store fault.
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::Store(s) => WheelhouseError::Store(*s),
            other => WheelhouseError::Index(other),
        }
    }
}

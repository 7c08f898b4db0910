//! The cache engine: named directories archived under keys in a store, restored by exact key or
//! by key prefix (actions/cache semantics).
//!
//! Contract used by the pipeline, `kiln cache …` and the index server:
//! - `restore` never fails a build: any fault (store down, corrupt or truncated archive, hash
//!   mismatch, an entry escaping the target) is a miss with a warning, and nothing is written
//!   outside the target directories.
//! - `save` is atomic and skips the upload when the exact key already holds the same content.

pub mod archive;
mod archive_error;
pub mod backend;
mod backends;
pub mod catalog;
mod compress;
mod dal;
pub mod digest;
pub mod extract;
pub mod gha;
mod growing;
pub mod key;
mod lanes;
pub mod manifest;
pub mod progress;
pub mod prune;
mod restore;
mod save;
pub mod store;
mod writers;

use std::path::PathBuf;

use crate::settings::file::Compression;
pub use crate::settings::file::RestoreLimits;
pub use crate::summary::RestoreHit;
pub use growing::save_growing;
pub use store::{Store, StoreError};

/// What `restore` found.
#[derive(Debug, Clone, Default)]
pub struct RestoreOutcome {
    pub hit: RestoreHit,
    /// The key that was restored (the exact key, or the newest key matching a restore prefix).
    pub matched_key: Option<String>,
    /// Compressed bytes downloaded.
    pub bytes: u64,
    /// Why the restore missed or degraded (store down, corrupt archive …), for the user.
    pub warnings: Vec<String>,
}

/// What `save` did.
#[derive(Debug, Clone, Default)]
pub struct SaveOutcome {
    pub saved: bool,
    /// Compressed bytes uploaded (0 when skipped).
    pub bytes: u64,
    /// Why it was skipped, if it was.
    pub skipped_reason: Option<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SaveOptions {
    pub compression: Compression,
    /// None = codec default.
    pub level: Option<i32>,
}

impl Default for SaveOptions {
    fn default() -> Self {
        Self {
            compression: Compression::Zstd,
            level: None,
        }
    }
}

/// Restore `paths` from the archive under `key`, else from the newest archive whose key starts with
/// one of `restore_keys` (tried in order), within the default [`RestoreLimits`]. The directories
/// are created; on a miss they are left as they were.
pub async fn restore(
    store: &Store,
    key: &str,
    restore_keys: &[String],
    paths: &[PathBuf],
) -> RestoreOutcome {
    restore_within(store, key, restore_keys, paths, RestoreLimits::default()).await
}

/// [`restore`] within `limits`.
pub async fn restore_within(
    store: &Store,
    key: &str,
    restore_keys: &[String],
    paths: &[PathBuf],
    limits: RestoreLimits,
) -> RestoreOutcome {
    restore::restore(store, key, restore_keys, paths, limits).await
}

/// Archive `paths` under `key`. Skipped (no bytes uploaded) when `key` already holds the same
/// content. Errors only for problems the caller must hear about; a store outage is a warning.
pub async fn save(store: &Store, key: &str, paths: &[PathBuf], opts: &SaveOptions) -> SaveOutcome {
    save::save(store, key, paths, opts).await
}

/// A suffix unique to this save (time, pid, counter): for object names that must never be
/// written twice (run-unique keys on stores whose keys are immutable).
pub fn unique_suffix() -> String {
    restore::unique_id()
}

/// Which key `restore` would use and its archive size, without downloading it.
pub async fn lookup(store: &Store, key: &str, restore_keys: &[String]) -> RestoreOutcome {
    restore::lookup(store, key, restore_keys).await
}

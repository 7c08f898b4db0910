//! `kiln wheelhouse export|import`: CI-built wheels carried to machines without internet access.
//!
//! `export` packs a directory of wheels, or the wheels published in a store, into one `.tar.zst`
//! with a manifest (names, tags, sha256); `import` verifies every hash before placing any wheel,
//! by default into the directory `kiln run --offline` installs from (see
//! [`crate::wheels::offline`]).

pub mod archive_manifest;
pub mod transfer;

use std::path::PathBuf;

use crate::cli::wheelhouse::{WheelhouseArgs, WheelhouseCommand};
use crate::settings::StoreSettings;

use crate::cache::store::{Store, StoreError};
use crate::index::IndexError;

pub use transfer::{export_dir, export_store, import, ExportStats, ImportStats};

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

/// `kiln wheelhouse …`
/// Run `kiln wheelhouse …`.
pub async fn run_cli(
    args: WheelhouseArgs,
    settings: &StoreSettings,
) -> Result<(), WheelhouseError> {
    match args.command {
        WheelhouseCommand::Export(a) => {
            let stats = match &a.from {
                Some(dir) => {
                    let (dir, platforms, output) =
                        (dir.clone(), a.platforms.clone(), a.output.clone());
                    tokio::task::spawn_blocking(move || export_dir(&dir, &platforms, &output))
                        .await
                        .map_err(|e| WheelhouseError::Usage(format!("export task failed: {e}")))??
                }
                None => {
                    let url = crate::settings::store_url(
                        a.store.clone(),
                        None,
                        &crate::settings::process_env,
                    );
                    let store = Store::open(&url, settings)?;
                    export_store(&store, &a.platforms, &a.output).await?
                }
            };
            println!(
                "exported {} wheel(s) ({} bytes) to {} ({} bytes)",
                stats.wheels,
                stats.wheel_bytes,
                a.output.display(),
                stats.archive_bytes
            );
            Ok(())
        }
        WheelhouseCommand::Import(a) => {
            let into = a
                .into
                .clone()
                .unwrap_or_else(crate::wheels::offline::default_import_dir);
            let (archive, dest) = (a.archive.clone(), into.clone());
            let stats = tokio::task::spawn_blocking(move || import(&archive, &dest))
                .await
                .map_err(|e| WheelhouseError::Usage(format!("import task failed: {e}")))??;
            println!(
                "imported {} wheel(s) ({} bytes) into {}; {} already there; all sha256 verified",
                stats.imported,
                stats.bytes,
                into.display(),
                stats.unchanged
            );
            Ok(())
        }
    }
}

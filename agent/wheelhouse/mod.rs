//! `kiln wheelhouse export|import`: CI-built wheels carried to machines without internet access.
//!
//! `export` packs a directory of wheels, or the wheels published in a store, into one `.tar.zst`
//! with a manifest (names, tags, sha256); `import` verifies every hash before placing any wheel,
//! by default into the directory `kiln run --offline` installs from (see
//! [`crate::wheels::offline`]).

pub mod archive_manifest;
pub mod error;
pub mod transfer;

use crate::cli::wheelhouse::{WheelhouseArgs, WheelhouseCommand};
use crate::settings::StoreSettings;

use crate::cache::store::Store;

pub use error::WheelhouseError;
pub use transfer::{export_dir, export_store, import, ExportStats, ImportStats};

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

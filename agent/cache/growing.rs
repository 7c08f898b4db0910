//! Caches whose content grows run after run (ccache, pip's cache) on any store, including those
//! whose keys cannot be overwritten (the GitHub Actions cache).
//!
//! Each save goes under a run-unique key `KEY.<id>`; restores find the newest of them through
//! the restore prefix `KEY.` (see [`super::key::CacheKey`]). A save is skipped when the content
//! equals the newest saved one, and after a save the older `KEY.*` entries are removed where the
//! store can list and delete (elsewhere `kiln cache prune` and the service's eviction do it).

use std::path::PathBuf;

use super::key::CacheKey;
use super::manifest::{self, Manifest};
use super::{archive, SaveOptions, SaveOutcome, Store};

/// Save `paths` for the growing cache `key` (see the module docs).
pub async fn save_growing(
    store: &Store,
    key: &CacheKey,
    paths: &[PathBuf],
    opts: &SaveOptions,
) -> SaveOutcome {
    let runs = format!("{}{}.", manifest::PREFIX, key.key);
    if let Some(latest) = newest_run(store, &runs).await {
        let owned = paths.to_vec();
        let digest = tokio::task::spawn_blocking(move || archive::content_digest(&owned)).await;
        if let Ok(Ok(d)) = digest {
            if d == latest.content_digest && latest.paths.len() == paths.len() {
                let reason = format!("unchanged since {}", latest.key);
                tracing::info!(key = %key.key, "cache save skipped: {reason}");
                return SaveOutcome {
                    skipped_reason: Some(reason),
                    ..SaveOutcome::default()
                };
            }
        }
    }
    let save_key = key.save_key();
    let out = super::save(store, &save_key, paths, opts).await;
    if out.saved {
        retire_older(store, &runs, &save_key).await;
    }
    out
}

/// The manifest of the newest `KEY.<id>` save, if any can be read.
async fn newest_run(store: &Store, runs: &str) -> Option<Manifest> {
    let (path, bytes) = store.newest(runs, ".json").await.ok()??;
    let key = path.strip_prefix(manifest::PREFIX)?.strip_suffix(".json")?;
    Manifest::parse(&bytes, key).ok()
}

/// Remove the older runs' manifests and archives (best effort).
async fn retire_older(store: &Store, runs: &str, kept: &str) {
    let entries = match store.list(runs).await {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!("older saves of {runs}* are left to pruning: {e}");
            return;
        }
    };
    let keep = format!("{}{kept}.", manifest::PREFIX);
    // Manifests first, so a key stops existing before its archive goes.
    let (manifests, others): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .filter(|e| !e.path.starts_with(&keep))
        .partition(|e| e.path.ends_with(".json"));
    for e in manifests.into_iter().chain(others) {
        if let Err(err) = store.delete(&e.path).await {
            tracing::debug!("cannot remove the older save {}: {err}", e.path);
        }
    }
}

//! `kiln cache prune`: keep a store within an age limit and a total size budget.
//!
//! Keys older than `max_age` go first; then, while the total is over `max_total_size`, the
//! oldest keys. A key is deleted manifest first (so it stops existing at once), archive second.
//! Archives no manifest names and temporary files from interrupted saves are removed once
//! they are older than a grace period, so a save in progress is never disturbed.

use std::time::Duration;

use chrono::Utc;

use super::catalog;
use super::store::{Store, StoreError};

/// Orphans younger than this may belong to a save still in progress.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Default)]
pub struct PrunePolicy {
    pub max_age: Option<Duration>,
    pub max_total_size: Option<u64>,
    /// Only report what would be deleted.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// (key, bytes, why).
    pub deleted: Vec<(String, u64, &'static str)>,
    pub kept: usize,
    pub kept_bytes: u64,
    /// Orphan archives and temporary files removed (path, bytes).
    pub leftovers: Vec<(String, u64)>,
    /// Deletions that failed (the store said no); reported, not fatal.
    pub errors: Vec<String>,
}

impl PruneReport {
    pub fn freed(&self) -> u64 {
        self.deleted.iter().map(|d| d.1).sum::<u64>()
            + self.leftovers.iter().map(|l| l.1).sum::<u64>()
    }
}

pub async fn prune(store: &Store, policy: &PrunePolicy) -> Result<PruneReport, StoreError> {
    let cat = catalog::read(store, "").await?;
    let now = Utc::now();
    let age_of = |t: Option<chrono::DateTime<Utc>>| {
        t.map(|t| (now - t).to_std().unwrap_or_default())
            .unwrap_or_default()
    };
    let mut report = PruneReport::default();
    // Oldest first.
    let mut caches = cat.caches;
    caches.reverse();
    let mut keep = Vec::new();
    let mut doomed = Vec::new();
    for c in caches {
        match policy.max_age {
            Some(max) if age_of(c.created) > max => doomed.push((c, "older than max age")),
            _ => keep.push(c),
        }
    }
    if let Some(budget) = policy.max_total_size {
        let mut total: u64 = keep.iter().map(|c| c.size).sum();
        let mut rest = Vec::new();
        for c in keep {
            if total > budget {
                total -= c.size;
                doomed.push((c, "over the size budget"));
            } else {
                rest.push(c);
            }
        }
        keep = rest;
    }
    report.kept = keep.len();
    report.kept_bytes = keep.iter().map(|c| c.size).sum();
    for (c, why) in doomed {
        if !policy.dry_run {
            if let Err(e) = store.retry(|| store.delete(&c.manifest_path)).await {
                report.errors.push(e.to_string());
                continue;
            }
            if let Some(a) = &c.archive_path {
                if let Err(e) = store.retry(|| store.delete(a)).await {
                    report.errors.push(e.to_string());
                }
            }
        }
        report.deleted.push((c.key, c.size, why));
    }
    for e in cat.orphans.into_iter().chain(cat.temporaries) {
        if age_of(e.modified) < ORPHAN_GRACE {
            continue;
        }
        if !policy.dry_run {
            if let Err(err) = store.retry(|| store.delete(&e.path)).await {
                report.errors.push(err.to_string());
                continue;
            }
        }
        report.leftovers.push((e.path, e.size));
    }
    Ok(report)
}

//! Save stage: the caches back to the store, only what changed, and (for `kiln index serve`)
//! each wheel on its own. Runs after a test failure too: the wheels built are still good.
//! Never fails the build.

use crate::cache::{self, SaveOptions, Store};
use crate::settings::file::CacheConfig;
use crate::summary::StageOutcome;

use super::restore::{CacheName, RunKeys};
use super::stage::Done;
use super::workdir::Paths;

/// What the save stage needs.
pub struct SaveInputs<'a> {
    /// Why nothing may be saved (fork pull request, `--no-save`, `cache.save_on`).
    pub refused: Option<String>,
    pub store: &'a Store,
    /// `None` when the restore stage could not derive keys.
    pub keys: Option<&'a RunKeys>,
    /// Whether ccache stored new results; `None` when the bootstrap produced nothing.
    pub ccache_new_entries: Option<bool>,
    /// Skip the wheelhouse: nothing was added to it (a failed bootstrap that built nothing).
    pub wheelhouse_unchanged: bool,
    /// The bootstrap installed something from the wheelhouse (false: nothing to install).
    pub wheelhouse_used: bool,
    pub paths: &'a Paths,
    pub config: &'a CacheConfig,
}

/// One cache's save.
#[derive(Debug, Clone)]
pub struct CacheSaved {
    pub name: CacheName,
    pub saved: bool,
    pub bytes: u64,
    pub warnings: Vec<String>,
}

/// Why the wheelhouse is not worth a save, if it is not. A project with nothing to install
/// keeps nothing (an empty wheelhouse would give every other such project an "exact hit" on
/// nothing, and one restored by prefix is another project's); a failed bootstrap that added no
/// wheel has nothing new.
fn wheelhouse_not_worth_saving(
    dir: &std::path::Path,
    inp: &SaveInputs<'_>,
) -> Option<&'static str> {
    if !inp.wheelhouse_used {
        Some("nothing to install")
    } else if super::bootstrap::installers::list_wheels(dir).is_empty() {
        Some("empty")
    } else if inp.wheelhouse_unchanged {
        Some("nothing new")
    } else {
        None
    }
}

/// Save what changed.
pub async fn save(inp: SaveInputs<'_>) -> Done<Vec<CacheSaved>> {
    if let Some(why) = inp.refused {
        return Done::new(Vec::new(), StageOutcome::Skipped, why);
    }
    let (Some(keys), Some(ccache_new)) = (inp.keys, inp.ccache_new_entries) else {
        return Done::new(
            Vec::new(),
            StageOutcome::Skipped,
            "nothing to save".to_string(),
        );
    };
    let opts = SaveOptions {
        compression: inp.config.compression,
        level: inp.config.level,
    };
    let mut parts = Vec::new();
    let mut saved = Vec::new();
    for (name, key) in keys.caches() {
        // ccache: only when this run added entries (ccache touches its stats on every hit).
        if name == CacheName::Ccache && !ccache_new {
            parts.push(format!("{} unchanged", name.as_str()));
            continue;
        }
        let dir = name.dir(inp.paths).to_path_buf();
        if name == CacheName::Wheelhouse {
            if let Some(why) = wheelhouse_not_worth_saving(&dir, &inp) {
                parts.push(format!("{} not saved: {why}", name.as_str()));
                continue;
            }
        }
        let out = if key.growing {
            cache::save_growing(inp.store, key, &[dir], &opts).await
        } else {
            cache::save(inp.store, &key.key, &[dir], &opts).await
        };
        parts.push(match (out.saved, &out.skipped_reason) {
            (true, _) => format!("{} saved ({} bytes)", name.as_str(), out.bytes),
            (false, Some(r)) => format!("{} not saved: {r}", name.as_str()),
            (false, None) => format!("{} not saved", name.as_str()),
        });
        saved.push(CacheSaved {
            name,
            saved: out.saved,
            bytes: out.bytes,
            warnings: out.warnings,
        });
    }
    let mut degraded = saved.iter().any(|s| !s.warnings.is_empty());
    // One object per wheel, for `kiln index serve` (see index::layout). Never fails the run.
    if inp.config.publish_wheels {
        match crate::index::publish_wheels(inp.store, &inp.paths.wheelhouse).await {
            Ok(p) => parts.push(format!("{} wheel(s) published", p.published)),
            Err(e) => {
                degraded = true;
                tracing::warn!("publishing wheels for the index: {e}");
            }
        }
    }
    let outcome = if degraded {
        StageOutcome::Warning
    } else {
        StageOutcome::Ok
    };
    Done::new(saved, outcome, parts.join(", "))
}

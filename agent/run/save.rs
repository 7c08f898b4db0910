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

/// What the wheelhouse holds, by name, size and modification time: taken after the restore and
/// again before the save, it tells whether the bootstrap added, removed or rewrote anything
/// without reading the wheels. (Restored files carry the archive's times; a wheel built or
/// copied in carries the time it was written.)
#[derive(Debug, PartialEq, Eq)]
pub struct WheelhouseListing(
    std::collections::BTreeMap<String, (u64, Option<std::time::SystemTime>)>,
);

impl WheelhouseListing {
    pub fn of(dir: &std::path::Path) -> WheelhouseListing {
        let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
        WheelhouseListing(
            entries
                .map(|e| {
                    let meta = e.metadata().ok();
                    let len = meta.as_ref().map_or(u64::MAX, |m| m.len());
                    let mtime = meta.and_then(|m| m.modified().ok());
                    (e.file_name().to_string_lossy().into_owned(), (len, mtime))
                })
                .collect(),
        )
    }
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
    } else if crate::wheels::list(dir).is_empty() {
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

#[cfg(test)]
mod tests {
    use super::WheelhouseListing;
    use std::fs;
    use std::time::{Duration, SystemTime};

    #[test]
    fn the_listing_changes_when_a_wheel_is_added_removed_or_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("a-1.0-py3-none-any.whl");
        fs::write(&wheel, b"restored").unwrap();
        // As the restore leaves it: the archive's modification time.
        let as_restored = || {
            let restored = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            let file = fs::File::options().write(true).open(&wheel).unwrap();
            file.set_modified(restored).unwrap();
        };
        as_restored();
        let before = WheelhouseListing::of(dir.path());
        assert_eq!(WheelhouseListing::of(dir.path()), before, "nothing touched");

        fs::write(&wheel, b"rebuilt!").unwrap(); // same name, same size, written now
        assert_ne!(WheelhouseListing::of(dir.path()), before, "rewritten");
        as_restored();
        assert_eq!(
            WheelhouseListing::of(dir.path()),
            before,
            "(only the time told)"
        );

        fs::write(dir.path().join("b-2.0-py3-none-any.whl"), b"x").unwrap();
        assert_ne!(WheelhouseListing::of(dir.path()), before, "added");
        fs::remove_file(dir.path().join("b-2.0-py3-none-any.whl")).unwrap();
        fs::remove_file(&wheel).unwrap();
        assert_ne!(WheelhouseListing::of(dir.path()), before, "removed");
    }
}

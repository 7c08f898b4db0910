//! The wheelhouse directory itself: the wheels it holds, and pruning those the current
//! requirements no longer use.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Remove wheels the current requirements did not use, unless younger than `max_age`.
pub fn prune(dir: &Path, used: &BTreeSet<String>, max_age: Option<Duration>) -> Vec<String> {
    let mut removed = Vec::new();
    if used.is_empty() {
        return removed; // nothing parsed: never guess
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".whl") || used.contains(&name) {
            continue;
        }
        let age = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if max_age.is_some_and(|max| age < max) {
            continue;
        }
        if std::fs::remove_file(e.path()).is_ok() {
            removed.push(name);
        }
    }
    removed.sort();
    removed
}

/// The wheel file names in `dir` (none when it cannot be read).
pub fn list(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".whl"))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_used_and_young_wheels() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "used-1-py3-none-any.whl",
            "old-1-py3-none-any.whl",
            "notes.txt",
        ] {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        let used: BTreeSet<String> = ["used-1-py3-none-any.whl".to_string()].into();
        // A generous age limit keeps the unused (but young) wheel.
        assert!(prune(d.path(), &used, Some(Duration::from_secs(3600))).is_empty());
        // No limit: unused wheels go, other files stay.
        assert_eq!(prune(d.path(), &used, None), vec!["old-1-py3-none-any.whl"]);
        assert!(d.path().join("used-1-py3-none-any.whl").exists());
        assert!(d.path().join("notes.txt").exists());
        // Nothing parsed: nothing removed.
        assert!(prune(d.path(), &BTreeSet::new(), None).is_empty());
    }
}

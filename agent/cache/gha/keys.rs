//! Cache keys and versions on the GitHub Actions cache service, by the toolkit's rules
//! (`@actions/cache`: a key is at most 512 characters and holds no comma; a lookup names at
//! most 10 keys; the version is a sha256 over `|`-joined components).
//!
//! Kiln's objects keep their store path as the service key. The version is derived from what
//! the object is (a JSON manifest/state, or an archive and its compression) plus a salt of
//! Kiln's own, where `actions/cache` hashes the cached paths, the compression and `1.0`: the
//! two never share a version, so neither can restore the other's archives, and a prefix lookup
//! for manifests never returns an archive.

use sha2::{Digest, Sha256};

/// The service refuses longer keys.
pub const MAX_KEY_LEN: usize = 512;

/// The service takes at most this many keys (primary + restore keys) per lookup.
pub const MAX_KEYS_PER_LOOKUP: usize = 10;

/// Changes whenever Kiln's objects on the service change incompatibly.
const SALT: &str = "kiln-gha-1";

/// A key the service would refuse, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("cache key {0:?} is longer than {MAX_KEY_LEN} characters (the GitHub cache service refuses it)")]
    TooLong(String),
    #[error("cache key {0:?} contains a comma (the GitHub cache service refuses it)")]
    Comma(String),
    #[error("cache key is empty")]
    Empty,
}

/// Check a key (or restore-key prefix) against the service's rules.
pub fn check_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.chars().count() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(
            key.chars().take(40).collect::<String>() + "…",
        ));
    }
    if key.contains(',') {
        return Err(KeyError::Comma(key.to_string()));
    }
    Ok(())
}

/// What kind of object a store path names, by its ending: this picks its version.
fn kind_of(path: &str) -> &'static str {
    if path.ends_with(".tar.zst") {
        "archive|zstd"
    } else if path.ends_with(".tar.gz") {
        "archive|gzip"
    } else if path.ends_with(".json") {
        "json"
    } else {
        "object"
    }
}

/// The version for the object at `path` (or for objects ending like `path`, for a prefix
/// lookup given a sample ending).
pub fn version_for(path: &str) -> String {
    let components = ["kiln", kind_of(path), SALT];
    hex::encode(Sha256::digest(components.join("|").as_bytes()))
}

/// The `actions/cache` version for `paths` and a compression method, for comparison in tests
/// and docs: sha256 of the paths, the method and `1.0`, joined with `|`.
pub fn actions_cache_version(paths: &[&str], compression: &str) -> String {
    let mut c: Vec<&str> = paths.to_vec();
    c.push(compression);
    c.push("1.0");
    hex::encode(Sha256::digest(c.join("|").as_bytes()))
}

/// Split `keys` into lookups of at most [`MAX_KEYS_PER_LOOKUP`]: the first carries the exact
/// key and up to 9 prefixes, later ones 9 prefixes each, the first of them repeated as the
/// request's key (10 keys in all).
pub fn lookups<'a>(exact: &'a str, prefixes: &'a [String]) -> Vec<(&'a str, Vec<&'a str>)> {
    let mut out = Vec::new();
    let first = prefixes.len().min(MAX_KEYS_PER_LOOKUP - 1);
    out.push((
        exact,
        prefixes[..first].iter().map(String::as_str).collect(),
    ));
    for chunk in prefixes[first..].chunks(MAX_KEYS_PER_LOOKUP - 1) {
        let keys: Vec<&str> = chunk.iter().map(String::as_str).collect();
        out.push((keys[0], keys));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_toolkit_rules() {
        assert!(check_key("caches/kiln-1-wheels-abc.json").is_ok());
        assert_eq!(check_key("a,b"), Err(KeyError::Comma("a,b".into())));
        assert!(matches!(
            check_key(&"k".repeat(513)),
            Err(KeyError::TooLong(_))
        ));
        assert!(check_key(&"k".repeat(512)).is_ok());
        assert_eq!(check_key(""), Err(KeyError::Empty));
    }

    #[test]
    fn versions_separate_kinds_and_never_match_actions_cache() {
        let manifest = version_for("caches/k.json");
        let zst = version_for("caches/k.1.tar.zst");
        assert_eq!(manifest, version_for("kiln-1-state/x/main/1.json"));
        assert_ne!(manifest, zst);
        assert_ne!(zst, version_for("caches/k.1.tar.gz"));
        assert_eq!(manifest.len(), 64);
        for m in ["zstd", "gzip", "zstd-without-long"] {
            let theirs = actions_cache_version(&["caches/k.1.tar.zst"], m);
            assert_ne!(theirs, zst);
            assert_ne!(theirs, manifest);
        }
    }

    #[test]
    fn lookups_respect_the_ten_key_limit() {
        let prefixes: Vec<String> = (0..21).map(|i| format!("p{i}")).collect();
        let l = lookups("k", &prefixes);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].0, "k");
        assert_eq!(l[0].1.len(), 9);
        assert_eq!((l[1].0, l[1].1.len()), ("p9", 9));
        assert_eq!((l[2].0, l[2].1.len()), ("p18", 3));
        assert!(l.iter().all(|(_, r)| r.len() < MAX_KEYS_PER_LOOKUP));
        assert_eq!(lookups("k", &[]), vec![("k", vec![])]);
    }
}

//! The JSON manifest stored beside each archive: what the archive holds and how to check it.
//!
//! Objects in the store, for a key `K`:
//! - `caches/K.json`: this manifest, written *last*, so a manifest only ever names a complete
//!   archive. Its presence is what makes the key exist.
//! - `caches/K.<id>.tar.zst` (or `.tar.gz`): the archive. `<id>` is unique per save, so two
//!   agents saving the same key never write the same archive object; whichever manifest lands
//!   last wins and names a complete archive.

use serde::{Deserialize, Serialize};

use super::digest::{is_hex_digest, recorded, Recorded};
use crate::settings::file::Compression;

/// Bumped when the manifest or archive layout changes incompatibly.
pub const FORMAT: u32 = 1;

/// Where manifests and archives live inside a store.
pub const PREFIX: &str = "caches/";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub key: String,
    /// Object path of the archive, relative to the store root (`caches/K.<id>.tar.zst`).
    pub archive: String,
    pub compression: Compression,
    pub level: i32,
    /// sha256 of the compressed archive object, hex: what manifests written before BLAKE3 carry
    /// (and what they are checked with); empty in a new one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// BLAKE3 of the compressed archive object, hex (see [`super::digest`]); checked instead of
    /// `sha256` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    pub compressed_size: u64,
    /// Bytes of the uncompressed tar stream.
    pub uncompressed_size: u64,
    /// Bytes of file content.
    #[serde(default)]
    pub content_bytes: u64,
    pub file_count: u64,
    pub created: chrono::DateTime<chrono::Utc>,
    pub kiln_version: String,
    /// The directories archived, slot `i` = `paths[i]` (as given at save time; restore puts slot
    /// `i` at the `i`-th path the restorer names).
    pub paths: Vec<String>,
    /// Digest of the archived content (paths, sizes, modes, bytes; not mtimes): a save with the
    /// same digest is skipped.
    pub content_digest: String,
}

impl Recorded for Manifest {
    fn blake3(&self) -> Option<&str> {
        self.blake3.as_deref()
    }
    fn sha256(&self) -> &str {
        &self.sha256
    }
}

impl Manifest {
    /// Parse and sanity-check a manifest read from the store.
    pub fn parse(bytes: &[u8], key: &str) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("manifest is not valid JSON: {e}"))?;
        if m.format != FORMAT {
            return Err(format!(
                "manifest format {} is not supported (this kiln reads format {FORMAT})",
                m.format
            ));
        }
        if m.key != key {
            return Err(format!("manifest names key {:?}, expected {key:?}", m.key));
        }
        let expected_prefix = format!("{PREFIX}{key}.");
        if !m.archive.starts_with(&expected_prefix)
            || m.archive.contains("..")
            || m.archive[expected_prefix.len()..].contains('/')
        {
            return Err(format!(
                "manifest names an unexpected archive {:?}",
                m.archive
            ));
        }
        if !is_hex_digest(recorded(&m).1) {
            return Err("manifest has no valid blake3 or sha256 of its archive".into());
        }
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// A valid manifest of `key` (an all-zero sha256), for tests.
    #[cfg(test)]
    pub(crate) fn sample(key: &str) -> Manifest {
        Manifest {
            format: FORMAT,
            key: key.into(),
            archive: archive_path(key, "1", Compression::Zstd),
            compression: Compression::Zstd,
            level: 3,
            sha256: "0".repeat(64),
            blake3: None,
            compressed_size: 1,
            uncompressed_size: 1,
            content_bytes: 0,
            file_count: 0,
            created: chrono::Utc::now(),
            kiln_version: "0".into(),
            paths: vec![],
            content_digest: String::new(),
        }
    }
}

/// Object path of the manifest for `key`.
pub fn manifest_path(key: &str) -> String {
    format!("{PREFIX}{key}.json")
}

/// Object path of a new archive for `key`.
pub fn archive_path(key: &str, id: &str, compression: Compression) -> String {
    let ext = match compression {
        Compression::Zstd => "tar.zst",
        Compression::Gzip => "tar.gz",
    };
    format!("{PREFIX}{key}.{id}.{ext}")
}

/// Keys become object names: refuse anything that could escape `caches/` or confuse a store.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("cache key is empty".into());
    }
    if key.len() > 512 {
        return Err("cache key is longer than 512 characters".into());
    }
    if key.starts_with('.') {
        return Err(format!("cache key {key:?} starts with '.'"));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.+=@".contains(*c)))
    {
        return Err(format!(
            "cache key {key:?} contains {c:?}; use letters, digits and - _ . + = @"
        ));
    }
    Ok(())
}

/// A restore prefix may also be empty (= any key).
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate_key(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(validate_key("kiln-1-wheels-linux-x86_64-cp311-abc").is_ok());
        assert!(validate_key("../etc").is_err());
        assert!(validate_key("a/b").is_err());
        assert!(
            validate_key("a,b").is_err(),
            "the GitHub cache refuses commas"
        );
        assert!(validate_key("").is_err());
        assert!(validate_prefix("").is_ok());
    }

    #[test]
    fn manifest_must_name_its_own_archive() {
        let m = Manifest::sample("k");
        assert!(Manifest::parse(&m.to_json(), "k").is_ok());
        assert!(Manifest::parse(&m.to_json(), "j").is_err());
        let mut evil = m.clone();
        evil.archive = "caches/k.x/../../etc/passwd".into();
        assert!(Manifest::parse(&evil.to_json(), "k").is_err());
        let mut new = m.clone();
        new.sha256 = String::new();
        new.blake3 = Some("a".repeat(64));
        let json = String::from_utf8(new.to_json()).unwrap();
        assert!(!json.contains("sha256"), "{json}");
        assert_eq!(Manifest::parse(json.as_bytes(), "k"), Ok(new.clone()));
        new.blake3 = Some("xyz".into());
        assert!(Manifest::parse(&new.to_json(), "k").is_err());
        new.blake3 = None;
        assert!(
            Manifest::parse(&new.to_json(), "k").is_err(),
            "no checksum at all"
        );
    }
}

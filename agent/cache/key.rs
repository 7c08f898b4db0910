//! Cache key derivation (documented in README "Cache keys").
//!
//! `kiln-1-wheels-{os}-{arch}-{python}[-x{salt}]-{hash}`: the hash covers the requirement and
//! constraint files, so any change to them is a new key; the restore prefix drops the hash, so a
//! changed requirement still restores the previous wheelhouse and only the difference is built.
//!
//! `kiln-1-ccache-{os}-{arch}-{compiler}[-x{salt}]-{hash}`: per compiler version, with the same
//! prefix fallback. ccache and pip's cache grow run after run: they are saved under run-unique
//! keys `{key}.{id}` and restored by the prefix `{key}.` (newest first), so every store works
//! the same whether its keys can be overwritten or not (see `cache::growing`).

use sha2::{Digest, Sha256};

/// Bump when the archive layout or key scheme changes incompatibly.
pub const SCHEME: &str = "kiln-1";

/// What the keys are derived from.
#[derive(Debug, Clone)]
pub struct KeyInputs {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `x86_64`.
    pub arch: String,
    /// e.g. `cp311`.
    pub python_tag: String,
    /// e.g. `gcc-12.2.0`, or `none` when there is no compiler.
    pub compiler: String,
    /// (path, contents) of each requirement/constraint file, in config order.
    pub requirement_files: Vec<(String, Vec<u8>)>,
    /// `cache.key_extra`.
    pub extra: Option<String>,
}

/// A key and its restore prefixes, most specific first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub key: String,
    pub restore_keys: Vec<String>,
    /// The content grows run after run: saved under run-unique keys `{key}.{id}`.
    pub growing: bool,
}

impl CacheKey {
    /// A key whose content is fixed by its inputs, restored by `prefix` when missing.
    pub fn fixed(key: String, prefix: String) -> CacheKey {
        CacheKey {
            key,
            restore_keys: vec![prefix],
            growing: false,
        }
    }

    /// A growing cache: its runs `{key}.{id}` first, then `prefix`.
    pub fn growing(key: String, prefix: String) -> CacheKey {
        CacheKey {
            restore_keys: vec![format!("{key}."), prefix],
            key,
            growing: true,
        }
    }

    /// The key this run saves under: `key`, or `key.<run-unique id>` for a growing cache.
    pub fn save_key(&self) -> String {
        if self.growing {
            format!("{}.{}", self.key, super::unique_suffix())
        } else {
            self.key.clone()
        }
    }

    /// `matched` holds this key's content: the key itself, or one of its runs.
    pub fn is_exact(&self, matched: &str) -> bool {
        matched == self.key
            || (self.growing
                && matched
                    .strip_prefix(&self.key)
                    .is_some_and(|rest| rest.starts_with('.')))
    }
}

pub use crate::safe_name::sanitize;

fn salt(extra: &Option<String>) -> String {
    match extra {
        Some(e) if !e.is_empty() => {
            format!("-x{}", &hex::encode(Sha256::digest(e.as_bytes()))[..8])
        }
        _ => String::new(),
    }
}

/// sha256 over the files' names and contents, hex, first 16 chars.
pub fn requirements_hash(files: &[(String, Vec<u8>)]) -> String {
    let mut h = Sha256::new();
    for (name, body) in files {
        h.update(name.as_bytes());
        h.update([0]);
        h.update((body.len() as u64).to_le_bytes());
        h.update(body);
    }
    hex::encode(h.finalize())[..16].to_string()
}

impl KeyInputs {
    pub fn wheelhouse(&self) -> CacheKey {
        let prefix = format!(
            "{SCHEME}-wheels-{}-{}-{}{}-",
            sanitize(&self.os),
            sanitize(&self.arch),
            sanitize(&self.python_tag),
            salt(&self.extra)
        );
        CacheKey::fixed(
            format!("{prefix}{}", requirements_hash(&self.requirement_files)),
            prefix,
        )
    }

    pub fn ccache(&self) -> CacheKey {
        let prefix = format!(
            "{SCHEME}-ccache-{}-{}-{}{}-",
            sanitize(&self.os),
            sanitize(&self.arch),
            sanitize(&self.compiler),
            salt(&self.extra)
        );
        CacheKey::growing(
            format!("{prefix}{}", requirements_hash(&self.requirement_files)),
            prefix,
        )
    }

    pub fn pip_cache(&self) -> CacheKey {
        let prefix = format!(
            "{SCHEME}-pip-{}-{}-{}{}-",
            sanitize(&self.os),
            sanitize(&self.arch),
            sanitize(&self.python_tag),
            salt(&self.extra)
        );
        CacheKey::growing(
            format!("{prefix}{}", requirements_hash(&self.requirement_files)),
            prefix,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(req: &str) -> KeyInputs {
        KeyInputs {
            os: "linux".into(),
            arch: "x86_64".into(),
            python_tag: "cp311".into(),
            compiler: "gcc-12.2.0".into(),
            requirement_files: vec![("requirements.txt".into(), req.as_bytes().to_vec())],
            extra: None,
        }
    }

    #[test]
    fn key_changes_with_requirements_but_prefix_does_not() {
        let a = inputs("numpy==1\n").wheelhouse();
        let b = inputs("numpy==2\n").wheelhouse();
        assert_ne!(a.key, b.key);
        assert_eq!(a.restore_keys, b.restore_keys);
        assert!(a.key.starts_with(&a.restore_keys[0]));
        assert!(a.key.starts_with("kiln-1-wheels-linux-x86_64-cp311-"));
    }

    #[test]
    fn salt_separates_both_keys_and_prefixes() {
        let a = inputs("x\n");
        let mut b = inputs("x\n");
        b.extra = Some("v2".into());
        assert_ne!(a.wheelhouse().key, b.wheelhouse().key);
        assert_ne!(a.ccache().restore_keys, b.ccache().restore_keys);
    }

    #[test]
    fn sanitize_makes_safe_names() {
        assert_eq!(sanitize("GCC 12.2/0"), "gcc_12.2_0");
        assert_eq!(sanitize(""), "none");
    }
}

//! The manifest at the head of a wheelhouse archive: which wheels, their tags and hashes.
//!
//! It comes first in the tar so `import` knows every expected hash before it reads a single wheel
//! byte, and can refuse an archive whose contents differ from what it claims.

use serde::{Deserialize, Serialize};

use crate::wheels::names::WheelName;

/// Name of the manifest entry, first in the archive.
pub const MANIFEST_NAME: &str = "kiln-wheelhouse.json";
/// Directory of the wheels inside the archive.
pub const WHEELS_DIR: &str = "wheels/";
/// Format identifier; bumped on incompatible changes.
pub const FORMAT: &str = "kiln-wheelhouse/1";
/// Manifests larger than this are refused (a hostile archive must not make us allocate GBs).
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub kiln_version: String,
    /// The `--platform` filter the export used (empty = every wheel of the source).
    #[serde(default)]
    pub platforms: Vec<String>,
    pub wheels: Vec<WheelEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WheelEntry {
    pub filename: String,
    /// PEP 503 normalized project name.
    pub project: String,
    pub version: String,
    pub python_tag: String,
    pub abi_tag: String,
    pub platform_tag: String,
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
}

impl WheelEntry {
    pub fn new(w: &WheelName, sha256: String, size: u64) -> WheelEntry {
        WheelEntry {
            filename: w.filename.clone(),
            project: w.project.clone(),
            version: w.version.clone(),
            python_tag: w.python_tag.clone(),
            abi_tag: w.abi_tag.clone(),
            platform_tag: w.platform_tag.clone(),
            sha256,
            size,
        }
    }
}

/// Whether a wheel belongs in an export for `platforms` (empty = all). Pure-Python (`any`) wheels
/// fit every platform; otherwise one tag of the wheel's compressed platform set must be listed.
pub fn fits_platforms(w: &WheelName, platforms: &[String]) -> bool {
    platforms.is_empty()
        || w.is_any_platform()
        || w.platforms()
            .any(|p| platforms.iter().any(|want| want == p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_filter() {
        let any = WheelName::parse("a-1-py3-none-any.whl").unwrap();
        let many =
            WheelName::parse("b-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
                .unwrap();
        let arm = WheelName::parse("c-1-cp311-cp311-linux_aarch64.whl").unwrap();
        let want = vec!["manylinux2014_x86_64".to_string()];
        assert!(fits_platforms(&any, &want));
        assert!(fits_platforms(&many, &want));
        assert!(!fits_platforms(&arm, &want));
        assert!(fits_platforms(&arm, &[]));
    }
}

//! The environment of every build child (the lock export before the restore, the bootstrap's
//! installs and builds): temp dirs and tool caches inside the work dir, no prompts, no index
//! when offline; and `PATH` with a prefix.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::workdir::Paths;

/// The environment of every build child: temp dirs and tool caches inside the work dir, no
/// prompts, and no index when offline.
pub fn build_env(paths: &Paths, offline: bool) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("TMPDIR".into(), paths.tmp.clone().into()),
        ("PIP_DISABLE_PIP_VERSION_CHECK".into(), "1".into()),
        ("PIP_NO_INPUT".into(), "1".into()),
        // pip's and uv's own caches live in the work dir: the wheelhouse (and, when enabled, the
        // cached pip download dir) is the only thing a run inherits, so cold means cold.
        ("PIP_CACHE_DIR".into(), paths.pip_cache.clone().into()),
        ("UV_CACHE_DIR".into(), uv_cache(paths).into()),
    ];
    if offline {
        env.push(("PIP_NO_INDEX".into(), "1".into()));
        env.push(("UV_OFFLINE".into(), "1".into()));
    }
    env
}

/// uv's cache, inside the work dir (where the parallel build finds the wheels uv built).
pub fn uv_cache(paths: &Paths) -> PathBuf {
    paths.tmp.join("uv-cache")
}

/// `PATH` with `prefix` first.
pub fn path_with(prefix: &[&Path]) -> OsString {
    let mut parts: Vec<PathBuf> = prefix.iter().map(|p| p.to_path_buf()).collect();
    if let Some(path) = std::env::var_os("PATH") {
        parts.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(parts).unwrap_or_default()
}

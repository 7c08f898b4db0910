//! Restore stage: derive this run's cache keys, then fetch the wheelhouse, ccache (and pip)
//! archives from the store, exact key first, then key prefix.
//!
//! A store fault or a missing key never fails the build: the stage ends `warning` and the
//! bootstrap builds what it must.

use std::path::{Path, PathBuf};

use crate::cache::key::{CacheKey, KeyInputs};
use crate::cache::{self, Store};
use crate::settings::Config;
use crate::summary::{CacheSummary, RestoreHit, StageOutcome};

use super::stage::Done;
use super::toolchain::{self, PythonError, PythonInfo};
use super::workdir::Paths;

/// Why the cache keys could not be derived.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Python(#[from] PythonError),
    #[error("requirement file {0} does not exist in the checkout")]
    MissingRequirements(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One cache of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheName {
    Wheelhouse,
    Ccache,
    Pip,
}

impl CacheName {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheName::Wheelhouse => "wheelhouse",
            CacheName::Ccache => "ccache",
            CacheName::Pip => "pip",
        }
    }

    /// The work dir directory this cache fills.
    pub fn dir(self, paths: &Paths) -> &Path {
        match self {
            CacheName::Wheelhouse => &paths.wheelhouse,
            CacheName::Ccache => &paths.ccache,
            CacheName::Pip => &paths.pip_cache,
        }
    }
}

/// The cache keys of this run.
#[derive(Debug, Clone)]
pub struct RunKeys {
    pub wheelhouse: CacheKey,
    pub ccache: CacheKey,
    /// pip's download cache, when `cache.pip_cache` is on.
    pub pip: Option<CacheKey>,
}

impl RunKeys {
    /// Every cache this run uses, with its key.
    pub fn caches(&self) -> Vec<(CacheName, &CacheKey)> {
        let mut v = vec![
            (CacheName::Wheelhouse, &self.wheelhouse),
            (CacheName::Ccache, &self.ccache),
        ];
        if let Some(pip) = &self.pip {
            v.push((CacheName::Pip, pip));
        }
        v
    }
}

/// The requirement and constraint files that exist, as (relative path, contents).
fn requirement_files(config: &Config, checkout: &Path) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
    let default_only = config.requirements == Config::default().requirements;
    let mut files = Vec::new();
    for rel in config.requirements.iter().chain(&config.constraints) {
        let path = checkout.join(rel);
        match std::fs::read(&path) {
            Ok(body) => files.push((rel.display().to_string(), body)),
            // The default requirements.txt may be absent: a project with no dependencies.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && default_only => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::MissingRequirements(rel.clone()))
            }
            Err(source) => return Err(KeyError::Io { path, source }),
        }
    }
    Ok(files)
}

/// This run's keys, from the interpreter, the compiler and the requirement files. Also returns
/// the interpreter's probe, which the bootstrap reuses.
pub async fn derive_keys(
    project: &Config,
    checkout: &Path,
) -> Result<(RunKeys, PythonInfo), KeyError> {
    let (py, compiler) = tokio::join!(
        toolchain::python_info(&project.python),
        toolchain::compiler_id()
    );
    let py = py?;
    let inputs = KeyInputs {
        os: py.os.clone(),
        arch: py.arch.clone(),
        python_tag: py.tag.clone(),
        compiler,
        requirement_files: requirement_files(project, checkout)?,
        extra: project.cache.key_extra.clone(),
    };
    let keys = RunKeys {
        wheelhouse: inputs.wheelhouse(),
        ccache: inputs.ccache(),
        pip: project.cache.pip_cache.then(|| inputs.pip_cache()),
    };
    Ok((keys, py))
}

/// What the restore stage needs.
pub struct RestoreInputs<'a> {
    pub project: &'a Config,
    pub paths: &'a Paths,
    pub store: &'a Store,
}

/// What the restore stage produced.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// `None` when the keys could not be derived (nothing was restored or will be saved).
    pub keys: Option<RunKeys>,
    /// The interpreter, probed for the keys.
    pub python: Option<PythonInfo>,
    /// One entry per cache, for the summary.
    pub caches: Vec<CacheSummary>,
}

impl Restored {
    /// The wheelhouse came back under its exact key: the bootstrap may install without building.
    pub fn wheelhouse_exact(&self) -> bool {
        self.caches
            .iter()
            .any(|c| c.name == CacheName::Wheelhouse.as_str() && c.restore == RestoreHit::Exact)
    }
}

/// Derive the keys and restore every cache, concurrently.
pub async fn restore(inp: RestoreInputs<'_>) -> Done<Restored> {
    let (keys, python) = match derive_keys(inp.project, &inp.paths.checkout).await {
        Ok(k) => k,
        Err(e) => {
            let msg = format!("cannot derive cache keys: {e}");
            tracing::warn!("{msg}");
            return Done::new(Restored::default(), StageOutcome::Warning, msg);
        }
    };
    let caches = keys.caches();
    let limits = inp.project.cache.restore_limits();
    let results = futures::future::join_all(caches.iter().map(|(name, key)| {
        let paths = [name.dir(inp.paths).to_path_buf()];
        async move {
            cache::restore_within(inp.store, &key.key, &key.restore_keys, &paths, limits).await
        }
    }))
    .await;
    let mut degraded = false;
    let mut parts = Vec::new();
    let mut summaries = Vec::new();
    for ((name, key), r) in caches.into_iter().zip(results) {
        degraded |= !r.warnings.is_empty();
        parts.push(format!("{} {:?}", name.as_str(), r.hit).to_lowercase());
        summaries.push(CacheSummary {
            name: name.as_str().into(),
            key: key.key.clone(),
            restore: r.hit,
            restored_key: r.matched_key,
            bytes_restored: r.bytes,
            saved: false,
            bytes_saved: 0,
            warnings: r.warnings,
        });
    }
    let outcome = if degraded {
        StageOutcome::Warning
    } else {
        StageOutcome::Ok
    };
    let restored = Restored {
        keys: Some(keys),
        python: Some(python),
        caches: summaries,
    };
    Done::new(restored, outcome, parts.join(", "))
}

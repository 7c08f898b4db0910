//! Restore stage: derive this run's cache keys, then fetch the wheelhouse, ccache (and pip)
//! archives from the store, exact key first, then key prefix.
//!
//! A store fault or a missing key never fails the build: the stage ends `warning` and the
//! bootstrap builds what it must.

use std::path::Path;

use crate::cache::key::{CacheKey, KeyInputs};
use crate::cache::{self, Store};
use crate::project::{keys, Project, ProjectError};
use crate::settings::Config;
use crate::summary::{CacheSummary, RestoreHit, StageOutcome};

use super::stage::Done;
use super::toolchain::{self, PythonError, PythonInfo, Toolchain};
use super::workdir::Paths;

/// Why the cache keys could not be derived.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Python(#[from] PythonError),
    #[error(transparent)]
    Project(#[from] ProjectError),
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
    /// The keys a failed bootstrap saves its progress under: the wheelhouse and ccache, each
    /// under its exact key plus `-partial-<unix seconds>`. The exact key stays free for the run
    /// that succeeds (stores such as GitHub's never overwrite), and the next run finds the
    /// progress through the restore prefix.
    pub fn partial(&self) -> RunKeys {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Already unique: saved as is, never as a run of the key.
        let mark = |k: &CacheKey| CacheKey {
            key: format!("{}-partial-{stamp}", k.key),
            restore_keys: k.restore_keys.clone(),
            growing: false,
        };
        RunKeys {
            wheelhouse: mark(&self.wheelhouse),
            ccache: mark(&self.ccache),
            pip: None,
        }
    }

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

/// This run's keys, from the interpreter, the compiler and the requirement files. Also returns
/// the interpreter's probe, which the bootstrap reuses. `early` is a probe made before kiln.yml
/// was read: used when it probed the interpreter kiln.yml names.
pub async fn derive_keys(
    project: &Config,
    detected: &Project,
    checkout: &Path,
    early: Option<Toolchain>,
) -> Result<(RunKeys, PythonInfo), KeyError> {
    let tc = match early.filter(|t| t.python == project.python) {
        Some(t) => t,
        None => toolchain::probe(&project.python).await,
    };
    let (py, compiler) = (tc.info?, tc.compiler);
    let inputs = KeyInputs {
        os: py.os.clone(),
        arch: py.arch.clone(),
        python_tag: py.tag.clone(),
        compiler,
        requirement_files: keys::key_files(
            checkout,
            detected,
            &project.constraints,
            crate::project::runs_pytest(&project.test.command),
        )?,
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
    pub detected: &'a Project,
    pub paths: &'a Paths,
    pub store: &'a Store,
    /// The toolchain probed during the checkout.
    pub toolchain: Option<Toolchain>,
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
    let (keys, python) = match derive_keys(
        inp.project,
        inp.detected,
        &inp.paths.checkout,
        inp.toolchain,
    )
    .await
    {
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
        // A growing cache's newest run of the same key is its exact content.
        let hit = match &r.matched_key {
            Some(m) if r.hit == RestoreHit::Partial && key.is_exact(m) => RestoreHit::Exact,
            _ => r.hit,
        };
        parts.push(format!("{} {:?}", name.as_str(), hit).to_lowercase());
        summaries.push(CacheSummary {
            name: name.as_str().into(),
            key: key.key.clone(),
            restore: hit,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_keys_leave_the_exact_key_free_and_restore_by_prefix() {
        let key = |k: &str| CacheKey::fixed(format!("kiln-1-{k}-abc"), format!("kiln-1-{k}-"));
        let keys = RunKeys {
            wheelhouse: key("wheels"),
            ccache: key("ccache"),
            pip: Some(key("pip")),
        };
        let p = keys.partial();
        assert!(p.wheelhouse.key.starts_with("kiln-1-wheels-abc-partial-"));
        assert!(p
            .wheelhouse
            .key
            .starts_with(&keys.wheelhouse.restore_keys[0]));
        assert!(p.ccache.key.starts_with("kiln-1-ccache-abc-partial-"));
        assert!(
            p.pip.is_none(),
            "a failed run's download cache is not worth a new key"
        );
    }

    fn early(python: &str) -> Toolchain {
        Toolchain {
            python: python.into(),
            info: Err(PythonError {
                python: python.into(),
                detail: "probed during the checkout".into(),
            }),
            compiler: "gcc-0".into(),
        }
    }

    #[tokio::test]
    async fn keys_use_the_early_probe_only_for_the_interpreter_kiln_yml_names() {
        let checkout = tempfile::tempdir().unwrap();
        let project = Config::default();
        let detected = crate::project::detect(crate::project::detect::DetectInput {
            checkout: checkout.path(),
            config: &project.project,
            requirements: None,
        })
        .unwrap();
        // The early probe of the same interpreter is used as it is (here: its failure).
        let err = derive_keys(
            &project,
            &detected,
            checkout.path(),
            Some(early(&project.python)),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("probed during the checkout"),
            "{err}"
        );
        // kiln.yml names another interpreter: probed again, the early answer is not used.
        let (keys, py) = derive_keys(
            &project,
            &detected,
            checkout.path(),
            Some(early("python9.99")),
        )
        .await
        .unwrap();
        assert!(py.tag.starts_with("cp3"), "{}", py.tag);
        assert!(
            keys.wheelhouse.key.contains(&py.tag),
            "{}",
            keys.wheelhouse.key
        );
    }
}

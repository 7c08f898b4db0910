//! Per-branch reporting state, kept as a small JSON object in the cache store.
//!
//! Blame needs memory across runs: which commit was last green, since when the branch fails, and
//! who was already told about the current breakage. Keeping it in the store (not on the machine)
//! makes it work across runs, machines and fresh work dirs, the same way the caches do.
//!
//! Each build writes a new object under the branch's prefix (a run-unique name) and reads the
//! newest one: stores whose entries cannot be overwritten (the GitHub Actions cache) then work
//! exactly like the others. Older objects are removed after a write where the store can list
//! and delete, and by `kiln cache prune` / the service's eviction otherwise.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::key::sanitize;
use crate::cache::Store;
use crate::summary::Outcome;

use super::blame::Person;

/// Bump when the state format changes incompatibly (old objects are then ignored, not misread).
const STATE_PREFIX: &str = "kiln-1-state";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read report state {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: crate::cache::store::StoreError,
    },
    #[error("report state {path} is not valid JSON ({source}); delete it to start afresh")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What Kiln remembers about one branch of one repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BranchState {
    /// The last commit whose build passed: the start of the blame range.
    pub last_green: Option<String>,
    /// The first failing commit of the current breakage (None while green).
    pub failing_since: Option<String>,
    /// The commit and outcome of the previous build.
    pub last_sha: Option<String>,
    pub last_outcome: Option<Outcome>,
    /// Failing test names of the previous build (`change` mode compares them).
    pub failing_tests: Vec<String>,
    /// Everyone blamed for the current breakage (they hear "fixed" on recovery).
    pub blamed: Vec<Person>,
    /// Everyone already told about the current breakage (never told twice in `problem` and
    /// `change` modes).
    pub told: Vec<Person>,
    /// When the state was written (RFC 3339), for people reading the store.
    pub updated: Option<String>,
    /// Recent results of the tests that failed or flipped on this branch (see `flaky`).
    pub tests: super::flaky::Histories,
}

impl BranchState {
    /// Whether the previous build failed.
    pub fn was_failing(&self) -> bool {
        matches!(
            self.last_outcome,
            Some(Outcome::Failed) | Some(Outcome::Error)
        )
    }

    /// Whether `p` was already told about the current breakage.
    pub fn was_told(&self, p: &Person) -> bool {
        self.told.iter().any(|t| t.same_as(p))
    }
}

/// Where a branch's states live in the store: the prefix of one object per build, per
/// (repository, branch).
///
/// `repo` is `owner/name` when known (so every machine and checkout path agrees), else the
/// repository location Kiln was given.
pub fn state_path(repo: &str, branch: &str) -> String {
    let hash = hex::encode(Sha256::digest(format!("{repo}\n{branch}").as_bytes()));
    let tail = repo
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit('/')
        .next()
        .unwrap_or("repo");
    format!(
        "{STATE_PREFIX}/{}-{}/{}/",
        sanitize(tail),
        &hash[..12],
        sanitize(branch)
    )
}

/// Read a branch's newest state (under the prefix `path`); none is a fresh state. The single
/// object earlier Kilns wrote (`…/branch.json`) is read when there is nothing newer.
pub async fn load(store: &Store, path: &str) -> Result<BranchState, StateError> {
    let store_err = |source| StateError::Store {
        path: path.to_string(),
        source,
    };
    let found = store
        .retry(|| store.newest(path, ".json"))
        .await
        .map_err(store_err)?;
    let (at, bytes) = match found {
        Some(found) => found,
        None => {
            let legacy = format!("{}.json", path.trim_end_matches('/'));
            match store
                .retry(|| store.get(&legacy))
                .await
                .map_err(store_err)?
            {
                Some(b) => (legacy, b),
                None => return Ok(BranchState::default()),
            }
        }
    };
    serde_json::from_slice(&bytes).map_err(|source| StateError::Json { path: at, source })
}

/// Write a branch's state as a new object under the prefix `path`, then remove older ones
/// where the store allows (best effort: the newest is what is read).
pub async fn save(store: &Store, path: &str, state: &BranchState) -> Result<(), StateError> {
    let now = chrono::Utc::now();
    let mut state = state.clone();
    state.updated = Some(now.to_rfc3339());
    let object = format!(
        "{path}{}-{}.json",
        now.format("%Y%m%dT%H%M%S%.9fZ"),
        crate::cache::unique_suffix()
    );
    let json = serde_json::to_vec_pretty(&state).map_err(|source| StateError::Json {
        path: object.clone(),
        source,
    })?;
    store
        .put(&object, json)
        .await
        .map_err(|source| StateError::Store {
            path: object.clone(),
            source,
        })?;
    match store.list(path).await {
        Ok(entries) => {
            for e in entries.into_iter().filter(|e| e.path != object) {
                if let Err(err) = store.delete(&e.path).await {
                    tracing::debug!("cannot remove the old report state {}: {err}", e.path);
                }
            }
        }
        Err(e) => tracing::debug!("old report states are left to pruning: {e}"),
    }
    Ok(())
}

/// The test histories kept for `repository`'s `branch` in `store` (`kiln flaky`).
pub async fn flaky_histories(
    store: &Store,
    repository: &str,
    branch: &str,
) -> Result<super::flaky::Histories, StateError> {
    let path = state_path(repository, branch);
    Ok(load(store, &path).await?.tests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_differ_per_repo_and_branch_and_are_safe() {
        let a = state_path("octo/app", "main");
        let b = state_path("octo/app", "release/1.x");
        let c = state_path("other/app", "main");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("kiln-1-state/app-"), "{a}");
        assert!(b.ends_with("/release_1.x/"), "{b}");
        assert!(!b.contains(".."));
    }

    #[tokio::test]
    async fn the_single_object_of_earlier_versions_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_url(&format!("file://{}", dir.path().display())).unwrap();
        let path = state_path("octo/app", "main");
        let legacy = format!("{}.json", path.trim_end_matches('/'));
        store
            .put(&legacy, br#"{"last_green": "abc"}"#.to_vec())
            .await
            .unwrap();
        assert_eq!(
            load(&store, &path).await.unwrap().last_green.as_deref(),
            Some("abc")
        );
    }

    #[tokio::test]
    async fn round_trip_and_missing_is_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_url(&format!("file://{}", dir.path().display())).unwrap();
        let path = state_path("octo/app", "main");
        assert_eq!(load(&store, &path).await.unwrap(), BranchState::default());
        let s = BranchState {
            last_green: Some("a".repeat(40)),
            last_outcome: Some(Outcome::Passed),
            ..Default::default()
        };
        save(&store, &path, &s).await.unwrap();
        let back = load(&store, &path).await.unwrap();
        assert_eq!(back.last_green, s.last_green);
        assert!(back.updated.is_some());
        let failing = BranchState {
            failing_since: Some("b".repeat(40)),
            ..s.clone()
        };
        save(&store, &path, &failing).await.unwrap();
        assert_eq!(
            load(&store, &path).await.unwrap().failing_since,
            failing.failing_since
        );
        assert_eq!(
            store.list(&path).await.unwrap().len(),
            1,
            "the older state is removed"
        );

        store
            .put(
                &format!("{path}99999999T000000Z-x.json"),
                b"{not json".to_vec(),
            )
            .await
            .unwrap();
        let err = load(&store, &path).await.unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
    }
}

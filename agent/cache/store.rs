//! Storage by URL: one small interface, [`Store`], over every backend.
//!
//! `file:///path` is the embedded default (`~/.cache/kiln/store`). The store keeps the retry
//! budget and the health (down for a while, or unusable) around a [`StoreBackend`]
//! ([`super::backend`]): OpenDAL for every URL scheme it has, or the GitHub Actions cache
//! service. Callers only see `Store`.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use super::backend::{BackendError, ByteStream, Entry, Upload};
use super::backend::{Found, StoreBackend};
use super::dal::DalBackend;
use super::gha::GhaCache;
pub use crate::settings::{default_store_dir, default_store_url, RetryPolicy};
use crate::settings::{Env, StoreSettings, StoreTuning};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL {url}: {message}")]
    BadUrl { url: String, message: String },
    #[error("store {store}: {op} {path}: {source}")]
    Backend {
        store: String,
        op: &'static str,
        path: String,
        #[source]
        source: BackendError,
    },
    #[error("store {store} is not answering ({reason}); not trying it again for {}s", COOL_DOWN.as_secs())]
    Down { store: String, reason: String },
    #[error("store {store} cannot be used: {reason}")]
    Unusable { store: String, reason: String },
}

impl StoreError {
    /// The backend cannot do this at all (listing on `gha`).
    pub fn is_unsupported(&self) -> bool {
        match self {
            StoreError::Backend { source, .. } => source.unsupported,
            StoreError::BadUrl { .. } | StoreError::Down { .. } | StoreError::Unusable { .. } => {
                false
            }
        }
    }

    /// Worth retrying: the store may answer next time.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Backend { source, .. } => source.transient,
            StoreError::BadUrl { .. } | StoreError::Down { .. } | StoreError::Unusable { .. } => {
                false
            }
        }
    }
}

/// After an operation gives up on a transient fault, the store is treated as down for this
/// long: later operations fail at once instead of each waiting out its own timeout.
const COOL_DOWN: Duration = Duration::from_secs(60);

/// Whether the store failed recently (shared by every clone of a [`Store`]), or could not be
/// opened at all (`unusable`).
#[derive(Debug, Default)]
struct Health {
    down: Mutex<Option<(Instant, String)>>,
    unusable: Option<String>,
}

impl Health {
    /// The reason the store is down, while the cool-down lasts.
    fn down(&self) -> Option<String> {
        let guard = self.down.lock().ok()?;
        let (since, reason) = guard.as_ref()?;
        (since.elapsed() < COOL_DOWN).then(|| reason.clone())
    }
    fn trip(&self, reason: String) {
        if let Ok(mut g) = self.down.lock() {
            *g = Some((Instant::now(), reason));
        }
    }
    fn reset(&self) {
        if let Ok(mut g) = self.down.lock() {
            *g = None;
        }
    }
}

/// A configured storage backend.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Arc<dyn StoreBackend>,
    /// The URL with any credentials removed: safe to log.
    display: String,
    tuning: StoreTuning,
    health: Arc<Health>,
}

impl Store {
    /// Open the store a URL names, with the tuning and credentials resolved at start.
    pub fn open(url: &str, settings: &StoreSettings) -> Result<Store, StoreError> {
        Store::open_with(url, settings.tuning, &|k| settings.credentials.get(k))
    }

    /// [`Store::open`] with settings read from the process environment now (tools and tests;
    /// commands open stores with the settings they resolved at start).
    pub fn from_url(url: &str) -> Result<Store, StoreError> {
        Store::open(url, &StoreSettings::from_process_env())
    }

    /// [`Store::open`] with tuning and credentials read from `env` (tests; several stores with
    /// different settings in one process).
    pub fn from_url_with_env(url: &str, env: Env) -> Result<Store, StoreError> {
        Store::open_with(url, StoreTuning::from_env(env), env)
    }

    /// Open with `tuning`, the backend taking its credentials from `env`. A new kind of store
    /// is one more arm here.
    fn open_with(url: &str, tuning: StoreTuning, env: Env) -> Result<Store, StoreError> {
        let bad = |message: &str| StoreError::BadUrl {
            url: redact(url),
            message: message.to_string(),
        };
        let (backend, display): (Arc<dyn StoreBackend>, String) =
            if let Some(path) = url.strip_prefix("file://") {
                if !path.starts_with('/') {
                    return Err(bad("file:// URLs need an absolute path (file:///srv/kiln)"));
                }
                let dal = DalBackend::file(path).map_err(|e| bad(&e.to_string()))?;
                (Arc::new(dal), url.to_string())
            } else if url.starts_with('/') {
                return Store::open_with(&format!("file://{url}"), tuning, env);
            } else if url == "gha" || url.starts_with("gha://") {
                let gha = GhaCache::from_env(env, &tuning).map_err(|m| bad(&m))?;
                (Arc::new(gha), url.to_string())
            } else {
                let op = super::backends::remote_operator(url, env, tuning.retry.timeout)
                    .map_err(|m| bad(&m))?;
                (Arc::new(DalBackend::remote(op)), redact(url))
            };
        Ok(Store {
            backend,
            display,
            tuning,
            health: Arc::default(),
        })
    }

    /// A store that could not be opened (`error` from [`Store::open`]): every operation
    /// fails at once, so a run goes on uncached exactly as with a store that is down.
    pub fn unusable(
        url: &str,
        error: &StoreError,
        settings: &StoreSettings,
    ) -> Result<Store, StoreError> {
        // Never used (every operation is refused first); any backend will do.
        let op =
            opendal::Operator::new(opendal::services::Fs::default().root("/")).map_err(|e| {
                StoreError::BadUrl {
                    url: redact(url),
                    message: e.to_string(),
                }
            })?;
        Ok(Store {
            backend: Arc::new(DalBackend::remote(op)),
            display: redact(url),
            tuning: settings.tuning,
            health: Arc::new(Health {
                down: Mutex::default(),
                unusable: Some(error.to_string()),
            }),
        })
    }

    /// How this store retries transient failures.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.tuning.retry
    }

    /// How transfers to and from this store show progress and unpack.
    pub fn transfer(&self) -> crate::settings::machine::TransferSettings {
        self.tuning.transfer
    }

    /// The URL without credentials.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Whether an existing object can be written again (not on the GitHub Actions cache).
    pub fn overwrites(&self) -> bool {
        self.backend.overwrites()
    }

    /// What to call the service in messages ("store", "GitHub cache").
    pub fn service(&self) -> &'static str {
        self.backend.service()
    }

    /// The root directory of a `file://` store.
    pub fn local_root(&self) -> Option<&Path> {
        self.backend.local_root()
    }

    fn err(&self, op: &'static str, path: &str) -> impl FnOnce(BackendError) -> StoreError {
        let (store, path) = (self.display.clone(), path.to_string());
        move |source| StoreError::Backend {
            store,
            op: source.op.unwrap_or(op),
            path,
            source,
        }
    }

    /// The service's own lookup (see [`StoreBackend::find_newest`]): `None` when it has none
    /// and the caller lists instead; else the matched object and its bytes, the lookup's error
    /// as a `lookup` error and the read's as a `read` error.
    pub async fn find_newest(
        &self,
        exact: &str,
        prefixes: &[String],
        sample: &str,
    ) -> Option<Result<Option<(String, Result<Vec<u8>, StoreError>)>, StoreError>> {
        if let Err(e) = self.guard() {
            return Some(Err(e));
        }
        let found = self.backend.find_newest(exact, prefixes, sample).await?;
        Some(match found {
            Ok(Some(Found { path, body })) => {
                let body = body.map_err(self.err("read", &path));
                Ok(Some((path, body)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(self.err("lookup", exact)(e)),
        })
    }

    /// The newest object whose path starts with `prefix` and ends with `suffix`, with its bytes:
    /// the service's own prefix lookup where it has one, a listing elsewhere (newest by
    /// modification time, then by name).
    pub async fn newest(
        &self,
        prefix: &str,
        suffix: &str,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let sample = format!("{prefix}{suffix}");
        if let Some(found) = self
            .find_newest(prefix, &[prefix.to_string()], &sample)
            .await
        {
            return match found? {
                Some((path, body)) if path.ends_with(suffix) => Ok(Some((path, body?))),
                _ => Ok(None),
            };
        }
        let newest = self
            .list(prefix)
            .await?
            .into_iter()
            .filter(|e| e.path.ends_with(suffix))
            .max_by(|a, b| {
                a.modified
                    .cmp(&b.modified)
                    .then_with(|| a.path.cmp(&b.path))
            });
        match newest {
            Some(e) => Ok(self.get(&e.path).await?.map(|b| (e.path, b))),
            None => Ok(None),
        }
    }

    /// Run a store operation, retrying transient failures (connection refused, timeouts, 5xx)
    /// with exponential backoff, within one budget: at most `KILN_STORE_RETRIES` attempts, and
    /// none started after [`RetryPolicy::timeout`] has passed. An operation that gives up on a
    /// transient fault marks the store down for a while ([`StoreError::Down`]), so the rest of
    /// the run skips it instead of waiting again. `NotFound` and permission errors are returned
    /// at once.
    pub async fn retry<T, F, Fut>(&self, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let started = Instant::now();
        let budget = self.tuning.retry.timeout;
        let mut delay = self.tuning.retry.base_delay;
        let attempts = self.tuning.retry.attempts;
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => {
                    self.health.reset();
                    return Ok(v);
                }
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) if attempt < attempts && started.elapsed() + delay < budget => {
                    tracing::debug!(store = %self.display, attempt, error = %e, "store operation failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => {
                    self.health.trip(short_reason(&e));
                    return Err(e);
                }
            }
        }
    }

    /// Refuse at once while the store is marked down.
    fn guard(&self) -> Result<(), StoreError> {
        if let Some(reason) = &self.health.unusable {
            return Err(StoreError::Unusable {
                store: self.display.clone(),
                reason: reason.clone(),
            });
        }
        match self.health.down() {
            Some(reason) => Err(StoreError::Down {
                store: self.display.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Size of an object; `None` when it does not exist.
    pub async fn size(&self, path: &str) -> Result<Option<u64>, StoreError> {
        self.guard()?;
        self.backend
            .size(path)
            .await
            .map_err(self.err("stat", path))
    }

    /// Stream an object's bytes in large chunks, fetched concurrently where the backend allows.
    pub async fn read_stream(&self, path: &str) -> Result<ByteStream, StoreError> {
        self.guard()?;
        let read = self.backend.read_stream(path).await;
        read.map_err(self.err("read", path))
    }

    /// Stream a byte range of an object with sequential reads (an HTTP range request).
    pub async fn read_range(
        &self,
        path: &str,
        range: std::ops::Range<u64>,
    ) -> Result<ByteStream, StoreError> {
        self.guard()?;
        let read = self.backend.read_range(path, range).await;
        read.map_err(self.err("read", path))
    }

    /// Upload a local file as object `path` (never whole in memory), calling `progress` with the
    /// bytes sent so far.
    pub async fn upload_file(
        &self,
        path: &str,
        local: &Path,
        how: Upload,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, StoreError> {
        self.guard()?;
        let sent = self.backend.upload_file(path, local, how, progress).await;
        sent.map_err(self.err("write", path))
    }

    /// Read a whole (small) object; `None` when it does not exist.
    pub async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.guard()?;
        let got = self.backend.get(path, self.tuning.retry.timeout).await;
        got.map_err(self.err("read", path))
    }

    /// Write a whole (small) object.
    pub async fn put(&self, path: &str, data: Vec<u8>) -> Result<(), StoreError> {
        self.guard()?;
        self.backend
            .put(path, data)
            .await
            .map_err(self.err("write", path))
    }

    pub async fn delete(&self, path: &str) -> Result<(), StoreError> {
        self.guard()?;
        let deleted = self.backend.delete(path).await;
        deleted.map_err(self.err("delete", path))
    }

    /// Objects whose path starts with `prefix` (recursively).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        self.guard()?;
        self.backend
            .list(prefix)
            .await
            .map_err(self.err("list", prefix))
    }
}

/// The gist of a store error for [`StoreError::Down`]: its innermost message, shortened.
fn short_reason(e: &StoreError) -> String {
    let text = match e {
        StoreError::Backend { source, .. } => source.to_string(),
        other => other.to_string(),
    };
    text.chars().take(120).collect()
}

/// Remove `user:password@` from a URL so it can be logged, whether it parses or not.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => redact_text(url),
    }
}

/// [`redact`] for text that is not a valid URL: everything between `://` and the last `@`
/// before any `?` or `#` goes (a path holding an `@` is cut too: better too much than a
/// password).
fn redact_text(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[start..];
    let head = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    match head.rfind('@') {
        Some(at) => format!("{}{}", &url[..start], &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream::StreamExt;

    #[tokio::test]
    async fn file_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_url(&format!("file://{}", dir.path().display())).unwrap();
        assert_eq!(store.get("state/x.json").await.unwrap(), None);
        store.put("state/x.json", b"{}".to_vec()).await.unwrap();
        assert_eq!(
            store.get("state/x.json").await.unwrap(),
            Some(b"{}".to_vec())
        );
        let listed = store.list("state/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].path, "state/x.json");
        // Reads stay inside the store's directory.
        assert!(store.get("../outside.json").await.is_err());
        assert!(store.get("state/../state/x.json").await.is_err());
        assert!(store.get("state//x.json").await.is_err());
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact("webdav+https://bob:hunter2@dav.example/kiln"),
            "webdav+https://dav.example/kiln"
        );
        assert_eq!(
            redact("s3://bob:hunter2 x@bad host/p?region=x"),
            "s3://bad host/p?region=x"
        );
        assert_eq!(
            redact("webdav+https://u:p@w@[::1/x"),
            "webdav+https://[::1/x"
        );
        assert_eq!(redact("not a url"), "not a url");
        assert!(Store::from_url("ftp://x")
            .unwrap_err()
            .to_string()
            .contains("unsupported"));
    }

    #[test]
    fn retry_policy_comes_from_the_environment_the_store_is_opened_with() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let env = |k: &str| match k {
            "KILN_STORE_RETRIES" => Some("7".to_string()),
            "KILN_STORE_RETRY_DELAY_MS" => Some("20".to_string()),
            "KILN_STORE_TIMEOUT" => Some("9".to_string()),
            _ => None,
        };
        let tuned = Store::from_url_with_env(&url, &env).unwrap();
        assert_eq!(
            tuned.retry_policy(),
            RetryPolicy {
                attempts: 7,
                base_delay: Duration::from_millis(20),
                timeout: Duration::from_secs(9),
            }
        );
        let too_many = |k: &str| (k == "KILN_STORE_RETRIES").then(|| "99".to_string());
        let clamped = Store::from_url_with_env(&url, &too_many).unwrap();
        assert_eq!(clamped.retry_policy().attempts, 10);
        let defaults = Store::from_url_with_env(&url, &|_| None).unwrap();
        assert_eq!(
            defaults.retry_policy(),
            RetryPolicy {
                attempts: 3,
                base_delay: Duration::from_millis(500),
                timeout: Duration::from_secs(5),
            }
        );
    }

    #[tokio::test]
    async fn sequential_upload_then_ranged_and_whole_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_url(&format!("file://{}", dir.path().join("s").display())).unwrap();
        let local = dir.path().join("big.bin");
        // Over one write buffer, so the upload takes several writes.
        let body: Vec<u8> = (0..(3 << 20) + 5).map(|i| (i % 251) as u8).collect();
        std::fs::write(&local, &body).unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        let sent = store
            .upload_file("wheels/a/big.bin", &local, Upload::Sequential, &|n| {
                seen.lock().unwrap().push(n)
            })
            .await
            .unwrap();
        assert_eq!(sent, body.len() as u64);
        assert_eq!(seen.into_inner().unwrap().last(), Some(&sent));

        let collect = |s: ByteStream| async move {
            let parts: Vec<_> = s.collect().await;
            parts
                .into_iter()
                .flat_map(|p| p.unwrap().to_vec())
                .collect::<Vec<u8>>()
        };
        let range = store.read_range("wheels/a/big.bin", 10..1_000_010).await;
        assert_eq!(collect(range.unwrap()).await, body[10..1_000_010]);
        let whole = store.read_stream("wheels/a/big.bin").await.unwrap();
        assert_eq!(collect(whole).await, body);
        let missing = match store.read_range("wheels/a/nothing", 0..1).await {
            Err(_) => true,
            Ok(s) => s.collect::<Vec<_>>().await.iter().any(|p| p.is_err()),
        };
        assert!(missing, "reading a missing object fails");
    }
}

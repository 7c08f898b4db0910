//! Storage by URL, through Apache OpenDAL: one small interface over every backend.
//!
//! `file:///path` is the embedded default (`~/.cache/kiln/store`). Other schemes are added here;
//! callers only see `Store`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{BoxStream, StreamExt};
use opendal::{ErrorKind, Operator};

use super::gha::{GhaCache, GhaError};
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
        source: Box<opendal::Error>,
    },
    #[error("store {store}: {op} {path}: {source}")]
    Gha {
        store: String,
        op: &'static str,
        path: String,
        #[source]
        source: Box<GhaError>,
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
            StoreError::Backend { source, .. } => source.kind() == ErrorKind::Unsupported,
            StoreError::Gha { source, .. } => source.is_unsupported(),
            StoreError::BadUrl { .. } | StoreError::Down { .. } | StoreError::Unusable { .. } => {
                false
            }
        }
    }

    /// Worth retrying: the store may answer next time.
    pub fn is_transient(&self) -> bool {
        match self {
            // The gha client retries each request itself (a reserved key cannot be reserved
            // again by retrying a whole save).
            StoreError::BadUrl { .. }
            | StoreError::Down { .. }
            | StoreError::Unusable { .. }
            | StoreError::Gha { .. } => false,
            StoreError::Backend { source, .. } => !matches!(
                source.kind(),
                ErrorKind::NotFound
                    | ErrorKind::PermissionDenied
                    | ErrorKind::ConfigInvalid
                    | ErrorKind::Unsupported
                    | ErrorKind::ConditionNotMatch
                    | ErrorKind::AlreadyExists
                    | ErrorKind::IsADirectory
                    | ErrorKind::NotADirectory
            ),
        }
    }
}

pub use crate::settings::RetryPolicy;

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

/// An object's bytes as they arrive from the store.
pub type ByteStream = BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// A stream that ends after its first error. OpenDAL 0.59's byte streams repeat the error for
/// ever (a missing object yields `NotFound` on every poll), which would spin any reader that
/// skips errors.
fn ends_at_first_error(
    s: impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
) -> ByteStream {
    let mut failed = false;
    s.take_while(move |item| {
        let go = !failed;
        failed |= item.is_err();
        std::future::ready(go)
    })
    .boxed()
}

/// How [`Store::upload_file`] sends a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upload {
    /// 16 MiB parts, four in flight (cache archives: large, worth the parallelism).
    Concurrent,
    /// One write after another (wheels): needs no executor on the operator, any backend.
    Sequential,
}

/// One listed object.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a store talks to: an OpenDAL operator, or the GitHub Actions cache service.
#[derive(Clone, Debug)]
enum Backend {
    Dal(Operator),
    Gha(std::sync::Arc<GhaCache>),
}

/// A configured storage backend.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// The URL with any credentials removed: safe to log.
    display: String,
    /// For `file://` stores: the root directory, so archives can be written in place and
    /// renamed (no copy) and read without going through the async layer.
    local_root: Option<PathBuf>,
    tuning: StoreTuning,
    health: Arc<Health>,
}

/// `~/.cache/kiln/store` (or `$XDG_CACHE_HOME/kiln/store`).
pub fn default_store_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("kiln").join("store")
}

/// The default store URL.
pub fn default_store_url() -> String {
    format!("file://{}", default_store_dir().display())
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

    /// Open with `tuning`, the backend taking its credentials from `env`.
    fn open_with(url: &str, tuning: StoreTuning, env: Env) -> Result<Store, StoreError> {
        let bad = |message: &str| StoreError::BadUrl {
            url: redact(url),
            message: message.to_string(),
        };
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("file:// URLs need an absolute path (file:///srv/kiln)"));
            }
            // Writes go to a temporary file renamed into place, so a reader never sees half
            // a manifest and two writers never interleave.
            let tmp = format!("{}/.kiln-tmp", path.trim_end_matches('/'));
            let builder = opendal::services::Fs::default()
                .root(path)
                .atomic_write_dir(&tmp);
            let op = Operator::new(builder).map_err(|e| bad(&e.to_string()))?;
            return Ok(Store {
                backend: Backend::Dal(op),
                display: url.to_string(),
                local_root: Some(PathBuf::from(path)),
                tuning,
                health: Arc::default(),
            });
        }
        if url.starts_with('/') {
            return Store::open_with(&format!("file://{url}"), tuning, env);
        }
        if url == "gha" || url.starts_with("gha://") {
            let gha = GhaCache::from_env(env, &tuning).map_err(|m| bad(&m))?;
            return Ok(Store {
                backend: Backend::Gha(Arc::new(gha)),
                display: url.to_string(),
                local_root: None,
                tuning,
                health: Arc::default(),
            });
        }
        let op = super::backends::remote_operator(url, env, tuning.retry.timeout)
            .map_err(|m| bad(&m))?;
        Ok(Store {
            backend: Backend::Dal(op),
            display: redact(url),
            local_root: None,
            tuning,
            health: Arc::default(),
        })
    }

    /// A store that could not be opened (`error` from [`Store::from_url`]): every operation
    /// fails at once, so a run goes on uncached exactly as with a store that is down.
    pub fn unusable(
        url: &str,
        error: &StoreError,
        settings: &StoreSettings,
    ) -> Result<Store, StoreError> {
        // Never used (every operation is refused first); any operator will do.
        let op = Operator::new(opendal::services::Fs::default().root("/")).map_err(|e| {
            StoreError::BadUrl {
                url: redact(url),
                message: e.to_string(),
            }
        })?;
        Ok(Store {
            backend: Backend::Dal(op),
            display: redact(url),
            local_root: None,
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

    /// The GitHub Actions cache service, for `gha`.
    pub fn gha(&self) -> Option<&GhaCache> {
        match &self.backend {
            Backend::Gha(g) => Some(g),
            Backend::Dal(_) => None,
        }
    }

    /// The OpenDAL operator, for operations the GitHub cache does not have (ranged reads).
    fn dal(&self, op: &'static str, path: &str) -> Result<&Operator, StoreError> {
        match &self.backend {
            Backend::Dal(o) => Ok(o),
            Backend::Gha(_) => Err(self.gha_err(
                op,
                path,
                GhaError::Unsupported("the GitHub Actions cache has no ranged reads".into()),
            )),
        }
    }

    fn gha_err(&self, op: &'static str, path: &str, source: GhaError) -> StoreError {
        StoreError::Gha {
            store: self.display.clone(),
            op,
            path: path.to_string(),
            source: Box::new(source),
        }
    }

    /// The newest object whose path starts with `prefix` and ends with `suffix`, with its bytes:
    /// the service's own prefix lookup on `gha`, a listing elsewhere (newest by modification
    /// time, then by name).
    pub async fn newest(
        &self,
        prefix: &str,
        suffix: &str,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        if let Backend::Gha(g) = &self.backend {
            let sample = format!("{prefix}{suffix}");
            let found = g
                .find(prefix, &[prefix.to_string()], &sample)
                .await
                .map_err(|e| self.gha_err("lookup", prefix, e))?;
            return match found {
                Some(f) if f.key.ends_with(suffix) => {
                    let bytes = g
                        .fetch(&f)
                        .await
                        .map_err(|e| self.gha_err("read", &f.key, e))?;
                    Ok(Some((f.key, bytes)))
                }
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

    /// The root directory of a `file://` store.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
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
        let op = match &self.backend {
            Backend::Gha(g) => {
                return g
                    .size(path)
                    .await
                    .map_err(|e| self.gha_err("stat", path, e))
            }
            Backend::Dal(op) => op,
        };
        match op.stat(path).await {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("stat", path, e)),
        }
    }

    /// Stream an object's bytes in large chunks, fetched concurrently where the backend allows.
    pub async fn read_stream(&self, path: &str) -> Result<ByteStream, StoreError> {
        self.guard()?;
        let op = match &self.backend {
            Backend::Gha(g) => {
                return g
                    .read_stream(path)
                    .await
                    .map_err(|e| self.gha_err("read", path, e))
            }
            Backend::Dal(op) => op,
        };
        let reader = op
            .reader_with(path)
            .chunk(8 << 20)
            .concurrent(4)
            .await
            .map_err(|e| self.err("read", path, e))?;
        let stream = reader
            .into_bytes_stream(..)
            .await
            .map_err(|e| self.err("read", path, e))?;
        Ok(ends_at_first_error(stream))
    }

    /// Stream a byte range of an object with sequential reads (an HTTP range request).
    pub async fn read_range(
        &self,
        path: &str,
        range: std::ops::Range<u64>,
    ) -> Result<ByteStream, StoreError> {
        self.guard()?;
        let reader = self
            .dal("read", path)?
            .reader(path)
            .await
            .map_err(|e| self.err("read", path, e))?;
        let stream = reader
            .into_bytes_stream(range)
            .await
            .map_err(|e| self.err("read", path, e))?;
        Ok(ends_at_first_error(stream))
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
        use tokio::io::AsyncReadExt;
        let op = match &self.backend {
            Backend::Gha(g) => {
                return g
                    .upload_file(path, local, progress)
                    .await
                    .map_err(|e| self.gha_err("write", path, e))
            }
            Backend::Dal(op) => op,
        };
        let io_err = |e: std::io::Error| {
            self.err(
                "upload",
                path,
                opendal::Error::new(ErrorKind::Unexpected, "reading the local archive")
                    .set_source(e),
            )
        };
        let mut file = tokio::fs::File::open(local).await.map_err(io_err)?;
        let (writer, buf_size) = match how {
            Upload::Concurrent => (
                op.writer_with(path).chunk(16 << 20).concurrent(4).await,
                8 << 20,
            ),
            Upload::Sequential => (op.writer(path).await, 1 << 20),
        };
        let mut writer = writer.map_err(|e| self.err("write", path, e))?;
        let mut sent = 0u64;
        loop {
            let mut buf = vec![0u8; buf_size];
            let mut filled = 0;
            while filled < buf.len() {
                let n = file.read(&mut buf[filled..]).await.map_err(io_err)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            if let Err(e) = writer.write(buf).await {
                let _ = writer.abort().await;
                return Err(self.err("write", path, e));
            }
            sent += filled as u64;
            progress(sent);
        }
        if let Err(e) = writer.close().await {
            let _ = writer.abort().await;
            return Err(self.err("write", path, e));
        }
        Ok(sent)
    }

    fn err(&self, op: &'static str, path: &str, source: opendal::Error) -> StoreError {
        StoreError::Backend {
            store: self.display.clone(),
            op,
            path: path.to_string(),
            source: Box::new(source),
        }
    }

    /// Read a whole (small) object; `None` when it does not exist.
    pub async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.guard()?;
        if let Some(root) = &self.local_root {
            return self.get_local(root, path);
        }
        let op = match &self.backend {
            Backend::Gha(g) => return g.get(path).await.map_err(|e| self.gha_err("read", path, e)),
            Backend::Dal(op) => op,
        };
        // A small object: the whole read within the store timeout (the timeout layer only
        // bounds each chunk of it, three times longer, which suits large transfers).
        let limit = self.tuning.retry.timeout;
        let read = match tokio::time::timeout(limit, op.read(path)).await {
            Ok(r) => r,
            Err(_) => Err(opendal::Error::new(
                ErrorKind::Unexpected,
                format!("no answer within {}s", limit.as_secs()),
            )
            .set_temporary()),
        };
        match read {
            Ok(buf) => Ok(Some(buf.to_vec())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("read", path, e)),
        }
    }

    /// Write a whole (small) object.
    pub async fn put(&self, path: &str, data: Vec<u8>) -> Result<(), StoreError> {
        self.guard()?;
        if let Some(root) = &self.local_root {
            return self.put_local(root, path, &data);
        }
        let op = match &self.backend {
            Backend::Gha(g) => {
                return g
                    .put(path, data)
                    .await
                    .map_err(|e| self.gha_err("write", path, e))
            }
            Backend::Dal(op) => op,
        };
        op.write(path, data)
            .await
            .map(|_| ())
            .map_err(|e| self.err("write", path, e))
    }

    /// The file of object `path` in the file store at `root`. Object paths are made of plain
    /// names: `..` or an empty component could reach outside the store.
    fn local_file(&self, op: &'static str, root: &Path, path: &str) -> Result<PathBuf, StoreError> {
        if path.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(self.err(
                op,
                path,
                opendal::Error::new(ErrorKind::ConfigInvalid, "invalid object path"),
            ));
        }
        Ok(root.join(path))
    }

    /// A whole (small) object of a `file://` store, read directly: OpenDAL's file reader fills
    /// a zeroed buffer of its chunk size for every read, which cost a warm run a thousand page
    /// faults for a few manifests of a few hundred bytes.
    fn get_local(&self, root: &Path, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.local_file("read", root, path)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(
                "read",
                path,
                opendal::Error::new(ErrorKind::Unexpected, "reading from the file store")
                    .set_source(e),
            )),
        }
    }

    /// File stores: temp file + rename (atomic, like OpenDAL's atomic write) but without the
    /// fsync OpenDAL does, which on ext4 also flushes the just-written archive and costs more
    /// than the whole save. A crash can at worst leave a manifest whose archive fails its hash
    /// check: a miss, never a wrong restore.
    fn put_local(&self, root: &Path, path: &str, data: &[u8]) -> Result<(), StoreError> {
        let io = |e: std::io::Error| {
            self.err(
                "write",
                path,
                opendal::Error::new(ErrorKind::Unexpected, "writing to the file store")
                    .set_source(e),
            )
        };
        let dest = self.local_file("write", root, path)?;
        let tmp_dir = root.join(".kiln-tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(io)?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = tmp_dir.join(format!(
            "put-{}-{n}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::write(&tmp, data).map_err(io)?;
        std::fs::rename(&tmp, &dest).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    pub async fn delete(&self, path: &str) -> Result<(), StoreError> {
        self.guard()?;
        let op = match &self.backend {
            Backend::Gha(g) => {
                return g
                    .delete(path)
                    .await
                    .map_err(|e| self.gha_err("delete", path, e))
            }
            Backend::Dal(op) => op,
        };
        op.delete(path)
            .await
            .map_err(|e| self.err("delete", path, e))
    }

    /// Objects whose path starts with `prefix` (recursively).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        self.guard()?;
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        let op = match &self.backend {
            Backend::Gha(g) => {
                return g
                    .list(prefix)
                    .await
                    .map_err(|e| self.gha_err("list", prefix, e))
            }
            Backend::Dal(op) => op,
        };
        let entries = match op.list_with(dir).recursive(true).await {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", prefix, e)),
        };
        let mut out = Vec::new();
        for e in entries {
            if e.metadata().is_dir() || !e.path().starts_with(prefix) {
                continue;
            }
            let mut entry = Entry {
                path: e.path().to_string(),
                size: e.metadata().content_length(),
                modified: e.metadata().last_modified().and_then(|t| {
                    let t = t.into_inner();
                    chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond() as u32)
                }),
            };
            // The fs lister returns names only; a local stat is cheap.
            if let (Some(root), None) = (&self.local_root, entry.modified) {
                if let Ok(m) = std::fs::metadata(root.join(&entry.path)) {
                    entry.size = m.len();
                    entry.modified = m.modified().ok().map(chrono::DateTime::<chrono::Utc>::from);
                }
            }
            out.push(entry);
        }
        Ok(out)
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

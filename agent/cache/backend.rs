//! The store seam: what [`super::Store`] asks of the service it talks to.
//!
//! A backend moves objects (paths of plain names) and answers listings; the [`super::Store`]
//! around it keeps the retry budget, the health (down / unusable) and the URL safe to log.
//! Two backends exist: OpenDAL ([`super::dal`], every URL scheme OpenDAL has: file, S3, WebDAV,
//! Azure Blob, GCS) and the GitHub Actions cache service ([`super::gha`]). A new kind of store is
//! one more implementation of [`StoreBackend`] and one more arm in `Store::open_with`.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

/// An object's bytes as they arrive from the store.
pub type ByteStream = BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// How [`StoreBackend::upload_file`] sends a file.
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

/// A backend's failure, with what the store needs to know to handle it: whether trying again
/// may help, and whether the backend cannot do this at all. Displays as its cause.
#[derive(Debug)]
pub struct BackendError {
    /// Worth retrying: the service may answer next time.
    pub transient: bool,
    /// The backend cannot do this operation at all (listing on `gha`).
    pub unsupported: bool,
    /// What failed, when it is not the operation asked for (`upload`: reading the local file).
    pub op: Option<&'static str>,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl BackendError {
    pub fn new(
        source: impl std::error::Error + Send + Sync + 'static,
        transient: bool,
        unsupported: bool,
    ) -> BackendError {
        BackendError {
            transient,
            unsupported,
            op: None,
            source: Box::new(source),
        }
    }

    /// The error of step `op` of the operation.
    pub fn in_step(mut self, op: &'static str) -> BackendError {
        self.op = Some(op);
        self
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

/// What a backend's own lookup found: the matched object and its bytes (or why they could not
/// be read).
#[derive(Debug)]
pub struct Found {
    pub path: String,
    pub body: Result<Vec<u8>, BackendError>,
}

/// A service a [`super::Store`] keeps objects in.
#[async_trait]
pub trait StoreBackend: Send + Sync + std::fmt::Debug {
    /// Size of an object; `None` when it does not exist.
    async fn size(&self, path: &str) -> Result<Option<u64>, BackendError>;

    /// Stream an object's bytes in large chunks, fetched concurrently where the service allows.
    async fn read_stream(&self, path: &str) -> Result<ByteStream, BackendError>;

    /// Stream a byte range of an object with sequential reads.
    async fn read_range(
        &self,
        path: &str,
        range: std::ops::Range<u64>,
    ) -> Result<ByteStream, BackendError>;

    /// Upload a local file as object `path` (never whole in memory), calling `progress` with the
    /// bytes sent so far.
    async fn upload_file(
        &self,
        path: &str,
        local: &Path,
        how: Upload,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, BackendError>;

    /// Read a whole (small) object within `timeout`; `None` when it does not exist.
    async fn get(&self, path: &str, timeout: Duration) -> Result<Option<Vec<u8>>, BackendError>;

    /// Write a whole (small) object.
    async fn put(&self, path: &str, data: Vec<u8>) -> Result<(), BackendError>;

    async fn delete(&self, path: &str) -> Result<(), BackendError>;

    /// Objects whose path starts with `prefix` (recursively).
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, BackendError>;

    /// The service's own lookup: object `exact` if it exists, else the newest object under the
    /// first of `prefixes` that has one (`sample`: an object name of the kind looked for).
    /// `None`: the service has no such lookup, and the store lists instead.
    async fn find_newest(
        &self,
        _exact: &str,
        _prefixes: &[String],
        _sample: &str,
    ) -> Option<Result<Option<Found>, BackendError>> {
        None
    }

    /// Whether an existing object can be written again (not on the GitHub Actions cache, whose
    /// entries are immutable).
    fn overwrites(&self) -> bool {
        true
    }

    /// What to call the service in messages, e.g. "GitHub cache".
    fn service(&self) -> &'static str {
        "store"
    }

    /// The root directory of a local (`file://`) store: archives are written in place there.
    fn local_root(&self) -> Option<&Path> {
        None
    }
}

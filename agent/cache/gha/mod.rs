//! The `gha` store: the GitHub Actions cache service (v2), spoken directly.
//!
//! - Lookups, reservations and commits are Twirp JSON calls under `ACTIONS_RESULTS_URL` with
//!   the job's `ACTIONS_RUNTIME_TOKEN` ([`twirp`]).
//! - Bytes go to and come from signed Azure blob URLs the service hands out ([`blob`]).
//! - Keys are immutable once committed; a lookup matches the exact key, then key prefixes
//!   (newest first), at most 10 keys per lookup, within one version ([`keys`]).
//! - Listing and deleting are not part of that protocol: they use the REST API
//!   (`/repos/{owner}/{repo}/actions/caches`) with `GITHUB_TOKEN` when it is set ([`rest`]).
//!
//! Every failure is a [`GhaError`] naming the call and the service's reason; a save the
//! service refuses or does not commit is an error, never a silent success. Transient failures
//! are retried here, per request (`KILN_STORE_RETRIES`, `KILN_STORE_RETRY_DELAY_MS`): a whole
//! save cannot be simply tried again, since its key is reserved by the first attempt.

pub mod blob;
pub mod keys;
mod rest;
mod store_backend;
pub mod twirp;

use bytes::Bytes;

use super::backend::Entry;
use blob::{BlobSettings, Source};
use twirp::Twirp;

use crate::settings::StoreTuning;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What went wrong talking to the cache service.
#[derive(Debug, thiserror::Error)]
pub enum GhaError {
    #[error("{0}")]
    Config(String),
    #[error("{call}: {message}")]
    Http { call: &'static str, message: String },
    #[error("{call} answered HTTP {status}{}", twirp_detail(code, message))]
    Service {
        call: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{call} refused {key}: {message}")]
    Refused {
        call: &'static str,
        key: String,
        message: String,
    },
    #[error("blob {op} failed{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Blob {
        op: &'static str,
        status: Option<u16>,
        message: String,
    },
    #[error("{0}")]
    Local(String),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0}")]
    Unsupported(String),
}

fn twirp_detail(code: &str, message: &str) -> String {
    match (code.is_empty(), message.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(" ({code})"),
        (true, false) => format!(": {message}"),
        (false, false) => format!(" ({code}): {message}"),
    }
}

impl GhaError {
    fn http(call: &'static str, e: reqwest::Error) -> GhaError {
        GhaError::Http {
            call,
            message: error_chain(&e),
        }
    }

    /// Worth trying again: the network, rate limits and 5xx answers.
    pub fn is_transient(&self) -> bool {
        let retryable = |s: u16| s == 429 || s >= 500;
        match self {
            GhaError::Http { .. } => true,
            GhaError::Service { status, .. } => retryable(*status),
            GhaError::Blob { status, .. } => status.is_none_or(retryable),
            _ => false,
        }
    }

    pub fn is_unsupported(&self) -> bool {
        matches!(self, GhaError::Unsupported(_))
    }
}

/// An error with its causes, `a: b: c` (reqwest hides the interesting part in the sources).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// An entry a lookup found: its key and where to download it.
#[derive(Debug, Clone)]
pub struct Found {
    pub key: String,
    url: String,
}

/// The cache service for this job.
#[derive(Debug, Clone)]
pub struct GhaCache {
    twirp: Twirp,
    blob: BlobSettings,
    rest: Option<rest::Rest>,
}

impl GhaCache {
    /// Configure from the job's environment (through [`crate::ci::CacheService`]). Errors
    /// name the missing variable.
    pub fn from_env(env: Env, tuning: &StoreTuning) -> Result<GhaCache, String> {
        let svc = crate::ci::CacheService::from_env(env)?;
        let base = svc.results_url;
        let base = if base.ends_with('/') {
            base
        } else {
            format!("{base}/")
        };
        let base = url::Url::parse(&base).map_err(|e| format!("gha: ACTIONS_RESULTS_URL: {e}"))?;
        let token = svc.runtime_token;
        // The other stores' bounds: `KILN_STORE_TIMEOUT` of silence ends a request (connect or
        // read); a whole call gets three times that.
        let policy = tuning.retry;
        let silence = policy.timeout;
        let http = reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(silence)
            .read_timeout(silence)
            .build()
            .map_err(|e| format!("gha: HTTP client: {e}"))?;
        let blob = BlobSettings {
            block_size: tuning.gha_upload.block_size,
            concurrency: tuning.gha_upload.concurrency,
            attempts: policy.attempts,
            retry_delay: policy.base_delay,
        };
        Ok(GhaCache {
            rest: svc
                .rest
                .map(|access| rest::Rest::new(access, http.clone(), silence * 3)),
            twirp: Twirp {
                http,
                base,
                token,
                timeout: silence * 3,
                attempts: blob.attempts,
                retry_delay: blob.retry_delay,
            },
            blob,
        })
    }

    /// The newest entry matching `exact`, else a prefix of it or of `prefixes` (in order), all
    /// of the kind `sample` names (its version). Asks in lookups of at most 10 keys.
    pub async fn find(
        &self,
        exact: &str,
        prefixes: &[String],
        sample: &str,
    ) -> Result<Option<Found>, GhaError> {
        keys::check_key(exact)?;
        for p in prefixes {
            keys::check_key(p)?;
        }
        let version = keys::version_for(sample);
        for (key, restore_keys) in keys::lookups(exact, prefixes) {
            let req = twirp::GetCacheEntryDownloadUrl {
                key,
                restore_keys: &restore_keys,
                version: &version,
            };
            let r: twirp::GetCacheEntryDownloadUrlResponse =
                self.twirp.call("GetCacheEntryDownloadURL", &req).await?;
            if r.ok && !r.signed_download_url.is_empty() {
                let key = if r.matched_key.is_empty() {
                    key.to_string()
                } else {
                    r.matched_key
                };
                return Ok(Some(Found {
                    key,
                    url: r.signed_download_url,
                }));
            }
        }
        Ok(None)
    }

    /// The entry under exactly `path` (the service also matches the key as a prefix: such a
    /// match is not this object).
    async fn exact(&self, path: &str) -> Result<Option<Found>, GhaError> {
        Ok(self.find(path, &[], path).await?.filter(|f| f.key == path))
    }

    /// Download a found entry whole (small objects: manifests, state).
    pub async fn fetch(&self, found: &Found) -> Result<Vec<u8>, GhaError> {
        use futures::TryStreamExt;
        let stream = blob::download(&self.twirp.http, &found.url).await?;
        let chunks: Vec<Bytes> = stream.try_collect().await.map_err(|e| GhaError::Blob {
            op: "download",
            status: None,
            message: e.to_string(),
        })?;
        Ok(chunks.concat())
    }

    pub async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, GhaError> {
        match self.exact(path).await? {
            Some(f) => self.fetch(&f).await.map(Some),
            None => Ok(None),
        }
    }

    pub async fn size(&self, path: &str) -> Result<Option<u64>, GhaError> {
        match self.exact(path).await? {
            Some(f) => blob::size(&self.twirp.http, &f.url).await.map(Some),
            None => Ok(None),
        }
    }

    pub async fn read_stream(
        &self,
        path: &str,
    ) -> Result<futures::stream::BoxStream<'static, std::io::Result<Bytes>>, GhaError> {
        match self.exact(path).await? {
            Some(f) => blob::download(&self.twirp.http, &f.url).await,
            None => Err(GhaError::NotFound(path.to_string())),
        }
    }

    /// Reserve `path`, upload `source` to the signed URL, then commit it. A reservation or
    /// commit the service refuses (`ok: false`) is [`GhaError::Refused`] with its message.
    pub async fn write(
        &self,
        path: &str,
        source: Source,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, GhaError> {
        keys::check_key(path)?;
        let version = keys::version_for(path);
        let created: twirp::CreateCacheEntryResponse = self
            .twirp
            .call(
                "CreateCacheEntry",
                &twirp::CreateCacheEntry {
                    key: path,
                    version: &version,
                },
            )
            .await?;
        if !created.ok || created.signed_upload_url.is_empty() {
            return Err(GhaError::Refused {
                call: "CreateCacheEntry",
                key: path.to_string(),
                message: or_default(
                    created.message,
                    "the key already exists or another job is saving it (keys are immutable)",
                ),
            });
        }
        let url = url::Url::parse(&created.signed_upload_url).map_err(|e| GhaError::Blob {
            op: "upload",
            status: None,
            message: format!("the service gave an invalid upload URL: {e}"),
        })?;
        let size = source.size();
        blob::upload(&self.twirp.http, &url, source, &self.blob, progress).await?;
        let req = twirp::FinalizeCacheEntryUpload {
            key: path,
            size_bytes: size.to_string(),
            version: &version,
        };
        let done: twirp::FinalizeCacheEntryUploadResponse =
            self.twirp.call("FinalizeCacheEntryUpload", &req).await?;
        if !done.ok {
            return Err(GhaError::Refused {
                call: "FinalizeCacheEntryUpload",
                key: path.to_string(),
                message: or_default(done.message, "the upload was not committed"),
            });
        }
        tracing::debug!(key = path, entry = %done.entry_id, size, "gha cache entry committed");
        Ok(size)
    }

    pub async fn put(&self, path: &str, data: Vec<u8>) -> Result<(), GhaError> {
        self.write(path, Source::Memory(Bytes::from(data)), &|_| {})
            .await
            .map(|_| ())
    }

    pub async fn upload_file(
        &self,
        path: &str,
        local: &std::path::Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, GhaError> {
        let f = std::fs::File::open(local)
            .map_err(|e| GhaError::Local(format!("cannot open {}: {e}", local.display())))?;
        let len = f
            .metadata()
            .map_err(|e| GhaError::Local(format!("cannot stat {}: {e}", local.display())))?
            .len();
        self.write(path, Source::File(std::sync::Arc::new(f), len), progress)
            .await
    }

    fn rest(&self, what: &str) -> Result<&rest::Rest, GhaError> {
        self.rest.as_ref().ok_or_else(|| {
            GhaError::Unsupported(format!(
                "{what} on the GitHub cache needs GITHUB_TOKEN (with `actions: write`) and GITHUB_REPOSITORY"
            ))
        })
    }

    /// Kiln's entries whose key starts with `prefix` (REST API).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>, GhaError> {
        self.rest("listing")?.list(prefix).await
    }

    /// Delete every entry of Kiln's under exactly `path` (REST API).
    pub async fn delete(&self, path: &str) -> Result<(), GhaError> {
        self.rest("deleting")?.delete(path).await
    }
}

fn or_default(message: String, default: &str) -> String {
    if message.trim().is_empty() {
        default.to_string()
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_the_network_and_5xx() {
        let svc = |status| GhaError::Service {
            call: "CreateCacheEntry",
            status,
            code: String::new(),
            message: String::new(),
        };
        assert!(svc(503).is_transient());
        assert!(svc(429).is_transient());
        assert!(!svc(409).is_transient());
        let refused = GhaError::Refused {
            call: "FinalizeCacheEntryUpload",
            key: "k".into(),
            message: "no".into(),
        };
        assert!(!refused.is_transient());
        assert_eq!(
            refused.to_string(),
            "FinalizeCacheEntryUpload refused k: no"
        );
    }
}

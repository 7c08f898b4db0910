//! The GitHub Actions cache service as a [`StoreBackend`]: immutable entries, its own lookup by
//! key and prefixes, no ranged reads, listing and deleting only with a REST token.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use super::{GhaCache, GhaError};
use crate::cache::backend::{BackendError, ByteStream, Entry, Found, StoreBackend, Upload};

/// The client retries each request itself (a reserved key cannot be reserved again by retrying
/// a whole save): nothing is transient to the store.
fn fault(e: GhaError) -> BackendError {
    let unsupported = e.is_unsupported();
    BackendError::new(e, false, unsupported)
}

#[async_trait]
impl StoreBackend for GhaCache {
    async fn size(&self, path: &str) -> Result<Option<u64>, BackendError> {
        GhaCache::size(self, path).await.map_err(fault)
    }

    async fn read_stream(&self, path: &str) -> Result<ByteStream, BackendError> {
        GhaCache::read_stream(self, path).await.map_err(fault)
    }

    async fn read_range(
        &self,
        _path: &str,
        _range: std::ops::Range<u64>,
    ) -> Result<ByteStream, BackendError> {
        Err(fault(GhaError::Unsupported(
            "the GitHub Actions cache has no ranged reads".into(),
        )))
    }

    async fn upload_file(
        &self,
        path: &str,
        local: &Path,
        _how: Upload,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, BackendError> {
        GhaCache::upload_file(self, path, local, progress)
            .await
            .map_err(fault)
    }

    async fn get(&self, path: &str, _timeout: Duration) -> Result<Option<Vec<u8>>, BackendError> {
        GhaCache::get(self, path).await.map_err(fault)
    }

    async fn put(&self, path: &str, data: Vec<u8>) -> Result<(), BackendError> {
        GhaCache::put(self, path, data).await.map_err(fault)
    }

    async fn delete(&self, path: &str) -> Result<(), BackendError> {
        GhaCache::delete(self, path).await.map_err(fault)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, BackendError> {
        GhaCache::list(self, prefix).await.map_err(fault)
    }

    async fn find_newest(
        &self,
        exact: &str,
        prefixes: &[String],
        sample: &str,
    ) -> Option<Result<Option<Found>, BackendError>> {
        let found = match self.find(exact, prefixes, sample).await {
            Ok(Some(f)) => f,
            Ok(None) => return Some(Ok(None)),
            Err(e) => return Some(Err(fault(e))),
        };
        let body = self.fetch(&found).await.map_err(fault);
        Some(Ok(Some(Found {
            path: found.key,
            body,
        })))
    }

    fn overwrites(&self) -> bool {
        false
    }

    fn service(&self) -> &'static str {
        "GitHub cache"
    }
}

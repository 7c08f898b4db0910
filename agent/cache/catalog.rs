//! What a store holds: one listing of `caches/`, read into keys (with their manifests), archives
//! no manifest names (orphans of interrupted or raced saves) and stale temporary files.

use futures::StreamExt;

use super::manifest::{self, Manifest};
use super::store::{Entry, Store, StoreError};

/// One cache key in the store.
#[derive(Debug, Clone)]
pub struct CacheInfo {
    pub key: String,
    /// `None` when the manifest could not be read or parsed.
    pub manifest: Option<Manifest>,
    /// Size of the archive object (from the listing), else the manifest's figure.
    pub size: u64,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    pub manifest_path: String,
    pub archive_path: Option<String>,
}

/// The whole `caches/` area.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Newest first.
    pub caches: Vec<CacheInfo>,
    /// Archive objects no manifest names.
    pub orphans: Vec<Entry>,
    /// Leftover temporary files from interrupted saves (file stores).
    pub temporaries: Vec<Entry>,
}

/// Read the catalog, keys restricted to those starting with `prefix`.
pub async fn read(store: &Store, prefix: &str) -> Result<Catalog, StoreError> {
    let all = store.retry(|| store.list(manifest::PREFIX)).await?;
    let mut manifests = Vec::new();
    let mut archives = Vec::new();
    let mut temporaries = Vec::new();
    for e in all {
        let Some(name) = e.path.strip_prefix(manifest::PREFIX) else {
            continue;
        };
        if name.starts_with(".tmp/") {
            temporaries.push(e);
        } else if name.contains('/') {
            continue;
        } else if let Some(key) = name.strip_suffix(".json") {
            manifests.push((key.to_string(), e));
        } else if name.contains(".tar.") {
            archives.push(e);
        }
    }
    let read: Vec<(String, Entry, Option<Manifest>)> = futures::stream::iter(manifests)
        .map(|(key, e)| async move {
            let m = match store.retry(|| store.get(&e.path)).await {
                Ok(Some(b)) => Manifest::parse(&b, &key).ok(),
                _ => None,
            };
            (key, e, m)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut referenced = std::collections::HashSet::new();
    let mut caches = Vec::new();
    for (key, e, m) in read {
        let archive_path = m.as_ref().map(|m| m.archive.clone());
        if let Some(a) = &archive_path {
            referenced.insert(a.clone());
        }
        if !key.starts_with(prefix) {
            continue;
        }
        let listed = archive_path
            .as_ref()
            .and_then(|a| archives.iter().find(|x| &x.path == a))
            .map(|x| x.size);
        caches.push(CacheInfo {
            size: listed
                .or(m.as_ref().map(|m| m.compressed_size))
                .unwrap_or(0),
            created: m.as_ref().map(|m| m.created).or(e.modified),
            manifest_path: e.path,
            archive_path,
            key,
            manifest: m,
        });
    }
    caches.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.key.cmp(&b.key)));
    let orphans = archives
        .into_iter()
        .filter(|a| !referenced.contains(&a.path))
        .collect();
    Ok(Catalog {
        caches,
        orphans,
        temporaries,
    })
}

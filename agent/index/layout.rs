//! Where published wheels live in the store, and how they get there.
//!
//! Cache archives (tarballs of a whole wheelhouse) are good for restoring a build machine, but an
//! index must hand out one wheel at a time. So the save stage also publishes each wheel on its own:
//!
//! ```text
//! wheels/<project>/<sha256>/<filename>   the wheel, content-addressed (never rewritten)
//! wheels/<project>/<filename>.json       sidecar: sha256, size, version, upload time
//! ```
//!
//! The sidecar is written last and is the commit point: the index lists a wheel only once its
//! sidecar exists, so a publish interrupted half-way is invisible, and two machines publishing
//! different builds of the same file name at once each leave a consistent pair (the last sidecar
//! wins, pointing at its own blob). A file name, once published, is never replaced (like PyPI):
//! later publishes of the same name are skipped.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::error::IndexError;
use super::metadata::{read_metadata, requires_python};
use crate::cache::store::{Store, StoreError, Upload};
use crate::wheels::names::WheelName;

/// Top-level prefix of published wheels in the store.
pub const WHEELS_PREFIX: &str = "wheels/";

/// The sidecar next to each published wheel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sidecar {
    pub filename: String,
    /// PEP 503 normalized project name.
    pub project: String,
    pub version: String,
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
    /// Store path of the wheel itself.
    pub blob: String,
    /// When it was published (RFC 3339, UTC).
    pub uploaded: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub kiln_version: String,
    /// `Requires-Python` of the wheel's METADATA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_python: Option<String>,
    /// sha256 of the METADATA file stored at `<blob>.metadata` (PEP 658), when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_sha256: Option<String>,
}

/// `wheels/<project>/<filename>.json`
pub fn sidecar_path(w: &WheelName) -> String {
    format!("{WHEELS_PREFIX}{}/{}.json", w.project, w.filename)
}

/// `wheels/<project>/<sha256>/<filename>`
pub fn blob_path(w: &WheelName, sha256: &str) -> String {
    format!("{WHEELS_PREFIX}{}/{sha256}/{}", w.project, w.filename)
}

/// What `publish_wheels` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PublishStats {
    /// Wheels uploaded by this call.
    pub published: u32,
    /// Wheels whose file name was already in the store.
    pub skipped: u32,
    /// Files ending in `.whl` whose name is not a valid wheel name (left out, with a warning).
    pub invalid: u32,
    pub bytes_uploaded: u64,
    /// File names uploaded.
    pub published_names: Vec<String>,
}

fn store_err(e: StoreError) -> IndexError {
    IndexError::Store(Box::new(e))
}

/// Upload the wheels of `wheelhouse` (a flat directory, as pip writes it) that the store does not
/// have yet. Existing file names are skipped without reading the local file.
pub async fn publish_wheels(store: &Store, wheelhouse: &Path) -> Result<PublishStats, IndexError> {
    let mut stats = PublishStats::default();
    let files = wheel_files(wheelhouse, &mut stats)?;
    // A few at a time: remote stores are latency-bound, and a cold run can bring dozens of wheels.
    let results: Vec<Result<Option<u64>, IndexError>> = futures::stream::iter(&files)
        .map(|(path, wheel)| publish_one(store, path, wheel))
        .buffered(4)
        .collect()
        .await;
    for ((_, wheel), result) in files.iter().zip(results) {
        match result? {
            Some(uploaded) => {
                stats.published += 1;
                stats.bytes_uploaded += uploaded;
                stats.published_names.push(wheel.filename.clone());
            }
            None => stats.skipped += 1,
        }
    }
    Ok(stats)
}

/// Publish one wheel: `None` when its file name is already published, else the bytes uploaded.
async fn publish_one(
    store: &Store,
    path: &Path,
    wheel: &WheelName,
) -> Result<Option<u64>, IndexError> {
    let sidecar_at = sidecar_path(wheel);
    if exists(store, &sidecar_at).await? {
        tracing::debug!("{} is already published", wheel.filename);
        return Ok(None);
    }
    let (sha256, size) = hash_file(path).await?;
    let blob = blob_path(wheel, &sha256);
    let mut uploaded = 0;
    if !exists(store, &blob).await? {
        // Wheels can be hundreds of MB: streamed, never whole in memory.
        store
            .upload_file(&blob, path, Upload::Sequential, &|_| {})
            .await
            .map_err(store_err)?;
        uploaded = size;
    }
    // PEP 658: the METADATA file beside the wheel, so resolvers need not download it.
    let local = path.to_path_buf();
    let metadata = tokio::task::spawn_blocking(move || read_metadata(&local))
        .await
        .ok()
        .and_then(|r| r.ok())
        .flatten();
    let (requires_python, metadata_sha256) = match metadata {
        Some(m) => {
            let sha = hex::encode(Sha256::digest(&m));
            let rp = requires_python(&m);
            store
                .put(&format!("{blob}.metadata"), m)
                .await
                .map_err(store_err)?;
            (rp, Some(sha))
        }
        None => {
            tracing::debug!("{}: no readable METADATA; served without", wheel.filename);
            (None, None)
        }
    };
    let sidecar = Sidecar {
        filename: wheel.filename.clone(),
        project: wheel.project.clone(),
        version: wheel.version.clone(),
        sha256,
        size,
        blob,
        uploaded: chrono::Utc::now(),
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        requires_python,
        metadata_sha256,
    };
    let json = serde_json::to_vec_pretty(&sidecar).map_err(|e| IndexError::Sidecar {
        path: sidecar_at.clone(),
        message: e.to_string(),
    })?;
    // Last: the sidecar is what makes the wheel visible.
    store.put(&sidecar_at, json).await.map_err(store_err)?;
    tracing::info!("published {} ({size} bytes)", wheel.filename);
    Ok(Some(uploaded))
}

/// The `*.whl` files directly in `dir`, sorted by name.
pub fn wheel_files(
    dir: &Path,
    stats: &mut PublishStats,
) -> Result<Vec<(PathBuf, WheelName)>, IndexError> {
    let io = |source| IndexError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".whl") || !entry.file_type().map_err(io)?.is_file() {
            continue;
        }
        match WheelName::parse(&name) {
            Some(w) => out.push((entry.path(), w)),
            None => {
                tracing::warn!(
                    "{}: not a valid wheel file name; not published",
                    entry.path().display()
                );
                stats.invalid += 1;
            }
        }
    }
    out.sort_by(|a, b| a.1.filename.cmp(&b.1.filename));
    Ok(out)
}

async fn exists(store: &Store, path: &str) -> Result<bool, IndexError> {
    Ok(store.size(path).await.map_err(store_err)?.is_some())
}

/// sha256 (hex) and size of a file, read in chunks.
pub async fn hash_file(path: &Path) -> Result<(String, u64), IndexError> {
    let io = |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = tokio::fs::File::open(path).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Every published sidecar path, grouped by project: `(project, sidecar paths)`, sorted.
/// Only `wheels/<project>/<file>.whl.json` counts; blobs and stray objects are ignored.
pub async fn list_sidecars(
    store: &Store,
    project: Option<&str>,
) -> Result<Vec<(String, Vec<String>)>, IndexError> {
    let prefix = match project {
        Some(p) => format!("{WHEELS_PREFIX}{p}/"),
        None => WHEELS_PREFIX.to_string(),
    };
    let entries = store.list(&prefix).await.map_err(store_err)?;
    let mut map: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for e in entries {
        let Some(rest) = e.path.strip_prefix(WHEELS_PREFIX) else {
            continue;
        };
        let Some((proj, file)) = rest.split_once('/') else {
            continue;
        };
        if file.contains('/') || !file.ends_with(".whl.json") {
            continue;
        }
        map.entry(proj.to_string())
            .or_default()
            .push(e.path.clone());
    }
    Ok(map
        .into_iter()
        .map(|(k, mut v)| {
            v.sort();
            (k, v)
        })
        .collect())
}

/// Read and check one sidecar; `None` when it vanished (deleted between list and read).
pub async fn read_sidecar(store: &Store, path: &str) -> Result<Option<Sidecar>, IndexError> {
    let Some(bytes) = store.get(path).await.map_err(store_err)? else {
        return Ok(None);
    };
    let bad = |message: String| IndexError::Sidecar {
        path: path.to_string(),
        message,
    };
    let s: Sidecar = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    // The sidecar decides which blob is served: never let it point outside this project's files.
    let w = WheelName::parse(&s.filename).ok_or_else(|| bad("bad file name".into()))?;
    if sidecar_path(&w) != path
        || s.sha256.len() != 64
        || !s.sha256.bytes().all(|b| b.is_ascii_hexdigit())
        || s.blob != blob_path(&w, &s.sha256)
    {
        return Err(bad("does not match its location".into()));
    }
    Ok(Some(s))
}

/// Read many sidecars, a few at a time; unreadable ones are logged and left out.
pub async fn read_sidecars(store: &Store, paths: &[String]) -> Vec<Sidecar> {
    futures::stream::iter(paths.iter().cloned())
        .map(|p| async move { (read_sidecar(store, &p).await, p) })
        .buffer_unordered(16)
        .filter_map(|(r, p)| async move {
            match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("skipping {p}: {e}");
                    None
                }
            }
        })
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_url(&format!("file://{}", dir.path().display())).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn publish_uploads_once_and_lists() {
        let (_d, store) = store();
        let wh = tempfile::tempdir().unwrap();
        std::fs::write(
            wh.path().join("Demo_Pkg-1.0-py3-none-any.whl"),
            b"wheel one",
        )
        .unwrap();
        std::fs::write(
            wh.path().join("demo_pkg-2.0-py3-none-any.whl"),
            b"wheel two",
        )
        .unwrap();
        std::fs::write(wh.path().join("junk.whl"), b"x").unwrap();
        std::fs::write(wh.path().join("readme.txt"), b"x").unwrap();

        let s = publish_wheels(&store, wh.path()).await.unwrap();
        assert_eq!((s.published, s.skipped, s.invalid), (2, 0, 1));
        assert_eq!(s.bytes_uploaded, 18);

        // A rebuild with other bytes under the same name: the published file stays (like PyPI).
        std::fs::write(wh.path().join("Demo_Pkg-1.0-py3-none-any.whl"), b"rebuilt").unwrap();
        let again = publish_wheels(&store, wh.path()).await.unwrap();
        assert_eq!((again.published, again.skipped), (0, 2));
        assert_eq!(again.bytes_uploaded, 0);

        let listed = list_sidecars(&store, None).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, "demo-pkg");
        let cars = read_sidecars(&store, &listed[0].1).await;
        assert_eq!(cars.len(), 2);
        let one = cars
            .iter()
            .find(|c| c.filename.starts_with("Demo_Pkg"))
            .unwrap();
        assert_eq!(one.sha256, hex::encode(Sha256::digest(b"wheel one")));
        assert_eq!(store.get(&one.blob).await.unwrap().unwrap(), b"wheel one");
    }

    #[tokio::test]
    async fn tampered_sidecar_is_rejected() {
        let (_d, store) = store();
        let wh = tempfile::tempdir().unwrap();
        std::fs::write(wh.path().join("a-1.0-py3-none-any.whl"), b"a").unwrap();
        publish_wheels(&store, wh.path()).await.unwrap();
        let path = "wheels/a/a-1.0-py3-none-any.whl.json";
        let mut s: Sidecar =
            serde_json::from_slice(&store.get(path).await.unwrap().unwrap()).unwrap();
        s.blob = "cache/secret.tar.zst".into();
        store
            .put(path, serde_json::to_vec(&s).unwrap())
            .await
            .unwrap();
        let err = read_sidecar(&store, path).await.unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
    }
}

//! Save: archive the directories into a temporary file (hashing it as it is written), upload it
//! under a name unique to this save, then write the manifest last. Skipped without uploading
//! when the key already holds the same content. Store failures are retried, then reported as a
//! warning: a save never fails a build.

use std::path::{Path, PathBuf};

use super::archive;
use super::manifest::{self, Manifest};
use super::progress::{human_bytes, Transfer};
use super::restore::unique_id;
use super::store::Upload;
use super::{SaveOptions, SaveOutcome, Store};

pub(super) async fn save(
    store: &Store,
    key: &str,
    paths: &[PathBuf],
    opts: &SaveOptions,
) -> SaveOutcome {
    let mut out = SaveOutcome::default();
    let skip = |out: &mut SaveOutcome, reason: String| {
        tracing::info!(key, "cache save skipped: {reason}");
        out.skipped_reason = Some(reason);
    };
    let warn = |out: &mut SaveOutcome, w: String| {
        tracing::warn!("{w}");
        out.warnings.push(w);
    };
    if let Err(e) = manifest::validate_key(key) {
        warn(&mut out, format!("cache not saved: {e}"));
        skip(&mut out, e);
        return out;
    }
    if paths.is_empty() || !paths.iter().any(|p| p.is_dir()) {
        skip(
            &mut out,
            format!(
                "none of the paths to cache exists ({})",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        return out;
    }

    let mpath = manifest::manifest_path(key);
    let previous = match store.retry(|| store.get(&mpath)).await {
        Ok(Some(bytes)) => Manifest::parse(&bytes, key).ok(),
        Ok(None) => None,
        Err(e) => {
            warn(
                &mut out,
                format!("cache {key} not saved: store unavailable ({e})"),
            );
            skip(&mut out, "store unavailable".into());
            return out;
        }
    };
    if let Some(prev) = &previous {
        let owned: Vec<PathBuf> = paths.to_vec();
        match tokio::task::spawn_blocking(move || archive::content_digest(&owned)).await {
            Ok(Ok(d)) if d == prev.content_digest && prev.paths.len() == paths.len() => {
                skip(&mut out, format!("{key} already holds the same content"));
                return out;
            }
            Ok(Err(e)) => {
                warn(&mut out, format!("cache {key} not saved: {e}"));
                skip(&mut out, e.to_string());
                return out;
            }
            _ => {}
        }
        if !store.overwrites() {
            // As actions/cache: an existing key is kept, not an error.
            skip(
                &mut out,
                format!(
                    "{key} already exists on the {}, whose keys cannot be overwritten",
                    store.service()
                ),
            );
            return out;
        }
    }

    match build_and_upload(store, key, paths, opts, previous.as_ref()).await {
        Ok((m, skipped)) => {
            for s in skipped {
                warn(&mut out, format!("cache {key}: left out {s}"));
            }
            out.saved = true;
            out.bytes = m.compressed_size;
        }
        Err(e) => {
            warn(&mut out, format!("cache {key} not saved: {e}"));
            skip(&mut out, e);
        }
    }
    out
}

/// Removes a temporary file on drop (after a failure).
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn build_and_upload(
    store: &Store,
    key: &str,
    paths: &[PathBuf],
    opts: &SaveOptions,
    previous: Option<&Manifest>,
) -> Result<(Manifest, Vec<String>), String> {
    let id = unique_id();
    let object = manifest::archive_path(key, &id, opts.compression);
    // A file store gets the archive written inside it and renamed into place: no copy.
    let tmp_dir = match store.local_root() {
        Some(root) => root.join(manifest::PREFIX).join(".tmp"),
        None => std::env::temp_dir(),
    };
    std::fs::create_dir_all(&tmp_dir)
        .map_err(|e| format!("cannot create {}: {e}", tmp_dir.display()))?;
    let tmp = TempFile(Some(tmp_dir.join(format!("kiln-save-{id}.part"))));
    let tmp_path = tmp.0.clone().unwrap_or_default();

    let transfer = Transfer::new("archive", key, None, store.transfer().progress);
    let owned: Vec<PathBuf> = paths.to_vec();
    let (compression, level) = (opts.compression, opts.level);
    let tp = tmp_path.clone();
    let built = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&tp)
            .map_err(|e| format!("cannot create {}: {e}", tp.display()))?;
        let writer =
            archive::HashingWriter::new(std::io::BufWriter::with_capacity(256 << 10, file));
        let (writer, stats) = archive::write_archive(writer, &owned, compression, level)
            .map_err(|e| e.to_string())?;
        let (buf, checksum, size) = writer.finish();
        buf.into_inner()
            .map_err(|e| format!("writing {}: {}", tp.display(), e.error()))?;
        Ok::<_, String>((stats, checksum, size))
    })
    .await
    .map_err(|e| format!("archive task failed: {e}"))??;
    let (stats, blake3, size) = built;
    transfer.finish(stats.tar_bytes);

    let m = Manifest {
        format: manifest::FORMAT,
        key: key.to_string(),
        archive: object.clone(),
        compression: opts.compression,
        level: archive::effective_level(opts.compression, opts.level),
        sha256: String::new(),
        blake3: Some(blake3),
        compressed_size: size,
        uncompressed_size: stats.tar_bytes,
        content_bytes: stats.content_bytes,
        file_count: stats.files,
        created: chrono::Utc::now(),
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        paths: paths.iter().map(|p| p.display().to_string()).collect(),
        content_digest: stats.content_digest.clone(),
    };

    upload_archive(store, &object, &tmp, &tmp_path, key, size).await?;

    let mpath = manifest::manifest_path(key);
    let json = m.to_json();
    if let Err(e) = store.retry(|| store.put(&mpath, json.clone())).await {
        let _ = store.delete(&object).await;
        return Err(format!("writing the manifest failed: {e}"));
    }
    // Another agent may have committed the same key at the same moment: the manifest that is
    // there now wins; drop our archive if it lost, and the replaced archive if ours won.
    if let Ok(Some(now)) = store.get(&mpath).await {
        match Manifest::parse(&now, key) {
            Ok(winner) if winner.archive != object => {
                let _ = store.delete(&object).await;
                tracing::info!(
                    key,
                    "another save of {key} landed at the same time; keeping it"
                );
            }
            _ => {
                if let Some(prev) = previous {
                    if prev.archive != object {
                        let _ = store.delete(&prev.archive).await;
                    }
                }
            }
        }
    }
    tracing::info!(
        key,
        files = m.file_count,
        compressed = m.compressed_size,
        uncompressed = m.uncompressed_size,
        "cache saved {key}: {} files, {} → {}",
        m.file_count,
        human_bytes(m.uncompressed_size),
        human_bytes(m.compressed_size)
    );
    Ok((m, stats.skipped))
}

async fn upload_archive(
    store: &Store,
    object: &str,
    tmp: &TempFile,
    tmp_path: &Path,
    key: &str,
    size: u64,
) -> Result<(), String> {
    if let Some(root) = store.local_root() {
        let dest = root.join(object);
        std::fs::rename(tmp_path, &dest)
            .map_err(|e| format!("cannot move the archive into {}: {e}", dest.display()))?;
        let _ = tmp;
        return Ok(());
    }
    let transfer = Transfer::new("upload", key, Some(size), store.transfer().progress);
    let t = transfer.clone();
    let progress = move |n: u64| t.set(n);
    match store
        .retry(|| store.upload_file(object, tmp_path, Upload::Concurrent, &progress))
        .await
    {
        Ok(sent) => {
            transfer.finish(sent);
            Ok(())
        }
        Err(e) => {
            transfer.abandon();
            let _ = store.delete(object).await;
            Err(format!("upload failed: {e}"))
        }
    }
}

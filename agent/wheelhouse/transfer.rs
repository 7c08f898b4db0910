//! Export and import of wheelhouse archives: one `tar` + `zstd` file carrying wheels to machines
//! without internet access.
//!
//! Import is all-or-nothing: wheels are extracted into a temporary directory inside the target,
//! each checked against the manifest's size and sha256, and only moved into place once the whole
//! archive has been verified. Nothing but `wheels/<valid wheel name>` regular files listed in the
//! manifest is ever written, so a crafted archive cannot place files elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::archive_manifest::{
    fits_platforms, Manifest, WheelEntry, FORMAT, MANIFEST_NAME, MAX_MANIFEST_BYTES, WHEELS_DIR,
};
use super::error::WheelhouseError;
use crate::cache::store::Store;
use crate::index::layout::{self, PublishStats};
use crate::wheels::names::WheelName;

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub wheels: usize,
    /// Total size of the wheels (uncompressed).
    pub wheel_bytes: u64,
    /// Size of the archive.
    pub archive_bytes: u64,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Wheels written (new or replaced).
    pub imported: usize,
    /// Wheels already present with the same content.
    pub unchanged: usize,
    pub bytes: u64,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> WheelhouseError + '_ {
    move |source| WheelhouseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Export the wheels of a directory (those fitting `platforms`; empty = all).
pub fn export_dir(
    from: &Path,
    platforms: &[String],
    output: &Path,
) -> Result<ExportStats, WheelhouseError> {
    let mut ignored = PublishStats::default();
    let files = layout::wheel_files(from, &mut ignored)?;
    let mut entries = Vec::new();
    for (path, w) in files {
        if !fits_platforms(&w, platforms) {
            continue;
        }
        let (sha, size) = hash_path(&path)?;
        entries.push((path, WheelEntry::new(&w, sha, size)));
    }
    if entries.is_empty() {
        return Err(WheelhouseError::NoWheels {
            source_desc: from.display().to_string(),
            platforms: platforms.to_vec(),
        });
    }
    write_archive(output, entries, platforms)
}

/// Export the wheels published in a store (see `index::layout`), downloading them into a
/// temporary directory first (each verified against its sidecar's sha256).
pub async fn export_store(
    store: &Store,
    platforms: &[String],
    output: &Path,
) -> Result<ExportStats, WheelhouseError> {
    let projects = layout::list_sidecars(store, None).await?;
    let paths: Vec<String> = projects.into_iter().flat_map(|(_, p)| p).collect();
    let mut cars = layout::read_sidecars(store, &paths).await;
    cars.retain(|c| WheelName::parse(&c.filename).is_some_and(|w| fits_platforms(&w, platforms)));
    if cars.is_empty() {
        return Err(WheelhouseError::NoWheels {
            source_desc: store.display().to_string(),
            platforms: platforms.to_vec(),
        });
    }
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-export-")
        .tempdir_in(parent)
        .map_err(io_err(parent))?;
    let mut entries = Vec::new();
    for car in cars {
        let Some(w) = WheelName::parse(&car.filename) else {
            continue;
        };
        let local = tmp.path().join(&car.filename);
        download(store, &car.blob, &local).await?;
        let (sha, size) = hash_path(&local)?;
        if sha != car.sha256 || size != car.size {
            return Err(WheelhouseError::StoreHashMismatch {
                store: store.display().to_string(),
                filename: car.filename.clone(),
            });
        }
        entries.push((local, WheelEntry::new(&w, sha, size)));
    }
    let output = output.to_path_buf();
    let platforms = platforms.to_vec();
    tokio::task::spawn_blocking(move || write_archive(&output, entries, &platforms))
        .await
        .map_err(|e| WheelhouseError::Corrupt {
            archive: String::new(),
            message: format!("export task failed: {e}"),
        })?
}

async fn download(store: &Store, from: &str, to: &Path) -> Result<(), WheelhouseError> {
    let size = store.size(from).await?.unwrap_or(0);
    let mut stream = store.read_range(from, 0..size).await?;
    let mut f = std::fs::File::create(to).map_err(io_err(to))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(io_err(to))?;
        f.write_all(&chunk).map_err(io_err(to))?;
    }
    f.sync_all().map_err(io_err(to))
}

fn hash_path(path: &Path) -> Result<(String, u64), WheelhouseError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = HashingWriter::new(std::io::sink());
    std::io::copy(&mut f, &mut h).map_err(io_err(path))?;
    Ok(h.finish())
}

/// Write `entries` (local file, manifest entry) as a tar.zst at `output`, atomically.
fn write_archive(
    output: &Path,
    mut entries: Vec<(PathBuf, WheelEntry)>,
    platforms: &[String],
) -> Result<ExportStats, WheelhouseError> {
    entries.sort_by(|a, b| a.1.filename.cmp(&b.1.filename));
    let manifest = Manifest {
        format: FORMAT.into(),
        created: chrono::Utc::now(),
        kiln_version: env!("CARGO_PKG_VERSION").into(),
        platforms: platforms.to_vec(),
        wheels: entries.iter().map(|(_, e)| e.clone()).collect(),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| WheelhouseError::Corrupt {
        archive: output.display().to_string(),
        message: e.to_string(),
    })?;
    let file_name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "wheelhouse".into());
    let tmp = output.with_file_name(format!(".{file_name}.partial-{}", std::process::id()));
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut enc = zstd::stream::write::Encoder::new(file, 3).map_err(io_err(&tmp))?;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get().min(4) as u32)
            .unwrap_or(1);
        if threads > 1 {
            let _ = enc.multithread(threads);
        }
        let mut tar = tar::Builder::new(enc);
        let mtime = manifest.created.timestamp().max(0) as u64;
        let header = |size: u64| {
            let mut h = tar::Header::new_gnu();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_mtime(mtime);
            h.set_entry_type(tar::EntryType::Regular);
            h
        };
        tar.append_data(&mut header(json.len() as u64), MANIFEST_NAME, &json[..])
            .map_err(io_err(&tmp))?;
        for (path, entry) in &entries {
            let f = std::fs::File::open(path).map_err(io_err(path))?;
            // Exactly the bytes that were hashed: a file that grew since is cut, one that shrank
            // fails here rather than producing an archive that import would reject.
            let name = format!("{WHEELS_DIR}{}", entry.filename);
            tar.append_data(&mut header(entry.size), &name, f.take(entry.size))
                .map_err(io_err(path))?;
        }
        let enc = tar.into_inner().map_err(io_err(&tmp))?;
        let file = enc.finish().map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, output).map_err(io_err(output))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    Ok(ExportStats {
        wheels: entries.len(),
        wheel_bytes: entries.iter().map(|(_, e)| e.size).sum(),
        archive_bytes: std::fs::metadata(output).map(|m| m.len()).unwrap_or(0),
    })
}

/// Verify `archive` completely and put its wheels into `into` (created if needed).
pub fn import(archive: &Path, into: &Path) -> Result<ImportStats, WheelhouseError> {
    let name = archive.display().to_string();
    let corrupt = |message: String| WheelhouseError::Corrupt {
        archive: name.clone(),
        message,
    };
    std::fs::create_dir_all(into).map_err(io_err(into))?;
    let file = std::fs::File::open(archive).map_err(io_err(archive))?;
    let dec = zstd::stream::read::Decoder::new(file)
        .map_err(|e| corrupt(format!("not a zstd stream: {e}")))?;
    let mut tar = tar::Archive::new(dec);
    let mut entries = tar
        .entries()
        .map_err(|e| corrupt(format!("cannot read: {e}")))?;

    // 1. The manifest, first.
    let manifest = read_manifest(entries.next(), &corrupt)?;
    let expected = expected_wheels(&manifest, &corrupt)?;

    // 2. Every wheel, into a temp dir, verified.
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-import-")
        .tempdir_in(into)
        .map_err(io_err(into))?;
    verify_wheels(entries, &expected, tmp.path(), &name, &corrupt)?;

    // 3. Into place.
    place(&manifest, tmp.path(), into)
}

/// The archive's first entry: its manifest, in the format this version writes.
fn read_manifest<R: Read>(
    first: Option<std::io::Result<tar::Entry<'_, R>>>,
    corrupt: &dyn Fn(String) -> WheelhouseError,
) -> Result<Manifest, WheelhouseError> {
    let mut first = match first {
        Some(Ok(e)) => e,
        Some(Err(e)) => return Err(corrupt(format!("cannot read: {e}"))),
        None => return Err(corrupt("the archive is empty".into())),
    };
    let path = first.path().map(|p| p.to_string_lossy().into_owned());
    if path.as_deref().ok() != Some(MANIFEST_NAME)
        || first.header().entry_type() != tar::EntryType::Regular
    {
        return Err(corrupt(format!(
            "no {MANIFEST_NAME} at its start: not a kiln wheelhouse archive"
        )));
    }
    if first.size() > MAX_MANIFEST_BYTES {
        return Err(corrupt("manifest too large".into()));
    }
    let mut buf = Vec::new();
    first
        .read_to_end(&mut buf)
        .map_err(|e| corrupt(format!("cannot read the manifest: {e}")))?;
    let manifest: Manifest =
        serde_json::from_slice(&buf).map_err(|e| corrupt(format!("bad manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(corrupt(format!(
            "format {:?} is not {FORMAT:?} (made by another kiln version; export again with this one)",
            manifest.format
        )));
    }
    Ok(manifest)
}

/// The manifest's wheels by file name: each a wheel file name, none listed twice.
fn expected_wheels<'m>(
    manifest: &'m Manifest,
    corrupt: &dyn Fn(String) -> WheelhouseError,
) -> Result<BTreeMap<String, &'m WheelEntry>, WheelhouseError> {
    let mut expected: BTreeMap<String, &WheelEntry> = BTreeMap::new();
    for w in &manifest.wheels {
        if WheelName::parse(&w.filename).is_none() {
            return Err(corrupt(format!(
                "manifest lists {:?}, not a wheel file name",
                w.filename
            )));
        }
        if expected.insert(w.filename.clone(), w).is_some() {
            return Err(corrupt(format!("manifest lists {} twice", w.filename)));
        }
    }
    Ok(expected)
}

/// Every remaining entry written into `tmp`, each a listed wheel matching its size and sha256;
/// every listed wheel present.
fn verify_wheels<R: Read>(
    entries: tar::Entries<'_, R>,
    expected: &BTreeMap<String, &WheelEntry>,
    tmp: &Path,
    name: &str,
    corrupt: &dyn Fn(String) -> WheelhouseError,
) -> Result<(), WheelhouseError> {
    let mut seen = BTreeSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(format!("cannot read: {e}")))?;
        let path = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = entry.header().entry_type();
        let filename = path.strip_prefix(WHEELS_DIR).unwrap_or("");
        let Some(want) = expected
            .get(filename)
            .filter(|_| kind == tar::EntryType::Regular)
        else {
            return Err(WheelhouseError::Unexpected {
                archive: name.to_string(),
                entry: path,
            });
        };
        if !seen.insert(filename.to_string()) {
            return Err(corrupt(format!("{filename} appears twice")));
        }
        let dest = tmp.join(filename);
        let out = std::fs::File::create(&dest).map_err(io_err(&dest))?;
        let mut w = HashingWriter::new(std::io::BufWriter::new(out));
        std::io::copy(&mut (&mut entry).take(want.size + 1), &mut w)
            .map_err(|e| corrupt(format!("{filename}: {e} (truncated archive?)")))?;
        let (sha, size) = w.finish();
        if sha != want.sha256 || size != want.size {
            return Err(WheelhouseError::HashMismatch {
                archive: name.to_string(),
                filename: filename.to_string(),
                expected: want.sha256.clone(),
                actual: sha,
            });
        }
    }
    if let Some(missing) = expected.keys().find(|k| !seen.contains(*k)) {
        return Err(WheelhouseError::Missing {
            archive: name.to_string(),
            filename: missing.clone(),
        });
    }
    Ok(())
}

/// The verified wheels moved from `tmp` into `into` (one already there with the same content
/// is left as it is).
fn place(manifest: &Manifest, tmp: &Path, into: &Path) -> Result<ImportStats, WheelhouseError> {
    let mut stats = ImportStats::default();
    for w in &manifest.wheels {
        let dest = into.join(&w.filename);
        if dest.exists() && hash_path(&dest).is_ok_and(|(sha, _)| sha == w.sha256) {
            stats.unchanged += 1;
            continue;
        }
        std::fs::rename(tmp.join(&w.filename), &dest).map_err(io_err(&dest))?;
        stats.imported += 1;
        stats.bytes += w.size;
    }
    Ok(stats)
}

/// A writer that hashes (sha256) and counts what passes through.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheelhouse() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a-1.0-py3-none-any.whl"), b"pure wheel").unwrap();
        std::fs::write(
            d.path().join("b-2.0-cp311-cp311-linux_x86_64.whl"),
            b"x86 wheel",
        )
        .unwrap();
        std::fs::write(
            d.path().join("b-2.0-cp311-cp311-linux_aarch64.whl"),
            b"arm wheel",
        )
        .unwrap();
        d
    }

    #[test]
    fn round_trip_with_platform_filter() {
        let src = wheelhouse();
        let out = tempfile::tempdir().unwrap();
        let archive = out.path().join("wh.tar.zst");
        let stats = export_dir(src.path(), &["linux_x86_64".into()], &archive).unwrap();
        assert_eq!(stats.wheels, 2);
        let dest = out.path().join("imported");
        let s = import(&archive, &dest).unwrap();
        assert_eq!((s.imported, s.unchanged), (2, 0));
        assert_eq!(
            std::fs::read(dest.join("b-2.0-cp311-cp311-linux_x86_64.whl")).unwrap(),
            b"x86 wheel"
        );
        assert!(!dest.join("b-2.0-cp311-cp311-linux_aarch64.whl").exists());
        // Only the wheels: no temp dir left behind.
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 2);
        let again = import(&archive, &dest).unwrap();
        assert_eq!((again.imported, again.unchanged), (0, 2));
    }

    /// Build an archive by hand: a manifest claiming `claimed`, then `entries`.
    fn crafted(dir: &Path, claimed: &[(&str, &[u8])], entries: &[(&str, &[u8])]) -> PathBuf {
        let manifest = Manifest {
            format: FORMAT.into(),
            created: chrono::Utc::now(),
            kiln_version: "test".into(),
            platforms: vec![],
            wheels: claimed
                .iter()
                .map(|(n, body)| {
                    WheelEntry::new(
                        &WheelName::parse(n).unwrap(),
                        hex::encode(Sha256::digest(body)),
                        body.len() as u64,
                    )
                })
                .collect(),
        };
        let json = serde_json::to_vec(&manifest).unwrap();
        let path = dir.join("crafted.tar.zst");
        let enc = zstd::stream::write::Encoder::new(std::fs::File::create(&path).unwrap(), 1)
            .unwrap()
            .auto_finish();
        let mut tar = tar::Builder::new(enc);
        let mut add = |name: &str, body: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // set_path refuses `..`: write the raw name as an attacker would.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            tar.append(&h, body).unwrap();
        };
        add(MANIFEST_NAME, &json);
        for (n, b) in entries {
            add(n, b);
        }
        tar.into_inner().unwrap();
        path
    }

    #[test]
    fn tampered_wheel_is_refused_and_nothing_is_written() {
        let d = tempfile::tempdir().unwrap();
        let name = "a-1.0-py3-none-any.whl";
        let archive = crafted(
            d.path(),
            &[(name, b"good")],
            &[(&format!("wheels/{name}"), b"evil")],
        );
        let dest = d.path().join("dest");
        let err = import(&archive, &dest).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains("sha256"), "{err}");
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
    }

    #[test]
    fn entries_outside_the_manifest_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let name = "a-1.0-py3-none-any.whl";
        for evil in ["../escape.whl", "wheels/../../x.whl", "other.txt"] {
            let archive = crafted(
                d.path(),
                &[(name, b"good")],
                &[(&format!("wheels/{name}"), b"good"), (evil, b"x")],
            );
            let dest = d.path().join("dest");
            let err = import(&archive, &dest).unwrap_err().to_string();
            assert!(err.contains("does not list"), "{evil}: {err}");
            assert!(!d.path().join("escape.whl").exists());
            assert!(!dest.join(name).exists(), "partial import for {evil}");
        }
    }

    #[test]
    fn missing_and_truncated_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let name = "a-1.0-py3-none-any.whl";
        let archive = crafted(d.path(), &[(name, b"good")], &[]);
        let err = import(&archive, &d.path().join("x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing") && err.contains(name), "{err}");

        let src = wheelhouse();
        let archive = d.path().join("t.tar.zst");
        export_dir(src.path(), &[], &archive).unwrap();
        let bytes = std::fs::read(&archive).unwrap();
        std::fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
        assert!(import(&archive, &d.path().join("y")).is_err());
    }
}

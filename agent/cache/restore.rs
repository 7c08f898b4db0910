//! Restore: find the archive (exact key, else newest match of each restore prefix), stream it
//! from the store while hashing it, decompress and extract into staging directories next to the
//! targets, check the hash and size, then swap the stagings in. Any fault is a miss with a
//! reason; the targets are left as they were.
//!
//! Nothing the manifest says is trusted beyond its word: the download stops the moment it passes
//! the declared compressed size, extraction the moment the stream passes the declared
//! uncompressed size or file count (see [`super::extract`]), and a manifest declaring more than
//! the [`RestoreLimits`] is a miss before anything is downloaded.

use std::io;
use std::path::{Path, PathBuf};

use futures::StreamExt;

use super::archive::{ArchiveError, ExtractStats};
use super::digest::{self, ArchiveHasher};
use super::extract::{self, ExtractLimits, Piping};
use super::manifest::{self, Manifest};
use super::progress::Transfer;
use super::{RestoreHit, RestoreLimits, RestoreOutcome, Store};

/// How many candidate manifests to try per restore prefix before giving up on it.
const CANDIDATES_PER_PREFIX: usize = 5;

pub(super) async fn restore(
    store: &Store,
    key: &str,
    restore_keys: &[String],
    paths: &[PathBuf],
    limits: RestoreLimits,
) -> RestoreOutcome {
    let mut out = RestoreOutcome::default();
    if paths.is_empty() {
        out.warnings
            .push(format!("cache {key}: no paths to restore"));
        return out;
    }
    if let Some(found) = find(store, key, restore_keys, &mut out.warnings).await {
        let (manifest, hit) = found;
        // A download cut by the network is tried again from the start (a fresh staging);
        // a bad archive is not.
        let mut attempt = 1;
        let policy = store.retry_policy();
        let mut delay = policy.base_delay;
        let result = loop {
            match fetch_and_extract(store, &manifest, paths, limits).await {
                Err(f) if f.transient && attempt < policy.attempts => {
                    tracing::debug!(key, attempt, reason = %f.reason, "download failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => break other.map_err(|f| f.reason),
            }
        };
        match result {
            Ok((stats, bytes)) => {
                tracing::info!(
                    key,
                    matched = %manifest.key,
                    files = stats.files,
                    "cache {} hit: restored {} ({} files)",
                    if hit == RestoreHit::Exact { "exact" } else { "partial" },
                    manifest.key,
                    stats.files
                );
                out.hit = hit;
                out.matched_key = Some(manifest.key);
                out.bytes = bytes;
                return out;
            }
            Err(reason) => {
                let w = format!(
                    "cache {key}: not restoring {} from {}: {reason}; building without it",
                    manifest.key,
                    store.display()
                );
                tracing::warn!("{w}");
                out.warnings.push(w);
            }
        }
    }
    for p in paths {
        let _ = std::fs::create_dir_all(p);
    }
    out
}

/// Which key a restore would use, without downloading anything (`--lookup-only`).
pub(super) async fn lookup(store: &Store, key: &str, restore_keys: &[String]) -> RestoreOutcome {
    let mut out = RestoreOutcome::default();
    if let Some((m, hit)) = find(store, key, restore_keys, &mut out.warnings).await {
        out.hit = hit;
        out.bytes = m.compressed_size;
        out.matched_key = Some(m.key);
    }
    out
}

/// Find the manifest to restore. Store errors end the search (a warning, then a miss).
async fn find(
    store: &Store,
    key: &str,
    restore_keys: &[String],
    warnings: &mut Vec<String>,
) -> Option<(Manifest, RestoreHit)> {
    let mut warn = |w: String| {
        tracing::warn!("{w}");
        warnings.push(w);
    };
    if let Err(e) = manifest::validate_key(key) {
        warn(format!("cache miss: {e}"));
        return None;
    }
    if let Some(found) = find_on_service(store, key, restore_keys, &mut warn).await {
        return found;
    }
    let mpath = manifest::manifest_path(key);
    match store.retry(|| store.get(&mpath)).await {
        Ok(Some(bytes)) => match Manifest::parse(&bytes, key) {
            Ok(m) => return Some((m, RestoreHit::Exact)),
            Err(e) => warn(format!("cache {key}: ignoring its manifest: {e}")),
        },
        Ok(None) => {}
        Err(e) => {
            warn(format!(
                "cache {key}: store unavailable ({e}); building without cache"
            ));
            return None;
        }
    }
    for prefix in restore_keys {
        if let Err(e) = manifest::validate_prefix(prefix) {
            warn(format!("cache {key}: skipping restore key: {e}"));
            continue;
        }
        let list_prefix = format!("{}{prefix}", manifest::PREFIX);
        let entries = match store.retry(|| store.list(&list_prefix)).await {
            Ok(v) => v,
            Err(e) if e.is_unsupported() => {
                warn(format!(
                    "cache {key}: store {} cannot list keys, so restore keys are not used",
                    store.display()
                ));
                return None;
            }
            Err(e) => {
                warn(format!(
                    "cache {key}: store unavailable ({e}); building without cache"
                ));
                return None;
            }
        };
        let mut candidates: Vec<(String, Option<chrono::DateTime<chrono::Utc>>)> = entries
            .into_iter()
            .filter_map(|e| {
                let name = e.path.strip_prefix(manifest::PREFIX)?;
                let k = name.strip_suffix(".json")?;
                (!k.contains('/') && k != key).then(|| (k.to_string(), e.modified))
            })
            .collect();
        // Newest first; without modification times, read the manifests to order them.
        if candidates.iter().any(|(_, m)| m.is_none()) {
            let mut dated = Vec::new();
            for (k, _) in candidates.drain(..) {
                if let Ok(Some(b)) = store.get(&manifest::manifest_path(&k)).await {
                    if let Ok(m) = Manifest::parse(&b, &k) {
                        dated.push((k, Some(m.created)));
                    }
                }
            }
            candidates = dated;
        }
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        for (k, _) in candidates.into_iter().take(CANDIDATES_PER_PREFIX) {
            let kpath = manifest::manifest_path(&k);
            match store.retry(|| store.get(&kpath)).await {
                Ok(Some(bytes)) => match Manifest::parse(&bytes, &k) {
                    Ok(m) => return Some((m, RestoreHit::Partial)),
                    Err(e) => warn(format!("cache {k}: ignoring its manifest: {e}")),
                },
                Ok(None) => {}
                Err(e) => {
                    warn(format!(
                        "cache {key}: store unavailable ({e}); building without cache"
                    ));
                    return None;
                }
            }
        }
    }
    None
}

/// A store whose service matches prefixes itself (the GitHub cache): one lookup (per 10 keys)
/// names the exact key and every restore prefix, and the service answers with the newest match
/// of the first that has one. Its version scoping keeps archives out of a manifest lookup.
async fn find_on_service(
    store: &Store,
    key: &str,
    restore_keys: &[String],
    warn: &mut impl FnMut(String),
) -> Option<Option<(Manifest, RestoreHit)>> {
    let exact = manifest::manifest_path(key);
    let mut prefixes = Vec::new();
    let mut skipped = Vec::new();
    for p in restore_keys {
        match manifest::validate_prefix(p) {
            Ok(()) => prefixes.push(format!("{}{p}", manifest::PREFIX)),
            Err(e) => skipped.push(format!("cache {key}: skipping restore key: {e}")),
        }
    }
    // `None`: the store has no lookup of its own; the caller lists.
    let lookup = store.find_newest(&exact, &prefixes, &exact).await?;
    skipped.into_iter().for_each(&mut *warn);
    let (path, body) = match lookup {
        Ok(Some(f)) => f,
        Ok(None) => return Some(None),
        Err(e) => {
            warn(format!(
                "cache {key}: {} unavailable ({e}); building without cache",
                store.service()
            ));
            return Some(None);
        }
    };
    let matched = path
        .strip_prefix(manifest::PREFIX)
        .and_then(|n| n.strip_suffix(".json"))
        .unwrap_or(&path)
        .to_string();
    let bytes = match body {
        Ok(b) => b,
        Err(e) => {
            warn(format!(
                "cache {key}: cannot read the manifest of {matched} ({e}); building without cache"
            ));
            return Some(None);
        }
    };
    Some(match Manifest::parse(&bytes, &matched) {
        Ok(m) if matched == key => Some((m, RestoreHit::Exact)),
        Ok(m) => Some((m, RestoreHit::Partial)),
        Err(e) => {
            warn(format!("cache {matched}: ignoring its manifest: {e}"));
            None
        }
    })
}

/// Unique-enough suffix for temporary names: pid, time, counter.
pub(super) fn unique_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{n}", std::process::id())
}

/// A sibling of `target` named `.{name}.{tag}-{id}`: same directory, so same filesystem, so the
/// final rename is atomic.
fn sibling(target: &Path, tag: &str, id: &str) -> Result<PathBuf, String> {
    let name = target
        .file_name()
        .ok_or_else(|| format!("{} has no directory name", target.display()))?
        .to_string_lossy()
        .to_string();
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(parent.join(format!(".{name}.{tag}-{id}")))
}

/// Stagings removed on drop unless swapped in.
struct Stagings(Vec<PathBuf>);

impl Drop for Stagings {
    fn drop(&mut self) {
        for s in &self.0 {
            let _ = std::fs::remove_dir_all(s);
        }
    }
}

/// The archive's bytes, as read from the store, with their checksum (the kind its manifest
/// names).
struct Fetched {
    checksum: String,
    size: u64,
    /// The extractor stopped reading before the end.
    cut_short: bool,
}

type Chunk = io::Result<Vec<u8>>;

/// Reads the chunks a producer (file reader thread or download task) sends.
struct RawReader {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    cur: Vec<u8>,
    pos: usize,
    /// Consumed chunks go back to the producer for reuse.
    recycle: std::sync::mpsc::SyncSender<Vec<u8>>,
}

/// Reading straight out of the received chunks (no intermediate buffer copy).
impl io::BufRead for RawReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.cur.len() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => {
                    let used = std::mem::replace(&mut self.cur, c);
                    if used.capacity() > 0 {
                        let _ = self.recycle.try_send(used);
                    }
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(&[]),
            }
        }
        Ok(&self.cur[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.cur.len());
    }
}

impl io::Read for RawReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use io::BufRead;
        let avail = self.fill_buf()?;
        let n = buf.len().min(avail.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Why a fetch failed, and whether trying again may help (the network, not the archive).
struct FetchFailure {
    reason: String,
    transient: bool,
}

impl From<String> for FetchFailure {
    fn from(reason: String) -> Self {
        FetchFailure {
            reason,
            transient: false,
        }
    }
}

fn transient(reason: String) -> FetchFailure {
    FetchFailure {
        reason,
        transient: true,
    }
}

/// The bounds extraction must keep: what the manifest declares, refused outright when that is
/// more than `limits` allow.
fn extract_limits(m: &Manifest, limits: RestoreLimits) -> Result<ExtractLimits, String> {
    use super::progress::human_bytes;
    let declared = m.uncompressed_size.max(m.compressed_size);
    if declared > limits.max_bytes {
        return Err(format!(
            "its manifest declares {}, more than cache.max_restore_size ({})",
            human_bytes(declared),
            human_bytes(limits.max_bytes)
        ));
    }
    if m.file_count > limits.max_entries {
        return Err(format!(
            "its manifest declares {} files, more than cache.max_restore_entries ({})",
            m.file_count, limits.max_entries
        ));
    }
    Ok(ExtractLimits {
        max_tar_bytes: m.uncompressed_size,
        max_files: m.file_count,
        max_entries: limits.max_entries,
    })
}

async fn fetch_and_extract(
    store: &Store,
    m: &Manifest,
    paths: &[PathBuf],
    limits: RestoreLimits,
) -> Result<(ExtractStats, u64), FetchFailure> {
    if m.paths.len() != paths.len() {
        return Err(format!(
            "the archive holds {} directories but {} were asked for",
            m.paths.len(),
            paths.len()
        )
        .into());
    }
    let bounds = extract_limits(m, limits)?;
    let id = unique_id();
    let mut stagings = Stagings(Vec::new());
    for p in paths {
        let staging = sibling(p, "kiln-restore", &id)?;
        if let Some(parent) = staging.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::create_dir(&staging)
            .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
        stagings.0.push(staging);
    }

    let staging_paths = stagings.0.clone();
    let (stats, size) = match store.local_root() {
        Some(root) if m.compressed_size <= SMALL_LOCAL_ARCHIVE => {
            let (path, m, bar) = (root.join(&m.archive), m.clone(), store.transfer().progress);
            tokio::task::spawn_blocking(move || small_local(&path, &m, &staging_paths, bounds, bar))
                .await
                .map_err(|e| format!("extraction task failed: {e}"))??
        }
        _ => stream_and_extract(store, m, staging_paths, bounds).await?,
    };
    swap_in(&stagings.0, paths).map_err(FetchFailure::from)?;
    stagings.0.clear();
    Ok((stats, size))
}

/// Archives of a `file://` store up to this size are extracted with [`Piping::NARROW`].
const SMALL_LOCAL_ARCHIVE: u64 = 8 << 20;

/// A small archive of a `file://` store: read in 128 KiB pieces (never past one byte over its
/// declared size) and hashed by the decompressor thread itself, no reader thread; the parser
/// writes every file. Checked against the manifest like a streamed archive before the swap.
fn small_local(
    path: &Path,
    m: &Manifest,
    stagings: &[PathBuf],
    bounds: ExtractLimits,
    bar: bool,
) -> Result<(ExtractStats, u64), FetchFailure> {
    use std::io::Read;
    let transfer = Transfer::new("download", &m.key, Some(m.compressed_size), bar);
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot open the archive {}: {e}", path.display()))?;
    let mut raw = io::BufReader::with_capacity(
        128 << 10,
        Metered {
            // One byte past the declared size, so a padded file is noticed.
            inner: file.take(m.compressed_size + 1),
            meter: Meter::new(m),
            past_size: None,
        },
    );
    let extracted =
        extract::extract_archive(&mut raw, m.compression, stagings, bounds, Piping::NARROW);
    // Whatever follows the compressed stream still counts towards the size and the hash.
    let drained = match extracted {
        Ok(_) => io::copy(&mut raw, &mut io::sink()).map(|_| ()),
        Err(_) => Ok(()),
    };
    let metered = raw.into_inner();
    if let Some(reason) = metered.past_size {
        return Err(reason.into());
    }
    drained.map_err(|e| format!("reading the archive failed: {e}"))?;
    let fetched = metered.meter.finish(false);
    transfer.finish(fetched.size);
    let stats = check_fetched(&fetched, extracted, m)?;
    Ok((stats, fetched.size))
}

/// Hashes and counts what is read through it; an error once past the declared size (kept as
/// the reason: the extractor only sees a failed read).
struct Metered<R> {
    inner: R,
    meter: Meter,
    past_size: Option<String>,
}

impl<R: io::Read> io::Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(msg) = self.meter.add(&buf[..n]) {
            self.past_size.get_or_insert(msg.clone());
            return Err(too_large(&msg));
        }
        Ok(n)
    }
}

/// Stream the archive from the store into the extractor (hashing it on the way), then check
/// it against the manifest.
async fn stream_and_extract(
    store: &Store,
    m: &Manifest,
    staging_paths: Vec<PathBuf>,
    bounds: ExtractLimits,
) -> Result<(ExtractStats, u64), FetchFailure> {
    let settings = store.transfer();
    let transfer = Transfer::new(
        "download",
        &m.key,
        Some(m.compressed_size),
        settings.progress,
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(16);
    let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
    let source = Source {
        object: &m.archive,
        meter: Meter::new(m),
    };
    let producer = spawn_producer(store, source, tx, recycle_rx, transfer.clone()).await?;
    let compression = m.compression;
    let extractor = tokio::task::spawn_blocking(move || {
        let mut reader = RawReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            recycle: recycle_tx,
        };
        extract::extract_archive(
            &mut reader,
            compression,
            &staging_paths,
            bounds,
            Piping::wide(settings.extract_threads),
        )
    });
    let extracted = extractor
        .await
        .map_err(|e| format!("extraction task failed: {e}"))?;
    let fetched = producer
        .await
        .map_err(|e| format!("download task failed: {e}"))?;
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => {
            transfer.abandon();
            return Err(e);
        }
    };
    transfer.finish(fetched.size);
    let stats = check_fetched(&fetched, extracted, m)?;
    Ok((stats, fetched.size))
}

/// Whether what was downloaded and extracted is the archive the manifest describes. When the
/// extractor stopped early, its reason comes first (the download was cut because of it).
fn check_fetched(
    fetched: &Fetched,
    extracted: Result<ExtractStats, ArchiveError>,
    m: &Manifest,
) -> Result<ExtractStats, String> {
    if fetched.cut_short {
        extracted.map_err(|e| e.to_string())?;
        return Err("the archive has data after its end".into());
    }
    check_size(fetched, m)?;
    let stats = extracted.map_err(|e| e.to_string())?;
    check_checksum(fetched, m)?;
    Ok(stats)
}

fn check_size(fetched: &Fetched, m: &Manifest) -> Result<(), String> {
    if fetched.size != m.compressed_size {
        return Err(format!(
            "archive is truncated or padded: {} bytes, the manifest says {}",
            fetched.size, m.compressed_size
        ));
    }
    Ok(())
}

fn check_checksum(fetched: &Fetched, m: &Manifest) -> Result<(), String> {
    digest::check(m, &fetched.checksum)
}

/// The archive object to read, and what counts and hashes its bytes.
struct Source<'a> {
    object: &'a str,
    meter: Meter,
}

/// Hashes and counts the archive's bytes on their way to the extractor, and stops the download
/// the moment it passes the declared size.
struct Meter {
    hasher: ArchiveHasher,
    size: u64,
    declared: u64,
}

impl Meter {
    /// For the archive `m` describes: its declared size and its kind of checksum.
    fn new(m: &Manifest) -> Self {
        Meter {
            hasher: ArchiveHasher::for_manifest(m),
            size: 0,
            declared: m.compressed_size,
        }
    }

    /// Count `bytes`; an error (also sent to the extractor) once past the declared size.
    fn add(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        if self.size > self.declared {
            return Err(format!(
                "the archive is larger than the {} bytes its manifest declares",
                self.declared
            ));
        }
        Ok(())
    }

    fn finish(self, cut_short: bool) -> Fetched {
        Fetched {
            checksum: self.hasher.finish(),
            size: self.size,
            cut_short,
        }
    }
}

/// The read error for bytes past the declared size.
fn too_large(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::FileTooLarge, msg.to_string())
}

/// Start sending the archive's bytes into `tx`, hashing them on the way.
async fn spawn_producer(
    store: &Store,
    source: Source<'_>,
    tx: tokio::sync::mpsc::Sender<Chunk>,
    recycle: std::sync::mpsc::Receiver<Vec<u8>>,
    transfer: Transfer,
) -> Result<tokio::task::JoinHandle<Result<Fetched, FetchFailure>>, FetchFailure> {
    let meter = source.meter;
    if let Some(root) = store.local_root() {
        let path = root.join(source.object);
        let file = std::fs::File::open(&path)
            .map_err(|e| format!("cannot open the archive {}: {e}", path.display()))?;
        return Ok(tokio::task::spawn_blocking(move || {
            read_local(file, meter, tx, recycle, transfer).map_err(FetchFailure::from)
        }));
    }
    // Opening the stream has its own retry budget; only a download cut mid-stream is worth a
    // fresh start by the caller.
    let stream = store
        .retry(|| store.read_stream(source.object))
        .await
        .map_err(|e| format!("download failed: {e}"))?;
    Ok(tokio::spawn(read_remote(stream, meter, tx, transfer)))
}

async fn read_remote(
    mut stream: super::store::ByteStream,
    mut meter: Meter,
    tx: tokio::sync::mpsc::Sender<Chunk>,
    transfer: Transfer,
) -> Result<Fetched, FetchFailure> {
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => {
                if let Err(msg) = meter.add(&b) {
                    let _ = tx.send(Err(too_large(&msg))).await;
                    return Err(msg.into());
                }
                transfer.set(meter.size);
                if tx.send(Ok(b.to_vec())).await.is_err() {
                    return Ok(meter.finish(true));
                }
            }
            Err(e) => {
                let msg = format!("download interrupted after {} bytes: {e}", meter.size);
                let _ = tx
                    .send(Err(io::Error::new(io::ErrorKind::BrokenPipe, msg.clone())))
                    .await;
                return Err(transient(msg));
            }
        }
    }
    Ok(meter.finish(false))
}

fn read_local(
    mut file: std::fs::File,
    mut meter: Meter,
    tx: tokio::sync::mpsc::Sender<Chunk>,
    recycle: std::sync::mpsc::Receiver<Vec<u8>>,
    transfer: Transfer,
) -> Result<Fetched, String> {
    use std::io::Read;
    let chunk = local_chunk_size(meter.declared);
    loop {
        // Read into the buffer's spare capacity: nothing is zeroed first, and no page is
        // touched beyond what the archive fills.
        let mut buf = recycle.try_recv().unwrap_or_default();
        buf.clear();
        buf.reserve_exact(chunk);
        if let Err(e) = (&mut file).take(chunk as u64).read_to_end(&mut buf) {
            let msg = format!("reading the archive failed after {} bytes: {e}", meter.size);
            let _ = tx.blocking_send(Err(io::Error::other(msg.clone())));
            return Err(msg);
        }
        if buf.is_empty() {
            break;
        }
        if let Err(msg) = meter.add(&buf) {
            let _ = tx.blocking_send(Err(too_large(&msg)));
            return Err(msg);
        }
        transfer.set(meter.size);
        if tx.blocking_send(Ok(buf)).is_err() {
            // The extractor stopped early (a bad entry): its reason is the one reported.
            return Ok(meter.finish(true));
        }
    }
    Ok(meter.finish(false))
}

/// Chunks of a local archive: up to 4 MiB, no bigger than the archive (plus one byte, so a
/// padded file is still noticed) and never below 64 KiB.
fn local_chunk_size(declared: u64) -> usize {
    declared.saturating_add(1).clamp(64 << 10, 4 << 20) as usize
}

/// Put every staging in place of its target, all or nothing: the old targets are moved aside
/// first and moved back if any rename fails.
fn swap_in(stagings: &[PathBuf], targets: &[PathBuf]) -> Result<(), String> {
    let id = unique_id();
    let mut done: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    let rollback = |done: &mut Vec<(PathBuf, Option<PathBuf>)>| {
        for (target, backup) in done.drain(..).rev() {
            let _ = std::fs::remove_dir_all(&target);
            if let Some(b) = backup {
                let _ = std::fs::rename(&b, &target);
            }
        }
    };
    for (staging, target) in stagings.iter().zip(targets) {
        let backup = match std::fs::symlink_metadata(target) {
            Ok(_) => {
                let b = match sibling(target, "kiln-old", &id) {
                    Ok(b) => b,
                    Err(e) => {
                        rollback(&mut done);
                        return Err(e);
                    }
                };
                if let Err(e) = std::fs::rename(target, &b) {
                    rollback(&mut done);
                    return Err(format!("cannot move {} aside: {e}", target.display()));
                }
                Some(b)
            }
            Err(_) => None,
        };
        if let Err(e) = std::fs::rename(staging, target) {
            if let Some(b) = &backup {
                let _ = std::fs::rename(b, target);
            }
            rollback(&mut done);
            return Err(format!(
                "cannot move the restored files into {}: {e}",
                target.display()
            ));
        }
        done.push((target.clone(), backup));
    }
    for (_, backup) in done {
        if let Some(b) = backup {
            match std::fs::symlink_metadata(&b) {
                Ok(m) if m.is_dir() => {
                    let _ = std::fs::remove_dir_all(&b);
                }
                _ => {
                    let _ = std::fs::remove_file(&b);
                }
            }
        }
    }
    Ok(())
}

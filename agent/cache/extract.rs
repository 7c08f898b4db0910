//! Safe, bounded extraction of a cache archive (see [`super::archive`] for the layout).
//!
//! Why a hand-written extractor instead of `tar::Entry::unpack_in`: an archive comes from a shared
//! store and is never trusted. `unpack_in` silently skips some bad entries; we want every one of
//! them (`..`, absolute paths, links escaping the target, devices, FIFOs, a path given twice) to
//! turn the whole restore into a miss with a reason, and we must make sure no entry is ever
//! written *through* a symlink the archive itself created. Symlinks are therefore created last,
//! after every file and directory, and only when their target stays inside the slot.
//!
//! Why bounds: the manifest beside an archive is as untrusted as the archive. The decompressed
//! stream may not grow past the size the manifest declares (nor past `cache.max_restore_size`),
//! the archive may not hold more files than it declares nor more entries than the cap, and a zstd
//! frame may not ask for a window above [`MAX_WINDOW_LOG`]. Extraction stops the moment one is
//! crossed, so a lying archive costs at most what it declared.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::archive::{check_symlink_target, ArchiveError, ExtractStats};
use super::writers::{FileJob, WriterPool};
use crate::settings::file::Compression;

/// The largest zstd window a restore accepts: 2^27 = 128 MiB of decoder memory. Kiln's own
/// archives use at most 8 MiB (level 19); a bigger window can only be an attempt to exhaust
/// memory.
pub const MAX_WINDOW_LOG: u32 = 27;

/// What an archive may hold before extraction stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Bytes of the decompressed tar stream.
    pub max_tar_bytes: u64,
    /// Regular files.
    pub max_files: u64,
    /// Entries of every kind (files, directories, links).
    pub max_entries: u64,
}

impl ExtractLimits {
    /// No limit at all: only for archives Kiln has just written itself.
    pub const UNLIMITED: ExtractLimits = ExtractLimits {
        max_tar_bytes: u64::MAX,
        max_files: u64::MAX,
        max_entries: u64::MAX,
    };
}

/// Parse an entry path into (slot, path relative to the slot), refusing anything that is not a
/// plain relative path made of names.
pub(super) fn entry_slot_path(raw: &Path, slots: usize) -> Result<(usize, PathBuf), String> {
    let mut comps = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => comps.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("path is absolute".into()),
        }
    }
    let Some(first) = comps.first() else {
        return Err("empty path".into());
    };
    let slot: usize = first
        .to_str()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() < 6)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "path is outside every cached directory".to_string())?;
    if slot >= slots {
        return Err(format!(
            "path belongs to directory #{slot}, but only {slots} directories are restored"
        ));
    }
    Ok((slot, comps[1..].iter().collect()))
}

/// Files up to this size are written by the writer pool; larger ones are streamed by the
/// parser thread (so at most queue depth × this much is held in memory).
const POOL_FILE_LIMIT: u64 = 1 << 20;

fn pool_err((path, source): (PathBuf, io::Error)) -> ArchiveError {
    ArchiveError::Extract { path, source }
}

/// One entry, already checked to be a plain path inside slot `slot`.
struct Placed {
    shown: String,
    slot: usize,
    rel: PathBuf,
    dest: PathBuf,
}

impl Placed {
    fn unsafe_entry(&self, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Unsafe {
            entry: self.shown.clone(),
            reason: reason.into(),
        }
    }
    fn io_err(&self, source: io::Error) -> ArchiveError {
        ArchiveError::Extract {
            path: self.dest.clone(),
            source,
        }
    }
}

/// A symlink to create once every file and directory is in place.
struct PendingLink {
    dest: PathBuf,
    target: PathBuf,
    rel: PathBuf,
}

/// The state of one extraction: where each slot goes, what was seen, what is still to do.
struct Extractor<'a> {
    stagings: &'a [PathBuf],
    limits: ExtractLimits,
    stats: ExtractStats,
    entries: u64,
    /// Every (slot, path) extracted so far: a second entry at the same path is refused, so the
    /// result never depends on which of two entries "wins".
    seen: HashSet<(usize, PathBuf)>,
    links: Vec<PendingLink>,
    link_paths: HashSet<PathBuf>,
    buf: Vec<u8>,
    pool: WriterPool,
    /// The last directory known to exist: consecutive files mostly share it.
    last_parent: Option<PathBuf>,
}

/// Extract the tar stream `tar_stream` (already decompressed) into `stagings[i]` for slot `i`,
/// within `limits`, with `writers` file writer threads (0: the caller writes every file). The
/// staging directories must exist and be empty. On error, the stagings hold partial content; the
/// caller throws them away.
fn extract_tar<R: Read>(
    tar_stream: R,
    stagings: &[PathBuf],
    limits: ExtractLimits,
    writers: usize,
) -> Result<ExtractStats, ArchiveError> {
    let mut archive = tar::Archive::new(tar_stream);
    let mut x = Extractor {
        stagings,
        limits,
        stats: ExtractStats::default(),
        entries: 0,
        seen: HashSet::new(),
        links: Vec::new(),
        link_paths: HashSet::new(),
        // Large files stream through this buffer (every file, without writer threads).
        buf: vec![0u8; if writers == 0 { 128 << 10 } else { 1 << 20 }],
        pool: WriterPool::new(writers, 64),
        last_parent: None,
    };
    for entry in archive.entries().map_err(ArchiveError::Corrupt)? {
        x.entry(entry.map_err(ArchiveError::Corrupt)?)?;
    }
    x.finish()
}

impl Extractor<'_> {
    /// Check one entry's path and bounds, then extract it by kind.
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<R>) -> Result<(), ArchiveError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let placed = self.place(&entry)?;
        match kind {
            tar::EntryType::Directory => {
                fs::create_dir_all(&placed.dest).map_err(|e| placed.io_err(e))
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.count_file(&placed)?;
                self.file(&placed, &mut entry)
            }
            tar::EntryType::Symlink => self.symlink(placed, &entry),
            tar::EntryType::Link => self.hard_link(&placed, &entry),
            tar::EntryType::Char | tar::EntryType::Block => Err(placed.unsafe_entry("device file")),
            tar::EntryType::Fifo => Err(placed.unsafe_entry("FIFO (named pipe)")),
            other => Err(ArchiveError::Unsupported {
                entry: placed.shown,
                kind: format!("{other:?}"),
            }),
        }
    }

    /// Where an entry goes: refused when its path escapes, repeats an earlier entry's, or when
    /// the archive already holds as many entries as allowed.
    fn place<R: Read>(&mut self, entry: &tar::Entry<R>) -> Result<Placed, ArchiveError> {
        let raw = entry.path().map_err(ArchiveError::Corrupt)?.into_owned();
        let shown = raw.display().to_string();
        let (slot, rel) =
            entry_slot_path(&raw, self.stagings.len()).map_err(|reason| ArchiveError::Unsafe {
                entry: shown.clone(),
                reason,
            })?;
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ArchiveError::Bound(format!(
                "the archive holds more than {} entries (cache.max_restore_entries)",
                self.limits.max_entries
            )));
        }
        if !self.seen.insert((slot, rel.clone())) {
            return Err(ArchiveError::Unsafe {
                entry: shown,
                reason: "duplicate path: the archive holds it twice".into(),
            });
        }
        let dest = self.stagings[slot].join(&rel);
        Ok(Placed {
            shown,
            slot,
            rel,
            dest,
        })
    }

    fn count_file(&mut self, placed: &Placed) -> Result<(), ArchiveError> {
        if placed.rel.as_os_str().is_empty() {
            return Err(placed.unsafe_entry("a file in place of a cached directory"));
        }
        self.stats.files += 1;
        if self.stats.files > self.limits.max_files {
            return Err(ArchiveError::Bound(format!(
                "the archive holds more files than the {} its manifest declares",
                self.limits.max_files
            )));
        }
        Ok(())
    }

    /// A regular file: small ones go to the writer pool, large ones are streamed here.
    fn file<R: Read>(
        &mut self,
        placed: &Placed,
        entry: &mut tar::Entry<R>,
    ) -> Result<(), ArchiveError> {
        if let Some(parent) = placed.dest.parent() {
            if self.last_parent.as_deref() != Some(parent) {
                fs::create_dir_all(parent).map_err(|e| placed.io_err(e))?;
                self.last_parent = Some(parent.to_path_buf());
            }
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let mtime = entry.header().mtime().ok();
        let size = entry.size();
        // Without writer threads a file is streamed through the one reused buffer: a buffer
        // per file would only add an allocation and page faults.
        if size <= POOL_FILE_LIMIT && !self.pool.is_inline() {
            let mut data = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut data)
                .map_err(ArchiveError::Corrupt)?;
            self.stats.bytes += data.len() as u64;
            return self
                .pool
                .submit(FileJob {
                    dest: placed.dest.clone(),
                    mode,
                    mtime,
                    data,
                })
                .map_err(pool_err);
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&placed.dest)
            .map_err(|e| placed.io_err(e))?;
        loop {
            let n = entry.read(&mut self.buf).map_err(ArchiveError::Corrupt)?;
            if n == 0 {
                break;
            }
            file.write_all(&self.buf[..n])
                .map_err(|e| placed.io_err(e))?;
            self.stats.bytes += n as u64;
        }
        if let Some(m) = mtime {
            let _ = file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(m));
        }
        Ok(())
    }

    /// A symlink is checked now and created at the end.
    fn symlink<R: Read>(
        &mut self,
        placed: Placed,
        entry: &tar::Entry<R>,
    ) -> Result<(), ArchiveError> {
        let target = entry
            .link_name()
            .map_err(ArchiveError::Corrupt)?
            .ok_or_else(|| placed.unsafe_entry("symlink without a target"))?
            .into_owned();
        if placed.rel.as_os_str().is_empty() {
            return Err(placed.unsafe_entry("a link in place of a cached directory"));
        }
        check_symlink_target(&placed.rel.to_string_lossy(), &target)
            .map_err(|r| placed.unsafe_entry(format!("symlink to {}: {r}", target.display())))?;
        self.link_paths.insert(placed.dest.clone());
        self.links.push(PendingLink {
            dest: placed.dest,
            target,
            rel: placed.rel,
        });
        Ok(())
    }

    /// A hard link, only to a regular file this archive extracted earlier in the same slot.
    fn hard_link<R: Read>(
        &mut self,
        placed: &Placed,
        entry: &tar::Entry<R>,
    ) -> Result<(), ArchiveError> {
        let target = entry
            .link_name()
            .map_err(ArchiveError::Corrupt)?
            .ok_or_else(|| placed.unsafe_entry("hard link without a target"))?
            .into_owned();
        let refuse = |r: &str| placed.unsafe_entry(format!("hard link to {}{r}", target.display()));
        let (tslot, trel) =
            entry_slot_path(&target, self.stagings.len()).map_err(|r| refuse(&format!(": {r}")))?;
        if tslot != placed.slot {
            return Err(refuse(" crosses cached directories"));
        }
        let source = self.stagings[tslot].join(&trel);
        self.pool.flush().map_err(pool_err)?;
        // The staging started empty and holds no symlinks yet, so a regular file at this
        // normalized path can only be one this archive extracted earlier.
        let is_file = fs::symlink_metadata(&source)
            .map(|m| m.file_type().is_file())
            .unwrap_or(false);
        if !is_file {
            return Err(refuse(", which is not a file extracted before it"));
        }
        if let Some(parent) = placed.dest.parent() {
            fs::create_dir_all(parent).map_err(|e| placed.io_err(e))?;
        }
        fs::hard_link(&source, &placed.dest).map_err(|e| placed.io_err(e))
    }

    /// Wait for the writers, then create the symlinks: no entry above was written through one.
    fn finish(self) -> Result<ExtractStats, ArchiveError> {
        self.pool.finish().map_err(pool_err)?;
        for link in &self.links {
            create_link(link, &self.link_paths)?;
        }
        Ok(self.stats)
    }
}

/// Create one symlink. Its own parent directories must not be links either (checked against the
/// archive's links, the only ones in the staging).
fn create_link(link: &PendingLink, link_paths: &HashSet<PathBuf>) -> Result<(), ArchiveError> {
    let io_err = |source| ArchiveError::Extract {
        path: link.dest.clone(),
        source,
    };
    if link
        .dest
        .ancestors()
        .skip(1)
        .any(|a| link_paths.contains(a))
    {
        return Err(ArchiveError::Unsafe {
            entry: link.rel.display().to_string(),
            reason: "symlink inside another symlinked directory".into(),
        });
    }
    if let Some(parent) = link.dest.parent() {
        fs::create_dir_all(parent).map_err(io_err)?;
    }
    std::os::unix::fs::symlink(&link.target, &link.dest).map_err(io_err)
}

/// The decompressor for `compression`, with zstd's window capped at [`MAX_WINDOW_LOG`].
fn decoder<'a, R: io::BufRead + 'a>(
    compressed: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(compressed)?;
            d.window_log_max(MAX_WINDOW_LOG)?;
            Box::new(d)
        }
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(compressed)),
    })
}

/// The decompressed stream went past the `max` bytes the manifest declares.
fn expands_past(max: u64) -> ArchiveError {
    ArchiveError::Bound(format!(
        "the archive expands past the {max} bytes its manifest declares"
    ))
}

/// A decompression error, named when it is zstd refusing a window above the cap.
fn decode_error(e: io::Error) -> ArchiveError {
    // zstd's ZSTD_error_frameParameter_windowTooLarge.
    if e.to_string().contains("too much memory") {
        return ArchiveError::Bound(format!(
            "the zstd frame asks for a window larger than the {} MiB limit",
            (1u64 << MAX_WINDOW_LOG) >> 20
        ));
    }
    ArchiveError::Corrupt(e)
}

/// How the decompressed stream travels from the decompressor thread to the tar parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piping {
    /// Bytes per chunk handed from the decompressor to the parser.
    pub chunk: usize,
    /// File writer threads (0: the parser writes every file itself).
    pub writers: usize,
}

impl Piping {
    /// A large or remote archive: 1 MiB chunks, and `writers` threads for its many small files
    /// (`TransferSettings::extract_threads`).
    pub fn wide(writers: usize) -> Piping {
        Piping {
            chunk: 1 << 20,
            writers,
        }
    }

    /// A small archive (a warm run's few MB): 128 KiB chunks and no writer threads, whose
    /// start-up and buffers would cost more than they save. Still two threads, like
    /// `zstd -d | tar x`: reading, hashing and decompressing overlap with writing the files.
    pub const NARROW: Piping = Piping {
        chunk: 128 << 10,
        writers: 0,
    };
}

/// The decompressor thread's loop: read `reader` in `chunk`-sized pieces into `tx` until the
/// end, a read error, or more than `max_bytes` of output.
fn pump(
    mut reader: Box<dyn Read + '_>,
    max_bytes: u64,
    chunk_size: usize,
    tx: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
    recycle: std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<(), ArchiveError> {
    let mut total = 0u64;
    loop {
        let mut chunk = recycle.try_recv().unwrap_or_default();
        chunk.resize(chunk_size, 0);
        let mut filled = 0;
        while filled < chunk.len() {
            match reader.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(decode_error(e));
                }
            }
        }
        if filled == 0 {
            return Ok(());
        }
        total += filled as u64;
        if total > max_bytes {
            let _ = tx.send(Err(io::Error::other("archive larger than declared")));
            return Err(expands_past(max_bytes));
        }
        chunk.truncate(filled);
        if tx.send(Ok(chunk)).is_err() {
            // The extractor stopped (it found a bad entry): stop too.
            return Ok(());
        }
    }
}

/// Decompress `compressed` with `compression` and extract it (see [`extract_tar`]). The tar
/// parser runs on this thread and the decompressor on a second one, like `zstd -d | tar x`;
/// `piping` sets the chunks between them and the file writer threads. `compressed` is read to
/// its end (unless extraction fails) and left with the caller, who may still check what it read.
pub fn extract_archive<R: io::BufRead + Send>(
    compressed: &mut R,
    compression: Compression,
    stagings: &[PathBuf],
    limits: ExtractLimits,
    piping: Piping,
) -> Result<ExtractStats, ArchiveError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(8);
    // Consumed chunks come back for reuse: no allocation or zeroing per chunk.
    let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
    std::thread::scope(|scope| {
        let decomp = std::thread::Builder::new()
            .name("kiln-decompress".into())
            .spawn_scoped(scope, move || -> Result<(), ArchiveError> {
                let reader = decoder(compressed, compression).map_err(decode_error)?;
                pump(reader, limits.max_tar_bytes, piping.chunk, tx, recycle_rx)
            })
            .map_err(ArchiveError::Thread)?;
        let mut reader = ChannelReader::new(rx).recycling(recycle_tx);
        let result = extract_tar(&mut reader, stagings, limits, piping.writers);
        // Drain the rest so a corrupt tail (after the tar end marker) is still detected.
        let drained = if result.is_ok() {
            io::copy(&mut reader, &mut io::sink()).map(|_| ())
        } else {
            Ok(())
        };
        drop(reader);
        let decomp_result = decomp.join().unwrap_or_else(|_| {
            Err(ArchiveError::Corrupt(io::Error::other(
                "decompressor thread panicked",
            )))
        });
        // A crossed bound is the real reason even when the tar parser saw the stream end first.
        if let Err(e @ ArchiveError::Bound(_)) = decomp_result {
            return Err(e);
        }
        let stats = result?;
        drained.map_err(ArchiveError::Corrupt)?;
        decomp_result?;
        Ok(stats)
    })
}

/// Reads chunks sent over a channel; an `Err` chunk is returned as the read error.
pub struct ChannelReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    recycle: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
}

impl ChannelReader {
    pub fn new(rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        Self {
            rx,
            cur: Vec::new(),
            pos: 0,
            recycle: None,
        }
    }

    /// Send consumed chunks back to the producer through `tx`.
    pub fn recycling(mut self, tx: std::sync::mpsc::SyncSender<Vec<u8>>) -> Self {
        self.recycle = Some(tx);
        self
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.cur, chunk);
                    if let Some(r) = &self.recycle {
                        if used.capacity() > 0 {
                            let _ = r.try_send(used);
                        }
                    }
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths() {
        assert_eq!(
            entry_slot_path(Path::new("1/a/b"), 2).unwrap(),
            (1, PathBuf::from("a/b"))
        );
        assert!(entry_slot_path(Path::new("2/a"), 2).is_err());
        assert!(entry_slot_path(Path::new("0/../x"), 2).is_err());
        assert!(entry_slot_path(Path::new("/0/x"), 2).is_err());
        assert!(entry_slot_path(Path::new("x/y"), 2).is_err());
    }
}

//! Cache archives: a tar stream of one or more directories ("slots"), compressed with zstd
//! (multi-threaded) or gzip. Reading one back is [`super::extract`]'s job.
//!
//! Layout: every entry of slot `i` is stored under the prefix `i/`, so one archive carries several
//! directories and each is restored to the position the caller names (like actions/cache).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::frames::{self, FrameEncoder};
use super::sources::{Source, Sources};

use crate::settings::file::Compression;

/// Why an archive could not be written or was refused on extraction.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading {path}: {source}")]
    ReadSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the archive: {0}")]
    Write(#[source] io::Error),
    #[error("archive stream is corrupt or truncated: {0}")]
    Corrupt(#[source] io::Error),
    #[error("archive entry {entry:?} is unsafe: {reason}")]
    Unsafe { entry: String, reason: String },
    #[error("archive entry {entry:?} has unsupported type {kind}")]
    Unsupported { entry: String, kind: String },
    /// The archive crossed a bound: more bytes, files or entries than allowed, or a zstd window
    /// above the cap.
    #[error("{0}")]
    Bound(String),
    #[error("extracting {path}: {source}")]
    Extract {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What was archived.
#[derive(Debug, Clone, Default)]
pub struct BuildStats {
    /// Regular files archived.
    pub files: u64,
    /// Bytes of file content.
    pub content_bytes: u64,
    /// Bytes of the uncompressed tar stream.
    pub tar_bytes: u64,
    /// See [`ContentDigest`].
    pub content_digest: String,
    /// Entries left out (sockets, links that would escape), for the user.
    pub skipped: Vec<String>,
}

/// What was extracted.
#[derive(Debug, Clone, Default)]
pub struct ExtractStats {
    pub files: u64,
    pub bytes: u64,
}

/// A digest of the *content* of the slots: for each entry in sorted order its slot, relative
/// path, kind, permission bits, size, and its bytes (or its link target), through XXH3-128.
/// Modification times are left out on purpose: ccache and pip touch files without changing
/// them, and such a touch must not cause a new upload.
///
/// XXH3 rather than sha256: it runs at memory speed, where sha256 cost a seventh of a save's
/// CPU. It only decides whether an upload can be skipped, comparing our own directories with
/// our own manifest, so collision resistance against an adversary is not needed (the archive
/// itself is still checked with sha256).
struct ContentDigest(xxhash_rust::xxh3::Xxh3);

impl Default for ContentDigest {
    fn default() -> Self {
        Self(xxhash_rust::xxh3::Xxh3::new())
    }
}

impl ContentDigest {
    fn entry(&mut self, slot: usize, rel: &str, kind: u8, mode: u32, size: u64) {
        self.0.update(&(slot as u64).to_le_bytes());
        self.0.update(rel.as_bytes());
        self.0.update(&[0, kind]);
        self.0.update(&mode.to_le_bytes());
        self.0.update(&size.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.update(b);
    }
    fn finish(self) -> String {
        format!("xxh3-128:{:032x}", self.0.digest128())
    }
}

/// One item found while walking a slot.
pub(super) enum Item {
    Dir {
        rel: String,
        mode: u32,
    },
    File {
        rel: String,
        path: PathBuf,
        meta: fs::Metadata,
    },
    Symlink {
        rel: String,
        target: PathBuf,
    },
}

/// Walk `root` in sorted order (so the digest is stable), calling `f` for each item. A missing
/// root is an empty slot. Entries that could never be restored are reported in `skipped`.
pub(super) fn walk_slot(
    root: &Path,
    skipped: &mut Vec<String>,
    mut f: impl FnMut(Item) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    match fs::symlink_metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(ArchiveError::ReadSource {
                path: root.to_path_buf(),
                source: e,
            })
        }
        Ok(m) if !m.is_dir() => {
            skipped.push(format!("{} is not a directory", root.display()));
            return Ok(());
        }
        Ok(_) => {}
    }
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name();
    for ent in walker {
        let ent = ent.map_err(|e| ArchiveError::ReadSource {
            path: e.path().unwrap_or(root).to_path_buf(),
            source: e.into(),
        })?;
        let rel_path = ent.path().strip_prefix(root).unwrap_or(Path::new(""));
        let Some(rel) = rel_path.to_str() else {
            skipped.push(format!("{} (name is not UTF-8)", ent.path().display()));
            continue;
        };
        let rel = rel.to_string();
        let read_err = |e: io::Error| ArchiveError::ReadSource {
            path: ent.path().to_path_buf(),
            source: e,
        };
        let ft = ent.file_type();
        if ft.is_dir() {
            let meta = ent.metadata().map_err(|e| read_err(e.into()))?;
            f(Item::Dir {
                rel,
                mode: meta.permissions().mode() & 0o7777,
            })?;
        } else if ft.is_file() {
            let meta = ent.metadata().map_err(|e| read_err(e.into()))?;
            f(Item::File {
                rel,
                path: ent.path().to_path_buf(),
                meta,
            })?;
        } else if ft.is_symlink() {
            let target = fs::read_link(ent.path()).map_err(read_err)?;
            match check_symlink_target(&rel, &target) {
                Ok(()) => f(Item::Symlink { rel, target })?,
                Err(reason) => skipped.push(format!(
                    "{} -> {} ({reason})",
                    ent.path().display(),
                    target.display()
                )),
            }
        } else {
            skipped.push(format!(
                "{} (not a file, directory or symlink)",
                ent.path().display()
            ));
        }
    }
    Ok(())
}

/// The content digest of `paths` without writing an archive: used to decide whether a save can
/// be skipped before spending time compressing.
pub fn content_digest(paths: &[PathBuf]) -> Result<String, ArchiveError> {
    let mut digest = ContentDigest::default();
    let mut skipped = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for (slot, root) in paths.iter().enumerate() {
        walk_slot(root, &mut skipped, |item| {
            match item {
                Item::Dir { rel, mode } => digest.entry(slot, &rel, b'5', mode, 0),
                Item::File { rel, path, meta } => {
                    let mode = meta.permissions().mode() & 0o7777;
                    digest.entry(slot, &rel, b'0', mode, meta.len());
                    let mut file = fs::File::open(&path).map_err(|e| ArchiveError::ReadSource {
                        path: path.clone(),
                        source: e,
                    })?;
                    loop {
                        let n = file.read(&mut buf).map_err(|e| ArchiveError::ReadSource {
                            path: path.clone(),
                            source: e,
                        })?;
                        if n == 0 {
                            break;
                        }
                        digest.bytes(&buf[..n]);
                    }
                }
                Item::Symlink { rel, target } => {
                    digest.entry(slot, &rel, b'2', 0o777, 0);
                    digest.bytes(target.as_os_str().as_encoded_bytes());
                }
            }
            Ok(())
        })?;
    }
    Ok(digest.finish())
}

/// Counts the bytes written through it.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes and counts what passes through it (the compressed archive on its way to disk).
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// (inner writer, sha256 hex, bytes).
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compressor level to use.
pub fn effective_level(compression: Compression, level: Option<i32>) -> i32 {
    match (compression, level) {
        (Compression::Zstd, Some(l)) => l.clamp(1, 19),
        (Compression::Zstd, None) => 3,
        (Compression::Gzip, Some(l)) => l.clamp(1, 9),
        (Compression::Gzip, None) => 6,
    }
}

/// Write the archive of `paths` (slot `i` = `paths[i]`), compressed, into `out`. Returns the
/// writer back with the stats. zstd archives are independent frames compressed on every core
/// (see [`super::frames`]).
pub fn write_archive<W: Write + Send + 'static>(
    out: W,
    paths: &[PathBuf],
    compression: Compression,
    level: Option<i32>,
) -> Result<(W, BuildStats), ArchiveError> {
    let level = effective_level(compression, level);
    match compression {
        Compression::Zstd => {
            let enc = FrameEncoder::new(out, level, frames::frame_threads())
                .map_err(ArchiveError::Write)?;
            let (enc, stats) = write_tar(enc, paths)?;
            let out = enc.finish().map_err(ArchiveError::Write)?;
            Ok((out, stats))
        }
        Compression::Gzip => {
            let enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(level as u32));
            let (enc, stats) = write_tar(io::BufWriter::with_capacity(1 << 20, enc), paths)?;
            let enc = enc
                .into_inner()
                .map_err(|e| ArchiveError::Write(e.into_error()))?;
            let out = enc.finish().map_err(ArchiveError::Write)?;
            Ok((out, stats))
        }
    }
}

/// The tar stream of `paths` into `out`, with the stats and the content digest. Files are read
/// ahead on their own thread ([`Sources`]).
fn write_tar<W: Write>(out: W, paths: &[PathBuf]) -> Result<(W, BuildStats), ArchiveError> {
    // Unbuffered: both callers buffer (the frame encoder in whole frames).
    let counting = CountingWriter {
        inner: out,
        count: 0,
    };
    let mut builder = tar::Builder::new(counting);
    let mut stats = BuildStats::default();
    let mut digest = ContentDigest::default();
    let sources = Sources::spawn(paths);
    while let Some(source) = sources.next() {
        append_source(&mut builder, &sources, source?, &mut digest, &mut stats)?;
    }
    stats.skipped = sources.finish();
    builder.finish().map_err(ArchiveError::Write)?;
    let counting = builder.into_inner().map_err(ArchiveError::Write)?;
    stats.tar_bytes = counting.count;
    stats.content_digest = digest.finish();
    Ok((counting.inner, stats))
}

/// One entry into the tar stream and the digest.
fn append_source<W: Write>(
    builder: &mut tar::Builder<W>,
    sources: &Sources,
    source: Source,
    digest: &mut ContentDigest,
    stats: &mut BuildStats,
) -> Result<(), ArchiveError> {
    let mut header = tar::Header::new_gnu();
    header.set_mtime(0);
    match source {
        Source::Dir { slot, rel, mode } => {
            digest.entry(slot, &rel, b'5', mode, 0);
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(mode & 0o7777);
            header.set_size(0);
            let name = slot_name(slot, &rel, true);
            builder.append_data(&mut header, name, io::empty())
        }
        Source::File {
            slot,
            rel,
            mode,
            mtime,
            data,
        } => {
            let len = data.len() as u64;
            digest.entry(slot, &rel, b'0', mode, len);
            digest.bytes(&data);
            file_header(&mut header, mode, mtime, len);
            stats.files += 1;
            stats.content_bytes += len;
            let name = slot_name(slot, &rel, false);
            let appended = builder.append_data(&mut header, name, data.as_slice());
            sources.recycle(data);
            appended
        }
        Source::Large {
            slot,
            rel,
            mode,
            mtime,
            len,
        } => {
            digest.entry(slot, &rel, b'0', mode, len);
            file_header(&mut header, mode, mtime, len);
            stats.files += 1;
            stats.content_bytes += len;
            let mut pieces = Pieces {
                sources,
                digest,
                left: len,
                cur: Vec::new(),
                pos: 0,
                failed: None,
            };
            let name = slot_name(slot, &rel, false);
            let appended = builder.append_data(&mut header, name, &mut pieces);
            if let Some(e) = pieces.failed {
                return Err(e);
            }
            appended
        }
        Source::Piece(_) => Err(io::Error::other("a file piece without its file")),
        Source::Symlink { slot, rel, target } => {
            digest.entry(slot, &rel, b'2', 0o777, 0);
            digest.bytes(target.as_os_str().as_encoded_bytes());
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder.append_link(&mut header, slot_name(slot, &rel, false), &target)
        }
    }
    .map_err(ArchiveError::Write)
}

fn file_header(header: &mut tar::Header, mode: u32, mtime: u64, len: u64) {
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_size(len);
}

/// The pieces of one large file from the reader thread, exactly `left` bytes, digested on the
/// way. A read error the reader sent instead is kept in `failed`.
struct Pieces<'a> {
    sources: &'a Sources,
    digest: &'a mut ContentDigest,
    left: u64,
    cur: Vec<u8>,
    pos: usize,
    failed: Option<ArchiveError>,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.cur.len() {
            if self.left == 0 {
                return Ok(0);
            }
            match self.sources.next() {
                Some(Ok(Source::Piece(p))) if p.len() as u64 <= self.left => {
                    self.left -= p.len() as u64;
                    self.digest.bytes(&p);
                    let used = std::mem::replace(&mut self.cur, p);
                    self.sources.recycle(used);
                    self.pos = 0;
                }
                Some(Err(e)) => {
                    self.failed = Some(e);
                    return Err(io::Error::other("reading a file to archive failed"));
                }
                _ => return Err(io::Error::other("the file reader sent something else")),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn slot_name(slot: usize, rel: &str, dir: bool) -> String {
    match (rel.is_empty(), dir) {
        (true, _) => format!("{slot}/"),
        (false, true) => format!("{slot}/{rel}/"),
        (false, false) => format!("{slot}/{rel}"),
    }
}

/// A symlink at `rel` (relative to the slot root) may point at `target` only when the target is
/// relative, its `..` components all come first (so they are resolved against real directories,
/// never through another link), and it stays inside the slot.
pub(super) fn check_symlink_target(rel: &str, target: &Path) -> Result<(), String> {
    if target.as_os_str().is_empty() {
        return Err("empty link target".into());
    }
    let depth = Path::new(rel)
        .parent()
        .map(|p| {
            p.components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count()
        })
        .unwrap_or(0);
    let mut ups = 0usize;
    let mut seen_normal = false;
    for c in target.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err("link target is an absolute path".into())
            }
            Component::ParentDir if seen_normal => {
                return Err("link target has `..` after a name".into())
            }
            Component::ParentDir => ups += 1,
            Component::CurDir => {}
            Component::Normal(_) => seen_normal = true,
        }
    }
    if ups > depth {
        return Err("link target points outside the cache directory".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_rules() {
        assert!(check_symlink_target("a/b", Path::new("c")).is_ok());
        assert!(check_symlink_target("a/b", Path::new("../c")).is_ok());
        assert!(check_symlink_target("a/b", Path::new("../../c")).is_err());
        assert!(check_symlink_target("b", Path::new("/etc/passwd")).is_err());
        assert!(check_symlink_target("a/b", Path::new("c/../../..")).is_err());
        assert!(check_symlink_target("a/b", Path::new("c/..")).is_err());
    }
}

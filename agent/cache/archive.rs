//! Cache archives: a tar stream of one or more directories ("slots"), compressed with zstd
//! (multi-threaded) or gzip. Reading one back is [`super::extract`]'s job.
//!
//! Layout: every entry of slot `i` is stored under the prefix `i/`, so one archive carries several
//! directories and each is restored to the position the caller names (like actions/cache).

use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

pub use super::archive_error::ArchiveError;
use super::compress;
use super::digest::ArchiveHasher;
use crate::settings::file::Compression;

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
/// XXH3 rather than a cryptographic hash: it runs at memory speed, where sha256 cost a seventh of
/// a save's CPU. It only decides whether an upload can be skipped, comparing our own directories
/// with our own manifest, so collision resistance against an adversary is not needed (the
/// archive itself is checked with BLAKE3, see [`super::digest`]).
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
enum Item {
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
fn walk_slot(
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

/// Hashes (see [`super::digest`]) and counts what passes through it (the compressed archive on
/// its way to disk).
pub struct HashingWriter<W> {
    inner: W,
    hasher: ArchiveHasher,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: ArchiveHasher::new(),
            count: 0,
        }
    }
    /// (inner writer, checksum hex, bytes).
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, self.hasher.finish(), self.count)
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
/// writer back with the stats.
pub fn write_archive<W: Write + Send>(
    out: W,
    paths: &[PathBuf],
    compression: Compression,
    level: Option<i32>,
) -> Result<(W, BuildStats), ArchiveError> {
    let level = effective_level(compression, level);
    match compression {
        Compression::Zstd => match compress::zstd_threads(paths) {
            // A small tree: zstd's workers could not share it; two lanes of frames still
            // compress it on both cores while the files are read and the archive written.
            0 => compress::in_lanes(out, level, |sender| {
                let (sender, stats) = write_tar(sender, paths)?;
                sender.finish().map_err(ArchiveError::Write)?;
                Ok(stats)
            }),
            threads => {
                let enc =
                    compress::zstd_encoder(out, level, threads).map_err(ArchiveError::Write)?;
                tar_into(enc, paths, |enc| enc.finish())
            }
        },
        Compression::Gzip => {
            let enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(level as u32));
            tar_into(enc, paths, |enc| enc.finish())
        }
    }
}

/// The tar stream of `paths` into the compressor `enc`, then `finish` it (the end of its
/// stream) and return what it wrote into.
fn tar_into<E: Write, W>(
    enc: E,
    paths: &[PathBuf],
    finish: impl FnOnce(E) -> io::Result<W>,
) -> Result<(W, BuildStats), ArchiveError> {
    // Only tar headers are small writes: larger ones pass straight through.
    let (buffered, stats) = write_tar(io::BufWriter::with_capacity(64 << 10, enc), paths)?;
    let enc = buffered
        .into_inner()
        .map_err(|e| ArchiveError::Write(e.into_error()))?;
    Ok((finish(enc).map_err(ArchiveError::Write)?, stats))
}

/// Files up to this size are read in one call (most ccache and wheel files).
const SMALL_FILE: u64 = 8 << 20;

/// The tar stream of `paths` into `out`, which should buffer (tar headers are small writes).
fn write_tar<W: Write>(out: W, paths: &[PathBuf]) -> Result<(W, BuildStats), ArchiveError> {
    let counting = CountingWriter {
        inner: out,
        count: 0,
    };
    let mut builder = tar::Builder::new(counting);
    let mut stats = BuildStats::default();
    let mut digest = ContentDigest::default();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut skipped = Vec::new();
    for (slot, root) in paths.iter().enumerate() {
        walk_slot(root, &mut skipped, |item| {
            let mut header = tar::Header::new_gnu();
            match item {
                Item::Dir { rel, mode } => {
                    digest.entry(slot, &rel, b'5', mode, 0);
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(mode & 0o7777);
                    header.set_size(0);
                    header.set_mtime(0);
                    let name = slot_name(slot, &rel, true);
                    builder
                        .append_data(&mut header, name, io::empty())
                        .map_err(ArchiveError::Write)?;
                }
                Item::File { rel, path, meta } => {
                    let mode = meta.permissions().mode() & 0o7777;
                    let read_err = |e: io::Error| ArchiveError::ReadSource {
                        path: path.clone(),
                        source: e,
                    };
                    let mut file = fs::File::open(&path).map_err(read_err)?;
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(mode);
                    header.set_mtime(mtime_secs(&meta));
                    let name = slot_name(slot, &rel, false);
                    if meta.len() <= SMALL_FILE {
                        buf.clear();
                        file.read_to_end(&mut buf).map_err(read_err)?;
                        let len = buf.len() as u64;
                        digest.entry(slot, &rel, b'0', mode, len);
                        digest.bytes(&buf);
                        header.set_size(len);
                        builder
                            .append_data(&mut header, name, buf.as_slice())
                            .map_err(ArchiveError::Write)?;
                        stats.content_bytes += len;
                    } else {
                        // Large file: stream it, hashing as it goes. The size in the header must
                        // match what we read, so a file growing meanwhile is cut at its size.
                        let len = meta.len();
                        digest.entry(slot, &rel, b'0', mode, len);
                        header.set_size(len);
                        let reader = DigestReader {
                            inner: BufReader::with_capacity(1 << 20, file).take(len),
                            digest: &mut digest,
                            count: 0,
                        };
                        let mut reader = reader;
                        builder
                            .append_data(&mut header, name, &mut reader)
                            .map_err(ArchiveError::Write)?;
                        if reader.count != len {
                            return Err(ArchiveError::ReadSource {
                                path: path.clone(),
                                source: io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    "file shrank while being archived",
                                ),
                            });
                        }
                        stats.content_bytes += len;
                    }
                    stats.files += 1;
                }
                Item::Symlink { rel, target } => {
                    digest.entry(slot, &rel, b'2', 0o777, 0);
                    digest.bytes(target.as_os_str().as_encoded_bytes());
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    header.set_mtime(0);
                    let name = slot_name(slot, &rel, false);
                    builder
                        .append_link(&mut header, name, &target)
                        .map_err(ArchiveError::Write)?;
                }
            }
            Ok(())
        })?;
    }
    builder.finish().map_err(ArchiveError::Write)?;
    let counting = builder.into_inner().map_err(ArchiveError::Write)?;
    stats.tar_bytes = counting.count;
    let out = counting.inner;
    stats.content_digest = digest.finish();
    stats.skipped = skipped;
    Ok((out, stats))
}

struct DigestReader<'a, R> {
    inner: R,
    digest: &'a mut ContentDigest,
    count: u64,
}

impl<R: Read> Read for DigestReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.bytes(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn mtime_secs(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

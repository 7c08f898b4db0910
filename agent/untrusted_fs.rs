//! Reading what the project's code left in the work dir.
//!
//! Once the project's code has run (a build backend, `setup.py`, the tests), every file in the
//! work dir is the attacker's: a JUnit report may be a link to `/dev/zero` or a host secret, a
//! FIFO that never answers, or a file of many gigabytes. Kiln reads such files only through this
//! module: opened without following a link (`O_NOFOLLOW`) and without blocking on a FIFO or a
//! device (`O_NONBLOCK`), kept only when the open file is a regular file, and read within a size
//! bound the caller names. Anything else is refused with a reason the caller can warn with.
//!
//! Directory walks over the work dir use [`real_dir`] (a directory, not a link to one) before
//! descending.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a file from the work dir was not read.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{path} is not there")]
    Missing { path: PathBuf },
    #[error("{path} is a symbolic link (not followed)")]
    Link { path: PathBuf },
    #[error("{path} is a {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} is larger than the {limit}-byte limit")]
    TooBig { path: PathBuf, limit: u64 },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Refused {
    /// The file simply is not there (often normal: nothing was written).
    pub fn is_missing(&self) -> bool {
        matches!(self, Refused::Missing { .. })
    }
}

/// `path` opened for reading if it is a regular file, never through a link and never waiting
/// on a FIFO or device; with its metadata (from the open file, not the name).
pub fn open_regular(path: &Path) -> Result<(File, Metadata), Refused> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) => return Err(open_error(path, e)),
    };
    let meta = file.metadata().map_err(|source| Refused::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(Refused::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(&meta),
        });
    }
    Ok((file, meta))
}

/// The bytes of the regular file `path`, at most `limit` of them (a longer file is refused, not
/// cut: a truncated report would mislead).
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, Refused> {
    let (file, meta) = open_regular(path)?;
    let too_big = || Refused::TooBig {
        path: path.to_path_buf(),
        limit,
    };
    if meta.len() > limit {
        return Err(too_big());
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    // One byte over the limit tells a file that grew since the fstat.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|source| Refused::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if out.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(out)
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path, limit: u64) -> Result<String, Refused> {
    String::from_utf8(read(path, limit)?).map_err(|e| Refused::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

/// [`read_to_string`], with a warning (`what` names the file's role) for a file that is there
/// but refused; `None` for a missing file, silently.
pub fn read_text_or_warn(path: &Path, limit: u64, what: &str) -> Option<String> {
    match read_to_string(path, limit) {
        Ok(text) => Some(text),
        Err(e) if e.is_missing() => None,
        Err(e) => {
            tracing::warn!("ignoring {what}: {e}");
            None
        }
    }
}

/// Whether `path` is a directory itself, not a link to one (or anything else).
pub fn real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Whether `path` is a regular file itself, not a link to one.
pub fn real_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

fn open_error(path: &Path, e: std::io::Error) -> Refused {
    let path = path.to_path_buf();
    match e.raw_os_error() {
        // O_NOFOLLOW on a link fails with ELOOP.
        Some(libc::ELOOP) => Refused::Link { path },
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => Refused::Missing { path },
        // A socket cannot be opened at all.
        Some(libc::ENXIO) => Refused::NotRegular {
            path,
            kind: "socket",
        },
        _ => Refused::Io { path, source: e },
    }
}

fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_within_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.xml");
        std::fs::write(&f, "hello").unwrap();
        assert_eq!(read_to_string(&f, 5).unwrap(), "hello");
        assert!(matches!(read(&f, 4), Err(Refused::TooBig { limit: 4, .. })));
    }

    #[test]
    fn refuses_links_fifos_devices_and_directories() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        std::fs::write(&target, "secret").unwrap();
        let link = d.path().join("link.xml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(read(&link, 100), Err(Refused::Link { .. })));
        let zero = d.path().join("zero.xml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(matches!(read(&zero, 100), Err(Refused::Link { .. })));
        assert!(matches!(
            read(Path::new("/dev/zero"), 100),
            Err(Refused::NotRegular {
                kind: "character device",
                ..
            })
        ));
        let fifo = d.path().join("fifo.xml");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Returns at once: no writer is waited for.
        assert!(matches!(
            read(&fifo, 100),
            Err(Refused::NotRegular { kind: "FIFO", .. })
        ));
        assert!(matches!(
            read(d.path(), 100),
            Err(Refused::NotRegular {
                kind: "directory",
                ..
            })
        ));
        assert!(read(&d.path().join("nope"), 100).unwrap_err().is_missing());
        assert!(!real_dir(&link) && !real_file(&link) && real_file(&target));
    }
}

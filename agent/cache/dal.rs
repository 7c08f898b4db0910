//! The OpenDAL backend of a [`super::Store`]: `file://` (the embedded default) and every remote
//! scheme [`super::backends`] builds an operator for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::StreamExt;
use opendal::{ErrorKind, Operator};

use super::backend::{BackendError, ByteStream, Entry, StoreBackend, Upload};

/// An OpenDAL operator, and for `file://` stores its root directory (archives are written in
/// place and renamed, small objects read and written without the async layer).
#[derive(Debug)]
pub struct DalBackend {
    op: Operator,
    local_root: Option<PathBuf>,
}

impl DalBackend {
    /// The file store at `root` (absolute). Writes go to a temporary file renamed into place, so
    /// a reader never sees half a manifest and two writers never interleave.
    pub fn file(root: &str) -> Result<DalBackend, opendal::Error> {
        let tmp = format!("{}/.kiln-tmp", root.trim_end_matches('/'));
        let builder = opendal::services::Fs::default()
            .root(root)
            .atomic_write_dir(&tmp);
        Ok(DalBackend {
            op: Operator::new(builder)?,
            local_root: Some(PathBuf::from(root)),
        })
    }

    /// A remote store through `op`.
    pub fn remote(op: Operator) -> DalBackend {
        DalBackend {
            op,
            local_root: None,
        }
    }
}

/// An OpenDAL error as the store sees it.
fn fault(e: opendal::Error) -> BackendError {
    let kind = e.kind();
    let transient = !matches!(
        kind,
        ErrorKind::NotFound
            | ErrorKind::PermissionDenied
            | ErrorKind::ConfigInvalid
            | ErrorKind::Unsupported
            | ErrorKind::ConditionNotMatch
            | ErrorKind::AlreadyExists
            | ErrorKind::IsADirectory
            | ErrorKind::NotADirectory
    );
    BackendError::new(e, transient, kind == ErrorKind::Unsupported)
}

/// A local I/O failure, in OpenDAL's terms.
fn io_fault(what: &'static str, e: std::io::Error) -> BackendError {
    fault(opendal::Error::new(ErrorKind::Unexpected, what).set_source(e))
}

/// A stream that ends after its first error. OpenDAL 0.59's byte streams repeat the error for
/// ever (a missing object yields `NotFound` on every poll), which would spin any reader that
/// skips errors.
fn ends_at_first_error(
    s: impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
) -> ByteStream {
    let mut failed = false;
    s.take_while(move |item| {
        let go = !failed;
        failed |= item.is_err();
        std::future::ready(go)
    })
    .boxed()
}

/// The file of object `path` in the file store at `root`. Object paths are made of plain
/// names: `..` or an empty component could reach outside the store.
fn local_file(root: &Path, path: &str) -> Result<PathBuf, BackendError> {
    if path.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(fault(opendal::Error::new(
            ErrorKind::ConfigInvalid,
            "invalid object path",
        )));
    }
    Ok(root.join(path))
}

/// A whole (small) object of a `file://` store, read directly: OpenDAL's file reader fills
/// a zeroed buffer of its chunk size for every read, which cost a warm run a thousand page
/// faults for a few manifests of a few hundred bytes.
fn get_local(root: &Path, path: &str) -> Result<Option<Vec<u8>>, BackendError> {
    match std::fs::read(local_file(root, path)?) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_fault("reading from the file store", e)),
    }
}

/// File stores: temp file + rename (atomic, like OpenDAL's atomic write) but without the
/// fsync OpenDAL does, which on ext4 also flushes the just-written archive and costs more
/// than the whole save. A crash can at worst leave a manifest whose archive fails its hash
/// check: a miss, never a wrong restore.
fn put_local(root: &Path, path: &str, data: &[u8]) -> Result<(), BackendError> {
    let io = |e: std::io::Error| io_fault("writing to the file store", e);
    let dest = local_file(root, path)?;
    let tmp_dir = root.join(".kiln-tmp");
    std::fs::create_dir_all(&tmp_dir).map_err(io)?;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = tmp_dir.join(format!(
        "put-{}-{n}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::write(&tmp, data).map_err(io)?;
    std::fs::rename(&tmp, &dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

#[async_trait]
impl StoreBackend for DalBackend {
    async fn size(&self, path: &str) -> Result<Option<u64>, BackendError> {
        match self.op.stat(path).await {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fault(e)),
        }
    }

    async fn read_stream(&self, path: &str) -> Result<ByteStream, BackendError> {
        let reader = self
            .op
            .reader_with(path)
            .chunk(8 << 20)
            .concurrent(4)
            .await
            .map_err(fault)?;
        let stream = reader.into_bytes_stream(..).await.map_err(fault)?;
        Ok(ends_at_first_error(stream))
    }

    async fn read_range(
        &self,
        path: &str,
        range: std::ops::Range<u64>,
    ) -> Result<ByteStream, BackendError> {
        let reader = self.op.reader(path).await.map_err(fault)?;
        let stream = reader.into_bytes_stream(range).await.map_err(fault)?;
        Ok(ends_at_first_error(stream))
    }

    async fn upload_file(
        &self,
        path: &str,
        local: &Path,
        how: Upload,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, BackendError> {
        use tokio::io::AsyncReadExt;
        let io_err = |e: std::io::Error| io_fault("reading the local archive", e).in_step("upload");
        let mut file = tokio::fs::File::open(local).await.map_err(io_err)?;
        let (writer, buf_size) = match how {
            Upload::Concurrent => (
                self.op
                    .writer_with(path)
                    .chunk(16 << 20)
                    .concurrent(4)
                    .await,
                8 << 20,
            ),
            Upload::Sequential => (self.op.writer(path).await, 1 << 20),
        };
        let mut writer = writer.map_err(fault)?;
        let mut sent = 0u64;
        loop {
            let mut buf = vec![0u8; buf_size];
            let mut filled = 0;
            while filled < buf.len() {
                let n = file.read(&mut buf[filled..]).await.map_err(io_err)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            if let Err(e) = writer.write(buf).await {
                let _ = writer.abort().await;
                return Err(fault(e));
            }
            sent += filled as u64;
            progress(sent);
        }
        if let Err(e) = writer.close().await {
            let _ = writer.abort().await;
            return Err(fault(e));
        }
        Ok(sent)
    }

    async fn get(&self, path: &str, timeout: Duration) -> Result<Option<Vec<u8>>, BackendError> {
        if let Some(root) = &self.local_root {
            return get_local(root, path);
        }
        // A small object: the whole read within the store timeout (the timeout layer only
        // bounds each chunk of it, three times longer, which suits large transfers).
        let read = match tokio::time::timeout(timeout, self.op.read(path)).await {
            Ok(r) => r,
            Err(_) => Err(opendal::Error::new(
                ErrorKind::Unexpected,
                format!("no answer within {}s", timeout.as_secs()),
            )
            .set_temporary()),
        };
        match read {
            Ok(buf) => Ok(Some(buf.to_vec())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fault(e)),
        }
    }

    async fn put(&self, path: &str, data: Vec<u8>) -> Result<(), BackendError> {
        if let Some(root) = &self.local_root {
            return put_local(root, path, &data);
        }
        self.op.write(path, data).await.map(|_| ()).map_err(fault)
    }

    async fn delete(&self, path: &str) -> Result<(), BackendError> {
        self.op.delete(path).await.map_err(fault)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, BackendError> {
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        let entries = match self.op.list_with(dir).recursive(true).await {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(fault(e)),
        };
        let mut out = Vec::new();
        for e in entries {
            if e.metadata().is_dir() || !e.path().starts_with(prefix) {
                continue;
            }
            let mut entry = Entry {
                path: e.path().to_string(),
                size: e.metadata().content_length(),
                modified: e.metadata().last_modified().and_then(|t| {
                    let t = t.into_inner();
                    chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond() as u32)
                }),
            };
            // The fs lister returns names only; a local stat is cheap.
            if let (Some(root), None) = (&self.local_root, entry.modified) {
                if let Ok(m) = std::fs::metadata(root.join(&entry.path)) {
                    entry.size = m.len();
                    entry.modified = m.modified().ok().map(chrono::DateTime::<chrono::Utc>::from);
                }
            }
            out.push(entry);
        }
        Ok(out)
    }

    fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }
}

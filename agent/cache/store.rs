//! Storage by URL, through Apache OpenDAL: one small interface over every backend.
//!
//! `file:///path` is the embedded default (`~/.cache/kiln/store`). Other schemes are added here;
//! callers only see `Store`.

use std::path::PathBuf;

use opendal::{ErrorKind, Operator};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL {url}: {message}")]
    BadUrl { url: String, message: String },
    #[error("store {store}: {op} {path}: {source}")]
    Backend {
        store: String,
        op: &'static str,
        path: String,
        #[source]
        source: opendal::Error,
    },
}

/// One listed object.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// A configured storage backend.
#[derive(Clone, Debug)]
pub struct Store {
    op: Operator,
    /// The URL with any credentials removed: safe to log.
    display: String,
}

/// `~/.cache/kiln/store` (or `$XDG_CACHE_HOME/kiln/store`).
pub fn default_store_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("kiln").join("store")
}

/// The default store URL.
pub fn default_store_url() -> String {
    format!("file://{}", default_store_dir().display())
}

impl Store {
    /// Open the store a URL names.
    pub fn from_url(url: &str) -> Result<Store, StoreError> {
        let bad = |message: &str| StoreError::BadUrl {
            url: redact(url),
            message: message.to_string(),
        };
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("file:// URLs need an absolute path (file:///srv/kiln)"));
            }
            let builder = opendal::services::Fs::default().root(path);
            let op = Operator::new(builder)
                .map_err(|e| bad(&e.to_string()))?
                .finish();
            return Ok(Store {
                op,
                display: url.to_string(),
            });
        }
        if url.starts_with('/') {
            return Store::from_url(&format!("file://{url}"));
        }
        Err(bad("unsupported scheme (expected file://)"))
    }

    /// The URL without credentials.
    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn operator(&self) -> &Operator {
        &self.op
    }

    fn err(&self, op: &'static str, path: &str, source: opendal::Error) -> StoreError {
        StoreError::Backend {
            store: self.display.clone(),
            op,
            path: path.to_string(),
            source,
        }
    }

    /// Read a whole (small) object; `None` when it does not exist.
    pub async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.op.read(path).await {
            Ok(buf) => Ok(Some(buf.to_vec())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("read", path, e)),
        }
    }

    /// Write a whole (small) object.
    pub async fn put(&self, path: &str, data: Vec<u8>) -> Result<(), StoreError> {
        self.op
            .write(path, data)
            .await
            .map(|_| ())
            .map_err(|e| self.err("write", path, e))
    }

    pub async fn delete(&self, path: &str) -> Result<(), StoreError> {
        self.op
            .delete(path)
            .await
            .map_err(|e| self.err("delete", path, e))
    }

    /// Objects whose path starts with `prefix` (recursively).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        let entries = match self.op.list_with(dir).recursive(true).await {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", prefix, e)),
        };
        let mut out = Vec::new();
        for e in entries {
            if e.metadata().is_dir() || !e.path().starts_with(prefix) {
                continue;
            }
            out.push(Entry {
                path: e.path().to_string(),
                size: e.metadata().content_length(),
                modified: e.metadata().last_modified(),
            });
        }
        Ok(out)
    }
}

/// Remove `user:password@` from a URL so it can be logged.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_url(&format!("file://{}", dir.path().display())).unwrap();
        assert_eq!(store.get("state/x.json").await.unwrap(), None);
        store.put("state/x.json", b"{}".to_vec()).await.unwrap();
        assert_eq!(
            store.get("state/x.json").await.unwrap(),
            Some(b"{}".to_vec())
        );
        let listed = store.list("state/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].path, "state/x.json");
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact("webdav+https://bob:hunter2@dav.example/kiln"),
            "webdav+https://dav.example/kiln"
        );
        assert!(Store::from_url("ftp://x")
            .unwrap_err()
            .to_string()
            .contains("unsupported"));
    }
}

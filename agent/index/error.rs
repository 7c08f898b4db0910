//! What can go wrong serving or publishing the index.

use std::path::PathBuf;

use crate::cache::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sidecar {path} is invalid ({message}); delete it and publish again")]
    Sidecar { path: String, message: String },
    #[error("cannot listen on {addr}: {source} (is another server using the port?)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("serving on {addr}: {source}")]
    Serve {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Auth(String),
}

impl From<StoreError> for IndexError {
    fn from(e: StoreError) -> Self {
        IndexError::Store(Box::new(e))
    }
}

//! The error of a configuration the user has to fix (kiln.yml, a `KILN_*` variable): its own
//! module so the YAML reader and every layer of the settings can name it.

use std::path::PathBuf;

/// A configuration problem the user has to fix. Exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Syntax(#[from] crate::file_syntax::FileSyntax),
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

//! How a bootstrap fails. Every variant ends the run with exit 3 (infrastructure), and its
//! message says what to fix.

use crate::process::ProcessError;

use super::super::toolchain::PythonError;

/// Why the bootstrap stage failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Python(#[from] PythonError),
    #[error("{python} has no pip ({detail}); pip is needed to build wheels (install python3-pip)")]
    NoPip { python: String, detail: String },
    #[error("creating the virtualenv failed:\n{0}")]
    Venv(String),
    #[error("building wheels failed (pip wheel exit {code}):\n{tail}")]
    WheelBuild { code: i32, tail: String },
    #[error("installing from the wheelhouse failed ({installer} exit {code}):\n{tail}")]
    Install {
        installer: String,
        code: i32,
        tail: String,
    },
    #[error(
        "offline: no wheel for `{requirement}` in {searched}; build it where the network \
             is reachable and bring it with `kiln wheelhouse export` / `import`, or drop --offline"
    )]
    OfflineMissing {
        requirement: String,
        searched: String,
    },
    #[error("bootstrap.command failed (exit {code}):\n{tail}")]
    Command { code: i32, tail: String },
}

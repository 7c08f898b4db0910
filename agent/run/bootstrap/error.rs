//! How a bootstrap fails. Every variant ends the run with exit 3 (infrastructure), and its
//! message says what to fix.

use crate::process::ProcessError;

use crate::run::toolchain::PythonError;

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
    #[error("building wheels failed{} (pip wheel exit {code}):\n{tail}", failed.as_ref().map(|p| format!(" for {p}")).unwrap_or_default())]
    WheelBuild {
        code: i32,
        /// The package pip named (hash mismatch, build error).
        failed: Option<String>,
        tail: String,
    },
    #[error("building the project failed:\n{tail}")]
    ProjectBuild { tail: String },
    #[error(
        "the project has C/C++/Cython sources ({sources}) but its install built no compiled \
         module: its tests would run without them (a pure-Python fallback?). Fix the build, or \
         set `project.require_compiled: false` in kiln.yml to allow it"
    )]
    NoCompiledModules { sources: String },
    #[error("the project's compiled module {module} does not import after the install: {reason}")]
    CompiledImport { module: String, reason: String },
    #[error("checking the project's compiled modules failed: {0}")]
    CompiledProbe(String),
    #[error(transparent)]
    Project(#[from] crate::project::ProjectError),
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

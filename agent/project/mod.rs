//! What a project is: where its dependencies come from (`uv.lock`, `pylock.toml`, requirement
//! files, `pyproject.toml`, legacy `setup.py`), whether and how the project itself is installed,
//! and what its build needs.
//!
//! `detect` decides (zero-config, overridable in the `project:` section of kiln.yml), `pyproject`
//! reads `pyproject.toml`, `locks` turns lock files into hashed requirement files pip and uv
//! install, `keys` says which bytes decide the environment (the wheelhouse key).

pub mod compiled;
pub mod detect;
pub mod keys;
pub mod local_dirs;
pub mod locks;
pub mod plan;
pub mod pyproject;
pub mod self_reference;
pub mod test_command;
pub mod test_deps;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use detect::{detect, DepsSource, Project};
pub use test_command::runs_pytest;

/// A problem with the project's own files: exit 2 (the user must fix the input).
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Syntax(#[from] crate::file_syntax::FileSyntax),
    #[error(
        "{kind} `{name}` is not defined by pyproject.toml (it defines: {})",
        list(known)
    )]
    UnknownName {
        kind: &'static str,
        name: String,
        known: Vec<String>,
    },
    #[error("dependency groups include each other: {0}")]
    GroupCycle(String),
    #[error("project.source is `{source_name}` but {file} does not exist in the checkout")]
    MissingSource {
        source_name: &'static str,
        file: String,
    },
    #[error("requirement file {0} does not exist in the checkout")]
    MissingRequirements(PathBuf),
    #[error(
        "uv.lock is out of date with pyproject.toml; run `uv lock` and commit uv.lock \
         (uv says: {detail})"
    )]
    StaleLock { detail: String },
    #[error("{file}: {message}")]
    Lock { file: String, message: String },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Where the dependencies come from (`project.source`); `auto` detects in the documented order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SourceChoice {
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "uv.lock")]
    UvLock,
    #[serde(rename = "pylock.toml")]
    Pylock,
    #[serde(rename = "requirements")]
    Requirements,
    #[serde(rename = "pyproject")]
    Pyproject,
    #[serde(rename = "setup.py")]
    SetupPy,
    #[serde(rename = "none")]
    None,
}

/// How the project itself is installed (`project.install`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallMode {
    /// `pip install --editable .`: tests import the checkout; C code built in place.
    Editable,
    /// Build the project's wheel and install it: tests see the packaged project.
    Wheel,
    /// Do not install the project (an application tested from its source tree).
    None,
}

impl InstallMode {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallMode::Editable => "editable",
            InstallMode::Wheel => "wheel",
            InstallMode::None => "none",
        }
    }
}

/// The `project:` section of kiln.yml. Every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectConfig {
    /// `auto` (default), `uv.lock`, `pylock.toml`, `requirements`, `pyproject`, `setup.py`, `none`.
    pub source: SourceChoice,
    /// The lock file for `pylock.toml` sources (default `pylock.toml`; PEP 751 allows
    /// `pylock.<name>.toml`).
    pub lock: Option<PathBuf>,
    /// `[project.optional-dependencies]` extras to install. Default: see `groups`.
    pub extras: Option<Vec<String>>,
    /// PEP 735 dependency groups to install. Default (when none of extras, groups and
    /// test_requirements is set): the test dependencies found (see `test_deps`).
    pub groups: Option<Vec<String>>,
    /// Requirement files with the test dependencies (relative to the checkout; `[]`: none),
    /// installed besides the dependency source (not with a lock file).
    pub test_requirements: Option<Vec<PathBuf>>,
    /// uv.lock: also install uv's default dependency groups (`dev`, `[tool.uv]
    /// default-groups`). Default: only when no group is chosen (found or named in `groups`).
    pub default_groups: Option<bool>,
    /// `editable` (default for a Python package), `wheel` or `none`.
    pub install: Option<InstallMode>,
    /// The project has C/C++/Cython code and must import it after the install (default: true
    /// when such sources are found); `false` allows a pure-Python fallback.
    pub require_compiled: Option<bool>,
}

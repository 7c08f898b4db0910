//! What the bootstrap will do, decided before anything runs: the project's own command or an
//! installer (uv or pip), whether the host's pip can serve a pip-less venv, the requirement
//! arguments, and the environment every build child gets.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::settings::{Config, Installer};

use super::super::toolchain::PythonInfo;
use super::super::workdir::Paths;
use super::error::BootstrapError;
use super::installers::{self, Tool};

/// How the requirements get into the venv.
#[derive(Debug, Clone)]
pub enum Strategy {
    /// `bootstrap.command`: the project's own command, with Kiln's environment.
    ProjectCommand(String),
    /// Kiln's way: wheels into the wheelhouse, then an offline install with this tool.
    Install(Tool),
}

/// The bootstrap's plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub strategy: Strategy,
    /// The host pip installs into a pip-less venv (saves ensurepip's ~6 s).
    pub host_pip: bool,
    /// `-r file -c file …` for the requirement files that exist.
    pub reqs: Vec<OsString>,
}

impl Plan {
    /// The installer, unless the project's own command installs.
    pub fn tool(&self) -> Option<&Tool> {
        match &self.strategy {
            Strategy::Install(t) => Some(t),
            Strategy::ProjectCommand(_) => None,
        }
    }
}

/// Decide the strategy (this may install uv into Kiln's tool dir).
pub async fn plan(
    project: &Config,
    py: &PythonInfo,
    checkout: &Path,
    offline: bool,
    tools_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Plan, BootstrapError> {
    let strategy = match (&project.bootstrap.command, project.bootstrap.installer) {
        (Some(command), _) => Strategy::ProjectCommand(command.clone()),
        (None, Installer::Pip) => Strategy::Install(Tool::Pip),
        (None, Installer::Uv) => {
            match installers::find_or_install_uv(py, offline, tools_dir, warnings).await {
                Some(uv) => Strategy::Install(Tool::Uv(uv)),
                None => {
                    return Err(BootstrapError::Install {
                        installer: "uv".into(),
                        code: -1,
                        tail: "bootstrap.installer is `uv` but uv is not on PATH and could not \
                               be installed"
                            .into(),
                    })
                }
            }
        }
        (None, Installer::Auto) => {
            let uv = installers::find_or_install_uv(py, offline, tools_dir, warnings).await;
            Strategy::Install(uv.map(Tool::Uv).unwrap_or(Tool::Pip))
        }
    };
    let host_pip =
        matches!(strategy, Strategy::Install(Tool::Pip)) && py.pip.is_some_and(|v| v >= (22, 3));
    Ok(Plan {
        strategy,
        host_pip,
        reqs: req_args(project, checkout),
    })
}

/// The environment of every build child: temp dirs and tool caches inside the work dir, no
/// prompts, and no index when offline.
pub fn build_env(paths: &Paths, offline: bool) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("TMPDIR".into(), paths.tmp.clone().into()),
        ("PIP_DISABLE_PIP_VERSION_CHECK".into(), "1".into()),
        ("PIP_NO_INPUT".into(), "1".into()),
        // pip's and uv's own caches live in the work dir: the wheelhouse (and, when enabled, the
        // cached pip download dir) is the only thing a run inherits, so cold means cold.
        ("PIP_CACHE_DIR".into(), paths.pip_cache.clone().into()),
        ("UV_CACHE_DIR".into(), uv_cache(paths).into()),
    ];
    if offline {
        env.push(("PIP_NO_INDEX".into(), "1".into()));
        env.push(("UV_OFFLINE".into(), "1".into()));
    }
    env
}

/// uv's cache, inside the work dir (where the parallel build finds the wheels uv built).
pub fn uv_cache(paths: &Paths) -> PathBuf {
    paths.tmp.join("uv-cache")
}

/// `PATH` with `prefix` first.
pub fn path_with(prefix: &[&Path]) -> OsString {
    let mut parts: Vec<PathBuf> = prefix.iter().map(|p| p.to_path_buf()).collect();
    if let Some(path) = std::env::var_os("PATH") {
        parts.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(parts).unwrap_or_default()
}

fn req_args(config: &Config, checkout: &Path) -> Vec<OsString> {
    let mut args = Vec::new();
    for r in &config.requirements {
        if checkout.join(r).exists() {
            args.push("-r".into());
            args.push(r.clone().into_os_string());
        }
    }
    for c in &config.constraints {
        args.push("-c".into());
        args.push(c.clone().into_os_string());
    }
    args
}

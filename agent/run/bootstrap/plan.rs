//! What the bootstrap will do, decided before anything runs: the project's own command or an
//! installer (uv or pip), whether the host's pip can serve a pip-less venv, the requirement
//! arguments, and the environment every build child gets.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::project::plan::{self as project_plan, DepsPlan};
use crate::project::InstallMode;
use crate::settings::{Config, Installer};

use super::super::project::Prepared;

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
    /// The dependencies: what `pip wheel` fetches and builds, what the installer installs.
    pub deps: DepsPlan,
    /// Installer arguments for the project itself and local path dependencies.
    pub project: Vec<OsString>,
    /// Build requirements of the project and local path dependencies (kept in the wheelhouse).
    pub build_requires: Vec<String>,
    /// The project is installed and only its metadata knows its dependencies.
    pub dynamic_deps: bool,
}

impl Plan {
    /// Kiln's install has nothing to put in the venv (pytest aside): no dependency, no project,
    /// no build requirement.
    pub fn installs_nothing(&self) -> bool {
        self.deps.is_empty() && self.project.is_empty() && self.build_requires.is_empty()
    }

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
    prepared: &Prepared,
    py: &PythonInfo,
    paths: &Paths,
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
    let detected = &prepared.detected;
    let checkout = &paths.checkout;
    let deps = crate::project::plan::plan(
        detected,
        checkout,
        &project.constraints,
        prepared.locked.clone(),
        &paths.wheelhouse,
        &paths.tmp,
    )?;
    let mut project_args = project_plan::project_args(detected, checkout);
    project_args.extend(project_plan::local_args(&deps.local, checkout));
    let locals: Vec<(std::path::PathBuf, bool)> = deps
        .local
        .iter()
        .cloned()
        .chain(deps.local_in_requirements.iter().map(|d| (d.clone(), true)))
        .collect();
    let build_requires = super::project::build_requires(detected, &locals, checkout);
    let dynamic_deps = detected.install != InstallMode::None
        && detected
            .pyproject
            .as_ref()
            .is_none_or(|p| p.project.is_none() || p.dynamic_dependencies());
    Ok(Plan {
        strategy,
        host_pip,
        deps,
        project: project_args,
        build_requires,
        dynamic_deps,
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

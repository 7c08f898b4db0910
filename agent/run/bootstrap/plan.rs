//! What the bootstrap will do, decided before anything runs: the installer (uv or pip, unless
//! the project's own command installs), whether the host's pip can serve a pip-less venv, the
//! requirement arguments, and the one [`InstallPath`] the install takes.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::project::plan::{self as project_plan, DepsPlan};
use crate::project::pyproject::{PyProject, LEGACY_BUILD_REQUIRES};
use crate::project::{InstallMode, Project};
use crate::run::project::Prepared;
use crate::run::toolchain::{self, PythonInfo};
use crate::run::workdir::Paths;
use crate::settings::{Config, Installer};

use super::error::BootstrapError;

/// How the requirements get into the venv, and who produces the wheels: one path per run.
#[derive(Debug, Clone, PartialEq)]
pub enum InstallPath {
    /// `bootstrap.command`: the project's own command, with Kiln's environment (the wheelhouse
    /// named); the wheels it adds to the wheelhouse count as built.
    Command(String),
    /// Nothing to put in the venv (pytest aside): no dependency, no project, no build
    /// requirement.
    Nothing,
    /// `--offline`: only the wheels already on the machine (the run's wheelhouse, the imported
    /// ones); nothing is built but the project.
    Offline,
    /// The wheelhouse was restored under its exact key: install from it alone; when a wheel is
    /// missing after all, `then` builds.
    ExactWheelhouse { then: Builder },
    /// Build what the wheelhouse lacks, then install.
    Build(Builder),
}

/// Who builds the wheels the wheelhouse lacks.
#[derive(Debug, Clone, PartialEq)]
pub enum Builder {
    /// uv at this path, in one parallel install: Kiln's PEP 517 frontend builds the resolved
    /// sdists and the editable project first, uv builds the rest, its built wheels are
    /// harvested from its cache, the ready-made ones collected by `pip wheel` in the background.
    ParallelUv(PathBuf),
    /// `pip wheel` into the wheelhouse, one sdist at a time, then the tool installs.
    PipThenInstall,
}

/// The bootstrap's plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The installer; `None` when the project's own command installs.
    pub tool: Option<Tool>,
    pub path: InstallPath,
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
        self.tool.as_ref()
    }
}

/// What the plan is made from.
pub struct PlanInputs<'a> {
    pub config: &'a Config,
    pub prepared: &'a Prepared,
    pub py: &'a PythonInfo,
    pub paths: &'a Paths,
    pub offline: bool,
    /// The wheelhouse was restored under its exact key.
    pub wheelhouse_exact: bool,
    /// Where uv is installed when it is not on PATH.
    pub tools_dir: &'a Path,
}

/// The installer the settings ask for (this may install uv into Kiln's tool dir); `None` for
/// the project's own command.
async fn tool(
    inp: &PlanInputs<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<Tool>, BootstrapError> {
    let (py, offline, tools_dir) = (inp.py, inp.offline, inp.tools_dir);
    Ok(
        match (
            &inp.config.bootstrap.command,
            inp.config.bootstrap.installer,
        ) {
            (Some(_), _) => None,
            (None, Installer::Pip) => Some(Tool::Pip),
            (None, Installer::Uv) => {
                match toolchain::find_or_install_uv(py, offline, tools_dir, warnings).await {
                    Some(uv) => Some(Tool::Uv(uv)),
                    None => {
                        return Err(BootstrapError::Install {
                            installer: "uv".into(),
                            code: -1,
                            tail:
                                "bootstrap.installer is `uv` but uv is not on PATH and could not \
                               be installed"
                                    .into(),
                        })
                    }
                }
            }
            (None, Installer::Auto) => {
                let uv = toolchain::find_or_install_uv(py, offline, tools_dir, warnings).await;
                Some(uv.map(Tool::Uv).unwrap_or(Tool::Pip))
            }
        },
    )
}

/// Make the plan (this may install uv into Kiln's tool dir).
pub async fn plan(inp: PlanInputs<'_>, warnings: &mut Vec<String>) -> Result<Plan, BootstrapError> {
    let tool = tool(&inp, warnings).await?;
    let host_pip = matches!(tool, Some(Tool::Pip)) && inp.py.pip.is_some_and(|v| v >= (22, 3));
    let (detected, checkout, paths) = (&inp.prepared.detected, &inp.paths.checkout, inp.paths);
    let deps = crate::project::plan::plan(
        detected,
        checkout,
        &inp.config.constraints,
        inp.prepared.locked.clone(),
        &paths.wheelhouse,
        &paths.tmp,
    )?;
    for at in &deps.project_named_at {
        tracing::info!(
            "{at} names the project itself: Kiln installs it once ({}), with its compiled-module \
             check",
            detected.install.as_str()
        );
    }
    let mut project_args = project_plan::project_args(detected, checkout, &deps.project_extras);
    project_args.extend(project_plan::local_args(&deps.local, checkout));
    let locals: Vec<(PathBuf, bool)> = deps
        .local
        .iter()
        .cloned()
        .chain(deps.local_in_requirements.iter().map(|d| (d.clone(), true)))
        .collect();
    let build_requires = build_requires(detected, &locals, checkout);
    let dynamic_deps = detected.install != InstallMode::None
        && detected
            .pyproject
            .as_ref()
            .is_none_or(|p| p.project.is_none() || p.dynamic_dependencies());
    let mut plan = Plan {
        tool,
        path: InstallPath::Nothing,
        host_pip,
        deps,
        project: project_args,
        build_requires,
        dynamic_deps,
    };
    plan.path = install_path(&inp, &plan);
    Ok(plan)
}

/// The one path the install takes, in this order: the project's command, nothing to install,
/// offline, the exact wheelhouse (then its builder), a build.
fn install_path(inp: &PlanInputs<'_>, plan: &Plan) -> InstallPath {
    let builder = match &plan.tool {
        None => {
            let command = inp.config.bootstrap.command.clone();
            return InstallPath::Command(command.unwrap_or_default());
        }
        Some(Tool::Uv(uv)) if parallel_uv_applies(plan) => Builder::ParallelUv(uv.clone()),
        Some(_) => Builder::PipThenInstall,
    };
    if plan.installs_nothing() {
        InstallPath::Nothing
    } else if inp.offline {
        InstallPath::Offline
    } else if inp.wheelhouse_exact {
        InstallPath::ExactWheelhouse { then: builder }
    } else {
        InstallPath::Build(builder)
    }
}

/// uv builds the dependencies and the project in parallel when the requirement files need no
/// rewriting for the install (no lock, no hash or binary options) and there is something to
/// build: see `install::uv`.
fn parallel_uv_applies(plan: &Plan) -> bool {
    let deps = &plan.deps;
    !deps.locked
        && (!deps.wheel_args.is_empty() || !plan.project.is_empty())
        && deps.wheel_args == deps.install_args
}

/// Resolved installer.
#[derive(Debug, Clone)]
pub enum Tool {
    Uv(PathBuf),
    Pip,
}

impl Tool {
    /// `uv` or `pip`, as the summary names the installer.
    pub fn name(&self) -> &'static str {
        match self {
            Tool::Uv(_) => "uv",
            Tool::Pip => "pip",
        }
    }
}

/// Build requirements of the project (when installed) and of each local path dependency, in
/// order, without duplicates.
pub fn build_requires(
    detected: &Project,
    local: &[(PathBuf, bool)],
    checkout: &Path,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if detected.install != InstallMode::None {
        out.extend(detected.build_requires.iter().cloned());
    }
    for (dir, _) in local {
        let file = checkout.join(dir).join("pyproject.toml");
        match PyProject::load(&file) {
            Ok(p) => out.extend(p.build_requires()),
            Err(_) => out.push(LEGACY_BUILD_REQUIRES.to_string()),
        }
    }
    let mut seen = BTreeSet::new();
    out.retain(|r| seen.insert(r.clone()));
    out
}

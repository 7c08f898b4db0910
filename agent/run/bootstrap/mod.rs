//! Bootstrap stage: a fresh virtualenv with the project's requirements, compiling as little as
//! possible.
//!
//! The stage, in order: [`plan`] (the installer, the requirement arguments and the one
//! [`plan::InstallPath`]), [`venv`] (the fresh venv), [`install`] (the requirements by that path,
//! then pytest, then the wheelhouse pruned), [`compiled`] (the project's compiled modules
//! import), [`ccache`] (its stats: were new results stored). The build environment every build
//! child gets is [`ccache::build_env`]: [`crate::run::build_env`] plus ccache in front of the
//! compilers.
//!
//! Wheels go into the wheelhouse ([`crate::wheels`], kept between runs by the restore and save
//! stages), so a warm run compiles nothing but the project. Who produces them on each path:
//!
//! | path | wheels into the wheelhouse from |
//! |---|---|
//! | `Command` (`bootstrap.command`) | the project's own command (pip and uv pointed at the wheelhouse) |
//! | `Nothing` | nobody (pytest aside: [`install::pytest`]) |
//! | `Offline` | nobody: only wheels already on the machine; the project built by the installer |
//! | `ExactWheelhouse` | nobody; a wheel missing after all: the builder below |
//! | `Build(ParallelUv)` | Kiln's PEP 517 frontend ([`build`]: the resolved sdists and the editable project, in parallel), then uv's one parallel install (its built wheels harvested from its cache), ready-made wheels copied from local `--find-links` dirs or collected by `pip wheel` in the background ([`install::collect`], joined before the save) |
//! | `Build(PipThenInstall)` | `pip wheel`, one sdist at a time ([`install::pip`]), then the install |
//!
//! On the tool paths the project's editable wheel is built by Kiln's frontend first when
//! nothing else builds alongside it (exact wheelhouse, no dependencies): see
//! [`build::editable`].

pub mod build;
pub mod ccache;
pub mod compiled;
mod error;
pub mod install;
pub mod plan;
pub mod venv;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::sandbox::{Network, ProjectRunner};
use crate::settings::{names, Config};
use crate::summary::{CcacheSummary, ProjectSummary, WheelSummary};

use super::build_env::path_with;
use super::project::Prepared;
use super::toolchain::{self, PythonInfo};
use super::untrusted::{self, Scope};
use super::workdir::Paths;
use ccache::Ccache;
pub use error::BootstrapError;
use install::collect::Pending;
use install::installing::Installed;
use install::InstallInputs;
use plan::{Plan, PlanInputs, Tool};

/// What the bootstrap stage needs.
pub struct BootstrapInputs<'a> {
    pub project: &'a Config,
    /// What the checkout is, and its locked set.
    pub prepared: &'a Prepared,
    pub paths: &'a Paths,
    /// The interpreter, when the restore stage probed it.
    pub python: Option<&'a PythonInfo>,
    /// The wheelhouse was restored under its exact key.
    pub wheelhouse_exact: bool,
    pub offline: bool,
    /// `KILN_CCACHE_BIN`.
    pub ccache_bin: Option<&'a str>,
    /// Where uv is installed when it is not on PATH.
    pub tools_dir: &'a Path,
    /// How the project's code runs (sandbox, environment).
    pub runner: &'a ProjectRunner,
}

/// What bootstrap produced, for the test and save stages and the summary.
#[derive(Debug, Default)]
pub struct BootstrapOutput {
    /// "uv", "pip" or "command".
    pub installer: String,
    pub wheels: WheelSummary,
    pub ccache: CcacheSummary,
    /// The project's own install, when it is installed.
    pub project: Option<ProjectSummary>,
    /// ccache stored new results in this run: its cache is worth saving.
    pub ccache_new_entries: bool,
    /// The install used the wheelhouse (false: nothing to install, so nothing worth saving —
    /// a wheelhouse restored by prefix from another project is not this one's to save).
    pub wheelhouse_used: bool,
    /// Environment for the test command (venv activated).
    pub test_env: Vec<(OsString, OsString)>,
    /// Seconds spent creating the venv, building wheels and installing.
    pub venv_seconds: f64,
    pub build_seconds: f64,
    pub install_seconds: f64,
    /// The runner with the interpreter (and uv) shown inside the sandbox, for the tests.
    pub runner: Option<ProjectRunner>,
    /// Ready-made wheels still being collected: [`finish_wheelhouse`] before the save.
    pub pending: Option<Pending>,
}

/// The run's runner, with the interpreter's installation and uv shown read-only inside the
/// sandbox (they may live under a hidden `$HOME`, e.g. pyenv).
fn runner_for(inp: &BootstrapInputs<'_>, py: &PythonInfo, tool: Option<&Tool>) -> ProjectRunner {
    let mut runner = inp.runner.clone();
    let uv = match tool {
        Some(Tool::Uv(uv)) => Some(uv.as_path()),
        _ => None,
    };
    for program in std::iter::once(py.path.as_path()).chain(uv) {
        if let Err(e) = runner.expose_tool(program) {
            tracing::warn!("the sandbox cannot show {}: {e}", program.display());
        }
    }
    if inp.offline {
        // Imported wheels (`kiln wheelhouse import`) live outside the work dir.
        for dir in crate::wheels::offline::search_dirs(&inp.paths.wheelhouse) {
            if dir != inp.paths.wheelhouse {
                if let Err(e) = runner.expose_dir(&dir) {
                    tracing::warn!("the sandbox cannot show {}: {e}", dir.display());
                }
            }
        }
    }
    runner
}

/// Build the fresh venv and install the requirements.
pub async fn bootstrap(inp: BootstrapInputs<'_>) -> Result<BootstrapOutput, BootstrapError> {
    let py = match inp.python {
        Some(py) => py.clone(),
        None => toolchain::python_info(&inp.project.python).await?,
    };
    let paths = inp.paths;
    let mut warnings = Vec::new();
    let ccache = Ccache::find(inp.ccache_bin);
    let trust = inp.runner.trust();
    let build_env = ccache::build_env(
        ccache.as_ref(),
        paths,
        inp.project,
        inp.offline,
        trust,
        &mut warnings,
    )
    .await;
    let started = Instant::now();
    let plan = plan::plan(plan_inputs(&inp, &py), &mut warnings).await?;
    venv::create(&plan, &py, &paths.venv, &build_env).await?;
    let venv_seconds = started.elapsed().as_secs_f64();
    let runner = runner_for(&inp, &py, plan.tool());
    let scope = Scope {
        cwd: &paths.checkout,
        env: &build_env,
        runner: &runner,
        // Building what the wheelhouse lacks downloads (unless --offline).
        network: network(inp.offline),
    };
    let install_inputs = InstallInputs {
        config: inp.project,
        plan: &plan,
        py: &py,
        paths,
        offline: inp.offline,
        wheelhouse_exact: inp.wheelhouse_exact,
    };
    let installed = install::install(install_inputs, scope, &mut warnings).await?;
    let mut out = output(&plan, &installed, venv_seconds);
    out.project = check_project(&inp, &plan, &installed, scope).await?;
    if ccache.is_some() {
        out.ccache = ccache::stats(paths, &source_dirs(&plan, paths));
        // New results are worth a save when a later run can hit them: the sources are still
        // there (the project, local path dependencies), or wheels were built (their sources
        // were in temp build dirs, but the next partial restore builds the same sdists).
        out.ccache_new_entries =
            out.ccache.kept_misses > 0 || (out.ccache.misses > 0 && out.wheels.built > 0);
    }
    out.test_env = test_env(paths);
    out.runner = Some(runner);
    out.pending = installed.pending;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(out)
}

fn plan_inputs<'a>(inp: &BootstrapInputs<'a>, py: &'a PythonInfo) -> PlanInputs<'a> {
    PlanInputs {
        config: inp.project,
        prepared: inp.prepared,
        py,
        paths: inp.paths,
        offline: inp.offline,
        wheelhouse_exact: inp.wheelhouse_exact,
        tools_dir: inp.tools_dir,
    }
}

/// The stage's output from what the install did (the project, ccache, the environment and the
/// runner follow).
fn output(plan: &Plan, installed: &Installed, venv_seconds: f64) -> BootstrapOutput {
    let tool = plan.tool();
    BootstrapOutput {
        installer: match tool {
            Some(t) => t.name().into(),
            None => "command".into(),
        },
        wheels: installed.wheels.clone(),
        wheelhouse_used: tool.is_none() || !plan.installs_nothing() || installed.pytest_added,
        venv_seconds,
        build_seconds: installed.build_seconds,
        install_seconds: installed.install_seconds,
        ..BootstrapOutput::default()
    }
}

/// The project's own install checked (its compiled modules import) and summarized, when Kiln
/// installed it.
async fn check_project(
    inp: &BootstrapInputs<'_>,
    plan: &Plan,
    installed: &Installed,
    scope: Scope<'_>,
) -> Result<Option<ProjectSummary>, BootstrapError> {
    let paths = inp.paths;
    if plan.tool().is_none() || plan.project.is_empty() {
        return Ok(None);
    }
    let probe_env = test_env(paths);
    let python = untrusted::program(
        paths.venv.join("bin").join("python"),
        Scope {
            cwd: &paths.tmp,
            env: &probe_env,
            ..scope.offline()
        },
    );
    let detected = &inp.prepared.detected;
    let summary = compiled::summarize(detected, plan, installed, python, &paths.checkout).await?;
    Ok(Some(summary))
}

/// The directories this run compiles from in place: the checkout, its local path
/// dependencies, the work dir (builds in its temp dir).
fn source_dirs(plan: &Plan, paths: &Paths) -> Vec<PathBuf> {
    let locals = plan.deps.local.iter().map(|(dir, _)| dir);
    let locals = locals.chain(plan.deps.local_in_requirements.iter());
    let mut dirs = vec![paths.checkout.clone(), paths.workdir.clone()];
    dirs.extend(locals.map(|d| paths.checkout.join(d)));
    dirs
}

fn network(offline: bool) -> Network {
    if offline {
        Network::Denied
    } else {
        Network::Allowed
    }
}

/// The test command's environment: the venv activated, the wheelhouse named.
fn test_env(paths: &Paths) -> Vec<(OsString, OsString)> {
    let bin = paths.venv.join("bin");
    vec![
        ("VIRTUAL_ENV".into(), paths.venv.clone().into()),
        ("PATH".into(), path_with(&[&bin])),
        (names::WHEELHOUSE.into(), paths.wheelhouse.clone().into()),
    ]
}

/// Wait for the ready-made wheels still being collected (see [`install::collect`]) and put them in the
/// wheelhouse: before the save stage, which saves the wheelhouse.
pub async fn finish_wheelhouse(out: &mut BootstrapOutput) {
    let Some(pending) = out.pending.take() else {
        return;
    };
    match pending.finish().await {
        Ok(c) => {
            tracing::info!(
                "collected {} ready-made wheel(s) into the wheelhouse",
                c.added.len()
            );
            install::log_pruned(&c.pruned);
            for name in c.built {
                if !out.wheels.built_names.contains(&name) {
                    out.wheels.built_names.push(name);
                    out.wheels.built += 1;
                }
            }
        }
        Err(e) => tracing::warn!(
            "could not collect the ready-made wheels ({e}): the wheelhouse is saved without them"
        ),
    }
}

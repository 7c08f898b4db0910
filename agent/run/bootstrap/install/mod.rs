//! The install step: the plan's [`InstallPath`] run with one [`Installing`] context, then
//! pytest when the test command needs it, then the wheelhouse pruned to what was used.
//!
//! One file per path: [`command`] (the project's own command), [`offline`], [`exact`] (the
//! wheelhouse restored under its exact key), [`uv`] (the parallel uv build, with
//! [`ready_made`] and [`collect`]), [`pip`] (`pip wheel` then install). [`installing`] is the
//! context they share and the install from the wheelhouse they end with; [`output`] reads what
//! pip and uv reported; [`pytest`] adds pytest.

pub mod collect;
pub mod command;
pub mod exact;
pub mod installing;
pub mod offline;
pub mod output;
pub mod pip;
pub mod pytest;
pub mod ready_made;
pub mod uv;

use std::time::Instant;

use crate::run::build_env::uv_cache;
use crate::run::toolchain::PythonInfo;
use crate::run::untrusted::Scope;
use crate::run::workdir::Paths;
use crate::settings::Config;
use crate::wheels;

use super::build::frontend::Sources;
use super::error::BootstrapError;
use super::plan::{Builder, InstallPath, Plan, Tool};
use installing::{Installed, Installing};

/// What the install needs besides the plan.
pub struct InstallInputs<'a> {
    pub config: &'a Config,
    pub plan: &'a Plan,
    pub py: &'a PythonInfo,
    pub paths: &'a Paths,
    pub offline: bool,
    /// The wheelhouse was restored under its exact key.
    pub wheelhouse_exact: bool,
}

/// Put the requirements into the venv by the plan's path (the checkout and the build
/// environment in `scope`).
pub async fn install(
    inp: InstallInputs<'_>,
    scope: Scope<'_>,
    warnings: &mut Vec<String>,
) -> Result<Installed, BootstrapError> {
    match (&inp.plan.path, inp.plan.tool()) {
        (InstallPath::Command(command), _) => command::run(command, inp.paths, scope).await,
        (_, Some(tool)) => with_tool(&inp, tool, scope, warnings).await,
        // The plan gives every path but the command a tool.
        (_, None) => Ok(Installed::default()),
    }
}

/// Kiln's install: from the wheelhouse, building only what it lacks; then pytest when the test
/// command needs it.
async fn with_tool(
    inp: &InstallInputs<'_>,
    tool: &Tool,
    scope: Scope<'_>,
    warnings: &mut Vec<String>,
) -> Result<Installed, BootstrapError> {
    let (plan, paths) = (inp.plan, inp.paths);
    let mut i = Installing {
        tool,
        host_pip: plan.host_pip,
        py: inp.py,
        venv_python: paths.venv.join("bin").join("python"),
        wheelhouse: &paths.wheelhouse,
        deps: &plan.deps,
        project: plan.project.clone(),
        build_requires: &plan.build_requires,
        project_dist: paths.tmp.join("project-dist"),
        dynamic_deps: plan.dynamic_deps,
        scope,
    };
    let prebuild_seconds = prebuild(inp, &mut i).await?;
    let mut done = by_path(inp, &i, warnings).await?;
    done.build_seconds += prebuild_seconds;
    done.project_seconds += prebuild_seconds;
    let test_command = &inp.config.test.command;
    let (added, report) = pytest::ensure_pytest(&i, test_command, inp.offline).await?;
    done.pytest_added |= added;
    done.wheels.built += report.built.len() as u32;
    done.wheels.built_names.extend(report.built);
    if done.used.is_none() && done.wheels.built == 0 {
        // The exact and offline paths built nothing: everything the venv holds but the
        // project came from the wheelhouse (the installers' own counts miss the project's
        // step and pytest).
        done.wheels.reused = done.wheels.reused.max(i.reused_in_venv());
    }
    let max_age = inp.config.cache.wheelhouse.max_age;
    if let Some(used) = done.used.as_mut() {
        used.extend(report.used);
        match done.pending.as_mut() {
            // The prune waits for the wheels still being collected.
            Some(pending) => {
                pending.used.extend(std::mem::take(used));
                pending.max_age = max_age;
            }
            None => {
                let removed = wheels::prune(&paths.wheelhouse, used, max_age);
                log_pruned(&removed);
            }
        }
    }
    Ok(done)
}

/// The project's editable wheel built by Kiln's frontend when it applies (see
/// [`super::build::editable`]), put in the install in place of the checkout. Returns the
/// seconds it took.
async fn prebuild(inp: &InstallInputs<'_>, i: &mut Installing<'_>) -> Result<f64, BootstrapError> {
    let started = Instant::now();
    let sources = Sources {
        nothing_alongside: inp.wheelhouse_exact || inp.plan.deps.is_empty(),
        wheelhouse_only: inp.wheelhouse_exact || inp.offline,
        offline: inp.offline,
    };
    if let Some(wheel) = i
        .prebuild_editable(&inp.paths.tmp, sources, Vec::new())
        .await?
    {
        i.project = i.with_prebuilt(&wheel);
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The requirements in by the plan's path (not the command's).
async fn by_path(
    inp: &InstallInputs<'_>,
    i: &Installing<'_>,
    warnings: &mut Vec<String>,
) -> Result<Installed, BootstrapError> {
    let builder = match &inp.plan.path {
        InstallPath::Command(_) | InstallPath::Nothing => return Ok(Installed::default()),
        InstallPath::Offline => return i.offline().await,
        InstallPath::ExactWheelhouse { then } => {
            if let Some(done) = i.from_exact_wheelhouse().await? {
                return Ok(done);
            }
            warnings.push(
                "the restored wheelhouse lacks wheels for these requirements: building them".into(),
            );
            then
        }
        InstallPath::Build(builder) => builder,
    };
    match builder {
        Builder::ParallelUv(uv) => {
            let (paths, uv_cache) = (inp.paths, uv_cache(inp.paths));
            let pytest = crate::project::runs_pytest(&inp.config.test.command);
            i.uv_build_in_parallel(uv, &uv_cache, &paths.tmp, pytest)
                .await
        }
        Builder::PipThenInstall => i.build_then_install().await,
    }
}

/// Log the wheels a prune removed.
pub fn log_pruned(removed: &[String]) {
    if !removed.is_empty() {
        tracing::info!(
            "pruned {} unused wheel(s): {}",
            removed.len(),
            removed.join(", ")
        );
    }
}

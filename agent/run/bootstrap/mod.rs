//! Bootstrap stage: a fresh virtualenv with the project's requirements, compiling as little as
//! possible.
//!
//! The technique (see the seed article): build wheels with `pip wheel` into a persistent
//! wheelhouse, with ccache as the compiler, then install offline from the wheelhouse. On a warm run
//! the wheelhouse already holds every wheel, so nothing compiles and the install is seconds —
//! and with uv (creating the venv and installing) well under one.
//!
//! Why the venv is created `--without-pip` when pip installs: ensurepip costs ~6 s per venv, while
//! the host's pip (≥ 22.3) can install into any interpreter with `--python`.
//!
//! [`plan`] decides what to do, [`ccache`] puts the compile cache in front of the compilers,
//! [`installers`] runs uv/pip; this file puts them in order.

pub mod ccache;
pub mod collect;
mod command_venv;
mod error;
mod frontend;
pub mod installers;
mod native_venv;
pub mod parallel_build;
pub mod plan;
pub mod project;
pub mod ready_made;
mod sdist_builds;
pub mod venv_dists;

use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

use crate::sandbox::{Network, ProjectRunner, Trust};
use crate::settings::Config;
use crate::summary::{CcacheSummary, ProjectSummary, WheelSummary};
use crate::wheels;

use super::toolchain::{self, PythonInfo};
use super::untrusted::{self, Scope};
use super::workdir::Paths;
use ccache::Ccache;
pub use error::BootstrapError;
use installers::{Installed, Installing, Tool};
use plan::{Plan, Strategy};

/// What the bootstrap stage needs.
pub struct BootstrapInputs<'a> {
    pub project: &'a Config,
    /// What the checkout is, and its locked set.
    pub prepared: &'a super::project::Prepared,
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
    pub pending: Option<collect::Pending>,
}

/// The build environment: the work dir's variables, ccache in front of the compilers, PATH.
async fn build_env(
    inp: &BootstrapInputs<'_>,
    ccache: Option<&Ccache>,
    warnings: &mut Vec<String>,
) -> Vec<(OsString, OsString)> {
    let mut env = plan::build_env(inp.paths, inp.offline);
    let prefix = match ccache::enable(ccache, inp.paths, inp.project, &mut env).await {
        Ok(dir) => Some(dir),
        Err(w) => {
            warnings.push(w);
            None
        }
    };
    let prefix: Vec<&Path> = prefix.iter().map(|p| p.as_path()).collect();
    env.push(("PATH".into(), plan::path_with(&prefix)));
    if inp.runner.trust() == Trust::Untrusted {
        let before = env.len();
        env.retain(|(k, _)| k != "CCACHE_REMOTE_STORAGE");
        if env.len() != before {
            warnings.push(
                "untrusted build: the ccache remote is not used (its code could write to it)"
                    .into(),
            );
        }
    }
    env
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
    let build_env = build_env(&inp, ccache.as_ref(), &mut warnings).await;

    let started = Instant::now();
    let plan = plan::plan(
        inp.project,
        inp.prepared,
        &py,
        paths,
        inp.offline,
        inp.tools_dir,
        &mut warnings,
    )
    .await?;
    let tool = plan.tool();
    create_venv(&plan, &py, &paths.venv, &build_env).await?;
    let mut out = BootstrapOutput {
        venv_seconds: started.elapsed().as_secs_f64(),
        ..BootstrapOutput::default()
    };
    let runner = runner_for(&inp, &py, tool);
    let scope = Scope {
        cwd: &paths.checkout,
        env: &build_env,
        runner: &runner,
        // Building what the wheelhouse lacks downloads (unless --offline).
        network: network(inp.offline),
    };
    let installed = match &plan.strategy {
        Strategy::ProjectCommand(command) => project_command(command, paths, scope).await?,
        Strategy::Install(tool) => install(&inp, &py, &plan, tool, scope, &mut warnings).await?,
    };
    out.installer = match tool {
        Some(t) => t.name().into(),
        None => "command".into(),
    };
    out.wheels = installed.wheels.clone();
    out.wheelhouse_used = tool.is_none() || !plan.installs_nothing() || installed.pytest_added;
    out.build_seconds = installed.build_seconds;
    out.install_seconds = installed.install_seconds;
    if tool.is_some() && !plan.project.is_empty() {
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
        out.project =
            Some(project::summarize(detected, &plan, &installed, python, &paths.checkout).await?);
    }
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

/// The directories this run compiles from in place: the checkout, its local path
/// dependencies, the work dir (builds in its temp dir).
fn source_dirs(plan: &Plan, paths: &Paths) -> Vec<std::path::PathBuf> {
    let locals = plan.deps.local.iter().map(|(dir, _)| dir);
    let locals = locals.chain(plan.deps.local_in_requirements.iter());
    let mut dirs = vec![paths.checkout.clone(), paths.workdir.clone()];
    dirs.extend(locals.map(|d| paths.checkout.join(d)));
    dirs
}

/// The fresh venv: written by Kiln for a uv install into a CPython it knows the layout of
/// (see [`native_venv`]), else by the plan's tool.
async fn create_venv(
    plan: &Plan,
    py: &PythonInfo,
    venv: &Path,
    build_env: &[(OsString, OsString)],
) -> Result<(), BootstrapError> {
    if plan.tool().is_none() {
        return command_venv::create(py, venv, build_env).await;
    }
    if let (Some(Tool::Uv(_)), Some(layout)) = (plan.tool(), &py.venv) {
        return native_venv::create(py, layout, venv)
            .map_err(|e| BootstrapError::Venv(format!("writing {}: {e}", venv.display())));
    }
    let v = installers::venv_cmd(plan.tool(), plan.host_pip, py, venv)
        .envs(build_env)
        .run()
        .await?;
    if !v.success {
        return Err(BootstrapError::Venv(v.tail(20)));
    }
    Ok(())
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
        ("PATH".into(), plan::path_with(&[&bin])),
        ("KILN_WHEELHOUSE".into(), paths.wheelhouse.clone().into()),
    ]
}

/// Kiln's install: from the wheelhouse, building only what it lacks; then pytest when the test
/// command needs it.
async fn install(
    inp: &BootstrapInputs<'_>,
    py: &PythonInfo,
    plan: &Plan,
    tool: &Tool,
    scope: Scope<'_>,
    warnings: &mut Vec<String>,
) -> Result<Installed, BootstrapError> {
    let mut i = Installing {
        tool,
        host_pip: plan.host_pip,
        py,
        venv_python: inp.paths.venv.join("bin").join("python"),
        wheelhouse: &inp.paths.wheelhouse,
        deps: &plan.deps,
        project: plan.project.clone(),
        build_requires: &plan.build_requires,
        project_dist: inp.paths.tmp.join("project-dist"),
        dynamic_deps: plan.dynamic_deps,
        scope,
    };
    let prebuild_seconds = prebuild(inp, plan, &mut i).await?;
    let mut done = install_requirements(inp, &i, warnings).await?;
    done.build_seconds += prebuild_seconds;
    done.project_seconds += prebuild_seconds;
    let (added, report) =
        project::ensure_pytest(&i, &inp.project.test.command, inp.offline).await?;
    done.pytest_added |= added;
    done.wheels.built += report.built.len() as u32;
    done.wheels.built_names.extend(report.built);
    let max_age = inp.project.cache.wheelhouse.max_age;
    if let Some(used) = done.used.as_mut() {
        used.extend(report.used);
        match done.pending.as_mut() {
            // The prune waits for the wheels still being collected.
            Some(pending) => {
                pending.used.extend(std::mem::take(used));
                pending.max_age = max_age;
            }
            None => {
                let removed = wheels::prune(&inp.paths.wheelhouse, used, max_age);
                log_pruned(&removed);
            }
        }
    }
    Ok(done)
}

/// The project's editable wheel built by Kiln's frontend when it applies (see [`frontend`]),
/// put in the install in place of the checkout. Returns the seconds it took.
async fn prebuild(
    inp: &BootstrapInputs<'_>,
    plan: &Plan,
    i: &mut Installing<'_>,
) -> Result<f64, BootstrapError> {
    let started = Instant::now();
    let sources = frontend::Sources {
        nothing_alongside: inp.wheelhouse_exact || plan.deps.is_empty(),
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

pub(crate) fn log_pruned(removed: &[String]) {
    if !removed.is_empty() {
        tracing::info!(
            "pruned {} unused wheel(s): {}",
            removed.len(),
            removed.join(", ")
        );
    }
}

/// Wait for the ready-made wheels still being collected (see [`collect`]) and put them in the
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
            log_pruned(&c.pruned);
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

async fn install_requirements(
    inp: &BootstrapInputs<'_>,
    i: &Installing<'_>,
    warnings: &mut Vec<String>,
) -> Result<Installed, BootstrapError> {
    if plan_is_empty(i) {
        return Ok(Installed::default());
    }
    if inp.offline {
        return i.offline().await;
    }
    if inp.wheelhouse_exact {
        if let Some(done) = i.from_exact_wheelhouse().await? {
            return Ok(done);
        }
        warnings.push(
            "the restored wheelhouse lacks wheels for these requirements: building them".into(),
        );
    }
    match tool_for_parallel_build(i) {
        Some(uv) => {
            let uv_cache = plan::uv_cache(inp.paths);
            let pytest = project::runs_pytest(&inp.project.test.command);
            i.uv_build_in_parallel(uv, &uv_cache, &inp.paths.tmp, pytest)
                .await
        }
        None => i.build_then_install().await,
    }
}

/// uv builds the dependencies and the project in parallel when it installs and the requirement
/// files need no rewriting for the install (no lock, no hash or binary options): see
/// `parallel_build`.
fn tool_for_parallel_build<'a>(i: &Installing<'a>) -> Option<&'a std::path::Path> {
    match i.tool {
        Tool::Uv(uv)
            if !i.deps.locked
                && (!i.deps.wheel_args.is_empty() || !i.project.is_empty())
                && i.deps.wheel_args == i.deps.install_args =>
        {
            Some(uv)
        }
        _ => None,
    }
}

fn plan_is_empty(i: &Installing<'_>) -> bool {
    i.deps.is_empty() && i.project.is_empty() && i.build_requires.is_empty()
}

/// The project's own bootstrap command, with Kiln's environment; the wheels it adds to the
/// wheelhouse count as built.
async fn project_command(
    command: &str,
    paths: &Paths,
    scope: Scope<'_>,
) -> Result<Installed, BootstrapError> {
    let before = wheels::list(&paths.wheelhouse);
    let bin = paths.venv.join("bin");
    let masq = paths.tmp.join("ccache-bin");
    let wh = paths.wheelhouse.clone().into_os_string();
    let mut env = scope.env.to_vec();
    env.extend([
        ("VIRTUAL_ENV".into(), paths.venv.clone().into()),
        ("PATH".into(), plan::path_with(&[&bin, &masq])),
        ("PIP_FIND_LINKS".into(), wh.clone()),
        ("PIP_WHEEL_DIR".into(), wh.clone()),
        // uv reads the wheelhouse too (`uv pip install` finds the wheels there).
        ("UV_FIND_LINKS".into(), wh.clone()),
        ("KILN_WHEELHOUSE".into(), wh),
        ("KILN_VENV".into(), paths.venv.clone().into()),
    ]);
    tracing::info!("$ {command}");
    let scope = Scope { env: &env, ..scope };
    let o = untrusted::shell(command, scope).echo(true).run().await?;
    if !o.success {
        return Err(BootstrapError::Command {
            code: o.code.unwrap_or(-1),
            tail: o.tail(30),
        });
    }
    let after = wheels::list(&paths.wheelhouse);
    Ok(Installed {
        wheels: WheelSummary {
            built: after.difference(&before).count() as u32,
            built_names: after.difference(&before).cloned().collect(),
            reused: after.intersection(&before).count() as u32,
        },
        ..Installed::default()
    })
}

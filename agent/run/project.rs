//! The project step, between checkout and restore: what the checkout is (where its dependencies
//! come from, whether the project itself is installed, what its build needs) and, for a lock
//! file, the locked set. Everything here is the user's to fix: an error ends the run with exit 2.

use std::path::Path;

use crate::process::Cmd;
use crate::project::local_dirs;
use crate::project::locks::{self, LockedSet};
use crate::project::{detect, DepsSource, Project, ProjectError};
use crate::sandbox::{Network, ProjectRunner, ShowError};
use crate::settings::Config;

use super::build_env::build_env;
use super::toolchain;
use super::workdir::Paths;

/// The detected project and, for `uv.lock` / `pylock.toml`, the locked requirement set.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub detected: Project,
    pub locked: Option<LockedSet>,
    /// Said once, by the caller.
    pub warnings: Vec<String>,
}

/// Why the project cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error("uv.lock needs uv to be read, and uv is not installed ({0}); install uv or set project.source")]
    NoUv(String),
    #[error(transparent)]
    Hidden(#[from] ShowError),
}

/// What exporting `uv.lock` needs.
struct LockExport<'a> {
    python: &'a str,
    paths: &'a Paths,
    offline: bool,
    tools_dir: &'a Path,
    runner: &'a ProjectRunner,
}

/// `uv export` of the checkout's `uv.lock`, in the sandbox (checking the lock may run the
/// project's build backend).
async fn export_uv_lock(
    inp: LockExport<'_>,
    detected: &Project,
    warnings: &mut Vec<String>,
) -> Result<LockedSet, PrepareError> {
    let py = toolchain::python_info(inp.python)
        .await
        .map_err(|e| PrepareError::NoUv(e.to_string()))?;
    let uv = toolchain::find_or_install_uv(&py, inp.offline, inp.tools_dir, warnings)
        .await
        .ok_or_else(|| PrepareError::NoUv(warnings.join("; ")))?;
    let env = build_env(inp.paths, inp.offline);
    let runner = runner_with(inp.runner, &[&py.path, &uv]);
    let network = if inp.offline {
        Network::Denied
    } else {
        Network::Allowed
    };
    let sandboxed = |cmd: Cmd| runner.command(cmd, &env, network);
    let (set, warning) = locks::export_uv_lock(
        &uv,
        &inp.paths.checkout,
        &detected.extras,
        &detected.groups,
        detected.default_groups,
        &sandboxed,
    )
    .await?;
    warnings.extend(warning);
    Ok(set)
}

/// `runner` with `programs` (the interpreter, uv) shown read-only inside its sandbox: they may
/// live under a hidden `$HOME` (pyenv, Kiln's tool dir).
fn runner_with(runner: &ProjectRunner, programs: &[&Path]) -> ProjectRunner {
    let mut runner = runner.clone();
    for program in programs {
        if let Err(e) = runner.expose_tool(program) {
            tracing::warn!("the sandbox cannot show {}: {e}", program.display());
        }
    }
    runner
}

/// Detect the project and read its lock file. `uv export` runs the project's code (its build
/// backend) through `runner`, like every other step that does. The local directories the
/// project's configuration names outside the checkout (find-links, local indexes, path
/// dependencies) are shown read-only in `runner`'s sandbox first, or refused with an error
/// that names them (see `sandbox::ProjectRunner::show_named`).
pub async fn prepare(
    config: &Config,
    paths: &Paths,
    offline: bool,
    tools_dir: &Path,
    runner: &mut ProjectRunner,
) -> Result<Prepared, PrepareError> {
    let named = (config.requirements != Config::default().requirements)
        .then_some(config.requirements.as_slice());
    let detected = detect::detect(detect::DetectInput {
        checkout: &paths.checkout,
        config: &config.project,
        requirements: named,
    })?;
    let mut warnings = Vec::new();
    for dir in local_dirs::named_dirs(&paths.checkout, &detected) {
        runner.show_named(&dir.path, &dir.named_by)?;
    }
    let locked = match &detected.source {
        DepsSource::UvLock { .. } => {
            let inp = LockExport {
                python: &config.python,
                paths,
                offline,
                tools_dir,
                runner: &*runner,
            };
            Some(export_uv_lock(inp, &detected, &mut warnings).await?)
        }
        DepsSource::Pylock { lock } => Some(locks::read_pylock(
            &paths.checkout.join(lock),
            &detected.extras,
            &detected.groups,
        )?),
        _ => None,
    };
    // pylock.toml's local wheels and sdists: pip reads their directories.
    for dir in locked.iter().flat_map(|l| &l.find_links) {
        runner.show_named(dir, "pylock.toml (path entries)")?;
    }
    tracing::info!(
        "dependencies from {}; test dependencies: {}; the project {}",
        detected.source.name(),
        detected.test_deps.chosen,
        match detected.install {
            crate::project::InstallMode::None => "is not installed".to_string(),
            mode => format!("is installed ({})", mode.as_str()),
        }
    );
    Ok(Prepared {
        detected,
        locked,
        warnings,
    })
}

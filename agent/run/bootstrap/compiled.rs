//! After the install: the project's compiled modules found and imported (a project tested
//! against its pure-Python fallback would pass for the wrong reason), and the summary of the
//! project's own install.

use std::path::Path;

use crate::process::Cmd;
use crate::project::{compiled, InstallMode, Project};
use crate::summary::ProjectSummary;

use super::error::BootstrapError;
use super::install::installing::Installed;
use super::plan::Plan;

/// Find the project's compiled modules and import each (`python`: the venv's interpreter, in
/// the sandbox); a project with native sources and no compiled module fails (it would be tested
/// against its pure-Python fallback).
pub async fn check_compiled(
    detected: &Project,
    python: Cmd,
    checkout: &Path,
) -> Result<Vec<String>, BootstrapError> {
    if detected.install == InstallMode::None {
        return Ok(Vec::new());
    }
    let found = compiled::probe(python, checkout, None)
        .await
        .map_err(BootstrapError::CompiledProbe)?;
    if let Some((module, reason)) = found.failed.into_iter().next() {
        return Err(BootstrapError::CompiledImport { module, reason });
    }
    if found.modules.is_empty() && detected.require_compiled {
        let sources: Vec<String> = detected
            .native_sources
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        return Err(BootstrapError::NoCompiledModules {
            sources: sources.join(", "),
        });
    }
    Ok(found.modules)
}

/// The summary of the project's own install, after checking its compiled modules.
pub async fn summarize(
    detected: &Project,
    plan: &Plan,
    installed: &Installed,
    python: Cmd,
    checkout: &Path,
) -> Result<ProjectSummary, BootstrapError> {
    Ok(ProjectSummary {
        install: detected.install.as_str().into(),
        seconds: installed.project_seconds,
        compiled_modules: check_compiled(detected, python, checkout).await?,
        build_requires: plan.build_requires.clone(),
        pytest_added: installed.pytest_added,
    })
}

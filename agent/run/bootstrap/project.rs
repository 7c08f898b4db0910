//! The project's own part of the bootstrap: the build requirements its isolated build needs
//! (kept in the wheelhouse), pytest when the test command needs it and the dependencies did not
//! bring it, and the check that its compiled modules import after the install.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::process::Cmd;
use crate::project::pyproject::{PyProject, LEGACY_BUILD_REQUIRES};
use crate::project::{compiled, InstallMode, Project};
use crate::summary::ProjectSummary;

use super::super::untrusted;
use super::error::BootstrapError;
use super::installers::{Installing, WheelReport};

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

/// True when the test command runs pytest (`python -m pytest`, `pytest -q`, …).
pub fn runs_pytest(test_command: &str) -> bool {
    test_command
        .split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|')
        .any(|w| w == "pytest" || w.ends_with("/pytest") || w == "py.test")
}

/// `import pytest` would work in the venv: its `pytest-*.dist-info` is in the venv's
/// site-packages (no process needed), else the interpreter is asked (in the sandbox: its start
/// runs the project's `.pth` files, which may bring pytest from elsewhere).
pub(super) async fn has_pytest(i: &Installing<'_>) -> bool {
    if let Some(venv) = i.venv_python.parent().and_then(Path::parent) {
        if installed_in_venv(venv, "pytest") {
            return true;
        }
    }
    untrusted::program(&i.venv_python, i.scope.offline())
        .args([
            "-c",
            "import importlib.util, sys; sys.exit(importlib.util.find_spec('pytest') is None)",
        ])
        .run()
        .await
        .is_ok_and(|o| o.success)
}

/// Whether `venv/lib/*/site-packages` holds `<name>-<version>.dist-info` (any spelling of
/// `name`).
fn installed_in_venv(venv: &Path, name: &str) -> bool {
    super::venv_dists::has(&super::venv_dists::read(venv), name)
}

/// Install pytest when the test command needs it and the venv lacks it: from the wheelhouse,
/// else (not offline) fetched into the wheelhouse first. Returns what `pip wheel` reported
/// (for pruning) and whether pytest was added.
pub async fn ensure_pytest(
    i: &Installing<'_>,
    test_command: &str,
    offline: bool,
) -> Result<(bool, WheelReport), BootstrapError> {
    if !runs_pytest(test_command) || has_pytest(i).await {
        return Ok((false, WheelReport::default()));
    }
    let mut report = WheelReport::default();
    let in_wheelhouse = crate::wheels::list(i.wheelhouse)
        .iter()
        .any(|w| w.starts_with("pytest-"));
    if !in_wheelhouse && offline {
        return Err(BootstrapError::OfflineMissing {
            requirement: "pytest (the test command runs it)".into(),
            searched: i.wheelhouse.display().to_string(),
        });
    }
    if !in_wheelhouse {
        report = i.pip_wheel(vec![OsString::from("pytest")]).await?;
    }
    let o = i.install_cmd().arg("pytest").run().await?;
    if !o.success {
        return Err(BootstrapError::Install {
            installer: i.tool.name().into(),
            code: o.code.unwrap_or(-1),
            tail: o.tail(20),
        });
    }
    tracing::info!(
        "the test command runs pytest and the project's dependencies do not bring it: \
         Kiln installed pytest"
    );
    Ok((true, report))
}

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
    plan: &super::plan::Plan,
    installed: &super::installers::Installed,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytest_is_found_by_its_dist_info_in_the_venv() {
        let d = tempfile::tempdir().unwrap();
        let site = d.path().join("lib/python3.11/site-packages");
        std::fs::create_dir_all(site.join("pytest_cov-6.0.dist-info")).unwrap();
        std::fs::create_dir_all(site.join("pytest")).unwrap();
        assert!(
            !installed_in_venv(d.path(), "pytest"),
            "pytest-cov is not pytest"
        );
        std::fs::create_dir_all(site.join("pytest-9.2.0.dist-info")).unwrap();
        assert!(installed_in_venv(d.path(), "pytest"));
        assert!(!installed_in_venv(&d.path().join("none"), "pytest"));
    }

    #[test]
    fn recognizes_pytest_commands() {
        assert!(runs_pytest("python -m pytest"));
        assert!(runs_pytest("cd tests && pytest -q"));
        assert!(runs_pytest(".venv/bin/pytest"));
        assert!(!runs_pytest("python -m unittest"));
        assert!(!runs_pytest("make test-pytest-free"));
    }
}

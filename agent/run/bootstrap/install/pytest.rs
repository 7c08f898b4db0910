//! pytest when the test command runs it and the requirements did not bring it: from the
//! wheelhouse, else (not offline) fetched into the wheelhouse first.

use std::ffi::OsString;
use std::path::Path;

use crate::project::runs_pytest;
use crate::run::untrusted;
use crate::wheels;

use super::super::error::BootstrapError;
use super::super::venv::dists;
use super::installing::Installing;
use super::output::WheelReport;

/// `import pytest` would work in the venv: its `pytest-*.dist-info` is in the venv's
/// site-packages (no process needed), else the interpreter is asked (in the sandbox: its start
/// runs the project's `.pth` files, which may bring pytest from elsewhere).
pub async fn has_pytest(i: &Installing<'_>) -> bool {
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
    dists::has(&dists::read(venv), name)
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
    let in_wheelhouse = wheels::list(i.wheelhouse)
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
}

//! The run's fresh venv, made the cheapest way the plan's tool allows: written by Kiln for a uv
//! install into a CPython it knows the layout of ([`native`]), pip seeded from the bundled wheel
//! for a `bootstrap.command` ([`command`]), else by the tool (`uv venv`, or `python -m venv`,
//! `--without-pip` when the host's pip installs into it: ensurepip costs ~6 s per venv).
//! [`dists`] reads what a venv holds.

pub mod command;
pub mod dists;
pub mod native;

use std::ffi::OsString;
use std::path::Path;

use crate::process::Cmd;
use crate::run::toolchain::PythonInfo;

use super::error::BootstrapError;
use super::plan::{Plan, Tool};

/// The fresh venv: written by Kiln for a uv install into a CPython it knows the layout of
/// (see [`native`]), else by the plan's tool.
pub async fn create(
    plan: &Plan,
    py: &PythonInfo,
    venv: &Path,
    build_env: &[(OsString, OsString)],
) -> Result<(), BootstrapError> {
    if plan.tool().is_none() {
        return command::create(py, venv, build_env).await;
    }
    if let (Some(Tool::Uv(_)), Some(layout)) = (plan.tool(), &py.venv) {
        return native::create(py, layout, venv)
            .map_err(|e| BootstrapError::Venv(format!("writing {}: {e}", venv.display())));
    }
    let v = venv_cmd(plan.tool(), plan.host_pip, py, venv)
        .envs(build_env)
        .run()
        .await?;
    if !v.success {
        return Err(BootstrapError::Venv(v.tail(20)));
    }
    Ok(())
}

/// Creates the fresh venv: uv, or the host's pip-less venv, or a venv with its own pip.
pub fn venv_cmd(tool: Option<&Tool>, host_pip: bool, py: &PythonInfo, venv: &Path) -> Cmd {
    match tool {
        Some(Tool::Uv(uv)) => Cmd::new(uv)
            .args(["venv", "--quiet", "--python"])
            .arg(&py.path)
            .arg(venv),
        // `-I`: a `venv/` package in the current directory (a checkout) must not be what runs.
        Some(Tool::Pip) if host_pip => Cmd::new(&py.path)
            .args(["-I", "-m", "venv", "--without-pip"])
            .arg(venv),
        _ => Cmd::new(&py.path).args(["-I", "-m", "venv"]).arg(venv),
    }
}

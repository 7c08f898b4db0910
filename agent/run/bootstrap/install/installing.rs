//! One install's context, [`Installing`]: the tool, the interpreter, the venv, the wheelhouse,
//! what to install; and the install from the wheelhouse every path ends with (`--no-index
//! --find-links <wheelhouse>`, the dependencies, then the project). Each install path adds its
//! own methods in its own file.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::process::{Cmd, Output};
use crate::summary::WheelSummary;

use crate::project::plan::DepsPlan;
use crate::run::toolchain::PythonInfo;
use crate::run::untrusted::{self, Scope};

use super::super::error::BootstrapError;
use super::super::plan::Tool;
use super::collect::Pending;
use super::output::parse_installed;

/// What the install produced.
#[derive(Debug, Default)]
pub struct Installed {
    pub wheels: WheelSummary,
    pub build_seconds: f64,
    pub install_seconds: f64,
    /// The part of the install that built and installed the project itself.
    pub project_seconds: f64,
    /// Wheel files the build used (for pruning); `None` when nothing was built.
    pub used: Option<BTreeSet<String>>,
    /// pytest was installed because the test command needs it.
    pub pytest_added: bool,
    /// The ready-made wheels still being collected (see [`super::collect`]); it prunes when done.
    pub pending: Option<Pending>,
}

/// Installing the requirements with one tool from the wheelhouse, building what is missing.
pub struct Installing<'a> {
    pub tool: &'a Tool,
    pub host_pip: bool,
    pub py: &'a PythonInfo,
    pub venv_python: PathBuf,
    pub wheelhouse: &'a Path,
    /// The dependencies: what `pip wheel` fetches, what the installer installs.
    pub deps: &'a DepsPlan,
    /// Installer arguments for the project itself and local path dependencies (`-e dir`).
    pub project: Vec<OsString>,
    /// What isolated builds of the project and local path dependencies need, kept in the
    /// wheelhouse so a warm run builds them with no index.
    pub build_requires: &'a [String],
    /// Where the project's own wheel is built when its dependencies are only known from its
    /// metadata (never the wheelhouse).
    pub project_dist: PathBuf,
    /// The project is installed and its dependencies are only known from its metadata
    /// (setup.py, dynamic dependencies): a cold run builds its wheel to learn them.
    pub dynamic_deps: bool,
    /// The checkout, and the build environment.
    pub scope: Scope<'a>,
}

impl Installing<'_> {
    /// `install --no-index --find-links <wheelhouse>` into the venv.
    pub fn install_cmd(&self) -> Cmd {
        self.install_cmd_into(&self.venv_python)
    }

    /// `install --no-index --find-links <wheelhouse>` into the environment of `python` (the
    /// venv, or the project's build environment).
    pub fn install_cmd_into(&self, python: &Path) -> Cmd {
        // Wheels only, from the wheelhouse (the project's isolated build too): no network
        // needed, none given.
        let scope = self.scope.offline();
        let base = match self.tool {
            Tool::Uv(uv) => untrusted::program(uv, scope)
                .args(["pip", "install", "--python"])
                .arg(python),
            // Like uv, pip leaves bytecode to the first import: compiling every module of every
            // wheel up front doubles a warm install.
            Tool::Pip if self.host_pip => untrusted::program(&self.py.path, scope)
                .args(["-m", "pip", "--python"])
                .arg(python)
                .args(["install", "--no-compile"]),
            Tool::Pip => {
                untrusted::program(python, scope).args(["-m", "pip", "install", "--no-compile"])
            }
        };
        base.args(["--no-index", "--find-links"])
            .arg(self.wheelhouse)
            .echo(true)
            // Parsed for the packages installed: read whole.
            .read_whole(crate::process::PARSED_OUTPUT_LIMIT)
    }

    pub fn failed(&self, o: &Output) -> BootstrapError {
        BootstrapError::Install {
            installer: self.tool.name().into(),
            code: o.code.unwrap_or(-1),
            tail: o.tail(30),
        }
    }

    /// Install the dependencies, then the project (its build: the project's seconds). A locked
    /// set is complete: both with `--no-deps`. Returns the packages installed, the failing
    /// output if any, and (install, project) seconds.
    pub async fn install(&self, extra: &[OsString]) -> Result<InstallRun, BootstrapError> {
        let no_deps: &[&str] = if self.deps.locked {
            &["--no-deps"]
        } else {
            &[]
        };
        let mut run = InstallRun::default();
        if !self.deps.install_args.is_empty() {
            let t = Instant::now();
            let o = self
                .install_cmd()
                .args(no_deps.iter().copied())
                .args(self.deps.install_args.iter().cloned())
                .args(extra.iter().cloned())
                .run()
                .await?;
            run.install_seconds += t.elapsed().as_secs_f64();
            run.installed += parse_installed(&o.lines);
            if !o.success {
                run.failed = Some(o);
                return Ok(run);
            }
        }
        if !self.project.is_empty() {
            let t = Instant::now();
            let o = self
                .install_cmd()
                .args(no_deps.iter().copied())
                .args(self.project.iter().cloned())
                .args(extra.iter().cloned())
                .run()
                .await?;
            run.project_seconds = t.elapsed().as_secs_f64();
            run.install_seconds += run.project_seconds;
            if !o.success {
                run.failed = Some(o);
            }
        }
        Ok(run)
    }
}

/// One install: packages installed, the failing output if any, and seconds.
#[derive(Debug, Default)]
pub struct InstallRun {
    pub installed: u32,
    pub failed: Option<Output>,
    pub install_seconds: f64,
    pub project_seconds: f64,
}

impl Installing<'_> {
    /// How many of the venv's distributions were installed from a wheel of the wheelhouse
    /// (the project, built in place, is none of them): what an install that built nothing
    /// reused. Counted from the venv, so the project's own step and pytest count too.
    pub fn reused_in_venv(&self) -> u32 {
        let venv = self
            .venv_python
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."));
        let pins = super::super::venv::dists::pins(&super::super::venv::dists::read(venv));
        let covered = crate::wheels::covered_by(&pins, &crate::wheels::list(self.wheelhouse));
        let all = pins.lines().filter(|l| !l.trim().is_empty()).count();
        all.saturating_sub(covered.missing.len()) as u32
    }
}

/// An install that built nothing: every package it installed was in the wheelhouse.
pub fn reused(run: &InstallRun) -> Installed {
    Installed {
        wheels: WheelSummary {
            reused: run.installed,
            ..WheelSummary::default()
        },
        install_seconds: run.install_seconds,
        project_seconds: run.project_seconds,
        ..Installed::default()
    }
}

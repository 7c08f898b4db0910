//! The pip path: `pip wheel` builds what the wheelhouse lacks, one sdist at a time, into the
//! wheelhouse (the dependencies, then what the project's own install needs: its build
//! requirements and, when only its metadata knows them, its dependencies), then the tool
//! installs from the wheelhouse. Used when uv is not the installer, or the requirement files
//! need rewriting for the install (a lock, hashes, binary options). The background collection
//! of the uv path uses the same `pip wheel` commands.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::process::Cmd;
use crate::run::untrusted;
use crate::summary::WheelSummary;

use super::super::error::BootstrapError;
use super::installing::{Installed, Installing};
use super::output::{compiler_errors, failed_package, parse_pip_wheel, WheelReport};

impl Installing<'_> {
    /// `pip wheel --wheel-dir <wheelhouse> --find-links <wheelhouse>` with the host's pip.
    pub fn pip_wheel_cmd(&self) -> Result<Cmd, BootstrapError> {
        self.pip_wheel_into(self.wheelhouse)
    }

    /// `pip wheel --wheel-dir <dir> --find-links <wheelhouse>` with the host's pip.
    pub fn pip_wheel_into(&self, dir: &Path) -> Result<Cmd, BootstrapError> {
        if self.py.pip.is_none() {
            return Err(BootstrapError::NoPip {
                python: self.py.path.display().to_string(),
                detail: "`import pip` failed".into(),
            });
        }
        Ok(untrusted::program(&self.py.path, self.scope)
            .args(["-m", "pip", "wheel", "--wheel-dir"])
            .arg(dir)
            .arg("--find-links")
            .arg(self.wheelhouse)
            .echo(true)
            // Parsed for the wheels built and what failed: read whole.
            .read_whole(crate::process::PARSED_OUTPUT_LIMIT))
    }

    /// `pip wheel` what the wheelhouse lacks — the dependencies, then what the project's own
    /// install needs (see `project_needs`) — then install. The caller prunes with
    /// `Installed::used`.
    pub async fn build_then_install(&self) -> Result<Installed, BootstrapError> {
        let t = Instant::now();
        let mut report = WheelReport::default();
        if !self.deps.wheel_args.is_empty() {
            report.merge(self.pip_wheel(self.deps.wheel_args.clone()).await?);
        }
        self.project_needs(&mut report).await?;
        let build_seconds = t.elapsed().as_secs_f64();
        let run = self.install(&[]).await?;
        if let Some(o) = &run.failed {
            return Err(self.failed(o));
        }
        Ok(Installed {
            wheels: WheelSummary {
                built: report.built.len() as u32,
                reused: report.reused,
                built_names: report.built,
            },
            build_seconds,
            install_seconds: run.install_seconds,
            project_seconds: run.project_seconds,
            used: Some(report.used),
            pytest_added: false,
            pending: None,
        })
    }

    /// `pip wheel --wheel-dir <wheelhouse> --find-links <wheelhouse> <args>`.
    pub async fn pip_wheel(&self, args: Vec<OsString>) -> Result<WheelReport, BootstrapError> {
        let o = self.pip_wheel_cmd()?.args(args).run().await?;
        if !o.success {
            return Err(BootstrapError::WheelBuild {
                code: o.code.unwrap_or(-1),
                failed: failed_package(&o.lines),
                tail: o.tail(40),
            });
        }
        Ok(parse_pip_wheel(&o.lines))
    }

    /// What the project's own install needs in the wheelhouse, after the dependencies: the
    /// wheels of local path dependencies out (they are built in place every run), the build
    /// requirements in, and — when only its metadata knows them — its dependencies.
    pub async fn project_needs(&self, report: &mut WheelReport) -> Result<(), BootstrapError> {
        for w in crate::project::plan::remove_local_wheels(
            self.wheelhouse,
            self.scope.cwd,
            &self.deps.local_in_requirements,
        ) {
            report.used.remove(&w);
        }
        if !self.build_requires.is_empty() {
            let reqs = self.build_requires.iter().map(OsString::from).collect();
            report.merge(self.pip_wheel(reqs).await?);
        }
        if self.dynamic_deps && !self.deps.locked {
            let wheel = self.project_wheel().await?;
            report.merge(self.project_dependencies(&wheel).await?);
        }
        Ok(())
    }

    /// Build the project's own wheel into `project_dist` (never the wheelhouse), with the
    /// build requirements from the wheelhouse only.
    async fn project_wheel(&self) -> Result<PathBuf, BootstrapError> {
        let _ = std::fs::remove_dir_all(&self.project_dist);
        let o = untrusted::program(&self.py.path, self.scope)
            .args([
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-index",
                "--wheel-dir",
            ])
            .arg(&self.project_dist)
            .arg("--find-links")
            .arg(self.wheelhouse)
            .arg(self.scope.cwd)
            .echo(true)
            .run()
            .await?;
        let built = crate::wheels::list(&self.project_dist).into_iter().next();
        match (o.success, built) {
            (true, Some(w)) => Ok(self.project_dist.join(w)),
            _ => Err(BootstrapError::ProjectBuild {
                tail: compiler_errors(&o.lines),
            }),
        }
    }

    /// The project's dependencies, from its built wheel's metadata, into the wheelhouse; the
    /// project's own wheel is removed from it again.
    async fn project_dependencies(&self, wheel: &Path) -> Result<WheelReport, BootstrapError> {
        let spec = format!("{}{}", wheel.display(), self.extras_suffix());
        let mut r = self
            .pip_wheel(vec![
                "--find-links".into(),
                self.project_dist.clone().into(),
                spec.into(),
            ])
            .await?;
        if let Some(name) = wheel.file_name() {
            let _ = std::fs::remove_file(self.wheelhouse.join(name));
            r.used.remove(&name.to_string_lossy().into_owned());
        }
        Ok(r)
    }

    /// `[a,b]` when the project is installed with extras.
    fn extras_suffix(&self) -> String {
        self.project
            .iter()
            .find_map(|a| {
                let a = a.to_string_lossy();
                a.find('[').map(|i| a[i..].to_string())
            })
            .unwrap_or_default()
    }
}

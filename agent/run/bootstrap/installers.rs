//! The installers: uv or pip creating the venv and installing from the wheelhouse, `pip wheel`
//! building what the wheelhouse lacks, and reading what they reported.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::{Cmd, Output};
use crate::summary::WheelSummary;

use super::super::toolchain::PythonInfo;
use super::super::untrusted::{self, Scope};
use super::error::BootstrapError;
use crate::project::plan::DepsPlan;

/// Resolved installer.
#[derive(Debug, Clone)]
pub enum Tool {
    Uv(PathBuf),
    Pip,
}

impl Tool {
    /// `uv` or `pip`, as the summary names the installer.
    pub fn name(&self) -> &'static str {
        match self {
            Tool::Uv(_) => "uv",
            Tool::Pip => "pip",
        }
    }
}

pub async fn find_or_install_uv(
    py: &PythonInfo,
    offline: bool,
    tools_dir: &Path,
    warnings: &mut Vec<String>,
) -> Option<PathBuf> {
    // The interpreter's own scripts dir first: PATH may hold a slow wrapper (pyenv shims).
    let beside = py.scripts.join("uv");
    if beside.is_file() {
        return Some(beside);
    }
    if let Ok(p) = which::which("uv") {
        return Some(p);
    }
    let python = &py.path;
    let target = tools_dir.join("uv");
    let bin = target.join("bin").join("uv");
    if bin.exists() {
        return Some(bin);
    }
    if offline {
        warnings.push("uv is not installed and --offline forbids fetching it: using pip".into());
        return None;
    }
    tracing::info!("uv not on PATH: installing it into {}", target.display());
    let out = Cmd::new(python)
        .args([
            "-I",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&target)
        .arg("uv")
        .timeout(Some(Duration::from_secs(180)))
        .run()
        .await;
    match out {
        Ok(o) if o.success && bin.exists() => Some(bin),
        Ok(o) => {
            warnings.push(format!(
                "could not install uv (falling back to pip): {}",
                o.tail(2)
            ));
            None
        }
        Err(e) => {
            warnings.push(format!("could not install uv (falling back to pip): {e}"));
            None
        }
    }
}

/// What `pip wheel` reported.
#[derive(Debug, Default, PartialEq)]
pub struct WheelReport {
    pub built: Vec<String>,
    /// Wheel file names the resolution used (built, downloaded or already there).
    pub used: BTreeSet<String>,
    pub reused: u32,
}

impl WheelReport {
    pub fn merge(&mut self, other: WheelReport) {
        self.built.extend(other.built);
        self.used.extend(other.used);
        self.reused += other.reused;
    }
}

pub fn parse_pip_wheel(lines: &[String]) -> WheelReport {
    let mut r = WheelReport::default();
    let file_name = |p: &str| {
        Path::new(p.trim())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    };
    for line in lines {
        let l = line.trim();
        if let Some(names) = l.strip_prefix("Successfully built ") {
            r.built.extend(names.split_whitespace().map(str::to_string));
        } else if let Some(p) = l.strip_prefix("File was already downloaded ") {
            r.reused += 1;
            r.used.extend(file_name(p));
        } else if let Some(p) = l.strip_prefix("Saved ") {
            r.used.extend(file_name(p));
        } else if let Some(rest) = l.strip_prefix("Created wheel for ") {
            if let Some(f) = rest.split("filename=").nth(1) {
                r.used
                    .extend(f.split_whitespace().next().map(str::to_string));
            }
        }
    }
    r
}

/// Number of packages an install reported.
pub fn parse_installed(lines: &[String]) -> u32 {
    for line in lines.iter().rev() {
        let l = line.trim();
        if let Some(names) = l.strip_prefix("Successfully installed ") {
            return names.split_whitespace().count() as u32;
        }
        // uv: "Installed 10 packages in 21ms"
        if let Some(rest) = l.strip_prefix("Installed ") {
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                return n;
            }
        }
    }
    0
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
    /// The ready-made wheels still being collected (see `collect`); it prunes when done.
    pub pending: Option<super::collect::Pending>,
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
    pub(super) fn install_cmd_into(&self, python: &Path) -> Cmd {
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
    }

    pub(super) fn failed(&self, o: &Output) -> BootstrapError {
        BootstrapError::Install {
            installer: self.tool.name().into(),
            code: o.code.unwrap_or(-1),
            tail: o.tail(30),
        }
    }

    /// Install the dependencies, then the project (its build: the project's seconds). A locked
    /// set is complete: both with `--no-deps`. Returns the packages installed, the failing
    /// output if any, and (install, project) seconds.
    async fn install(&self, extra: &[OsString]) -> Result<InstallRun, BootstrapError> {
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

    /// Only wheels already here; a missing one is named, nothing is built but the project.
    pub async fn offline(&self) -> Result<Installed, BootstrapError> {
        let extra = crate::wheels::offline::install_args(self.wheelhouse);
        let run = self.install(&extra).await?;
        if let Some(o) = &run.failed {
            return Err(
                match crate::wheels::offline::explain(&o.lines, self.wheelhouse) {
                    Some((requirement, searched)) => BootstrapError::OfflineMissing {
                        requirement,
                        searched,
                    },
                    None => self.failed(o),
                },
            );
        }
        Ok(reused(&run))
    }

    /// Same requirements as the run that saved this wheelhouse: every wheel should be there.
    /// `None` when one is missing (then build).
    pub async fn from_exact_wheelhouse(&self) -> Result<Option<Installed>, BootstrapError> {
        let run = self.install(&[]).await?;
        Ok(run.failed.is_none().then(|| reused(&run)))
    }

    /// `pip wheel --wheel-dir <wheelhouse> --find-links <wheelhouse>` with the host's pip.
    pub(super) fn pip_wheel_cmd(&self) -> Result<Cmd, BootstrapError> {
        self.pip_wheel_into(self.wheelhouse)
    }

    /// `pip wheel --wheel-dir <dir> --find-links <wheelhouse>` with the host's pip.
    pub(super) fn pip_wheel_into(&self, dir: &Path) -> Result<Cmd, BootstrapError> {
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
            .echo(true))
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

    /// Install the project and local path dependencies only (the dependencies are in).
    pub async fn install_project(&self) -> Result<f64, BootstrapError> {
        if self.project.is_empty() {
            return Ok(0.0);
        }
        let t = Instant::now();
        let no_deps: &[&str] = if self.deps.locked {
            &["--no-deps"]
        } else {
            &[]
        };
        let o = self
            .install_cmd()
            .args(no_deps.iter().copied())
            .args(self.project.iter().cloned())
            .run()
            .await?;
        if !o.success {
            return Err(self.failed(&o));
        }
        Ok(t.elapsed().as_secs_f64())
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

/// One install: packages installed, the failing output if any, and seconds.
#[derive(Debug, Default)]
struct InstallRun {
    installed: u32,
    failed: Option<Output>,
    install_seconds: f64,
    project_seconds: f64,
}

/// The package pip names when a download or build fails (hash mismatch, build error).
pub fn failed_package(lines: &[String]) -> Option<String> {
    for line in lines {
        let l = line.trim();
        // pip: "markupsafe==3.0.2 from https://…: Expected sha256 …" (hash mismatch)
        if l.contains("Expected sha256") || l.contains("from file://") && l.contains("sha256") {
            return l.split_whitespace().next().map(str::to_string);
        }
        // uv: "× Failed to build `fastsum==1.0`" / "… `fastsum @ file:///…`"
        if let Some((_, rest)) = l.split_once("Failed to build `") {
            let spec = rest.split('`').next().unwrap_or(rest);
            let name = spec
                .split([' ', '=', '<', '>', '~', '!', '@', '[', ';'])
                .next();
            return name.filter(|n| !n.is_empty()).map(str::to_string);
        }
        // pip: "Failed to build fastsum" / "ERROR: Failed building wheel for fastsum"
        if let Some(n) = l
            .strip_prefix("ERROR: Failed building wheel for ")
            .or_else(|| l.strip_prefix("Failed to build "))
        {
            return Some(n.trim().to_string());
        }
    }
    None
}

/// The compiler's error lines (`error:`), else the tail of the output.
pub fn compiler_errors(lines: &[String]) -> String {
    let errors: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.contains("error:") || l.contains("Error:"))
        .take(20)
        .collect();
    if errors.is_empty() {
        lines
            .iter()
            .rev()
            .take(30)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        errors.join("\n")
    }
}

fn reused(run: &InstallRun) -> Installed {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    #[test]
    fn names_the_package_pip_or_uv_failed_to_build() {
        let uv = lines("  × Failed to build `brokenpkg @ file:///w/vendor/brokenpkg-1.0.tar.gz`\n  ├─▶ The build backend returned an error");
        assert_eq!(failed_package(&uv).as_deref(), Some("brokenpkg"));
        let uv = lines("  × Failed to build `fastsum==1.0`");
        assert_eq!(failed_package(&uv).as_deref(), Some("fastsum"));
        let pip = lines("ERROR: Failed building wheel for vecmath");
        assert_eq!(failed_package(&pip).as_deref(), Some("vecmath"));
    }

    #[test]
    fn parses_pip_wheel_output() {
        let r = parse_pip_wheel(&lines(
            "Processing ./vendor/pytest-9.2.0-py3-none-any.whl\n\
             Saved /w/wheelhouse/pytest-9.2.0-py3-none-any.whl\n\
               File was already downloaded /w/wheelhouse/six-1.16.0-py2.py3-none-any.whl\n\
               Created wheel for fastsum: filename=fastsum-1.0-cp311-cp311-linux_x86_64.whl size=9 sha256=ab\n\
             Successfully built fastsum vecmath\n",
        ));
        assert_eq!(r.built, vec!["fastsum", "vecmath"]);
        assert_eq!(r.reused, 1);
        assert!(r.used.contains("fastsum-1.0-cp311-cp311-linux_x86_64.whl"));
        assert!(r.used.contains("pytest-9.2.0-py3-none-any.whl"));
        assert!(r.used.contains("six-1.16.0-py2.py3-none-any.whl"));
    }

    #[test]
    fn parses_install_counts() {
        assert_eq!(
            parse_installed(&lines("Successfully installed a-1 b-2 c-3")),
            3
        );
        assert_eq!(
            parse_installed(&lines("Resolved 9 packages\nInstalled 9 packages in 12ms")),
            9
        );
    }
}

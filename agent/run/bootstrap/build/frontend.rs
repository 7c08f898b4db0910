//! Kiln's own PEP 517 frontend: one build of one wheel (the editable project's, or a
//! distribution's from its sdist) in a build environment at a fixed path.
//!
//! uv builds a wheel in two or three Python processes (`get_requires_for_build_*`, at times
//! `prepare_metadata_for_build_*`, then `build_*`), each starting the interpreter and importing
//! the backend again. Kiln's hook runner asks the backend for its extra requirements and builds
//! the wheel in one process (a second only when the backend asks for more).
//!
//! The build environment is a venv at a fixed place (`<work dir>/tmp/build-env` for the
//! project, `<work tmp>/build-envs/<digest>` for sdists), where uv's are at random paths.
//! Headers a build takes from its build requirements (pybind11, numpy) are then at the same
//! path, relative to the work dir, on every run: ccache hits them, where each run's new path
//! made every such compile miss.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::process::Cmd;
use crate::project::pyproject::PyProject;

use crate::run::untrusted::{self, Scope};

use super::super::error::BootstrapError;
use super::super::install::installing::Installing;
use super::super::install::output::compiler_errors;
use super::super::venv;

/// The hook runner: imports the backend, asks for its extra requirements (unless told they are
/// in), and builds the editable wheel; what happened goes to the status file as JSON.
const HOOKS: &str = r#"
import importlib, json, os, sys
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
args = json.loads(sys.argv[1])
def status(**kw):
    with open(args["status"], "w") as f:
        json.dump(kw, f)
sys.path[:0] = [os.path.abspath(p) for p in args["backend_path"]]
module, _, attrs = args["backend"].partition(":")
backend = importlib.import_module(module)
for attr in filter(None, attrs.split(".")):
    backend = getattr(backend, attr)
kind = args["kind"]
if not hasattr(backend, "build_" + kind):
    status(unsupported=True)
    sys.exit(0)
if not args["requires_in"]:
    hook = getattr(backend, "get_requires_for_build_" + kind, None)
    requires = list(hook(None)) if hook else []
    if requires:
        status(requires=requires)
        sys.exit(0)
status(wheel=getattr(backend, "build_" + kind)(args["out"], None, None))
"#;

/// The backend the project names (PEP 517: setuptools' legacy backend when it names none) and
/// the in-tree directories it is imported from.
fn backend(pyproject: &PyProject) -> (String, Vec<String>) {
    match &pyproject.build_system {
        Some(b) => (
            b.build_backend
                .clone()
                .unwrap_or_else(|| LEGACY_BACKEND.to_string()),
            b.backend_path.clone(),
        ),
        None => (LEGACY_BACKEND.to_string(), Vec::new()),
    }
}

pub const LEGACY_BACKEND: &str = "setuptools.build_meta:__legacy__";

/// Where the build requirements come from, and whether anything else builds in this install.
#[derive(Debug, Clone, Copy)]
pub struct Sources {
    /// No other wheel is built in this install (the wheelhouse is exact, or the project has no
    /// dependencies).
    pub nothing_alongside: bool,
    /// The wheelhouse has them (it is exact: the run that saved it collected them), or nothing
    /// else may be used (`--offline`): no index is asked.
    pub wheelhouse_only: bool,
    /// `--offline`: the imported wheels are searched too.
    pub offline: bool,
}

/// What one run of the hooks gave.
#[derive(Debug)]
pub enum Built {
    Wheel(PathBuf),
    /// The backend asks for these first (`get_requires_for_build_*`).
    Needs(Vec<String>),
    /// The backend has no hook for this kind of build.
    Unsupported,
}

/// What the hook runner reported.
#[derive(Debug, serde::Deserialize)]
struct Status {
    #[serde(default)]
    unsupported: bool,
    #[serde(default)]
    requires: Vec<String>,
    wheel: Option<String>,
}

/// Which wheel the backend builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The project's editable wheel (`build_editable`).
    Editable,
    /// A distribution's wheel from its sdist (`build_wheel`).
    Wheel,
}

impl Kind {
    fn hook_suffix(self) -> &'static str {
        match self {
            Kind::Editable => "editable",
            Kind::Wheel => "wheel",
        }
    }
}

/// A build environment: a venv and how build requirements go into it.
#[derive(Debug, Clone)]
pub struct BuildEnv {
    pub dir: PathBuf,
    /// The installs' and the hooks' output goes to the log as it comes (else only on failure,
    /// in the error).
    pub echo: bool,
    /// More arguments for the installs of build requirements (the package sources named in the
    /// requirement files).
    pub install_args: Vec<OsString>,
}

/// A build: its environment, the source tree the hooks run in, the wheel output, the hook
/// runner's status file and the runner itself.
pub struct Build {
    pub env: BuildEnv,
    pub source: Option<PathBuf>,
    pub out: PathBuf,
    pub status: PathBuf,
    pub hooks: PathBuf,
    pub kind: Kind,
}

/// The hook runner, at `path` (`<work tmp>/kiln-frontend/hooks.py`, shared by every build of
/// the run). Written whole under another name and renamed, so a build starting meanwhile reads
/// it complete; left as it is when it is already there.
pub fn write_hooks(path: &Path) -> Result<(), BootstrapError> {
    if std::fs::read(path).is_ok_and(|b| b == HOOKS.as_bytes()) {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| venv_error(dir, e))?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| venv_error(dir, e))?;
    std::io::Write::write_all(&mut file, HOOKS.as_bytes()).map_err(|e| venv_error(path, e))?;
    file.persist(path).map_err(|e| venv_error(path, e.error))?;
    Ok(())
}

/// uv settings that change how it builds (build constraints, config settings, no isolation):
/// the first one set. uv, not Kiln's frontend, builds then, as they say.
pub fn uv_build_settings() -> Option<&'static str> {
    const VARS: &[&str] = &[
        "UV_BUILD_CONSTRAINT",
        "UV_CONFIG_SETTINGS",
        "UV_CONFIG_SETTINGS_PACKAGE",
        "UV_NO_BUILD_ISOLATION",
        "UV_NO_BUILD_ISOLATION_PACKAGE",
        "UV_NO_BUILD",
        "UV_NO_BUILD_PACKAGE",
        "UV_NO_BINARY",
        "UV_NO_BINARY_PACKAGE",
    ];
    VARS.iter()
        .copied()
        .find(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// Where [`write_hooks`] puts the runner.
pub fn hooks_path(work_tmp: &Path) -> PathBuf {
    work_tmp.join("kiln-frontend").join("hooks.py")
}

impl Build {
    /// The project's build, in the checkout.
    pub fn for_project(work_tmp: &Path, install_args: Vec<OsString>) -> Build {
        Build {
            env: BuildEnv {
                dir: work_tmp.join("build-env"),
                echo: true,
                install_args,
            },
            source: None,
            out: work_tmp.join("project-editable"),
            status: work_tmp.join("build-env-status.json"),
            hooks: hooks_path(work_tmp),
            kind: Kind::Editable,
        }
    }

    /// Make a fresh environment, install `pyproject`'s build requirements and what the backend
    /// asks for, and build: `Some(wheel)`, or `None` when the backend cannot build this kind.
    pub async fn run(
        &self,
        i: &Installing<'_>,
        uv: &Path,
        pyproject: &PyProject,
        sources: Sources,
    ) -> Result<Option<PathBuf>, BootstrapError> {
        self.env.create(i).await?;
        (self
            .env
            .install(i, uv, &pyproject.build_requires(), sources))
        .await?;
        let mut requires_in = false;
        loop {
            match self.attempt(i, pyproject, requires_in).await? {
                Built::Unsupported => return Ok(None),
                Built::Wheel(w) => return Ok(Some(w)),
                Built::Needs(requires) if !requires_in => {
                    self.env.install(i, uv, &requires, sources).await?;
                    requires_in = true;
                }
                Built::Needs(_) => return Err(self.no_wheel()),
            }
        }
    }

    /// One run of the hooks into an empty output dir (`requires_in`: the backend's extra
    /// requirements are installed, build without asking).
    pub async fn attempt(
        &self,
        i: &Installing<'_>,
        pyproject: &PyProject,
        requires_in: bool,
    ) -> Result<Built, BootstrapError> {
        if self.out.exists() {
            std::fs::remove_dir_all(&self.out).map_err(|e| venv_error(&self.out, e))?;
        }
        std::fs::create_dir_all(&self.out).map_err(|e| venv_error(&self.out, e))?;
        match self.run_hooks(i, pyproject, requires_in).await? {
            Status {
                unsupported: true, ..
            } => Ok(Built::Unsupported),
            Status { wheel: Some(w), .. } => self.built(&w).map(Built::Wheel),
            Status { requires, .. } if !requires.is_empty() && !requires_in => {
                Ok(Built::Needs(requires))
            }
            _ => Err(self.no_wheel()),
        }
    }

    fn no_wheel(&self) -> BootstrapError {
        BootstrapError::ProjectBuild {
            tail: format!(
                "the build backend's build_{} returned no wheel",
                self.kind.hook_suffix()
            ),
        }
    }

    /// The wheel the backend named: a file it wrote in the output dir.
    fn built(&self, name: &str) -> Result<PathBuf, BootstrapError> {
        let path = self.out.join(name);
        let plain = Path::new(name).file_name().is_some_and(|f| f == name);
        if plain && name.ends_with(".whl") && path.is_file() {
            return Ok(path);
        }
        Err(BootstrapError::ProjectBuild {
            tail: format!(
                "the build backend's build_{} returned {name:?}, not a wheel it wrote in {}",
                self.kind.hook_suffix(),
                self.out.display()
            ),
        })
    }
}

impl BuildEnv {
    fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// A fresh venv.
    pub async fn create(&self, i: &Installing<'_>) -> Result<(), BootstrapError> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(|e| venv_error(&self.dir, e))?;
        }
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| venv_error(parent, e))?;
        }
        if let Some(layout) = &i.py.venv {
            return venv::native::create(i.py, layout, &self.dir)
                .map_err(|e| venv_error(&self.dir, e));
        }
        let o = venv::venv_cmd(Some(i.tool), false, i.py, &self.dir)
            .envs(i.scope.env)
            .run()
            .await?;
        if !o.success {
            return Err(BootstrapError::Venv(o.tail(20)));
        }
        Ok(())
    }

    /// `requires` into the build environment: from the wheelhouse alone when `sources` says so
    /// (as uv's isolated builds take them from an exact wheelhouse), else from the wheelhouse
    /// and the index. When the wheelhouse alone lacks one and the index may be used (not
    /// `--offline`), from the index too, as uv's build fell back to building what an exact
    /// wheelhouse lacked.
    pub async fn install(
        &self,
        i: &Installing<'_>,
        uv: &Path,
        requires: &[String],
        sources: Sources,
    ) -> Result<(), BootstrapError> {
        if requires.is_empty() {
            return Ok(());
        }
        let mut o = self
            .install_cmd(i, uv, sources)
            .args(requires)
            .args(self.install_args.iter().cloned())
            .echo(self.echo)
            .run()
            .await?;
        if !o.success && sources.wheelhouse_only && !sources.offline {
            tracing::warn!(
                "the restored wheelhouse lacks the project's build requirements: fetching them"
            );
            let online = Sources {
                wheelhouse_only: false,
                ..sources
            };
            o = (self.install_cmd(i, uv, online).args(requires))
                .args(self.install_args.iter().cloned())
                .echo(self.echo)
                .run()
                .await?;
        }
        if !o.success {
            return Err(BootstrapError::Install {
                installer: "uv (the project's build requirements)".into(),
                code: o.code.unwrap_or(-1),
                tail: o.tail(30),
            });
        }
        Ok(())
    }

    /// `uv pip install` into the build environment, from where `sources` says: the run's
    /// install from the wheelhouse alone, or its install that builds what is missing.
    fn install_cmd(&self, i: &Installing<'_>, uv: &Path, sources: Sources) -> Cmd {
        let python = self.python();
        if !sources.wheelhouse_only {
            return i.uv_pip_install_into(uv, &python);
        }
        let cmd = i.install_cmd_into(&python);
        match sources.offline {
            true => cmd.args(crate::wheels::offline::install_args(i.wheelhouse)),
            false => cmd,
        }
    }
}

impl Build {
    /// Run the hooks in the source tree (the project's checkout by default), the build
    /// environment's scripts first on PATH.
    async fn run_hooks(
        &self,
        i: &Installing<'_>,
        pyproject: &PyProject,
        requires_in: bool,
    ) -> Result<Status, BootstrapError> {
        let (backend, backend_path) = backend(pyproject);
        let args = serde_json::json!({
            "backend": backend,
            "backend_path": backend_path,
            "out": self.out,
            "status": self.status,
            "requires_in": requires_in,
            "kind": self.kind.hook_suffix(),
        });
        let _ = std::fs::remove_file(&self.status);
        let mut env = i.scope.env.to_vec();
        let bin = self.env.dir.join("bin");
        let path = env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v);
        let mut dirs = vec![bin];
        if let Some(path) = path {
            dirs.extend(std::env::split_paths(path));
        }
        env.push((
            "PATH".into(),
            std::env::join_paths(dirs).unwrap_or_default(),
        ));
        let scope = Scope {
            env: &env,
            cwd: self.source.as_deref().unwrap_or(i.scope.cwd),
            ..i.scope
        };
        let o = untrusted::program(self.env.python(), scope)
            .arg(&self.hooks)
            .arg(args.to_string())
            .echo(self.env.echo)
            .run()
            .await?;
        // The hook ran the backend: its status file is the project's, read within bounds.
        let status =
            crate::untrusted_fs::read_text_or_warn(&self.status, 1 << 20, "a build's status file")
                .and_then(|s| serde_json::from_str::<Status>(&s).ok());
        match (o.success, status) {
            (true, Some(status)) => Ok(status),
            _ => Err(BootstrapError::ProjectBuild {
                tail: compiler_errors(&o.lines),
            }),
        }
    }
}

fn venv_error(dir: &Path, e: std::io::Error) -> BootstrapError {
    BootstrapError::Venv(format!("the build environment {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_is_the_named_one_else_setuptools_legacy() {
        let p = |s: &str| PyProject::parse(s, Path::new("pyproject.toml")).unwrap();
        let named = p(
            "[build-system]\nrequires = [\"x\"]\nbuild-backend = \"flit_core.buildapi\"\n\
                       backend-path = [\"_build\"]\n",
        );
        assert_eq!(
            backend(&named),
            ("flit_core.buildapi".into(), vec!["_build".into()])
        );
        let unnamed = p("[build-system]\nrequires = [\"setuptools\"]\n");
        assert_eq!(backend(&unnamed).0, LEGACY_BACKEND);
        assert_eq!(backend(&PyProject::default()).0, LEGACY_BACKEND);
    }
}

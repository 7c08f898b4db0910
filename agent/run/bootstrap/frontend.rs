//! Kiln's own PEP 517 frontend for the project's editable build, in place of uv's.
//!
//! uv builds an editable project in three Python processes: `get_requires_for_build_editable`,
//! `prepare_metadata_for_build_editable` (when the version or dependencies are dynamic), then
//! `build_editable`. Each starts the interpreter, imports the backend and runs `setup.py`
//! again: 0.7 s of a 4.4 s cold bootstrap of msgpack, and the same on every warm run, since the
//! project is built every run. Kiln asks the backend for its extra requirements and builds the
//! wheel in one process (a second only when the backend asks for more), then hands uv the wheel,
//! whose metadata uv reads without a hook.
//!
//! The build environment is a venv at a fixed place, `<work dir>/tmp/build-env`, where uv's are
//! at random paths. Headers a build takes from its build requirements (pybind11, numpy) are then
//! at the same path, relative to the work dir, on every run: ccache hits them, where each run's
//! new path made every such compile miss.
//!
//! The wheel is built only when nothing else builds alongside it (the wheelhouse is exact, or
//! the project has no dependencies): otherwise uv builds the project and the missing wheels
//! concurrently, as before. A backend without `build_editable` is left to uv.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::process::Cmd;
use crate::project::pyproject::PyProject;

use super::super::untrusted::{self, Scope};
use super::error::BootstrapError;
use super::installers::{compiler_errors, Installing, Tool};

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
if not hasattr(backend, "build_editable"):
    status(unsupported=True)
    sys.exit(0)
if not args["requires_in"]:
    hook = getattr(backend, "get_requires_for_build_editable", None)
    requires = list(hook(None)) if hook else []
    if requires:
        status(requires=requires)
        sys.exit(0)
status(wheel=backend.build_editable(args["out"], None, None))
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

const LEGACY_BACKEND: &str = "setuptools.build_meta:__legacy__";

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

/// What the hook runner reported.
#[derive(Debug, serde::Deserialize)]
struct Status {
    #[serde(default)]
    unsupported: bool,
    #[serde(default)]
    requires: Vec<String>,
    wheel: Option<String>,
}

impl Installing<'_> {
    /// Build the project's editable wheel with Kiln's frontend (see above) when it applies
    /// (`sources` says whether anything builds alongside and where the build requirements come
    /// from): `Some(wheel)`, else `None` and uv builds the project.
    pub async fn prebuild_editable(
        &self,
        work_tmp: &Path,
        sources: Sources,
    ) -> Result<Option<PathBuf>, BootstrapError> {
        let Tool::Uv(uv) = self.tool else {
            return Ok(None);
        };
        if !sources.nothing_alongside || self.checkout_arg().is_none() {
            return Ok(None);
        }
        let file = self.scope.cwd.join("pyproject.toml");
        let pyproject = match PyProject::load(&file) {
            Ok(p) => p,
            Err(_) if !file.exists() => PyProject::default(),
            // Reported by uv, which reads it too.
            Err(_) => return Ok(None),
        };
        let env = BuildEnv::new(work_tmp);
        env.create(self).await?;
        let requires = pyproject.build_requires();
        env.install(self, uv, &requires, sources).await?;
        let mut requires_in = false;
        loop {
            let status = env.run_hooks(self, &pyproject, requires_in).await?;
            match status {
                Status {
                    unsupported: true, ..
                } => return Ok(None),
                Status { wheel: Some(w), .. } => return env.built(&w).map(Some),
                Status { requires, .. } if !requires.is_empty() && !requires_in => {
                    env.install(self, uv, &requires, sources).await?;
                    requires_in = true;
                }
                _ => {
                    return Err(BootstrapError::ProjectBuild {
                        tail: "the build backend's build_editable returned no wheel".into(),
                    })
                }
            }
        }
    }

    /// `-e <checkout>[extras]` in the project's install arguments, when it is there.
    fn checkout_arg(&self) -> Option<usize> {
        checkout_arg(&self.project, self.scope.cwd)
    }

    /// The project's install arguments with the checkout replaced by `wheel`.
    pub fn with_prebuilt(&self, wheel: &Path) -> Vec<OsString> {
        with_prebuilt(&self.project, self.scope.cwd, wheel)
    }
}

/// The position of `-e <checkout>[extras]` in `args`.
fn checkout_arg(args: &[OsString], checkout: &Path) -> Option<usize> {
    let checkout = checkout.to_string_lossy();
    args.windows(2).position(|w| {
        w[0] == "-e" && {
            let arg = w[1].to_string_lossy();
            arg.strip_prefix(checkout.as_ref())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('['))
        }
    })
}

/// `args` with `-e <checkout>[extras]` replaced by `<wheel>[extras]` (the rest, local path
/// dependencies, as they are).
fn with_prebuilt(args: &[OsString], checkout: &Path, wheel: &Path) -> Vec<OsString> {
    let mut args = args.to_vec();
    if let Some(at) = checkout_arg(&args, checkout) {
        let arg = args[at + 1].to_string_lossy().into_owned();
        let extras = &arg[checkout.to_string_lossy().len()..];
        let wheel = format!("{}{extras}", wheel.display());
        args.splice(at..at + 2, [OsString::from(wheel)]);
    }
    args
}

/// The build environment, its wheel output and the hook runner's status file.
struct BuildEnv {
    dir: PathBuf,
    out: PathBuf,
    status: PathBuf,
    hooks: PathBuf,
}

impl BuildEnv {
    fn new(work_tmp: &Path) -> BuildEnv {
        BuildEnv {
            dir: work_tmp.join("build-env"),
            out: work_tmp.join("project-editable"),
            status: work_tmp.join("build-env-status.json"),
            hooks: work_tmp.join("kiln-frontend").join("hooks.py"),
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
                "the build backend's build_editable returned {name:?}, not a wheel it wrote in {}",
                self.out.display()
            ),
        })
    }

    fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// A fresh venv, and an empty wheel output dir.
    async fn create(&self, i: &Installing<'_>) -> Result<(), BootstrapError> {
        for dir in [&self.dir, &self.out] {
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(|e| venv_error(dir, e))?;
            }
        }
        std::fs::create_dir_all(&self.out).map_err(|e| venv_error(&self.out, e))?;
        if let Some(dir) = self.hooks.parent() {
            std::fs::create_dir_all(dir).map_err(|e| venv_error(dir, e))?;
        }
        std::fs::write(&self.hooks, HOOKS).map_err(|e| venv_error(&self.hooks, e))?;
        if let Some(layout) = &i.py.venv {
            return super::native_venv::create(i.py, layout, &self.dir)
                .map_err(|e| venv_error(&self.dir, e));
        }
        let o = super::installers::venv_cmd(Some(i.tool), false, i.py, &self.dir)
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
    async fn install(
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
            o = self.install_cmd(i, uv, online).args(requires).run().await?;
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
            true => cmd.args(crate::wheelhouse::offline::install_args(i.wheelhouse)),
            false => cmd,
        }
    }

    /// Run the hooks in the project's checkout, the build environment's scripts first on PATH.
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
        });
        let _ = std::fs::remove_file(&self.status);
        let mut env = i.scope.env.to_vec();
        let bin = self.dir.join("bin");
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
            ..i.scope
        };
        let o = untrusted::program(self.python(), scope)
            .arg(&self.hooks)
            .arg(args.to_string())
            .echo(true)
            .run()
            .await?;
        let status = std::fs::read_to_string(&self.status)
            .ok()
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
    fn the_checkout_gives_way_to_the_wheel_with_its_extras() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let (checkout, wheel) = (
            Path::new("/w/src"),
            Path::new("/w/tmp/p-1.0-0.editable-py3-none-any.whl"),
        );
        let args = os(&["-e", "/w/src[test,docs]", "-e", "/w/src/lib/helper"]);
        assert_eq!(
            with_prebuilt(&args, checkout, wheel),
            os(&[
                "/w/tmp/p-1.0-0.editable-py3-none-any.whl[test,docs]",
                "-e",
                "/w/src/lib/helper"
            ])
        );
        assert_eq!(checkout_arg(&os(&["-e", "/w/src"]), checkout), Some(0));
        // Not the checkout: a sibling whose name starts the same, a non-editable install.
        assert_eq!(checkout_arg(&os(&["-e", "/w/src2"]), checkout), None);
        assert_eq!(checkout_arg(&os(&["/w/src"]), checkout), None);
        assert_eq!(
            with_prebuilt(&os(&["/w/src"]), checkout, wheel),
            os(&["/w/src"])
        );
    }

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

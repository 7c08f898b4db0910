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

use crate::project::pyproject::PyProject;

use super::super::error::BootstrapError;
use super::super::install::installing::Installing;
use super::super::plan::Tool;
use super::frontend::{uv_build_settings, write_hooks, Build, Sources};

impl Installing<'_> {
    /// Build the project's editable wheel with Kiln's frontend (see above) when it applies
    /// (`sources` says whether anything builds alongside and where the build requirements come
    /// from): `Some(wheel)`, else `None` and uv builds the project.
    pub async fn prebuild_editable(
        &self,
        work_tmp: &Path,
        sources: Sources,
        install_args: Vec<OsString>,
    ) -> Result<Option<PathBuf>, BootstrapError> {
        let Tool::Uv(uv) = self.tool else {
            return Ok(None);
        };
        if !sources.nothing_alongside || self.checkout_arg().is_none() {
            return Ok(None);
        }
        if let Some(var) = uv_build_settings() {
            tracing::debug!("{var} is set: uv builds the project, as it says");
            return Ok(None);
        }
        let file = self.scope.cwd.join("pyproject.toml");
        let pyproject = match PyProject::load(&file) {
            Ok(p) => p,
            Err(_) if !file.exists() => PyProject::default(),
            // Reported by uv, which reads it too.
            Err(_) => return Ok(None),
        };
        let build = Build::for_project(work_tmp, install_args);
        write_hooks(&build.hooks)?;
        build.run(self, uv, &pyproject, sources).await
    }

    /// `-e <checkout>[extras]` in the project's install arguments, when it is there.
    pub fn checkout_arg(&self) -> Option<usize> {
        checkout_arg(&self.project, self.scope.cwd)
    }

    /// The project's install arguments with the checkout replaced by `wheel`.
    pub fn with_prebuilt(&self, wheel: &Path) -> Vec<OsString> {
        with_prebuilt(&self.project, self.scope.cwd, wheel)
    }
}

/// What follows the checkout in `arg` when `arg` names it, with or without extras: `""` or
/// `"[a,b]"`.
pub fn checkout_extras<'a>(arg: &'a str, checkout: &str) -> Option<&'a str> {
    arg.strip_prefix(checkout)
        .filter(|rest| rest.is_empty() || rest.starts_with('['))
}

/// The position of `-e <checkout>[extras]` in `args`.
fn checkout_arg(args: &[OsString], checkout: &Path) -> Option<usize> {
    let checkout = checkout.to_string_lossy();
    args.windows(2)
        .position(|w| w[0] == "-e" && checkout_extras(&w[1].to_string_lossy(), &checkout).is_some())
}

/// `args` with `-e <checkout>[extras]` replaced by `<wheel>[extras]` (the rest, local path
/// dependencies, as they are).
fn with_prebuilt(args: &[OsString], checkout: &Path, wheel: &Path) -> Vec<OsString> {
    let mut args = args.to_vec();
    if let Some(at) = checkout_arg(&args, checkout) {
        let arg = args[at + 1].to_string_lossy().into_owned();
        let extras = checkout_extras(&arg, &checkout.to_string_lossy()).unwrap_or_default();
        let wheel = format!("{}{extras}", wheel.display());
        args.splice(at..at + 2, [OsString::from(wheel)]);
    }
    args
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
}

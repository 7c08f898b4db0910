//! The work dir of a run: where each stage reads and writes, and the rule that Kiln only ever
//! empties a directory it made.

use std::path::{Path, PathBuf};

use crate::settings::UsageError;

/// Directories of one run, all inside the work dir.
#[derive(Debug, Clone)]
pub struct Paths {
    pub workdir: PathBuf,
    pub checkout: PathBuf,
    pub venv: PathBuf,
    pub wheelhouse: PathBuf,
    pub ccache: PathBuf,
    pub pip_cache: PathBuf,
    pub results: PathBuf,
    pub tmp: PathBuf,
}

/// The marker that says a directory is a Kiln work dir, safe to empty.
const WORKDIR_MARKER: &str = ".kiln-workdir";

impl Paths {
    pub fn new(workdir: &Path) -> Paths {
        Paths {
            workdir: workdir.to_path_buf(),
            checkout: workdir.join("src"),
            venv: workdir.join("venv"),
            wheelhouse: workdir.join("wheelhouse"),
            ccache: workdir.join("ccache"),
            pip_cache: workdir.join("pip-cache"),
            results: workdir.join("results"),
            tmp: workdir.join("tmp"),
        }
    }

    /// Empty the work dir (only if it is empty or ours) and create the layout.
    pub fn prepare(&self) -> Result<(), UsageError> {
        let wd = &self.workdir;
        if wd.exists() {
            let is_empty = std::fs::read_dir(wd)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !is_empty && !wd.join(WORKDIR_MARKER).exists() {
                return Err(UsageError::Other(format!(
                    "work dir {} is not empty and was not made by kiln; refusing to delete its \
                     contents (pass an empty or new --workdir)",
                    wd.display()
                )));
            }
            std::fs::remove_dir_all(wd).map_err(|e| {
                UsageError::Other(format!("cannot empty work dir {}: {e}", wd.display()))
            })?;
        }
        for d in [
            &self.workdir,
            &self.wheelhouse,
            &self.ccache,
            &self.results,
            &self.tmp,
        ] {
            std::fs::create_dir_all(d)
                .map_err(|e| UsageError::Other(format!("cannot create {}: {e}", d.display())))?;
        }
        std::fs::write(
            wd.join(WORKDIR_MARKER),
            b"kiln work dir: emptied by every run\n",
        )
        .map_err(|e| UsageError::Other(format!("cannot write to {}: {e}", wd.display())))?;
        Ok(())
    }
}

//! The ready-made wheels of a cold or partial uv build, collected while the tests run.
//!
//! After `uv pip install` built what the wheelhouse lacked (see [`super::uv`]), the venv is
//! complete. What the wheelhouse may still lack are the wheels uv took ready-made (downloaded, or
//! from the project's own `--find-links`) and the build requirements of the project's isolated
//! build: uv keeps those only unpacked, so `pip wheel`, pinned to what uv installed, fetches them.
//! Nothing before the save stage needs them, so those passes run in the background — beside the
//! tests — into a directory of their own (they never race with the wheelhouse), and
//! [`Pending::finish`] moves their wheels in and prunes the wheelhouse just before the save. When
//! every installed distribution already has its wheel in the wheelhouse and there is no build
//! requirement (a partial hit, say) there is no pass at all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::process::{Cmd, Output, ProcessError};

use crate::wheels;

use super::output::{parse_pip_wheel, WheelReport};

/// `pip wheel` passes running in the background, one after the other; dropped unfinished, they
/// are stopped.
pub struct Pending {
    task: Option<JoinHandle<Result<Vec<Output>, ProcessError>>>,
    /// Where the pass saves wheels (not the wheelhouse).
    dir: PathBuf,
    wheelhouse: PathBuf,
    /// The wheels the requirements use so far (built, reused); the pass adds its own.
    pub used: BTreeSet<String>,
    /// `cache.wheelhouse.max_age`, for the prune after the pass.
    pub max_age: Option<Duration>,
    /// The checkout and its local path dependencies, whose wheels never go in the wheelhouse
    /// (they are built in place every run).
    local: (PathBuf, Vec<PathBuf>),
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("dir", &self.dir).finish()
    }
}

/// What the background pass added.
#[derive(Debug, Default, PartialEq)]
pub struct Collected {
    /// Wheel files moved into the wheelhouse.
    pub added: Vec<String>,
    /// Wheels pruned from the wheelhouse after it.
    pub pruned: Vec<String>,
    /// Distributions the pass built (pip reports `Successfully built …`): those uv took
    /// ready-made from an index pip was not allowed to use.
    pub built: Vec<String>,
}

impl Pending {
    /// Start `passes` (`pip wheel --wheel-dir <dir>` commands, run in turn) now.
    pub fn start(
        passes: Vec<Cmd>,
        dir: PathBuf,
        wheelhouse: &Path,
        used: BTreeSet<String>,
    ) -> Pending {
        let task = tokio::spawn(async move {
            let mut outputs = Vec::with_capacity(passes.len());
            for cmd in passes {
                outputs.push(cmd.run().await?);
            }
            Ok(outputs)
        });
        Pending {
            task: Some(task),
            dir,
            wheelhouse: wheelhouse.to_path_buf(),
            used,
            max_age: None,
            local: (PathBuf::new(), Vec::new()),
        }
    }

    /// Keep the wheels of these local projects (`dirs` in `checkout`) out of the wheelhouse.
    pub fn without_local(mut self, checkout: &Path, dirs: &[PathBuf]) -> Pending {
        self.local = (checkout.to_path_buf(), dirs.to_vec());
        self
    }

    /// Wait for the passes, move their wheels into the wheelhouse (those not there yet), then
    /// prune the wheels the requirements no longer use. A failed pass only costs those wheels:
    /// the wheelhouse is saved without them and not pruned (what is used is not known).
    pub async fn finish(mut self) -> Result<Collected, String> {
        let Some(task) = self.task.take() else {
            return Ok(Collected::default());
        };
        let outputs = match task.await {
            Ok(Ok(outputs)) => outputs,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(e.to_string()),
        };
        let mut report = WheelReport::default();
        for o in outputs {
            if !o.success {
                let _ = std::fs::remove_dir_all(&self.dir);
                return Err(format!("pip wheel exited with {:?}: {}", o.code, o.tail(5)));
            }
            report.merge(parse_pip_wheel(&o.lines));
        }
        let (checkout, dirs) = &self.local;
        for w in crate::project::plan::remove_local_wheels(&self.dir, checkout, dirs) {
            report.used.remove(&w);
        }
        let mut added = Vec::new();
        for name in wheels::list(&self.dir) {
            let dest = self.wheelhouse.join(&name);
            if dest.exists() {
                continue;
            }
            match std::fs::rename(self.dir.join(&name), &dest) {
                Ok(()) => added.push(name),
                Err(e) => tracing::warn!("cannot move {name} into the wheelhouse: {e}"),
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        self.used.extend(report.used);
        let pruned = wheels::prune(&self.wheelhouse, &self.used, self.max_age);
        Ok(Collected {
            added,
            pruned,
            built: report.built,
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Dropping the command's future kills its process group.
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for `pip wheel`: writes two wheels into `dir` and says it saved them.
    fn fake_pass(dir: &Path) -> Cmd {
        let script = format!(
            "mkdir -p {d} && touch {d}/pytest-9.2.0-py3-none-any.whl {d}/kept-1-py3-none-any.whl \
             && echo 'Saved {d}/pytest-9.2.0-py3-none-any.whl' \
             && echo 'Saved {d}/kept-1-py3-none-any.whl' && echo 'Successfully built kept'",
            d = dir.display()
        );
        Cmd::shell(&script)
    }

    #[tokio::test]
    async fn finishing_moves_the_new_wheels_in_and_prunes_what_is_unused() {
        let t = tempfile::tempdir().unwrap();
        let (wh, dir) = (t.path().join("wheelhouse"), t.path().join("collect"));
        std::fs::create_dir_all(&wh).unwrap();
        for n in [
            "kept-1-py3-none-any.whl",
            "built-1-cp311-cp311-linux_x86_64.whl",
            "stale-1-py3-none-any.whl",
        ] {
            std::fs::write(wh.join(n), n).unwrap();
        }
        let used = ["built-1-cp311-cp311-linux_x86_64.whl".to_string()].into();
        let p = Pending::start(vec![fake_pass(&dir)], dir.clone(), &wh, used);
        let c = p.finish().await.unwrap();
        assert_eq!(c.added, vec!["pytest-9.2.0-py3-none-any.whl"]);
        assert_eq!(c.pruned, vec!["stale-1-py3-none-any.whl"]);
        assert_eq!(c.built, vec!["kept"]);
        assert_eq!(
            std::fs::read_to_string(wh.join("kept-1-py3-none-any.whl")).unwrap(),
            "kept-1-py3-none-any.whl",
            "a wheel already in the wheelhouse is kept as it is"
        );
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn a_failed_pass_adds_nothing_and_prunes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let wh = t.path().join("wheelhouse");
        std::fs::create_dir_all(&wh).unwrap();
        std::fs::write(wh.join("stale-1-py3-none-any.whl"), b"x").unwrap();
        let p = Pending::start(
            vec![
                Cmd::shell("echo 'saved nothing'"),
                Cmd::shell("echo 'no network' >&2; exit 1"),
            ],
            t.path().join("collect"),
            &wh,
            BTreeSet::from(["other-1-py3-none-any.whl".to_string()]),
        );
        let err = p.finish().await.unwrap_err();
        assert!(err.contains("no network"), "{err}");
        assert!(wh.join("stale-1-py3-none-any.whl").exists());
    }
}

//! The parallel uv path: building what the wheelhouse lacks in parallel, with uv, in one install.
//!
//! `pip wheel` builds one sdist at a time; uv builds as many as there are cores. So when uv is the
//! installer, a cold or partial bootstrap is:
//!
//! 0. Kiln's own frontend builds the sdists `uv pip compile` resolves, and the editable project,
//!    in parallel into the wheelhouse ([`super::super::build::sdists`]); whatever it does not build, uv
//!    builds in step 1;
//! 1. one `uv pip install --find-links <wheelhouse> <reqs> <project>` into the venv: uv resolves
//!    the dependencies and the project's own (from its metadata when only that knows them), takes
//!    every wheel the wheelhouse has, and builds the rest and the project concurrently
//!    (`UV_CONCURRENT_BUILDS` = cores), each compile through ccache (the build environment's
//!    PATH). When the test command runs pytest and nothing can bring it (no dependencies at all),
//!    pytest is in the same install; otherwise it follows when the venv still lacks it;
//! 2. the wheels uv built are copied from its cache (the work dir's `tmp/uv-cache`, where uv keeps
//!    each built wheel as a `.whl` file under `sdists-v*/`) into the wheelhouse — never the
//!    project's or a local path dependency's (installed from a directory: built every run);
//! 3. what the venv holds is read from its `*.dist-info` directories; the distributions whose
//!    wheel the wheelhouse lacks (those uv took ready-made) and the build requirements (uv keeps
//!    them only in its build environments) are collected in the background with `pip wheel`,
//!    pinned to the versions uv installed, while the run goes on; the save stage waits for them
//!    ([`super::collect`]); the wheels uv took from a local `--find-links` directory are copied
//!    instead ([`super::ready_made`]).
//!
//! The venv is complete after step 1, so there is no second install. Should a future uv keep its
//! built wheels elsewhere, step 2 finds nothing and step 3 builds them one by one, as before:
//! slower, with the same wheelhouse.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::process::Cmd;
use crate::summary::WheelSummary;
use crate::wheels::{self, names};

use crate::run::untrusted;

use super::super::build::concurrent_builds;
use super::super::error::BootstrapError;
use super::super::venv::dists::{self as venv_dists, Dist};
use super::collect::Pending;
use super::installing::{Installed, Installing};
use super::output::{compiler_errors, failed_package};
use super::pytest::has_pytest;
use super::ready_made::{self, Unpacked};

impl Installing<'_> {
    /// Steps 1–3 above with uv at `uv`, its cache at `uv_cache`, scratch files in `tmp`;
    /// `pytest`: the test command runs pytest. The caller prunes with `Installed::used`, or
    /// `Installed::pending` does when it finishes.
    pub async fn uv_build_in_parallel(
        &self,
        uv: &Path,
        uv_cache: &Path,
        tmp: &Path,
        pytest: bool,
    ) -> Result<Installed, BootstrapError> {
        let before = wheels::list(self.wheelhouse);
        // Nothing but the project (which has no dependencies) is installed: pytest cannot come
        // from anything else, so it joins the install.
        let with_pytest = pytest && self.deps.is_empty() && !self.dynamic_deps;
        let t = Instant::now();
        let (prebuilt, project) = self.prebuild(uv, uv_cache, tmp).await?;
        self.uv_install(uv, uv_cache, &project, with_pytest).await?;
        let seconds = t.elapsed().as_secs_f64();
        let (mut pytest_added, t) = (with_pytest, Instant::now());
        if pytest && !with_pytest && !has_pytest(self).await {
            self.uv_add_pytest(uv).await?;
            pytest_added = true;
        }
        let pytest_seconds = t.elapsed().as_secs_f64();
        let dists = venv_dists::read(self.venv_dir());
        let local = local_names(&dists);
        let mut used: BTreeSet<String> =
            wheels::harvest_built_wheels(uv_cache, self.wheelhouse, &local)
                .into_iter()
                .collect();
        let harvested = used.clone();
        let constraints = constraints_path(tmp);
        let pins = venv_dists::pins(&dists);
        std::fs::write(&constraints, &pins).map_err(|e| BootstrapError::Install {
            installer: "uv".into(),
            code: -1,
            tail: format!("cannot write {}: {e}", constraints.display()),
        })?;
        let ready = self.copy_ready_made(uv_cache, &local);
        let covered = wheels::covered_by(&pins, &wheels::list(self.wheelhouse));
        used.extend(covered.wheels);
        used.extend(ready.used);
        // A build environment's distribution (not in the venv) still missing: the build
        // requirements are collected too.
        let build_missing = ready.missing.iter().any(|p| !pins.lines().any(|l| l == p));
        let pending =
            self.collect_in_background(&covered.missing, build_missing, &constraints, tmp)?;
        let mut built: BTreeSet<String> = harvested.iter().map(|w| names::dist_name(w)).collect();
        built.extend(prebuilt.iter().map(|w| names::dist_name(w)));
        Ok(Installed {
            wheels: WheelSummary {
                built: built.len() as u32,
                reused: used.intersection(&before).count() as u32,
                built_names: built.into_iter().collect(),
            },
            // One install built and installed everything.
            build_seconds: seconds,
            install_seconds: pytest_seconds,
            project_seconds: if self.project.is_empty() {
                0.0
            } else {
                seconds
            },
            used: Some(used),
            pytest_added,
            pending,
        })
    }

    fn venv_dir(&self) -> &Path {
        let bin = self.venv_python.parent().unwrap_or(Path::new("."));
        bin.parent().unwrap_or(bin)
    }

    /// `uv pip install --find-links <wheelhouse>`, plus the locations of `UV_FIND_LINKS` (a
    /// `--find-links` argument replaces the variable) and `--no-index` when `UV_NO_INDEX` says
    /// so (uv 0.13 does not read it).
    fn uv_pip_install(&self, uv: &Path) -> Cmd {
        self.uv_pip_install_into(uv, &self.venv_python)
    }

    /// [`Self::uv_pip_install`] into the environment of `python` (the venv, or the project's
    /// build environment).
    pub fn uv_pip_install_into(&self, uv: &Path, python: &Path) -> Cmd {
        self.uv_pip_into(uv, "install", python)
    }

    /// `uv pip <command>` (install, compile) for the environment of `python`, with the
    /// package sources of [`Self::uv_pip_install`].
    pub fn uv_pip_into(&self, uv: &Path, command: &str, python: &Path) -> Cmd {
        let mut cmd = untrusted::program(uv, self.scope)
            .args(["pip", command, "--python"])
            .arg(python)
            .arg("--find-links")
            .arg(self.wheelhouse);
        for location in find_links_from_env() {
            cmd = cmd.arg("--find-links").arg(location);
        }
        match no_index_from_env() {
            true => cmd.arg("--no-index"),
            false => cmd,
        }
        .echo(true)
        // Parsed for what failed to build: read whole.
        .read_whole(crate::process::PARSED_OUTPUT_LIMIT)
    }

    /// Step 1: the dependencies, the project and (`with_pytest`) pytest in one install,
    /// building in parallel.
    async fn uv_install(
        &self,
        uv: &Path,
        uv_cache: &Path,
        project: &[OsString],
        with_pytest: bool,
    ) -> Result<(), BootstrapError> {
        let pytest: &[&str] = if with_pytest { &["pytest"] } else { &[] };
        let o = self
            .uv_pip_install(uv)
            .args(self.deps.wheel_args.iter().cloned())
            .args(project.iter().cloned())
            .args(pytest.iter().copied())
            .env("UV_CONCURRENT_BUILDS", concurrent_builds().to_string())
            .run()
            .await?;
        if o.success {
            return Ok(());
        }
        if self.project_failed(&o.lines) {
            return Err(BootstrapError::ProjectBuild {
                tail: compiler_errors(&o.lines),
            });
        }
        Err(self.keep_what_built(uv_cache, &o).await)
    }

    /// pytest into the venv (the test command runs it, the requirements did not bring it).
    async fn uv_add_pytest(&self, uv: &Path) -> Result<(), BootstrapError> {
        let o = self.uv_pip_install(uv).arg("pytest").run().await?;
        if !o.success {
            return Err(self.failed(&o));
        }
        Ok(())
    }

    /// uv named the project (or a local path dependency: a `file://` directory of the
    /// checkout) as what failed to build.
    fn project_failed(&self, lines: &[String]) -> bool {
        let checkout = format!("file://{}", self.scope.cwd.display());
        lines
            .iter()
            .any(|l| l.contains("Failed to build `") && l.contains(&checkout))
    }

    /// uv stops at its first failed build. Nothing built is lost: the wheels uv finished go into
    /// the wheelhouse, then `pip wheel` builds the rest one by one (keeping each wheel that
    /// builds), so the next run retries only what failed. Returns the failure to report.
    async fn keep_what_built(
        &self,
        uv_cache: &Path,
        uv: &crate::process::Output,
    ) -> BootstrapError {
        let kept = wheels::harvest_built_wheels(uv_cache, self.wheelhouse, &[]);
        tracing::info!(
            "uv's build failed; keeping the {} wheel(s) it built and building the rest with pip",
            kept.len()
        );
        let uv_failure = BootstrapError::WheelBuild {
            code: uv.code.unwrap_or(-1),
            failed: failed_package(&uv.lines),
            tail: uv.tail(40),
        };
        if self.deps.wheel_args.is_empty() {
            return uv_failure;
        }
        match self.pip_wheel(self.deps.wheel_args.clone()).await {
            Err(e @ BootstrapError::WheelBuild { .. }) => e,
            _ => uv_failure,
        }
    }

    /// The wheels uv took ready-made (into the venv or a build environment) copied into the
    /// wheelhouse from the local directories they came from; `local`: the distributions
    /// installed from a directory (never kept).
    fn copy_ready_made(&self, uv_cache: &Path, local: &[String]) -> ReadyMade {
        let unpacked: Vec<Unpacked> = ready_made::unpacked(uv_cache)
            .into_iter()
            .filter(|u| !local.contains(&u.name))
            .collect();
        let all: String = unpacked.iter().map(|u| u.pin() + "\n").collect();
        let absent = wheels::covered_by(&all, &wheels::list(self.wheelhouse)).missing;
        let wanted: Vec<Unpacked> = unpacked
            .iter()
            .filter(|u| absent.contains(&u.pin()))
            .cloned()
            .collect();
        let dirs = ready_made::find_links_dirs(&self.deps.wheel_args);
        let (copied, _) = ready_made::copy_local(&wanted, &dirs, self.wheelhouse);
        if !copied.is_empty() {
            tracing::info!(
                "{} ready-made wheel(s) copied into the wheelhouse from local directories",
                copied.len()
            );
        }
        let covered = wheels::covered_by(&all, &wheels::list(self.wheelhouse));
        ReadyMade {
            used: covered.wheels,
            missing: covered.missing,
        }
    }

    /// Step 3: `pip wheel --no-deps` of the `missing` pins (with the requirement files, for
    /// their package sources), and `pip wheel` of the build requirements, in the background.
    fn collect_in_background(
        &self,
        missing: &[String],
        build_missing: bool,
        constraints: &Path,
        tmp: &Path,
    ) -> Result<Option<Pending>, BootstrapError> {
        let dir = tmp.join("wheel-collect");
        let mut passes = Vec::new();
        if !missing.is_empty() {
            tracing::info!(
                "collecting {} ready-made wheel(s) for the wheelhouse while the run goes on",
                missing.len()
            );
            passes.push(
                self.pip_wheel_into(&dir)?
                    .arg("--no-deps")
                    .args(self.deps.wheel_args.iter().cloned())
                    .arg("-c")
                    .arg(constraints)
                    .args(missing.iter().map(OsString::from))
                    .echo(false),
            );
        }
        if build_missing && !self.build_requires.is_empty() {
            passes.push(
                self.pip_wheel_into(&dir)?
                    .args(self.build_requires.iter().map(OsString::from))
                    .echo(false),
            );
        }
        if passes.is_empty() {
            tracing::debug!("every installed distribution has its wheel in the wheelhouse");
            return Ok(None);
        }
        let p = Pending::start(passes, dir, self.wheelhouse, BTreeSet::new());
        Ok(Some(p.without_local(
            self.scope.cwd,
            &self.deps.local_in_requirements,
        )))
    }
}

/// What [`Installing::copy_ready_made`] left: the wheels of every unpacked distribution now in
/// the wheelhouse, and the pins of those still missing (a build environment's, or the venv's).
struct ReadyMade {
    used: BTreeSet<String>,
    missing: Vec<String>,
}

/// `UV_NO_INDEX` is set to a true value.
fn no_index_from_env() -> bool {
    std::env::var("UV_NO_INDEX").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// The locations of `UV_FIND_LINKS` (comma-separated).
fn find_links_from_env() -> Vec<String> {
    std::env::var("UV_FIND_LINKS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The (normalized) names of the distributions installed from a local directory.
fn local_names(dists: &[Dist]) -> Vec<String> {
    dists
        .iter()
        .filter(|d| d.local_dir)
        .map(|d| d.name.clone())
        .collect()
}

/// The constraints file's place in the work dir.
pub fn constraints_path(tmp: &Path) -> PathBuf {
    tmp.join("kiln-installed.txt")
}

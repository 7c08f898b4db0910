//! Building the wheels the wheelhouse lacks in parallel, with uv.
//!
//! `pip wheel` builds one sdist at a time; uv builds as many as there are cores. So when uv is the
//! installer, a cold or partial bootstrap is:
//!
//! 1. `uv pip install --find-links <wheelhouse> <reqs>` into the venv: uv resolves, takes every
//!    wheel the wheelhouse has, and builds the rest concurrently (`UV_CONCURRENT_BUILDS` = cores),
//!    each compile through ccache (the build environment's PATH);
//! 2. the wheels uv built are copied from its cache (the work dir's `tmp/uv-cache`, where uv keeps
//!    each built wheel as a `.whl` file under `sdists-v*/`) into the wheelhouse;
//! 3. the wheels uv took ready-made (downloaded or from the project's own `--find-links`) are
//!    collected with `pip wheel --find-links <wheelhouse> -c <what uv installed> <reqs>`, which
//!    builds nothing (every built wheel is there by now, and the constraints pin it to the
//!    versions uv installed). When every installed distribution already has its wheel in the
//!    wheelhouse there is nothing to collect; otherwise the pass runs in the background while
//!    the run goes on, and is waited for before the save ([`super::collect`]).
//!
//! The venv is already complete after step 1, so there is no second install. Should a future uv
//! keep its built wheels elsewhere, step 2 finds nothing and step 3 builds them one by one, as
//! before: slower, with the same wheelhouse.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::index::names::{normalize, Version, WheelName};
use crate::summary::WheelSummary;

use super::super::untrusted;
use super::collect::Pending;
use super::error::BootstrapError;
use super::installers::{self, failed_package, Installed, Installing};

/// At most this many sdists build at once: one per core.
pub fn concurrent_builds() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Installing<'_> {
    /// Steps 1–3 above with uv at `uv`, its cache at `uv_cache`, scratch files in `tmp`; then
    /// what the project's own install needs, and the project. Step 3 runs in the background
    /// (see `collect`) unless the project's metadata must be built to learn its dependencies.
    /// The caller prunes with `Installed::used`, or `Installed::pending` does when it finishes.
    pub async fn uv_build_in_parallel(
        &self,
        uv: &Path,
        uv_cache: &Path,
        tmp: &Path,
    ) -> Result<Installed, BootstrapError> {
        let before = installers::list_wheels(self.wheelhouse);
        let t = Instant::now();
        self.uv_install(uv, uv_cache).await?;
        let install_seconds = t.elapsed().as_secs_f64();
        let harvested = harvest_built_wheels(uv_cache, self.wheelhouse);
        let t = Instant::now();
        let constraints = constraints_path(tmp);
        let pins = self.pin_installed(uv, &constraints).await?;
        let covered = covered_by(&pins, &installers::list_wheels(self.wheelhouse));
        let mut report = installers::WheelReport {
            used: covered.wheels,
            ..Default::default()
        };
        let mut pending = None;
        if covered.missing.is_empty() {
            tracing::debug!("every installed distribution has its wheel in the wheelhouse");
        } else if self.dynamic_deps {
            report.merge(self.collect_wheels(&constraints).await?);
        } else {
            tracing::info!(
                "collecting {} ready-made wheel(s) for the wheelhouse while the run goes on",
                covered.missing.len()
            );
            let dir = tmp.join("wheel-collect");
            let cmd = self
                .pip_wheel_into(&dir)?
                .args(self.deps.wheel_args.iter().cloned())
                .arg("-c")
                .arg(&constraints)
                .echo(false);
            let p = Pending::start(cmd, dir, self.wheelhouse, BTreeSet::new());
            pending = Some(p.without_local(self.scope.cwd, &self.deps.local_in_requirements));
        }
        self.project_needs(&mut report).await?;
        let build_seconds = install_seconds + t.elapsed().as_secs_f64();
        let project_seconds = self.install_project().await?;
        let mut used = report.used.clone();
        used.extend(harvested.iter().cloned());
        let mut built: BTreeSet<String> = harvested.iter().map(|w| dist_name(w)).collect();
        built.extend(report.built);
        Ok(Installed {
            wheels: WheelSummary {
                built: built.len() as u32,
                reused: used.intersection(&before).count() as u32,
                built_names: built.into_iter().collect(),
            },
            build_seconds,
            install_seconds: project_seconds,
            project_seconds,
            used: Some(used),
            pytest_added: false,
            pending,
        })
    }

    /// Step 1: `uv pip install --find-links <wheelhouse> <reqs>`, building in parallel.
    async fn uv_install(&self, uv: &Path, uv_cache: &Path) -> Result<(), BootstrapError> {
        let o = untrusted::program(uv, self.scope)
            .args(["pip", "install", "--python"])
            .arg(&self.venv_python)
            .arg("--find-links")
            .arg(self.wheelhouse)
            .args(self.deps.wheel_args.iter().cloned())
            .env("UV_CONCURRENT_BUILDS", concurrent_builds().to_string())
            .echo(true)
            .run()
            .await?;
        if !o.success {
            return Err(self.keep_what_built(uv_cache, &o).await);
        }
        Ok(())
    }

    /// uv stops at its first failed build. Nothing built is lost: the wheels uv finished go into
    /// the wheelhouse, then `pip wheel` builds the rest one by one (keeping each wheel that
    /// builds), so the next run retries only what failed. Returns the failure to report.
    async fn keep_what_built(
        &self,
        uv_cache: &Path,
        uv: &crate::process::Output,
    ) -> BootstrapError {
        let kept = harvest_built_wheels(uv_cache, self.wheelhouse);
        tracing::info!(
            "uv's build failed; keeping the {} wheel(s) it built and building the rest with pip",
            kept.len()
        );
        let uv_failure = BootstrapError::WheelBuild {
            code: uv.code.unwrap_or(-1),
            failed: failed_package(&uv.lines),
            tail: uv.tail(40),
        };
        match self.pip_wheel(self.deps.wheel_args.clone()).await {
            Err(e @ BootstrapError::WheelBuild { .. }) => e,
            _ => uv_failure,
        }
    }

    /// `name==version` of every distribution uv installed, as a constraints file for pip;
    /// returns the file's text.
    async fn pin_installed(&self, uv: &Path, constraints: &Path) -> Result<String, BootstrapError> {
        let o = untrusted::program(uv, self.scope)
            .args(["pip", "freeze", "--python"])
            .arg(&self.venv_python)
            .run()
            .await?;
        if !o.success {
            return Err(self.failed(&o));
        }
        let pins = pins(&o.lines);
        std::fs::write(constraints, &pins).map_err(|e| BootstrapError::Install {
            installer: "uv".into(),
            code: -1,
            tail: format!("cannot write {}: {e}", constraints.display()),
        })?;
        Ok(pins)
    }

    /// `pip wheel` into the wheelhouse, pinned to `constraints`: the ready-made wheels.
    async fn collect_wheels(
        &self,
        constraints: &Path,
    ) -> Result<installers::WheelReport, BootstrapError> {
        let o = self
            .pip_wheel_cmd()?
            .args(self.deps.wheel_args.iter().cloned())
            .arg("-c")
            .arg(constraints)
            .run()
            .await?;
        if !o.success {
            return Err(BootstrapError::WheelBuild {
                code: o.code.unwrap_or(-1),
                failed: failed_package(&o.lines),
                tail: o.tail(40),
            });
        }
        Ok(installers::parse_pip_wheel(&o.lines))
    }
}

/// The `name==version` lines of `pip freeze` output: editable and URL installs cannot be
/// constraints, and need none.
fn pins(lines: &[String]) -> String {
    let mut out = String::new();
    for l in lines.iter().map(|l| l.trim()) {
        let pinned = l.split_once("==").is_some_and(|(name, version)| {
            !name.is_empty()
                && !version.is_empty()
                && !l.contains(' ')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
        if pinned {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Copy each wheel uv built (`<uv_cache>/sdists-v*/**/*.whl`) into `wheelhouse`, unless a wheel
/// of that name is already there. Returns the file names copied.
pub fn harvest_built_wheels(uv_cache: &Path, wheelhouse: &Path) -> Vec<String> {
    let mut found: Vec<PathBuf> = Vec::new();
    let Ok(buckets) = std::fs::read_dir(uv_cache) else {
        return Vec::new();
    };
    for bucket in buckets.flatten() {
        if bucket.file_name().to_string_lossy().starts_with("sdists-v") {
            find_wheels(&bucket.path(), &mut found);
        }
    }
    let mut copied = Vec::new();
    for whl in found {
        let Some(name) = whl.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let dest = wheelhouse.join(&name);
        if dest.exists() || copied.contains(&name) {
            continue;
        }
        match std::fs::hard_link(&whl, &dest).or_else(|_| std::fs::copy(&whl, &dest).map(drop)) {
            Ok(()) => copied.push(name),
            Err(e) => tracing::warn!("cannot copy {} into the wheelhouse: {e}", whl.display()),
        }
    }
    copied.sort();
    copied
}

fn find_wheels(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        let path = e.path();
        if kind.is_dir() {
            find_wheels(&path, out);
        } else if kind.is_file() && path.extension().is_some_and(|x| x == "whl") {
            out.push(path);
        }
    }
}

/// The wheels of `wheels` (file names) that are the pinned distributions of `pins`
/// (`name==version` lines), and the pins none of them is.
#[derive(Debug, Default, PartialEq)]
pub struct Covered {
    pub wheels: BTreeSet<String>,
    pub missing: Vec<String>,
}

/// Match `pins` to `wheels` by PEP 503 name and PEP 440 version.
pub fn covered_by(pins: &str, wheels: &BTreeSet<String>) -> Covered {
    let parsed: Vec<WheelName> = wheels.iter().filter_map(|w| WheelName::parse(w)).collect();
    let mut out = Covered::default();
    for pin in pins.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((name, version)) = pin.split_once("==") else {
            continue;
        };
        let (name, version) = (normalize(name), Version::parse(version));
        let matching: Vec<&WheelName> = parsed
            .iter()
            .filter(|w| w.project == name && Version::parse(&w.version) == version)
            .collect();
        if matching.is_empty() {
            out.missing.push(pin.to_string());
        }
        out.wheels
            .extend(matching.into_iter().map(|w| w.filename.clone()));
    }
    out
}

/// `zope_interface-6.0-cp311-….whl` → `zope_interface`.
fn dist_name(wheel: &str) -> String {
    wheel.split('-').next().unwrap_or(wheel).to_string()
}

/// The constraints file's place in the work dir.
pub fn constraints_path(tmp: &Path) -> PathBuf {
    tmp.join("kiln-installed.txt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_keep_only_name_version_lines() {
        let lines: Vec<String> = [
            "fastsum==1.0",
            "zope.interface==6.4.post2",
            "-e file:///w/src",
            "app @ file:///w/src",
            "weird==",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(pins(&lines), "fastsum==1.0\nzope.interface==6.4.post2\n");
    }

    #[test]
    fn pins_are_matched_to_wheels_by_normalized_name_and_version() {
        let wheels: BTreeSet<String> = [
            "zope_interface-6.4.post2-cp311-cp311-linux_x86_64.whl",
            "MarkupSafe-3.0.2-cp311-cp311-linux_x86_64.whl",
            "pytest-9.2.0-py3-none-any.whl",
            "pytest-9.1.0-py3-none-any.whl",
            "notes.txt",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = covered_by(
            "zope.interface==6.4.post2\nmarkupsafe==3.0.2\npytest==9.2.0\npluggy==1.7.0\n",
            &wheels,
        );
        assert_eq!(c.missing, vec!["pluggy==1.7.0"]);
        assert_eq!(
            c.wheels.into_iter().collect::<Vec<_>>(),
            [
                "MarkupSafe-3.0.2-cp311-cp311-linux_x86_64.whl",
                "pytest-9.2.0-py3-none-any.whl",
                "zope_interface-6.4.post2-cp311-cp311-linux_x86_64.whl"
            ]
        );
        assert!(covered_by("", &wheels).missing.is_empty());
    }

    #[test]
    fn harvest_copies_each_built_wheel_once_and_keeps_what_is_there() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("uv-cache");
        let wh = d.path().join("wheelhouse");
        for (dir, name) in [
            (
                "sdists-v11/index/ab/fastsum/1.0/x1",
                "fastsum-1.0-cp311-cp311-linux_x86_64.whl",
            ),
            (
                "sdists-v11/path/cd/vecmath/1.1/x2",
                "vecmath-1.1-cp311-cp311-linux_x86_64.whl",
            ),
            (
                "sdists-v11/path/ef/vecmath/1.1/x3",
                "vecmath-1.1-cp311-cp311-linux_x86_64.whl",
            ),
            ("wheels-v8/pypi/pytest", "pytest-9.2.0-py3-none-any.whl"),
        ] {
            std::fs::create_dir_all(cache.join(dir)).unwrap();
            std::fs::write(cache.join(dir).join(name), name).unwrap();
        }
        std::fs::create_dir_all(&wh).unwrap();
        std::fs::write(wh.join("fastsum-1.0-cp311-cp311-linux_x86_64.whl"), b"old").unwrap();
        let copied = harvest_built_wheels(&cache, &wh);
        assert_eq!(copied, vec!["vecmath-1.1-cp311-cp311-linux_x86_64.whl"]);
        assert_eq!(
            std::fs::read(wh.join("fastsum-1.0-cp311-cp311-linux_x86_64.whl")).unwrap(),
            b"old",
            "a wheel already in the wheelhouse is kept as it is"
        );
        assert!(
            !wh.join("pytest-9.2.0-py3-none-any.whl").exists(),
            "only built wheels"
        );
        assert!(harvest_built_wheels(&d.path().join("none"), &wh).is_empty());
    }
}

//! The install plan: a detected `Project` turned into the concrete arguments of the two steps of
//! every bootstrap — fill the wheelhouse (`pip wheel`, hashes checked), then install from it
//! offline (the wheels Kiln built itself are trusted: the wheelhouse key covers the locked inputs).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::detect::{DepsSource, Project};
use super::locks::{self, LockedReq, LockedSet};
use super::pyproject::normalize;
use super::{InstallMode, ProjectError};

/// What bootstrap runs for the dependencies and the project.
#[derive(Debug, Clone, Default)]
pub struct DepsPlan {
    /// Arguments for `pip wheel` that put the dependencies into the wheelhouse; empty: nothing
    /// to build.
    pub wheel_args: Vec<OsString>,
    /// Arguments that install the dependencies from the wheelhouse.
    pub install_args: Vec<OsString>,
    /// The dependencies are a complete locked set: installed with `--no-deps`, and the project
    /// too (its dependencies are in the lock).
    pub locked: bool,
    /// Local directories (path dependencies, workspace members): built in place every run,
    /// never kept in the wheelhouse. (path, editable)
    pub local: Vec<(PathBuf, bool)>,
}

impl DepsPlan {
    pub fn is_empty(&self) -> bool {
        self.install_args.is_empty() && self.local.is_empty()
    }
}

/// Write the files the plan needs under `tmp` and return it. `locked` is the exported lock set
/// for lock sources (see `locks`), `wheelhouse` the wheels already there (a locked requirement
/// whose wheel is there is not fetched again: its hash is the sdist's, not our wheel's).
pub fn plan(
    project: &Project,
    checkout: &Path,
    constraints: &[PathBuf],
    locked: Option<LockedSet>,
    wheelhouse: &Path,
    tmp: &Path,
) -> Result<DepsPlan, ProjectError> {
    let mut p = DepsPlan::default();
    let write = |name: &str, body: &str| -> Result<PathBuf, ProjectError> {
        let path = tmp.join(name);
        std::fs::create_dir_all(tmp)
            .and_then(|()| std::fs::write(&path, body))
            .map_err(|source| ProjectError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    };
    if let Some(set) = locked {
        let present = wheel_names(wheelhouse);
        let missing: Vec<&LockedReq> = set
            .requirements
            .iter()
            .filter(|r| !in_wheelhouse(r, &present))
            .collect();
        if !missing.is_empty() {
            let f = write("kiln-locked-build.txt", &LockedSet::hashed_file(&missing))?;
            p.wheel_args = vec!["--no-deps".into(), "-r".into(), f.into()];
        }
        if !set.requirements.is_empty() {
            let f = write("kiln-locked-install.txt", &set.install_file())?;
            p.install_args = vec!["-r".into(), f.into()];
        }
        p.local = set.local;
        p.locked = true;
        return Ok(p);
    }
    let mut args: Vec<OsString> = Vec::new();
    if let DepsSource::Requirements { files } = &project.source {
        for f in files {
            args.push("-r".into());
            args.push(checkout.join(f).into());
        }
    }
    let mut extra = project.requirements.clone();
    // A package's own static dependencies: the installer resolves them from the wheelhouse
    // when it installs the project, so they must be built even when requirement files do
    // not list them.
    if project.install != InstallMode::None && project.source != DepsSource::Pyproject {
        if let Some(py) = &project.pyproject {
            extra.extend(py.dependencies().iter().cloned());
            extra.extend(py.extra_requirements(&project.extras)?);
        }
    }
    if !extra.is_empty() {
        let f = write("kiln-project-requirements.txt", &(extra.join("\n") + "\n"))?;
        args.push("-r".into());
        args.push(f.into());
    }
    if !args.is_empty() {
        for c in constraints {
            args.push("-c".into());
            args.push(checkout.join(c).into());
        }
    }
    p.wheel_args = args.clone();
    p.install_args = args;
    Ok(p)
}

/// `dist-version` pairs (normalized) of the wheels in `dir`.
fn wheel_names(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let stem = name.strip_suffix(".whl")?.to_string();
                    let mut parts = stem.split('-');
                    Some((normalize(parts.next()?), parts.next()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn in_wheelhouse(r: &LockedReq, present: &[(String, String)]) -> bool {
    r.version
        .as_deref()
        .is_some_and(|v| present.iter().any(|(n, pv)| *n == r.name && pv == v))
}

/// The installer arguments that install the project itself (and local path dependencies).
pub fn project_args(project: &Project, checkout: &Path) -> Vec<OsString> {
    let extras = if project.extras.is_empty() {
        String::new()
    } else {
        format!("[{}]", project.extras.join(","))
    };
    match project.install {
        InstallMode::None => Vec::new(),
        // A directory, not editable: the installer builds the project's wheel (isolated, build
        // requirements from the wheelhouse) and installs it; the wheel is kept nowhere.
        InstallMode::Wheel => vec![format!("{}{extras}", checkout.display()).into()],
        InstallMode::Editable => vec![
            "-e".into(),
            format!("{}{extras}", checkout.display()).into(),
        ],
    }
}

/// Local path dependencies as installer arguments (`-e dir` or `dir`).
pub fn local_args(local: &[(PathBuf, bool)], checkout: &Path) -> Vec<OsString> {
    let mut args = Vec::new();
    for (dir, editable) in local {
        if *editable {
            args.push("-e".into());
        }
        args.push(checkout.join(dir).into());
    }
    args
}

/// Re-exported for bootstrap: the lock exporters.
pub use locks::{export_uv_lock, read_pylock};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::detect::{detect, DetectInput};
    use crate::project::ProjectConfig;

    #[test]
    fn lock_plans_fetch_only_what_the_wheelhouse_lacks_and_install_without_hashes() {
        let d = tempfile::tempdir().unwrap();
        let wh = d.path().join("wh");
        std::fs::create_dir_all(&wh).unwrap();
        std::fs::write(
            wh.join("MarkupSafe-3.0.2-cp311-cp311-linux_x86_64.whl"),
            b"",
        )
        .unwrap();
        let set = locks::parse_requirements_text(
            "markupsafe==3.0.2 --hash=sha256:aa\npytest==9.2.0 --hash=sha256:bb\n-e ./lib/h\n",
        );
        std::fs::write(d.path().join("uv.lock"), "").unwrap();
        let config = ProjectConfig::default();
        let project = detect(DetectInput {
            checkout: d.path(),
            config: &config,
            requirements: None,
        })
        .unwrap();
        let tmp = d.path().join("tmp");
        let p = plan(&project, d.path(), &[], Some(set), &wh, &tmp).unwrap();
        assert!(p.locked);
        assert_eq!(
            std::fs::read_to_string(tmp.join("kiln-locked-build.txt")).unwrap(),
            "pytest==9.2.0 --hash=sha256:bb\n"
        );
        assert_eq!(
            std::fs::read_to_string(tmp.join("kiln-locked-install.txt")).unwrap(),
            "markupsafe==3.0.2\npytest==9.2.0\n"
        );
        assert_eq!(p.local, [(PathBuf::from("./lib/h"), true)]);
    }

    #[test]
    fn a_package_with_requirement_files_also_builds_its_own_dependencies() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("requirements.txt"), "six\n").unwrap();
        std::fs::write(
            d.path().join("pyproject.toml"),
            "[project]\nname = \"p\"\ndependencies = [\"attrs\"]\n",
        )
        .unwrap();
        let config = ProjectConfig::default();
        let project = detect(DetectInput {
            checkout: d.path(),
            config: &config,
            requirements: None,
        })
        .unwrap();
        let tmp = d.path().join("tmp");
        let p = plan(&project, d.path(), &[], None, &d.path().join("wh"), &tmp).unwrap();
        assert_eq!(p.wheel_args.len(), 4, "{:?}", p.wheel_args);
        assert_eq!(
            std::fs::read_to_string(tmp.join("kiln-project-requirements.txt")).unwrap(),
            "attrs\n"
        );
        assert_eq!(
            project_args(&project, Path::new("/w/src")),
            [OsString::from("-e"), OsString::from("/w/src")]
        );
    }
}

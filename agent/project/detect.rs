//! Zero-config detection of what a checkout is, in the documented order:
//! `uv.lock` → `pylock.toml` → requirement files → `pyproject.toml` tables → `setup.py`/`setup.cfg`,
//! each overridable with `project.source` in kiln.yml.

use std::path::{Path, PathBuf};

use super::pyproject::{PyProject, LEGACY_BUILD_REQUIRES};
use super::test_deps::{self, TestDeps};
use super::{InstallMode, ProjectConfig, ProjectError, SourceChoice};

/// Where this run's dependencies come from (`deps_source` in the summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepsSource {
    UvLock { lock: PathBuf },
    Pylock { lock: PathBuf },
    Requirements { files: Vec<PathBuf> },
    Pyproject,
    SetupPy,
    None,
}

impl DepsSource {
    /// The name the summary and console use.
    pub fn name(&self) -> &'static str {
        match self {
            DepsSource::UvLock { .. } => "uv.lock",
            DepsSource::Pylock { .. } => "pylock.toml",
            DepsSource::Requirements { .. } => "requirements",
            DepsSource::Pyproject => "pyproject",
            DepsSource::SetupPy => "setup.py",
            DepsSource::None => "none",
        }
    }

    /// A lock file lists the complete environment, the project's own dependencies included.
    pub fn is_lock(&self) -> bool {
        matches!(self, DepsSource::UvLock { .. } | DepsSource::Pylock { .. })
    }
}

/// A detected project: everything bootstrap needs to know about the checkout.
#[derive(Debug, Clone)]
pub struct Project {
    pub source: DepsSource,
    pub pyproject: Option<PyProject>,
    /// Extras and dependency groups asked for (explicitly or by default).
    pub extras: Vec<String>,
    pub groups: Vec<String>,
    /// Requirements Kiln takes from `pyproject.toml` itself: the `pyproject` source's
    /// dependencies and extras, and the dependency groups of non-lock sources.
    pub requirements: Vec<String>,
    pub install: InstallMode,
    /// Normalized distribution name, when `[project].name` gives it.
    pub name: Option<String>,
    /// What an isolated build of the project needs (`[build-system].requires` or the fallback).
    pub build_requires: Vec<String>,
    /// C/C++/Cython/Rust sources of the project (a few, for messages).
    pub native_sources: Vec<PathBuf>,
    /// After the install, compiled modules must import (see `ProjectConfig::require_compiled`).
    pub require_compiled: bool,
    /// Where the test dependencies come from (see `test_deps`): its groups and extras are in
    /// `groups`/`extras`, its inline requirements in `requirements`, its files here.
    pub test_deps: TestDeps,
    /// uv.lock: also install uv's default groups (`dev`, `[tool.uv] default-groups`). Off when
    /// a group was chosen (found or named), unless kiln.yml `project.default_groups: true`.
    pub default_groups: bool,
}

/// What detection reads besides the checkout.
#[derive(Debug, Clone, Copy)]
pub struct DetectInput<'a> {
    pub checkout: &'a Path,
    pub config: &'a ProjectConfig,
    /// Requirement files named in kiln.yml; `None`: `requirements.txt` when present.
    pub requirements: Option<&'a [PathBuf]>,
}

pub fn detect(input: DetectInput<'_>) -> Result<Project, ProjectError> {
    let root = input.checkout;
    let pyproject_path = root.join("pyproject.toml");
    let pyproject = if pyproject_path.is_file() {
        Some(PyProject::load(&pyproject_path)?)
    } else {
        None
    };
    let legacy = root.join("setup.py").is_file() || root.join("setup.cfg").is_file();
    let is_package = legacy
        || pyproject
            .as_ref()
            .is_some_and(|p| p.project.is_some() || p.build_system.is_some());
    let source = choose_source(input, pyproject.as_ref(), legacy)?;
    let test_deps = selections(root, input.config, pyproject.as_ref(), source.is_lock());
    for f in &test_deps.files {
        if !root.join(f).is_file() {
            return Err(ProjectError::MissingRequirements(f.clone()));
        }
    }
    let (extras, groups) = (test_deps.extras.clone(), test_deps.groups.clone());
    let default_groups = input.config.default_groups.unwrap_or(groups.is_empty());
    let mut requirements = match (&pyproject, &source) {
        (Some(p), DepsSource::Pyproject) => {
            let mut r = p.dependencies().to_vec();
            r.extend(p.extra_requirements(&extras)?);
            r.extend(p.group_requirements(&groups)?);
            r
        }
        (Some(p), s) if !s.is_lock() => {
            p.extra_requirements(&extras)?; // validate the names even when the project brings them
            p.group_requirements(&groups)?
        }
        _ => Vec::new(),
    };
    if !source.is_lock() {
        requirements.extend(test_deps.requirements.iter().cloned());
    }
    let install = input.config.install.unwrap_or(if is_package {
        InstallMode::Editable
    } else {
        InstallMode::None
    });
    let native_sources = if install == InstallMode::None {
        Vec::new()
    } else {
        find_native_sources(root, 5)
    };
    Ok(Project {
        name: pyproject.as_ref().and_then(PyProject::name),
        build_requires: pyproject
            .as_ref()
            .map(PyProject::build_requires)
            .unwrap_or_else(|| vec![LEGACY_BUILD_REQUIRES.to_string()]),
        require_compiled: input
            .config
            .require_compiled
            .unwrap_or(!native_sources.is_empty()),
        source,
        pyproject,
        extras,
        groups,
        requirements,
        install,
        native_sources,
        default_groups,
        test_deps,
    })
}

fn choose_source(
    input: DetectInput<'_>,
    pyproject: Option<&PyProject>,
    legacy: bool,
) -> Result<DepsSource, ProjectError> {
    let root = input.checkout;
    let pylock = input
        .config
        .lock
        .clone()
        .unwrap_or_else(|| PathBuf::from("pylock.toml"));
    let has_deps_tables = pyproject.is_some_and(|p| p.project.is_some());
    let requirements = requirement_files(root, input.requirements)?;
    let missing = |source_name: &'static str, file: &str| ProjectError::MissingSource {
        source_name,
        file: file.to_string(),
    };
    Ok(match input.config.source {
        SourceChoice::Auto => {
            if root.join("uv.lock").is_file() {
                DepsSource::UvLock {
                    lock: "uv.lock".into(),
                }
            } else if root.join(&pylock).is_file() {
                DepsSource::Pylock { lock: pylock }
            } else if !requirements.is_empty() {
                DepsSource::Requirements {
                    files: requirements,
                }
            } else if has_deps_tables {
                DepsSource::Pyproject
            } else if legacy {
                DepsSource::SetupPy
            } else {
                DepsSource::None
            }
        }
        SourceChoice::UvLock if root.join("uv.lock").is_file() => DepsSource::UvLock {
            lock: "uv.lock".into(),
        },
        SourceChoice::UvLock => return Err(missing("uv.lock", "uv.lock")),
        SourceChoice::Pylock if root.join(&pylock).is_file() => DepsSource::Pylock { lock: pylock },
        SourceChoice::Pylock => return Err(missing("pylock.toml", &pylock.display().to_string())),
        SourceChoice::Requirements => DepsSource::Requirements {
            files: requirements,
        },
        SourceChoice::Pyproject if has_deps_tables => DepsSource::Pyproject,
        SourceChoice::Pyproject => return Err(missing("pyproject", "pyproject.toml [project]")),
        SourceChoice::SetupPy if legacy => DepsSource::SetupPy,
        SourceChoice::SetupPy => return Err(missing("setup.py", "setup.py or setup.cfg")),
        SourceChoice::None => DepsSource::None,
    })
}

/// Named requirement files must exist; the default `requirements.txt` may be absent.
fn requirement_files(root: &Path, named: Option<&[PathBuf]>) -> Result<Vec<PathBuf>, ProjectError> {
    match named {
        Some(files) => {
            for f in files {
                if !root.join(f).is_file() {
                    return Err(ProjectError::MissingRequirements(f.clone()));
                }
            }
            Ok(files.to_vec())
        }
        None if root.join("requirements.txt").is_file() => Ok(vec!["requirements.txt".into()]),
        None => Ok(Vec::new()),
    }
}

/// What kiln.yml says (`project.extras`, `groups`, `test_requirements`), else the test
/// dependencies found in the documented order (see `test_deps`).
fn selections(root: &Path, config: &ProjectConfig, py: Option<&PyProject>, lock: bool) -> TestDeps {
    let said = config.extras.is_some() || config.groups.is_some();
    if !said && config.test_requirements.is_none() {
        return test_deps::find(root, py, lock);
    }
    let files = config.test_requirements.clone().unwrap_or_default();
    let mut keys = Vec::new();
    for (key, set) in [
        ("project.extras", config.extras.is_some()),
        ("project.groups", config.groups.is_some()),
        (
            "project.test_requirements",
            config.test_requirements.is_some(),
        ),
    ] {
        if set {
            keys.push(key);
        }
    }
    TestDeps {
        chosen: format!("kiln.yml {}", keys.join(", ")),
        extras: config.extras.clone().unwrap_or_default(),
        groups: config.groups.clone().unwrap_or_default(),
        files: if lock { Vec::new() } else { files },
        requirements: Vec::new(),
    }
}

/// Up to `limit` C/C++/Cython/Rust source files of the project, skipping VCS, virtualenv, build
/// output and vendored directories.
pub fn find_native_sources(root: &Path, limit: usize) -> Vec<PathBuf> {
    const SKIP: [&str; 9] = [
        "build",
        "dist",
        "venv",
        "node_modules",
        "vendor",
        "third_party",
        "docs",
        "target",
        "tests",
    ];
    const EXT: [&str; 6] = ["c", "cc", "cpp", "cxx", "pyx", "rs"];
    walkdir::WalkDir::new(root)
        .max_depth(6)
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0 || !(name.starts_with('.') || SKIP.contains(&name.as_ref()))
        })
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            e.path()
                .extension()
                .is_some_and(|x| EXT.contains(&x.to_string_lossy().as_ref()))
        })
        .filter_map(|e| e.path().strip_prefix(root).ok().map(Path::to_path_buf))
        .take(limit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, body) in files {
            let p = d.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        d
    }

    fn run(d: &tempfile::TempDir, config: &ProjectConfig) -> Result<Project, ProjectError> {
        detect(DetectInput {
            checkout: d.path(),
            config,
            requirements: None,
        })
    }

    const PKG: &str = "[project]\nname = \"pkg\"\ndependencies = [\"attrs\"]\n\
        [project.optional-dependencies]\ntest = [\"pytest\"]\n";

    #[test]
    fn detection_order_is_uv_lock_pylock_requirements_pyproject_setup_py() {
        let d = tree(&[
            ("pyproject.toml", PKG),
            ("setup.py", ""),
            ("requirements.txt", "six\n"),
            ("pylock.toml", ""),
            ("uv.lock", ""),
        ]);
        let c = ProjectConfig::default();
        let mut seen = Vec::new();
        for file in [
            "uv.lock",
            "pylock.toml",
            "requirements.txt",
            "pyproject.toml",
            "setup.py",
        ] {
            seen.push(run(&d, &c).unwrap().source.name());
            std::fs::remove_file(d.path().join(file)).unwrap();
        }
        seen.push(run(&d, &c).unwrap().source.name());
        assert_eq!(
            seen,
            [
                "uv.lock",
                "pylock.toml",
                "requirements",
                "pyproject",
                "setup.py",
                "none"
            ]
        );
    }

    #[test]
    fn a_package_is_installed_editable_an_application_is_not() {
        let pkg = tree(&[("pyproject.toml", PKG), ("src/pkg/_speed.c", "")]);
        let p = run(&pkg, &ProjectConfig::default()).unwrap();
        assert_eq!(p.install, InstallMode::Editable);
        assert_eq!(p.native_sources, [PathBuf::from("src/pkg/_speed.c")]);
        assert!(p.require_compiled);
        let app = tree(&[
            ("requirements.txt", "six\n"),
            ("pyproject.toml", "[tool.ruff]\nline-length = 1\n"),
            ("tests/helper.c", ""),
        ]);
        let p = run(&app, &ProjectConfig::default()).unwrap();
        assert_eq!(p.install, InstallMode::None);
        assert!(!p.require_compiled);
    }

    #[test]
    fn pyproject_source_takes_dependencies_and_the_default_test_extra() {
        let d = tree(&[("pyproject.toml", PKG)]);
        let p = run(&d, &ProjectConfig::default()).unwrap();
        assert_eq!(p.source, DepsSource::Pyproject);
        assert_eq!(p.extras, ["test"]);
        assert_eq!(p.requirements, ["attrs", "pytest"]);
        assert_eq!(p.build_requires, [LEGACY_BUILD_REQUIRES]);
    }

    #[test]
    fn a_group_named_dev_wins_over_an_extra_named_test() {
        let text = format!("{PKG}[dependency-groups]\ndev = [\"ruff\"]\n");
        let d = tree(&[("pyproject.toml", &text)]);
        let p = run(&d, &ProjectConfig::default()).unwrap();
        assert_eq!((p.extras.len(), p.groups.clone()), (0, vec!["dev".into()]));
        assert_eq!(p.requirements, ["attrs", "ruff"]);
    }

    #[test]
    fn explicit_selection_and_source_are_checked() {
        let d = tree(&[("pyproject.toml", PKG)]);
        let c = ProjectConfig {
            extras: Some(vec!["speed".into()]),
            ..Default::default()
        };
        let e = run(&d, &c).unwrap_err().to_string();
        assert!(
            e.contains("extra `speed`") && e.contains("defines: test"),
            "{e}"
        );
        let c = ProjectConfig {
            source: SourceChoice::UvLock,
            ..Default::default()
        };
        let e = run(&d, &c).unwrap_err().to_string();
        assert!(e.contains("uv.lock does not exist"), "{e}");
    }

    #[test]
    fn named_requirement_files_must_exist() {
        let d = tree(&[("requirements.txt", "six\n")]);
        let named = [PathBuf::from("requirements-dev.txt")];
        let e = detect(DetectInput {
            checkout: d.path(),
            config: &ProjectConfig::default(),
            requirements: Some(&named),
        })
        .unwrap_err();
        assert!(matches!(e, ProjectError::MissingRequirements(_)), "{e}");
    }
}

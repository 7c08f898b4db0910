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
    /// Local directories named inside requirement files (`-e ./lib/x`, `./lib/x`): installed by
    /// the requirement file itself; listed for their build requirements, and so that their
    /// wheels are taken out of the wheelhouse after `pip wheel`.
    pub local_in_requirements: Vec<PathBuf>,
    /// Extras of the project asked for where a requirement file names the project itself
    /// (`-e .[test]`): Kiln installs the project once, with these too (see `self_reference`).
    pub project_extras: Vec<String>,
    /// Where requirement files named the project itself (`requirements.txt:1`).
    pub project_named_at: Vec<String>,
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
            let f = write("kiln-locked-build.txt", &set.hashed_file(&missing))?;
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
    let mut files: Vec<PathBuf> = match &project.source {
        DepsSource::Requirements { files } => files.clone(),
        _ => Vec::new(),
    };
    // The test dependencies' requirement files (requirements/test.txt, tox's -r files).
    files.extend(project.test_deps.files.iter().cloned());
    if !files.is_empty() {
        // The project named in its own requirement files is Kiln's to install, once.
        let passed = super::self_reference::without_project(&files, checkout, tmp)?;
        for (f, pass) in files.iter().zip(&passed.files) {
            args.push("-r".into());
            args.push(pass.into());
            // Path lines stay in the file (pip builds them in place at install); their build
            // requirements go into the wheelhouse and their wheels never stay there.
            let text = std::fs::read_to_string(checkout.join(f)).unwrap_or_default();
            p.local_in_requirements.extend(
                local_lines(&text)
                    .into_iter()
                    .filter(|d| !super::self_reference::is_checkout(d, checkout)),
            );
        }
        p.project_extras = passed.extras;
        p.project_named_at = passed.named_at;
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
    p.install_args = install_copies(&args, tmp)?;
    Ok(p)
}

/// The requirement-file arguments for the install from the wheelhouse. A file with pip options
/// that refuse our wheels (`--hash`, `--require-hashes`, `--no-binary`, `--only-binary`) gets a
/// copy without them: pip checked the hashes of what it downloaded when it filled the
/// wheelhouse, and the wheels it built there are ours.
fn install_copies(args: &[OsString], tmp: &Path) -> Result<Vec<OsString>, ProjectError> {
    let mut out = Vec::with_capacity(args.len());
    let mut n = 0;
    for a in args {
        let path = Path::new(a);
        let text = match path.is_file().then(|| std::fs::read_to_string(path)) {
            Some(Ok(t)) if refuses_wheels(&t) => t,
            _ => {
                out.push(a.clone());
                continue;
            }
        };
        n += 1;
        let dir = path.parent().unwrap_or(Path::new("."));
        let copy = tmp.join(format!("kiln-install-{n}.txt"));
        std::fs::create_dir_all(tmp)
            .and_then(|()| std::fs::write(&copy, strip_for_install(&text, dir)))
            .map_err(|source| ProjectError::Io {
                path: copy.clone(),
                source,
            })?;
        out.push(copy.into());
    }
    Ok(out)
}

fn refuses_wheels(text: &str) -> bool {
    ["--hash", "--require-hashes", "--no-binary", "--only-binary"]
        .iter()
        .any(|o| text.contains(o))
}

/// A requirement file without hash and binary options; nested files and find-links made
/// absolute (the copy lives elsewhere). Nested files are used as they are. A file with
/// `--no-binary`/`--only-binary` also loses its package sources (`--find-links`, index URLs):
/// `pip wheel` put every wheel it resolved into the wheelhouse, and a ready-made wheel found
/// elsewhere must not replace the one built from source.
pub fn strip_for_install(text: &str, dir: &Path) -> String {
    let wheelhouse_only = text.contains("--no-binary") || text.contains("--only-binary");
    let joined = text.replace("\\\n", " ");
    let mut out = String::new();
    for line in joined.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        let mut kept: Vec<String> = Vec::new();
        let mut tokens = line.split_whitespace().peekable();
        while let Some(t) = tokens.next() {
            if t.starts_with("--hash") || t == "--require-hashes" {
                if t == "--hash" {
                    tokens.next();
                }
                continue;
            }
            let source = [
                "-f",
                "--find-links",
                "-i",
                "--index-url",
                "--extra-index-url",
            ]
            .iter()
            .any(|o| t == *o || t.starts_with(&format!("{o}=")));
            if t.starts_with("--no-binary")
                || t.starts_with("--only-binary")
                || (wheelhouse_only && source)
            {
                if !t.contains('=') {
                    tokens.next();
                }
                continue;
            }
            kept.push(t.to_string());
            if matches!(
                t,
                "-r" | "-c" | "--requirement" | "--constraint" | "-f" | "--find-links"
            ) {
                if let Some(v) = tokens.next() {
                    let abs = dir.join(v);
                    kept.push(if abs.exists() {
                        abs.display().to_string()
                    } else {
                        v.to_string()
                    });
                }
            }
        }
        if !kept.is_empty() {
            out.push_str(&kept.join(" "));
            out.push('\n');
        }
    }
    out
}

/// Directories a requirement file names (`-e ./x`, `--editable=./x`, `./x`, `../x`).
pub fn local_lines(text: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        let target = line
            .strip_prefix("-e ")
            .or_else(|| line.strip_prefix("--editable "))
            .or_else(|| line.strip_prefix("--editable="))
            .unwrap_or(line)
            .trim();
        let path = target.split(['[', ' ', ';']).next().unwrap_or("");
        if path.starts_with("./") || path.starts_with("../") || path == "." {
            out.push(PathBuf::from(path));
        }
    }
    out
}

/// Remove from `wheelhouse` the wheels of the local projects in `dirs` (by their
/// `[project].name`): they are built in place every run, never kept as releases.
pub fn remove_local_wheels(wheelhouse: &Path, checkout: &Path, dirs: &[PathBuf]) -> Vec<String> {
    let names: Vec<String> = dirs
        .iter()
        .filter_map(|d| {
            super::pyproject::PyProject::load(&checkout.join(d).join("pyproject.toml")).ok()
        })
        .filter_map(|p| p.name())
        .collect();
    let mut removed = Vec::new();
    for e in std::fs::read_dir(wheelhouse)
        .into_iter()
        .flatten()
        .flatten()
    {
        let file = e.file_name().to_string_lossy().into_owned();
        let dist = file.strip_suffix(".whl").and_then(|s| s.split('-').next());
        if dist.is_some_and(|d| names.contains(&normalize(d)))
            && std::fs::remove_file(e.path()).is_ok()
        {
            removed.push(file);
        }
    }
    removed
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

/// The installer arguments that install the project itself (and local path dependencies), with
/// its selected extras and `more_extras` (those its requirement files asked for).
pub fn project_args(project: &Project, checkout: &Path, more_extras: &[String]) -> Vec<OsString> {
    let mut all: Vec<&String> = project.extras.iter().collect();
    for e in more_extras {
        if !all.contains(&e) {
            all.push(e);
        }
    }
    let extras = if all.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = all.iter().map(|e| e.as_str()).collect();
        format!("[{}]", names.join(","))
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
    fn install_copies_drop_hash_and_binary_options_and_keep_paths_working() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("vendor")).unwrap();
        let text = "--require-hashes\n--find-links vendor\n--no-binary markupsafe\n\
                    markupsafe==3.0.2 ; sys_platform == 'linux' \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n\
                    six==1.0 --hash sha256:cc  # pinned\n";
        let out = strip_for_install(text, d.path());
        // `--no-binary`: only the wheelhouse (with the wheel built from source) is a source.
        assert_eq!(
            out,
            "markupsafe==3.0.2 ; sys_platform == 'linux'\nsix==1.0\n"
        );
        let hashed_only = text.replace("--no-binary markupsafe\n", "");
        assert_eq!(
            strip_for_install(&hashed_only, d.path()),
            format!(
                "--find-links {}\nmarkupsafe==3.0.2 ; sys_platform == 'linux'\nsix==1.0\n",
                d.path().join("vendor").display()
            )
        );
        std::fs::write(d.path().join("requirements.txt"), text).unwrap();
        std::fs::write(d.path().join("plain.txt"), "six\n").unwrap();
        let args: Vec<OsString> = vec![
            "-r".into(),
            d.path().join("requirements.txt").into(),
            "-r".into(),
            d.path().join("plain.txt").into(),
        ];
        let tmp = d.path().join("tmp");
        let copies = install_copies(&args, &tmp).unwrap();
        assert_eq!(copies[1], OsString::from(tmp.join("kiln-install-1.txt")));
        assert_eq!(copies[3], args[3], "a plain file is used as it is");
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
            local_lines(
                "-e ./lib/helper\n../other[x] ; python_version > '3'\nsix\n--editable=./y\n"
            ),
            [
                PathBuf::from("./lib/helper"),
                PathBuf::from("../other"),
                PathBuf::from("./y")
            ]
        );
        assert_eq!(
            project_args(&project, Path::new("/w/src"), &[]),
            [OsString::from("-e"), OsString::from("/w/src")]
        );
    }
}

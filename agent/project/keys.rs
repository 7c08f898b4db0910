//! Which bytes decide the environment, and so the wheelhouse key: exactly the lock file, or the
//! requirement (and constraint) files, or the dependency tables of `pyproject.toml` — never the
//! whole `pyproject.toml`, so a change to `[tool.ruff]` keeps the key while a change to
//! `[project].dependencies` or `[build-system]` (whose wheels the wheelhouse holds too) makes a
//! new one.

use std::path::{Path, PathBuf};

use super::detect::{DepsSource, Project};
use super::ProjectError;
use crate::file_syntax::FileSyntax;

/// Paths of the tables that decide what gets installed or built.
const DEPENDENCY_TABLES: [&[&str]; 8] = [
    &["project", "name"],
    &["project", "dependencies"],
    &["project", "optional-dependencies"],
    &["project", "dynamic"],
    &["dependency-groups"],
    &["build-system"],
    &["tool", "uv", "sources"],
    &["tool", "uv", "workspace"],
];

/// (name, bytes) pairs for `KeyInputs::requirement_files`. `pytest`: the test command needs
/// pytest, which Kiln keeps in the wheelhouse when the dependencies do not bring it — so a
/// project that needs nothing never gets an "exact hit" on another project's pytest wheels.
pub fn key_files(
    checkout: &Path,
    project: &Project,
    constraints: &[PathBuf],
    pytest: bool,
) -> Result<Vec<(String, Vec<u8>)>, ProjectError> {
    let mut files = Vec::new();
    match &project.source {
        DepsSource::UvLock { lock } | DepsSource::Pylock { lock } => {
            files.push(read(checkout, lock)?)
        }
        DepsSource::Requirements { files: reqs } => {
            for r in reqs {
                files.push(read(checkout, r)?);
            }
        }
        DepsSource::SetupPy => {
            for f in ["setup.py", "setup.cfg"] {
                if checkout.join(f).is_file() {
                    files.push(read(checkout, Path::new(f))?);
                }
            }
        }
        DepsSource::Pyproject | DepsSource::None => {}
    }
    if !project.source.is_lock() {
        for f in &project.test_deps.files {
            files.push(read(checkout, f)?);
        }
    }
    for c in constraints {
        files.push(read(checkout, c)?);
    }
    // The build requirements' wheels live in the wheelhouse too, whatever the source.
    if checkout.join("pyproject.toml").is_file() {
        files.push((
            "pyproject.toml#dependency-tables".into(),
            dependency_tables(&checkout.join("pyproject.toml"))?,
        ));
    }
    files.push((
        "kiln#selection".into(),
        format!(
            "source={} extras={} groups={} install={} pytest={pytest}{}{}",
            project.source.name(),
            project.extras.join(","),
            project.groups.join(","),
            project.install.as_str(),
            match (&project.source, project.default_groups) {
                (DepsSource::UvLock { .. }, false) => " default-groups=no",
                _ => "",
            },
            // Only when there are any: every other project keeps its key.
            match project.test_deps.requirements.as_slice() {
                [] => String::new(),
                reqs => format!(" test={}", reqs.join(",")),
            }
        )
        .into_bytes(),
    ));
    Ok(files)
}

fn read(checkout: &Path, rel: &Path) -> Result<(String, Vec<u8>), ProjectError> {
    let path = checkout.join(rel);
    let body = std::fs::read(&path).map_err(|source| ProjectError::Io { path, source })?;
    Ok((rel.display().to_string(), body))
}

/// The dependency tables of a `pyproject.toml`, canonical (sorted keys, JSON).
pub fn dependency_tables(path: &Path) -> Result<Vec<u8>, ProjectError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProjectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let doc: toml::Table = toml::from_str(&text).map_err(|e| FileSyntax::toml(path, &text, &e))?;
    let mut picked = serde_json::Map::new();
    for table_path in DEPENDENCY_TABLES {
        let mut node = doc.get(table_path[0]);
        for part in &table_path[1..] {
            node = node.and_then(|n| n.get(*part));
        }
        if let Some(v) = node {
            let value = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
            picked.insert(table_path.join("."), value);
        }
    }
    // serde_json's map is sorted (no preserve_order feature): the bytes are canonical.
    Ok(serde_json::to_vec(&picked).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::detect::{detect, DetectInput};
    use crate::project::ProjectConfig;

    fn key_of(pyproject: &str) -> Vec<(String, Vec<u8>)> {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("pyproject.toml"), pyproject).unwrap();
        let config = ProjectConfig::default();
        let p = detect(DetectInput {
            checkout: d.path(),
            config: &config,
            requirements: None,
        })
        .unwrap();
        key_files(d.path(), &p, &[], true).unwrap()
    }

    const BASE: &str =
        "[project]\nname = \"x\"\ndependencies = [\"attrs\"]\n\n[tool.ruff]\nline-length = 88\n";

    #[test]
    fn tool_tables_do_not_change_the_key_dependencies_do() {
        let base = key_of(BASE);
        assert_eq!(base, key_of(&BASE.replace("88", "100")));
        assert_eq!(base, key_of(&format!("# a comment\n{BASE}")));
        assert_ne!(base, key_of(&BASE.replace("attrs", "attrs>=23")));
        assert_ne!(
            base,
            key_of(&format!(
                "{BASE}[build-system]\nrequires = [\"hatchling\"]\n"
            ))
        );
        assert_ne!(
            base,
            key_of(&format!("{BASE}[dependency-groups]\ntest = [\"pytest\"]\n"))
        );
    }

    #[test]
    fn a_lock_file_is_the_key_input_with_the_selection() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("uv.lock"), "version = 1\n").unwrap();
        let config = ProjectConfig {
            groups: Some(vec!["test".into()]),
            ..Default::default()
        };
        let p = detect(DetectInput {
            checkout: d.path(),
            config: &config,
            requirements: None,
        })
        .unwrap();
        let files = key_files(d.path(), &p, &[], true).unwrap();
        assert_eq!(files[0], ("uv.lock".to_string(), b"version = 1\n".to_vec()));
        let selection = String::from_utf8(files[1].1.clone()).unwrap();
        assert!(selection.contains("groups=test"), "{selection}");
        let without = key_files(d.path(), &p, &[], false).unwrap();
        assert_ne!(files, without, "whether pytest is kept decides the key too");
    }
}

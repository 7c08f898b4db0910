//! Where a project keeps its test dependencies, found in one documented order (the first that
//! exists wins; README "Test dependencies"):
//!
//! 1. a PEP 735 dependency group `test`, `tests`, `testing` or `dev`;
//! 2. an extra of those names (`[project.optional-dependencies]`);
//! 3. a requirement file: `requirements/test*.txt`, `requirements-test*.txt`,
//!    `requirements-dev*.txt`, `test-requirements.txt` (the first pattern that matches; every
//!    file it matches, in name order);
//! 4. tox's default test environment: the `deps` of `[testenv]` in `tox.ini` (`-r` files and
//!    requirements; factor-conditional lines and substitutions other than `{toxinidir}` are
//!    skipped).
//!
//! A lock file (uv.lock, pylock.toml) lists the complete environment: only its groups and
//! extras count (steps 1–2). kiln.yml says otherwise with `project.groups`, `project.extras` or
//! `project.test_requirements` (files; `[]` for none).

use std::path::{Path, PathBuf};

use super::pyproject::{normalize, PyProject};

/// The group and extra names that hold test dependencies, in the order they are looked for.
pub const NAMES: [&str; 4] = ["test", "tests", "testing", "dev"];

/// Requirement file patterns, in order: (directory, file name prefix, suffix).
const FILE_PATTERNS: [(&str, &str, &str); 4] = [
    ("requirements", "test", ".txt"),
    ("", "requirements-test", ".txt"),
    ("", "requirements-dev", ".txt"),
    ("", "test-requirements", ".txt"),
];

/// The most of `tox.ini` read.
const TOX_LIMIT: u64 = 1 << 20;

/// The test dependencies found, and how they are installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestDeps {
    /// What was chosen, in words for the console and the summary (`dependency group tests`,
    /// `requirements/test.txt`, `tox.ini [testenv] deps`, `none found`, `kiln.yml`).
    pub chosen: String,
    pub groups: Vec<String>,
    pub extras: Vec<String>,
    /// Requirement files, relative to the checkout.
    pub files: Vec<PathBuf>,
    /// Requirements written inline (tox `deps`).
    pub requirements: Vec<String>,
}

/// Find the test dependencies of the checkout at `root` (`lock`: the source is a lock file).
pub fn find(root: &Path, py: Option<&PyProject>, lock: bool) -> TestDeps {
    let pick = |names: Vec<String>| {
        NAMES
            .iter()
            .find_map(|want| names.iter().find(|n| normalize(n) == *want).cloned())
    };
    if let Some(g) = py.and_then(|p| pick(p.groups())) {
        return TestDeps {
            chosen: format!("dependency group `{g}`"),
            groups: vec![g],
            ..TestDeps::default()
        };
    }
    if let Some(e) = py.and_then(|p| pick(p.extras())) {
        return TestDeps {
            chosen: format!("extra `{e}`"),
            extras: vec![e],
            ..TestDeps::default()
        };
    }
    if lock {
        return none();
    }
    let files = requirement_files(root);
    if !files.is_empty() {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        return TestDeps {
            chosen: names.join(", "),
            files,
            ..TestDeps::default()
        };
    }
    tox_deps(root).unwrap_or_else(none)
}

fn none() -> TestDeps {
    TestDeps {
        chosen: "none found".into(),
        ..TestDeps::default()
    }
}

/// The files of the first pattern that matches, in name order.
fn requirement_files(root: &Path) -> Vec<PathBuf> {
    for (dir, prefix, suffix) in FILE_PATTERNS {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
            .map(|n| Path::new(dir).join(n))
            .collect();
        found.sort();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

/// `deps` of `[testenv]` in `tox.ini`.
fn tox_deps(root: &Path) -> Option<TestDeps> {
    let text = crate::untrusted_fs::read_to_string(&root.join("tox.ini"), TOX_LIMIT).ok()?;
    let mut in_testenv = false;
    let mut in_deps = false;
    let mut out = TestDeps {
        chosen: "tox.ini [testenv] deps".into(),
        ..TestDeps::default()
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_testenv = trimmed == "[testenv]";
            in_deps = false;
            continue;
        }
        if !in_testenv || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let continued = line.starts_with([' ', '\t']);
        let value = if let Some((key, value)) = trimmed.split_once('=').filter(|_| !continued) {
            in_deps = key.trim() == "deps";
            value.trim()
        } else if in_deps && continued {
            trimmed
        } else {
            in_deps = false;
            continue;
        };
        if in_deps {
            tox_dep(root, value, &mut out);
        }
    }
    (!out.files.is_empty() || !out.requirements.is_empty()).then_some(out)
}

/// One `deps` line: `-r file` (with `{toxinidir}`), a requirement, or something tox decides
/// per environment (factors, other substitutions), which is skipped.
fn tox_dep(root: &Path, value: &str, out: &mut TestDeps) {
    let value = value.split(" #").next().unwrap_or("").trim();
    let value = value
        .replace("{toxinidir}/", "")
        .replace("{toxinidir}", ".");
    let factor = value.split_once(':').is_some_and(|(f, _)| {
        !f.is_empty() && f.chars().all(|c| c.is_alphanumeric() || "-_,!".contains(c))
    });
    if value.is_empty() || value.contains('{') || factor {
        return;
    }
    if let Some(file) = value.strip_prefix("-r") {
        let file = PathBuf::from(file.trim());
        if root.join(&file).is_file() {
            out.files.push(file);
        }
    } else if !value.starts_with('-') {
        out.requirements.push(value);
    }
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

    fn found(d: &tempfile::TempDir) -> TestDeps {
        let py = d
            .path()
            .join("pyproject.toml")
            .is_file()
            .then(|| PyProject::load(&d.path().join("pyproject.toml")).unwrap());
        find(d.path(), py.as_ref(), false)
    }

    #[test]
    fn the_documented_order_group_extra_files_tox() {
        let tox = "[tox]\nenvlist = py\n[testenv]\ndeps =\n    -r{toxinidir}/req-tox.txt\n    \
                   pytest-cov>=4\n    py38: mock\n    {[base]deps}\ncommands = pytest\n";
        let d = tree(&[
            (
                "pyproject.toml",
                "[project]\nname = 'p'\n[project.optional-dependencies]\ntesting = ['pytest']\n\
                 [dependency-groups]\ndev = ['ruff']\ntests = ['pytest']\n",
            ),
            ("requirements/test.txt", "pytest-cov\n"),
            ("requirements/test-extra.txt", "hypothesis\n"),
            ("requirements-dev.txt", "ruff\n"),
            ("tox.ini", tox),
            ("req-tox.txt", "coverage\n"),
        ]);
        let t = found(&d);
        assert_eq!(
            (t.groups.as_slice(), t.chosen.as_str()),
            (&["tests".to_string()][..], "dependency group `tests`")
        );
        std::fs::write(
            d.path().join("pyproject.toml"),
            "[project]\nname = 'p'\n[project.optional-dependencies]\ntesting = ['pytest']\n",
        )
        .unwrap();
        let t = found(&d);
        assert_eq!(
            (t.extras, t.chosen),
            (vec!["testing".to_string()], "extra `testing`".to_string())
        );
        std::fs::write(d.path().join("pyproject.toml"), "[project]\nname = 'p'\n").unwrap();
        let t = found(&d);
        assert_eq!(
            t.files,
            [
                PathBuf::from("requirements/test-extra.txt"),
                PathBuf::from("requirements/test.txt")
            ]
        );
        std::fs::remove_dir_all(d.path().join("requirements")).unwrap();
        assert_eq!(found(&d).files, [PathBuf::from("requirements-dev.txt")]);
        std::fs::remove_file(d.path().join("requirements-dev.txt")).unwrap();
        let t = found(&d);
        assert_eq!(t.chosen, "tox.ini [testenv] deps");
        assert_eq!(t.files, [PathBuf::from("req-tox.txt")]);
        assert_eq!(t.requirements, ["pytest-cov>=4"]);
        std::fs::remove_file(d.path().join("tox.ini")).unwrap();
        assert_eq!(found(&d).chosen, "none found");
    }

    #[test]
    fn a_lock_takes_only_its_groups_and_extras() {
        let d = tree(&[("requirements/test.txt", "pytest-cov\n")]);
        assert_eq!(find(d.path(), None, true).chosen, "none found");
        assert_eq!(
            find(d.path(), None, false).files,
            [PathBuf::from("requirements/test.txt")]
        );
    }
}

//! `pyproject.toml`: the tables that decide a project's environment — `[project]` dependencies
//! and extras, PEP 735 `[dependency-groups]`, and `[build-system]` — parsed with the `toml` crate.
//!
//! Everything else in the file (`[tool.ruff]`, `[tool.pytest]`, …) is ignored here, which is what
//! makes the wheelhouse key (see `keys`) stable when a linter setting changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::ProjectError;
use crate::file_syntax::FileSyntax;

/// The parts of `pyproject.toml` Kiln reads. Unknown tables and keys are allowed (the file belongs
/// to many tools).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PyProject {
    pub project: Option<ProjectTable>,
    #[serde(rename = "build-system")]
    pub build_system: Option<BuildSystem>,
    #[serde(default, rename = "dependency-groups")]
    pub dependency_groups: BTreeMap<String, Vec<GroupEntry>>,
}

/// `[project]` (PEP 621).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProjectTable {
    pub name: Option<String>,
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default, rename = "optional-dependencies")]
    pub optional_dependencies: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub dynamic: Vec<String>,
}

/// `[build-system]` (PEP 518/517).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BuildSystem {
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(rename = "build-backend")]
    pub build_backend: Option<String>,
    /// In-tree directories the backend is imported from.
    #[serde(default, rename = "backend-path")]
    pub backend_path: Vec<String>,
}

/// One entry of a dependency group: a requirement, or `{include-group = "name"}` (PEP 735).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum GroupEntry {
    Requirement(String),
    Include {
        #[serde(rename = "include-group")]
        include_group: String,
    },
}

/// The build requirements pip assumes for a project without `[build-system]` (PEP 517 fallback).
pub const LEGACY_BUILD_REQUIRES: &str = "setuptools>=40.8.0";

/// PEP 503 / PEP 685 normalization: lowercase, runs of `-`, `_`, `.` become one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

impl PyProject {
    /// Parse `text` (the contents of `path`); a syntax or type error names `path:line:col`.
    pub fn parse(text: &str, path: &Path) -> Result<PyProject, ProjectError> {
        toml::from_str(text).map_err(|e| FileSyntax::toml(path, text, &e).into())
    }

    pub fn load(path: &Path) -> Result<PyProject, ProjectError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProjectError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The project's own name, normalized.
    pub fn name(&self) -> Option<String> {
        self.project
            .as_ref()
            .and_then(|p| p.name.as_deref())
            .map(normalize)
    }

    /// True when `[project]` leaves its dependencies (or extras) to the build backend.
    pub fn dynamic_dependencies(&self) -> bool {
        self.project.as_ref().is_some_and(|p| {
            p.dynamic
                .iter()
                .any(|d| d == "dependencies" || d == "optional-dependencies")
        })
    }

    pub fn dependencies(&self) -> &[String] {
        self.project
            .as_ref()
            .map_or(&[][..], |p| p.dependencies.as_slice())
    }

    /// Extra names as written.
    pub fn extras(&self) -> Vec<String> {
        self.project
            .as_ref()
            .map(|p| p.optional_dependencies.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Group names as written.
    pub fn groups(&self) -> Vec<String> {
        self.dependency_groups.keys().cloned().collect()
    }

    /// `[build-system].requires`, or the legacy fallback when the table is absent.
    pub fn build_requires(&self) -> Vec<String> {
        match &self.build_system {
            Some(b) => b.requires.clone(),
            None => vec![LEGACY_BUILD_REQUIRES.to_string()],
        }
    }

    /// The requirements of the extras `names` (matched normalized). An unknown extra is an
    /// error naming the ones that exist. Self-references (`name[other]`) are expanded.
    pub fn extra_requirements(&self, names: &[String]) -> Result<Vec<String>, ProjectError> {
        let table = self
            .project
            .as_ref()
            .map(|p| &p.optional_dependencies)
            .cloned()
            .unwrap_or_default();
        let by_norm: BTreeMap<String, &Vec<String>> =
            table.iter().map(|(k, v)| (normalize(k), v)).collect();
        let own = self.name();
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        while let Some(extra) = todo.pop() {
            if !seen.insert(extra.clone()) {
                continue;
            }
            let reqs = by_norm
                .get(&extra)
                .ok_or_else(|| ProjectError::UnknownName {
                    kind: "extra",
                    name: extra.clone(),
                    known: self.extras(),
                })?;
            for r in reqs.iter() {
                match self_reference(r, own.as_deref()) {
                    Some(more) => todo.extend(more),
                    None => out.push(r.clone()),
                }
            }
        }
        Ok(out)
    }

    /// The requirements of the dependency groups `names`, with `include-group` resolved
    /// (PEP 735). Unknown groups and include cycles are errors.
    pub fn group_requirements(&self, names: &[String]) -> Result<Vec<String>, ProjectError> {
        let by_norm: BTreeMap<String, &Vec<GroupEntry>> = self
            .dependency_groups
            .iter()
            .map(|(k, v)| (normalize(k), v))
            .collect();
        let mut out = Vec::new();
        for name in names {
            let mut stack = Vec::new();
            self.expand_group(&by_norm, &normalize(name), &mut stack, &mut out)?;
        }
        Ok(out)
    }

    fn expand_group(
        &self,
        groups: &BTreeMap<String, &Vec<GroupEntry>>,
        name: &str,
        stack: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), ProjectError> {
        if stack.iter().any(|s| s == name) {
            stack.push(name.to_string());
            return Err(ProjectError::GroupCycle(stack.join(" -> ")));
        }
        let entries = groups.get(name).ok_or_else(|| ProjectError::UnknownName {
            kind: "dependency group",
            name: name.to_string(),
            known: self.groups(),
        })?;
        stack.push(name.to_string());
        for e in entries.iter() {
            match e {
                GroupEntry::Requirement(r) => out.push(r.clone()),
                GroupEntry::Include { include_group } => {
                    self.expand_group(groups, &normalize(include_group), stack, out)?
                }
            }
        }
        stack.pop();
        Ok(())
    }
}

/// `own[a,b]` (a requirement on the project itself) → the extras it names.
fn self_reference(req: &str, own: Option<&str>) -> Option<Vec<String>> {
    let own = own?;
    let (name, rest) = req.split_once('[')?;
    if normalize(name) != own {
        return None;
    }
    let extras = rest.split(']').next()?;
    Some(extras.split(',').map(normalize).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> PyProject {
        PyProject::parse(text, Path::new("pyproject.toml")).unwrap()
    }

    const FULL: &str = r#"
[build-system]
requires = ["setuptools>=69", "cython>=3"]
build-backend = "setuptools.build_meta"

[project]
name = "Demo_Pkg"
dependencies = ["attrs>=23"]

[project.optional-dependencies]
test = ["pytest>=8", "demo-pkg[speed]"]
speed = ["orjson"]

[dependency-groups]
lint = ["ruff"]
test = ["pytest-xdist", {include-group = "lint"}]
Dev = [{include-group = "test"}, "ipython"]

[tool.ruff]
line-length = 100
"#;

    #[test]
    fn reads_dependencies_extras_groups_and_build_system() {
        let p = parse(FULL);
        assert_eq!(p.name().as_deref(), Some("demo-pkg"));
        assert_eq!(p.dependencies(), ["attrs>=23"]);
        assert_eq!(p.build_requires(), ["setuptools>=69", "cython>=3"]);
        assert_eq!(p.extras(), ["speed", "test"]);
        assert!(!p.dynamic_dependencies());
    }

    #[test]
    fn extras_expand_self_references() {
        let p = parse(FULL);
        let mut r = p.extra_requirements(&["test".into()]).unwrap();
        r.sort();
        assert_eq!(r, ["orjson", "pytest>=8"]);
    }

    #[test]
    fn groups_resolve_include_group_with_normalized_names() {
        let p = parse(FULL);
        assert_eq!(
            p.group_requirements(&["dev".into()]).unwrap(),
            ["pytest-xdist", "ruff", "ipython"]
        );
    }

    #[test]
    fn unknown_extra_or_group_names_the_ones_that_exist() {
        let p = parse(FULL);
        let e = p.extra_requirements(&["tests".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "extra `tests` is not defined by pyproject.toml (it defines: speed, test)"
        );
        let e = p.group_requirements(&["docs".into()]).unwrap_err();
        assert!(e.to_string().contains("Dev, lint, test"), "{e}");
    }

    #[test]
    fn include_group_cycles_are_errors() {
        let p = parse(
            "[dependency-groups]\na = [{include-group = \"b\"}]\nb = [{include-group = \"a\"}]\n",
        );
        let e = p.group_requirements(&["a".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dependency groups include each other: a -> b -> a"
        );
    }

    #[test]
    fn no_build_system_means_the_setuptools_fallback() {
        let p = parse("[project]\nname = \"x\"\ndynamic = [\"dependencies\"]\n");
        assert_eq!(p.build_requires(), [LEGACY_BUILD_REQUIRES]);
        assert!(p.dynamic_dependencies());
    }

    #[test]
    fn syntax_and_type_errors_name_line_and_column() {
        let e = PyProject::parse(
            "[project]\nname = \"x\"\ndependencies = \"attrs\"\n",
            Path::new("/c/pyproject.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/c/pyproject.toml:3:16: "), "{e}");
        let e = PyProject::parse("[project\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.toml:1:"), "{e}");
    }

    #[test]
    fn normalizes_like_pep_503() {
        assert_eq!(normalize("Foo.Bar__baz"), "foo-bar-baz");
        assert_eq!(normalize("dev"), "dev");
    }
}

//! Lock files → the locked requirement set for this platform and Python.
//!
//! `uv.lock` is exported by uv itself (`uv export --locked --format requirements.txt`), which
//! knows its format and refuses a lock out of date with `pyproject.toml`. `pylock.toml` (PEP 751)
//! is read here: each package becomes `name==version ; marker` with every hash the lock lists.
//! Markers are left to pip/uv to evaluate for the interpreter that installs, except the two PEP
//! 751 variables older installers do not know (`extras`, `dependency_groups`), which are decided
//! here from the selection. Local directories (editable path dependencies, workspace members) are
//! kept apart: they are built through ccache like the project, never cached as releases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::pyproject::normalize;
use super::ProjectError;
use crate::file_syntax::FileSyntax;
use crate::process::{Cmd, PARSED_OUTPUT_LIMIT};

/// One locked requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedReq {
    /// Normalized name.
    pub name: String,
    /// Pinned version, when the line pins one (`name==version`).
    pub version: Option<String>,
    /// The requirement without hashes, marker included (`attrs==25.1.0 ; python_version >= "3.9"`).
    pub spec: String,
    /// `sha256:…` values.
    pub hashes: Vec<String>,
}

/// The locked set: requirements to download or build, and local directories to build in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockedSet {
    pub requirements: Vec<LockedReq>,
    /// (path relative to the checkout, editable).
    pub local: Vec<(PathBuf, bool)>,
    /// Directories of the lock's local wheels and sdists (`path` entries of `pylock.toml`):
    /// pip finds them there, checking their hashes like a download's.
    pub find_links: Vec<PathBuf>,
}

impl LockedSet {
    /// A requirement file with hashes (pip checks what it downloads and the lock's local
    /// files), for the given requirements.
    pub fn hashed_file(&self, reqs: &[&LockedReq]) -> String {
        let mut out = String::new();
        for dir in &self.find_links {
            out.push_str(&format!("--find-links {}\n", dir.display()));
        }
        for r in reqs {
            out.push_str(&r.spec);
            for h in &r.hashes {
                out.push_str(&format!(" --hash={h}"));
            }
            out.push('\n');
        }
        out
    }

    /// A requirement file without hashes: what to install from the wheelhouse, whose wheels
    /// Kiln built itself from the hashed sdists.
    pub fn install_file(&self) -> String {
        self.requirements
            .iter()
            .map(|r| format!("{}\n", r.spec))
            .collect()
    }
}

/// `uv export` of `uv.lock` with the extras and groups asked for (and uv's default groups
/// only when `default_groups`). `--locked` first: uv refuses a
/// lock out of date with `pyproject.toml` (exit 2, "run `uv lock`"). When uv cannot decide that
/// without the network (offline, index unreachable), the lock is exported as it is (`--frozen`)
/// and the returned warning says the check was skipped.
///
/// Checking the lock may run the project's build backend (its `setup.py`, for dynamic
/// metadata): untrusted code, so `sandboxed` wraps each command like every other step that
/// runs the project's code (the sandbox and the allow-listed environment).
pub async fn export_uv_lock(
    uv: &Path,
    checkout: &Path,
    extras: &[String],
    groups: &[String],
    default_groups: bool,
    sandboxed: &(dyn Fn(Cmd) -> Cmd + Sync),
) -> Result<(LockedSet, Option<String>), ProjectError> {
    let export = |mode: &'static str| {
        let mut cmd = Cmd::new(uv)
            .args(["export", mode, "--format", "requirements.txt"])
            .args([
                "--no-emit-project",
                "--no-header",
                "--no-annotate",
                "--quiet",
            ]);
        for e in extras {
            cmd = cmd.args(["--extra", e.as_str()]);
        }
        if !default_groups {
            // Only the groups asked for, not uv's default ones (`dev`, `tool.uv.default-groups`:
            // linters, type checkers, pre-commit) the tests do not need.
            cmd = cmd.arg("--no-default-groups");
        }
        for g in groups {
            cmd = cmd.args(["--group", g.as_str()]);
        }
        // The whole export, or an error: a tail of it would drop the first packages.
        sandboxed(cmd.cwd(checkout).read_whole(PARSED_OUTPUT_LIMIT))
    };
    let run = |cmd: Cmd| async move {
        cmd.run()
            .await
            .map_err(|e| lock_error("uv.lock", e.to_string()))
    };
    let out = run(export("--locked")).await?;
    if out.success {
        return Ok((parse_requirements_text(&out.stdout), None));
    }
    let text = out.tail(12);
    if text.contains("needs to be updated") {
        return Err(ProjectError::StaleLock {
            detail: out.tail(3).replace('\n', " "),
        });
    }
    let frozen = run(export("--frozen")).await?;
    if !frozen.success {
        return Err(lock_error(
            "uv.lock",
            format!("uv export failed: {}", frozen.tail(12)),
        ));
    }
    let warning = format!(
        "could not check that uv.lock is up to date with pyproject.toml (uv: {}); \
         installing the lock as it is",
        text.lines().next().unwrap_or("").trim()
    );
    Ok((parse_requirements_text(&frozen.stdout), Some(warning)))
}

fn lock_error(file: &str, message: String) -> ProjectError {
    ProjectError::Lock {
        file: file.into(),
        message,
    }
}

/// Parse a requirements.txt as `uv export` writes it (continuation lines, `--hash=` options,
/// `-e ./path` and `./path` for local directories).
pub fn parse_requirements_text(text: &str) -> LockedSet {
    let mut set = LockedSet::default();
    let joined = text.replace("\\\n", " ");
    for line in joined.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(path) = line.strip_prefix("-e ") {
            set.local.push((local_path(path.trim()), true));
            continue;
        }
        if line.starts_with('-') {
            continue; // pip options (--index-url …): the lock's sources are the hashes
        }
        if is_local(line) {
            set.local.push((local_path(line), false));
            continue;
        }
        let mut spec = Vec::new();
        let mut hashes = Vec::new();
        for token in line.split_whitespace() {
            match token.strip_prefix("--hash=") {
                Some(h) => hashes.push(h.to_string()),
                None => spec.push(token),
            }
        }
        let spec = spec.join(" ");
        set.requirements.push(LockedReq {
            name: normalize(name_of(&spec)),
            version: pinned_version(&spec),
            spec,
            hashes,
        });
    }
    set
}

fn is_local(line: &str) -> bool {
    line.starts_with("./")
        || line.starts_with("../")
        || line.starts_with('/')
        || line.starts_with("file:")
        || line == "."
}

fn local_path(s: &str) -> PathBuf {
    PathBuf::from(s.trim_start_matches("file://"))
}

fn name_of(spec: &str) -> &str {
    let end = spec
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(spec.len());
    &spec[..end]
}

fn pinned_version(spec: &str) -> Option<String> {
    let rest = spec.split(';').next()?.split("==").nth(1)?;
    Some(rest.trim().to_string())
}

/// `pylock.toml` (PEP 751): the parts Kiln reads.
#[derive(Debug, Deserialize)]
struct Pylock {
    #[serde(default, rename = "default-groups")]
    default_groups: Vec<String>,
    #[serde(default)]
    packages: Vec<PylockPackage>,
}

#[derive(Debug, Deserialize)]
struct PylockPackage {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    directory: Option<PylockDirectory>,
    vcs: Option<PylockVcs>,
    archive: Option<PylockFile>,
    sdist: Option<PylockFile>,
    #[serde(default)]
    wheels: Vec<PylockFile>,
}

#[derive(Debug, Deserialize)]
struct PylockDirectory {
    path: PathBuf,
    #[serde(default)]
    editable: bool,
}

#[derive(Debug, Deserialize)]
struct PylockVcs {
    url: Option<String>,
    #[serde(rename = "commit-id")]
    commit_id: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct PylockFile {
    url: Option<String>,
    /// A local file, relative to the lock file's directory (or absolute).
    path: Option<PathBuf>,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

/// Read a `pylock.toml`: the packages whose `extras`/`dependency_groups` markers the selection
/// satisfies (the lock's `default-groups` when no group is asked for).
pub fn read_pylock(
    path: &Path,
    extras: &[String],
    groups: &[String],
) -> Result<LockedSet, ProjectError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ProjectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let lock: Pylock = toml::from_str(&text).map_err(|e| FileSyntax::toml(path, &text, &e))?;
    let groups = if groups.is_empty() {
        lock.default_groups.clone()
    } else {
        groups.to_vec()
    };
    let mut set = LockedSet::default();
    for p in lock.packages {
        let marker = match p.marker.as_deref() {
            Some(m) => match decide_selection_markers(m, extras, &groups) {
                Selection::Excluded => continue,
                Selection::Marker(m) => m,
            },
            None => String::new(),
        };
        if let Some(dir) = p.directory {
            if dir.path != Path::new(".") {
                set.local.push((dir.path, dir.editable));
            }
            continue;
        }
        let lock_dir = path.parent().unwrap_or(Path::new("."));
        let (spec, hashes) = pylock_spec(&p, &file, lock_dir, &mut set.find_links)?;
        let spec = if marker.is_empty() {
            spec
        } else {
            format!("{spec} ; {marker}")
        };
        set.requirements.push(LockedReq {
            name: normalize(&p.name),
            version: p.version.clone(),
            spec,
            hashes,
        });
    }
    Ok(set)
}

/// `name==version` (or `name @ url`) and its hashes. Local files (`path`): an archive becomes
/// a `file://` URL; wheels and sdists add their directory to `find_links`, so pip picks the
/// one that fits this interpreter and checks its hash. A path that does not exist is an error
/// naming the package.
fn pylock_spec(
    p: &PylockPackage,
    file: &str,
    lock_dir: &Path,
    find_links: &mut Vec<PathBuf>,
) -> Result<(String, Vec<String>), ProjectError> {
    let local = |rel: &Path| local_file(lock_dir, rel, &p.name, file);
    let hashes_of = |f: &PylockFile| {
        f.hashes
            .iter()
            .map(|(algo, h)| format!("{algo}:{h}"))
            .collect::<Vec<_>>()
    };
    if let Some(vcs) = &p.vcs {
        let url = vcs.url.as_deref().unwrap_or_default();
        return Ok((
            format!("{} @ {}+{url}@{}", p.name, vcs.kind, vcs.commit_id),
            Vec::new(),
        ));
    }
    if let Some(archive) = &p.archive {
        let url = match &archive.path {
            Some(rel) => format!("file://{}", local(rel)?.display()),
            None => archive.url.clone().unwrap_or_default(),
        };
        return Ok((format!("{} @ {url}", p.name), hashes_of(archive)));
    }
    for f in p.wheels.iter().chain(p.sdist.iter()) {
        if let Some(rel) = &f.path {
            let dir = local(rel)?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            if !find_links.contains(&dir) {
                find_links.push(dir);
            }
        }
    }
    let version = p.version.as_deref().ok_or_else(|| {
        lock_error(
            file,
            format!(
                "package {} has no version, directory, vcs or archive",
                p.name
            ),
        )
    })?;
    let mut hashes: Vec<String> = p.wheels.iter().flat_map(hashes_of).collect();
    hashes.extend(p.sdist.iter().flat_map(hashes_of));
    Ok((format!("{}=={version}", p.name), hashes))
}

/// A `path` of the lock (relative to its directory), which must exist.
fn local_file(
    lock_dir: &Path,
    rel: &Path,
    package: &str,
    file: &str,
) -> Result<PathBuf, ProjectError> {
    let abs = lock_dir.join(rel);
    if abs.is_file() {
        return Ok(abs);
    }
    Err(lock_error(
        file,
        format!(
            "package {package}: its file {} does not exist (paths are relative to the lock file)",
            abs.display()
        ),
    ))
}

enum Selection {
    Excluded,
    /// The marker with the selection variables decided (empty: always).
    Marker(String),
}

/// Decide `'x' in extras` / `'x' not in dependency_groups` atoms from the selection, turning each
/// into a marker every installer evaluates the same way (`python_version >= "0"` is always true,
/// `python_version < "0"` never). A marker that is only selection atoms joined by `and`/`or` is
/// decided here entirely.
fn decide_selection_markers(marker: &str, extras: &[String], groups: &[String]) -> Selection {
    const TRUE: &str = "python_version >= \"0\"";
    const FALSE: &str = "python_version < \"0\"";
    let tokens = tokenize(marker);
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let quoted = t.starts_with('\'') || t.starts_with('"');
        let (negated, var_at) = match (tokens.get(i + 1), tokens.get(i + 2)) {
            (Some(a), Some(b)) if a == "not" && b == "in" => (true, i + 3),
            (Some(a), _) if a == "in" => (false, i + 2),
            _ => (false, 0),
        };
        let var = tokens.get(var_at).map(String::as_str);
        if quoted && var_at > 0 && matches!(var, Some("extras" | "dependency_groups")) {
            let want = normalize(t.trim_matches(|c| c == '\'' || c == '"'));
            let pool = if var == Some("extras") {
                extras
            } else {
                groups
            };
            let present = pool.iter().any(|x| normalize(x) == want);
            out.push(if present != negated { TRUE } else { FALSE }.to_string());
            i = var_at + 1;
            continue;
        }
        out.push(t.clone());
        i += 1;
    }
    let joined = out.join(" ").replace("( ", "(").replace(" )", ")");
    if joined.contains('(') {
        return Selection::Marker(joined); // nested: the installer evaluates the whole marker
    }
    // `and` binds tighter than `or`: a conjunction holding FALSE is false, one that is only
    // TRUE is true.
    let parts: Vec<Vec<&str>> = joined
        .split(" or ")
        .map(|p| p.split(" and ").map(str::trim).collect())
        .collect();
    if parts.iter().all(|p| p.contains(&FALSE)) {
        return Selection::Excluded;
    }
    if parts.iter().any(|p| p.iter().all(|a| *a == TRUE)) {
        return Selection::Marker(String::new());
    }
    Selection::Marker(joined)
}

/// Split a marker into quoted strings, parentheses and words/operators.
fn tokenize(marker: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = marker.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' || c == '"' {
            let mut s = String::from(c);
            chars.next();
            for d in chars.by_ref() {
                s.push(d);
                if d == c {
                    break;
                }
            }
            tokens.push(s);
        } else if c == '(' || c == ')' {
            tokens.push(c.to_string());
            chars.next();
        } else {
            let mut s = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_whitespace() || d == '(' || d == ')' || d == '\'' || d == '"' {
                    break;
                }
                s.push(d);
                chars.next();
            }
            tokens.push(s);
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uv_export_output() {
        let text = "attrs==25.3.0 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n\
                    colorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:cc\n\
                    -e ./lib/helper\n./vendor/pkg\n";
        let set = parse_requirements_text(text);
        assert_eq!(set.requirements.len(), 2);
        assert_eq!(set.requirements[0].name, "attrs");
        assert_eq!(set.requirements[0].version.as_deref(), Some("25.3.0"));
        assert_eq!(set.requirements[0].hashes, ["sha256:aa", "sha256:bb"]);
        assert_eq!(
            set.requirements[1].spec,
            "colorama==0.4.6 ; sys_platform == 'win32'"
        );
        assert_eq!(
            set.local,
            [
                (PathBuf::from("./lib/helper"), true),
                (PathBuf::from("./vendor/pkg"), false)
            ]
        );
        assert_eq!(
            set.hashed_file(&[&set.requirements[0]]),
            "attrs==25.3.0 --hash=sha256:aa --hash=sha256:bb\n"
        );
        assert!(!set.install_file().contains("--hash"));
    }

    const PYLOCK: &str = r#"
lock-version = "1.0"
created-by = "test"
default-groups = ["test"]

[[packages]]
name = "attrs"
version = "25.3.0"
wheels = [{ url = "https://files/attrs-25.3.0-py3-none-any.whl", hashes = { sha256 = "aa" } }]
sdist = { url = "https://files/attrs-25.3.0.tar.gz", hashes = { sha256 = "bb" } }

[[packages]]
name = "pytest"
version = "9.2.0"
marker = "'test' in dependency_groups"
wheels = [{ url = "https://files/pytest.whl", hashes = { sha256 = "cc" } }]

[[packages]]
name = "sphinx"
version = "8.0"
marker = "'docs' in extras and python_version >= '3.10'"
wheels = [{ url = "https://files/sphinx.whl", hashes = { sha256 = "dd" } }]

[[packages]]
name = "colorama"
version = "0.4.6"
marker = "sys_platform == 'win32'"
wheels = [{ url = "https://files/colorama.whl", hashes = { sha256 = "ee" } }]

[[packages]]
name = "helper"
directory = { path = "lib/helper", editable = true }

[[packages]]
name = "me"
directory = { path = ".", editable = true }
"#;

    fn pylock(extras: &[&str], groups: &[&str]) -> LockedSet {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pylock.toml");
        std::fs::write(&p, PYLOCK).unwrap();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        read_pylock(&p, &s(extras), &s(groups)).unwrap()
    }

    #[test]
    fn pylock_packages_become_hashed_requirements_with_markers() {
        let set = pylock(&[], &[]);
        let specs: Vec<&str> = set.requirements.iter().map(|r| r.spec.as_str()).collect();
        assert_eq!(
            specs,
            [
                "attrs==25.3.0",
                "pytest==9.2.0",
                "colorama==0.4.6 ; sys_platform == 'win32'"
            ]
        );
        assert_eq!(set.requirements[0].hashes, ["sha256:aa", "sha256:bb"]);
        assert_eq!(set.local, [(PathBuf::from("lib/helper"), true)]);
    }

    #[test]
    fn pylock_selection_markers_follow_the_extras_and_groups_asked_for() {
        let set = pylock(&["docs"], &["lint"]);
        let specs: Vec<&str> = set.requirements.iter().map(|r| r.spec.as_str()).collect();
        assert!(!specs.iter().any(|s| s.starts_with("pytest")), "{specs:?}");
        assert!(
            specs.contains(&"sphinx==8.0 ; python_version >= \"0\" and python_version >= '3.10'"),
            "{specs:?}"
        );
    }

    #[test]
    fn pylock_local_files_are_found_where_the_lock_says() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("ci/wheels")).unwrap();
        std::fs::write(d.path().join("ci/wheels/a-1.0-py3-none-any.whl"), "").unwrap();
        std::fs::write(d.path().join("ci/wheels/b-2.0.tar.gz"), "").unwrap();
        std::fs::write(d.path().join("ci/c-3.0.zip"), "").unwrap();
        let lock = "lock-version = \"1.0\"\n\
            [[packages]]\nname = \"a\"\nversion = \"1.0\"\n\
            wheels = [{ path = \"wheels/a-1.0-py3-none-any.whl\", hashes = { sha256 = \"aa\" } }]\n\
            [[packages]]\nname = \"b\"\nversion = \"2.0\"\n\
            sdist = { path = \"wheels/b-2.0.tar.gz\", hashes = { sha256 = \"bb\" } }\n\
            [[packages]]\nname = \"c\"\narchive = { path = \"c-3.0.zip\", hashes = { sha256 = \"cc\" } }\n";
        let p = d.path().join("ci/pylock.toml");
        std::fs::write(&p, lock).unwrap();
        let set = read_pylock(&p, &[], &[]).unwrap();
        assert_eq!(set.find_links, [d.path().join("ci/wheels")]);
        let specs: Vec<&str> = set.requirements.iter().map(|r| r.spec.as_str()).collect();
        let archive = format!("c @ file://{}", d.path().join("ci/c-3.0.zip").display());
        assert_eq!(specs, ["a==1.0", "b==2.0", archive.as_str()]);
        let all: Vec<&LockedReq> = set.requirements.iter().collect();
        let file = set.hashed_file(&all);
        assert!(
            file.starts_with(&format!(
                "--find-links {}\n",
                d.path().join("ci/wheels").display()
            )),
            "{file}"
        );
        assert!(file.contains("b==2.0 --hash=sha256:bb\n"), "{file}");

        std::fs::write(&p, lock.replace("c-3.0.zip", "gone.zip")).unwrap();
        let e = read_pylock(&p, &[], &[]).unwrap_err().to_string();
        assert!(e.contains("package c") && e.contains("gone.zip"), "{e}");
    }

    #[test]
    fn pylock_syntax_errors_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pylock.toml");
        std::fs::write(
            &p,
            "lock-version = \"1.0\"\n[[packages]]\nversion = \"1\"\n",
        )
        .unwrap();
        let e = read_pylock(&p, &[], &[]).unwrap_err().to_string();
        assert!(
            e.contains("pylock.toml:2:") || e.contains("pylock.toml:3:"),
            "{e}"
        );
        assert!(e.contains("name"), "{e}");
    }
}

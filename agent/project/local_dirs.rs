//! The local directories a project's configuration names outside its checkout: package sources
//! (`--find-links`, a `file://` or path index) and path dependencies, from its requirement files
//! (nested `-r`/`-c` files too), `pyproject.toml` (`[tool.uv]` `find-links` and indexes,
//! `[tool.uv.sources]` paths) and `uv.lock` (path, directory, editable and local registry
//! sources). The run shows them read-only inside the sandbox (see
//! `sandbox::ProjectRunner::show_named`): a vendor dir under `$HOME` or `/tmp` is as much the
//! project's input as its checkout. Only reads files; a file that cannot be read names nothing
//! (the install says what is wrong with it).

use std::path::{Path, PathBuf};

use super::detect::{DepsSource, Project};

/// The most of one configuration file read here.
const FILE_LIMIT: u64 = 16 << 20;
/// Nested requirement files followed, at most.
const MAX_FILES: usize = 64;

/// A directory outside the checkout, and what names it (`requirements.txt:3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedDir {
    pub path: PathBuf,
    pub named_by: String,
}

/// Every existing directory (a named file's directory) outside `checkout` that the project's
/// configuration names, in the order found, each once.
pub fn named_dirs(checkout: &Path, project: &Project) -> Vec<NamedDir> {
    let mut found = Vec::new();
    // The test dependencies' files, then the source's (popped from the end: the source first).
    let mut queue: Vec<PathBuf> = project
        .test_deps
        .files
        .iter()
        .map(|f| checkout.join(f))
        .collect();
    if let DepsSource::Requirements { files } = &project.source {
        queue.extend(files.iter().rev().map(|f| checkout.join(f)));
    }
    let mut seen = Vec::new();
    while let Some(file) = queue.pop() {
        if seen.contains(&file) || seen.len() >= MAX_FILES {
            continue;
        }
        seen.push(file.clone());
        requirement_file(checkout, &file, &mut found, &mut queue);
    }
    pyproject_tool_uv(checkout, &mut found);
    if let DepsSource::UvLock { lock } = &project.source {
        uv_lock(checkout, &checkout.join(lock), &mut found);
    }
    outside(checkout, found)
}

/// Existing directories outside the checkout, each once (by their real path).
fn outside(checkout: &Path, found: Vec<NamedDir>) -> Vec<NamedDir> {
    let root = std::fs::canonicalize(checkout).unwrap_or_else(|_| checkout.to_path_buf());
    let mut out: Vec<NamedDir> = Vec::new();
    for d in found {
        let Ok(mut real) = std::fs::canonicalize(&d.path) else {
            continue;
        };
        if real.is_file() {
            // A wheel or an sdist: its directory is what is read.
            real.pop();
        }
        if real.is_dir() && !real.starts_with(&root) && !out.iter().any(|o| o.path == real) {
            out.push(NamedDir {
                path: real,
                named_by: d.named_by,
            });
        }
    }
    out
}

fn read(path: &Path) -> Option<String> {
    crate::untrusted_fs::read_to_string(path, FILE_LIMIT).ok()
}

fn shown(checkout: &Path, file: &Path) -> String {
    file.strip_prefix(checkout)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// A location in a requirement file or a tool table: a `file://` URL or a path (relative to
/// `dir`); `None` for other URLs.
fn location(value: &str, dir: &Path) -> Option<PathBuf> {
    let value = value.trim().trim_matches(['"', '\'']);
    if let Some(path) = value.strip_prefix("file://") {
        return Some(PathBuf::from(path));
    }
    if value.contains("://") || value.is_empty() {
        return None;
    }
    Some(dir.join(value))
}

/// One requirement file: its package-source options, its path requirements, and the files it
/// includes (queued).
fn requirement_file(
    checkout: &Path,
    file: &Path,
    found: &mut Vec<NamedDir>,
    queue: &mut Vec<PathBuf>,
) {
    let Some(text) = read(file) else { return };
    let dir = file.parent().unwrap_or(checkout);
    let name = shown(checkout, file);
    let text = text.replace("\\\n", " ");
    for (n, line) in text.lines().enumerate() {
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.starts_with('#') {
            continue;
        }
        let named_by = format!("{name}:{}", n + 1);
        let mut push = |p: PathBuf| {
            found.push(NamedDir {
                path: p,
                named_by: named_by.clone(),
            })
        };
        let mut push_some = |p: Option<PathBuf>| p.into_iter().for_each(&mut push);
        let mut tokens = line.split_whitespace();
        while let Some(t) = tokens.next() {
            let (option, inline) = match t.split_once('=') {
                Some((o, v)) if o.starts_with('-') => (o, Some(v)),
                _ => (t, None),
            };
            let takes_value = matches!(
                option,
                "-f" | "--find-links"
                    | "-i"
                    | "--index-url"
                    | "--extra-index-url"
                    | "-r"
                    | "--requirement"
                    | "-c"
                    | "--constraint"
                    | "-e"
                    | "--editable"
            );
            if !takes_value {
                if !t.starts_with('-') {
                    push_some(requirement_path(t, line, dir));
                }
                break;
            }
            let Some(value) = inline.or_else(|| tokens.next()) else {
                break;
            };
            match option {
                "-r" | "--requirement" | "-c" | "--constraint" => queue.push(dir.join(value)),
                "-e" | "--editable" => push_some(requirement_path(value, value, dir)),
                _ => push_some(location(value, dir)),
            }
        }
    }
}

/// The directory a requirement line installs from: `./x`, `../x`, `/x`, `file:///x`, or
/// `name @ file:///x`.
fn requirement_path(first: &str, line: &str, dir: &Path) -> Option<PathBuf> {
    if let Some((_, url)) = line.split_once(" @ ") {
        let url = url.split([';', ' ']).next().unwrap_or("");
        return url.strip_prefix("file://").map(PathBuf::from);
    }
    let target = first.split(['[', ';']).next().unwrap_or("");
    let local = target.starts_with("./")
        || target.starts_with("../")
        || target.starts_with('/')
        || target.starts_with("file:");
    local.then(|| location(target, dir)).flatten()
}

/// `[tool.uv]` `find-links` and `index` URLs, `[tool.uv.sources]` paths.
fn pyproject_tool_uv(checkout: &Path, found: &mut Vec<NamedDir>) {
    let Some(text) = read(&checkout.join("pyproject.toml")) else {
        return;
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return;
    };
    let Some(uv) = doc
        .get("tool")
        .and_then(|t| t.get("uv"))
        .and_then(|t| t.as_table())
    else {
        return;
    };
    let mut push = |value: &str, key: &str| {
        if let Some(p) = location(value, checkout) {
            found.push(NamedDir {
                path: p,
                named_by: format!("pyproject.toml [tool.uv] {key}"),
            });
        }
    };
    let strings = |v: Option<&toml::Value>| -> Vec<String> {
        v.and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    for v in strings(uv.get("find-links")) {
        push(&v, "find-links");
    }
    for key in ["index-url", "extra-index-url"] {
        let values = match uv.get(key) {
            Some(toml::Value::String(s)) => vec![s.clone()],
            other => strings(other),
        };
        for v in values {
            push(&v, key);
        }
    }
    let tables = |v: Option<&toml::Value>| -> Vec<toml::Table> {
        v.and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_table().cloned())
            .collect()
    };
    for index in tables(uv.get("index")) {
        if let Some(url) = index.get("url").and_then(|u| u.as_str()) {
            push(url, "index");
        }
    }
    let sources = uv.get("sources").and_then(|s| s.as_table());
    for (name, source) in sources.into_iter().flatten() {
        let entries = match source {
            toml::Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        for e in entries {
            if let Some(path) = e.get("path").and_then(|p| p.as_str()) {
                push(path, &format!("sources.{name}"));
            }
        }
    }
}

/// `uv.lock`'s local sources: `source = { path | directory | editable | registry = "…" }`
/// (relative to the lock's directory).
fn uv_lock(checkout: &Path, lock: &Path, found: &mut Vec<NamedDir>) {
    let Some(text) = read(lock) else { return };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return;
    };
    let dir = lock.parent().unwrap_or(checkout);
    let packages = doc.get("package").and_then(|p| p.as_array());
    for package in packages.into_iter().flatten() {
        let Some(source) = package.get("source").and_then(|s| s.as_table()) else {
            continue;
        };
        for key in ["path", "directory", "editable", "registry"] {
            let Some(value) = source.get(key).and_then(|v| v.as_str()) else {
                continue;
            };
            if let Some(p) = location(value, dir) {
                found.push(NamedDir {
                    path: p,
                    named_by: format!("{} ({key} source)", shown(checkout, lock)),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::detect::{detect, DetectInput};
    use crate::project::ProjectConfig;

    fn dirs(checkout: &Path) -> Vec<(PathBuf, String)> {
        let config = ProjectConfig::default();
        let project = detect(DetectInput {
            checkout,
            config: &config,
            requirements: None,
        })
        .unwrap();
        named_dirs(checkout, &project)
            .into_iter()
            .map(|d| (d.path, d.named_by))
            .collect()
    }

    #[test]
    fn requirement_files_name_find_links_indexes_and_path_requirements_outside() {
        let outside = tempfile::tempdir().unwrap();
        let out = std::fs::canonicalize(outside.path()).unwrap();
        for d in ["wheels", "index", "lib", "more", "other"] {
            std::fs::create_dir_all(out.join(d)).unwrap();
        }
        let co = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(co.path().join("vendor")).unwrap();
        let o = out.display();
        std::fs::write(
            co.path().join("requirements.txt"),
            format!(
                "# --find-links {o}/other\n--find-links vendor\n-f {o}/wheels\n\
                 --extra-index-url=file://{o}/index\n--index-url https://example.invalid\n\
                 -e {o}/lib\n-r nested.txt\nsix==1.0\n"
            ),
        )
        .unwrap();
        std::fs::write(
            co.path().join("nested.txt"),
            format!("mylib @ file://{o}/more ; python_version > '3'\n{o}/wheels\n"),
        )
        .unwrap();
        let found = dirs(co.path());
        assert_eq!(
            found,
            [
                (out.join("wheels"), "requirements.txt:3".to_string()),
                (out.join("index"), "requirements.txt:4".into()),
                (out.join("lib"), "requirements.txt:6".into()),
                (out.join("more"), "nested.txt:1".into()),
            ]
        );
    }

    #[test]
    fn pyproject_and_uv_lock_name_local_sources() {
        let outside = tempfile::tempdir().unwrap();
        let out = std::fs::canonicalize(outside.path()).unwrap();
        for d in ["links", "dep", "reg"] {
            std::fs::create_dir_all(out.join(d)).unwrap();
        }
        std::fs::write(out.join("dep/x-1.0.tar.gz"), "").unwrap();
        let co = tempfile::tempdir().unwrap();
        let o = out.display();
        std::fs::write(
            co.path().join("pyproject.toml"),
            format!(
                "[project]\nname = 'p'\nversion = '1'\n[tool.uv]\nfind-links = ['{o}/links']\n\
                 [tool.uv.sources]\ndep = {{ path = '{o}/dep/x-1.0.tar.gz' }}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            co.path().join("uv.lock"),
            format!(
                "version = 1\n[[package]]\nname = 'dep'\nversion = '1.0'\n\
                 source = {{ path = '{o}/dep/x-1.0.tar.gz' }}\n[[package]]\nname = 'r'\n\
                 version = '1'\nsource = {{ registry = '{o}/reg' }}\n[[package]]\nname = 'p'\n\
                 version = '1'\nsource = {{ editable = '.' }}\n"
            ),
        )
        .unwrap();
        let found: Vec<PathBuf> = dirs(co.path()).into_iter().map(|d| d.0).collect();
        assert_eq!(found, [out.join("links"), out.join("dep"), out.join("reg")]);
    }
}

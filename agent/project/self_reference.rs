//! The project named in its own requirement files: `-e .`, `.`, `./`, `-e .[test]`, its path,
//! or its name with a path or `file://` URL to the checkout (`pkg @ file:///…/checkout`), in the
//! file Kiln installs or in one it includes. Countless projects do this (`requirements-dev.txt`
//! = `-e .` + tools). Kiln installs the project itself, once, in its chosen mode (editable, wheel
//! or none) with the compiled-module check; left in the file, the project would be installed a
//! second time, and uv refuses the two as "conflicting URLs". So such a file is passed as a copy
//! without those lines (relative paths made absolute: the copy lives elsewhere), and the extras
//! the lines asked for (`-e .[test]`) are added to the project's own install.

use std::path::{Path, PathBuf};

use super::ProjectError;

/// The most of one requirement file read here.
const FILE_LIMIT: u64 = 16 << 20;
/// Requirement files include each other at most this deep.
const MAX_DEPTH: usize = 8;

/// Requirement files with the project's own lines taken out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WithoutProject {
    /// The files to pass, in order: the original, or a copy without the project's lines.
    pub files: Vec<PathBuf>,
    /// Extras the removed lines asked for.
    pub extras: Vec<String>,
    /// Where the project was named (`requirements.txt:1`), for the console.
    pub named_at: Vec<String>,
}

struct Rewrite<'a> {
    checkout: &'a Path,
    root: PathBuf,
    tmp: &'a Path,
    copies: usize,
    out: WithoutProject,
}

/// `files` (relative to `checkout`), each as it is when neither it nor a file it includes names
/// the project, else as a copy under `tmp` without those lines.
pub fn without_project(
    files: &[PathBuf],
    checkout: &Path,
    tmp: &Path,
) -> Result<WithoutProject, ProjectError> {
    let mut r = Rewrite {
        checkout,
        root: std::fs::canonicalize(checkout).unwrap_or_else(|_| checkout.to_path_buf()),
        tmp,
        copies: 0,
        out: WithoutProject::default(),
    };
    for f in files {
        let file = checkout.join(f);
        let passed = r.file(&file, 0)?;
        r.out.files.push(passed);
    }
    Ok(r.out)
}

/// Whether `dir` (relative to the checkout, as a requirement file names it) is the checkout.
pub fn is_checkout(dir: &Path, checkout: &Path) -> bool {
    let root = std::fs::canonicalize(checkout).unwrap_or_else(|_| checkout.to_path_buf());
    std::fs::canonicalize(checkout.join(dir)).is_ok_and(|d| d == root)
}

impl Rewrite<'_> {
    /// The file to pass for `file`: itself, or a copy without the project's lines.
    fn file(&mut self, file: &Path, depth: usize) -> Result<PathBuf, ProjectError> {
        let Ok(text) = crate::untrusted_fs::read_to_string(file, FILE_LIMIT) else {
            return Ok(file.to_path_buf()); // the installer says what is wrong with it
        };
        let dir = file.parent().unwrap_or(self.checkout).to_path_buf();
        let shown = file
            .strip_prefix(self.checkout)
            .unwrap_or(file)
            .display()
            .to_string();
        let mut changed = false;
        let mut copy = String::new();
        for (n, line) in text.replace("\\\n", " ").lines().enumerate() {
            let bare = line.split(" #").next().unwrap_or("").trim();
            if bare.starts_with('#') || bare.is_empty() {
                continue;
            }
            if let Some(extras) = self.names_project(bare, &dir) {
                self.out.extras.extend(extras);
                self.out.named_at.push(format!("{shown}:{}", n + 1));
                changed = true;
                continue;
            }
            let mut kept: Vec<String> = Vec::new();
            let mut tokens = bare.split_whitespace();
            while let Some(t) = tokens.next() {
                let (option, inline) = match t.split_once('=') {
                    Some((o, v)) if o.starts_with('-') => (o, Some(v)),
                    _ => (t, None),
                };
                let include = matches!(option, "-r" | "--requirement" | "-c" | "--constraint");
                let path_option = include || matches!(option, "-f" | "--find-links");
                let editable = matches!(option, "-e" | "--editable");
                if !(path_option || editable) {
                    kept.push(self.absolute(t, &dir, false));
                    continue;
                }
                let Some(value) = inline.or_else(|| tokens.next()) else {
                    kept.push(t.to_string());
                    continue;
                };
                let value = if include && depth < MAX_DEPTH {
                    let nested = dir.join(value);
                    let passed = self.file(&nested, depth + 1)?;
                    changed |= passed != nested;
                    passed.display().to_string()
                } else {
                    self.absolute(value, &dir, true)
                };
                kept.extend([option.to_string(), value]);
            }
            copy.push_str(&kept.join(" "));
            copy.push('\n');
        }
        if !changed {
            return Ok(file.to_path_buf());
        }
        self.copies += 1;
        let path = self
            .tmp
            .join(format!("kiln-without-project-{}.txt", self.copies));
        std::fs::create_dir_all(self.tmp)
            .and_then(|()| std::fs::write(&path, copy))
            .map_err(|source| ProjectError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }

    /// A relative path (`./lib`, `../x`; any relative path as an option's value: `-f vendor`)
    /// made absolute: relative to the file's directory when it exists there (pip's rule for
    /// find-links and includes), else to the checkout (the installer's working directory).
    /// Anything else (a requirement, a URL, an option) is kept as it is.
    fn absolute(&self, token: &str, dir: &Path, option_value: bool) -> String {
        let looks_local = token.starts_with("./") || token.starts_with("../") || token == ".";
        let plain_value = option_value && !token.contains("://");
        if !(looks_local || plain_value) || token.starts_with('/') {
            return token.to_string();
        }
        let (path, rest) = match token.find('[') {
            Some(i) => token.split_at(i),
            None => (token, ""),
        };
        [dir, self.checkout]
            .iter()
            .map(|d| d.join(path))
            .find(|p| p.exists())
            .map(|p| format!("{}{rest}", p.display()))
            .unwrap_or_else(|| token.to_string())
    }

    /// The extras of a line that names the project (`-e .[a,b]` → `[a, b]`), `None` for any
    /// other line.
    fn names_project(&self, line: &str, dir: &Path) -> Option<Vec<String>> {
        let target = ["-e ", "--editable ", "--editable="]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .unwrap_or(line)
            .trim();
        let (spec, location) = match target.split_once(" @ ").or_else(|| target.split_once('@')) {
            Some((name, url)) if !name.contains('/') => (name.trim(), url.trim()),
            _ => (target, target),
        };
        let location = location.split([';', ' ']).next().unwrap_or("");
        let (location, _) = location.split_once('[').unwrap_or((location, ""));
        let path = location
            .strip_prefix("file://")
            .or_else(|| location.strip_prefix("file:"))
            .unwrap_or(location);
        let local = path == "."
            || path == ".."
            || path.starts_with("./")
            || path.starts_with("../")
            || path.starts_with('/')
            || location.starts_with("file:");
        if !local {
            return None;
        }
        let is_root =
            |base: &Path| std::fs::canonicalize(base.join(path)).is_ok_and(|p| p == self.root);
        if !(is_root(dir) || is_root(self.checkout)) {
            return None;
        }
        Some(extras_of(spec))
    }
}

/// `name[a, b]` or `.[a,b]` → `[a, b]`.
fn extras_of(spec: &str) -> Vec<String> {
    let Some(inner) = spec.split_once('[').and_then(|(_, r)| r.split_once(']')) else {
        return Vec::new();
    };
    inner
        .0
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_in_any_spelling_is_taken_out_and_its_extras_kept() {
        let co = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(co.path()).unwrap();
        let tmp = co.path().join("tmp");
        std::fs::create_dir_all(root.join("requirements")).unwrap();
        std::fs::create_dir_all(root.join("lib")).unwrap();
        std::fs::create_dir_all(root.join("vendor")).unwrap();
        std::fs::write(
            root.join("requirements/ci.txt"),
            format!(
                "-e ..[test]  # the project\n-r base.txt\n--find-links ../vendor\n-e ../lib\n\
                 pytest==9.2.0\nproj[speed] @ file://{}\n",
                root.display()
            ),
        )
        .unwrap();
        std::fs::write(root.join("requirements/base.txt"), "./\nsix==1.0\n").unwrap();
        std::fs::write(root.join("requirements/plain.txt"), "six==1.0\n-e ./lib\n").unwrap();
        let files = [
            PathBuf::from("requirements/ci.txt"),
            PathBuf::from("requirements/plain.txt"),
        ];
        let w = without_project(&files, &root, &tmp).unwrap();
        assert_eq!(w.extras, ["test", "speed"]);
        assert_eq!(
            w.named_at,
            [
                "requirements/ci.txt:1",
                "requirements/base.txt:1",
                "requirements/ci.txt:6"
            ]
        );
        // A file that does not name the project passes as it is.
        assert_eq!(w.files[1], root.join("requirements/plain.txt"));
        let ci = std::fs::read_to_string(&w.files[0]).unwrap();
        let base = tmp.join("kiln-without-project-1.txt");
        assert_eq!(
            ci,
            format!(
                "-r {}\n--find-links {}\n-e {}\npytest==9.2.0\n",
                base.display(),
                root.join("requirements/../vendor").display(),
                root.join("requirements/../lib").display()
            )
        );
        assert_eq!(std::fs::read_to_string(base).unwrap(), "six==1.0\n");
    }

    #[test]
    fn a_file_without_the_project_is_passed_as_it_is() {
        let co = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(
            co.path().join("requirements.txt"),
            format!("-e {}\nsix==1.0\n", other.path().display()),
        )
        .unwrap();
        let w =
            without_project(&[PathBuf::from("requirements.txt")], co.path(), co.path()).unwrap();
        assert_eq!(w.files, [co.path().join("requirements.txt")]);
        assert!(w.extras.is_empty() && w.named_at.is_empty());
    }
}

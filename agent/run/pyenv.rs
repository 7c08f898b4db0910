//! Seeing through a pyenv shim without running it.
//!
//! `python3` on a pyenv machine is a bash script that runs a dozen more (`pyenv exec` →
//! `pyenv-version-name` → `pyenv-which` → hooks) before the interpreter starts: about 0.1 s
//! per start, a tenth of a warm run. Kiln probes the interpreter once and then uses the
//! interpreter's own path, so only that first start goes through the shim. This module
//! answers it directly in the one case that needs no judgement: the version pyenv would
//! select (`PYENV_VERSION`, else the nearest `.python-version` from `PYENV_DIR` or the current
//! directory up, else `$PYENV_ROOT/version`) names exactly one installed version by its full
//! name, and that version has the command. Anything else (several versions, a prefix such as
//! `3.11`, `system`, a missing command) is left to the shim itself.

use std::path::{Path, PathBuf};

/// The environment pyenv decides from.
#[derive(Debug, Clone, Default)]
pub struct PyenvEnv {
    pub pyenv_root: Option<PathBuf>,
    pub pyenv_version: Option<String>,
    pub pyenv_dir: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
}

impl PyenvEnv {
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        PyenvEnv {
            pyenv_root: var("PYENV_ROOT").map(PathBuf::from),
            pyenv_version: var("PYENV_VERSION").map(|v| v.to_string_lossy().into_owned()),
            pyenv_dir: var("PYENV_DIR").map(PathBuf::from),
            cwd: std::env::current_dir().ok(),
        }
    }
}

/// The interpreter a pyenv shim at `shim` would run, when that is unambiguous (see the module
/// docs); `None` when `shim` is not a pyenv shim or the shim must decide.
pub fn resolve(shim: &Path, env: &PyenvEnv) -> Option<PathBuf> {
    let command = shim.file_name()?;
    let shims = shim.parent()?;
    let root = shims.parent()?;
    if shims.file_name()? != "shims" || !root.join("versions").is_dir() {
        return None;
    }
    if let Some(r) = &env.pyenv_root {
        if r.canonicalize().ok()? != root.canonicalize().ok()? {
            return None;
        }
    }
    let version = match &env.pyenv_version {
        Some(v) => single_version(v)?,
        None => {
            let file = version_file(env).unwrap_or_else(|| root.join("version"));
            single_version(&std::fs::read_to_string(file).ok()?)?
        }
    };
    let exe = root
        .join("versions")
        .join(version)
        .join("bin")
        .join(command);
    // The real interpreter is a file (or a link to one) that is not itself a shim.
    let real = exe.canonicalize().ok()?;
    (real.is_file() && !real.starts_with(shims.canonicalize().ok()?)).then_some(exe)
}

/// The nearest `.python-version`, from `PYENV_DIR` (else the current directory) up.
fn version_file(env: &PyenvEnv) -> Option<PathBuf> {
    let start = env.pyenv_dir.as_ref().or(env.cwd.as_ref())?;
    start
        .ancestors()
        .map(|d| d.join(".python-version"))
        .find(|f| f.is_file())
}

/// The one version a version file or `PYENV_VERSION` names, if it names exactly one by a
/// plain name (comments and blank lines aside).
fn single_version(text: &str) -> Option<String> {
    let mut words = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == ':'))
        .filter(|w| !w.is_empty());
    let first = words.next()?;
    let plain = first
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    (words.next().is_none() && plain && first != "system" && !first.starts_with('.'))
        .then(|| first.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pyenv root with versions 3.11.7 and 3.12.1 (each with bin/python3) and a shim.
    fn root() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pyenv");
        for v in ["3.11.7", "3.12.1"] {
            let bin = root.join("versions").join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("python3"), "").unwrap();
        }
        std::fs::create_dir_all(root.join("shims")).unwrap();
        std::fs::write(root.join("shims/python3"), "#!/usr/bin/env bash\n").unwrap();
        std::fs::write(root.join("version"), "3.11.7\n").unwrap();
        (dir, root)
    }

    fn env(root: &Path, cwd: &Path) -> PyenvEnv {
        PyenvEnv {
            pyenv_root: Some(root.to_path_buf()),
            cwd: Some(cwd.to_path_buf()),
            ..PyenvEnv::default()
        }
    }

    #[test]
    fn follows_pyenvs_order_of_choice() {
        let (dir, root) = root();
        let shim = root.join("shims/python3");
        let v = |v: &str| root.join("versions").join(v).join("bin/python3");
        let work = dir.path().join("work/deep");
        std::fs::create_dir_all(&work).unwrap();
        // The global version file.
        assert_eq!(resolve(&shim, &env(&root, &work)), Some(v("3.11.7")));
        // A .python-version above the current directory wins over it.
        std::fs::write(dir.path().join("work/.python-version"), "3.12.1\n").unwrap();
        assert_eq!(resolve(&shim, &env(&root, &work)), Some(v("3.12.1")));
        // PYENV_VERSION wins over both.
        let mut e = env(&root, &work);
        e.pyenv_version = Some("3.11.7".into());
        assert_eq!(resolve(&shim, &e), Some(v("3.11.7")));
    }

    #[test]
    fn leaves_every_judgement_call_to_the_shim() {
        let (dir, root) = root();
        let shim = root.join("shims/python3");
        let e = env(&root, dir.path());
        for global in [
            "3.11",
            "system",
            "3.11.7 3.12.1",
            "3.11.7:3.12.1",
            "",
            "../../bin",
        ] {
            std::fs::write(root.join("version"), global).unwrap();
            assert_eq!(resolve(&shim, &e), None, "version file {global:?}");
        }
        std::fs::write(root.join("version"), "# pinned\n3.12.1\n").unwrap();
        assert!(resolve(&shim, &e).is_some(), "comments are skipped");
        // A command the version does not have, a different PYENV_ROOT, not a shims dir.
        assert_eq!(resolve(&root.join("shims/pip"), &e), None);
        let mut other = e.clone();
        other.pyenv_root = Some(dir.path().to_path_buf());
        assert_eq!(resolve(&shim, &other), None);
        assert_eq!(resolve(&root.join("versions/3.12.1/bin/python3"), &e), None);
    }
}

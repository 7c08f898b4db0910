//! The run's venv written by Kiln itself, for a CPython the run has already probed: the
//! layout `uv venv` and `python -m venv --without-pip` produce (PEP 405), without their process.
//!
//! Why: `uv venv` spends 0.1–0.15 s asking the interpreter what Kiln's probe already answered
//! (its version and its venv scheme's site-packages), on the cold and the warm path alike.
//! Any other interpreter (PyPy, one that is itself in a venv) still gets `uv venv`.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::run::toolchain::{PythonInfo, VenvLayout};

/// Write a fresh venv at `venv` (which must not exist yet) for the interpreter `py`.
pub fn create(py: &PythonInfo, layout: &VenvLayout, venv: &Path) -> io::Result<()> {
    let home = py.path.parent().ok_or_else(|| {
        io::Error::other(format!("{} has no parent directory", py.path.display()))
    })?;
    fs::create_dir(venv)?;
    let bin = venv.join("bin");
    fs::create_dir(&bin)?;
    // As `python -m venv` and uv do on 64-bit POSIX other than macOS: lib64 is lib, so a
    // platlib under lib64/ (some distributions) is the same site-packages.
    if py.os != "darwin" && cfg!(target_pointer_width = "64") {
        fs::create_dir(venv.join("lib"))?;
        symlink("lib", venv.join("lib64"))?;
    }
    fs::create_dir_all(venv.join(&layout.purelib))?;
    fs::create_dir_all(venv.join(&layout.platlib))?;
    symlink(&py.path, bin.join("python"))?;
    symlink("python", bin.join("python3"))?;
    if let Some(short) = short_version(&layout.version) {
        symlink("python", bin.join(format!("python{short}")))?;
    }
    fs::write(venv.join("pyvenv.cfg"), pyvenv_cfg(home, &layout.version))?;
    fs::write(bin.join("activate"), activate_script(venv))?;
    fs::write(venv.join(".gitignore"), "*\n")
}

/// `3.11` of `3.11.7`.
fn short_version(version: &str) -> Option<String> {
    let mut parts = version.split('.');
    Some(format!("{}.{}", parts.next()?, parts.next()?))
}

/// What the interpreter reads at start to know it runs in a venv (`home`: where its base
/// executable lives) and that the system's site-packages stay out.
fn pyvenv_cfg(home: &Path, version: &str) -> String {
    format!(
        "home = {}\nimplementation = CPython\nversion_info = {version}\n\
         include-system-site-packages = false\nkiln = {}\n",
        home.display(),
        env!("CARGO_PKG_VERSION")
    )
}

/// `bin/activate` for POSIX shells (`. venv/bin/activate`), for test commands that source it:
/// VIRTUAL_ENV set, the venv's bin first on PATH, PYTHONHOME unset, `deactivate` undoing it.
fn activate_script(venv: &Path) -> String {
    let quoted = format!("'{}'", venv.display().to_string().replace('\'', r"'\''"));
    format!(
        r#"# Source this file (". bin/activate"); it has no effect when run on its own.
deactivate () {{
    if [ -n "${{_KILN_OLD_PATH:-}}" ]; then PATH="$_KILN_OLD_PATH"; export PATH; unset _KILN_OLD_PATH; fi
    if [ -n "${{_KILN_OLD_PYTHONHOME:-}}" ]; then
        PYTHONHOME="$_KILN_OLD_PYTHONHOME"; export PYTHONHOME; unset _KILN_OLD_PYTHONHOME
    fi
    unset VIRTUAL_ENV
    hash -r 2>/dev/null
    if [ "${{1:-}}" != nondestructive ]; then unset -f deactivate; fi
}}
deactivate nondestructive
VIRTUAL_ENV={quoted}
export VIRTUAL_ENV
_KILN_OLD_PATH="$PATH"
PATH="$VIRTUAL_ENV/bin:$PATH"
export PATH
if [ -n "${{PYTHONHOME:-}}" ]; then _KILN_OLD_PYTHONHOME="$PYTHONHOME"; unset PYTHONHOME; fi
hash -r 2>/dev/null
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::toolchain::python_info;

    #[tokio::test]
    async fn the_interpreter_runs_in_the_venv_and_installs_into_its_site_packages() {
        let py = python_info("python3").await.unwrap();
        let layout = py.venv.clone().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("it's a venv");
        create(&py, &layout, &venv).unwrap();
        let probe = "import sys, sysconfig; print(sys.prefix); print(sys.base_prefix); \
                     print(sysconfig.get_paths()['purelib']); print(sys.executable)";
        let out = std::process::Command::new(venv.join("bin/python3"))
            .args(["-I", "-c", probe])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(Path::new(lines[0]), venv, "{text}");
        assert_ne!(Path::new(lines[1]), venv, "{text}");
        assert_eq!(
            fs::canonicalize(lines[2]).unwrap(),
            fs::canonicalize(venv.join(&layout.purelib)).unwrap()
        );
        assert!(lines[3].starts_with(&*venv.to_string_lossy()), "{text}");
        assert!(fs::read_to_string(venv.join("pyvenv.cfg"))
            .unwrap()
            .contains("include-system-site-packages = false"));
        assert!(
            create(&py, &layout, &venv).is_err(),
            "an existing venv is not overwritten"
        );
    }

    #[tokio::test]
    async fn sourcing_activate_puts_the_venv_first_and_deactivate_undoes_it() {
        let py = python_info("python3").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("v");
        create(&py, py.venv.as_ref().unwrap(), &venv).unwrap();
        let script = format!(
            ". '{}/bin/activate' && command -v python && echo \"$VIRTUAL_ENV\" && deactivate \
             && echo \"[$VIRTUAL_ENV]\" && echo \"$PATH\"",
            venv.display()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                &*venv.join("bin/python").to_string_lossy(),
                &*venv.to_string_lossy(),
                "[]",
                "/usr/bin:/bin"
            ]
        );
    }
}

//! The tools a run builds with: the Python interpreter (probed once, for the cache keys and the
//! bootstrap), uv (found, or installed into Kiln's tool dir: the lock export before the restore
//! and the bootstrap both need it) and the C compiler's identity (for the ccache key).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::Cmd;

/// The interpreter could not be used.
#[derive(Debug, thiserror::Error)]
#[error("python interpreter {python:?} is not usable: {detail} (set `python` in kiln.yml or KILN_PYTHON)")]
pub struct PythonError {
    pub python: String,
    pub detail: String,
}

/// The interpreter's identity, as the cache keys need it.
#[derive(Debug, Clone)]
pub struct PythonInfo {
    /// Absolute path of the interpreter.
    pub path: PathBuf,
    /// e.g. `cp311`.
    pub tag: String,
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `x86_64`.
    pub arch: String,
    /// The interpreter's scripts dir (where `pip install uv` puts uv).
    pub scripts: PathBuf,
    /// pip's (major, minor), when pip is importable.
    pub pip: Option<(u32, u32)>,
    /// What a venv of this interpreter looks like, when Kiln can write one itself (a CPython
    /// that is not itself in a venv); else `None`, and the installer makes the venv.
    pub venv: Option<VenvLayout>,
}

/// A venv's layout for one interpreter, from its `sysconfig` (the `venv` scheme, or
/// `posix_prefix` before Python 3.11).
#[derive(Debug, Clone, PartialEq)]
pub struct VenvLayout {
    /// e.g. `3.11.7`.
    pub version: String,
    /// site-packages for pure-Python packages, relative to the venv (`lib/python3.11/site-packages`).
    pub purelib: PathBuf,
    /// site-packages for compiled ones (the same dir on most systems; `lib64/…` on some).
    pub platlib: PathBuf,
}

/// One interpreter start answers everything bootstrap needs to know (each start costs ~50 ms,
/// and `python -m pip --version` ~400 ms, on the warm path that is most of the budget).
const PY_PROBE: &str = "import sys, platform, sysconfig\n\
impl = {'cpython': 'cp', 'pypy': 'pp'}.get(sys.implementation.name, sys.implementation.name)\n\
print(sys.executable)\n\
print('%s%d%d' % (impl, sys.version_info[0], sys.version_info[1]))\n\
print(sys.platform)\n\
print(platform.machine())\n\
print(sysconfig.get_path('scripts'))\n\
try: import importlib.metadata as m; print(m.version('pip'))\n\
except Exception: print('none')\n\
print(platform.python_version())\n\
print('venv' if sys.prefix != sys.base_prefix else 'base')\n\
s = 'venv' if 'venv' in sysconfig.get_scheme_names() else 'posix_prefix'\n\
p = sysconfig.get_paths(s, vars={'base': '@', 'platbase': '@'})\n\
print(p['purelib'])\n\
print(p['platlib'])";

pub async fn python_info(python: &str) -> Result<PythonInfo, PythonError> {
    let bad = |detail: String| PythonError {
        python: python.to_string(),
        detail,
    };
    // `-I`: Kiln's own interpreter runs see neither the current directory (a checkout's
    // `platform.py` would shadow the standard library's) nor `PYTHON*` variables.
    let out = Cmd::new(through_shim(python))
        .args(["-I", "-c", PY_PROBE])
        .read_whole(crate::process::PARSED_OUTPUT_LIMIT)
        .run()
        .await
        .map_err(|e| bad(e.to_string()))?;
    if !out.success {
        return Err(bad(out.tail(3)));
    }
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    match lines.as_slice() {
        [path, tag, os, arch, scripts, pip, rest @ ..] => Ok(PythonInfo {
            path: PathBuf::from(path),
            tag: tag.to_string(),
            os: os.to_string(),
            arch: arch.to_string(),
            scripts: PathBuf::from(scripts),
            pip: parse_version(pip),
            venv: venv_layout(tag, rest),
        }),
        _ => Err(bad(format!("unexpected probe output: {}", out.tail(4)))),
    }
}

/// The program to start for `python`: the interpreter itself when `python` is a pyenv shim
/// whose choice is unambiguous (see [`super::pyenv`]), else `python` as given.
fn through_shim(python: &str) -> PathBuf {
    which::which(python)
        .ok()
        .and_then(|found| super::pyenv::resolve(&found, &super::pyenv::PyenvEnv::from_process()))
        .inspect(|real| tracing::debug!("{python} is a pyenv shim for {}", real.display()))
        .unwrap_or_else(|| PathBuf::from(python))
}

/// The interpreter's probe and the compiler's identity, found together: two process starts that
/// need no sources, so the executor runs them while the checkout clones.
#[derive(Debug)]
pub struct Toolchain {
    /// The `python` setting that was probed.
    pub python: String,
    pub info: Result<PythonInfo, PythonError>,
    /// As [`compiler_id`] says.
    pub compiler: String,
}

/// Probe `python` and the C compiler, concurrently.
pub async fn probe(python: &str) -> Toolchain {
    let (info, compiler) = tokio::join!(python_info(python), compiler_id());
    Toolchain {
        python: python.to_string(),
        info,
        compiler,
    }
}

/// "23.2.1" → (23, 2); anything else → None.
/// The venv layout from the probe's last lines (version, `base`/`venv`, purelib, platlib with
/// `@` for the venv): only for a CPython outside any venv, with both dirs inside the venv.
fn venv_layout(tag: &str, lines: &[&str]) -> Option<VenvLayout> {
    let [version, "base", purelib, platlib] = lines else {
        return None;
    };
    let inside = |p: &str| {
        let rel = PathBuf::from(p.strip_prefix("@/")?);
        let plain = rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        plain.then_some(rel)
    };
    (tag.starts_with("cp") && !version.is_empty()).then_some(())?;
    Some(VenvLayout {
        version: version.to_string(),
        purelib: inside(purelib)?,
        platlib: inside(platlib)?,
    })
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()
        .map(|m| {
            m.chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
        })
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    Some((major, minor))
}

/// `gcc-12.2.0` (from `$CC` or gcc), or `none` when there is no C compiler.
pub async fn compiler_id() -> String {
    let cc = std::env::var("CC").unwrap_or_else(|_| "gcc".into());
    let program = cc.split_whitespace().last().unwrap_or("gcc").to_string();
    let name = Path::new(&program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.clone());
    match Cmd::new(&program)
        .arg("-dumpfullversion")
        .arg("-dumpversion")
        .read_whole(crate::process::PARSED_OUTPUT_LIMIT)
        .run()
        .await
    {
        Ok(out) if out.success => format!("{name}-{}", out.stdout.trim()),
        _ => "none".into(),
    }
}

/// uv: beside the interpreter, on PATH, in Kiln's tool dir, or installed there with the
/// interpreter's pip (not `offline`). `None`, with a warning, when it cannot be had.
pub async fn find_or_install_uv(
    py: &PythonInfo,
    offline: bool,
    tools_dir: &Path,
    warnings: &mut Vec<String>,
) -> Option<PathBuf> {
    // The interpreter's own scripts dir first: PATH may hold a slow wrapper (pyenv shims).
    let beside = py.scripts.join("uv");
    if beside.is_file() {
        return Some(beside);
    }
    if let Ok(p) = which::which("uv") {
        return Some(p);
    }
    let python = &py.path;
    let target = tools_dir.join("uv");
    let bin = target.join("bin").join("uv");
    if bin.exists() {
        return Some(bin);
    }
    if offline {
        warnings.push("uv is not installed and --offline forbids fetching it: using pip".into());
        return None;
    }
    tracing::info!("uv not on PATH: installing it into {}", target.display());
    let out = Cmd::new(python)
        .args([
            "-I",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&target)
        .arg("uv")
        .timeout(Some(Duration::from_secs(180)))
        .run()
        .await;
    match out {
        Ok(o) if o.success && bin.exists() => Some(bin),
        Ok(o) => {
            warnings.push(format!(
                "could not install uv (falling back to pip): {}",
                o.tail(2)
            ));
            None
        }
        Err(e) => {
            warnings.push(format!("could not install uv (falling back to pip): {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("23.2.1"), Some((23, 2)));
        assert_eq!(parse_version("24.0"), Some((24, 0)));
        assert_eq!(parse_version("25.1rc1"), Some((25, 1)));
        assert_eq!(parse_version("none"), None);
    }

    #[test]
    fn a_venv_layout_only_for_a_cpython_outside_a_venv_with_plain_paths() {
        let lines = [
            "3.12.4",
            "base",
            "@/lib/python3.12/site-packages",
            "@/lib64/x",
        ];
        let layout = venv_layout("cp312", &lines).unwrap();
        assert_eq!(
            layout.purelib,
            PathBuf::from("lib/python3.12/site-packages")
        );
        assert_eq!(layout.platlib, PathBuf::from("lib64/x"));
        assert_eq!(venv_layout("pp310", &lines), None);
        let in_venv = ["3.12.4", "venv", lines[2], lines[3]];
        assert_eq!(venv_layout("cp312", &in_venv), None);
        let escaping = ["3.12.4", "base", "@/../site-packages", lines[3]];
        assert_eq!(venv_layout("cp312", &escaping), None);
        let absolute = ["3.12.4", "base", "/usr/lib/python3/dist-packages", lines[3]];
        assert_eq!(venv_layout("cp312", &absolute), None);
        assert_eq!(venv_layout("cp312", &lines[..2]), None);
    }

    #[tokio::test]
    async fn probes_the_interpreter_once_for_everything() {
        let py = python_info("python3").await.unwrap();
        assert!(py.path.is_absolute());
        assert!(py.tag.starts_with("cp3"), "{}", py.tag);
        assert!(py.scripts.is_dir(), "{}", py.scripts.display());
        assert!(
            py.pip.is_some(),
            "pip is importable in the test interpreter"
        );
        let venv = py.venv.expect("a CPython outside a venv gets a layout");
        assert!(venv.version.starts_with("3."), "{}", venv.version);
        assert!(venv.purelib.ends_with("site-packages"), "{venv:?}");
        let err = python_info("kiln-no-such-python").await.unwrap_err();
        assert!(err.to_string().contains("kiln-no-such-python"), "{err}");
    }
}

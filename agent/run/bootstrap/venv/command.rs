//! The venv of a `bootstrap.command`: the project's own script expects `pip` (and
//! `python -m pip`) inside it, but `python -m venv`'s ensurepip costs ~6 s per venv. So the
//! venv is made `--without-pip`, and pip is installed into it from the wheel the interpreter
//! ships for ensurepip (offline, no index) by uv when it is there, else by the host's pip
//! (`--python`, pip ≥ 22.3): about a second. Only an interpreter with neither (or without the
//! bundled wheel, e.g. Debian's) pays for ensurepip.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::process::Cmd;

use crate::run::toolchain::PythonInfo;

use super::super::error::BootstrapError;

/// Prints the pip wheel ensurepip would install, or nothing.
const BUNDLED_PIP: &str = "import glob, os, ensurepip\n\
for w in glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), '_bundled', 'pip-*.whl')): print(w)";

/// Create `venv` with pip in it, without ensurepip when the interpreter allows.
pub async fn create(
    py: &PythonInfo,
    venv: &Path,
    env: &[(OsString, OsString)],
) -> Result<(), BootstrapError> {
    let wheel = bundled_pip(py).await;
    let seeder = wheel.as_ref().and_then(|w| seed_cmd(py, venv, w));
    let mut create = Cmd::new(&py.path).args(["-I", "-m", "venv"]);
    if seeder.is_some() {
        create = create.arg("--without-pip");
    }
    let v = create.arg(venv).envs(env).run().await?;
    if !v.success {
        return Err(BootstrapError::Venv(v.tail(20)));
    }
    let Some(seed) = seeder else {
        return Ok(());
    };
    let s = seed.envs(env).run().await?;
    if !s.success {
        return Err(BootstrapError::Venv(format!(
            "installing pip into the venv: {}",
            s.tail(20)
        )));
    }
    Ok(())
}

/// The pip wheel shipped with the interpreter for ensurepip, when there is one.
async fn bundled_pip(py: &PythonInfo) -> Option<PathBuf> {
    let out = Cmd::new(&py.path)
        .args(["-I", "-c", BUNDLED_PIP])
        .read_whole(crate::process::PARSED_OUTPUT_LIMIT)
        .run()
        .await
        .ok()?;
    let line = out
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with(".whl"))?;
    out.success.then(|| PathBuf::from(line))
}

/// The command that installs `wheel` into the venv: uv, else the host's pip.
fn seed_cmd(py: &PythonInfo, venv: &Path, wheel: &Path) -> Option<Cmd> {
    let python = venv.join("bin").join("python");
    let uv = Some(py.scripts.join("uv"))
        .filter(|p| p.is_file())
        .or_else(|| which::which("uv").ok());
    if let Some(uv) = uv {
        return Some(
            Cmd::new(uv)
                .args(["pip", "install", "--quiet", "--offline", "--no-deps"])
                .arg("--python")
                .arg(python)
                .arg(wheel),
        );
    }
    py.pip.is_some_and(|v| v >= (22, 3)).then(|| {
        Cmd::new(&py.path)
            .args(["-I", "-m", "pip", "install", "--quiet", "--no-deps"])
            .args(["--disable-pip-version-check", "--no-index", "--python"])
            .arg(python)
            .arg(wheel)
    })
}

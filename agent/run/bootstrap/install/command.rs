//! The command path: the project's own `bootstrap.command` installs, with Kiln's environment
//! (the venv activated, pip and uv pointed at the wheelhouse, ccache in front of the compilers).

use crate::run::build_env::path_with;
use crate::run::untrusted::{self, Scope};
use crate::run::workdir::Paths;
use crate::settings::names;
use crate::summary::WheelSummary;
use crate::wheels;

use super::super::error::BootstrapError;
use super::installing::Installed;

/// The project's own bootstrap command, with Kiln's environment; the wheels it adds to the
/// wheelhouse count as built.
pub async fn run(
    command: &str,
    paths: &Paths,
    scope: Scope<'_>,
) -> Result<Installed, BootstrapError> {
    let before = wheels::list(&paths.wheelhouse);
    let bin = paths.venv.join("bin");
    let masq = paths.tmp.join("ccache-bin");
    let wh = paths.wheelhouse.clone().into_os_string();
    let mut env = scope.env.to_vec();
    env.extend([
        ("VIRTUAL_ENV".into(), paths.venv.clone().into()),
        ("PATH".into(), path_with(&[&bin, &masq])),
        ("PIP_FIND_LINKS".into(), wh.clone()),
        ("PIP_WHEEL_DIR".into(), wh.clone()),
        // uv reads the wheelhouse too (`uv pip install` finds the wheels there).
        ("UV_FIND_LINKS".into(), wh.clone()),
        (names::WHEELHOUSE.into(), wh),
        (names::VENV.into(), paths.venv.clone().into()),
    ]);
    tracing::info!("$ {command}");
    let scope = Scope { env: &env, ..scope };
    let o = untrusted::shell(command, scope).echo(true).run().await?;
    if !o.success {
        return Err(BootstrapError::Command {
            code: o.code.unwrap_or(-1),
            tail: o.tail(30),
        });
    }
    let after = wheels::list(&paths.wheelhouse);
    Ok(Installed {
        wheels: WheelSummary {
            built: after.difference(&before).count() as u32,
            built_names: after.difference(&before).cloned().collect(),
            reused: after.intersection(&before).count() as u32,
        },
        ..Installed::default()
    })
}

//! The one place where commands that run the project's code are made: `pip wheel` (setup.py and
//! build backends), the installers, `bootstrap.command` and the test command.
//!
//! Each gets the allowlisted environment plus the step's own variables, the directory it runs
//! in, and runs inside the run's sandbox (bubblewrap, see [`crate::sandbox`]) with or without
//! the network; nothing else is added behind its back.

use std::ffi::OsString;
use std::path::Path;

use crate::process::Cmd;
use crate::sandbox::{Network, ProjectRunner};

/// The environment, directory, sandbox and network rule a project command runs with.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub cwd: &'a Path,
    /// The step's own variables (venv, ccache, pip), over the allowlisted environment.
    pub env: &'a [(OsString, OsString)],
    pub runner: &'a ProjectRunner,
    pub network: Network,
}

impl Scope<'_> {
    /// The same scope without the network (installs from the wheelhouse).
    pub fn offline(self) -> Self {
        Scope {
            network: Network::Denied,
            ..self
        }
    }
}

/// `program args…` for the project, in `scope`. Arguments and variables added to the result
/// still reach the program.
pub fn program(program: impl Into<OsString>, scope: Scope<'_>) -> Cmd {
    let cmd = Cmd::new(program).cwd(scope.cwd);
    scope.runner.command(cmd, scope.env, scope.network)
}

/// A user-supplied command line (`sh -c`), in `scope`.
pub fn shell(script: &str, scope: Scope<'_>) -> Cmd {
    let cmd = Cmd::shell(script).cwd(scope.cwd);
    scope.runner.command(cmd, scope.env, scope.network)
}

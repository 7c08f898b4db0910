//! The one place where commands that run the project's code are made: `pip wheel` (setup.py and
//! build backends), the installers, `bootstrap.command` and the test command.
//!
//! Each gets the work dir's environment and the directory it runs in, and nothing else is added
//! behind its back. A sandbox (bubblewrap) wraps the command here, for every such child at once.

use std::ffi::OsString;
use std::path::Path;

use crate::process::Cmd;

/// The environment and directory a project command runs with.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub cwd: &'a Path,
    pub env: &'a [(OsString, OsString)],
}

/// `program args…` for the project, in `scope`.
pub fn program(program: impl Into<OsString>, scope: Scope<'_>) -> Cmd {
    Cmd::new(program).cwd(scope.cwd).envs(scope.env)
}

/// A user-supplied command line (`sh -c`), in `scope`.
pub fn shell(script: &str, scope: Scope<'_>) -> Cmd {
    Cmd::shell(script).cwd(scope.cwd).envs(scope.env)
}

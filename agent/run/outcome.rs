//! What ended a run: the [`Cause`] of a failed bootstrap or of the test command's exit, for
//! [`crate::summary::classify`] to turn into an outcome class.
//!
//! The line drawn here decides who is blamed: the commit's own code and requirements (a build
//! error, a pin that does not resolve, a module that does not import) are the commit's fault;
//! the machine, its tools, the store, the network, the index and the disk are nobody's commit.
//! A fault of the second kind can surface inside a step of the first (pip cannot reach the
//! index while building a wheel), so the message is read for the machine's signatures first.

use crate::process::{Output, ProcessError};
use crate::summary::Cause;

use super::bootstrap::BootstrapError;

/// Exit codes of a shell whose command could not start: not executable, not found.
const NOT_EXECUTABLE: i32 = 126;
const NOT_FOUND: i32 = 127;

/// Words of the machine's faults (lowercase): a full or read-only disk, a network or an index
/// that does not answer, a server error. A build error of the project's code has none of them.
const INFRASTRUCTURE_SIGNS: &[&str] = &[
    "no space left on device",
    "disk quota exceeded",
    "read-only file system",
    "connection refused",
    "connection reset",
    "network is unreachable",
    "no route to host",
    "name or service not known",
    "temporary failure in name resolution",
    "failed to establish a new connection",
    "newconnectionerror",
    "max retries exceeded",
    "error sending request",
    "failed to fetch",
    "dns error",
    "operation timed out",
    "read timed out",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway timeout",
    "cannot allocate memory",
];

/// Whether a message carries the signature of the machine's, the network's or the index's fault.
pub fn infrastructure_sign(message: &str) -> bool {
    let lower = message.to_lowercase();
    INFRASTRUCTURE_SIGNS.iter().any(|s| lower.contains(s))
}

/// Why a bootstrap failed: the project's fault or the machine's.
pub fn of_bootstrap(e: &BootstrapError) -> Cause {
    use crate::project::ProjectError;
    use BootstrapError as E;
    if infrastructure_sign(&e.to_string()) {
        return Cause::Infrastructure;
    }
    match e {
        // Kiln's tools and the interpreter: the machine's. An offline build missing a wheel is
        // the operator's wheelhouse, not the commit.
        E::Process(_)
        | E::Python(_)
        | E::NoPip { .. }
        | E::Venv(_)
        | E::CompiledProbe(_)
        | E::OfflineMissing { .. }
        | E::Project(ProjectError::Io { .. }) => Cause::Infrastructure,
        E::WheelBuild { .. }
        | E::ProjectBuild { .. }
        | E::NoCompiledModules { .. }
        | E::CompiledImport { .. }
        | E::Project(_)
        | E::Install { .. }
        | E::Command { .. } => Cause::ProjectBroken,
    }
}

/// Why the test command ended as it did (before re-runs of its failures).
pub fn of_test_command(result: &Result<Output, ProcessError>) -> Cause {
    match result {
        Ok(out) if out.success => Cause::TestsPassed,
        Ok(out) => match out.code {
            Some(NOT_EXECUTABLE | NOT_FOUND) => Cause::TestCommandNotStarted,
            _ => Cause::TestsFailed,
        },
        // The command's own doing (the test command's output is not parsed: never too large).
        Err(ProcessError::Timeout { .. } | ProcessError::OutputTooLarge { .. }) => {
            Cause::TestsFailed
        }
        Err(ProcessError::Spawn { .. }) => Cause::TestCommandNotStarted,
        Err(ProcessError::Wait { .. }) => Cause::Infrastructure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn exited(code: i32) -> Result<Output, ProcessError> {
        Ok(Output {
            success: code == 0,
            code: Some(code),
            lines: Vec::new(),
            stdout: String::new(),
            elapsed: Duration::ZERO,
        })
    }

    #[test]
    fn the_test_command_s_exit_says_what_ended_it() {
        assert_eq!(of_test_command(&exited(0)), Cause::TestsPassed);
        assert_eq!(of_test_command(&exited(1)), Cause::TestsFailed);
        assert_eq!(of_test_command(&exited(2)), Cause::TestsFailed);
        assert_eq!(of_test_command(&exited(127)), Cause::TestCommandNotStarted);
        assert_eq!(of_test_command(&exited(126)), Cause::TestCommandNotStarted);
        let timeout = Err(ProcessError::Timeout {
            program: "sh".into(),
            after: Duration::from_secs(1),
        });
        assert_eq!(of_test_command(&timeout), Cause::TestsFailed);
        let spawn = Err(ProcessError::Spawn {
            program: "sh".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        assert_eq!(of_test_command(&spawn), Cause::TestCommandNotStarted);
    }

    #[test]
    fn a_bootstrap_fails_by_the_commit_or_by_the_machine() {
        let project = BootstrapError::ProjectBuild {
            tail: "src/fast.c:3:1: error: expected ';' before '}' token".into(),
        };
        assert_eq!(of_bootstrap(&project), Cause::ProjectBroken);
        let pin = BootstrapError::Install {
            installer: "uv".into(),
            code: 1,
            tail: "No solution found when resolving dependencies: no-such==1.0".into(),
        };
        assert_eq!(of_bootstrap(&pin), Cause::ProjectBroken);
        let import = BootstrapError::CompiledImport {
            module: "fast._c".into(),
            reason: "undefined symbol: sum".into(),
        };
        assert_eq!(of_bootstrap(&import), Cause::ProjectBroken);
        // The same steps failing for the machine's reasons are nobody's commit.
        let index = BootstrapError::Install {
            installer: "uv".into(),
            code: 2,
            tail: "error: Failed to fetch: `http://127.0.0.1:9/simple/six/`\n  Caused by: \
                   error sending request: Connection refused (os error 111)"
                .into(),
        };
        assert_eq!(of_bootstrap(&index), Cause::Infrastructure);
        let pip = BootstrapError::WheelBuild {
            code: 1,
            failed: None,
            tail: "WARNING: Retrying (Retry(total=4)) after connection broken by \
                   'NewConnectionError(...)'"
                .into(),
        };
        assert_eq!(of_bootstrap(&pip), Cause::Infrastructure);
        let disk = BootstrapError::ProjectBuild {
            tail: "OSError: [Errno 28] No space left on device".into(),
        };
        assert_eq!(of_bootstrap(&disk), Cause::Infrastructure);
        let python = BootstrapError::Python(crate::run::toolchain::PythonError {
            python: "/opt/none/python3".into(),
            detail: "not found".into(),
        });
        assert_eq!(of_bootstrap(&python), Cause::Infrastructure);
        let offline = BootstrapError::OfflineMissing {
            requirement: "six==1.16".into(),
            searched: "the wheelhouse".into(),
        };
        assert_eq!(of_bootstrap(&offline), Cause::Infrastructure);
    }
}

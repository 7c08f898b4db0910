//! The one exit-code table of every `kiln` command (documented in README "Exit codes").
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the answer is "no": tests failed or timed out, a required cache missed, `kiln doctor` found a problem |
//! | 2 | usage or configuration error: a bad flag, variable, kiln.yml/agent.yml, a refused work dir or data dir |
//! | 3 | infrastructure error: checkout or bootstrap failed, a store, network or disk fault, a server that cannot start |

use std::process::ExitCode;

/// What a command's ending means; see the module table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    No = 1,
    Usage = 2,
    Infrastructure = 3,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The exit of a `kiln run` whose summary says `exit_code`.
    pub fn from_run(exit_code: i32) -> Exit {
        match exit_code {
            0 => Exit::Success,
            1 => Exit::No,
            2 => Exit::Usage,
            _ => Exit::Infrastructure,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// How an error ends a command.
pub trait Classify {
    fn exit(&self) -> Exit;
}

impl Classify for crate::settings::UsageError {
    fn exit(&self) -> Exit {
        Exit::Usage
    }
}

impl Classify for crate::server::AgentError {
    fn exit(&self) -> Exit {
        use crate::server::AgentError as E;
        match self {
            E::Config(_) | E::NoConfig(_) | E::Secret(_) | E::Busy(_) => Exit::Usage,
            _ => Exit::Infrastructure,
        }
    }
}

impl Classify for crate::index::IndexError {
    fn exit(&self) -> Exit {
        match self {
            crate::index::IndexError::Auth(_) => Exit::Usage,
            _ => Exit::Infrastructure,
        }
    }
}

impl Classify for crate::wheelhouse::WheelhouseError {
    fn exit(&self) -> Exit {
        use crate::wheelhouse::WheelhouseError as E;
        match self {
            E::Index(e) => e.exit(),
            E::Io { .. } | E::StoreHashMismatch { .. } => Exit::Infrastructure,
            // A missing, damaged or altered archive, or nothing to export: the input is wrong.
            _ => Exit::Usage,
        }
    }
}

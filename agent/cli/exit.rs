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
            E::Store(_) | E::Io { .. } | E::StoreHashMismatch { .. } => Exit::Infrastructure,
            // A missing, damaged or altered archive, or nothing to export: the input is wrong.
            _ => Exit::Usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexError;
    use crate::server::AgentError;
    use crate::wheelhouse::WheelhouseError;

    fn io() -> std::io::Error {
        std::io::Error::other("disk full")
    }

    #[test]
    fn every_command_ends_by_one_table() {
        // What the user must fix is 2; what the machine or a service failed at is 3.
        assert_eq!(AgentError::Busy("locked".into()).exit(), Exit::Usage);
        let disk = AgentError::Io {
            what: "queue".into(),
            source: io(),
        };
        assert_eq!(disk.exit(), Exit::Infrastructure);
        assert_eq!(IndexError::Auth("empty token".into()).exit(), Exit::Usage);
        let bind = IndexError::Bind {
            addr: "127.0.0.1:1".into(),
            source: io(),
        };
        assert_eq!(bind.exit(), Exit::Infrastructure);
        let damaged = WheelhouseError::Corrupt {
            archive: "w.tar.zst".into(),
            message: "truncated".into(),
        };
        assert_eq!(damaged.exit(), Exit::Usage);
        assert_eq!(WheelhouseError::Index(bind).exit(), Exit::Infrastructure);
        assert_eq!(Exit::from_run(1).code(), 1);
        assert_eq!(Exit::from_run(3), Exit::Infrastructure);
    }
}

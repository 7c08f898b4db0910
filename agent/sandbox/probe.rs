//! Is bubblewrap installed, and can it create the sandbox's namespaces on this machine?
//!
//! Installed is not enough: containers without privileges, `kernel.unprivileged_userns_clone=0`
//! and AppArmor's user-namespace restriction (Ubuntu 24.04) all make `bwrap` exit at once. So the
//! probe starts a real sandbox with the flags every command will use, once per process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::layout::namespace_flags;
use super::{Network, SandboxError};

/// The bubblewrap binary to sandbox with (`KILN_BWRAP_BIN`, read once by the settings).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BwrapBin {
    /// `bwrap` on PATH.
    #[default]
    OnPath,
    /// This program (a name on PATH or a path).
    Named(PathBuf),
    /// Set to empty: behave as if bubblewrap were not installed.
    Disabled,
}

impl BwrapBin {
    fn find(&self) -> Option<PathBuf> {
        match self {
            BwrapBin::Disabled => None,
            BwrapBin::Named(p) => which::which(p).ok(),
            BwrapBin::OnPath => which::which("bwrap").ok(),
        }
    }
}

/// The usable bubblewrap, probed once per process (a process has one [`BwrapBin`]).
pub(super) fn usable_bwrap(bin: &BwrapBin) -> Result<PathBuf, SandboxError> {
    static PROBED: OnceLock<Result<PathBuf, SandboxError>> = OnceLock::new();
    PROBED
        .get_or_init(|| {
            let bin = bin.find().ok_or(SandboxError::NotInstalled)?;
            probe(&bin).map_err(|detail| SandboxError::Unusable {
                bin: bin.clone(),
                detail,
            })?;
            Ok(bin)
        })
        .clone()
}

/// Run `true` in a sandbox made with the run's flags; the error is bubblewrap's own message.
pub(super) fn probe(bin: &Path) -> Result<(), String> {
    let out = Command::new(bin)
        .args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"])
        .args(namespace_flags(Network::Denied))
        .args(["--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot start it: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let first: String = first.chars().take(300).collect();
    Err(match out.status.code() {
        Some(code) => format!("exit {code}: {}", first.trim()),
        None => format!("killed by a signal: {}", first.trim()),
    })
}

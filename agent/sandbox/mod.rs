//! Running untrusted commands (the project's wheel builds, installs, its own bootstrap command
//! and its tests) under bubblewrap.
//!
//! What the sandbox shows the project's code (see docs/security.md for the threat model):
//! - the root file system read-only, the run's work dir the only writable place, a private
//!   `/tmp`, an empty `$HOME`;
//! - no view of what Kiln was told to hide (the agent's data dir with other jobs' files, token
//!   and secret files, a `file://` store) nor of well-known host secrets (`/root`, `/home`,
//!   `/etc/shadow`, SSH host keys, container runtime sockets);
//! - its own PID namespace (no other process, no `/proc/<agent>/environ`), no capabilities, a
//!   new session; when the command ends or Kiln dies, every process it started dies with it;
//! - the network only when the step must download (see [`Network`]);
//! - none of the host's unix sockets, path or abstract, unless the operator lists one (see
//!   [`sockets`]).
//!
//! The environment is built separately, by allowlist ([`env::ChildEnv`]). Kiln's own steps
//! (checkout, restore, save, report) never run in here: they need the store and the tokens.

pub mod env;
mod layout;
mod probe;
mod runner;
mod show;
mod sockets;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::process::Cmd;

pub use env::{ChildEnv, PassName, Trust};
pub use layout::Layout;
pub use probe::BwrapBin;
pub use runner::{ProjectRunner, SandboxSettings};
pub use show::ShowError;

/// `--sandbox`, `KILN_SANDBOX`, `sandbox:` in kiln.yml and agent.yml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// bubblewrap when it is installed and can create namespaces here; else a warning and the
    /// commands run unsandboxed.
    #[default]
    Auto,
    /// bubblewrap or nothing: a run that cannot sandbox does not start.
    Bwrap,
    /// Run the project's commands directly (trusted code on a disposable machine).
    None,
}

impl std::str::FromStr for SandboxMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "bwrap" => Ok(Self::Bwrap),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown sandbox mode {other:?} (expected auto, bwrap or none)"
            )),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "sandbox `bwrap` was asked for but bubblewrap is not installed \
         (apt-get install bubblewrap; or choose --sandbox auto|none)"
    )]
    NotInstalled,
    #[error(
        "sandbox `bwrap` was asked for but {bin} cannot create a sandbox here: {detail} \
         (user namespaces may be disabled or restricted, e.g. kernel.unprivileged_userns_clone=0 \
         or an AppArmor userns restriction; run as root or allow them, or choose --sandbox auto|none)"
    )]
    Unusable { bin: PathBuf, detail: String },
}

/// Whether a sandboxed command may reach the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The step downloads (building wheels the wheelhouse lacks, a project's own bootstrap).
    Allowed,
    /// Loopback only: installs from the wheelhouse, a fork's tests.
    Denied,
}

/// How a run executes the project's commands: resolved once per run from the mode.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The bubblewrap binary, when sandboxing; `None` runs commands directly.
    bwrap: Option<PathBuf>,
    layout: Layout,
    /// Confine the sandbox to its own abstract unix sockets (Landlock), see [`sockets`].
    scope_abstract: bool,
}

impl Sandbox {
    /// No sandbox: commands run as they are.
    pub fn disabled() -> Sandbox {
        Sandbox {
            bwrap: None,
            layout: Layout::default(),
            scope_abstract: false,
        }
    }

    /// Resolve `mode` on this machine. `auto` without a working bubblewrap returns a disabled
    /// sandbox and the warning to show (once: call this once per run).
    pub fn resolve(
        mode: SandboxMode,
        layout: Layout,
        bin: &BwrapBin,
    ) -> Result<(Sandbox, Option<String>), SandboxError> {
        if mode == SandboxMode::None {
            return Ok((Sandbox::disabled(), None));
        }
        match (probe::usable_bwrap(bin), mode) {
            (Ok(bin), _) => {
                let available = sockets::abstract_scope_available(&bin);
                let warning = (!available && !layout.allows_abstract_sockets()).then(|| {
                    "the host's abstract unix sockets stay reachable from the steps that have \
                     the network: this kernel cannot confine them (Landlock scopes need Linux \
                     6.12 or later; a set-uid bubblewrap needs Kiln to run as root)"
                        .to_string()
                });
                let scope_abstract = available && !layout.allows_abstract_sockets();
                let sandbox = Sandbox {
                    bwrap: Some(bin),
                    layout,
                    scope_abstract,
                };
                Ok((sandbox, warning))
            }
            (Err(e), SandboxMode::Bwrap) => Err(e),
            (Err(e), _) => Ok((
                Sandbox::disabled(),
                Some(format!(
                    "the project's code runs unsandboxed: {}",
                    unsandboxed_reason(&e)
                )),
            )),
        }
    }

    /// Whether commands run under bubblewrap.
    pub fn active(&self) -> bool {
        self.bwrap.is_some()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Show `path` read-only inside the sandbox even where a hidden directory covers it (the
    /// interpreter's installation under `$HOME`, a uv in Kiln's tool dir). Refused, with the
    /// reason, when it would uncover a hidden path.
    pub fn expose(&mut self, path: &Path) -> Result<(), String> {
        self.layout.expose(path)
    }

    /// `cmd`, to be run inside the sandbox (unchanged when the sandbox is disabled). The
    /// command's environment is passed as it is: build it with [`ChildEnv`].
    pub fn wrap(&self, cmd: Cmd, network: Network) -> Cmd {
        let Some(bwrap) = &self.bwrap else {
            return cmd;
        };
        let mut args = self.layout.bwrap_args(network, cmd.cwd.as_deref());
        args.push("--".into());
        args.push(cmd.program.clone());
        args.extend(cmd.args.iter().cloned());
        Cmd {
            program: bwrap.clone().into_os_string(),
            args,
            pre_exec: self
                .scope_abstract
                .then_some(sockets::confine_abstract_sockets as fn() -> std::io::Result<()>),
            ..cmd
        }
    }
}

/// Why bubblewrap cannot be used here, in words for a warning.
pub fn unsandboxed_reason(e: &SandboxError) -> String {
    match e {
        SandboxError::NotInstalled => {
            "bubblewrap is not installed (apt-get install bubblewrap)".into()
        }
        SandboxError::Unusable { bin, detail } => {
            format!("{} cannot create namespaces here ({detail})", bin.display())
        }
    }
}

/// Whether bubblewrap works on this machine (for `kiln doctor` and the agent's start-up check).
pub fn check(bin: &BwrapBin) -> Result<PathBuf, SandboxError> {
    probe::usable_bwrap(bin)
}

#[cfg(test)]
mod tests;

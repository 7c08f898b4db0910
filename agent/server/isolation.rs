//! How a job's build keeps the project's code away from the agent: the sandbox `kiln run` must
//! use, what it hides, and which of the agent's own variables the build process never gets.
//!
//! `kiln run` itself is trusted (it holds the job's token to report); the project's code it runs
//! is not. The agent tells `kiln run` what to hide from that code: its data dir (the queue, other
//! jobs' logs, summaries and work dirs), agent.yml, the webhook secret file, the API token file
//! and every repository's token file.
//! A fork's pull request is untrusted (`--untrusted`: no network for its tests, no secrets even
//! when its kiln.yml names them) and is built only in bubblewrap, unless agent.yml accepts the
//! risk with `allow_unsandboxed_forks: true`.

use std::ffi::OsString;
use std::path::PathBuf;

pub use super::agent_yml::SandboxPolicy;
use super::agent_yml::{AgentConfig, TokenSource};
use crate::sandbox::{self, BwrapBin, SandboxMode};
use crate::settings::names;

/// What every job's `kiln run` is told, fixed when the agent starts.
#[derive(Debug, Clone, Default)]
pub struct Isolation {
    pub policy: SandboxPolicy,
    /// Paths the project's code must not see.
    pub hidden: Vec<PathBuf>,
    /// The agent's variables that never reach a build (every repository's `token_env`).
    pub scrubbed: Vec<String>,
    /// The bubblewrap the agent checks forks' sandbox with (the machine's `KILN_BWRAP_BIN`).
    pub bwrap: BwrapBin,
    /// Host unix sockets builds may still reach (agent.yml `sandbox_sockets:`).
    pub sockets: Vec<String>,
}

impl Isolation {
    pub fn new(config: &AgentConfig, data_dir: PathBuf, config_path: PathBuf) -> Isolation {
        let mut hidden = vec![data_dir, config_path];
        hidden.extend(std::env::var_os(names::WEBHOOK_SECRET_FILE).map(PathBuf::from));
        // Every secret file the agent was given, wherever it lives: `KILN_*_FILE` variables
        // (the webhook secret) and every `*_file` of agent.yml (tokens, keys, passwords).
        hidden.extend(
            std::env::vars_os()
                .filter(|(k, v)| {
                    let k = k.to_string_lossy();
                    k.starts_with(names::PREFIX) && k.ends_with("_FILE") && !v.is_empty()
                })
                .map(|(_, v)| PathBuf::from(v)),
        );
        hidden.extend(config.api_token_file.clone());
        hidden.extend(config.secret_files.iter().cloned());
        let mut scrubbed = Vec::new();
        for r in &config.repositories {
            match &r.token {
                Some(TokenSource::File(p)) => hidden.push(p.clone()),
                Some(TokenSource::Env(v)) => scrubbed.push(v.clone()),
                None => {}
            }
        }
        Isolation {
            policy: config.sandbox,
            hidden,
            scrubbed,
            bwrap: BwrapBin::default(),
            sockets: config.sandbox_sockets.clone(),
        }
    }

    /// The `kiln run` arguments that set up the sandbox for one job. An error refuses the job:
    /// a fork's pull request where bubblewrap cannot run and the risk was not accepted.
    pub fn run_args(&self, fork: bool) -> Result<Vec<OsString>, String> {
        let mut args: Vec<OsString> = Vec::new();
        let mode = if fork {
            args.push("--untrusted".into());
            if self.policy.fork_test_network {
                args.push("--test-network".into());
            }
            match (
                sandbox::check(&self.bwrap),
                self.policy.allow_unsandboxed_forks,
            ) {
                (Ok(_), _) => SandboxMode::Bwrap,
                (Err(_), true) => SandboxMode::Auto,
                (Err(e), false) => {
                    let e = sandbox::unsandboxed_reason(&e);
                    return Err(format!(
                        "fork pull request refused: its code would run unsandboxed ({e}); \
                         install bubblewrap, or set `allow_unsandboxed_forks: true` in agent.yml \
                         to accept the risk"
                    ));
                }
            }
        } else {
            self.policy.mode
        };
        args.push("--sandbox".into());
        args.push(mode_name(mode).into());
        for p in &self.hidden {
            args.push("--sandbox-hide".into());
            args.push(p.clone().into_os_string());
        }
        for s in &self.sockets {
            args.push("--sandbox-socket".into());
            args.push(s.into());
        }
        Ok(args)
    }

    /// Said once when the agent starts, when fork pull requests will be refused or unsandboxed.
    pub fn startup_warning(&self) -> Option<String> {
        let e = sandbox::unsandboxed_reason(&sandbox::check(&self.bwrap).err()?);
        Some(if self.policy.allow_unsandboxed_forks {
            format!("{e}: fork pull requests will run UNSANDBOXED (allow_unsandboxed_forks: true)")
        } else {
            format!("{e}: fork pull requests will be refused")
        })
    }
}

fn mode_name(mode: SandboxMode) -> &'static str {
    match mode {
        SandboxMode::Auto => "auto",
        SandboxMode::Bwrap => "bwrap",
        SandboxMode::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> AgentConfig {
        let text = format!(
            "{extra}repositories:\n  - name: o/a\n    token_env: A_TOKEN\n  - name: o/b\n    token_file: /etc/kiln/b.token\n"
        );
        AgentConfig::parse(&text, Path::new("agent.yml")).unwrap()
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn hides_the_data_dir_config_and_token_files_and_scrubs_token_variables() {
        let iso = Isolation::new(
            &config(""),
            "/srv/kiln".into(),
            "/srv/kiln/agent.yml".into(),
        );
        let args = strings(&iso.run_args(false).unwrap());
        assert_eq!(&args[..2], ["--sandbox", "auto"]);
        for p in ["/srv/kiln", "/srv/kiln/agent.yml", "/etc/kiln/b.token"] {
            assert!(
                args.windows(2)
                    .any(|w| w[0] == "--sandbox-hide" && w[1] == p),
                "{args:?}"
            );
        }
        assert_eq!(iso.scrubbed, ["A_TOKEN"]);
    }

    #[test]
    fn forks_are_untrusted_and_sandboxed() {
        let iso = Isolation::new(&config("sandbox: none\n"), "/d".into(), "/d/a.yml".into());
        assert_eq!(
            strings(&iso.run_args(false).unwrap())[..2],
            ["--sandbox", "none"]
        );
        // bubblewrap is installed here (scripts/setup.sh): forks always get it.
        let args = strings(&iso.run_args(true).unwrap());
        assert_eq!(args[..3], ["--untrusted", "--sandbox", "bwrap"]);
        let open = config("fork_test_network: true\n");
        let args = strings(
            &Isolation::new(&open, "/d".into(), "/d/a".into())
                .run_args(true)
                .unwrap(),
        );
        assert_eq!(args[..2], ["--untrusted", "--test-network"]);
    }
}

//! One run's way of starting the project's code: the sandbox, the allowlisted environment and
//! the network rule, decided once from the run's settings and applied to every untrusted step.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{
    BwrapBin, ChildEnv, Layout, Network, PassName, Sandbox, SandboxError, SandboxMode, Trust,
};
use crate::process::Cmd;

/// What the run was told about its sandbox (flags > `KILN_*` > kiln.yml > defaults, resolved by
/// the settings).
#[derive(Debug, Clone, Default)]
pub struct SandboxSettings {
    pub mode: SandboxMode,
    /// `--sandbox-hide`: more paths the project's code must not see (the agent's data dir,
    /// token and secret files).
    pub hide: Vec<PathBuf>,
    /// `--sandbox-socket`: host unix sockets the project's code may still reach (a path, or
    /// `@name`: every abstract socket).
    pub sockets: Vec<String>,
    /// `--untrusted`: a fork's pull request (no secrets even when named, no network for tests).
    pub trust: Trust,
    /// `--test-network`: tests of untrusted code may reach the network all the same.
    pub test_network: bool,
    /// kiln.yml `env:`: variables of Kiln's environment passed to the project's code.
    pub pass_env: Vec<PassName>,
    /// The bubblewrap binary (`KILN_BWRAP_BIN`).
    pub bwrap: BwrapBin,
}

/// Starts the project's commands for one run.
#[derive(Debug, Clone)]
pub struct ProjectRunner {
    sandbox: Sandbox,
    env: ChildEnv,
    trust: Trust,
    test_network: Network,
}

impl ProjectRunner {
    /// Resolve the sandbox for a run whose only writable places are `work_dir` and `checkout`
    /// (the same unless the run builds a checkout in place), apart from `read_only` inside them
    /// (the checkout's git dir), and whose `file://` store (if any) is `store_dir`. Returns the
    /// warnings to show once.
    pub fn new(
        settings: &SandboxSettings,
        work_dir: &Path,
        checkout: &Path,
        read_only: &[&Path],
        store_dir: Option<&Path>,
    ) -> Result<(ProjectRunner, Vec<String>), SandboxError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let mut layout = Layout::new(work_dir, home.as_deref());
        layout.writable(checkout);
        for p in read_only {
            layout.protect(p);
        }
        for p in settings.hide.iter().map(PathBuf::as_path).chain(store_dir) {
            layout.hide(p);
        }
        for s in &settings.sockets {
            layout.allow_socket(s);
        }
        let (sandbox, warning) = Sandbox::resolve(settings.mode, layout, &settings.bwrap)?;
        let (env, mut warnings) = ChildEnv::from_process(&settings.pass_env, settings.trust);
        warnings.extend(warning);
        let test_network = match (settings.trust, settings.test_network) {
            (Trust::Untrusted, false) => Network::Denied,
            _ => Network::Allowed,
        };
        Ok((
            ProjectRunner {
                sandbox,
                env,
                trust: settings.trust,
                test_network,
            },
            warnings,
        ))
    }

    /// Commands run directly with the allowlisted environment (no sandbox): for unit tests
    /// and for callers that have no work dir yet.
    pub fn unsandboxed(trust: Trust) -> ProjectRunner {
        ProjectRunner {
            sandbox: Sandbox::disabled(),
            env: ChildEnv::from_process(&[], trust).0,
            trust,
            test_network: Network::Allowed,
        }
    }

    pub fn sandboxed(&self) -> bool {
        self.sandbox.active()
    }

    pub fn trust(&self) -> Trust {
        self.trust
    }

    /// The network rule for the test command.
    pub fn test_network(&self) -> Network {
        self.test_network
    }

    /// Show a tool Kiln runs inside the sandbox (the interpreter's installation, uv) even where
    /// a hidden directory such as `$HOME` covers it. The interpreter `…/bin/python3` shows its
    /// whole installation (`…`), which holds its standard library.
    pub fn expose_tool(&mut self, program: &Path) -> Result<(), String> {
        let real =
            std::fs::canonicalize(program).map_err(|e| format!("{}: {e}", program.display()))?;
        let install = real
            .parent()
            .filter(|bin| bin.file_name().is_some_and(|n| n == "bin"))
            .and_then(Path::parent)
            .unwrap_or_else(|| real.parent().unwrap_or(&real));
        self.sandbox.expose(install)
    }

    /// Show a directory read-only inside the sandbox (imported wheels under a hidden `$HOME`).
    pub fn expose_dir(&mut self, dir: &Path) -> Result<(), String> {
        self.sandbox.expose(dir)
    }

    /// Add a variable every later command gets (e.g. `KILN_NO_SAVE`).
    pub fn set_env(&mut self, k: impl Into<OsString>, v: impl Into<OsString>) {
        self.env.set(k, v);
    }

    /// The environment a command of the project gets: the allowlisted base plus `vars` (the
    /// step's own: venv, ccache, pip, JUnit), later entries winning.
    pub fn env_with(&self, vars: &[(OsString, OsString)]) -> ChildEnv {
        let mut env = self.env.clone();
        env.extend(vars.iter().cloned());
        env
    }

    /// `cmd` ready to run the project's code: exactly the allowlisted environment plus `vars`,
    /// inside the sandbox, with or without the network.
    pub fn command(&self, cmd: Cmd, vars: &[(OsString, OsString)], network: Network) -> Cmd {
        let cmd = self.env_with(vars).apply(cmd);
        self.sandbox.wrap(cmd, network)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn untrusted_tests_get_no_network_and_no_store() {
        let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
        let work = dir.path().join("work");
        let store = dir.path().join("store");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(&store).unwrap();
        std::fs::write(store.join("wheels.tar.zst"), "trusted").unwrap();
        let settings = SandboxSettings {
            mode: SandboxMode::Bwrap,
            trust: Trust::Untrusted,
            ..Default::default()
        };
        let (runner, _) = ProjectRunner::new(&settings, &work, &work, &[], Some(&store)).unwrap();
        assert_eq!(runner.test_network(), Network::Denied);
        let script = format!(
            "echo poisoned > {s}/wheels.tar.zst 2>/dev/null; ls {s} | wc -l",
            s = store.display()
        );
        let cmd = runner.command(Cmd::shell(&script).cwd(&work), &[], runner.test_network());
        let out = cmd.run().await.unwrap();
        assert_eq!(
            out.lines.last().map(String::as_str),
            Some("0"),
            "{:?}",
            out.lines
        );
        assert_eq!(
            std::fs::read_to_string(store.join("wheels.tar.zst")).unwrap(),
            "trusted"
        );
    }

    #[test]
    fn trusted_tests_keep_the_network() {
        let settings = SandboxSettings::default();
        let dir = tempfile::tempdir().unwrap();
        let (runner, _) = ProjectRunner::new(&settings, dir.path(), dir.path(), &[], None).unwrap();
        assert_eq!(runner.test_network(), Network::Allowed);
    }
}

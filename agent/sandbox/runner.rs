//! One run's way of starting the project's code: the sandbox, the allowlisted environment and
//! the network rule, decided once from the run's settings and applied to every untrusted step.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::show::{self, ShowError};
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
    /// `--sandbox-show`: directories the project's code may see read-only even where the
    /// sandbox hides their parent (`$HOME`, `/tmp`), in untrusted builds too.
    pub show: Vec<PathBuf>,
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
    /// What no directory the build names may uncover: the operator's hidden paths and the
    /// store (canonical), and `$HOME`'s credentials directories.
    kept: Vec<PathBuf>,
    home: Option<PathBuf>,
    /// `--sandbox-show` (canonical): what an untrusted build may see.
    allowed: Vec<PathBuf>,
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
        let real = |p: &PathBuf| std::fs::canonicalize(p).ok();
        let kept: Vec<PathBuf> = settings
            .hide
            .iter()
            .chain(store_dir.map(PathBuf::from).as_ref())
            .filter_map(real)
            .collect();
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
        let mut runner = ProjectRunner {
            sandbox,
            env,
            trust: settings.trust,
            test_network,
            kept,
            home,
            allowed: settings.show.iter().filter_map(real).collect(),
        };
        warnings.extend(runner.show_operator_dirs(&settings.show));
        Ok((runner, warnings))
    }

    /// Show what the operator named: the `--sandbox-show` directories and the local package
    /// sources of the environment the project's code gets (`PIP_FIND_LINKS`, …). Returns a
    /// warning for each that must stay hidden.
    fn show_operator_dirs(&mut self, show: &[PathBuf]) -> Vec<String> {
        let mut named: Vec<(PathBuf, String)> = show
            .iter()
            .map(|p| (p.clone(), "--sandbox-show".to_string()))
            .collect();
        for var in show::SOURCE_VARS {
            if let Some(value) = self.env.get(var) {
                named.extend(
                    show::dirs_in_value(value)
                        .into_iter()
                        .map(|p| (p, format!("the operator's {var}"))),
                );
            }
        }
        named
            .into_iter()
            .filter_map(|(path, by)| self.show_dir(&path, &by).err().map(|e| e.to_string()))
            .collect()
    }

    /// Show `dir`, which `named_by` (a requirement file, the lock, an operator's variable)
    /// names, read-only inside the sandbox when the sandbox would hide it. A trusted build sees
    /// it; an untrusted one only when the operator allows it (`--sandbox-show`). Never
    /// shown: what the operator hid, the store, `$HOME`'s credentials (an error says which).
    pub fn show_named(&mut self, dir: &Path, named_by: &str) -> Result<(), ShowError> {
        let allowed = self.trust == Trust::Trusted || {
            let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            self.allowed.iter().any(|a| real.starts_with(a))
        };
        if !allowed && self.sandbox.active() && !self.sandbox.layout().shows(dir) {
            return Err(ShowError::Untrusted {
                path: dir.to_path_buf(),
                named_by: named_by.to_string(),
            });
        }
        self.show_dir(dir, named_by)
    }

    fn show_dir(&mut self, dir: &Path, named_by: &str) -> Result<(), ShowError> {
        if !self.sandbox.active() || self.sandbox.layout().shows(dir) {
            return Ok(());
        }
        let refused = |reason: String| ShowError::Refused {
            path: dir.to_path_buf(),
            named_by: named_by.to_string(),
            reason,
        };
        if let Some(reason) = show::kept_hidden(dir, &self.kept, self.home.as_deref()) {
            return Err(refused(reason));
        }
        self.sandbox.expose(dir).map_err(refused)?;
        tracing::info!(
            "the sandbox shows {} read-only ({named_by} names it)",
            dir.display()
        );
        Ok(())
    }

    /// Commands run directly with the allowlisted environment (no sandbox): for unit tests
    /// and for callers that have no work dir yet.
    pub fn unsandboxed(trust: Trust) -> ProjectRunner {
        ProjectRunner {
            sandbox: Sandbox::disabled(),
            env: ChildEnv::from_process(&[], trust).0,
            trust,
            test_network: Network::Allowed,
            kept: Vec::new(),
            home: None,
            allowed: Vec::new(),
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

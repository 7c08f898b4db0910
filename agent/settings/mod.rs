//! Settings: kiln.yml + `KILN_*` + flags, resolved once into typed values.
//!
//! Precedence is flags > `KILN_*` > kiln.yml > defaults, and it is written down in exactly one
//! place: [`resolve`] merges the flag layer over the environment layer ([`env::layer`]), and
//! [`RunRequest::settle`] lays the result over the kiln.yml that the checkout brought
//! ([`file::Config`]). It is two steps only because kiln.yml lives in the commit being built.
//!
//! The store URL is decided by [`store_url`], for `kiln run` and every other command.

pub mod env;
pub mod error;
pub mod file;
pub mod machine;
pub mod names;
pub mod save_on;

use std::path::{Path, PathBuf};

use crate::ci::CiEnv;
use crate::sandbox::{SandboxSettings, Trust};

pub use env::Layer;
pub use file::{
    CheckoutConfig, CheckoutMode, Compression, Config, ConfigError, Installer, ReportMode, SmtpTls,
};
pub use machine::{Credentials, Machine, RetryPolicy, StoreSettings, StoreTuning};

/// How settings read the environment: the process's (see [`process_env`]) or a test's map.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for [`Env`] parameters.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A run that could not start: bad flags, environment or config, a work dir we must not wipe.
/// Exit code 2 (see `crate::cli::exit`).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Other(String),
}

/// What to build and where, known before the checkout: the flags and `KILN_*` merged.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Path or git URL of the repository.
    pub repo: String,
    /// SHA, branch, tag or `HEAD`.
    pub rev: String,
    /// Branch for reporting state (flag, `KILN_BRANCH`, or what GitHub Actions says).
    pub branch: Option<String>,
    pub checkout: CheckoutMode,
    /// Commits of history to clone (`--checkout-depth`, `KILN_CHECKOUT_DEPTH`; 0 = all); `None`:
    /// one for a network remote, all for a local path.
    pub checkout_depth: Option<u32>,
    /// `--config` as given (relative to the current directory or the checkout).
    pub config: Option<PathBuf>,
    /// Absolute work dir, emptied at the start of each run.
    pub workdir: PathBuf,
    /// Absolute path of `--summary-json`.
    pub summary_json: Option<PathBuf>,
    /// Whether caches and report state may be saved (false for `--no-save` and fork PRs).
    pub save_allowed: bool,
    /// A pull request build (what CI says, or `KILN_PR_NUMBER` from `kiln agent`).
    pub pull_request: bool,
    /// Install only from wheels already on this machine, building nothing.
    pub offline: bool,
    /// The code being built is a fork's pull request (`--untrusted`, or what CI says).
    pub untrusted: bool,
    /// `KILN_CCACHE_BIN`: a ccache binary, or `Some("")` for none.
    pub ccache_bin: Option<String>,
    /// Where Kiln installs uv when it is not on PATH.
    pub tools_dir: PathBuf,
    /// The store a flag or `KILN_STORE` names (above kiln.yml's `cache.store`).
    named_store: Option<String>,
    /// The store when nothing names one.
    auto_store: AutoStore,
    /// This machine's tuning, credentials and sandbox binary.
    pub machine: Machine,
    /// `GITHUB_TOKEN`, for cloning from the GitHub server it belongs to (`GITHUB_SERVER_URL`,
    /// default `https://github.com`): handed to git for the checkout's clone and fetches alone.
    pub clone_auth: Option<crate::git::HttpAuth>,
    /// Flags and `KILN_*` that override kiln.yml keys.
    overrides: Layer,
}

/// Everything a run is configured with, after the checkout.
#[derive(Debug, Clone)]
pub struct Settings {
    pub request: RunRequest,
    /// kiln.yml with the overrides applied.
    pub project: Config,
    /// The cache store (see [`store_url`]).
    pub store_url: String,
    /// How the project's code runs (see [`crate::sandbox`]).
    pub sandbox: SandboxSettings,
}

/// Merge the flags over `KILN_*` (the one place they meet) and apply what CI says; `machine`
/// was read from the same environment when the command started.
pub fn resolve(
    flags: Layer,
    env: Env,
    ci: Option<&CiEnv>,
    machine: Machine,
) -> Result<RunRequest, UsageError> {
    let below = env::layer(env, &flags)?;
    let named_store = named_store(flags.store.clone(), below.store.clone());
    let l = flags.over(below);
    let repo = l.repo.clone().unwrap_or_else(|| ".".into());
    let untrusted = l.untrusted.unwrap_or(false) || ci.is_some_and(|c| c.fork);
    // Untrusted code must not write the shared cache: it could poison every later build.
    let mut save_allowed = !l.no_save.unwrap_or(false) && !l.untrusted.unwrap_or(false);
    if let Some(why) = ci.and_then(CiEnv::save_forbidden).filter(|_| save_allowed) {
        tracing::info!("{why} (untrusted code must not write to the shared cache)");
        save_allowed = false;
    }
    Ok(RunRequest {
        rev: l.rev.clone().unwrap_or_else(|| "HEAD".into()),
        // Actions builds pull requests on a detached merge commit: git cannot name the branch.
        branch: l
            .branch
            .clone()
            .or_else(|| ci.and_then(|c| c.branch.clone())),
        checkout: l.checkout.unwrap_or_default(),
        checkout_depth: l.checkout_depth,
        config: l.config.clone(),
        workdir: absolute(l.workdir.clone().unwrap_or_else(|| default_workdir(&repo))),
        summary_json: l.summary_json.clone().map(absolute),
        save_allowed,
        pull_request: ci.is_some_and(|c| c.pr_number.is_some())
            || env(names::PR_NUMBER).is_some_and(|n| !n.trim().is_empty()),
        offline: l.offline.unwrap_or(false),
        untrusted,
        ccache_bin: env::ccache_bin(env),
        tools_dir: tools_dir(env),
        clone_auth: crate::ci::clone_auth(&repo, env),
        repo,
        named_store,
        auto_store: AutoStore::from_env(env),
        machine,
        overrides: l,
    })
}

impl RunRequest {
    /// The kiln.yml this run reads: `--config` (relative to the current directory if it exists
    /// there, else to the checkout), or `kiln.yml` at the checkout's root.
    pub(crate) fn config_path(&self, checkout: &Path) -> Result<PathBuf, UsageError> {
        let path = match &self.config {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) if p.exists() => absolute(p.clone()),
            Some(p) => checkout.join(p),
            None => return Ok(checkout.join("kiln.yml")),
        };
        if !path.exists() {
            return Err(UsageError::Other(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        Ok(path)
    }

    /// The interpreter a run will most likely use, before kiln.yml is read: `KILN_PYTHON`, else
    /// the default (kiln.yml may still name another).
    pub fn likely_python(&self) -> String {
        self.overrides
            .python
            .clone()
            .unwrap_or_else(|| Config::default().python)
    }

    /// The request for one culprit-finding build: `sha` cloned into `workdir`, running
    /// `test_command`, saving nothing (no summary file, no bisection of its own).
    pub fn bisect_step(&self, sha: &str, workdir: &Path, test_command: &str) -> RunRequest {
        let mut step = self.clone();
        step.rev = sha.to_string();
        step.checkout = CheckoutMode::Clone;
        step.workdir = workdir.to_path_buf();
        step.summary_json = None;
        step.save_allowed = false;
        step.overrides.test_command = Some(test_command.to_string());
        step.overrides.bisect = Some(false);
        step
    }

    /// Load kiln.yml from the checkout and lay the flags and `KILN_*` over it.
    pub fn settle(self, checkout: &Path) -> Result<Settings, UsageError> {
        let mut project = Config::load(&self.config_path(checkout)?)?;
        apply(&self.overrides, &mut project);
        let store_url = self
            .named_store
            .clone()
            .or_else(|| non_empty(project.cache.store.as_deref()))
            .unwrap_or_else(|| self.auto_store.url());
        project.cache.store = Some(store_url.clone());
        if self.untrusted {
            untrusted_python(&project.python, checkout, &self.workdir)?;
        }
        let sandbox = self.sandbox_settings(&project);
        Ok(Settings {
            request: self,
            project,
            store_url,
            sandbox,
        })
    }

    /// The sandbox: `--sandbox` > `KILN_SANDBOX` > kiln.yml > `auto`. An untrusted build's
    /// kiln.yml was written by the fork: it cannot choose the sandbox.
    fn sandbox_settings(&self, project: &Config) -> SandboxSettings {
        let l = &self.overrides;
        let from_file = project.sandbox.filter(|_| !self.untrusted);
        if self.untrusted && project.sandbox.is_some() && l.sandbox.is_none() {
            tracing::info!("kiln.yml `sandbox:` is ignored: this build runs untrusted code");
        }
        SandboxSettings {
            mode: l.sandbox.or(from_file).unwrap_or_default(),
            hide: l.sandbox_hide.clone().unwrap_or_default(),
            sockets: l.sandbox_sockets.clone().unwrap_or_default(),
            show: l.sandbox_show.clone().unwrap_or_default(),
            trust: if self.untrusted {
                Trust::Untrusted
            } else {
                Trust::Trusted
            },
            test_network: l.test_network.unwrap_or(false),
            pass_env: project.env.clone(),
            bwrap: self.machine.bwrap.clone(),
        }
    }
}

/// Kiln runs the interpreter itself, outside the sandbox (to probe it and create the venv): for
/// untrusted code, kiln.yml's `python` must not be a program the fork brought.
fn untrusted_python(python: &str, checkout: &Path, workdir: &Path) -> Result<(), UsageError> {
    let path = Path::new(python);
    let brought = if path.components().count() == 1 {
        false // a name, looked up on Kiln's PATH
    } else {
        let resolved = std::fs::canonicalize(absolute(path.to_path_buf()))
            .unwrap_or_else(|_| absolute(path.to_path_buf()));
        [checkout, workdir].iter().any(|d| {
            let d = std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf());
            resolved.starts_with(d)
        }) || path.is_relative()
    };
    if brought {
        return Err(UsageError::Other(format!(
            "python {python:?} is a path this untrusted build could have brought; name an \
             interpreter on PATH (python3) or an absolute path outside the checkout"
        )));
    }
    Ok(())
}

/// The override layer onto kiln.yml's keys.
fn apply(l: &Layer, c: &mut Config) {
    if let Some(v) = &l.python {
        c.python = v.clone();
    }
    if let Some(v) = &l.requirements {
        c.requirements = v.clone();
    }
    if let Some(v) = &l.bootstrap_command {
        c.bootstrap.command = Some(v.clone());
    }
    if let Some(v) = l.installer {
        c.bootstrap.installer = v;
    }
    if let Some(v) = &l.test_command {
        c.test.command = v.clone();
    }
    if let Some(v) = l.test_timeout {
        c.test.timeout = Some(v);
    }
    if let Some(v) = &l.key_extra {
        c.cache.key_extra = Some(v.clone());
    }
    if let Some(v) = l.max_restore_size {
        c.cache.max_restore_size = v;
    }
    if let Some(v) = l.report_mode {
        c.report.mode = v;
    }
    if let Some(v) = l.bisect {
        c.report.bisect.enabled = Some(v);
    }
}

/// The cache store, for every command: `explicit` (a `--store` flag) > `KILN_STORE` > kiln.yml's
/// `cache.store` > `gha` under GitHub Actions with its cache service > the embedded file store.
pub fn store_url(explicit: Option<String>, file: Option<&str>, env: Env) -> String {
    named_store(explicit, env::var(env, names::STORE))
        .or_else(|| non_empty(file))
        .unwrap_or_else(|| AutoStore::from_env(env).url())
}

/// The store a flag (`explicit`) or else `KILN_STORE` (`from_env`) names.
fn named_store(explicit: Option<String>, from_env: Option<String>) -> Option<String> {
    explicit.filter(|s| !s.is_empty()).or(from_env)
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

/// The store when nothing names one: `gha` when the job has a usable GitHub Actions cache
/// service, else the embedded file store. Decided from the environment once.
#[derive(Debug, Clone)]
struct AutoStore {
    gha: bool,
    /// Why the `ACTIONS_*` variables that are set do not make a cache service, logged when the
    /// automatic store is used.
    problem: Option<String>,
}

impl AutoStore {
    fn from_env(env: Env) -> AutoStore {
        let problem = crate::ci::cache_service_problem(env);
        AutoStore {
            gha: problem.is_none() && crate::ci::CacheService::from_env(env).is_ok(),
            problem,
        }
    }

    fn url(&self) -> String {
        if let Some(why) = &self.problem {
            tracing::warn!("{why}");
        }
        if self.gha {
            "gha".into()
        } else {
            default_store_url()
        }
    }
}

/// Kiln's own tool dir, where uv goes when it is not on PATH: `KILN_TOOLS_DIR`, else
/// [`store_url`] when nothing names a store: `KILN_STORE`, `gha`, or the embedded file store.
pub fn auto_url_from(env: Env) -> String {
    store_url(None, None, env)
}

/// `~/.cache/kiln/tools`.
pub fn tools_dir(env: Env) -> PathBuf {
    if let Some(d) = env::tools_dir(env) {
        return d;
    }
    default_store_dir()
        .parent()
        .map(|p| p.join("tools"))
        .unwrap_or_else(|| PathBuf::from("/tmp/kiln-tools"))
}

/// `~/.cache/kiln/store` (or `$XDG_CACHE_HOME/kiln/store`): the embedded store, beside which
/// Kiln keeps its work dirs, tools and imported wheels.
pub fn default_store_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("kiln").join("store")
}

/// The default store URL.
pub fn default_store_url() -> String {
    format!("file://{}", default_store_dir().display())
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        return p;
    }
    std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
}

/// `~/.cache/kiln/work/<repository name>-<8 hex digits>`: one per repository. The digits hash
/// where the repository is (its real path, or its URL), so two projects run with `--repo .`,
/// or two clones with the same name, never empty each other's work dir.
fn default_workdir(repo: &str) -> PathBuf {
    let local = Path::new(repo);
    let location = if local.exists() {
        std::fs::canonicalize(local)
            .unwrap_or_else(|_| absolute(local.to_path_buf()))
            .display()
            .to_string()
    } else {
        repo.to_string()
    };
    let name = location
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit(['/', ':'])
        .next()
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .map(crate::safe_name::sanitize)
        .unwrap_or_else(|| "repo".into());
    let digest = blake3::hash(location.as_bytes()).to_hex();
    default_store_dir()
        .parent()
        .map(|p| p.join("work").join(format!("{name}-{}", &digest[..8])))
        .unwrap_or_else(|| PathBuf::from("/tmp/kiln-work"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_work_dir_is_one_per_repository() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a/proj"), t.path().join("b/proj"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let (wa, wb) = (
            default_workdir(&a.display().to_string()),
            default_workdir(&b.display().to_string()),
        );
        assert_ne!(wa, wb, "two clones named alike");
        for w in [&wa, &wb] {
            let name = w.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.starts_with("proj-") && name.len() == "proj-".len() + 8,
                "{name}"
            );
        }
        // The same repository always gets the same one, by whichever path it is named.
        assert_eq!(default_workdir(&format!("{}/", a.display())), wa);
        let url = default_workdir("https://github.com/o/proj.git");
        assert!(url
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("proj-"));
        assert_ne!(url, wa);
    }
    use std::time::Duration;

    fn settle(flags: Layer, env: Env, yml: &str) -> Settings {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kiln.yml"), yml).unwrap();
        resolve(flags, env, None, Machine::default())
            .unwrap()
            .settle(dir.path())
            .unwrap()
    }

    #[test]
    fn env_overrides_file() {
        let env = |k: &str| match k {
            "KILN_TEST_COMMAND" => Some("make test".to_string()),
            "KILN_INSTALLER" => Some("uv".to_string()),
            _ => None,
        };
        let c = settle(Layer::default(), &env, "test:\n  command: pytest\n").project;
        assert_eq!(c.test.command, "make test");
        assert_eq!(c.bootstrap.installer, Installer::Uv);
        let err = resolve(
            Layer::default(),
            &|k| (k == "KILN_INSTALLER").then(|| "x".into()),
            None,
            Machine::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("KILN_INSTALLER"));
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let env = |k: &str| match k {
            "KILN_TEST_COMMAND" => Some("from-env".to_string()),
            "KILN_TEST_TIMEOUT" => Some("5m".to_string()),
            "KILN_STORE" => Some("s3://env/p".to_string()),
            _ => None,
        };
        let flags = Layer {
            test_command: Some("from-flag".into()),
            ..Layer::default()
        };
        let yml = "test:\n  command: from-file\n  timeout: 1m\ncache:\n  store: s3://file/p\n";
        let s = settle(flags, &env, yml);
        assert_eq!(s.project.test.command, "from-flag");
        assert_eq!(s.project.test.timeout, Some(Duration::from_secs(300)));
        assert_eq!(s.store_url, "s3://env/p");
        let s = settle(Layer::default(), &|_| None, yml);
        assert_eq!(s.project.test.command, "from-file");
        assert_eq!(s.store_url, "s3://file/p");
        assert_eq!(s.request.rev, "HEAD");
        assert!(s.request.workdir.is_absolute());
    }

    #[test]
    fn store_url_has_one_order_for_every_command() {
        let gha = |k: &str| match k {
            "ACTIONS_RUNTIME_TOKEN" => Some("t".to_string()),
            "ACTIONS_RESULTS_URL" => Some("http://results/".to_string()),
            _ => None,
        };
        assert_eq!(store_url(None, None, &gha), "gha");
        assert_eq!(store_url(None, Some("s3://f/p"), &gha), "s3://f/p");
        assert_eq!(store_url(Some("file:///x".into()), None, &gha), "file:///x");
        assert!(store_url(None, None, &|_| None).starts_with("file://"));
    }

    #[test]
    fn auto_url_prefers_kiln_store_then_gha_then_file() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(a, _)| *a == k)
                    .map(|(_, b)| b.to_string())
            }
        };
        static GHA: [(&str, &str); 2] = [
            ("ACTIONS_RUNTIME_TOKEN", "t"),
            ("ACTIONS_RESULTS_URL", "https://x/"),
        ];
        assert_eq!(auto_url_from(&env(&GHA)), "gha");
        // The retired v1 service alone (GHES): Kiln speaks v2 only, so the file store.
        static V1: [(&str, &str); 2] = [
            ("ACTIONS_RUNTIME_TOKEN", "t"),
            ("ACTIONS_CACHE_URL", "https://x/"),
        ];
        assert!(auto_url_from(&env(&V1)).starts_with("file://"));
        assert_eq!(
            auto_url_from(&env(&[
                ("KILN_STORE", "s3://b/p"),
                ("ACTIONS_RUNTIME_TOKEN", "t")
            ])),
            "s3://b/p"
        );
        assert!(auto_url_from(&env(&[("ACTIONS_RUNTIME_TOKEN", "t")])).starts_with("file://"));
    }

    #[test]
    fn a_missing_explicit_config_file_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let flags = Layer {
            config: Some("no-such-kiln.yml".into()),
            ..Layer::default()
        };
        let err = resolve(flags, &|_| None, None, Machine::default())
            .unwrap()
            .settle(dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn an_untrusted_build_s_kiln_yml_cannot_choose_its_sandbox() {
        let yml = "sandbox: none\nenv: [TEST_SHARDS]\n";
        let s = settle(Layer::default(), &|_| None, yml);
        assert_eq!(s.sandbox.mode, crate::sandbox::SandboxMode::None);
        assert_eq!(s.sandbox.pass_env.len(), 1);
        let untrusted = Layer {
            untrusted: Some(true),
            ..Layer::default()
        };
        let s = settle(untrusted.clone(), &|_| None, yml);
        assert_eq!(s.sandbox.mode, crate::sandbox::SandboxMode::Auto);
        assert_eq!(s.sandbox.trust, Trust::Untrusted);
        assert!(!s.request.save_allowed, "untrusted code never saves");
        let env = |k: &str| (k == "KILN_SANDBOX").then(|| "bwrap".to_string());
        let s = settle(untrusted, &env, yml);
        assert_eq!(s.sandbox.mode, crate::sandbox::SandboxMode::Bwrap);
    }

    #[test]
    fn an_untrusted_build_cannot_name_an_interpreter_it_brought() {
        let untrusted = Layer {
            untrusted: Some(true),
            ..Layer::default()
        };
        for python in ["./evil-python", "bin/python"] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("kiln.yml"), format!("python: {python}\n")).unwrap();
            let err = resolve(untrusted.clone(), &|_| None, None, Machine::default())
                .unwrap()
                .settle(dir.path())
                .unwrap_err();
            assert!(err.to_string().contains("could have brought"), "{err}");
        }
        let s = settle(untrusted, &|_| None, "python: python3\n");
        assert_eq!(s.project.python, "python3");
    }
}

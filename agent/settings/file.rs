//! `kiln.yml`: the project's build configuration, the lowest layer of the settings.
//!
//! [`super::resolve`] lays `KILN_*` and flags over it. The file is parsed strictly:
//! an unknown key or a wrong type is an error naming `file:line:col`, because a typo that silently
//! falls back to a default is the worst kind of CI bug (the build "works", just not as configured).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::project::ProjectConfig;
use crate::sandbox::{PassName, SandboxMode};

pub use super::error::ConfigError;

/// The parser of an option word (`uv`, `problem`, `reuse`, …) for the flags and `KILN_*`: clap's
/// names for the enum's variants. kiln.yml reads the same names through serde (serde's own
/// errors point at the value's line and column); a test keeps the two spellings equal.
pub fn word<T: clap::ValueEnum>(v: &str) -> Result<T, String> {
    T::from_str(v, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|x| x.to_possible_value())
            .map(|p| format!("`{}`", p.get_name()))
            .collect();
        format!("unknown value `{v}`, expected one of {}", names.join(", "))
    })
}

/// At most this many requirement and constraint files (each becomes a pip argument).
const MAX_REQUIREMENT_FILES: usize = 1000;

/// The longest `test.command` / `bootstrap.command` (one `sh -c` argument; Linux refuses a
/// single argument above 128 KiB).
const MAX_COMMAND_BYTES: usize = 64 << 10;

/// Which tool installs wheels into the fresh virtualenv.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Installer {
    /// uv when it is on PATH or can be installed into Kiln's tool dir, else pip.
    #[default]
    Auto,
    Uv,
    Pip,
}

/// Archive compression for cache tarballs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Gzip,
}

/// How the checkout stage gets the sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CheckoutMode {
    /// A fresh clone of the exact commit into an empty directory.
    #[default]
    Clone,
    /// Use the repository directory as it is (e.g. already checked out by actions/checkout).
    Reuse,
}

/// kiln.yml's `checkout:`: a mode word (`clone`, `reuse`) or a mapping with `mode` and `depth`.
///
/// `depth` is for projects whose tests read history (`git describe`, setuptools-scm): the commits
/// a clone must hold, 0 = all. It can only add history: a clone that already holds more (a local
/// repository is cloned whole) is left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct CheckoutConfig {
    pub mode: CheckoutMode,
    pub depth: Option<u32>,
}

/// The mapping form of [`CheckoutConfig`], strictly.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckoutTable {
    #[serde(default)]
    mode: CheckoutMode,
    #[serde(default)]
    depth: Option<u32>,
}

impl<'de> Deserialize<'de> for CheckoutConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = CheckoutConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`clone`, `reuse` or a mapping with `mode` and `depth`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CheckoutConfig, E> {
                let mode = CheckoutMode::deserialize(serde::de::value::StrDeserializer::new(v))?;
                Ok(CheckoutConfig { mode, depth: None })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<CheckoutConfig, A::Error> {
                let t =
                    CheckoutTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(CheckoutConfig {
                    mode: t.mode,
                    depth: t.depth,
                })
            }
        }
        d.deserialize_any(Visit)
    }
}

/// When to tell people about the build (see the report module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReportMode {
    /// First failure after green, and "fixed" on recovery.
    #[default]
    Problem,
    /// Every failing build.
    Failing,
    /// Every change of state.
    Change,
    /// Every build.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    #[default]
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// A project's own bootstrap command, run with Kiln's environment instead of the built-in one.
    pub command: Option<String>,
    pub installer: Installer,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TestConfig {
    pub command: String,
    /// e.g. "30m", "90s".
    #[serde(with = "humantime_serde_opt")]
    pub timeout: Option<Duration>,
    /// How many times failing tests are re-run (only those tests, in a fresh process) before
    /// they count as failures; 0 turns flaky-test detection off.
    pub rerun_failures: u32,
    /// The command that re-runs some tests: `{tests}` is replaced by their shell-quoted ids
    /// (also in `$KILN_RERUN_TESTS`, one per line). Default: `python -m pytest {tests}` when
    /// the test command runs pytest; other runners need this hook to get re-runs.
    pub rerun_command: Option<String>,
    /// What a build whose only failures are flaky tests is: `pass` (default) or `fail`.
    pub flaky: FlakyPolicy,
}

/// What a build whose only failing tests passed on a re-run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FlakyPolicy {
    #[default]
    Pass,
    Fail,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self {
            command: "python -m pytest".into(),
            timeout: Some(Duration::from_secs(60 * 60)),
            rerun_failures: 1,
            rerun_command: None,
            flaky: FlakyPolicy::Pass,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WheelhouseConfig {
    /// Drop wheels not used for this long (e.g. "30d"). None = no age limit.
    #[serde(with = "humantime_serde_opt")]
    pub max_age: Option<Duration>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CcacheConfig {
    /// ccache's own max size, e.g. "500M", "2G".
    pub max_size: String,
    /// ccache remote storage (`redis://host:port`, `http://host/path`).
    pub remote: Option<String>,
}

impl Default for CcacheConfig {
    fn default() -> Self {
        Self {
            max_size: "1G".into(),
            remote: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Storage URL; None = `KILN_STORE`, then `gha` under Actions, then the embedded file store.
    pub store: Option<String>,
    /// Salt mixed into every cache key.
    pub key_extra: Option<String>,
    pub compression: Compression,
    /// zstd level (1-19) or gzip level (1-9); None = codec default.
    pub level: Option<i32>,
    pub wheelhouse: WheelhouseConfig,
    pub ccache: CcacheConfig,
    /// Also cache pip's download cache.
    pub pip_cache: bool,
    /// Also publish each wheel of the wheelhouse into the store (`wheels/…`) after a run, so
    /// `kiln index serve` can hand them to pip and uv.
    pub publish_wheels: bool,
    /// The most one restore may write ("20G"); an archive declaring or expanding to more is a
    /// miss.
    #[serde(with = "size_serde")]
    pub max_restore_size: u64,
    /// The most entries (files, directories, links) one restore may create.
    pub max_restore_entries: u64,
    /// Branches (names or globs) whose builds save caches; empty = every build that may save.
    /// Pull requests never match.
    pub save_on: Vec<super::save_on::BranchPattern>,
}

/// How much one restore may write, whatever its manifest says (`cache.max_restore_size`,
/// `cache.max_restore_entries`). An archive above either is a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreLimits {
    /// Bytes of the uncompressed archive (and of the compressed download).
    pub max_bytes: u64,
    /// Entries of every kind: files, directories, links.
    pub max_entries: u64,
}

impl RestoreLimits {
    pub const DEFAULT_MAX_BYTES: u64 = 20 << 30;
    pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
}

impl Default for RestoreLimits {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_entries: Self::DEFAULT_MAX_ENTRIES,
        }
    }
}

impl CacheConfig {
    /// The bounds every restore of this run keeps.
    pub fn restore_limits(&self) -> RestoreLimits {
        RestoreLimits {
            max_bytes: self.max_restore_size,
            max_entries: self.max_restore_entries,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            store: None,
            key_extra: None,
            compression: Compression::Zstd,
            level: None,
            wheelhouse: WheelhouseConfig::default(),
            ccache: CcacheConfig::default(),
            pip_cache: false,
            publish_wheels: true,
            max_restore_size: RestoreLimits::DEFAULT_MAX_BYTES,
            max_restore_entries: RestoreLimits::DEFAULT_MAX_ENTRIES,
            save_on: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `smtp://host:port`; user/password from KILN_SMTP_USER / KILN_SMTP_PASSWORD.
    pub smtp: Option<String>,
    pub from: Option<String>,
    pub tls: SmtpTls,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GithubConfig {
    /// Post statuses, check runs and comments when a token is available.
    pub enabled: bool,
}

impl Default for GithubConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    pub mode: ReportMode,
    pub email: EmailConfig,
    pub github: GithubConfig,
    pub bisect: BisectConfig,
}

/// Culprit finding: bisect a failing range of several commits to the first failing one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BisectConfig {
    /// Unset: on in `problem` mode (the default), off in the others; `--no-bisect`,
    /// `KILN_BISECT=0` or `enabled: false` turn it off, `--bisect` or `true` on.
    pub enabled: Option<bool>,
    /// At most this many builds per bisection; past it Kiln blames the whole range.
    pub max_steps: u32,
}

impl Default for BisectConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            max_steps: 8,
        }
    }
}

#[cfg(test)]
#[test]
fn bisection_is_on_by_default_in_problem_mode_only() {
    let d = BisectConfig::default();
    assert!(d.on(ReportMode::Problem));
    assert!(!d.on(ReportMode::Failing) && !d.on(ReportMode::All) && !d.on(ReportMode::Change));
    let off = BisectConfig {
        enabled: Some(false),
        ..d.clone()
    };
    assert!(!off.on(ReportMode::Problem));
    let on = BisectConfig {
        enabled: Some(true),
        ..d
    };
    assert!(on.on(ReportMode::Failing));
}

impl BisectConfig {
    /// Whether a failing range of several commits is bisected under `mode`: by default in
    /// `problem` mode only (the one that tells the culprits once).
    pub fn on(&self, mode: ReportMode) -> bool {
        self.enabled.unwrap_or(mode == ReportMode::Problem)
    }
}

/// The whole `kiln.yml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Interpreter used to create the venv.
    pub python: String,
    /// Requirement files (relative to the checkout); they may hold pip options.
    pub requirements: Vec<PathBuf>,
    /// Constraint files, hashed into the wheelhouse key and passed with `-c`.
    pub constraints: Vec<PathBuf>,
    /// `clone` / `reuse`, or `{mode, depth}` (see [`CheckoutConfig`]).
    pub checkout: CheckoutConfig,
    /// What the project is: dependency source, extras/groups, how it is installed.
    pub project: ProjectConfig,
    pub bootstrap: BootstrapConfig,
    pub test: TestConfig,
    pub cache: CacheConfig,
    pub report: ReportConfig,
    /// How the project's code runs: auto | bwrap | none (ignored for untrusted builds, whose
    /// kiln.yml the fork wrote; see docs/security.md).
    pub sandbox: Option<SandboxMode>,
    /// Variables of Kiln's environment passed to the project's code (the rest never is).
    pub env: Vec<PassName>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            python: "python3".into(),
            requirements: vec![PathBuf::from("requirements.txt")],
            constraints: Vec::new(),
            checkout: CheckoutConfig::default(),
            project: ProjectConfig::default(),
            bootstrap: BootstrapConfig::default(),
            test: TestConfig::default(),
            cache: CacheConfig::default(),
            report: ReportConfig::default(),
            sandbox: None,
            env: Vec::new(),
        }
    }
}

impl Config {
    /// Parse `text` as the contents of `path` (used only for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let config: Config = parse_yaml(text, path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Load `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match crate::yaml::read(path)? {
            Some(text) => Config::parse(&text, path),
            None => Ok(Config::default()),
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if self.python.trim().is_empty() {
            return Err(invalid("`python` must name an interpreter".into()));
        }
        if self.test.command.trim().is_empty() {
            return Err(invalid("`test.command` must not be empty".into()));
        }
        let files = self.requirements.len() + self.constraints.len();
        if files > MAX_REQUIREMENT_FILES {
            return Err(invalid(format!(
                "`requirements` and `constraints` name {files} files; at most {MAX_REQUIREMENT_FILES}"
            )));
        }
        for (key, command) in [
            ("test.command", Some(&self.test.command)),
            ("bootstrap.command", self.bootstrap.command.as_ref()),
        ] {
            if command.is_some_and(|c| c.len() > MAX_COMMAND_BYTES) {
                return Err(invalid(format!(
                    "`{key}` is longer than {} KiB",
                    MAX_COMMAND_BYTES >> 10
                )));
            }
        }
        for req in self.requirements.iter().chain(&self.constraints) {
            if req.is_absolute()
                || req
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                return Err(invalid(format!(
                    "requirement file {} must be a path inside the checkout",
                    crate::yaml::short(&req.display().to_string())
                )));
            }
        }
        if let Some(level) = self.cache.level {
            let range = match self.cache.compression {
                Compression::Zstd => 1..=19,
                Compression::Gzip => 1..=9,
            };
            if !range.contains(&level) {
                return Err(invalid(format!(
                    "cache.level {level} is out of range {}..={} for {:?}",
                    range.start(),
                    range.end(),
                    self.cache.compression
                )));
            }
        }
        Ok(())
    }
}

/// Deserialize YAML strictly and within bounds (see [`crate::yaml`]), errors as
/// `file:line:col: message`. Shared by every YAML file Kiln reads (kiln.yml, agent.yml).
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, ConfigError> {
    crate::yaml::parse(text, path)
}

/// A byte count written as a size ("20G", "500M") or a plain number of bytes.
pub(crate) mod size_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Size {
            Bytes(u64),
            Text(String),
        }
        match Size::deserialize(d)? {
            Size::Bytes(n) => Ok(n),
            Size::Text(s) => crate::size::parse_size(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// `Option<Duration>` as a humantime string ("90s", "30m", "7d").
pub(crate) mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => humantime::parse_duration(&s)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("kiln.yml"))
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(parse("# only a comment\n").unwrap(), Config::default());
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            "python: python3.11\nrequirements: [req/a.txt, req/b.txt]\nbootstrap:\n  installer: pip\ntest:\n  command: pytest -x\n  timeout: 90s\ncache:\n  store: s3://b/p\n  key_extra: v2\n",
        )
        .unwrap();
        assert_eq!(c.python, "python3.11");
        assert_eq!(c.requirements.len(), 2);
        assert_eq!(c.bootstrap.installer, Installer::Pip);
        assert_eq!(c.test.timeout, Some(Duration::from_secs(90)));
        assert_eq!(c.cache.store.as_deref(), Some("s3://b/p"));
    }

    #[test]
    fn project_section_parses_and_names_bad_values_by_line() {
        let c = parse(
            "project:\n  source: uv.lock\n  groups: [test]\n  extras: [speed]\n  install: wheel\n",
        )
        .unwrap();
        assert_eq!(c.project.source, crate::project::SourceChoice::UvLock);
        assert_eq!(c.project.groups, Some(vec!["test".to_string()]));
        assert_eq!(c.project.install, Some(crate::project::InstallMode::Wheel));
        let err = parse("project:\n  install: sometimes\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("kiln.yml:2:"), "{err}");
        assert!(err.contains("editable"), "{err}");
        let err = parse("project:\n  source: poetry.lock\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("kiln.yml:2:"), "{err}");
        let err = parse("project:\n  extra: [x]\n").unwrap_err().to_string();
        assert!(err.starts_with("kiln.yml:2:3:"), "{err}");
    }

    #[test]
    fn checkout_is_a_mode_word_or_a_mapping_with_a_depth() {
        assert_eq!(
            parse("checkout: reuse\n").unwrap().checkout.mode,
            CheckoutMode::Reuse
        );
        let c = parse("checkout:\n  depth: 50\n").unwrap().checkout;
        assert_eq!((c.mode, c.depth), (CheckoutMode::Clone, Some(50)));
        let c = parse("checkout: {mode: clone, depth: 0}\n")
            .unwrap()
            .checkout;
        assert_eq!(c.depth, Some(0));
        for (text, at) in [
            (
                "python: python3\ncheckout:\n  depth: -1\n",
                "kiln.yml:3:10:",
            ),
            ("checkout:\n  depth: many\n", "kiln.yml:2:10:"),
            ("checkout:\n  depht: 5\n", "kiln.yml:2:3:"),
            ("checkout: sometimes\n", "kiln.yml:1:11:"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with(at), "{text:?}: {err}");
        }
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let err = parse("python: python3\ntest:\n  comand: pytest\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("kiln.yml:3:3: "), "{msg}");
        assert!(msg.contains("comand"), "{msg}");
    }

    #[test]
    fn wrong_type_names_line_and_column() {
        let err = parse("requirements: 5\n").unwrap_err().to_string();
        assert!(err.starts_with("kiln.yml:1:"), "{err}");
        let err = parse("test:\n  timeout: soon\n").unwrap_err().to_string();
        assert!(err.starts_with("kiln.yml:2:"), "{err}");
        assert!(err.contains("invalid duration"), "{err}");
    }

    #[test]
    fn bad_installer_is_rejected() {
        let err = parse("bootstrap:\n  installer: conda\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("kiln.yml:2:14"), "{err}");
    }

    fn same_words<T>()
    where
        T: clap::ValueEnum + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        for v in T::value_variants() {
            let name = v.to_possible_value().unwrap().get_name().to_string();
            let from_yaml: T = serde_yaml::from_str(&name).unwrap();
            assert_eq!(&from_yaml, v, "{name}");
            assert_eq!(&word::<T>(&name).unwrap(), v, "{name}");
        }
    }

    #[test]
    fn flags_env_and_file_spell_every_option_word_alike() {
        same_words::<Installer>();
        same_words::<Compression>();
        same_words::<CheckoutMode>();
        same_words::<ReportMode>();
    }

    #[test]
    fn requirement_outside_checkout_is_rejected() {
        let err = parse("requirements: [../x.txt]\n").unwrap_err().to_string();
        assert!(err.contains("inside the checkout"), "{err}");
    }
}

//! `agent.yml`: which repositories the agent builds, where their tokens come from, and the
//! defaults for every build.
//!
//! Parsed strictly like `kiln.yml` (unknown keys and wrong types are errors naming
//! `file:line:col`): a misspelt `branches` that silently built nothing would look like a healthy
//! agent. Tokens are never in this file, only where to read them (an environment variable or a
//! file), read again at every build so rotation needs no restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sandbox::SandboxMode;
use crate::settings::file::{parse_yaml, ConfigError};

/// Where a repository's GitHub token comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenSource {
    /// Name of an environment variable of the agent process.
    Env(String),
    /// A file holding the token (surrounding whitespace ignored).
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("environment variable {0} (token_env) is not set or empty")]
    EnvMissing(String),
    #[error("cannot read token file {path} (token_file): {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {0} (token_file) is empty")]
    FileEmpty(PathBuf),
}

impl TokenSource {
    /// Read the token now. The error names the source, never the value.
    pub fn read(&self) -> Result<String, TokenError> {
        match self {
            TokenSource::Env(var) => std::env::var(var)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| TokenError::EnvMissing(var.clone())),
            TokenSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| TokenError::File {
                    path: path.clone(),
                    source,
                })?;
                let t = text.trim();
                if t.is_empty() {
                    return Err(TokenError::FileEmpty(path.clone()));
                }
                Ok(t.to_string())
            }
        }
    }
}

/// Settings every repository inherits unless it sets its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Cache store URL passed to `kiln run --store`.
    pub store: Option<String>,
    /// Per-job timeout, e.g. "45m" (the `--job-timeout` flag overrides this default).
    #[serde(with = "crate::settings::file::humantime_serde_opt")]
    pub timeout: Option<Duration>,
    /// Branch patterns to build on push; default: the repository's default branch.
    pub branches: Option<Vec<String>>,
    /// Build pull requests (opened, synchronize, reopened). Default true.
    pub pull_requests: Option<bool>,
    /// Report as this GitHub App (installation tokens, check runs) instead of a token.
    pub github_app: Option<AppSettings>,
}

/// One repository entry as written in the file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct RepoEntry {
    /// `owner/name` as on GitHub.
    name: String,
    /// What `kiln run --repo` clones; default `https://github.com/<owner>/<name>.git`.
    #[serde(default)]
    clone_url: Option<String>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    branches: Option<Vec<String>>,
    #[serde(default)]
    store: Option<String>,
    #[serde(default, with = "crate::settings::file::humantime_serde_opt")]
    timeout: Option<Duration>,
    #[serde(default)]
    pull_requests: Option<bool>,
    /// Give fork pull request builds the token too (they run code from outside the repository,
    /// which could read it). Default false.
    #[serde(default)]
    fork_token: bool,
    #[serde(default)]
    github_app: Option<AppSettings>,
}

/// `web:`: who may see the agent's web page. The token is read from the environment or a file
/// (never the webhook secret); without one the page is refused unless `public`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Anyone may read the pages (retry and cancel still need the token).
    pub public: bool,
}

impl WebConfig {
    /// The access token, if one is configured (read now: rotation needs a restart).
    pub fn token(&self) -> Result<Option<String>, TokenError> {
        match (&self.token_env, &self.token_file) {
            (Some(v), _) => TokenSource::Env(v.clone()).read().map(Some),
            (None, Some(p)) => TokenSource::File(p.clone()).read().map(Some),
            (None, None) => Ok(None),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    /// Where people reach this agent, e.g. `https://ci.example.com`: builds link their commit
    /// statuses to `<public_url>/jobs/<id>/log`.
    public_url: Option<String>,
    /// File holding the token `/jobs`, job logs and `/metrics` require.
    api_token_file: Option<PathBuf>,
    /// Serve `/jobs`, job logs and `/metrics` to anyone (no token).
    public_api: bool,
    /// How builds run the project's code: auto | bwrap | none (fork pull requests: bwrap).
    sandbox: crate::sandbox::SandboxMode,
    /// Build fork pull requests even where bubblewrap cannot run (accepting the risk).
    allow_unsandboxed_forks: bool,
    /// Let the tests of fork pull requests reach the network.
    fork_test_network: bool,
    /// Host unix sockets builds may still reach (paths, or `@name`: every abstract socket).
    sandbox_sockets: Vec<String>,
    /// The most a job's log keeps, e.g. `50MiB` (the middle of a longer one is left out).
    job_log_max: Option<String>,
    defaults: Defaults,
    repositories: Vec<RepoEntry>,
    web: WebConfig,
}

/// A repository, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoConfig {
    pub full_name: String,
    pub clone_url: String,
    pub token: Option<TokenSource>,
    /// None = the repository's default branch (from the payload or the API).
    pub branches: Option<Vec<String>>,
    pub store: Option<String>,
    /// Per-repository timeout from the file (wins over `--job-timeout`).
    pub timeout: Option<Duration>,
    pub pull_requests: bool,
    pub fork_token: bool,
    /// Builds get an installation token of this App (wins over `token`).
    pub github_app: Option<AppSettings>,
}

impl RepoConfig {
    /// Should a push to `branch` be built? `default_branch` is the repository's, when known.
    pub fn builds_branch(&self, branch: &str, default_branch: Option<&str>) -> bool {
        match &self.branches {
            Some(patterns) => patterns.iter().any(|p| glob_match(p, branch)),
            None => default_branch == Some(branch),
        }
    }
}

/// The whole agent configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentConfig {
    pub public_url: Option<String>,
    pub api_token_file: Option<PathBuf>,
    pub public_api: bool,
    pub sandbox: SandboxPolicy,
    pub defaults: Defaults,
    pub repositories: Vec<RepoConfig>,
    pub web: WebConfig,
    /// Host unix sockets the project's code may still reach (`sandbox_sockets:`).
    pub sandbox_sockets: Vec<String>,
    /// The most a job's log keeps of its build's output, in bytes (`job_log_max:`).
    pub job_log_max: u64,
    /// The value of every `*_file` key anywhere in the file (token, private key, password
    /// files): secrets the project's code must never read, wherever they live.
    pub secret_files: Vec<PathBuf>,
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = crate::yaml::read(path)?.ok_or_else(|| ConfigError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        })?;
        AgentConfig::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
        let file: FileConfig = if text.trim().is_empty() {
            FileConfig::default()
        } else {
            parse_yaml(text, path)?
        };
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if file.repositories.is_empty() {
            return Err(invalid(
                "no `repositories` configured: list at least one `- name: owner/name`".into(),
            ));
        }
        let mut repos: Vec<RepoConfig> = Vec::new();
        for (i, r) in file.repositories.into_iter().enumerate() {
            let n = i + 1;
            let parts: Vec<&str> = r.name.split('/').collect();
            if parts.len() != 2 || parts.iter().any(|p| p.trim().is_empty()) {
                return Err(invalid(format!(
                    "repositories[{n}].name {:?} must be owner/name",
                    r.name
                )));
            }
            if repos
                .iter()
                .any(|x| x.full_name.eq_ignore_ascii_case(&r.name))
            {
                return Err(invalid(format!(
                    "repositories[{n}]: {} is listed twice",
                    r.name
                )));
            }
            let token = match (r.token_env, r.token_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "repositories[{n}] ({}): set token_env or token_file, not both",
                        r.name
                    )))
                }
                (Some(v), None) if v.trim().is_empty() => {
                    return Err(invalid(format!(
                        "repositories[{n}] ({}): token_env must name a variable",
                        r.name
                    )))
                }
                (Some(v), None) => Some(TokenSource::Env(v)),
                (None, Some(p)) => Some(TokenSource::File(p)),
                (None, None) => None,
            };
            let branches = r.branches.or_else(|| file.defaults.branches.clone());
            if let Some(b) = &branches {
                if b.is_empty() || b.iter().any(|p| p.trim().is_empty()) {
                    return Err(invalid(format!(
                        "repositories[{n}] ({}): branches must be a non-empty list of names or patterns",
                        r.name
                    )));
                }
            }
            repos.push(RepoConfig {
                clone_url: r
                    .clone_url
                    .unwrap_or_else(|| format!("https://github.com/{}.git", r.name)),
                full_name: r.name,
                token,
                branches,
                store: r.store.or_else(|| file.defaults.store.clone()),
                timeout: r.timeout,
                pull_requests: r
                    .pull_requests
                    .or(file.defaults.pull_requests)
                    .unwrap_or(true),
                fork_token: r.fork_token,
                github_app: r.github_app.or_else(|| file.defaults.github_app.clone()),
            });
        }
        if let Some(u) = &file.public_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(invalid(format!(
                    "public_url {u:?} must be an http:// or https:// URL"
                )));
            }
        }
        let job_log_max = match &file.job_log_max {
            None => super::job_log::DEFAULT_MAX,
            Some(s) => match crate::size::parse_size(s) {
                Ok(n) if n >= super::job_log::MIN_MAX => n,
                Ok(_) => {
                    return Err(invalid(format!(
                        "job_log_max {s:?} is below the minimum of 16KiB"
                    )))
                }
                Err(e) => return Err(invalid(format!("job_log_max {s:?}: {e}"))),
            },
        };
        if file.web.token_env.is_some() && file.web.token_file.is_some() {
            return Err(invalid("web: set token_env or token_file, not both".into()));
        }
        Ok(AgentConfig {
            public_url: file.public_url.map(|u| u.trim_end_matches('/').to_string()),
            api_token_file: file.api_token_file,
            public_api: file.public_api,
            sandbox: SandboxPolicy {
                mode: file.sandbox,
                allow_unsandboxed_forks: file.allow_unsandboxed_forks,
                fork_test_network: file.fork_test_network,
            },
            defaults: file.defaults,
            repositories: repos,
            web: file.web,
            sandbox_sockets: file.sandbox_sockets,
            job_log_max,
            secret_files: secret_files(text),
        })
    }

    /// The repository named `full_name` (GitHub names are case-insensitive).
    pub fn repo(&self, full_name: &str) -> Option<&RepoConfig> {
        self.repositories
            .iter()
            .find(|r| r.full_name.eq_ignore_ascii_case(full_name))
    }
}

/// Every string value of a key ending in `_file`, at any depth of the (already validated)
/// document: a new `*_file` setting is hidden from builds without anyone remembering to.
fn secret_files(text: &str) -> Vec<PathBuf> {
    fn walk(v: &serde_yaml::Value, out: &mut Vec<PathBuf>) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                for (k, v) in m {
                    match (k.as_str(), v.as_str()) {
                        (Some(k), Some(p)) if k.ends_with("_file") && !p.trim().is_empty() => {
                            out.push(PathBuf::from(p.trim()))
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_yaml::Value::Sequence(items) => items.iter().for_each(|v| walk(v, out)),
            serde_yaml::Value::Tagged(t) => walk(&t.value, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        walk(&v, &mut out);
    }
    out
}

/// `*` matches any run of characters (including `/`); everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The `github_app:` block of agent.yml.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    pub app_id: u64,
    pub private_key_file: PathBuf,
    /// Skips the per-repository installation lookup when set.
    #[serde(default)]
    pub installation_id: Option<u64>,
}

/// The `sandbox:`, `allow_unsandboxed_forks:` and `fork_test_network:` keys of agent.yml.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// How trusted builds (pushes, same-repository pull requests) run the project's code.
    pub mode: SandboxMode,
    /// Build a fork's pull request even when bubblewrap cannot run here (its code then runs as
    /// the agent's user and can read everything the agent can).
    pub allow_unsandboxed_forks: bool,
    /// Let the tests of a fork's pull request reach the network (its bootstrap always may
    /// download what the wheelhouse lacks).
    pub fork_test_network: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(t, Path::new("agent.yml"))
    }

    #[test]
    fn full_file_with_defaults() {
        let c = parse(
            "defaults:\n  store: file:///s\n  timeout: 10m\n  branches: [main]\nrepositories:\n  - name: octo/hello\n    token_env: HELLO_TOKEN\n  - name: octo/other\n    clone_url: /srv/git/other\n    token_file: /etc/kiln/token\n    branches: ['release/*']\n    store: s3://b/p\n    timeout: 5m\n    pull_requests: false\n",
        )
        .unwrap();
        let a = c.repo("OCTO/Hello").unwrap();
        assert_eq!(a.clone_url, "https://github.com/octo/hello.git");
        assert_eq!(a.token, Some(TokenSource::Env("HELLO_TOKEN".into())));
        assert_eq!(a.store.as_deref(), Some("file:///s"));
        assert!(a.builds_branch("main", None));
        assert!(!a.builds_branch("dev", Some("dev")));
        assert!(a.pull_requests);
        let b = c.repo("octo/other").unwrap();
        assert_eq!(b.timeout, Some(Duration::from_secs(300)));
        assert!(b.builds_branch("release/1.2", None));
        assert!(!b.builds_branch("main", Some("main")));
        assert!(!b.pull_requests);
        assert_eq!(c.defaults.timeout, Some(Duration::from_secs(600)));
    }

    #[test]
    fn unset_branches_means_the_default_branch() {
        let c = parse("repositories:\n  - name: o/r\n").unwrap();
        let r = c.repo("o/r").unwrap();
        assert!(r.builds_branch("trunk", Some("trunk")));
        assert!(!r.builds_branch("feature", Some("trunk")));
    }

    #[test]
    fn typos_name_line_and_column() {
        let e = parse("repositories:\n  - name: o/r\n    branchs: [main]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("agent.yml:3:5: "), "{e}");
        assert!(e.contains("branchs"), "{e}");
        let e = parse("defaults:\n  timeout: soon\nrepositories: []\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("agent.yml:2:"), "{e}");
    }

    #[test]
    fn invalid_entries_are_refused() {
        for (text, needle) in [
            ("repositories: []\n", "no `repositories`"),
            ("repositories:\n  - name: justname\n", "owner/name"),
            (
                "repositories:\n  - name: o/r\n    token_env: A\n    token_file: /b\n",
                "not both",
            ),
            ("repositories:\n  - name: o/r\n  - name: O/R\n", "twice"),
            (
                "public_url: ci.example\nrepositories:\n  - name: o/r\n",
                "public_url",
            ),
            (
                "repositories:\n  - name: o/r\n    branches: []\n",
                "branches",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn every_file_key_is_a_secret_file() {
        let c = parse(
            "api_token_file: /srv/api.token\nweb:\n  token_file: /opt/web.token\ndefaults:\n  github_app:\n    app_id: 1\n    private_key_file: /var/app.pem\nrepositories:\n  - name: o/r\n    token_file: /x/r.token\n    github_app:\n      app_id: 2\n      private_key_file: /y/b.pem\n",
        )
        .unwrap();
        let mut got: Vec<String> = c
            .secret_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                "/opt/web.token",
                "/srv/api.token",
                "/var/app.pem",
                "/x/r.token",
                "/y/b.pem"
            ]
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "any/thing"));
        assert!(glob_match("release/*", "release/1.0"));
        assert!(!glob_match("release/*", "releases/1.0"));
        assert!(glob_match("*-stable", "2.0-stable"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn token_errors_never_contain_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "  s3cret\n").unwrap();
        assert_eq!(TokenSource::File(f).read().unwrap(), "s3cret");
        let e = TokenSource::Env("KILN_TEST_SURELY_UNSET_VAR".into())
            .read()
            .unwrap_err();
        assert!(e.to_string().contains("KILN_TEST_SURELY_UNSET_VAR"));
    }
}

//! The environment of untrusted children (the project's builds, installs and tests), built by
//! allowlist in this one place.
//!
//! Kiln's own process holds secrets a build must never see: `GITHUB_TOKEN` (reports),
//! `KILN_SMTP_PASSWORD` (email), store credentials (`AWS_*`), and under `kiln agent` the webhook
//! secret and other repositories' tokens. Removing known names (a denylist) misses every secret
//! nobody listed, so a child starts from nothing and gets a fixed set of harmless variables, the
//! variables Kiln sets for the build (venv, ccache, pip), and what `kiln.yml` `env:` names.
//!
//! For untrusted code (a fork's pull request, whose `kiln.yml` the fork wrote) two more rules
//! hold: a named variable that looks like a secret is dropped with a warning, and a value that
//! carries URL credentials (`https://user:pass@host`) is dropped as well.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

use serde::{Deserialize, Serialize};

use crate::process::Cmd;
use crate::settings::names;

/// How far the code being built is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trust {
    /// Pushed by someone with write access: `kiln.yml` `env:` is honoured as written.
    #[default]
    Trusted,
    /// A fork's pull request: secret-looking names and credentials in values are dropped.
    Untrusted,
}

/// Variables every child gets from Kiln's environment when they are set: locale, terminal,
/// proxies and package indexes (a build must download), compiler flags, reproducibility knobs.
const ALLOWED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TZ",
    "NO_COLOR",
    "FORCE_COLOR",
    "COLUMNS",
    "CI",
    "SOURCE_DATE_EPOCH",
    "PYTHONHASHSEED",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONIOENCODING",
    "PYTHONWARNINGS",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    // Where packages come from besides the index (a local mirror, an offline vendor dir).
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "CC",
    "CXX",
    "CFLAGS",
    "CXXFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "MAKEFLAGS",
    "PKG_CONFIG_PATH",
    // Where and what is being built: CI-neutral facts, no tokens, no files that steer later steps.
    "GITHUB_ACTIONS",
    "GITHUB_REPOSITORY",
    "GITHUB_SHA",
    "GITHUB_REF",
    "GITHUB_REF_NAME",
    "GITHUB_HEAD_REF",
    "GITHUB_BASE_REF",
    "GITHUB_EVENT_NAME",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_NUMBER",
    "GITHUB_SERVER_URL",
    "RUNNER_OS",
    "RUNNER_ARCH",
    names::PR_NUMBER,
    names::HEAD_SHA,
    names::GITHUB_REPOSITORY,
    names::BRANCH,
    // The agent finds and kills a build's processes by this marker (not a secret).
    names::AGENT_JOB,
];

fn allowed(name: &str) -> bool {
    ALLOWED.contains(&name) || name.starts_with("LC_")
}

/// Names no configuration can pass: Kiln's own settings and secrets (`KILN_*` but the few facts
/// about the build in [`ALLOWED`]; Kiln sets what a build needs itself), GitHub's tokens, and
/// the Actions files and tokens through which a step could change later steps (`GITHUB_ENV`,
/// `GITHUB_PATH`, `ACTIONS_RUNTIME_TOKEN`, …).
pub fn never_passed(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GITHUB_ENV",
        "GITHUB_PATH",
        "GITHUB_OUTPUT",
        "GITHUB_STATE",
        "GITHUB_STEP_SUMMARY",
    ];
    (EXACT.contains(&name) || name.starts_with(names::PREFIX) || name.starts_with("ACTIONS_"))
        && !allowed(name)
}

/// A name that, by convention, holds a credential.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    const WORDS: &[&str] = &[
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "_PASS",
        "CREDENTIAL",
        "PRIVATE",
        "APIKEY",
        "API_KEY",
        "_KEY",
        "AUTH",
        "SESSION",
        "COOKIE",
    ];
    const PREFIXES: &[&str] = &[
        "AWS_",
        "AZURE_",
        "GOOGLE_",
        "GCP_",
        "GCLOUD_",
        "CLOUDSDK_",
        "VAULT_",
        "DOCKER_",
    ];
    WORDS.iter().any(|w| upper.contains(w)) || PREFIXES.iter().any(|p| upper.starts_with(p))
}

/// `scheme://user[:password]@host…`: a value that carries credentials.
pub fn has_url_credentials(value: &OsStr) -> bool {
    let v = value.to_string_lossy();
    v.match_indices("://").any(|(i, _)| {
        let rest = &v[i + 3..];
        let authority = rest
            .split(['/', '?', '#', ' ', ',', ';'])
            .next()
            .unwrap_or("");
        authority.contains('@')
    })
}

/// One variable name in `kiln.yml` `env:`, checked while parsing so that a bad one is an error
/// naming `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PassName(String);

impl PassName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for PassName {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            let shown: String = name.chars().take(40).collect();
            return Err(format!(
                "entries are variable names (letters, digits, `_`), not {shown:?}"
            ));
        }
        if never_passed(name) {
            return Err(format!(
                "{name} cannot be passed: Kiln's own settings and tokens never reach the \
                 project's code (Kiln sets the variables a build needs itself)"
            ));
        }
        Ok(PassName(name.to_string()))
    }
}

impl<'de> Deserialize<'de> for PassName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The complete environment of an untrusted child. Start from [`ChildEnv::inherit`], add Kiln's
/// own variables with [`ChildEnv::set`], hand it to a command with [`ChildEnv::apply`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChildEnv {
    vars: BTreeMap<OsString, OsString>,
}

impl ChildEnv {
    /// The allowed part of `parent`, plus the variables `pass` names. Returns the warnings to
    /// show (a named variable dropped because the code is untrusted).
    pub fn inherit<I>(parent: I, pass: &[PassName], trust: Trust) -> (ChildEnv, Vec<String>)
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        let mut warnings = Vec::new();
        let mut vars = BTreeMap::new();
        for (k, v) in parent {
            let Some(name) = k.to_str() else { continue };
            let named = pass.iter().any(|p| p.as_str() == name);
            if !(allowed(name) || named) || never_passed(name) {
                continue;
            }
            if trust == Trust::Untrusted {
                if named && !allowed(name) && looks_secret(name) {
                    warnings.push(format!(
                        "kiln.yml env: {name} looks like a secret and this build runs untrusted \
                         code (a fork's pull request): not passed"
                    ));
                    continue;
                }
                if has_url_credentials(&v) {
                    warnings.push(format!(
                        "{name} carries URL credentials and this build runs untrusted code: \
                         not passed"
                    ));
                    continue;
                }
            }
            vars.insert(k, v);
        }
        (ChildEnv { vars }, warnings)
    }

    /// [`ChildEnv::inherit`] from this process's environment.
    pub fn from_process(pass: &[PassName], trust: Trust) -> (ChildEnv, Vec<String>) {
        Self::inherit(std::env::vars_os(), pass, trust)
    }

    /// Set a variable Kiln chose (the venv, ccache, pip and JUnit settings).
    pub fn set(&mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> &mut Self {
        self.vars.insert(k.into(), v.into());
        self
    }

    pub fn extend<I: IntoIterator<Item = (OsString, OsString)>>(&mut self, vars: I) -> &mut Self {
        self.vars.extend(vars);
        self
    }

    pub fn remove(&mut self, k: &str) -> &mut Self {
        self.vars.remove(OsStr::new(k));
        self
    }

    pub fn get(&self, k: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(k)).map(OsString::as_os_str)
    }

    pub fn names(&self) -> impl Iterator<Item = &OsStr> {
        self.vars.keys().map(OsString::as_os_str)
    }

    pub fn to_vec(&self) -> Vec<(OsString, OsString)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// `cmd` with exactly this environment (nothing inherited from Kiln's).
    pub fn apply(&self, cmd: Cmd) -> Cmd {
        cmd.env_clear().envs(&self.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> Vec<(OsString, OsString)> {
        [
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/home/ci"),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C.UTF-8"),
            ("GITHUB_TOKEN", "ghs_secret"),
            ("GH_TOKEN", "ghs_secret2"),
            ("KILN_SMTP_PASSWORD", "smtp-pass"),
            ("KILN_WEBHOOK_SECRET", "hook"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("OTHER_REPO_TOKEN", "tok"),
            ("GITHUB_ENV", "/tmp/env"),
            ("DATABASE_URL", "postgres://u:pw@db/x"),
            ("TEST_SHARDS", "4"),
            ("CODECOV_TOKEN", "cov"),
            ("PIP_INDEX_URL", "https://user:pw@pypi.internal/simple"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
    }

    fn names(list: &[&str]) -> Vec<PassName> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn keys(env: &ChildEnv) -> Vec<String> {
        env.names()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn only_allowed_variables_reach_a_child() {
        let (env, warnings) = ChildEnv::inherit(parent(), &[], Trust::Trusted);
        assert_eq!(
            keys(&env),
            ["HOME", "LANG", "LC_ALL", "PATH", "PIP_INDEX_URL"]
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn named_variables_pass_for_trusted_code() {
        let pass = names(&["TEST_SHARDS", "CODECOV_TOKEN", "DATABASE_URL"]);
        let (env, _) = ChildEnv::inherit(parent(), &pass, Trust::Trusted);
        assert_eq!(env.get("TEST_SHARDS"), Some(OsStr::new("4")));
        assert_eq!(env.get("CODECOV_TOKEN"), Some(OsStr::new("cov")));
        assert!(env.get("DATABASE_URL").is_some());
        assert!(env.get("GITHUB_TOKEN").is_none());
    }

    #[test]
    fn untrusted_code_gets_no_secret_even_when_named() {
        let pass = names(&[
            "TEST_SHARDS",
            "CODECOV_TOKEN",
            "AWS_ACCESS_KEY_ID",
            "DATABASE_URL",
        ]);
        let (env, warnings) = ChildEnv::inherit(parent(), &pass, Trust::Untrusted);
        assert_eq!(
            keys(&env),
            ["HOME", "LANG", "LC_ALL", "PATH", "TEST_SHARDS"]
        );
        // CODECOV_TOKEN and AWS_ACCESS_KEY_ID by name, DATABASE_URL and PIP_INDEX_URL by value.
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings
            .iter()
            .all(|w| !w.contains("pw") && !w.contains("cov")));
    }

    #[test]
    fn kiln_and_github_secrets_cannot_be_named() {
        for bad in [
            "GITHUB_TOKEN",
            "KILN_SMTP_PASSWORD",
            "GITHUB_ENV",
            "ACTIONS_RUNTIME_TOKEN",
        ] {
            let err = bad.parse::<PassName>().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
        for bad in ["", "1X", "A-B", "A B"] {
            assert!(bad.parse::<PassName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_name_in_yaml_names_line_and_column() {
        #[derive(Deserialize, Debug)]
        struct Doc {
            #[allow(dead_code)]
            a: u32,
            #[allow(dead_code)]
            env: Vec<PassName>,
        }
        let err =
            serde_yaml::from_str::<Doc>("a: 1\nenv:\n  - OK_NAME\n  - GITHUB_TOKEN\n").unwrap_err();
        // serde_yaml places errors inside a list at the list's first item.
        let loc = err.location().unwrap();
        assert_eq!((loc.line(), loc.column()), (3, 3));
        assert!(err.to_string().contains("GITHUB_TOKEN"), "{err}");
    }

    #[test]
    fn url_credentials_are_recognised() {
        assert!(has_url_credentials(OsStr::new("https://u:p@h/x")));
        assert!(has_url_credentials(OsStr::new("redis://:pw@h:6379")));
        assert!(has_url_credentials(OsStr::new("a https://tok@h")));
        assert!(!has_url_credentials(OsStr::new("https://h/x?a=b@c")));
        assert!(!has_url_credentials(OsStr::new("user@example.com")));
    }

    #[test]
    fn apply_clears_everything_else() {
        let (mut env, _) = ChildEnv::inherit(parent(), &[], Trust::Trusted);
        env.set("VIRTUAL_ENV", "/w/venv");
        let cmd = env.apply(Cmd::new("true"));
        assert!(cmd.env_clear);
        assert!(cmd.env.iter().any(|(k, _)| k == "VIRTUAL_ENV"));
        assert!(!cmd.env.iter().any(|(k, _)| k == "GITHUB_TOKEN"));
    }
}

//! The `KILN_*` layer: every environment variable that sets a `kiln run` option is read here, in
//! one table, and nowhere else.
//!
//! The layer has the same shape as the flags ([`Layer`]), so precedence is one field-wise merge
//! in [`super::resolve`]. A value that does not parse is a [`ConfigError::Env`] naming the
//! variable (exit 2), like a bad key in kiln.yml.

use std::path::PathBuf;
use std::time::Duration;

use super::file::{word, CheckoutMode, ConfigError, Installer, ReportMode};
use super::{names, Env};
use crate::sandbox::SandboxMode;

/// One layer of `kiln run` options: what the flags said, or what `KILN_*` said. `None` = not
/// said here, ask the layer below.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layer {
    pub repo: Option<String>,
    pub rev: Option<String>,
    pub branch: Option<String>,
    pub config: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    pub store: Option<String>,
    pub summary_json: Option<PathBuf>,
    pub installer: Option<Installer>,
    pub test_command: Option<String>,
    pub test_timeout: Option<Duration>,
    pub checkout: Option<CheckoutMode>,
    pub checkout_depth: Option<u32>,
    pub report_mode: Option<ReportMode>,
    pub no_save: Option<bool>,
    pub offline: Option<bool>,
    pub sandbox: Option<SandboxMode>,
    pub sandbox_hide: Option<Vec<PathBuf>>,
    pub sandbox_sockets: Option<Vec<String>>,
    pub sandbox_show: Option<Vec<PathBuf>>,
    pub untrusted: Option<bool>,
    pub test_network: Option<bool>,
    pub python: Option<String>,
    pub requirements: Option<Vec<PathBuf>>,
    pub bootstrap_command: Option<String>,
    pub key_extra: Option<String>,
    pub max_restore_size: Option<u64>,
    pub bisect: Option<bool>,
}

impl Layer {
    /// This layer over `lower`: every option this layer sets wins.
    pub fn over(self, lower: Layer) -> Layer {
        Layer {
            repo: self.repo.or(lower.repo),
            rev: self.rev.or(lower.rev),
            branch: self.branch.or(lower.branch),
            config: self.config.or(lower.config),
            workdir: self.workdir.or(lower.workdir),
            store: self.store.or(lower.store),
            summary_json: self.summary_json.or(lower.summary_json),
            installer: self.installer.or(lower.installer),
            test_command: self.test_command.or(lower.test_command),
            test_timeout: self.test_timeout.or(lower.test_timeout),
            checkout: self.checkout.or(lower.checkout),
            checkout_depth: self.checkout_depth.or(lower.checkout_depth),
            report_mode: self.report_mode.or(lower.report_mode),
            no_save: self.no_save.or(lower.no_save),
            offline: self.offline.or(lower.offline),
            sandbox: self.sandbox.or(lower.sandbox),
            sandbox_hide: self.sandbox_hide.or(lower.sandbox_hide),
            sandbox_sockets: self.sandbox_sockets.or(lower.sandbox_sockets),
            sandbox_show: self.sandbox_show.or(lower.sandbox_show),
            untrusted: self.untrusted.or(lower.untrusted),
            test_network: self.test_network.or(lower.test_network),
            python: self.python.or(lower.python),
            requirements: self.requirements.or(lower.requirements),
            bootstrap_command: self.bootstrap_command.or(lower.bootstrap_command),
            key_extra: self.key_extra.or(lower.key_extra),
            max_restore_size: self.max_restore_size.or(lower.max_restore_size),
            bisect: self.bisect.or(lower.bisect),
        }
    }
}

/// A variable's value; an empty one counts as unset (as `VAR= kiln run` usually means).
pub(super) fn var(env: Env, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

fn parsed<T>(
    env: Env,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    var(env, name)
        .map(|v| {
            parse(v.trim()).map_err(|message| ConfigError::Env {
                var: name.into(),
                message,
            })
        })
        .transpose()
}

/// `1/true/yes/on` or `0/false/no/off` (the words clap's boolish flags take).
fn boolish(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "y" | "on" | "t" => Ok(true),
        "0" | "false" | "no" | "n" | "off" | "f" => Ok(false),
        _ => Err(format!("{v:?} is not a boolean (use 1/0, true/false)")),
    }
}

fn duration(v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v).map_err(|e| e.to_string())
}

fn path_list(v: &str) -> Result<Vec<PathBuf>, String> {
    Ok(v.split([',', ':'])
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect())
}

/// A variable that must parse, read only when the layer `above` does not set it (a flag hides
/// its variable, even a malformed one, as it always has).
fn below<T, A>(
    above: &Option<A>,
    env: Env,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    match above {
        Some(_) => Ok(None),
        None => parsed(env, name, parse),
    }
}

/// Read the `KILN_*` layer under the flags `above`.
pub fn layer(env: Env, above: &Layer) -> Result<Layer, ConfigError> {
    let s = |name: &str| var(env, name);
    let p = |name: &str| var(env, name).map(PathBuf::from);
    let a = above;
    Ok(Layer {
        repo: s(names::REPO),
        rev: s(names::REV),
        branch: s(names::BRANCH),
        config: p(names::CONFIG),
        workdir: p(names::WORKDIR),
        store: s(names::STORE),
        summary_json: p(names::SUMMARY_JSON),
        installer: below(&a.installer, env, names::INSTALLER, word::<Installer>)?,
        test_command: s(names::TEST_COMMAND),
        test_timeout: below(&a.test_timeout, env, names::TEST_TIMEOUT, duration)?,
        checkout: below(&a.checkout, env, names::CHECKOUT, word::<CheckoutMode>)?,
        checkout_depth: below(&a.checkout_depth, env, names::CHECKOUT_DEPTH, |v| {
            v.parse()
                .map_err(|_| format!("{v:?} is not a number of commits (0 = all history)"))
        })?,
        report_mode: below(&a.report_mode, env, names::REPORT_MODE, word::<ReportMode>)?,
        no_save: below(&a.no_save, env, names::NO_SAVE, boolish)?,
        offline: below(&a.offline, env, names::OFFLINE, boolish)?,
        sandbox: below(&a.sandbox, env, names::SANDBOX, word::<SandboxMode>)?,
        sandbox_hide: below(&a.sandbox_hide, env, names::SANDBOX_HIDE, path_list)?,
        sandbox_sockets: below(&a.sandbox_sockets, env, names::SANDBOX_SOCKETS, |v| {
            Ok(v.split([',', ':'])
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect())
        })?,
        sandbox_show: below(&a.sandbox_show, env, names::SANDBOX_SHOW, path_list)?,
        untrusted: below(&a.untrusted, env, names::UNTRUSTED, boolish)?,
        test_network: below(&a.test_network, env, names::TEST_NETWORK, boolish)?,
        python: s(names::PYTHON),
        requirements: below(&a.requirements, env, names::REQUIREMENTS, path_list)?,
        bootstrap_command: s(names::BOOTSTRAP_COMMAND),
        key_extra: s(names::CACHE_KEY_EXTRA),
        max_restore_size: below(
            &a.max_restore_size,
            env,
            names::CACHE_MAX_RESTORE_SIZE,
            crate::size::parse_size,
        )?,
        bisect: parsed(env, names::BISECT, boolish)?,
    })
}

/// `KILN_CCACHE_BIN`: `None` = look for ccache on PATH; `Some("")` = do not use ccache.
pub fn ccache_bin(env: Env) -> Option<String> {
    env(names::CCACHE_BIN)
}

/// `KILN_TOOLS_DIR`: where Kiln installs uv when it is not on PATH.
pub fn tools_dir(env: Env) -> Option<PathBuf> {
    var(env, names::TOOLS_DIR).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_booleans_parse_like_the_flags() {
        let l = layer(
            &|k| match k {
                "KILN_INSTALLER" => Some("uv".into()),
                "KILN_REPORT_MODE" => Some("failing".into()),
                "KILN_CHECKOUT" => Some("reuse".into()),
                "KILN_NO_SAVE" => Some("true".into()),
                "KILN_OFFLINE" => Some("0".into()),
                "KILN_REQUIREMENTS" => Some("a.txt,b.txt:c.txt".into()),
                "KILN_TEST_TIMEOUT" => Some("90s".into()),
                "KILN_PYTHON" => Some(String::new()),
                _ => None,
            },
            &Layer::default(),
        )
        .unwrap();
        assert_eq!(l.installer, Some(Installer::Uv));
        assert_eq!(l.report_mode, Some(ReportMode::Failing));
        assert_eq!(l.checkout, Some(CheckoutMode::Reuse));
        assert_eq!((l.no_save, l.offline), (Some(true), Some(false)));
        assert_eq!(l.requirements.unwrap().len(), 3);
        assert_eq!(l.test_timeout, Some(Duration::from_secs(90)));
        assert_eq!(l.python, None, "empty means unset");
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_choices() {
        for (name, value, says) in [
            (
                "KILN_REPORT_MODE",
                "loud",
                "`problem`, `failing`, `change`, `all`",
            ),
            ("KILN_NO_SAVE", "maybe", "not a boolean"),
            ("KILN_TEST_TIMEOUT", "soon", "KILN_TEST_TIMEOUT"),
        ] {
            let env = |k: &str| (k == name).then(|| value.to_string());
            let err = layer(&env, &Layer::default()).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(says), "{err}");
        }
        // A flag hides its variable, even a malformed one.
        let flags = Layer {
            report_mode: Some(ReportMode::All),
            ..Layer::default()
        };
        let env = |k: &str| (k == "KILN_REPORT_MODE").then(|| "loud".to_string());
        assert_eq!(layer(&env, &flags).unwrap().report_mode, None);
    }
}

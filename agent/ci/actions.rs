//! GitHub Actions' runner protocols, the writing side: workflow commands on stdout/stderr (log
//! groups, masks, annotations), `$GITHUB_OUTPUT` and `$GITHUB_STEP_SUMMARY`.
//!
//! These speak the runner's documented file and stdout protocols ("workflow commands"), so they
//! work the same in a composite action, a plain `run:` step or a container job, and need no
//! token. All of it is silent outside Actions (see [`super::current`]), and none of it can fail a
//! build: a file that cannot be written is a logged warning. What to say is rendered elsewhere
//! (`report::actions`); this module only knows how to say it.

use std::io::Write;
use std::path::Path;
use std::sync::Once;

use crate::settings::names;

static MASKS: Once = Once::new();

fn on_actions() -> bool {
    super::current().is_some()
}

/// Print workflow command lines to stdout, where the runner reads them (no-op outside Actions).
pub fn emit(lines: &[String]) {
    if lines.is_empty() || !on_actions() {
        return;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
}

/// Print workflow command lines to stderr. The runner reads commands on both streams, but the
/// two pipes are read independently: log groups and masks must be on the stream the logs and the
/// tests' output use (stderr), or their order against those lines is not guaranteed.
fn emit_ordered(lines: &[String]) {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for l in lines {
        let _ = writeln!(err, "{l}");
    }
}

/// Mask the secrets in this process's environment (once per process; only under Actions).
/// Called as early as possible: before anything could print them.
pub fn mask_secrets() {
    if !on_actions() {
        return;
    }
    MASKS.call_once(|| emit_ordered(&mask_commands(&|k| std::env::var(k).ok())));
}

/// Open a collapsible log group (masking secrets first, if not done yet).
pub fn group_start(title: &str) {
    if !on_actions() {
        return;
    }
    mask_secrets();
    emit_ordered(&[format!("::group::{title}")]);
}

/// Close the log group.
pub fn group_end() {
    if !on_actions() {
        return;
    }
    emit_ordered(&["::endgroup::".to_string()]);
}

/// Escape workflow-command data (the part after `::`).
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escape a workflow-command property value (`file=`, `title=`, …).
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Environment variables whose values are secrets, by name.
fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["TOKEN", "PASSWORD", "SECRET", "PRIVATE_KEY", "API_KEY"]
        .iter()
        .any(|w| n.contains(w))
        && (n.starts_with(names::PREFIX)
            || n.starts_with("GITHUB_")
            || n.starts_with("GH_")
            || n.starts_with("AWS_")
            || n.starts_with("AZURE_")
            || n.starts_with("ACTIONS_")
            || n.starts_with("SMTP_"))
}

/// `::add-mask::` lines for the secrets Kiln may handle: tokens and passwords from the
/// environment and the password in a store URL. The runner then replaces them with `***` in the
/// log, including in the output of the tests Kiln runs.
pub fn mask_commands(get: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| is_secret_name(k))
        .collect();
    for known in [
        names::GITHUB_TOKEN,
        "GITHUB_TOKEN",
        names::SMTP_PASSWORD,
        names::WEBHOOK_SECRET,
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
    ] {
        names.push(known.to_string());
    }
    names.sort();
    names.dedup();
    let mut values: Vec<String> = names
        .iter()
        .filter_map(|k| get(k))
        .filter(|v| v.len() >= 4)
        .collect();
    if let Some(store) = get(names::STORE) {
        if let Ok(u) = url::Url::parse(&store) {
            if let Some(p) = u.password().filter(|p| !p.is_empty()) {
                values.push(p.to_string());
            }
        }
    }
    values.sort();
    values.dedup();
    values
        .iter()
        .flat_map(|v| v.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| !l.trim().is_empty())
        .map(|v| format!("::add-mask::{}", escape_data(&v)))
        .collect()
}

/// Append `name=value` outputs to `$GITHUB_OUTPUT` when running under Actions (no-op
/// elsewhere). For `kiln` subcommands other than `run`, e.g. `kiln cache restore`.
pub fn write_outputs(outputs: &[(&str, String)]) {
    let Some(path) = super::current().and_then(|c| c.output.as_ref()) else {
        return;
    };
    let text: String = outputs
        .iter()
        .map(|(k, v)| format!("{k}={}\n", v.replace(['\r', '\n'], " ")))
        .collect();
    if let Err(e) = append(path, &text) {
        tracing::warn!(
            "cannot write step outputs to {} (GITHUB_OUTPUT): {e}",
            path.display()
        );
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// Append Markdown to the job summary (`$GITHUB_STEP_SUMMARY`); no-op outside Actions.
pub fn append_step_summary(markdown: &str) {
    let Some(path) = super::current().and_then(|c| c.step_summary.as_ref()) else {
        return;
    };
    if let Err(e) = append(path, markdown) {
        tracing::warn!(
            "cannot append the job summary to {} (GITHUB_STEP_SUMMARY): {e}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_tokens_and_store_passwords_only() {
        let env = |k: &str| match k {
            "KILN_GITHUB_TOKEN" => Some("ghs_secret123".to_string()),
            "KILN_STORE" => Some("webdav+https://bob:hunter22@dav.example/x".to_string()),
            "KILN_TEST_COMMAND" => Some("pytest".to_string()),
            _ => None,
        };
        let cmds = mask_commands(&env);
        assert!(
            cmds.contains(&"::add-mask::ghs_secret123".to_string()),
            "{cmds:?}"
        );
        assert!(
            cmds.contains(&"::add-mask::hunter22".to_string()),
            "{cmds:?}"
        );
        assert!(!cmds.iter().any(|c| c.contains("pytest")));
    }
}

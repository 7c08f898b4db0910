//! GitHub Actions reporting: log groups per stage, annotations, masks, the job summary, outputs.
//!
//! Everything here speaks the runner's documented file and stdout protocols ("workflow
//! commands"), so it works the same in a composite action, a plain `run:` step or a container
//! job, and needs no token. All of it is silent outside Actions (see `ci_env`), and none of it can
//! fail a build: a summary file that cannot be written is a logged warning.
//!
//! Rendering is pure (`render_*`, `*_commands`): the tests check the exact text users see.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Once;

use crate::ci_env::{self, CiEnv};
use crate::pipeline::RunContext;
use crate::summary::{RestoreHit, RunSummary, StageOutcome};

/// At most this many `::error` annotations per run: GitHub shows only the first few per step
/// anyway, and the job summary lists every failure.
const MAX_ERROR_ANNOTATIONS: usize = 50;
/// At most this many rows in the summary's failing-tests table.
const MAX_FAILURE_ROWS: usize = 100;

static MASKS: Once = Once::new();

/// Print workflow command lines to stdout, where the runner reads them.
fn emit(lines: &[String]) {
    if lines.is_empty() {
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
    if ci_env::current().is_none() {
        return;
    }
    MASKS.call_once(|| emit_ordered(&mask_commands(&|k| std::env::var(k).ok())));
}

/// Open a collapsible log group for a stage (masking secrets first, if not done yet).
pub fn stage_started(name: &str) {
    if ci_env::current().is_none() {
        return;
    }
    mask_secrets();
    emit_ordered(&[format!("::group::kiln {name}")]);
}

/// Close the stage's log group.
pub fn stage_finished(_name: &str) {
    if ci_env::current().is_none() {
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
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Environment variables whose values are secrets, by name.
fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["TOKEN", "PASSWORD", "SECRET", "PRIVATE_KEY", "API_KEY"]
        .iter()
        .any(|w| n.contains(w))
        && (n.starts_with("KILN_")
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
        "KILN_GITHUB_TOKEN",
        "GITHUB_TOKEN",
        "KILN_SMTP_PASSWORD",
        "KILN_WEBHOOK_SECRET",
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
    if let Some(store) = get("KILN_STORE") {
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

/// The path GitHub wants in an annotation: relative to the repository root.
fn annotation_path(file: &str, checkout: &Path, workspace: Option<&Path>) -> String {
    let p = Path::new(file);
    let rel: PathBuf = if p.is_absolute() {
        let in_checkout = p.strip_prefix(checkout).ok().map(|r| {
            match workspace.and_then(|w| checkout.strip_prefix(w).ok()) {
                Some(sub) => sub.join(r),
                None => r.to_path_buf(),
            }
        });
        in_checkout
            .or_else(|| workspace.and_then(|w| p.strip_prefix(w).ok().map(Path::to_path_buf)))
            .unwrap_or_else(|| p.to_path_buf())
    } else {
        // Relative to the checkout; when the checkout is a subdirectory of the workspace (a
        // monorepo with `working-directory`), prefix that subdirectory.
        match workspace.and_then(|w| checkout.strip_prefix(w).ok()) {
            Some(sub) if !sub.as_os_str().is_empty() => sub.join(p),
            _ => p.to_path_buf(),
        }
    };
    rel.display().to_string()
}

/// `::error` per failing test and `::warning` per cache fault.
pub fn annotation_commands(
    s: &RunSummary,
    checkout: &Path,
    workspace: Option<&Path>,
) -> Vec<String> {
    let mut out = Vec::new();
    for f in s.tests.failures.iter().take(MAX_ERROR_ANNOTATIONS) {
        let mut props = Vec::new();
        if let Some(file) = &f.file {
            props.push(format!(
                "file={}",
                escape_property(&annotation_path(file, checkout, workspace))
            ));
            if let Some(line) = f.line {
                props.push(format!("line={line}"));
            }
        }
        props.push(format!(
            "title={}",
            escape_property(&format!("Test failed: {}", f.name))
        ));
        let message: String = f.message.lines().take(30).collect::<Vec<_>>().join("\n");
        let message = if message.trim().is_empty() {
            "test failed".to_string()
        } else {
            message
        };
        out.push(format!(
            "::error {}::{}",
            props.join(","),
            escape_data(&message)
        ));
    }
    if s.tests.failures.len() > MAX_ERROR_ANNOTATIONS {
        out.push(format!(
            "::notice title=Kiln::{} more failing tests are listed in the job summary",
            s.tests.failures.len() - MAX_ERROR_ANNOTATIONS
        ));
    }
    for c in &s.caches {
        for w in &c.warnings {
            out.push(format!(
                "::warning title={}::{}",
                escape_property(&format!("Kiln {} cache", c.name)),
                escape_data(w)
            ));
        }
    }
    // Other degraded stages (e.g. no cache keys could be derived): one warning each, unless the
    // cache warnings above already said why restore or save degraded.
    let cache_warned = s.caches.iter().any(|c| !c.warnings.is_empty());
    for st in &s.stages {
        let covered = cache_warned && (st.name == "restore" || st.name == "save");
        if st.outcome == StageOutcome::Warning && !covered {
            out.push(format!(
                "::warning title={}::{}",
                escape_property(&format!("Kiln {}", st.name)),
                escape_data(st.detail.as_deref().unwrap_or("degraded"))
            ));
        }
    }
    if let Some(e) = &s.error {
        out.push(format!("::error title=Kiln::{}", escape_data(e)));
    }
    out
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// Inline code that survives backticks in the text.
fn code(s: &str) -> String {
    if s.contains('`') {
        format!("`` {} ``", s.replace('|', "\\|"))
    } else {
        format!("`{}`", s.replace('|', "\\|"))
    }
}

/// Bytes as a person reads them.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn hit_word(h: RestoreHit) -> &'static str {
    match h {
        RestoreHit::Exact => "exact",
        RestoreHit::Partial => "partial",
        RestoreHit::Miss => "miss",
    }
}

/// ccache's hit rate in percent, when it compiled anything.
pub fn ccache_hit_rate(s: &RunSummary) -> Option<f64> {
    let total = s.ccache.hits + s.ccache.misses;
    (total > 0).then(|| s.ccache.hits as f64 * 100.0 / total as f64)
}

/// The Markdown job summary.
pub fn render_summary(s: &RunSummary, ci: Option<&CiEnv>) -> String {
    use crate::summary::Outcome;
    let mut md = String::new();
    let (icon, word) = match s.outcome {
        Outcome::Passed => (":white_check_mark:", "passed"),
        Outcome::Failed => (":x:", "failed"),
        Outcome::Error => (":warning:", "error"),
    };
    let commit = if s.commit.is_empty() {
        String::new()
    } else {
        format!(" at {}", code(&s.commit[..12.min(s.commit.len())]))
    };
    let branch = s
        .branch
        .as_deref()
        .map(|b| format!(" on {}", code(b)))
        .unwrap_or_default();
    md.push_str(&format!("## {icon} Kiln: {word}{commit}{branch}\n\n"));
    if let Some(e) = &s.error {
        md.push_str(&format!("> **Error:** {}\n\n", cell(e)));
    }

    // Stages.
    md.push_str("| Stage | Time | Result | Detail |\n|---|---:|---|---|\n");
    let mut total = 0.0;
    for st in &s.stages {
        total += st.seconds;
        let result = match st.outcome {
            StageOutcome::Ok => "ok",
            StageOutcome::Failed => "**failed**",
            StageOutcome::Skipped => "skipped",
            StageOutcome::Warning => "warning",
        };
        md.push_str(&format!(
            "| {} | {:.2} s | {} | {} |\n",
            st.name,
            st.seconds,
            result,
            cell(st.detail.as_deref().unwrap_or(""))
        ));
    }
    let total = if s.seconds > 0.0 { s.seconds } else { total };
    md.push_str(&format!("| **total** | {total:.2} s | | |\n\n"));

    // Caches.
    if !s.caches.is_empty() {
        md.push_str("### Caches\n\n| Cache | Restore | Restored | Saved | Key |\n");
        md.push_str("|---|---|---:|---:|---|\n");
        for c in &s.caches {
            let restore = match (&c.restored_key, c.restore) {
                (Some(k), RestoreHit::Partial) => format!("partial ({})", code(k)),
                _ => hit_word(c.restore).to_string(),
            };
            let saved = if c.saved {
                human_bytes(c.bytes_saved)
            } else {
                "not saved".to_string()
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                c.name,
                restore,
                human_bytes(c.bytes_restored),
                saved,
                code(&c.key)
            ));
        }
        md.push('\n');
    }

    // Builds.
    let installer = if s.installer.is_empty() {
        String::new()
    } else {
        format!(", installed with {}", s.installer)
    };
    md.push_str(&format!(
        "**Wheels:** {} built, {} reused{installer}  \n",
        s.wheels.built, s.wheels.reused
    ));
    if !s.wheels.built_names.is_empty() {
        let names: Vec<String> = s.wheels.built_names.iter().map(|n| code(n)).collect();
        md.push_str(&format!("Built: {}  \n", names.join(", ")));
    }
    match ccache_hit_rate(s) {
        Some(rate) => md.push_str(&format!(
            "**ccache:** {} hits, {} misses ({rate:.1}% hit rate)\n\n",
            s.ccache.hits, s.ccache.misses
        )),
        None if !s.ccache.enabled && s.stage("bootstrap").is_some() => {
            md.push_str("**ccache:** no compiles went through ccache\n\n")
        }
        None => md.push_str("**ccache:** nothing compiled\n\n"),
    }

    // Tests.
    let t = &s.tests;
    md.push_str(&format!(
        "**Tests:** {} passed, {} failed, {} skipped\n\n",
        t.passed, t.failed, t.skipped
    ));
    if !t.failures.is_empty() {
        md.push_str(&format!(
            "### Failing tests ({})\n\n| Test | Location | Message |\n|---|---|---|\n",
            t.failures.len()
        ));
        for f in t.failures.iter().take(MAX_FAILURE_ROWS) {
            let loc = match (&f.file, f.line) {
                (Some(file), Some(line)) => code(&format!("{file}:{line}")),
                (Some(file), None) => code(file),
                _ => String::new(),
            };
            let msg = f.message.lines().next().unwrap_or("");
            let msg: String = msg.chars().take(200).collect();
            md.push_str(&format!("| {} | {loc} | {} |\n", code(&f.name), cell(&msg)));
        }
        if t.failures.len() > MAX_FAILURE_ROWS {
            md.push_str(&format!(
                "\n…and {} more.\n",
                t.failures.len() - MAX_FAILURE_ROWS
            ));
        }
        md.push('\n');
    }

    // Who was told.
    if !s.blame.is_empty() {
        let who: Vec<String> = s
            .blame
            .iter()
            .map(|b| match &b.login {
                Some(l) => format!("@{l}"),
                None => cell(&b.author),
            })
            .collect();
        md.push_str(&format!(
            "**Changes since the last green build by:** {}\n\n",
            who.join(", ")
        ));
    }
    if s.notified.is_empty() {
        md.push_str("**Notified:** nobody\n");
    } else {
        md.push_str("**Notified:**\n\n");
        for n in &s.notified {
            md.push_str(&format!("- {}: {}\n", cell(&n.channel), cell(&n.to)));
        }
    }
    if let Some(url) = ci.and_then(|c| c.run_url.as_deref()) {
        md.push_str(&format!("\n<sub>[Workflow run]({url})</sub>\n"));
    }
    md
}

/// The step outputs (`name`, `value`), all single-line.
pub fn outputs(s: &RunSummary, summary_json: Option<&Path>) -> Vec<(&'static str, String)> {
    let hit = |name: &str| {
        s.cache(name)
            .map(|c| hit_word(c.restore))
            .unwrap_or("miss")
            .to_string()
    };
    let mut out = vec![
        ("outcome", format!("{:?}", s.outcome).to_lowercase()),
        ("wheelhouse-hit", hit("wheelhouse")),
        ("ccache-hit", hit("ccache")),
        (
            "ccache-hit-rate",
            ccache_hit_rate(s)
                .map(|r| format!("{r:.1}"))
                .unwrap_or_default(),
        ),
        ("wheels-built", s.wheels.built.to_string()),
        ("wheels-reused", s.wheels.reused.to_string()),
    ];
    if let Some(p) = summary_json {
        out.push(("summary-json", p.display().to_string()));
    }
    out
}

/// Append `name=value` outputs to `$GITHUB_OUTPUT` when running under Actions (no-op
/// elsewhere). For `kiln` subcommands other than `run`, e.g. `kiln cache restore`.
pub fn write_outputs(outputs: &[(&str, String)]) {
    let Some(path) = ci_env::current().and_then(|c| c.output.as_ref()) else {
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

/// Annotate, append the job summary and write the step outputs. Called from `report::report`.
pub async fn report(ctx: &RunContext) {
    let Some(ci) = ci_env::current() else {
        return;
    };
    let s = &ctx.summary;
    emit(&annotation_commands(
        s,
        &ctx.paths.checkout,
        ci.workspace.as_deref(),
    ));
    if let Some(path) = &ci.step_summary {
        if let Err(e) = append(path, &format!("{}\n", render_summary(s, Some(ci)))) {
            tracing::warn!(
                "cannot append the job summary to {} (GITHUB_STEP_SUMMARY): {e}",
                path.display()
            );
        }
    }
    let summary_json = ctx.opts.summary_json.as_ref().map(|p| {
        if p.is_absolute() {
            p.clone()
        } else {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or(p.clone())
        }
    });
    write_outputs(&outputs(s, summary_json.as_deref()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::*;

    fn failing_summary() -> RunSummary {
        RunSummary {
            outcome: Outcome::Failed,
            exit_code: 1,
            commit: "0123456789abcdef0123".into(),
            branch: Some("main".into()),
            installer: "uv".into(),
            stages: vec![
                StageSummary {
                    name: "checkout".into(),
                    seconds: 0.5,
                    outcome: StageOutcome::Ok,
                    detail: Some("at 0123".into()),
                },
                StageSummary {
                    name: "test".into(),
                    seconds: 2.25,
                    outcome: StageOutcome::Failed,
                    detail: Some("exit code 1; 3 passed, 1 failed, 0 skipped".into()),
                },
            ],
            caches: vec![
                CacheSummary {
                    name: "wheelhouse".into(),
                    key: "kiln-1-wheels-linux-x86_64-cp311-abc".into(),
                    restore: RestoreHit::Exact,
                    restored_key: Some("kiln-1-wheels-linux-x86_64-cp311-abc".into()),
                    bytes_restored: 3 * 1024 * 1024,
                    saved: false,
                    bytes_saved: 0,
                    warnings: vec![],
                },
                CacheSummary {
                    name: "ccache".into(),
                    key: "kiln-1-ccache-linux-x86_64-gcc-1".into(),
                    restore: RestoreHit::Miss,
                    warnings: vec!["store s3://b: read failed: connection refused".into()],
                    saved: true,
                    bytes_saved: 2048,
                    ..Default::default()
                },
            ],
            wheels: WheelSummary {
                built: 1,
                reused: 4,
                built_names: vec!["fastmod-1.0-cp311-linux_x86_64.whl".into()],
            },
            ccache: CcacheSummary {
                hits: 9,
                misses: 1,
                remote_hits: 0,
                enabled: true,
            },
            tests: TestSummary {
                passed: 3,
                failed: 1,
                skipped: 0,
                failures: vec![TestFailure {
                    name: "tests.test_math::test_add".into(),
                    file: Some("tests/test_math.py".into()),
                    line: Some(12),
                    message: "assert 3 == 4\n where 3 = add(1, 2), 50%: a|b".into(),
                }],
            },
            notified: vec![Notified {
                channel: "github-comment".into(),
                to: "@alice".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn error_annotations_are_escaped_and_point_at_the_repo_path() {
        let s = failing_summary();
        let cmds = annotation_commands(&s, Path::new("/work/src"), Some(Path::new("/gh/ws")));
        assert_eq!(
            cmds[0],
            "::error file=tests/test_math.py,line=12,title=Test failed%3A tests.test_math%3A%3Atest_add\
             ::assert 3 == 4%0A where 3 = add(1, 2), 50%25: a|b"
        );
        assert_eq!(
            cmds[1],
            "::warning title=Kiln ccache cache::store s3://b: read failed: connection refused"
        );
        // A degraded restore is already explained by the cache warning; other stages are not.
        let mut s2 = s.clone();
        s2.stages.push(StageSummary {
            name: "restore".into(),
            seconds: 0.1,
            outcome: StageOutcome::Warning,
            detail: Some("ccache miss".into()),
        });
        s2.stages.push(StageSummary {
            name: "bootstrap".into(),
            seconds: 0.1,
            outcome: StageOutcome::Warning,
            detail: Some("ccache not found: compiles are not cached".into()),
        });
        let cmds = annotation_commands(&s2, Path::new("/work/src"), None);
        assert_eq!(cmds.len(), 3, "{cmds:?}");
        assert_eq!(
            cmds[2],
            "::warning title=Kiln bootstrap::ccache not found: compiles are not cached"
        );
        // A checkout in a subdirectory of the workspace (monorepo) gets the prefix.
        let cmds = annotation_commands(&s, Path::new("/gh/ws/py"), Some(Path::new("/gh/ws")));
        assert!(
            cmds[0].starts_with("::error file=py/tests/test_math.py,"),
            "{}",
            cmds[0]
        );
    }

    #[test]
    fn job_summary_has_times_caches_wheels_ccache_failures_and_who() {
        let md = render_summary(&failing_summary(), None);
        assert!(
            md.starts_with("## :x: Kiln: failed at `0123456789ab` on `main`"),
            "{md}"
        );
        assert!(md.contains(
            "| test | 2.25 s | **failed** | exit code 1; 3 passed, 1 failed, 0 skipped |"
        ));
        assert!(md.contains("| **total** | 2.75 s |"));
        assert!(md.contains("| wheelhouse | exact | 3.0 MiB | not saved | `kiln-1-wheels-linux-x86_64-cp311-abc` |"), "{md}");
        assert!(md.contains("| ccache | miss | 0 B | 2.0 KiB |"));
        assert!(md.contains("**Wheels:** 1 built, 4 reused, installed with uv"));
        assert!(md.contains("(90.0% hit rate)"));
        assert!(
            md.contains(
                "| `tests.test_math::test_add` | `tests/test_math.py:12` | assert 3 == 4 |"
            ),
            "{md}"
        );
        assert!(md.contains("- github-comment: @alice"));
    }

    #[test]
    fn outputs_say_outcome_and_hits() {
        let out = outputs(&failing_summary(), Some(Path::new("/tmp/s.json")));
        let get = |k: &str| out.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("outcome"), "failed");
        assert_eq!(get("wheelhouse-hit"), "exact");
        assert_eq!(get("ccache-hit"), "miss");
        assert_eq!(get("ccache-hit-rate"), "90.0");
        assert_eq!(get("summary-json"), "/tmp/s.json");
    }

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

    #[test]
    fn table_cells_cannot_break_the_markdown() {
        assert_eq!(cell("a|b\n<script>"), "a\\|b &lt;script&gt;");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}

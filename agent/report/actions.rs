//! GitHub Actions reporting, what to say: `::error`/`::warning` annotations, the Markdown job
//! summary and the step outputs. Pure rendering (the tests check the exact text users see);
//! `ci::actions` writes it where the runner reads it.

use std::path::{Path, PathBuf};

use crate::ci::actions::{escape_data, escape_property};
use crate::ci::{self, CiEnv};
use crate::run::Stage;
use crate::summary::{Outcome, RunSummary, StageOutcome, TestFailure};

use super::markdown::{self, code};
use super::vocab::{self, md_cell as cell};
pub use super::vocab::{ccache_hit_rate, human_bytes};
use super::RunFacts;

/// At most this many `::error` annotations per run: GitHub shows only the first few per step
/// anyway, and the job summary lists every failure.
const MAX_ERROR_ANNOTATIONS: usize = 50;
/// At most this many rows in the summary's failing-tests table.
const MAX_FAILURE_ROWS: usize = 100;

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
    let mut out = test_errors(&s.tests.failures, checkout, workspace);
    out.extend(degraded_warnings(s));
    if let Some(e) = &s.error {
        out.push(format!("::error title=Kiln::{}", escape_data(e)));
    }
    out
}

/// `::error` per failing test, at its file and line, then how many more there were.
fn test_errors(failures: &[TestFailure], checkout: &Path, workspace: Option<&Path>) -> Vec<String> {
    let mut out = Vec::new();
    for f in failures.iter().take(MAX_ERROR_ANNOTATIONS) {
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
    if failures.len() > MAX_ERROR_ANNOTATIONS {
        out.push(format!(
            "::notice title=Kiln::{} more failing tests are listed in the job summary",
            failures.len() - MAX_ERROR_ANNOTATIONS
        ));
    }
    out
}

/// `::warning` per cache fault and per other degraded stage.
fn degraded_warnings(s: &RunSummary) -> Vec<String> {
    let mut out = Vec::new();
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
        let covered =
            cache_warned && (st.name == Stage::Restore.as_str() || st.name == Stage::Save.as_str());
        if st.outcome == StageOutcome::Warning && !covered {
            out.push(format!(
                "::warning title={}::{}",
                escape_property(&format!("Kiln {}", st.name)),
                escape_data(st.detail.as_deref().unwrap_or("degraded"))
            ));
        }
    }
    out
}

fn summary_title(s: &RunSummary) -> String {
    let icon = match s.outcome {
        Outcome::Passed => ":white_check_mark:",
        Outcome::Failed | Outcome::Broken => ":x:",
        Outcome::Error => ":warning:",
    };
    let commit = if s.commit.is_empty() {
        String::new()
    } else {
        format!(" at {}", code(vocab::short_sha(&s.commit)))
    };
    let branch = s
        .branch
        .as_deref()
        .map(|b| format!(" on {}", code(b)))
        .unwrap_or_default();
    let word = vocab::outcome_word(s.outcome);
    format!("## {icon} Kiln: {word}{commit}{branch}\n\n")
}

fn builds(s: &RunSummary, md: &mut String) {
    let installer = if s.installer.is_empty() {
        String::new()
    } else {
        format!(", installed with {}", s.installer)
    };
    md.push_str(&format!(
        "**Wheels:** {}{installer}  \n",
        vocab::wheel_counts(&s.wheels)
    ));
    if !s.wheels.built_names.is_empty() {
        let names: Vec<String> = s.wheels.built_names.iter().map(|n| code(n)).collect();
        md.push_str(&format!("Built: {}  \n", names.join(", ")));
    }
    match ccache_hit_rate(s) {
        Some(_) => md.push_str(&format!("**ccache:** {}\n\n", vocab::ccache_counts(s))),
        None if !s.ccache.enabled && s.stage(Stage::Bootstrap.as_str()).is_some() => {
            md.push_str("**ccache:** no compiles went through ccache\n\n")
        }
        None => md.push_str("**ccache:** nothing compiled\n\n"),
    }
}

fn failure_table(failures: &[TestFailure], md: &mut String) {
    if failures.is_empty() {
        return;
    }
    md.push_str(&format!(
        "### Failing tests ({})\n\n| Test | Location | Message |\n|---|---|---|\n",
        failures.len()
    ));
    for f in failures.iter().take(MAX_FAILURE_ROWS) {
        let loc = vocab::failure_location(f);
        let loc = if loc.is_empty() { loc } else { code(&loc) };
        let msg = f.message.lines().next().unwrap_or("");
        let msg: String = msg.chars().take(200).collect();
        md.push_str(&format!("| {} | {loc} | {} |\n", code(&f.name), cell(&msg)));
    }
    if failures.len() > MAX_FAILURE_ROWS {
        md.push_str(&format!(
            "\n…and {} more.\n",
            failures.len() - MAX_FAILURE_ROWS
        ));
    }
    md.push('\n');
}

fn who_was_told(s: &RunSummary, md: &mut String) {
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
}

fn culprit_and_flaky(s: &RunSummary, md: &mut String) {
    if let Some(c) = vocab::culprit_sentence(s) {
        md.push_str(&format!("**Culprit:** {c}\n\n"));
    }
    let flaky = vocab::flaky_items(s);
    if !flaky.is_empty() {
        md.push_str(&format!(
            "**Flaky tests** (failed, then passed when re-run; nobody blamed): {}\n\n",
            flaky.join(", ")
        ));
    }
}

/// The Markdown job summary.
pub fn render_summary(s: &RunSummary, ci: Option<&CiEnv>) -> String {
    let mut md = summary_title(s);
    if let Some(e) = &s.error {
        md.push_str(&format!("> **Error:** {}\n\n", cell(e)));
    }
    if let Some(w) = &s.blame_withheld {
        md.push_str(&format!("> {}\n\n", cell(&vocab::capitalized(w))));
    }
    md.push_str(&markdown::stage_table(s));
    md.push_str(&markdown::cache_table(s));
    builds(s, &mut md);
    md.push_str(&format!("**Tests:** {}\n\n", vocab::test_counts(&s.tests)));
    failure_table(&s.tests.failures, &mut md);
    culprit_and_flaky(s, &mut md);
    who_was_told(s, &mut md);
    if let Some(url) = ci.and_then(|c| c.run_url.as_deref()) {
        md.push_str(&format!("\n<sub>[Workflow run]({url})</sub>\n"));
    }
    md
}

/// The step outputs (`name`, `value`), all single-line.
pub fn outputs(s: &RunSummary, summary_json: Option<&Path>) -> Vec<(&'static str, String)> {
    let hit = |name: &str| {
        s.cache(name)
            .map(|c| vocab::hit_word(c.restore))
            .unwrap_or("miss")
            .to_string()
    };
    let mut out = vec![
        ("outcome", vocab::outcome_word(s.outcome).to_string()),
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

/// Annotate, append the job summary and write the step outputs (no-op outside Actions).
pub fn report(s: &RunSummary, facts: &RunFacts<'_>) {
    let Some(ci) = ci::current() else {
        return;
    };
    ci::actions::emit(&annotation_commands(
        s,
        facts.checkout,
        ci.workspace.as_deref(),
    ));
    ci::actions::append_step_summary(&format!("{}\n", render_summary(s, Some(ci))));
    ci::actions::write_outputs(&outputs(s, facts.summary_json));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::*;
    use std::path::Path;

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
                uncacheable: 4,
                ..Default::default()
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
                    ..Default::default()
                }],
                ..Default::default()
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
        assert!(
            md.contains("**ccache:** 9 hits, 1 miss, 4 uncacheable (90.0% hit rate)"),
            "{md}"
        );
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
    fn table_cells_cannot_break_the_markdown() {
        assert_eq!(cell("a|b\n<script>"), "a\\|b &lt;script&gt;");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}

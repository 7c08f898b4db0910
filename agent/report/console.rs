//! The plain-text run summary printed at the end of every run.

use crate::summary::{RunSummary, StageOutcome};

/// Render the summary as the few lines a person reads at the bottom of a CI log.
pub fn render(s: &RunSummary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "kiln: {} (exit {}) in {:.1}s, commit {}\n",
        format!("{:?}", s.outcome).to_uppercase(),
        s.exit_code,
        s.seconds,
        if s.commit.is_empty() {
            "-"
        } else {
            &s.commit[..12.min(s.commit.len())]
        },
    ));
    for st in &s.stages {
        let mark = match st.outcome {
            StageOutcome::Ok => "ok",
            StageOutcome::Failed => "FAILED",
            StageOutcome::Skipped => "skipped",
            StageOutcome::Warning => "warning",
        };
        out.push_str(&format!(
            "  {:<10} {:>8.2}s  {:<8} {}\n",
            st.name,
            st.seconds,
            mark,
            st.detail.as_deref().unwrap_or("")
        ));
    }
    for c in &s.caches {
        out.push_str(&format!(
            "  cache {:<10} restore {:<7} {:>10} B in, saved {:<5} {:>10} B out  {}\n",
            c.name,
            format!("{:?}", c.restore).to_lowercase(),
            c.bytes_restored,
            c.saved,
            c.bytes_saved,
            c.key
        ));
    }
    out.push_str(&format!(
        "  wheels: {} built, {} reused ({}); ccache: {} hits ({} remote), {} misses\n",
        s.wheels.built,
        s.wheels.reused,
        if s.installer.is_empty() {
            "-"
        } else {
            &s.installer
        },
        s.ccache.hits,
        s.ccache.remote_hits,
        s.ccache.misses
    ));
    out.push_str(&format!(
        "  tests: {} passed, {} failed, {} skipped\n",
        s.tests.passed, s.tests.failed, s.tests.skipped
    ));
    for f in &s.tests.failures {
        let loc = match (&f.file, f.line) {
            (Some(file), Some(line)) => format!(" ({file}:{line})"),
            (Some(file), None) => format!(" ({file})"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "    FAILED {}{loc}: {}\n",
            f.name,
            f.message.lines().next().unwrap_or("")
        ));
    }
    if let Some(e) = &s.error {
        out.push_str(&format!("  error: {e}\n"));
    }
    out
}

pub fn print(s: &RunSummary) {
    eprint!("{}", render(s));
}

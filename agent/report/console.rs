//! The plain-text run summary printed at the end of every run.

use crate::summary::RunSummary;

use super::vocab;

fn header(s: &RunSummary) -> String {
    format!(
        "kiln: {} (exit {}) in {:.1}s, commit {}\n",
        vocab::outcome_word(s.outcome).to_uppercase(),
        s.exit_code,
        s.seconds,
        if s.commit.is_empty() {
            "-"
        } else {
            vocab::short_sha(&s.commit)
        },
    )
}

fn tables(s: &RunSummary, out: &mut String) {
    for r in vocab::stage_rows(s) {
        let mark = if r.failed {
            r.result.to_uppercase()
        } else {
            r.result.to_string()
        };
        out.push_str(&format!(
            "  {:<10} {:>8.2}s  {:<8} {}\n",
            r.name, r.seconds, mark, r.detail
        ));
    }
    for c in vocab::cache_rows(s) {
        out.push_str(&format!(
            "  cache {:<10} restore {:<7} {:>10} B in, saved {:<5} {:>10} B out  {}\n",
            c.name, c.restore, c.bytes_restored, c.saved, c.bytes_saved, c.key
        ));
    }
}

/// Render the summary as the few lines a person reads at the bottom of a CI log.
pub fn render(s: &RunSummary) -> String {
    let mut out = header(s);
    tables(s, &mut out);
    out.push_str(&format!(
        "  wheels: {} ({}); ccache: {}\n",
        vocab::wheel_counts(&s.wheels),
        if s.installer.is_empty() {
            "-"
        } else {
            &s.installer
        },
        vocab::ccache_counts(s)
    ));
    if let Some(line) = vocab::project_line(s) {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!("  tests: {}\n", vocab::test_counts(&s.tests)));
    for f in &s.tests.failures {
        let loc = vocab::failure_location(f);
        let loc = if loc.is_empty() {
            loc
        } else {
            format!(" ({loc})")
        };
        out.push_str(&format!(
            "    FAILED {}{loc}: {}\n",
            f.name,
            f.message.lines().next().unwrap_or("")
        ));
    }
    for f in vocab::flaky_items(s) {
        out.push_str(&format!("    FLAKY {}\n", f.replace('`', "")));
    }
    if let Some(c) = vocab::culprit_sentence(s) {
        out.push_str(&format!("  culprit: {}\n", c.replace('`', "")));
    }
    if let Some(e) = &s.error {
        out.push_str(&format!("  error: {e}\n"));
    }
    if let Some(w) = &s.blame_withheld {
        out.push_str(&format!("  {w}\n"));
    }
    out
}

pub fn print(s: &RunSummary) {
    eprint!("{}", render(s));
}

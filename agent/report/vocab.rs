//! The words Kiln uses about a run, defined once for every renderer (console, Actions job
//! summary and annotations, check run, commit status, comment, email): stage and cache rows,
//! outcome and hit words, "N passed, N failed, N skipped", short SHAs, byte sizes, Markdown
//! cells. A renderer decides layout and emphasis; the words come from here.

use crate::summary::{
    CacheSummary, Outcome, RestoreHit, RunSummary, StageOutcome, TestFailure, TestSummary,
    WheelSummary,
};

pub use crate::summary::{short_sha, SHORT_SHA};

/// `passed`, `failed`, `broken` or `error` (the summary JSON's words).
pub fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Passed => "passed",
        Outcome::Failed => "failed",
        Outcome::Broken => "broken",
        Outcome::Error => "error",
    }
}

/// The sentence with its first letter in upper case ("Blame withheld: …").
pub fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `ok`, `failed`, `skipped` or `warning`.
pub fn stage_word(o: StageOutcome) -> &'static str {
    match o {
        StageOutcome::Ok => "ok",
        StageOutcome::Failed => "failed",
        StageOutcome::Skipped => "skipped",
        StageOutcome::Warning => "warning",
    }
}

/// `exact`, `partial` or `miss`.
pub fn hit_word(h: RestoreHit) -> &'static str {
    match h {
        RestoreHit::Exact => "exact",
        RestoreHit::Partial => "partial",
        RestoreHit::Miss => "miss",
    }
}

/// `3 passed, 1 failed, 0 skipped`.
pub fn test_counts(t: &TestSummary) -> String {
    t.counts()
}

/// "`tests.t::test_x` started failing at `abc123456789` (Bob, "bits: off by one"); the 4 other
/// commits in the range pass." — the culprit sentence, in Markdown.
pub fn culprit_sentence(s: &RunSummary) -> Option<String> {
    let c = s.culprit.as_ref()?;
    let tests = match s.tests.failures.as_slice() {
        [] => "the tests".to_string(),
        [one] => format!("`{}`", one.name),
        [first, rest @ ..] => format!("`{}` and {} more", first.name, rest.len()),
    };
    let others = match c.others {
        0 => String::new(),
        1 => "; the 1 other commit in the range passes".to_string(),
        n => format!("; the {n} other commits in the range pass"),
    };
    Some(format!(
        "{tests} started failing at `{}` ({}, \"{}\"){others} (found by bisection in {} build(s), {:.1}s).",
        short_sha(&c.sha),
        c.author,
        first_line(&c.subject),
        c.steps,
        c.seconds
    ))
}

/// "`name` (history `ppkpf`, known flaky)" per flaky test, for lists.
pub fn flaky_items(s: &RunSummary) -> Vec<String> {
    s.flaky
        .iter()
        .map(|f| {
            let mut notes = Vec::new();
            if !f.history.is_empty() {
                notes.push(format!("history `{}`", f.history));
            }
            if f.known_flaky {
                notes.push("known flaky".to_string());
            }
            if notes.is_empty() {
                format!("`{}`", f.name)
            } else {
                format!("`{}` ({})", f.name, notes.join(", "))
            }
        })
        .collect()
}

/// `1 built, 4 reused`.
pub fn wheel_counts(w: &WheelSummary) -> String {
    format!("{} built, {} reused", w.built, w.reused)
}

/// Bytes as a person reads them (the cache engine's progress lines use the same words).
pub use crate::cache::progress::human_bytes;

/// "dependencies from uv.lock; project editable (7.8s, 1 compiled module, pytest added)".
pub fn project_line(s: &RunSummary) -> Option<String> {
    if s.deps_source.is_empty() {
        return None;
    }
    let project = match &s.project {
        None => "project not installed".to_string(),
        Some(p) => format!(
            "project {} ({:.1}s, {} compiled module{}{})",
            p.install,
            p.seconds,
            p.compiled_modules.len(),
            if p.compiled_modules.len() == 1 {
                ""
            } else {
                "s"
            },
            if p.pytest_added { ", pytest added" } else { "" }
        ),
    };
    Some(format!("dependencies from {}; {project}", s.deps_source))
}

/// ccache's hit rate in percent of the cacheable calls, when it compiled anything.
pub fn ccache_hit_rate(s: &RunSummary) -> Option<f64> {
    let total = s.ccache.hits + s.ccache.misses;
    (total > 0).then(|| s.ccache.hits as f64 * 100.0 / total as f64)
}

/// `12 hits (2 remote), 1 miss, 5 uncacheable (92.3% hit rate)`: every reporter's words for
/// this run's compiles.
pub fn ccache_counts(s: &RunSummary) -> String {
    let c = &s.ccache;
    let remote = if c.remote_hits > 0 {
        format!(" ({} remote)", c.remote_hits)
    } else {
        String::new()
    };
    let rate = match ccache_hit_rate(s) {
        Some(r) => format!(" ({r:.1}% hit rate)"),
        None => String::new(),
    };
    format!(
        "{} hit{}{remote}, {} miss{}, {} uncacheable{rate}",
        c.hits,
        if c.hits == 1 { "" } else { "s" },
        c.misses,
        if c.misses == 1 { "" } else { "es" },
        c.uncacheable
    )
}

/// `file:line`, `file`, or empty.
pub fn failure_location(f: &TestFailure) -> String {
    match (&f.file, f.line) {
        (Some(file), Some(line)) => format!("{file}:{line}"),
        (Some(file), None) => file.clone(),
        _ => String::new(),
    }
}

/// The first line of a message, trimmed.
pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// Text safe inside a Markdown table cell or list item: no table breaks, no HTML.
pub fn md_cell(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// One row of the stage table.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRow<'a> {
    pub name: &'a str,
    pub seconds: f64,
    /// [`stage_word`]; renderers emphasise it when `failed`.
    pub result: &'static str,
    pub failed: bool,
    pub detail: &'a str,
}

/// The stage table of a run, in order.
pub fn stage_rows(s: &RunSummary) -> Vec<StageRow<'_>> {
    s.stages
        .iter()
        .map(|st| StageRow {
            name: &st.name,
            seconds: st.seconds,
            result: stage_word(st.outcome),
            failed: st.outcome == StageOutcome::Failed,
            detail: st.detail.as_deref().unwrap_or(""),
        })
        .collect()
}

/// One row of the cache table.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheRow<'a> {
    pub name: &'a str,
    pub key: &'a str,
    /// [`hit_word`].
    pub restore: &'static str,
    /// The key a partial hit restored.
    pub partial_from: Option<&'a str>,
    pub bytes_restored: u64,
    pub saved: bool,
    pub bytes_saved: u64,
}

fn cache_row(c: &CacheSummary) -> CacheRow<'_> {
    CacheRow {
        name: &c.name,
        key: &c.key,
        restore: hit_word(c.restore),
        partial_from: c
            .restored_key
            .as_deref()
            .filter(|_| c.restore == RestoreHit::Partial),
        bytes_restored: c.bytes_restored,
        saved: c.saved,
        bytes_saved: c.bytes_saved,
    }
}

/// The cache table of a run.
pub fn cache_rows(s: &RunSummary) -> Vec<CacheRow<'_>> {
    s.caches.iter().map(cache_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_short_sha_and_one_count_phrase() {
        assert_eq!(short_sha("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_sha("abc"), "abc");
        let t = TestSummary {
            passed: 3,
            failed: 1,
            ..Default::default()
        };
        assert_eq!(test_counts(&t), "3 passed, 1 failed, 0 skipped");
        assert_eq!(md_cell("a|b\n<x>&"), "a\\|b &lt;x&gt;&amp;");
    }
}

//! Per-test history on a branch, kept in its report state: which tests failed, passed or were
//! flaky (failed, then passed on a re-run) build after build. A test that flipped in several of
//! its recent builds is *known-flaky*; `kiln flaky` lists the flakiest.
//!
//! Only tests that ever failed are tracked (a suite of thousands of green tests costs nothing),
//! each for its last [`HISTORY_LEN`] builds; a test green for that long is forgotten.

use std::collections::BTreeMap;

use crate::summary::{FlakyTest, Outcome, RunSummary};

/// Builds remembered per test.
pub const HISTORY_LEN: usize = 20;
/// Flips within the history that make a test known-flaky.
pub const KNOWN_FLAKY_FLIPS: usize = 2;
/// Tests tracked per branch at most (the flakiest are kept).
const MAX_TRACKED: usize = 500;

/// Test name → history, oldest first: `p` passed, `f` failed, `k` flaky.
pub type Histories = BTreeMap<String, String>;

/// How often a history flipped: each flaky build, and each change between pass and fail.
pub fn flips(history: &str) -> usize {
    let flaky = history.chars().filter(|c| *c == 'k').count();
    let changes = history
        .chars()
        .filter(|c| *c != 'k')
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] != w[1])
        .count();
    flaky + changes
}

pub fn is_known_flaky(history: &str) -> bool {
    flips(history) >= KNOWN_FLAKY_FLIPS
}

/// The histories after this build. A build whose tests did not run changes nothing.
pub fn update(prev: &Histories, s: &RunSummary) -> Histories {
    let ran = s.tests.passed + s.tests.failed > 0 || !s.flaky.is_empty();
    if !ran || (s.outcome == Outcome::Error && s.tests.failures.is_empty()) {
        return prev.clone();
    }
    let mut next = prev.clone();
    for f in &s.tests.failures {
        next.entry(f.name.clone()).or_default();
    }
    for f in &s.flaky {
        next.entry(f.name.clone()).or_default();
    }
    for (name, h) in next.iter_mut() {
        let mark = if s.flaky.iter().any(|f| &f.name == name) {
            'k'
        } else if s.tests.failures.iter().any(|f| &f.name == name) {
            'f'
        } else {
            'p'
        };
        h.push(mark);
        let extra = h.chars().count().saturating_sub(HISTORY_LEN);
        h.drain(..extra);
    }
    next.retain(|_, h| h.chars().any(|c| c != 'p'));
    if next.len() > MAX_TRACKED {
        let mut by_flips: Vec<(String, String)> = next.into_iter().collect();
        by_flips.sort_by_key(|(_, h)| std::cmp::Reverse(flips(h)));
        by_flips.truncate(MAX_TRACKED);
        next = by_flips.into_iter().collect();
    }
    next
}

/// This build's flaky tests with their history.
pub fn annotate(flaky: &[FlakyTest], histories: &Histories) -> Vec<FlakyTest> {
    flaky
        .iter()
        .map(|f| {
            let history = histories.get(&f.name).cloned().unwrap_or_default();
            FlakyTest {
                name: f.name.clone(),
                known_flaky: is_known_flaky(&history),
                history,
            }
        })
        .collect()
}

/// `kiln flaky`'s table: flips, history and name, flakiest first.
pub fn render_table(histories: &Histories) -> String {
    let rows = ranking(histories);
    if rows.is_empty() {
        return "no test has failed or flipped on this branch in its recent builds\n".into();
    }
    let mut out = format!(
        "{:>5}  {:<width$}  test\n",
        "flips",
        "history",
        width = HISTORY_LEN
    );
    for (name, flips, history) in rows {
        let known = if is_known_flaky(history) {
            "  (known flaky)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{flips:>5}  {history:<width$}  {name}{known}\n",
            width = HISTORY_LEN
        ));
    }
    out
}

/// The tracked tests, flakiest first: (name, flips, history).
pub fn ranking(histories: &Histories) -> Vec<(&str, usize, &str)> {
    let mut rows: Vec<(&str, usize, &str)> = histories
        .iter()
        .map(|(n, h)| (n.as_str(), flips(h), h.as_str()))
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::TestFailure;

    fn build(failing: &[&str], flaky: &[&str]) -> RunSummary {
        let mut s = RunSummary::default();
        s.tests.passed = 5;
        s.tests.failed = failing.len() as u32;
        s.tests.failures = failing
            .iter()
            .map(|n| TestFailure {
                name: n.to_string(),
                ..Default::default()
            })
            .collect();
        s.flaky = flaky
            .iter()
            .map(|n| FlakyTest {
                name: n.to_string(),
                ..Default::default()
            })
            .collect();
        s.outcome = if failing.is_empty() {
            Outcome::Passed
        } else {
            Outcome::Failed
        };
        s
    }

    #[test]
    fn histories_track_failing_tests_until_they_stay_green() {
        let mut h = Histories::new();
        h = update(&h, &build(&["a"], &["b"]));
        h = update(&h, &build(&[], &[]));
        h = update(&h, &build(&[], &["b"]));
        assert_eq!(h["a"], "fpp");
        assert_eq!(h["b"], "kpk");
        assert!(is_known_flaky(&h["b"]));
        assert!(!is_known_flaky("ffff"));
        assert_eq!(ranking(&h)[0].0, "b");
        for _ in 0..HISTORY_LEN {
            h = update(&h, &build(&[], &[]));
        }
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn a_build_whose_tests_did_not_run_changes_nothing() {
        let h: Histories = [("a".to_string(), "f".to_string())].into();
        let mut s = RunSummary {
            outcome: Outcome::Error,
            ..Default::default()
        };
        assert_eq!(update(&h, &s), h);
        s.tests.passed = 0;
        assert_eq!(flips("pfpf"), 3);
    }
}

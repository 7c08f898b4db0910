//! Culprit finding: when a build fails with several commits since the last green one, bisect
//! that range (first-parent history) to the first commit at which the failing tests fail, so
//! only its authors are told.
//!
//! The search is here; building a commit is not: the caller hands in a [`Bisector`] (for
//! `kiln run`, a warm run of that commit with only the failing tests), so this module stays pure
//! and is tested with a fake. Like `git bisect skip`, a commit that cannot be built is skipped and
//! a neighbour tried instead. The number of builds is bounded; past the bound, or when only
//! skipped commits are left between a passing and a failing one, there is no single culprit and
//! the caller falls back to blaming the range.

use std::future::Future;
use std::pin::Pin;

use crate::summary::short_sha;

/// What one build of a commit said about the failing tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The tests pass there.
    Pass,
    /// They fail there (confirmed by a re-run).
    Fail,
    /// The commit cannot be built or tested (its bootstrap failed).
    Skip,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Skip => "skip",
        }
    }
}

/// Builds one commit and judges it.
pub trait Bisector: Sync {
    fn verdict<'a>(&'a self, sha: &'a str) -> Pin<Box<dyn Future<Output = Verdict> + 'a>>;
}

/// A bisection's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// The first failing commit, when the range was narrowed to one.
    pub culprit: Option<String>,
    /// Every commit built, in order, with its verdict.
    pub tested: Vec<(String, Verdict)>,
    /// Why there is no culprit, when there is none.
    pub why_not: Option<String>,
}

impl Search {
    pub fn steps(&self) -> u32 {
        self.tested.len() as u32
    }

    pub fn skipped(&self) -> u32 {
        self.tested
            .iter()
            .filter(|(_, v)| *v == Verdict::Skip)
            .count() as u32
    }
}

/// The untested index strictly between `good` and `bad` nearest their middle (the lower one on a
/// tie), skipping `skipped`.
fn next_probe(good: isize, bad: isize, skipped: &[isize]) -> Option<isize> {
    let mid2 = good + bad; // twice the middle, to stay in integers
    ((good + 1)..bad)
        .filter(|i| !skipped.contains(i))
        .min_by_key(|i| ((2 * i - mid2).abs(), *i))
}

/// Find the first failing commit of `range` (oldest first; its last commit is the failing build,
/// the commit before its first is the last green one).
pub async fn bisect(range: &[String], bisector: &dyn Bisector, max_steps: u32) -> Search {
    let mut good: isize = -1;
    let mut bad: isize = range.len() as isize - 1;
    let mut skipped: Vec<isize> = Vec::new();
    let mut tested = Vec::new();
    while bad - good > 1 {
        let Some(i) = next_probe(good, bad, &skipped) else {
            let why = format!(
                "only commits that could not be built are left between {} and {}",
                short(good, range),
                short_sha(&range[bad as usize])
            );
            return Search {
                culprit: None,
                tested,
                why_not: Some(why),
            };
        };
        if tested.len() as u32 >= max_steps {
            return Search {
                culprit: None,
                tested,
                why_not: Some(format!(
                    "ran out of steps (report.bisect.max_steps = {max_steps})"
                )),
            };
        }
        let sha = &range[i as usize];
        let v = bisector.verdict(sha).await;
        tracing::info!("bisect: {} {}", short_sha(sha), v.word());
        tested.push((sha.clone(), v));
        match v {
            Verdict::Pass => good = i,
            Verdict::Fail => bad = i,
            Verdict::Skip => skipped.push(i),
        }
    }
    Search {
        culprit: range.get(bad as usize).cloned(),
        tested,
        why_not: None,
    }
}

fn short(i: isize, range: &[String]) -> String {
    match i {
        -1 => "the last green commit".into(),
        i => short_sha(&range[i as usize]).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Commits `c0..cN`; the tests fail from `first_bad` on; `broken` cannot be built.
    struct Fake {
        first_bad: usize,
        broken: Vec<usize>,
        calls: Mutex<Vec<String>>,
    }

    impl Bisector for Fake {
        fn verdict<'a>(&'a self, sha: &'a str) -> Pin<Box<dyn Future<Output = Verdict> + 'a>> {
            Box::pin(async move {
                self.calls.lock().unwrap().push(sha.to_string());
                let i: usize = sha[1..].parse().unwrap();
                if self.broken.contains(&i) {
                    Verdict::Skip
                } else if i >= self.first_bad {
                    Verdict::Fail
                } else {
                    Verdict::Pass
                }
            })
        }
    }

    fn range(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    fn fake(first_bad: usize, broken: &[usize]) -> Fake {
        Fake {
            first_bad,
            broken: broken.to_vec(),
            calls: Mutex::new(Vec::new()),
        }
    }

    #[tokio::test]
    async fn finds_the_first_failing_commit_of_every_position() {
        for n in 1..=12 {
            for bad in 0..n {
                let f = fake(bad, &[]);
                let s = bisect(&range(n), &f, 8).await;
                assert_eq!(
                    s.culprit.as_deref(),
                    Some(format!("c{bad}").as_str()),
                    "n={n}"
                );
                assert!(s.steps() as f64 <= (n as f64).log2().ceil(), "n={n}: {s:?}");
                assert!(!f.calls.lock().unwrap().contains(&format!("c{}", n - 1)));
            }
        }
    }

    #[tokio::test]
    async fn skips_commits_that_cannot_be_built() {
        let f = fake(3, &[1]);
        let s = bisect(&range(5), &f, 8).await;
        assert_eq!(s.culprit.as_deref(), Some("c3"));
        assert_eq!(s.tested[0], ("c1".to_string(), Verdict::Skip));
        assert_eq!(s.skipped(), 1);
    }

    #[tokio::test]
    async fn no_culprit_when_only_skipped_commits_separate_pass_and_fail() {
        let f = fake(2, &[1]);
        let s = bisect(&range(4), &f, 8).await;
        assert_eq!(s.culprit, None);
        assert!(s.why_not.unwrap().contains("could not be built"));
    }

    #[tokio::test]
    async fn the_step_bound_is_kept() {
        let f = fake(40, &[]);
        let s = bisect(&range(50), &f, 3).await;
        assert_eq!((s.culprit.clone(), s.steps()), (None, 3));
        assert!(s.why_not.unwrap().contains("max_steps = 3"));
    }
}

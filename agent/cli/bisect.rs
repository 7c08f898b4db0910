//! The builds behind culprit finding: a warm `kiln run` of one commit in a work dir of its own,
//! running only the failing tests, saving nothing and reporting nothing.
//!
//! The wheelhouse and ccache restore from the same store as the failing build, so a step costs
//! a warm bootstrap and a few tests. A step whose failures were not already confirmed by the
//! test stage's re-run is built a second time before a "fail" is trusted.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use crate::report::culprit::{Bisector, Verdict};
use crate::run::{self, rerun, NoHooks};
use crate::settings::{RunRequest, Settings};
use crate::summary::{Outcome, RunSummary, TestFailure};

/// Builds commits of the failing range for [`crate::report::culprit::bisect`].
pub struct StepBuilds<'a> {
    request: &'a RunRequest,
    /// The failing tests of the build under report.
    targets: Vec<TestFailure>,
    test_command: String,
    workdir: PathBuf,
}

impl<'a> StepBuilds<'a> {
    pub fn new(request: &'a RunRequest, settings: &Settings, summary: &RunSummary) -> Self {
        let targets = summary.tests.failures.clone();
        let test = &settings.project.test;
        let ids: Option<Vec<String>> = targets.iter().map(|t| t.rerun_id.clone()).collect();
        let test_command = match (
            rerun::template(&test.command, test.rerun_command.as_deref()),
            ids,
        ) {
            (Some(template), Some(ids)) if !ids.is_empty() => rerun::render(&template, &ids),
            _ => test.command.clone(),
        };
        StepBuilds {
            request,
            targets,
            test_command,
            workdir: step_workdir(&request.workdir),
        }
    }

    /// The step work dir goes when the bisection is over.
    pub fn clean_up(&self) {
        let _ = std::fs::remove_dir_all(&self.workdir);
    }

    /// Build `sha` once: its verdict, and whether its failures were confirmed by a re-run.
    async fn build(&self, sha: &str) -> (Verdict, bool) {
        let req = self
            .request
            .bisect_step(sha, &self.workdir, &self.test_command);
        match run::execute(req, &NoHooks).await {
            Ok(f) => (judge(&f.summary, &self.targets), f.failures_confirmed),
            Err(e) => {
                tracing::info!("bisect: {sha} cannot be built: {e}");
                (Verdict::Skip, false)
            }
        }
    }

    async fn confirmed_verdict(&self, sha: &str) -> Verdict {
        match self.build(sha).await {
            (Verdict::Fail, false) => match self.build(sha).await.0 {
                Verdict::Fail => Verdict::Fail,
                _ => Verdict::Pass,
            },
            (v, _) => v,
        }
    }
}

impl Bisector for StepBuilds<'_> {
    fn verdict<'b>(&'b self, sha: &'b str) -> Pin<Box<dyn Future<Output = Verdict> + 'b>> {
        Box::pin(self.confirmed_verdict(sha))
    }
}

/// A step fails when one of the build's failing tests fails there; it is skipped when the
/// commit could not be built or its tests did not report.
fn judge(step: &RunSummary, targets: &[TestFailure]) -> Verdict {
    let hit = step
        .tests
        .failures
        .iter()
        .any(|f| targets.iter().any(|t| t.name == f.name));
    match step.outcome {
        Outcome::Error | Outcome::Broken => Verdict::Skip,
        _ if hit => Verdict::Fail,
        Outcome::Failed if step.tests.failures.is_empty() => Verdict::Skip,
        _ => Verdict::Pass,
    }
}

/// `<workdir>.bisect`, beside the run's own work dir.
fn step_workdir(workdir: &Path) -> PathBuf {
    let mut name = workdir.file_name().unwrap_or_default().to_os_string();
    name.push(".bisect");
    workdir.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(names: &[&str]) -> RunSummary {
        let mut s = RunSummary {
            outcome: if names.is_empty() {
                Outcome::Passed
            } else {
                Outcome::Failed
            },
            ..Default::default()
        };
        s.tests.failures = names
            .iter()
            .map(|n| TestFailure {
                name: n.to_string(),
                ..Default::default()
            })
            .collect();
        s
    }

    #[test]
    fn a_step_fails_only_on_the_builds_own_failing_tests() {
        let targets = failing(&["t::a"]).tests.failures;
        assert_eq!(judge(&failing(&["t::a"]), &targets), Verdict::Fail);
        assert_eq!(judge(&failing(&["t::other"]), &targets), Verdict::Pass);
        assert_eq!(judge(&failing(&[]), &targets), Verdict::Pass);
        let mut crashed = failing(&[]);
        crashed.outcome = Outcome::Failed;
        assert_eq!(judge(&crashed, &targets), Verdict::Skip);
        crashed.outcome = Outcome::Error;
        assert_eq!(judge(&crashed, &targets), Verdict::Skip);
        crashed.outcome = Outcome::Broken;
        assert_eq!(
            judge(&crashed, &targets),
            Verdict::Skip,
            "like git bisect skip"
        );
        assert_eq!(
            step_workdir(Path::new("/w/kiln/app")),
            PathBuf::from("/w/kiln/app.bisect")
        );
    }
}

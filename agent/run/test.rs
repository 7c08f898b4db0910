//! Test stage: run the configured command in the checkout with the venv activated, then read
//! the JUnit XML it left (see [`super::junit`]).
//!
//! pytest is pointed at the results directory through `PYTEST_ADDOPTS` (so wrappers such as tox
//! or make still get it); any other runner can write JUnit files into `$KILN_JUNIT_DIR`.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::process::{Output, ProcessError};
use crate::sandbox::ProjectRunner;
use crate::settings::file::FlakyPolicy;
use crate::settings::names;
use crate::summary::{Cause, Outcome, StageOutcome, TestFailure, TestSummary};

use super::junit;
use super::outcome;
use super::rerun::{self, RerunInputs};
use super::stage::Done;
use super::untrusted::{self, Scope};

/// Lines of test output kept for the report.
const TAIL_LINES: usize = 200;

/// What the test stage needs.
pub struct TestInputs<'a> {
    /// `test.command`, run with `sh -c`.
    pub command: &'a str,
    pub timeout: Option<Duration>,
    pub checkout: &'a Path,
    /// Where JUnit XML goes.
    pub results: &'a Path,
    /// The bootstrap's test environment (venv activated).
    pub env: &'a [(OsString, OsString)],
    /// The sandbox and allowlisted environment; the network as the run's trust allows.
    pub runner: &'a ProjectRunner,
    /// How failing tests are re-run, if they are.
    pub rerun: Option<RerunPlan>,
}

/// `test.rerun_failures`, the re-run command and `test.flaky`.
#[derive(Debug, Clone)]
pub struct RerunPlan {
    pub template: String,
    pub rounds: u32,
    pub flaky: FlakyPolicy,
}

impl RerunPlan {
    /// The plan for a test command, or `None` when its failures cannot or should not be re-run.
    pub fn new(
        command: &str,
        configured: Option<&str>,
        rounds: u32,
        flaky: FlakyPolicy,
    ) -> Option<RerunPlan> {
        let template = rerun::template(command, configured)?;
        (rounds > 0).then_some(RerunPlan {
            template,
            rounds,
            flaky,
        })
    }
}

/// What the test stage produced.
#[derive(Debug, Clone, Default)]
pub struct Tested {
    pub outcome: Outcome,
    /// What ended the test command (see [`super::outcome`]); `None` before it ran.
    pub cause: Option<Cause>,
    /// Why no test ran, when the command could not start.
    pub not_started: Option<String>,
    pub tests: TestSummary,
    /// The last lines of the test command's output (quoted in emails).
    pub log_tail: String,
    /// Tests that failed, then passed on a re-run (not in `tests.failures`).
    pub flaky: Vec<TestFailure>,
    /// Whether the remaining failures were confirmed by a re-run.
    pub confirmed: bool,
}

/// Run the tests and collect their results.
pub async fn test(inp: TestInputs<'_>) -> Done<Tested> {
    let junit_file = inp.results.join("junit.xml");
    let addopts = rerun::junit_addopts(&junit_file);
    let scope = Scope {
        cwd: inp.checkout,
        env: inp.env,
        runner: inp.runner,
        network: inp.runner.test_network(),
    };
    let cmd = untrusted::shell(inp.command, scope)
        .env("PYTEST_ADDOPTS", addopts)
        .env(names::JUNIT_DIR, inp.results)
        .timeout(inp.timeout)
        .echo(true);
    tracing::info!("$ {}", inp.command);
    let result = cmd.run().await;
    let (tests, warnings) = junit::collect_junit(inp.results);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let log_tail = result
        .as_ref()
        .map(|o| o.tail(TAIL_LINES))
        .unwrap_or_default();
    let cause = outcome::of_test_command(&result);
    let (outcome, stage, detail) = judge(result, cause, &tests);
    let tested = Tested {
        outcome,
        cause: Some(cause),
        not_started: (cause == Cause::TestCommandNotStarted)
            .then(|| format!("{detail}: `{}`", inp.command)),
        tests,
        log_tail,
        ..Tested::default()
    };
    match &inp.rerun {
        Some(plan) if outcome == Outcome::Failed && !tested.tests.failures.is_empty() => {
            let (tested, stage, detail) = rerun_failures(tested, plan, &inp).await;
            Done::new(tested, stage, detail)
        }
        _ => Done::new(tested, stage, detail),
    }
}

/// Re-run the failures; flaky ones leave `tests.failures`, and a build whose every failure was
/// flaky passes under `test.flaky: pass`.
async fn rerun_failures(
    mut t: Tested,
    plan: &RerunPlan,
    inp: &TestInputs<'_>,
) -> (Tested, StageOutcome, String) {
    let failures = std::mem::take(&mut t.tests.failures);
    let sorted = rerun::rerun(
        failures,
        &RerunInputs {
            template: &plan.template,
            rounds: plan.rounds,
            timeout: inp.timeout,
            checkout: inp.checkout,
            results: inp.results,
            env: inp.env,
            runner: inp.runner,
        },
    )
    .await;
    t.tests.failed = t.tests.failed.saturating_sub(sorted.flaky.len() as u32);
    t.tests.failures = sorted.failing;
    t.flaky = sorted.flaky;
    t.confirmed = sorted.rounds > 0;
    for f in &t.flaky {
        tracing::warn!("flaky test: {} failed, then passed when re-run", f.name);
    }
    let flaky_words = format!("{} flaky", t.flaky.len());
    let counts = format!("{}, {flaky_words}", t.tests.counts());
    if t.tests.failures.is_empty() && plan.flaky == FlakyPolicy::Pass {
        t.outcome = Outcome::Passed;
        t.cause = Some(Cause::TestsPassed);
        (t, StageOutcome::Warning, counts)
    } else {
        (t, StageOutcome::Failed, counts)
    }
}

/// What the command's exit means for the run. A command that could not start ran no test:
/// an error (the report may still find that the range changed it), never "tests failed".
fn judge(
    result: Result<Output, ProcessError>,
    cause: Cause,
    tests: &TestSummary,
) -> (Outcome, StageOutcome, String) {
    let counts = tests.counts();
    match (result, cause) {
        (Ok(out), _) if out.success => (Outcome::Passed, StageOutcome::Ok, counts),
        (Ok(out), Cause::TestCommandNotStarted) => (
            Outcome::Error,
            StageOutcome::Failed,
            format!(
                "the test command could not start (exit {}: {})",
                out.code.unwrap_or(-1),
                if out.code == Some(126) {
                    "not executable"
                } else {
                    "not found"
                }
            ),
        ),
        (Ok(out), _) => (
            Outcome::Failed,
            StageOutcome::Failed,
            format!("exit code {}; {counts}", out.code.unwrap_or(-1)),
        ),
        (Err(e @ ProcessError::Timeout { .. }), _) => (
            Outcome::Failed,
            StageOutcome::Failed,
            format!("{e}; {counts}"),
        ),
        (Err(e), _) => (Outcome::Error, StageOutcome::Failed, e.to_string()),
    }
}

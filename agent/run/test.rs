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
use crate::summary::{Outcome, StageOutcome, TestSummary};

use super::junit;
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
}

/// What the test stage produced.
#[derive(Debug, Clone, Default)]
pub struct Tested {
    pub outcome: Outcome,
    pub tests: TestSummary,
    /// The last lines of the test command's output (quoted in emails).
    pub log_tail: String,
}

/// Run the tests and collect their results.
pub async fn test(inp: TestInputs<'_>) -> Done<Tested> {
    let junit_file = inp.results.join("junit.xml");
    let mut addopts = std::env::var("PYTEST_ADDOPTS").unwrap_or_default();
    addopts.push_str(&format!(
        " --junitxml={} -o junit_family=xunit1",
        junit_file.display()
    ));
    let scope = Scope {
        cwd: inp.checkout,
        env: inp.env,
        runner: inp.runner,
        network: inp.runner.test_network(),
    };
    let cmd = untrusted::shell(inp.command, scope)
        .env("PYTEST_ADDOPTS", addopts.trim())
        .env("KILN_JUNIT_DIR", inp.results)
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
    let (outcome, stage, detail) = judge(result, &tests);
    Done::new(
        Tested {
            outcome,
            tests,
            log_tail,
        },
        stage,
        detail,
    )
}

/// What the command's exit means for the run.
fn judge(
    result: Result<Output, ProcessError>,
    tests: &TestSummary,
) -> (Outcome, StageOutcome, String) {
    let counts = tests.counts();
    match result {
        Ok(out) if out.success => (Outcome::Passed, StageOutcome::Ok, counts),
        Ok(out) => (
            Outcome::Failed,
            StageOutcome::Failed,
            format!("exit code {}; {counts}", out.code.unwrap_or(-1)),
        ),
        Err(e @ ProcessError::Timeout { .. }) => (
            Outcome::Failed,
            StageOutcome::Failed,
            format!("{e}; {counts}"),
        ),
        Err(e) => (Outcome::Error, StageOutcome::Failed, e.to_string()),
    }
}

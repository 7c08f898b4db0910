//! Re-running failing tests, only those, in a fresh process: a test that fails and then passes
//! is *flaky* and nobody is blamed for it; one that fails again is a real failure.
//!
//! Which command re-runs some tests depends on the runner: pytest takes node ids
//! (`tests/test_x.py::test_y`, derived from the JUnit XML by [`super::junit`]); any other runner
//! can be given a `test.rerun_command` with `{tests}` in it (the ids are also in
//! `$KILN_RERUN_TESTS`, one per line). Without either, failures are not re-run.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::settings::names;
use crate::summary::TestFailure;

use super::junit;
use super::untrusted::{self, Scope};

/// pytest's own re-run of a few node ids.
const PYTEST_RERUN: &str = "python -m pytest -p no:cacheprovider {tests}";

/// The command that re-runs some tests, `{tests}` still in it: the configured one, else
/// pytest's when the test command runs pytest, else none.
pub fn template(test_command: &str, configured: Option<&str>) -> Option<String> {
    match configured.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => Some(c.to_string()),
        None if test_command.contains("pytest") => Some(PYTEST_RERUN.to_string()),
        None => None,
    }
}

/// A test id quoted for `sh -c` (ids hold `[`, spaces, quotes in parametrized names).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The template with `{tests}` replaced by the quoted ids.
pub fn render(template: &str, ids: &[String]) -> String {
    let quoted: Vec<String> = ids.iter().map(|i| shell_quote(i)).collect();
    template.replace("{tests}", &quoted.join(" "))
}

/// What a re-run needs.
pub struct RerunInputs<'a> {
    pub template: &'a str,
    /// Re-run rounds at most (`test.rerun_failures`).
    pub rounds: u32,
    pub timeout: Option<Duration>,
    pub checkout: &'a Path,
    /// Each round writes its JUnit XML into `results/rerun-N/`.
    pub results: &'a Path,
    pub env: &'a [(OsString, OsString)],
    /// The test stage's sandbox and network, the same for a re-run.
    pub runner: &'a crate::sandbox::ProjectRunner,
}

/// The failures sorted into those that passed on a re-run and those that did not.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sorted {
    pub flaky: Vec<TestFailure>,
    pub failing: Vec<TestFailure>,
    /// Rounds actually run.
    pub rounds: u32,
}

/// Re-run `failures` up to `rounds` times, each round only the ones still failing.
pub async fn rerun(failures: Vec<TestFailure>, inp: &RerunInputs<'_>) -> Sorted {
    let (mut failing, unselectable): (Vec<_>, Vec<_>) =
        failures.into_iter().partition(|f| f.rerun_id.is_some());
    let mut sorted = Sorted::default();
    while sorted.rounds < inp.rounds && !failing.is_empty() {
        sorted.rounds += 1;
        let dir = inp.results.join(format!("rerun-{}", sorted.rounds));
        let Some(passed) = round(&failing, &dir, inp).await else {
            break;
        };
        let (now_ok, still): (Vec<_>, Vec<_>) =
            failing.into_iter().partition(|f| passed.contains(&f.name));
        sorted.flaky.extend(now_ok);
        failing = still;
    }
    failing.extend(unselectable);
    sorted.failing = failing;
    sorted
}

/// One re-run round; the names of the tests that passed, or `None` when it could not run.
async fn round(failing: &[TestFailure], dir: &Path, inp: &RerunInputs<'_>) -> Option<Vec<String>> {
    std::fs::create_dir_all(dir).ok()?;
    let ids: Vec<String> = failing.iter().filter_map(|f| f.rerun_id.clone()).collect();
    let script = render(inp.template, &ids);
    tracing::info!("re-running {} failing test(s): $ {script}", ids.len());
    let cmd = untrusted::shell(
        &script,
        Scope {
            cwd: inp.checkout,
            env: inp.env,
            runner: inp.runner,
            network: inp.runner.test_network(),
        },
    )
    .env("PYTEST_ADDOPTS", junit_addopts(&dir.join("junit.xml")))
    .env(names::JUNIT_DIR, dir)
    .env(names::RERUN_TESTS, ids.join("\n"))
    .timeout(inp.timeout)
    .echo(true);
    if let Err(e) = cmd.run().await {
        tracing::warn!("cannot re-run the failing tests: {e}");
        return None;
    }
    let (tests, warnings) = junit::collect_junit(dir);
    for w in warnings {
        tracing::warn!("{w}");
    }
    Some(tests.passed_names)
}

/// `PYTEST_ADDOPTS` that points pytest's JUnit XML at `file` (with file and line attributes),
/// on top of the user's own.
pub fn junit_addopts(file: &Path) -> String {
    let mut addopts = std::env::var("PYTEST_ADDOPTS").unwrap_or_default();
    addopts.push_str(&format!(
        " --junitxml={} -o junit_family=xunit1",
        file.display()
    ));
    addopts.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytest_commands_get_a_default_rerun_and_others_need_the_hook() {
        assert_eq!(
            template("python -m pytest -x tests", None).as_deref(),
            Some(PYTEST_RERUN)
        );
        assert_eq!(template("make check", None), None);
        assert_eq!(
            template("make check", Some("make check ONLY={tests}")).as_deref(),
            Some("make check ONLY={tests}")
        );
        assert_eq!(
            template("pytest", Some("  ")).as_deref(),
            Some(PYTEST_RERUN)
        );
    }

    #[test]
    fn ids_are_quoted_for_the_shell() {
        let ids = vec![
            "tests/t.py::test_a".to_string(),
            "tests/t.py::test_b[it's 1]".to_string(),
        ];
        assert_eq!(
            render("pytest {tests}", &ids),
            r"pytest 'tests/t.py::test_a' 'tests/t.py::test_b[it'\''s 1]'"
        );
    }
}

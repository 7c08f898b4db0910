//! The run summary: what `--summary-json` writes and what every reporter reads.
//!
//! This is a public, documented format (README "Summary JSON"); add fields, never rename them.

use serde::{Deserialize, Serialize};

/// Characters of a commit SHA shown to people (git's own default for large repositories).
pub const SHORT_SHA: usize = 12;

/// A commit SHA as people read it, in stage details and every report.
pub fn short_sha(sha: &str) -> &str {
    &sha[..sha.len().min(SHORT_SHA)]
}

/// The outcome class of a run (docs/reporting.md "Outcome classes"): who is to blame follows
/// from it. Only `failed` and `broken` blame the commits of the range; `error` blames nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The tests passed.
    Passed,
    /// The tests said so.
    Failed,
    /// The commit's own code or requirements fail to build, resolve or import.
    Broken,
    /// Kiln, the machine, the store, the network, the index, a missing tool: nobody's commit.
    #[default]
    Error,
}

impl Outcome {
    /// The process exit code for this outcome (2, usage errors, never reach a summary). A
    /// broken build ends like every failed bootstrap did before it had a class of its own: 3.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Passed => 0,
            Outcome::Failed => 1,
            Outcome::Broken | Outcome::Error => 3,
        }
    }

    /// Whether the commits of the range are to blame: the tests failed or the commit does not
    /// build. Never for an error.
    pub fn blames(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::Broken)
    }
}

/// What ended a run, as the executor saw it: the input of [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The test command ran and passed (or its every failure was flaky under `test.flaky: pass`).
    TestsPassed,
    /// The test command ran and failed, or timed out.
    TestsFailed,
    /// The test command could not start: exit 126 (not executable), 127 (not found), or no
    /// process at all.
    TestCommandNotStarted,
    /// The commit's code or requirements failed to build, resolve, install or import.
    ProjectBroken,
    /// The machine, a tool, the store, the network, the index, the disk, or Kiln itself.
    Infrastructure,
    /// The checkout failed (git, the network, a revision that does not exist).
    Checkout,
    /// A bad flag, variable or kiln.yml: the run stopped before building (exit 2).
    Configuration,
}

/// What a range of commits did that a cause's class depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RangeFacts {
    /// A commit of the range changed the test command (kiln.yml, or a file the command names).
    pub changed_test_command: bool,
}

/// The one classification of a run's ending into an outcome class (docs/reporting.md).
///
/// | cause | class |
/// |---|---|
/// | tests passed | passed |
/// | tests failed or timed out | failed |
/// | the project's code or requirements do not build, resolve, install or import | broken |
/// | the test command cannot start (126, 127, no process), the range changed it | broken |
/// | the test command cannot start, the range did not change it | error |
/// | machine, tool, store, network, index, disk, Kiln; checkout; configuration | error |
pub fn classify(cause: Cause, range: RangeFacts) -> Outcome {
    match cause {
        Cause::TestsPassed => Outcome::Passed,
        Cause::TestsFailed => Outcome::Failed,
        Cause::ProjectBroken => Outcome::Broken,
        Cause::TestCommandNotStarted if range.changed_test_command => Outcome::Broken,
        Cause::TestCommandNotStarted
        | Cause::Infrastructure
        | Cause::Checkout
        | Cause::Configuration => Outcome::Error,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageOutcome {
    Ok,
    Failed,
    Skipped,
    /// Finished, but degraded (e.g. cache store down: the build went on uncached).
    Warning,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageSummary {
    pub name: String,
    pub seconds: f64,
    pub outcome: StageOutcome,
    /// One line on what happened (shown in the console and job summaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RestoreHit {
    Exact,
    Partial,
    #[default]
    Miss,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct CacheSummary {
    pub name: String,
    pub key: String,
    pub restore: RestoreHit,
    /// The key that was restored (differs from `key` on a partial hit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_key: Option<String>,
    pub bytes_restored: u64,
    pub saved: bool,
    pub bytes_saved: u64,
    /// Why a cache was not restored or not saved, when it matters to the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct WheelSummary {
    pub built: u32,
    pub reused: u32,
    /// Names of the wheels built in this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub built_names: Vec<String>,
}

/// The project's own install (the checkout as a package), when it is installed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ProjectSummary {
    /// `editable` or `wheel`.
    pub install: String,
    /// Seconds of the install step that built the project (and local path dependencies).
    pub seconds: f64,
    /// Its compiled modules, each checked to import after the install.
    #[serde(default)]
    pub compiled_modules: Vec<String>,
    /// Build requirements kept in the wheelhouse for its isolated build.
    #[serde(default)]
    pub build_requires: Vec<String>,
    /// Kiln installed pytest because the dependencies did not bring it.
    #[serde(default)]
    pub pytest_added: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct CcacheSummary {
    pub hits: u64,
    pub misses: u64,
    /// Hits found without running the preprocessor (ccache's direct mode): a warm compile at
    /// its cheapest.
    #[serde(default)]
    pub direct_hits: u64,
    /// Hits served by ccache's remote storage (`cache.ccache.remote`).
    #[serde(default)]
    pub remote_hits: u64,
    /// False when ccache is not installed (compiles went uncached).
    #[serde(default)]
    pub enabled: bool,
    /// Compiler calls ccache cannot cache (links, preprocessing only, failed compiles,
    /// unsupported options): they ran every time.
    #[serde(default)]
    pub uncacheable: u64,
    /// Hits in percent of the cacheable calls (hits + misses); `None` when nothing cacheable ran.
    #[serde(default)]
    pub hit_rate: Option<f64>,
    /// Misses whose results a later run can hit (a compile probe's random temp file is gone
    /// after the bootstrap: its result is never hit again, and not worth a save).
    #[serde(default)]
    pub kept_misses: u64,
}

impl CcacheSummary {
    /// Fill in `hit_rate` from the counts (one decimal).
    pub fn with_hit_rate(mut self) -> Self {
        let cacheable = self.hits + self.misses;
        self.hit_rate =
            (cacheable > 0).then(|| (self.hits as f64 * 1000.0 / cacheable as f64).round() / 10.0);
        self
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TestFailure {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub message: String,
    /// The id that selects this test alone for a re-run (pytest's node id), when known.
    #[serde(skip)]
    pub rerun_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TestSummary {
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
    pub failures: Vec<TestFailure>,
    /// The test command wrote no JUnit report: the counts mean nothing (never "0 passed").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_counted: bool,
    /// Names of the tests that passed (to tell which re-run tests passed); not in the JSON.
    #[serde(skip)]
    pub passed_names: Vec<String>,
}

impl TestSummary {
    /// `3 passed, 1 failed, 0 skipped`: the one phrase for test counts, used by the test
    /// stage's detail line and every report (see `report::vocab`).
    pub fn counts(&self) -> String {
        if self.not_counted {
            return "tests not counted (no JUnit report)".into();
        }
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct BlameEntry {
    pub sha: String,
    pub author: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A test that failed and then passed on a re-run in the same build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct FlakyTest {
    pub name: String,
    /// The test's recent builds on this branch, oldest first: `p` passed, `f` failed, `k` flaky
    /// (failed, then passed on a re-run). Empty when no branch state is kept.
    #[serde(default)]
    pub history: String,
    /// It flipped in several of the branch's recent builds.
    #[serde(default)]
    pub known_flaky: bool,
}

/// The commit bisection found to be the first failing one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Culprit {
    pub sha: String,
    pub author: String,
    /// First line of the commit message.
    #[serde(default)]
    pub subject: String,
    /// Builds run to find it.
    pub steps: u32,
    /// Of those, builds that could not test the commit (skipped, like `git bisect skip`).
    #[serde(default)]
    pub skipped: u32,
    /// Time the bisection took.
    pub seconds: f64,
    /// Commits of the range other than the culprit.
    #[serde(default)]
    pub others: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Notified {
    pub channel: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RunSummary {
    pub outcome: Outcome,
    pub exit_code: i32,
    /// Full SHA of the commit that was tested.
    #[serde(default)]
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Which tool installed the wheels: "uv" or "pip" (or "command" for bootstrap.command).
    #[serde(default)]
    pub installer: String,
    /// Where the dependencies came from: uv.lock | pylock.toml | requirements | pyproject |
    /// setup.py | none.
    #[serde(default)]
    pub deps_source: String,
    /// Where the test dependencies came from, in words: `dependency group \`tests\``, `extra
    /// \`test\``, `requirements/test.txt`, `tox.ini [testenv] deps`, `kiln.yml …`, `none found`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub test_deps: String,
    /// The project's own install; absent when the project is not installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<ProjectSummary>,
    pub stages: Vec<StageSummary>,
    pub caches: Vec<CacheSummary>,
    pub wheels: WheelSummary,
    pub ccache: CcacheSummary,
    pub tests: TestSummary,
    #[serde(default)]
    pub blame: Vec<BlameEntry>,
    #[serde(default)]
    pub notified: Vec<Notified>,
    /// Tests that failed, then passed when re-run: nobody is blamed for them.
    #[serde(default)]
    pub flaky: Vec<FlakyTest>,
    /// The first failing commit of the range, when bisection found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub culprit: Option<Culprit>,
    /// A one-line reason when outcome is `error` or `broken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What ended the run (the input of [`classify`]); absent in summaries of older Kilns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// Why nobody was blamed for a run that did not pass (an error, only flaky failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blame_withheld: Option<String>,
    /// Wall time of the whole run, and the part not spent waiting on child processes.
    pub seconds: f64,
    #[serde(default)]
    pub overhead_seconds: f64,
}

impl RunSummary {
    pub fn stage(&self, name: &str) -> Option<&StageSummary> {
        self.stages.iter().find(|s| s.name == name)
    }

    pub fn cache(&self, name: &str) -> Option<&CacheSummary> {
        self.caches.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGED: RangeFacts = RangeFacts {
        changed_test_command: true,
    };

    #[test]
    fn only_the_commit_s_own_faults_blame() {
        let same = RangeFacts::default();
        assert_eq!(classify(Cause::TestsPassed, same), Outcome::Passed);
        assert_eq!(classify(Cause::TestsFailed, same), Outcome::Failed);
        assert_eq!(classify(Cause::ProjectBroken, same), Outcome::Broken);
        for infra in [Cause::Infrastructure, Cause::Checkout, Cause::Configuration] {
            assert_eq!(classify(infra, same), Outcome::Error, "{infra:?}");
            assert_eq!(classify(infra, CHANGED), Outcome::Error, "{infra:?}");
            assert!(!classify(infra, CHANGED).blames());
        }
        // A test command that cannot start is the machine's, unless the range changed it.
        assert_eq!(classify(Cause::TestCommandNotStarted, same), Outcome::Error);
        assert_eq!(
            classify(Cause::TestCommandNotStarted, CHANGED),
            Outcome::Broken
        );
        assert!(Outcome::Failed.blames() && Outcome::Broken.blames());
        assert!(!Outcome::Passed.blames() && !Outcome::Error.blames());
        assert_eq!(
            [
                Outcome::Passed,
                Outcome::Failed,
                Outcome::Broken,
                Outcome::Error
            ]
            .map(Outcome::exit_code),
            [0, 1, 3, 3]
        );
        assert_eq!(
            serde_json::to_string(&Cause::TestCommandNotStarted).unwrap(),
            "\"test_command_not_started\""
        );
        assert_eq!(
            serde_json::to_string(&Outcome::Broken).unwrap(),
            "\"broken\""
        );
    }
}

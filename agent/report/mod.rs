//! Report stage: tell people how the build went.
//!
//! Takes a read-only view of the finished run, the [`RunSummary`] plus a few [`RunFacts`], never
//! the executor's state. The console summary always prints; GitHub (statuses, check runs,
//! comments), email and the GitHub Actions job summary plug in here, all worded by [`vocab`].
//! A reporting failure never changes the exit code.

pub mod actions;
pub mod blame;
mod breakage;
pub mod console;
pub mod culprit;
pub mod email;
pub mod flaky;
pub mod github;
mod markdown;
pub mod policy;
pub mod render;
pub mod state;
pub mod vocab;

use std::path::Path;

pub use breakage::repo_identity;

use crate::cache::Store;
use crate::ci::ReportTarget;
use crate::settings::file::ReportConfig;
use crate::summary::{BlameEntry, Culprit, FlakyTest, Notified, Outcome, RunSummary};

/// What the reporters need to know about a run besides its summary.
#[derive(Clone, Copy)]
pub struct RunFacts<'a> {
    /// `--repo` as given (a path or a URL): blame reads history from it.
    pub repo: &'a str,
    /// The checkout the tests ran in.
    pub checkout: &'a Path,
    /// Its git dir, recorded before the project's code ran: blame's only way into git
    /// (`None` when the checkout failed).
    pub git: Option<&'a crate::git::GitDir>,
    /// The store, for the branch's report state.
    pub store: Option<&'a Store>,
    /// `report:` of kiln.yml, with `--report-mode` applied.
    pub report: &'a ReportConfig,
    /// Whether this run may save state (false for fork pull requests and `--no-save`).
    pub save_allowed: bool,
    /// Where `--summary-json` goes (a step output under Actions).
    pub summary_json: Option<&'a Path>,
    /// The last lines of the test output (quoted in emails).
    pub log_tail: &'a str,
    /// Where the GitHub reporter posts.
    pub target: &'a ReportTarget,
    /// Builds commits for culprit finding, when `report.bisect` is on.
    pub bisector: Option<&'a dyn culprit::Bisector>,
    /// `test.command`, when the settings were read (a range that changed it is to blame when
    /// it cannot start).
    pub test_command: Option<&'a str>,
}

/// Who the report blamed and told, for the run summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Told {
    pub blame: Vec<BlameEntry>,
    pub notified: Vec<Notified>,
    /// The first failing commit, when bisection found it.
    pub culprit: Option<Culprit>,
    /// This build's flaky tests with their history on the branch.
    pub flaky: Vec<FlakyTest>,
    /// The run's outcome class once the range is known (a test command that could not start
    /// is a broken build when the range changed it).
    pub outcome: Option<Outcome>,
    /// Why nobody was blamed for a run that did not pass.
    pub blame_withheld: Option<String>,
}

/// Run every configured reporter. Never fails the build.
pub async fn report(summary: &RunSummary, facts: &RunFacts<'_>) -> Told {
    // Blame, commit status, check run, @mention comment, email (see breakage.rs).
    let told = breakage::report(summary, facts).await;
    // Last, so the job summary can say who the other reporters told.
    let mut seen = summary.clone();
    told.seal(&mut seen);
    actions::report(&seen, facts);
    told
}

impl Told {
    /// Put who was blamed and told into the run's summary.
    pub fn seal(&self, summary: &mut RunSummary) {
        if let Some(o) = self.outcome {
            summary.outcome = o;
            summary.exit_code = o.exit_code();
        }
        summary.blame = self.blame.clone();
        summary.notified = self.notified.clone();
        summary.culprit = self.culprit.clone();
        if !self.flaky.is_empty() {
            summary.flaky = self.flaky.clone();
        }
        summary.blame_withheld = self.blame_withheld.clone();
    }
}

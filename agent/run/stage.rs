//! The stages of a run, by name and order, and the wrapper that times each one into the run
//! summary.

use std::time::Instant;

use crate::summary::{StageOutcome, StageSummary};

/// One stage of a run. The order of the variants is the order of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Checkout,
    Restore,
    Bootstrap,
    Test,
    Save,
    Report,
}

impl Stage {
    /// Every stage, in run order.
    pub const ALL: [Stage; 6] = [
        Stage::Checkout,
        Stage::Restore,
        Stage::Bootstrap,
        Stage::Test,
        Stage::Save,
        Stage::Report,
    ];

    /// The stage's name in logs, the console and the summary JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Checkout => "checkout",
            Stage::Restore => "restore",
            Stage::Bootstrap => "bootstrap",
            Stage::Test => "test",
            Stage::Save => "save",
            Stage::Report => "report",
        }
    }

    /// Position in the run, from 1.
    pub fn order(self) -> usize {
        self as usize + 1
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Told when a stage starts and ends (e.g. to open and close a GitHub Actions log group).
pub trait StageHooks: Sync {
    fn started(&self, _stage: Stage) {}
    fn finished(&self, _stage: Stage) {}
}

/// Hooks that do nothing.
pub struct NoHooks;
impl StageHooks for NoHooks {}

/// What a stage function returns: its typed value and the line the summary shows.
#[derive(Debug)]
pub struct Done<T> {
    pub value: T,
    pub outcome: StageOutcome,
    pub detail: Option<String>,
}

impl<T> Done<T> {
    pub fn new(value: T, outcome: StageOutcome, detail: impl Into<Option<String>>) -> Done<T> {
        Done {
            value,
            outcome,
            detail: detail.into(),
        }
    }
}

/// The stage log of one run: times each stage and records how it went.
pub struct Stages<'h> {
    hooks: &'h dyn StageHooks,
    done: Vec<StageSummary>,
}

impl<'h> Stages<'h> {
    pub fn new(hooks: &'h dyn StageHooks) -> Stages<'h> {
        Stages {
            hooks,
            done: Vec::new(),
        }
    }

    /// Run one stage, timed, and record it.
    pub async fn time<T>(
        &mut self,
        stage: Stage,
        f: impl std::future::Future<Output = Done<T>>,
    ) -> T {
        let name = stage.as_str();
        self.hooks.started(stage);
        tracing::info!("── {name}");
        let started = Instant::now();
        let Done {
            value,
            outcome,
            detail,
        } = f.await;
        let seconds = started.elapsed().as_secs_f64();
        match &detail {
            Some(d) => tracing::info!("{name}: {d} ({seconds:.2}s)"),
            None => tracing::info!("{name}: done ({seconds:.2}s)"),
        }
        self.hooks.finished(stage);
        self.done.push(StageSummary {
            name: name.to_string(),
            seconds,
            outcome,
            detail,
        });
        value
    }

    /// Record a stage that did not run.
    pub fn skip(&mut self, stage: Stage) {
        self.done.push(StageSummary {
            name: stage.as_str().into(),
            seconds: 0.0,
            outcome: StageOutcome::Skipped,
            detail: None,
        });
    }

    /// Record every stage before `until` that has not been recorded as skipped.
    pub fn skip_rest(&mut self, until: Stage) {
        for stage in Stage::ALL.into_iter().filter(|s| *s < until) {
            if !self.done.iter().any(|d| d.name == stage.as_str()) {
                self.skip(stage);
            }
        }
    }

    /// The stages recorded so far.
    pub fn snapshot(&self) -> Vec<StageSummary> {
        self.done.clone()
    }

    pub fn into_summaries(self) -> Vec<StageSummary> {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stages_are_recorded_in_order_with_skips_filled_in() {
        let mut s = Stages::new(&NoHooks);
        let v = s
            .time(Stage::Checkout, async {
                Done::new(7, StageOutcome::Ok, Some("at abc".into()))
            })
            .await;
        assert_eq!(v, 7);
        s.skip_rest(Stage::Report);
        let names: Vec<String> = s.into_summaries().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["checkout", "restore", "bootstrap", "test", "save"]);
        assert_eq!(Stage::Save.order(), 5);
    }
}

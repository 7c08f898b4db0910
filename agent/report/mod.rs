//! Report stage: tell people how the build went.
//!
//! The console summary always prints; GitHub (statuses, check runs, comments), email and the
//! GitHub Actions job summary plug in here. A reporting failure never changes the exit code.

pub mod actions;
pub mod console;

use crate::pipeline::RunContext;

/// Called when a stage starts: under GitHub Actions, opens a collapsible log group.
pub fn stage_started(name: &str) {
    actions::stage_started(name);
}

/// Called when a stage ends: closes the stage's log group.
pub fn stage_finished(name: &str) {
    actions::stage_finished(name);
}

/// Run every configured reporter. Never fails the build.
pub async fn report(ctx: &mut RunContext) {
    // Last, so the job summary can say who the other reporters told.
    actions::report(ctx).await;
}

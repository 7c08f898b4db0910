//! Report stage: tell people how the build went.
//!
//! The console summary always prints; GitHub (statuses, check runs, comments), email and the
//! GitHub Actions job summary plug in here. A reporting failure never changes the exit code.

pub mod actions;
pub mod blame;
mod breakage;
pub mod console;
pub mod email;
pub mod github;
pub mod policy;
pub mod render;
pub mod state;

pub use breakage::TEST_LOG_TAIL;

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
    // Blame, commit status, check run, @mention comment, email (see breakage.rs).
    breakage::report(ctx).await;
    // Last, so the job summary can say who the other reporters told.
    actions::report(ctx).await;
}

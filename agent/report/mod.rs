//! Report stage: tell people how the build went.
//!
//! The console summary always prints; GitHub (statuses, check runs, comments), email and the
//! GitHub Actions job summary plug in here. A reporting failure never changes the exit code.

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

/// Called when a stage starts (GitHub Actions log groups hook in here).
pub fn stage_started(_name: &str) {}

/// Called when a stage ends.
pub fn stage_finished(_name: &str) {}

/// Run every configured reporter. Never fails the build.
pub async fn report(ctx: &mut RunContext) {
    // Blame, commit status, check run, @mention comment, email (see breakage.rs).
    breakage::report(ctx).await;
}

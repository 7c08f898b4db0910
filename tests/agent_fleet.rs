//! `kiln agent` as a fleet and for teams: the queue suite on both backends, two agents on one
//! PostgreSQL queue, the web page in headless Chromium, GitHub App auth.

mod agent_support;

#[path = "agent_fleet/fleet.rs"]
mod fleet;
#[path = "agent_fleet/github_app.rs"]
mod github_app;
#[path = "agent_fleet/queue_suite.rs"]
mod queue_suite;
#[path = "agent_fleet/web.rs"]
mod web;

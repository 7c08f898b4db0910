//! Kiln's end-to-end tests: one test binary, one module per area, all driving the real `kiln`
//! (or the library) against real tools and local servers. Shared harnesses live in `support`.
//! Run one area with `cargo test --test e2e -- cache_archive::`.

mod support;

mod action;
mod action_inputs;
mod action_lint;
mod agent_builds;
mod agent_crash;
mod agent_fleet;
mod agent_github_app;
mod agent_load;
mod agent_poll;
mod agent_queue;
mod agent_report;
mod agent_web;
mod agent_webhooks;
mod cache_archive;
mod cache_cli;
mod cache_gha;
mod cache_stores;
mod checkout;
mod culprit;
mod hostile_workdir;
mod index_ccache_remote;
mod index_offline;
mod index_serve;
mod index_wheelhouse;
mod outcome_classes;
mod projects;
mod projects_bootstrap;
mod projects_zero_config;
mod report_email;
mod report_github;
mod report_run;
mod run;
mod run_gha;
mod sandbox;
mod sandbox_reach;
mod sandbox_show;
mod trust_git;

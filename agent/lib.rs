//! Kiln: clean CI builds of Python projects with compiled dependencies, fast, and the people who
//! broke the build told.
//!
//! One run is six stages (see `pipeline`): checkout → restore → bootstrap → test → save → report.

pub mod bootstrap;
pub mod cache;
pub mod checkout;
pub mod ci_env;
pub mod config;
pub mod doctor;
pub mod git;
pub mod index;
pub mod init;
pub mod logging;
pub mod pipeline;
pub mod process;
pub mod report;
pub mod server;
pub mod summary;
pub mod tests_run;
pub mod wheelhouse;

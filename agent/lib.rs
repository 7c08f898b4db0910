//! Kiln: clean CI builds of Python projects with compiled dependencies, fast, and the people who
//! broke the build told.
//!
//! One run is six stages: checkout → restore → bootstrap → test → save (the executor in [`run`])
//! → report ([`report`]). Data flows one way: [`settings`] → [`run`] → [`summary`] → [`report`];
//! [`ci`] is the only reader and writer of GitHub Actions' variables and files. The command line
//! and its exit codes are in [`cli`] (`cli::exit`). See docs/architecture.md for the map.

pub mod cache;
pub mod ci;
pub mod cli;
pub mod doctor;
pub mod file_syntax;
pub mod git;
pub mod html;
pub mod index;
pub mod init;
pub mod logging;
pub mod process;
pub mod project;
pub mod report;
pub mod run;
pub mod safe_name;
pub mod sandbox;
pub mod server;
pub mod settings;
pub mod size;
pub mod summary;
pub mod untrusted_fs;
pub mod wheelhouse;
pub mod wheels;
pub mod yaml;

/// kiln.yml's types under their former path, for code not yet moved to [`settings`].
pub use settings::file as config;

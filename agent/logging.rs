//! `tracing` set-up: human-readable on stderr by default, JSON lines with `--log-format json`.

use tracing_subscriber::EnvFilter;

use crate::settings::names;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Install the global subscriber. `RUST_LOG`/`KILN_LOG` override the default `info` level.
pub fn init(format: LogFormat, verbose: bool) {
    let default = if verbose { "kiln=debug,info" } else { "info" };
    let filter = std::env::var(names::LOG)
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.without_time().try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

//! Bootstrap stage (being written).
use crate::cache::key::KeyInputs;
use crate::pipeline::RunContext;
use crate::summary::{CcacheSummary, WheelSummary};
use std::ffi::OsString;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, Default)]
pub struct BootstrapOutput {
    pub installer: String,
    pub wheels: WheelSummary,
    pub ccache: CcacheSummary,
    pub ccache_new_entries: bool,
    pub test_env: Vec<(OsString, OsString)>,
}

pub async fn key_inputs(_ctx: &RunContext) -> Result<KeyInputs, BootstrapError> {
    todo!()
}

pub async fn bootstrap(_ctx: &mut RunContext) -> Result<BootstrapOutput, BootstrapError> {
    todo!()
}

//! archive: see mod.rs (issue 3).

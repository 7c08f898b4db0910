//! manifest: see mod.rs (issue 3).

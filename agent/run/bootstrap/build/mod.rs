//! Kiln's PEP 517 frontend and what it builds: [`frontend`] (one wheel in one hook process, in a
//! build environment at a fixed path), [`editable`] (the project's editable wheel) and
//! [`sdists`] (the sdists a cold uv install would build, built first, in parallel).

pub mod editable;
pub mod frontend;
pub mod sdists;

/// At most this many sdists build at once: one per core.
pub fn concurrent_builds() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

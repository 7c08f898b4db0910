//! The wheelhouse: a directory of wheels, as a domain type (files only, no processes).
//!
//! Every part of Kiln that touches wheels agrees here on what a wheel's file name says and
//! which version is newest ([`names`]), what a wheelhouse holds and how it is pruned ([`dir`]),
//! which of its wheels a pinned requirement set uses ([`cover`]), how the wheels uv built get in
//! ([`harvest`]), and where `kiln run --offline` looks for wheels ([`offline`]). The bootstrap
//! fills the wheelhouse; `kiln index` and `kiln wheelhouse` carry its wheels elsewhere.

pub mod cover;
pub mod dir;
pub mod harvest;
pub mod names;
pub mod offline;

pub use cover::{covered_by, Covered};
pub use dir::{list, prune};
pub use harvest::harvest_built_wheels;

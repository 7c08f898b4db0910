//! What every end-to-end test shares: the one way to start the `kiln` under test, isolated from
//! the machine the tests run on, and the per-area harnesses below.
//!
//! - `run`: fixture repositories, `kiln run` with a summary, one shared cold run (`seed`).
//! - `action`: a simulated GitHub Actions runner and a loopback releases page.
//! - `agent`: a real `kiln agent` on loopback, signed deliveries, local git sources.
//! - `index`: real wheels built offline, `kiln index serve`, redis.
//! - `report`: an SMTP sink (aiosmtpd) and multi-author git histories.
//! - `gha_fake`: the GitHub Actions cache service v2 (Twirp, signed blob URLs, REST) on loopback.
#![allow(dead_code)]

pub mod action;
pub mod agent;
pub mod gha_fake;
pub mod index;
pub mod postgres;
pub mod report;
pub mod run;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (where fixtures/ lives).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `kiln` binary cargo built for these tests.
pub const KILN_BIN: &str = env!("CARGO_BIN_EXE_kiln");

pub fn kiln_bin() -> PathBuf {
    PathBuf::from(KILN_BIN)
}

/// Host variables that switch Kiln's behaviour (its own settings, GitHub Actions and its cache
/// service, store credentials, log filters). None may reach a `kiln` under test: a developer's
/// `KILN_STORE` or a CI runner's `GITHUB_ACTIONS` would otherwise change what a test sees. A test
/// that wants one sets it on the command.
const HOST_PREFIXES: [&str; 8] = [
    "KILN_",
    "GITHUB_",
    "GH_",
    "RUNNER_",
    "INPUT_",
    "ACTIONS_",
    "AWS_",
    "AZURE_STORAGE_",
];
const HOST_NAMES: [&str; 2] = ["RUST_LOG", "GOOGLE_APPLICATION_CREDENTIALS"];

/// Remove every host variable of [`HOST_PREFIXES`] / [`HOST_NAMES`] from `cmd`, and colours.
pub fn isolate(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let Some(name) = k.to_str() else { continue };
        if HOST_PREFIXES.iter().any(|p| name.starts_with(p)) || HOST_NAMES.contains(&name) {
            cmd.env_remove(&k);
        }
    }
    cmd.env("NO_COLOR", "1")
}

/// A `kiln` command isolated from the machine's Kiln, CI and store variables (see [`isolate`]).
pub fn kiln() -> Command {
    let mut c = Command::new(kiln_bin());
    isolate(&mut c);
    c
}

/// [`kiln`] with its own HOME and cache dir (so the embedded store and every default path live
/// under `home`).
pub fn kiln_home(home: &Path) -> Command {
    let mut c = kiln();
    c.env("HOME", home)
        .env("XDG_CACHE_HOME", home.join(".cache"));
    c
}

/// Incompressible bytes (xorshift64), the same for the same seed: archives of them have a
/// predictable size.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

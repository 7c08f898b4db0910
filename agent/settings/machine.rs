//! What this machine is tuned with: store retries and timeouts, unpacking threads, the progress
//! bar, the sandbox binary, the offline wheelhouse, and the credentials stores open with.
//!
//! Read once from `KILN_*` (and the credential variables of the store services) when a command
//! starts ([`Machine::from_process_env`]), then passed down as typed values: nothing below reads
//! the process environment for these mid-run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{names, Env};
use crate::sandbox::BwrapBin;

/// How often and how patiently a store operation is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per operation (`KILN_STORE_RETRIES`, default 3, 1 to 10).
    pub attempts: u32,
    /// First backoff delay (`KILN_STORE_RETRY_DELAY_MS`, default 500 ms), doubled per attempt.
    pub base_delay: Duration,
    /// How long the store may stay silent before an operation fails (`KILN_STORE_TIMEOUT`,
    /// seconds, default 5). It is also the retry budget of one operation: no retry starts
    /// after an operation has spent this long, so a silent endpoint costs about this much, once.
    pub timeout: Duration,
}

impl RetryPolicy {
    pub fn from_env(env: Env) -> RetryPolicy {
        let secs = env(names::STORE_TIMEOUT)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(5)
            .max(1);
        RetryPolicy {
            attempts: env(names::STORE_RETRIES)
                .and_then(|v| v.parse().ok())
                .unwrap_or(3)
                .clamp(1, 10),
            base_delay: env(names::STORE_RETRY_DELAY_MS)
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_millis(500)),
            timeout: Duration::from_secs(secs),
        }
    }
}

/// How archives move between the store and the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferSettings {
    /// A progress bar on a terminal (`KILN_NO_PROGRESS` unset); CI logs get one line anyway.
    pub progress: bool,
    /// File writer threads of a large restore (`KILN_EXTRACT_THREADS`, default: the cores,
    /// 1 to 16).
    pub extract_threads: usize,
}

impl TransferSettings {
    pub fn from_env(env: Env) -> TransferSettings {
        TransferSettings {
            progress: env(names::NO_PROGRESS).is_none(),
            extract_threads: env(names::EXTRACT_THREADS)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| {
                    std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(2)
                })
                .clamp(1, 16),
        }
    }
}

/// Uploads to the GitHub Actions cache service: block size and blocks in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GhaUpload {
    /// `KILN_GHA_BLOCK_SIZE`, bytes (default 32 MiB).
    pub block_size: u64,
    /// `KILN_GHA_UPLOAD_CONCURRENCY` (default 4).
    pub concurrency: usize,
}

impl GhaUpload {
    pub fn from_env(env: Env) -> GhaUpload {
        let num = |name: &str| env(name).and_then(|v| v.trim().parse().ok());
        GhaUpload {
            block_size: num(names::GHA_BLOCK_SIZE).unwrap_or(32 << 20),
            concurrency: num(names::GHA_UPLOAD_CONCURRENCY)
                .and_then(|n: u64| usize::try_from(n).ok())
                .unwrap_or(4),
        }
    }
}

/// Everything a store is tuned with, apart from its credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreTuning {
    pub retry: RetryPolicy,
    pub transfer: TransferSettings,
    pub gha_upload: GhaUpload,
}

impl StoreTuning {
    pub fn from_env(env: Env) -> StoreTuning {
        StoreTuning {
            retry: RetryPolicy::from_env(env),
            transfer: TransferSettings::from_env(env),
            gha_upload: GhaUpload::from_env(env),
        }
    }
}

/// The environment a store's backend takes its credentials and endpoints from (`AWS_*`,
/// `AZURE_*`, `ACTIONS_*`, `KILN_S3_*`, …), captured once. Its `Debug` shows no values.
#[derive(Clone, Default)]
pub struct Credentials(Arc<BTreeMap<String, String>>);

impl Credentials {
    /// The process environment as it is now.
    pub fn from_process_env() -> Credentials {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Credentials(Arc::new(vars.collect()))
    }

    /// A fixed set of variables (tests, several stores in one process).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Credentials {
        let map = pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Credentials(Arc::new(map))
    }

    /// One variable, as an [`Env`] would answer.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} variables)", self.0.len())
    }
}

/// What a store opens with (see `cache::Store::open`).
#[derive(Clone, Debug)]
pub struct StoreSettings {
    pub tuning: StoreTuning,
    pub credentials: Credentials,
}

impl Default for StoreSettings {
    /// The defaults, no credentials: as with an empty environment.
    fn default() -> StoreSettings {
        StoreSettings {
            tuning: StoreTuning::from_env(&|_| None),
            credentials: Credentials::default(),
        }
    }
}

impl StoreSettings {
    /// Tuning and credentials from the process environment, read now.
    pub fn from_process_env() -> StoreSettings {
        let credentials = Credentials::from_process_env();
        let mut tuning = StoreTuning::from_env(&|k| credentials.get(k));
        // Set to anything, even a value that is not UTF-8.
        tuning.transfer.progress = std::env::var_os(names::NO_PROGRESS).is_none();
        StoreSettings {
            tuning,
            credentials,
        }
    }
}

/// `KILN_BWRAP_BIN` of the process (a path need not be UTF-8).
fn bwrap_from_process_env() -> BwrapBin {
    match std::env::var_os(names::BWRAP_BIN) {
        Some(p) if p.is_empty() => BwrapBin::Disabled,
        Some(p) => BwrapBin::Named(PathBuf::from(p)),
        None => BwrapBin::OnPath,
    }
}

/// One machine's settings, read once when a command starts (`Default`: as with an empty
/// environment).
#[derive(Clone, Debug, Default)]
pub struct Machine {
    pub store: StoreSettings,
    pub bwrap: BwrapBin,
    /// `KILN_OFFLINE_WHEELHOUSE` when set and not empty.
    pub offline_wheelhouse: Option<PathBuf>,
}

impl Machine {
    /// Read from the process environment, now.
    pub fn from_process_env() -> Machine {
        Machine {
            store: StoreSettings::from_process_env(),
            bwrap: bwrap_from_process_env(),
            offline_wheelhouse: std::env::var_os(names::OFFLINE_WHEELHOUSE)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        }
    }
}

//! `kiln cache`: the flags here, the commands in [`commands`] (over the cache engine in
//! `crate::cache`).

pub mod commands;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::settings::names;
use crate::settings::Compression;
use crate::size::parse_size;

#[derive(Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// Where the caches are.
#[derive(Args, Debug, Clone)]
pub struct StoreArg {
    /// Store URL: file:///path, s3://bucket/prefix, gha, webdav+https://host/path,
    /// azblob://container/prefix, gcs://bucket/prefix. Default: `gha` under GitHub Actions,
    /// else ~/.cache/kiln/store. [env: KILN_STORE]
    #[arg(long)]
    pub store: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Archive directories under a key (skipped when the key already holds the same content).
    Save(SaveArgs),
    /// Restore directories from a key, else from the newest key starting with a restore key.
    /// Prints `exact KEY`, `partial KEY` or `miss`.
    Restore(RestoreArgs),
    /// List the caches in the store: key, size, age.
    List(ListArgs),
    /// Delete caches older than --max-age, then the oldest until under --max-total-size.
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Cache key (letters, digits and - _ . + = @).
    #[arg(long)]
    pub key: String,
    /// Directory to archive (repeatable; restored by position).
    #[arg(long = "path", required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub store: StoreArg,
    /// Archive compression.
    #[arg(long, value_enum, default_value_t = Compression::Zstd, env = names::CACHE_COMPRESSION)]
    pub compression: Compression,
    /// Compression level (zstd 1-19, default 3; gzip 1-9, default 6).
    #[arg(long, env = names::CACHE_LEVEL)]
    pub level: Option<i32>,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Cache key to restore.
    #[arg(long)]
    pub key: String,
    /// Key prefix to fall back to, newest match first (repeatable, tried in order).
    #[arg(long = "restore-key")]
    pub restore_keys: Vec<String>,
    /// Directory to restore (repeatable, in the order they were saved).
    #[arg(long = "path", required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub store: StoreArg,
    /// Exit 1 unless the exact key was restored.
    #[arg(long)]
    pub fail_on_miss: bool,
    /// Only say which key would be restored; download nothing.
    #[arg(long)]
    pub lookup_only: bool,
    /// The most the restore may write (e.g. 20G); a bigger archive is a miss.
    #[arg(long, env = names::CACHE_MAX_RESTORE_SIZE, value_parser = parse_size, default_value = "20G")]
    pub max_restore_size: u64,
    /// The most entries (files, directories, links) the restore may create.
    #[arg(long, env = names::CACHE_MAX_RESTORE_ENTRIES, default_value_t = crate::cache::RestoreLimits::DEFAULT_MAX_ENTRIES)]
    pub max_restore_entries: u64,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only keys starting with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    #[command(flatten)]
    pub store: StoreArg,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Delete caches older than this (e.g. 7d, 12h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_age: Option<Duration>,
    /// Then delete the oldest caches until the store holds at most this much (e.g. 5G, 500M).
    #[arg(long, value_parser = parse_size)]
    pub max_total_size: Option<u64>,
    /// Print what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub store: StoreArg,
}

//! `kiln cache save|restore|list|prune`: the cache engine as standalone commands, usable from
//! any CI (the same semantics as actions/cache's restore and save).
//!
//! Exit codes: 0 done (a store outage is a warning, not a failure), 1 `--fail-on-miss` and no
//! exact hit, 2 usage error (bad flag, bad store URL), 3 the store could not be read for
//! `list`/`prune`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::progress::human_bytes;
use super::prune::{self, PrunePolicy};
use super::store::Store;
use super::{catalog, RestoreHit, SaveOptions};
use crate::config::Compression;

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

impl StoreArg {
    fn open(&self) -> Result<Store, u8> {
        let url =
            crate::settings::store_url(self.store.clone(), None, &crate::settings::process_env);
        Store::from_url(&url).map_err(|e| {
            eprintln!("kiln: error: {e}");
            2
        })
    }
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
    /// Cache key (letters, digits and - _ . + = , @).
    #[arg(long)]
    pub key: String,
    /// Directory to archive (repeatable; restored by position).
    #[arg(long = "path", required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub store: StoreArg,
    /// Archive compression.
    #[arg(long, value_enum, default_value_t = Compression::Zstd, env = "KILN_CACHE_COMPRESSION")]
    pub compression: Compression,
    /// Compression level (zstd 1-19, default 3; gzip 1-9, default 6).
    #[arg(long, env = "KILN_CACHE_LEVEL")]
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
    #[arg(long, env = "KILN_CACHE_MAX_RESTORE_SIZE", value_parser = parse_size, default_value = "20G")]
    pub max_restore_size: u64,
    /// The most entries (files, directories, links) the restore may create.
    #[arg(long, env = "KILN_CACHE_MAX_RESTORE_ENTRIES", default_value_t = super::RestoreLimits::DEFAULT_MAX_ENTRIES)]
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

/// `500M`, `5G`, `1GiB`, `1024` → bytes (K/M/G/T are powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 500M or 5G)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use K, M, G or T)"
            ))
        }
    };
    Ok((n * mult as f64) as u64)
}

/// Run a `kiln cache` command; returns the exit code.
pub async fn run(args: CacheArgs) -> u8 {
    match args.command {
        CacheCommand::Save(a) => save(a).await,
        CacheCommand::Restore(a) => restore(a).await,
        CacheCommand::List(a) => list(a).await,
        CacheCommand::Prune(a) => prune_cmd(a).await,
    }
}

async fn save(a: SaveArgs) -> u8 {
    // Untrusted code (a fork's pull request under GitHub Actions) must not write to the cache.
    if let Some(why) = crate::ci::current().and_then(|c| c.save_forbidden()) {
        eprintln!("kiln: {why}; not saving {}", a.key);
        return 0;
    }
    let store = match a.store.open() {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Some(level) = a.level {
        let range = match a.compression {
            Compression::Zstd => 1..=19,
            Compression::Gzip => 1..=9,
        };
        if !range.contains(&level) {
            eprintln!(
                "kiln: error: --level {level} is out of range {}..={} for {:?}",
                range.start(),
                range.end(),
                a.compression
            );
            return 2;
        }
    }
    let opts = SaveOptions {
        compression: a.compression,
        level: a.level,
    };
    let out = super::save(&store, &a.key, &a.paths, &opts).await;
    for w in &out.warnings {
        eprintln!("kiln: warning: {w}");
    }
    if out.saved {
        println!("saved {} ({})", a.key, human_bytes(out.bytes));
    } else {
        println!(
            "skipped {}: {}",
            a.key,
            out.skipped_reason.as_deref().unwrap_or("not saved")
        );
    }
    0
}

async fn restore(a: RestoreArgs) -> u8 {
    let store = match a.store.open() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let out = if a.lookup_only {
        super::lookup(&store, &a.key, &a.restore_keys).await
    } else {
        let limits = super::RestoreLimits {
            max_bytes: a.max_restore_size,
            max_entries: a.max_restore_entries,
        };
        super::restore_within(&store, &a.key, &a.restore_keys, &a.paths, limits).await
    };
    for w in &out.warnings {
        eprintln!("kiln: warning: {w}");
    }
    let (word, matched) = match out.hit {
        RestoreHit::Exact => ("exact", out.matched_key.clone()),
        RestoreHit::Partial => ("partial", out.matched_key.clone()),
        RestoreHit::Miss => ("miss", None),
    };
    match &matched {
        Some(k) => println!("{word} {k}"),
        None => println!("{word}"),
    }
    write_github_output(word, matched.as_deref());
    if a.fail_on_miss && out.hit != RestoreHit::Exact {
        eprintln!("kiln: error: no cache for key {} (--fail-on-miss)", a.key);
        return 1;
    }
    0
}

/// Under GitHub Actions, expose the result as step outputs (`cache-hit`, `cache-matched-key`).
fn write_github_output(word: &str, matched: Option<&str>) {
    let Some(path) = std::env::var_os("GITHUB_OUTPUT") else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
        let _ = writeln!(f, "cache-hit={}", word == "exact");
        let _ = writeln!(f, "cache-result={word}");
        let _ = writeln!(f, "cache-matched-key={}", matched.unwrap_or(""));
    }
}

async fn list(a: ListArgs) -> u8 {
    let store = match a.store.open() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let cat = match catalog::read(&store, &a.prefix).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kiln: error: cannot list the caches: {e}");
            return 3;
        }
    };
    let now = chrono::Utc::now();
    let width = cat
        .caches
        .iter()
        .map(|c| c.key.len())
        .max()
        .unwrap_or(3)
        .max(3);
    println!("{:<width$}  {:>10}  {:>8}", "KEY", "SIZE", "AGE");
    let mut total = 0;
    for c in &cat.caches {
        total += c.size;
        let age = c
            .created
            .map(|t| short_age((now - t).to_std().unwrap_or_default()))
            .unwrap_or_else(|| "?".into());
        let note = if c.manifest.is_none() {
            "  (unreadable manifest)"
        } else {
            ""
        };
        println!(
            "{:<width$}  {:>10}  {:>8}{note}",
            c.key,
            human_bytes(c.size),
            age
        );
    }
    println!(
        "{} caches, {} in {}",
        cat.caches.len(),
        human_bytes(total),
        store.display()
    );
    0
}

/// `3d`, `5h`, `12m`, `40s`.
fn short_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

async fn prune_cmd(a: PruneArgs) -> u8 {
    let store = match a.store.open() {
        Ok(s) => s,
        Err(code) => return code,
    };
    if a.max_age.is_none() && a.max_total_size.is_none() {
        eprintln!("kiln: error: give --max-age and/or --max-total-size");
        return 2;
    }
    let policy = PrunePolicy {
        max_age: a.max_age,
        max_total_size: a.max_total_size,
        dry_run: a.dry_run,
    };
    let report = match prune::prune(&store, &policy).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kiln: error: cannot prune: {e}");
            return 3;
        }
    };
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    for (key, size, why) in &report.deleted {
        println!("{verb} {key} ({}, {why})", human_bytes(*size));
    }
    for (path, size) in &report.leftovers {
        println!("{verb} leftover {path} ({})", human_bytes(*size));
    }
    for e in &report.errors {
        eprintln!("kiln: warning: {e}");
    }
    println!(
        "{verb} {} caches, {} freed; kept {} caches ({})",
        report.deleted.len(),
        human_bytes(report.freed()),
        report.kept,
        human_bytes(report.kept_bytes)
    );
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("5G").unwrap(), 5 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("42").unwrap(), 42);
        assert!(parse_size("5X").is_err());
        assert!(parse_size("lots").is_err());
    }
}

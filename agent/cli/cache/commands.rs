//! `kiln cache save|restore|list|prune` (flags in the parent module): the cache engine as standalone
//! commands, usable from any CI (the same semantics as actions/cache's restore and save).
//!
//! Exit codes: 0 done (a store outage is a warning, not a failure), 1 `--fail-on-miss` and no
//! exact hit, 2 usage error (bad flag, bad store URL), 3 the store could not be read for
//! `list`/`prune`.

use std::io::Write;
use std::time::Duration;

use super::{CacheArgs, CacheCommand, ListArgs, PruneArgs, RestoreArgs, SaveArgs, StoreArg};
use crate::cache::progress::human_bytes;
use crate::cache::prune::{self, PrunePolicy};
use crate::cache::{self, catalog, RestoreHit, SaveOptions, Store};
use crate::cli::exit::Exit;
use crate::settings::{Compression, Machine, StoreSettings};

/// Open the store `--store` names (or the default one, see `settings::store_url`).
fn open(arg: &StoreArg, settings: &StoreSettings) -> Result<Store, Exit> {
    let url = crate::settings::store_url(arg.store.clone(), None, &crate::settings::process_env);
    Store::open(&url, settings).map_err(|e| {
        eprintln!("kiln: error: {e}");
        Exit::Usage
    })
}

/// Run a `kiln cache` command; returns the exit code.
pub async fn run(args: CacheArgs, machine: &Machine) -> Exit {
    let settings = &machine.store;
    match args.command {
        CacheCommand::Save(a) => save(a, settings).await,
        CacheCommand::Restore(a) => restore(a, settings).await,
        CacheCommand::List(a) => list(a, settings).await,
        CacheCommand::Prune(a) => prune_cmd(a, settings).await,
    }
}

async fn save(a: SaveArgs, settings: &StoreSettings) -> Exit {
    // Untrusted code (a fork's pull request under GitHub Actions) must not write to the cache.
    if let Some(why) = crate::ci::current().and_then(|c| c.save_forbidden()) {
        eprintln!("kiln: {why}; not saving {}", a.key);
        return Exit::Success;
    }
    let store = match open(&a.store, settings) {
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
            return Exit::Usage;
        }
    }
    let opts = SaveOptions {
        compression: a.compression,
        level: a.level,
    };
    let out = cache::save(&store, &a.key, &a.paths, &opts).await;
    warn_all(&out.warnings);
    write_github_output(&[("saved", out.saved.to_string())]);
    if out.saved {
        println!("saved {} ({})", a.key, human_bytes(out.bytes));
    } else {
        println!(
            "skipped {}: {}",
            a.key,
            out.skipped_reason.as_deref().unwrap_or("not saved")
        );
    }
    Exit::Success
}

async fn restore(a: RestoreArgs, settings: &StoreSettings) -> Exit {
    let store = match open(&a.store, settings) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let out = if a.lookup_only {
        cache::lookup(&store, &a.key, &a.restore_keys).await
    } else {
        let limits = cache::RestoreLimits {
            max_bytes: a.max_restore_size,
            max_entries: a.max_restore_entries,
        };
        cache::restore_within(&store, &a.key, &a.restore_keys, &a.paths, limits).await
    };
    warn_all(&out.warnings);
    let (word, matched) = match out.hit {
        RestoreHit::Exact => ("exact", out.matched_key.clone()),
        RestoreHit::Partial => ("partial", out.matched_key.clone()),
        RestoreHit::Miss => ("miss", None),
    };
    match &matched {
        Some(k) => println!("{word} {k}"),
        None => println!("{word}"),
    }
    write_github_output(&[
        ("cache-hit", (out.hit == RestoreHit::Exact).to_string()),
        ("cache-result", word.to_string()),
        ("cache-matched-key", matched.clone().unwrap_or_default()),
    ]);
    if a.fail_on_miss && out.hit != RestoreHit::Exact {
        eprintln!("kiln: error: no cache for key {} (--fail-on-miss)", a.key);
        return Exit::No;
    }
    Exit::Success
}

/// Expose results as step outputs when `GITHUB_OUTPUT` is set (`cache-hit`,
/// `cache-matched-key`, `saved`), as the restore and save sub-actions read them.
fn write_github_output(pairs: &[(&str, String)]) {
    let Some(path) = std::env::var_os("GITHUB_OUTPUT") else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
        for (k, v) in pairs {
            let _ = writeln!(f, "{k}={v}");
        }
    }
}

/// Each warning on stderr, and as a `::warning` annotation under GitHub Actions.
fn warn_all(warnings: &[String]) {
    for w in warnings {
        eprintln!("kiln: warning: {w}");
    }
    crate::ci::actions::emit(
        &warnings
            .iter()
            .map(|w| {
                format!(
                    "::warning title=Kiln cache::{}",
                    crate::ci::actions::escape_data(w)
                )
            })
            .collect::<Vec<_>>(),
    );
}

async fn list(a: ListArgs, settings: &StoreSettings) -> Exit {
    let store = match open(&a.store, settings) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let cat = match catalog::read(&store, &a.prefix).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kiln: error: cannot list the caches: {e}");
            return Exit::Infrastructure;
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
    Exit::Success
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

async fn prune_cmd(a: PruneArgs, settings: &StoreSettings) -> Exit {
    let store = match open(&a.store, settings) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if a.max_age.is_none() && a.max_total_size.is_none() {
        eprintln!("kiln: error: give --max-age and/or --max-total-size");
        return Exit::Usage;
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
            return Exit::Infrastructure;
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
    Exit::Success
}

//! One `kiln run`: checkout → restore → bootstrap → test → save → report.
//!
//! Each stage is timed and recorded in the run summary. `save` runs even after a test failure
//! (the wheels built are still good), and `report` always runs. A cache or storage fault never
//! fails a build: it degrades to "no cache" with a warning.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::bootstrap::{self, BootstrapOutput};
use crate::cache::{self, SaveOptions, Store};
use crate::checkout::{self, Checkout};
use crate::config::{CheckoutMode, Config, ConfigError, Installer, ReportMode};
use crate::process;
use crate::report;
use crate::summary::{CacheSummary, Outcome, RunSummary, StageOutcome, StageSummary};
use crate::tests_run;

/// Everything the command line (or the agent) can say about one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Path or git URL of the repository.
    pub repo: String,
    /// SHA, branch, tag or `HEAD`.
    pub rev: String,
    /// Config file; default `kiln.yml` at the checkout's root.
    pub config: Option<PathBuf>,
    /// Work dir; default `~/.cache/kiln/work/<repo name>`. Emptied at the start of each run.
    pub workdir: Option<PathBuf>,
    pub store: Option<String>,
    pub summary_json: Option<PathBuf>,
    pub installer: Option<Installer>,
    pub test_command: Option<String>,
    pub branch: Option<String>,
    pub checkout: Option<CheckoutMode>,
    pub report_mode: Option<ReportMode>,
    /// Never save caches (e.g. untrusted pull requests from forks).
    pub no_save: bool,
    /// Install only from wheels already on this machine (`--no-index`), building nothing.
    pub offline: bool,
}

/// A run that could not start: bad flags, bad config, a work dir we must not wipe. Exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Other(String),
}

/// Directories of one run, all inside the work dir.
#[derive(Debug, Clone)]
pub struct Paths {
    pub workdir: PathBuf,
    pub checkout: PathBuf,
    pub venv: PathBuf,
    pub wheelhouse: PathBuf,
    pub ccache: PathBuf,
    pub pip_cache: PathBuf,
    pub results: PathBuf,
    pub tmp: PathBuf,
}

/// The marker that says a directory is a Kiln work dir, safe to empty.
const WORKDIR_MARKER: &str = ".kiln-workdir";

impl Paths {
    pub fn new(workdir: &Path) -> Paths {
        Paths {
            workdir: workdir.to_path_buf(),
            checkout: workdir.join("src"),
            venv: workdir.join("venv"),
            wheelhouse: workdir.join("wheelhouse"),
            ccache: workdir.join("ccache"),
            pip_cache: workdir.join("pip-cache"),
            results: workdir.join("results"),
            tmp: workdir.join("tmp"),
        }
    }

    /// Empty the work dir (only if it is empty or ours) and create the layout.
    fn prepare(&self) -> Result<(), UsageError> {
        let wd = &self.workdir;
        if wd.exists() {
            let is_empty = std::fs::read_dir(wd)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !is_empty && !wd.join(WORKDIR_MARKER).exists() {
                return Err(UsageError::Other(format!(
                    "work dir {} is not empty and was not made by kiln; refusing to delete its \
                     contents (pass an empty or new --workdir)",
                    wd.display()
                )));
            }
            std::fs::remove_dir_all(wd).map_err(|e| {
                UsageError::Other(format!("cannot empty work dir {}: {e}", wd.display()))
            })?;
        }
        for d in [
            &self.workdir,
            &self.wheelhouse,
            &self.ccache,
            &self.results,
            &self.tmp,
        ] {
            std::fs::create_dir_all(d)
                .map_err(|e| UsageError::Other(format!("cannot create {}: {e}", d.display())))?;
        }
        std::fs::write(
            wd.join(WORKDIR_MARKER),
            b"kiln work dir: emptied by every run\n",
        )
        .map_err(|e| UsageError::Other(format!("cannot write to {}: {e}", wd.display())))?;
        Ok(())
    }
}

/// The cache keys of this run.
#[derive(Debug, Clone)]
pub struct RunKeys {
    pub wheelhouse: cache::key::CacheKey,
    pub ccache: cache::key::CacheKey,
    /// pip's download cache, when `cache.pip_cache` is on.
    pub pip: Option<cache::key::CacheKey>,
}

impl RunKeys {
    /// (cache name, key, directory) of every cache this run uses.
    fn caches(&self, paths: &Paths) -> Vec<(&'static str, cache::key::CacheKey, PathBuf)> {
        let mut v = vec![
            (
                "wheelhouse",
                self.wheelhouse.clone(),
                paths.wheelhouse.clone(),
            ),
            ("ccache", self.ccache.clone(), paths.ccache.clone()),
        ];
        if let Some(pip) = &self.pip {
            v.push(("pip", pip.clone(), paths.pip_cache.clone()));
        }
        v
    }
}

/// Shared state of one run, handed from stage to stage.
pub struct RunContext {
    pub opts: RunOptions,
    pub config: Config,
    pub paths: Paths,
    pub checkout: Option<Checkout>,
    pub store: Option<Store>,
    pub keys: Option<RunKeys>,
    pub bootstrap: Option<BootstrapOutput>,
    /// The interpreter, probed once (restore stage) for keys and bootstrap.
    pub python: Option<bootstrap::PythonInfo>,
    pub summary: RunSummary,
    /// Whether caches may be saved (false for fork pull requests and `--no-save`).
    pub save_allowed: bool,
}

fn default_workdir(repo: &str) -> PathBuf {
    let name = repo
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit(['/', ':'])
        .next()
        .filter(|s| !s.is_empty() && *s != ".")
        .map(cache::key::sanitize)
        .unwrap_or_else(|| "repo".into());
    let name = if name == "." || name == "none" {
        std::env::current_dir()
            .ok()
            .and_then(|d| {
                d.file_name()
                    .map(|n| cache::key::sanitize(&n.to_string_lossy()))
            })
            .unwrap_or_else(|| "repo".into())
    } else {
        name
    };
    cache::store::default_store_dir()
        .parent()
        .map(|p| p.join("work").join(name))
        .unwrap_or_else(|| PathBuf::from("/tmp/kiln-work"))
}

/// Time one stage and record it.
async fn timed<F, T>(ctx: &mut RunContext, name: &str, f: F) -> T
where
    F: AsyncFnOnce(&mut RunContext) -> (T, StageOutcome, Option<String>),
{
    report::stage_started(name);
    tracing::info!("── {name}");
    let started = Instant::now();
    let (value, outcome, detail) = f(ctx).await;
    let seconds = started.elapsed().as_secs_f64();
    match &detail {
        Some(d) => tracing::info!("{name}: {d} ({seconds:.2}s)"),
        None => tracing::info!("{name}: done ({seconds:.2}s)"),
    }
    report::stage_finished(name);
    ctx.summary.stages.push(StageSummary {
        name: name.to_string(),
        seconds,
        outcome,
        detail,
    });
    value
}

/// Run the whole pipeline. `Err` only for usage/config problems (exit 2); everything else is in
/// the summary's outcome.
pub async fn run(opts: RunOptions) -> Result<RunSummary, UsageError> {
    let started = Instant::now();
    let child_before = process::child_time();
    let workdir = opts
        .workdir
        .clone()
        .unwrap_or_else(|| default_workdir(&opts.repo));
    let workdir = if workdir.is_absolute() {
        workdir
    } else {
        std::env::current_dir()
            .map(|d| d.join(&workdir))
            .unwrap_or(workdir)
    };
    let paths = Paths::new(&workdir);
    let reuse = opts.checkout == Some(CheckoutMode::Reuse);
    paths.prepare()?;
    let mut ctx = RunContext {
        save_allowed: !opts.no_save,
        opts,
        config: Config::default(),
        paths,
        checkout: None,
        store: None,
        keys: None,
        bootstrap: None,
        python: None,
        summary: RunSummary::default(),
    };
    if let Some(ci) = crate::ci_env::current() {
        ci.prepare_run(&mut ctx);
    }

    // 1. checkout
    let checked_out = timed(&mut ctx, "checkout", async |ctx: &mut RunContext| {
        let result = if reuse {
            let dir = PathBuf::from(&ctx.opts.repo);
            checkout::reuse(&dir).await
        } else {
            checkout::checkout(&ctx.opts.repo, &ctx.opts.rev, &ctx.paths.checkout).await
        };
        match result {
            Ok(c) => {
                let detail = format!("{} at {}", ctx.opts.repo, &c.sha[..12.min(c.sha.len())]);
                ctx.checkout = Some(c);
                (Ok(()), StageOutcome::Ok, Some(detail))
            }
            Err(e) => (
                Err(e.to_string()),
                StageOutcome::Failed,
                Some(e.to_string()),
            ),
        }
    })
    .await;
    if let Err(e) = checked_out {
        return Ok(finish(
            ctx,
            Outcome::Error,
            Some(format!("checkout failed: {e}")),
            started,
            child_before,
        )
        .await);
    }
    let Some(co) = ctx.checkout.clone() else {
        return Ok(finish(
            ctx,
            Outcome::Error,
            Some("checkout produced nothing".into()),
            started,
            child_before,
        )
        .await);
    };
    if reuse {
        ctx.paths.checkout = co.dir.clone();
    }
    ctx.summary.commit = co.sha.clone();
    ctx.summary.branch = ctx.opts.branch.clone().or(co.branch.clone());
    if ctx.summary.branch.is_none() && !reuse {
        ctx.summary.branch = checkout::local_branch(&ctx.opts.repo, &ctx.opts.rev).await;
    }

    // Configuration lives in the checkout: flags > KILN_* env > file > defaults.
    let config_path = match &ctx.opts.config {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) if p.exists() => std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or(p.clone()),
        Some(p) => ctx.paths.checkout.join(p),
        None => ctx.paths.checkout.join("kiln.yml"),
    };
    if ctx.opts.config.is_some() && !config_path.exists() {
        return Err(UsageError::Other(format!(
            "config file {} does not exist",
            config_path.display()
        )));
    }
    let mut config = Config::load(&config_path)?;
    config.apply_env(&|k| std::env::var(k).ok())?;
    if let Some(i) = ctx.opts.installer {
        config.bootstrap.installer = i;
    }
    if let Some(t) = &ctx.opts.test_command {
        config.test.command = t.clone();
    }
    if let Some(s) = &ctx.opts.store {
        config.cache.store = Some(s.clone());
    }
    if let Some(m) = ctx.opts.report_mode {
        config.report.mode = m;
    }
    ctx.config = config;
    let store_url = ctx
        .config
        .cache
        .store
        .clone()
        .unwrap_or_else(cache::store::auto_url);
    ctx.store = Some(Store::from_url(&store_url).map_err(|e| UsageError::Other(e.to_string()))?);

    // 2. restore
    timed(&mut ctx, "restore", async |ctx: &mut RunContext| {
        restore_stage(ctx).await
    })
    .await;

    // 3. bootstrap
    let boot_ok =
        timed(
            &mut ctx,
            "bootstrap",
            async |ctx: &mut RunContext| match bootstrap::bootstrap(ctx).await {
                Ok(out) => {
                    let detail = format!(
                        "{}: {} wheel(s) built, {} reused",
                        out.installer, out.wheels.built, out.wheels.reused
                    );
                    ctx.summary.installer = out.installer.clone();
                    ctx.summary.wheels = out.wheels.clone();
                    ctx.summary.ccache = out.ccache.clone();
                    ctx.bootstrap = Some(out);
                    (Ok(()), StageOutcome::Ok, Some(detail))
                }
                Err(e) => {
                    let msg = e.to_string();
                    (Err(msg.clone()), StageOutcome::Failed, Some(msg))
                }
            },
        )
        .await;

    // 4. test
    let outcome = match &boot_ok {
        Ok(()) => {
            timed(&mut ctx, "test", async |ctx: &mut RunContext| {
                test_stage(ctx).await
            })
            .await
        }
        Err(_) => {
            skip(&mut ctx, "test");
            Outcome::Error
        }
    };

    // 5. save: even after a test failure, the wheels are still good.
    timed(&mut ctx, "save", async |ctx: &mut RunContext| {
        save_stage(ctx).await
    })
    .await;

    let error = boot_ok.err().map(|e| format!("bootstrap failed: {e}"));
    Ok(finish(ctx, outcome, error, started, child_before).await)
}

fn skip(ctx: &mut RunContext, name: &str) {
    ctx.summary.stages.push(StageSummary {
        name: name.into(),
        seconds: 0.0,
        outcome: StageOutcome::Skipped,
        detail: None,
    });
}

/// Report and seal the summary.
async fn finish(
    mut ctx: RunContext,
    outcome: Outcome,
    error: Option<String>,
    started: Instant,
    child_before: std::time::Duration,
) -> RunSummary {
    ctx.summary.outcome = outcome;
    ctx.summary.exit_code = outcome.exit_code();
    ctx.summary.error = error;
    for name in ["checkout", "restore", "bootstrap", "test", "save"] {
        if ctx.summary.stage(name).is_none() {
            skip(&mut ctx, name);
        }
    }
    timed(&mut ctx, "report", async |ctx: &mut RunContext| {
        report::report(ctx).await;
        ((), StageOutcome::Ok, None)
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    ctx.summary.seconds = seconds;
    let child = (process::child_time() - child_before).as_secs_f64();
    ctx.summary.overhead_seconds = (seconds - child).max(0.0);
    report::console::print(&ctx.summary);
    if let Some(path) = &ctx.opts.summary_json {
        if let Err(e) = write_summary(path, &ctx.summary) {
            tracing::error!("cannot write summary JSON to {}: {e}", path.display());
        }
    }
    ctx.summary
}

fn write_summary(path: &Path, summary: &RunSummary) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_vec_pretty(summary).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, path)
}

async fn restore_stage(ctx: &mut RunContext) -> ((), StageOutcome, Option<String>) {
    let inputs = match bootstrap::key_inputs(ctx).await {
        Ok(i) => i,
        Err(e) => {
            let msg = format!("cannot derive cache keys: {e}");
            tracing::warn!("{msg}");
            return ((), StageOutcome::Warning, Some(msg));
        }
    };
    let keys = RunKeys {
        wheelhouse: inputs.wheelhouse(),
        ccache: inputs.ccache(),
        pip: ctx.config.cache.pip_cache.then(|| inputs.pip_cache()),
    };
    let Some(store) = ctx.store.clone() else {
        return ((), StageOutcome::Skipped, None);
    };
    let caches = keys.caches(&ctx.paths);
    let limits = ctx.config.cache.restore_limits();
    let results = futures::future::join_all(caches.iter().map(|(_, key, dir)| {
        let store = &store;
        async move {
            let paths = [dir.clone()];
            cache::restore_within(store, &key.key, &key.restore_keys, &paths, limits).await
        }
    }))
    .await;
    let mut degraded = false;
    let mut parts = Vec::new();
    for ((name, key, _), r) in caches.into_iter().zip(results) {
        degraded |= !r.warnings.is_empty();
        parts.push(format!("{name} {:?}", r.hit).to_lowercase());
        ctx.summary.caches.push(CacheSummary {
            name: name.into(),
            key: key.key.clone(),
            restore: r.hit,
            restored_key: r.matched_key,
            bytes_restored: r.bytes,
            saved: false,
            bytes_saved: 0,
            warnings: r.warnings,
        });
    }
    ctx.keys = Some(keys);
    let outcome = if degraded {
        StageOutcome::Warning
    } else {
        StageOutcome::Ok
    };
    ((), outcome, Some(parts.join(", ")))
}

async fn test_stage(ctx: &mut RunContext) -> (Outcome, StageOutcome, Option<String>) {
    let env = ctx
        .bootstrap
        .as_ref()
        .map(|b| b.test_env.clone())
        .unwrap_or_default();
    let junit = ctx.paths.results.join("junit.xml");
    let mut addopts = std::env::var("PYTEST_ADDOPTS").unwrap_or_default();
    addopts.push_str(&format!(
        " --junitxml={} -o junit_family=xunit1",
        junit.display()
    ));
    let cmd = process::Cmd::shell(&ctx.config.test.command)
        .cwd(&ctx.paths.checkout)
        .envs(&env)
        .env("PYTEST_ADDOPTS", addopts.trim())
        .env("KILN_JUNIT_DIR", &ctx.paths.results)
        .timeout(ctx.config.test.timeout)
        .echo(true);
    tracing::info!("$ {}", ctx.config.test.command);
    let result = cmd.run().await;
    if let Ok(out) = &result {
        // The report stage quotes the tail of the test output in its email.
        let _ = std::fs::write(ctx.paths.results.join(report::TEST_LOG_TAIL), out.tail(200));
    }
    let (tests, warnings) = tests_run::collect_junit(&ctx.paths.results);
    for w in warnings {
        tracing::warn!("{w}");
    }
    ctx.summary.tests = tests;
    let t = &ctx.summary.tests;
    let counts = format!(
        "{} passed, {} failed, {} skipped",
        t.passed, t.failed, t.skipped
    );
    match result {
        Ok(out) if out.success => (Outcome::Passed, StageOutcome::Ok, Some(counts)),
        Ok(out) => (
            Outcome::Failed,
            StageOutcome::Failed,
            Some(format!("exit code {}; {counts}", out.code.unwrap_or(-1))),
        ),
        Err(e @ process::ProcessError::Timeout { .. }) => (
            Outcome::Failed,
            StageOutcome::Failed,
            Some(format!("{e}; {counts}")),
        ),
        Err(e) => (Outcome::Error, StageOutcome::Failed, Some(e.to_string())),
    }
}

async fn save_stage(ctx: &mut RunContext) -> ((), StageOutcome, Option<String>) {
    if !ctx.save_allowed {
        return (
            (),
            StageOutcome::Skipped,
            Some("saving disabled for this run (fork pull request or --no-save)".into()),
        );
    }
    let (Some(store), Some(keys), Some(boot)) =
        (ctx.store.clone(), ctx.keys.clone(), ctx.bootstrap.clone())
    else {
        return ((), StageOutcome::Skipped, Some("nothing to save".into()));
    };
    let opts = SaveOptions {
        compression: ctx.config.cache.compression,
        level: ctx.config.cache.level,
    };
    let mut parts = Vec::new();
    let mut degraded = false;
    for (name, key, dir) in keys.caches(&ctx.paths) {
        // ccache: only when this run added entries (ccache touches its stats on every hit).
        if name == "ccache" && !boot.ccache_new_entries {
            parts.push(format!("{name} unchanged"));
            continue;
        }
        let out = cache::save(&store, &key.key, &[dir], &opts).await;
        degraded |= !out.warnings.is_empty();
        if let Some(c) = ctx.summary.caches.iter_mut().find(|c| c.name == name) {
            c.saved = out.saved;
            c.bytes_saved = out.bytes;
            c.warnings.extend(out.warnings.iter().cloned());
        }
        parts.push(match (out.saved, &out.skipped_reason) {
            (true, _) => format!("{name} saved ({} bytes)", out.bytes),
            (false, Some(r)) => format!("{name} not saved: {r}"),
            (false, None) => format!("{name} not saved"),
        });
    }
    // One object per wheel, for `kiln index serve` (see index::layout). Never fails the run.
    if ctx.config.cache.publish_wheels {
        match crate::index::publish_wheels(&store, &ctx.paths.wheelhouse).await {
            Ok(p) => parts.push(format!("{} wheel(s) published", p.published)),
            Err(e) => {
                degraded = true;
                tracing::warn!("publishing wheels for the index: {e}");
            }
        }
    }
    let outcome = if degraded {
        StageOutcome::Warning
    } else {
        StageOutcome::Ok
    };
    ((), outcome, Some(parts.join(", ")))
}

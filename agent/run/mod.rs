//! `kiln run`'s executor: one job, checkout → restore → bootstrap → test → save, each stage in
//! its own file.
//!
//! Each stage takes typed inputs and returns a typed output ([`stage::Done`]); the executor holds
//! the outputs and hands each stage only what it needs, so no stage reads another's result out
//! of the summary or a file. Each stage is timed into the run summary. `save` runs even after a
//! test failure (the wheels built are still good). A cache or storage fault never fails a build:
//! it degrades to "no cache" with a warning.
//!
//! The report stage is not here: the caller (`cli::run`) hands the [`Finished`] run to
//! `report`, which never sees the executor's state.

pub mod bootstrap;
pub mod build_env;
pub mod checkout;
pub mod junit;
pub mod outcome;
pub mod project;
pub mod pyenv;
pub mod rerun;
pub mod restore;
pub mod save;
pub mod stage;
pub mod test;
pub mod toolchain;
pub mod untrusted;
pub mod workdir;

use std::time::{Duration, Instant};

use crate::cache::Store;
use crate::git::GitDir;
use crate::process;
use crate::sandbox::ProjectRunner;
use crate::settings::names;
use crate::settings::{self, RunRequest, Settings, UsageError};
use crate::summary::{classify, Cause, RangeFacts, RunSummary, StageOutcome};

use bootstrap::{BootstrapInputs, BootstrapOutput};
use checkout::Checkout;
use restore::{RestoreInputs, Restored, RunKeys};
use save::{CacheSaved, SaveInputs};
pub use stage::{NoHooks, Stage, StageHooks, Stages};
use test::{TestInputs, Tested};
pub use workdir::Paths;

/// Wall time of the run and of its children, from the start.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    started: Instant,
    child_before: Duration,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            started: Instant::now(),
            child_before: process::child_time(),
        }
    }

    /// Set the summary's total and overhead (time not spent waiting on children).
    pub fn seal(&self, summary: &mut RunSummary) {
        let seconds = self.started.elapsed().as_secs_f64();
        summary.seconds = seconds;
        let child = (process::child_time() - self.child_before).as_secs_f64();
        summary.overhead_seconds = (seconds - child).max(0.0);
    }
}

/// A run whose stages are done, waiting for its report.
pub struct Finished<'h> {
    /// The summary so far: every stage but `report`, no blame yet.
    pub summary: RunSummary,
    /// The stage log, to time the report stage into.
    pub stages: Stages<'h>,
    pub clock: Clock,
    pub request: RunRequest,
    pub paths: Paths,
    /// `None` when the checkout failed (kiln.yml is in the checkout).
    pub settings: Option<Settings>,
    pub store: Option<Store>,
    /// The last lines of the test output.
    pub log_tail: String,
    /// Whether the test failures were confirmed by a re-run.
    pub failures_confirmed: bool,
    /// The checkout's git dir (see [`GitDir`]), `None` when the checkout failed.
    pub git: Option<GitDir>,
}

/// The stage outputs of one run, as the executor collects them.
#[derive(Default)]
struct Outputs {
    checkout: Option<Checkout>,
    restored: Restored,
    bootstrap: Option<Result<BootstrapOutput, Stopped>>,
    tested: Option<Tested>,
    saved: Vec<CacheSaved>,
    /// Where the dependencies came from (`deps_source`).
    deps_source: &'static str,
    /// Where the test dependencies came from (`test_deps`).
    test_deps: String,
}

/// The executor's state between stages.
struct Executor<'h> {
    clock: Clock,
    request: RunRequest,
    paths: Paths,
    stages: Stages<'h>,
    out: Outputs,
}

impl<'h> Executor<'h> {
    /// Seal the stage outputs into the summary the report reads.
    fn finish(
        mut self,
        settings: Option<Settings>,
        store: Option<Store>,
        error: Option<Stopped>,
    ) -> Finished<'h> {
        let mut summary = summarize(&self.out, error);
        self.stages.skip_rest(Stage::Report);
        summary.stages = self.stages.snapshot();
        Finished {
            summary,
            stages: self.stages,
            clock: self.clock,
            request: self.request,
            paths: self.paths,
            settings,
            store,
            failures_confirmed: self.out.tested.as_ref().is_some_and(|t| t.confirmed),
            git: self.out.checkout.as_ref().map(|c| c.git.clone()),
            log_tail: self.out.tested.map(|t| t.log_tail).unwrap_or_default(),
        }
    }
}

/// Run the stages. `Err` only for usage/config problems (exit 2); everything else is in the
/// summary's outcome.
pub async fn execute(
    request: RunRequest,
    hooks: &dyn StageHooks,
) -> Result<Finished<'_>, UsageError> {
    let clock = Clock::start();
    let paths = Paths::new(&request.workdir);
    paths.prepare()?;
    let mut x = Executor {
        clock,
        request,
        paths,
        stages: Stages::new(hooks),
        out: Outputs::default(),
    };
    let likely_python = x.request.likely_python();
    let (checked_out, toolchain) = x
        .stages
        .time(
            Stage::Checkout,
            checkout_and_probe(
                checkout::stage(&x.request, &x.paths.checkout),
                &likely_python,
            ),
        )
        .await;
    let co = match checked_out {
        Ok(co) => co,
        Err(e) => {
            let stopped = Stopped::new(format!("checkout failed: {e}"), Cause::Checkout);
            return Ok(x.finish(None, None, Some(stopped)));
        }
    };
    x.paths.checkout = co.dir.clone();
    let settings = x.request.clone().settle(&co.dir)?;
    // A store that cannot even be opened is a store that is down: warn, build uncached.
    let store_settings = &settings.request.machine.store;
    let store = match Store::open(&settings.store_url, store_settings) {
        Ok(store) => store,
        Err(e) => {
            tracing::warn!("cache store unusable: {e}; building without cache");
            Store::unusable(&settings.store_url, &e, store_settings)
                .map_err(|e| UsageError::Other(e.to_string()))?
        }
    };
    let mut runner = project_runner(&settings, &store, &x.paths, &co.git)?;
    x.out.checkout = Some(co);
    let prepared = project::prepare(
        &settings.project,
        &x.paths,
        settings.request.offline,
        &settings.request.tools_dir,
        &mut runner,
    )
    .await
    .map_err(|e| UsageError::Other(e.to_string()))?;
    for w in &prepared.warnings {
        tracing::warn!("{w}");
    }
    build_and_test(
        &mut x.stages,
        &mut x.out,
        Job {
            settings: &settings,
            prepared: &prepared,
        },
        &store,
        &x.paths,
        &runner,
        toolchain,
    )
    .await;
    let error = match &x.out.bootstrap {
        Some(Err(e)) => Some(Stopped::new(
            format!("bootstrap failed: {}", e.message),
            e.cause,
        )),
        _ => None,
    };
    Ok(x.finish(Some(settings), Some(store), error))
}

/// The checkout, with the interpreter and the compiler probed meanwhile (neither needs the
/// sources; the restore stage takes the probe when kiln.yml names the same interpreter). Both
/// are inside the checkout stage's time, so the stage times still add up to the run's.
async fn checkout_and_probe(
    checkout: impl std::future::Future<Output = stage::Done<Result<Checkout, String>>>,
    python: &str,
) -> stage::Done<(Result<Checkout, String>, toolchain::Toolchain)> {
    let (done, toolchain) = tokio::join!(checkout, toolchain::probe(python));
    stage::Done {
        value: (done.value, toolchain),
        outcome: done.outcome,
        detail: done.detail,
    }
}

/// How this run starts the project's code, resolved once (its warnings said once). A sandbox
/// that was required but cannot run here stops the run before any of the project's code runs.
fn project_runner(
    settings: &Settings,
    store: &Store,
    paths: &Paths,
    git: &GitDir,
) -> Result<ProjectRunner, UsageError> {
    let (mut runner, warnings) = ProjectRunner::new(
        &settings.sandbox,
        &settings.request.workdir,
        &paths.checkout,
        &git.protected(),
        store.local_root(),
    )
    .map_err(|e| UsageError::Other(e.to_string()))?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    if !settings.request.save_allowed {
        // The project's own scripts can tell (e.g. skip uploading anything).
        runner.set_env(names::NO_SAVE, "1");
    }
    tracing::info!(
        "the project's code runs {}",
        if runner.sandboxed() {
            "in a bubblewrap sandbox"
        } else {
            "unsandboxed"
        }
    );
    Ok(runner)
}

/// What the job is: its settings and the project they found in the checkout.
struct Job<'a> {
    settings: &'a Settings,
    prepared: &'a project::Prepared,
}

/// restore → bootstrap → test → save.
async fn build_and_test(
    stages: &mut Stages<'_>,
    out: &mut Outputs,
    job: Job<'_>,
    store: &Store,
    paths: &Paths,
    runner: &ProjectRunner,
    toolchain: toolchain::Toolchain,
) {
    let (settings, prepared) = (job.settings, job.prepared);
    let project = &settings.project;
    out.deps_source = prepared.detected.source.name();
    out.test_deps = prepared.detected.test_deps.chosen.clone();
    let req = &settings.request;
    out.restored = stages
        .time(
            Stage::Restore,
            restore::restore(RestoreInputs {
                project,
                detected: &prepared.detected,
                paths,
                store,
                toolchain: Some(toolchain),
            }),
        )
        .await;
    let wheels_before = save::WheelhouseListing::of(&paths.wheelhouse);
    let boot = stages
        .time(
            Stage::Bootstrap,
            bootstrap_stage(BootstrapInputs {
                project,
                prepared,
                paths,
                python: out.restored.python.as_ref(),
                wheelhouse_exact: out.restored.wheelhouse_exact(),
                offline: req.offline,
                ccache_bin: req.ccache_bin.as_deref(),
                tools_dir: &req.tools_dir,
                runner,
            }),
        )
        .await;
    out.tested = match &boot {
        Ok(b) => Some(
            stages
                .time(
                    Stage::Test,
                    test_stage(settings, paths, b, b.runner.as_ref().unwrap_or(runner)),
                )
                .await,
        ),
        Err(_) => {
            stages.skip(Stage::Test);
            None
        }
    };
    let mut boot = boot;
    out.saved = stages
        .time(
            Stage::Save,
            save_stage(
                &mut boot,
                out,
                req,
                store,
                paths,
                &project.cache,
                &wheels_before,
            ),
        )
        .await;
    out.bootstrap = Some(boot);
}

/// The save stage: the wheels still being collected first (they belong in the wheelhouse),
/// then the caches.
async fn save_stage(
    boot: &mut Result<BootstrapOutput, Stopped>,
    out: &Outputs,
    req: &RunRequest,
    store: &Store,
    paths: &Paths,
    config: &settings::file::CacheConfig,
    wheels_before: &save::WheelhouseListing,
) -> stage::Done<Vec<CacheSaved>> {
    let refused = save_refusal(req, config, out);
    if let Ok(b) = boot.as_mut() {
        if refused.is_none() {
            bootstrap::finish_wheelhouse(b).await;
        } else {
            b.pending = None; // nothing will save them: stop collecting
        }
    }
    // A failed bootstrap keeps what it built (under a partial key the next run restores by
    // prefix), so the next run retries only what failed.
    let progress = boot
        .is_err()
        .then(|| out.restored.keys.as_ref().map(RunKeys::partial));
    let changed = save::WheelhouseListing::of(&paths.wheelhouse) != *wheels_before;
    save::save(SaveInputs {
        refused,
        store,
        keys: match &progress {
            Some(partial) => partial.as_ref(),
            None => out.restored.keys.as_ref(),
        },
        // A failed bootstrap's compiles are worth keeping, if there were any.
        ccache_new_entries: Some(match &boot {
            Ok(b) => b.ccache_new_entries,
            Err(_) => bootstrap::ccache::stats(paths, &[]).misses > 0,
        }),
        // A failed bootstrap that added no wheel has nothing new for the wheelhouse; nor has
        // one that left the wheelhouse restored under its exact key as it found it (the key
        // already holds it: no need to read every wheel to find that out).
        wheelhouse_unchanged: !changed && (boot.is_err() || out.restored.wheelhouse_exact()),
        wheelhouse_used: boot.as_ref().map_or(true, |b| b.wheelhouse_used),
        paths,
        config,
    })
    .await
}

async fn bootstrap_stage(
    inp: BootstrapInputs<'_>,
) -> stage::Done<Result<BootstrapOutput, Stopped>> {
    match bootstrap::bootstrap(inp).await {
        Ok(out) => {
            let detail = format!(
                "{}: {} wheel(s) built, {} reused",
                out.installer, out.wheels.built, out.wheels.reused
            );
            stage::Done::new(Ok(out), StageOutcome::Ok, detail)
        }
        Err(e) => {
            let msg = e.to_string();
            let stopped = Stopped::new(msg.clone(), outcome::of_bootstrap(&e));
            stage::Done::new(Err(stopped), StageOutcome::Failed, msg)
        }
    }
}

fn test_stage<'a>(
    settings: &'a Settings,
    paths: &'a Paths,
    boot: &'a BootstrapOutput,
    runner: &'a ProjectRunner,
) -> impl std::future::Future<Output = stage::Done<Tested>> + 'a {
    test::test(TestInputs {
        command: &settings.project.test.command,
        timeout: settings.project.test.timeout,
        checkout: &paths.checkout,
        results: &paths.results,
        env: &boot.test_env,
        rerun: test::RerunPlan::new(
            &settings.project.test.command,
            settings.project.test.rerun_command.as_deref(),
            settings.project.test.rerun_failures,
            settings.project.test.flaky,
        ),
        runner,
    })
}

/// Why this run saves no caches: `--no-save`, a fork, or a branch outside `cache.save_on`.
fn save_refusal(
    req: &RunRequest,
    cache: &settings::file::CacheConfig,
    out: &Outputs,
) -> Option<String> {
    if !req.save_allowed {
        return Some("saving disabled for this run (fork pull request or --no-save)".into());
    }
    let branch = out.checkout.as_ref().and_then(|c| c.branch.as_deref());
    settings::save_on::refusal(
        &cache.save_on,
        settings::save_on::BuildRef {
            branch: branch.or(req.branch.as_deref()),
            pull_request: req.pull_request,
        },
    )
}

/// Why a run stopped before its tests: the message and what caused it.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub message: String,
    pub cause: Cause,
}

impl Stopped {
    fn new(message: String, cause: Cause) -> Stopped {
        Stopped { message, cause }
    }
}

/// The run summary from the stage outputs (stages and totals are filled in later).
fn summarize(out: &Outputs, error: Option<Stopped>) -> RunSummary {
    let mut s = RunSummary::default();
    if let Some(co) = &out.checkout {
        s.commit = co.sha.clone();
        s.branch = co.branch.clone();
    }
    s.caches = out.restored.caches.clone();
    for saved in &out.saved {
        if let Some(c) = s.caches.iter_mut().find(|c| c.name == saved.name.as_str()) {
            c.saved = saved.saved;
            c.bytes_saved = saved.bytes;
            c.warnings.extend(saved.warnings.iter().cloned());
        }
    }
    s.deps_source = out.deps_source.to_string();
    s.test_deps = out.test_deps.clone();
    if let Some(Ok(b)) = &out.bootstrap {
        s.installer = b.installer.clone();
        s.wheels = b.wheels.clone();
        s.ccache = b.ccache.clone();
        s.project = b.project.clone();
    }
    if let Some(t) = &out.tested {
        s.tests = t.tests.clone();
        s.flaky = t
            .flaky
            .iter()
            .map(|f| crate::summary::FlakyTest {
                name: f.name.clone(),
                ..Default::default()
            })
            .collect();
    }
    let cause = match (&error, &out.tested) {
        (Some(stopped), _) => stopped.cause,
        (None, Some(t)) => t.cause.unwrap_or(Cause::Infrastructure),
        (None, None) => Cause::Infrastructure,
    };
    // The range is not known here: the report may find that it changed the test command.
    s.outcome = classify(cause, RangeFacts::default());
    s.exit_code = s.outcome.exit_code();
    s.cause = Some(cause);
    s.error = match error {
        Some(stopped) => Some(stopped.message),
        None => out.tested.as_ref().and_then(|t| t.not_started.clone()),
    };
    s
}

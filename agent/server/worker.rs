//! Build workers: each takes the oldest queued job and runs `kiln run` for it as a child process.
//!
//! The build runs as a separate process (the agent's own executable, `run` subcommand) rather than
//! in-process so that a crashing or runaway build cannot take the agent down, and so that it can be
//! killed as a whole (see `procs`) on timeout, on supersede, or when shutdown's grace runs out.
//! `crate::process::Cmd` is not used here: a build's output goes to its log file, not to memory,
//! and the worker must be able to kill it on outside events, not only on a timeout.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::config::{AgentConfig, RepoConfig};
use super::metrics::Metrics;
use super::procs;
use super::queue::{Claim, Job, JobOutcome, Queue};
use crate::summary::{Outcome, RunSummary};

/// Environment variables of the agent that a build must never see: the webhook secret, and
/// per-build settings that, inherited from the agent's environment, would send every build's
/// report to the same place (they are set per job below when they apply).
const SCRUBBED_ENV: [&str; 11] = [
    "KILN_WEBHOOK_SECRET",
    "KILN_WEBHOOK_SECRET_FILE",
    "GITHUB_TOKEN",
    "KILN_GITHUB_REPOSITORY",
    "KILN_HEAD_SHA",
    "KILN_PR_NUMBER",
    "KILN_NO_SAVE",
    "KILN_RUN_URL",
    "GITHUB_RUN_ID",
    "GITHUB_SHA",
    "GITHUB_REF",
];

/// Shutdown phases, sent to workers through a watch channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Grace period over: kill running builds and put them back in the queue.
    Abort,
}

/// Where builds run and what runs them.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The program and leading arguments of a build: normally `[current_exe, "run"]`.
    pub program: PathBuf,
    pub program_args: Vec<OsString>,
    pub data_dir: PathBuf,
    pub agent_id: String,
    /// The sandbox arguments and scrubbed variables of every build.
    pub isolation: super::isolation::Isolation,
    /// `--job-timeout` (a repository's own `timeout` wins).
    pub default_timeout: Duration,
}

impl WorkerSettings {
    pub fn log_path(&self, id: u64) -> PathBuf {
        log_path(&self.data_dir, id)
    }
    fn summary_path(&self, id: u64) -> PathBuf {
        summary_path(&self.data_dir, id)
    }
    fn work_dir(&self, id: u64) -> PathBuf {
        self.data_dir.join("work").join(id.to_string())
    }
}

pub fn log_path(data_dir: &Path, id: u64) -> PathBuf {
    data_dir.join("logs").join(format!("{id}.log"))
}

pub fn summary_path(data_dir: &Path, id: u64) -> PathBuf {
    data_dir.join("summaries").join(format!("{id}.json"))
}

pub struct Worker {
    pub queue: Arc<Queue>,
    pub config: Arc<AgentConfig>,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<WorkerSettings>,
    pub phase: watch::Receiver<Phase>,
}

impl Worker {
    /// Build jobs until the queue stops handing them out.
    pub async fn run(mut self, n: usize) {
        tracing::debug!("worker {n} started");
        while let Some(claim) = self.queue.claim().await {
            self.build(claim).await;
        }
        tracing::debug!("worker {n} stopped");
    }

    async fn build(&mut self, claim: Claim) {
        let Claim {
            job,
            mut superseded,
        } = claim;
        let id = job.id;
        let started = Instant::now();
        let s = self.settings.clone();
        let marker = procs::marker(&s.agent_id, id);
        let Some(repo) = self.config.repo(&job.repo).cloned() else {
            self.fail_before_start(
                &job,
                format!("repository {} is no longer in agent.yml", job.repo),
                started,
            )
            .await;
            return;
        };
        let timeout = repo.timeout.unwrap_or(s.default_timeout);
        let sandbox_args = match s.isolation.run_args(job.fork) {
            Ok(a) => a,
            Err(msg) => {
                tracing::warn!("job {id}: {msg}");
                self.fail_before_start(&job, msg, started).await;
                return;
            }
        };
        let work = s.work_dir(id);
        let summary = s.summary_path(id);
        let log = s.log_path(id);
        let prepared = (|| -> std::io::Result<std::fs::File> {
            if work.exists() {
                std::fs::remove_dir_all(&work)?;
            }
            if let Some(p) = work.parent() {
                std::fs::create_dir_all(p)?;
            }
            for p in [&summary, &log] {
                if let Some(d) = p.parent() {
                    std::fs::create_dir_all(d)?;
                }
            }
            match std::fs::remove_file(&summary) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new().create(true).append(true),
                0o600,
            )
            .open(&log)
        })();
        let mut log_file = match prepared {
            Ok(f) => f,
            Err(e) => {
                let msg = format!(
                    "cannot prepare work dir {} or log {}: {e}",
                    work.display(),
                    log.display()
                );
                tracing::error!("job {id}: {msg}");
                self.fail_before_start(&job, msg, started).await;
                return;
            }
        };
        let _ = writeln!(
            log_file,
            "=== kiln agent: job {id} attempt {} — {} {} ({}) at {} ===",
            job.attempts,
            job.repo,
            job.sha,
            job.branch,
            chrono::Utc::now().to_rfc3339()
        );

        let mut cmd = self.kiln_run(&job, &repo, &marker, &sandbox_args, &mut log_file);
        let (out, err) = match (log_file.try_clone(), log_file.try_clone()) {
            (Ok(a), Ok(b)) => (Stdio::from(a), Stdio::from(b)),
            _ => (Stdio::null(), Stdio::null()),
        };
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cannot start {}: {e}", s.program.display());
                tracing::error!("job {id}: {msg}");
                self.fail_before_start(&job, msg, started).await;
                return;
            }
        };
        let pgid = child.id();
        tracing::info!(
            "job {id}: building {} {} ({}), attempt {}",
            job.repo,
            &job.sha[..12.min(job.sha.len())],
            job.branch,
            job.attempts
        );

        let mut phase = self.phase.clone();
        enum End {
            Exited(Option<i32>),
            WaitFailed(String),
            TimedOut,
            Superseded(u64),
            Abort,
        }
        let end = tokio::select! {
            st = child.wait() => match st {
                Ok(st) => End::Exited(st.code()),
                Err(e) => End::WaitFailed(e.to_string()),
            },
            _ = tokio::time::sleep(timeout) => End::TimedOut,
            by = superseded_by(&mut superseded) => End::Superseded(by),
            _ = wait_phase(&mut phase, Phase::Abort) => End::Abort,
        };
        if !matches!(end, End::Exited(_)) {
            let m = marker.clone();
            let _ = tokio::task::spawn_blocking(move || procs::kill_build(pgid, &m)).await;
            let _ = child.wait().await;
        }
        let summary_json = std::fs::read(&summary)
            .ok()
            .and_then(|b| serde_json::from_slice::<RunSummary>(&b).ok());
        let (outcome, detail, code, by) = match end {
            End::Exited(code) => {
                let (outcome, detail) = match &summary_json {
                    Some(sum) => {
                        let o = match sum.outcome {
                            Outcome::Passed => JobOutcome::Passed,
                            Outcome::Failed => JobOutcome::Failed,
                            Outcome::Error => JobOutcome::Error,
                        };
                        let t = &sum.tests;
                        let d = sum.error.clone().unwrap_or_else(|| {
                            format!(
                                "{} passed, {} failed, {} skipped",
                                t.passed, t.failed, t.skipped
                            )
                        });
                        (o, d)
                    }
                    None => (
                        JobOutcome::Error,
                        match code {
                            Some(c) => format!(
                                "kiln run exited with code {c} without a summary; see the job log"
                            ),
                            None => "kiln run was killed by a signal; see the job log".into(),
                        },
                    ),
                };
                (outcome, detail, code, None)
            }
            End::WaitFailed(e) => (
                JobOutcome::Error,
                format!("waiting for kiln run: {e}"),
                None,
                None,
            ),
            End::TimedOut => {
                let d = format!("timed out after {}", humantime::format_duration(timeout));
                tracing::warn!("job {id}: {d}");
                (JobOutcome::TimedOut, d, None, None)
            }
            End::Superseded(by) => {
                tracing::info!("job {id}: cancelled, superseded by job {by}");
                (
                    JobOutcome::Cancelled,
                    format!("superseded by job {by}"),
                    None,
                    Some(by),
                )
            }
            End::Abort => {
                tracing::warn!(
                    "job {id}: shutdown grace period over; killed, will run again after restart"
                );
                let _ = writeln!(log_file, "=== job {id}: interrupted by shutdown; it runs again when the agent restarts ===");
                if let Err(e) = self.queue.requeue(id).await {
                    tracing::error!("job {id}: {e}");
                }
                return;
            }
        };
        // The work dir is scratch (checkout, venv); the log and summary are what is kept.
        if let Err(e) = std::fs::remove_dir_all(&work) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("job {id}: cannot remove work dir {}: {e}", work.display());
            }
        }
        let summary_ref = summary_json.as_ref().filter(|_| {
            matches!(
                outcome,
                JobOutcome::Passed | JobOutcome::Failed | JobOutcome::Error
            )
        });
        self.finish(&job, outcome, Some(detail), code, by, started, summary_ref)
            .await;
    }

    /// The `kiln run` command of one job: its flags (sandbox included), the variables it reports
    /// with, and the agent's own variables removed.
    fn kiln_run(
        &self,
        job: &Job,
        repo: &RepoConfig,
        marker: &str,
        sandbox_args: &[OsString],
        log_file: &mut std::fs::File,
    ) -> tokio::process::Command {
        let s = &self.settings;
        let id = job.id;
        let mut cmd = tokio::process::Command::new(&s.program);
        cmd.args(&s.program_args)
            .arg("--repo")
            .arg(&repo.clone_url)
            .arg("--rev")
            .arg(&job.sha)
            .arg("--branch")
            .arg(&job.branch)
            .arg("--workdir")
            .arg(s.work_dir(id))
            .arg("--summary-json")
            .arg(s.summary_path(id));
        if let Some(store) = &repo.store {
            cmd.arg("--store").arg(store);
        }
        cmd.args(sandbox_args);
        for k in SCRUBBED_ENV
            .iter()
            .copied()
            .chain(s.isolation.scrubbed.iter().map(String::as_str))
        {
            cmd.env_remove(k);
        }
        // Build logs are files read by people (`GET /jobs/{id}/log`): plain text, no colours,
        // whatever format the agent's own logs use.
        cmd.env("NO_COLOR", "1").env_remove("KILN_LOG_FORMAT");
        cmd.env("GITHUB_REPOSITORY", &job.repo)
            .env("KILN_GITHUB_REPOSITORY", &job.repo)
            .env(procs::MARKER_VAR, marker);
        if let Some(n) = job.pr_number {
            // Statuses and checks belong on the PR's head commit (which is what we build).
            cmd.env("KILN_PR_NUMBER", n.to_string())
                .env("KILN_HEAD_SHA", &job.sha);
        }
        if let Some(u) = &self.config.public_url {
            cmd.env("KILN_RUN_URL", format!("{u}/jobs/{id}/log"));
        }
        if job.fork {
            // Fork code must never write the shared cache (poisoning). The flag is what `kiln run`
            // obeys; the variable tells the build's own scripts.
            cmd.arg("--no-save").env("KILN_NO_SAVE", "1");
        }
        match (&repo.token, !job.fork || repo.fork_token) {
            (Some(src), true) => match src.read() {
                Ok(t) => {
                    cmd.env("GITHUB_TOKEN", t);
                }
                Err(e) => {
                    tracing::warn!("job {id}: {e}; building without a token (no GitHub reports)");
                    let _ = writeln!(
                        log_file,
                        "kiln agent: warning: {e}; building without a token"
                    );
                }
            },
            (Some(_), false) => {
                let _ = writeln!(log_file, "kiln agent: fork pull request: built without a token (set fork_token: true to change)");
            }
            (None, _) => {}
        }
        cmd
    }

    /// A job that could not start its build: recorded as an error with `why`.
    async fn fail_before_start(&self, job: &Job, why: String, started: Instant) {
        self.finish(job, JobOutcome::Error, Some(why), None, None, started, None)
            .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        job: &Job,
        outcome: JobOutcome,
        detail: Option<String>,
        code: Option<i32>,
        superseded: Option<u64>,
        started: Instant,
        summary: Option<&RunSummary>,
    ) {
        let secs = started.elapsed().as_secs_f64();
        self.metrics.build(secs, summary);
        if let Ok(mut f) = std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::OpenOptions::new().append(true).create(true),
            0o600,
        )
        .open(self.settings.log_path(job.id))
        {
            let _ = writeln!(
                f,
                "=== job {}: {}{} in {secs:.1}s ===",
                job.id,
                outcome.as_str(),
                detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
        }
        tracing::info!("job {}: {} in {secs:.1}s", job.id, outcome.as_str());
        if let Err(e) = self
            .queue
            .finish(job.id, outcome, detail, code, superseded)
            .await
        {
            tracing::error!("job {}: {e}", job.id);
        }
    }
}

/// Resolves with the newer job's id once this one is superseded; never if it is not.
async fn superseded_by(rx: &mut watch::Receiver<Option<u64>>) -> u64 {
    loop {
        if let Some(by) = *rx.borrow_and_update() {
            return by;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Resolves once the phase is `want`.
pub async fn wait_phase(rx: &mut watch::Receiver<Phase>, want: Phase) {
    loop {
        if *rx.borrow_and_update() == want {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

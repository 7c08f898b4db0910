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

use super::agent_yml::{AgentConfig, RepoConfig};
use super::github_app::Apps;
use super::metrics::Metrics;
use super::procs;
use super::queue::{Claim, Finished, Job, JobOutcome, JobQueue, LEASE_LOST};
use crate::settings::names;
use crate::summary::{Outcome, RunSummary};

/// Environment variables of the agent that a build must never see: the webhook secret, and
/// per-build settings that, inherited from the agent's environment, would send every build's
/// report to the same place (they are set per job below when they apply).
const SCRUBBED_ENV: [&str; 11] = [
    names::WEBHOOK_SECRET,
    names::WEBHOOK_SECRET_FILE,
    "GITHUB_TOKEN",
    names::GITHUB_REPOSITORY,
    names::HEAD_SHA,
    names::PR_NUMBER,
    names::NO_SAVE,
    names::RUN_URL,
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
    /// The most a job's log keeps of its build's output (agent.yml `job_log_max`).
    pub log_max: u64,
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
    pub queue: Arc<dyn JobQueue>,
    /// The GitHub Apps of agent.yml, ready to mint installation tokens.
    pub apps: Arc<Apps>,
    pub config: Arc<AgentConfig>,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<WorkerSettings>,
    pub phase: watch::Receiver<Phase>,
    /// Checks that a job was sealed by an agent (see `seal`) before it is built.
    pub sealer: Arc<super::seal::Sealer>,
}

/// A job ready to build: its repository, its paths, its open log.
struct Prepared {
    repo: RepoConfig,
    timeout: Duration,
    work: PathBuf,
    summary: PathBuf,
    log: std::fs::File,
    /// The value of `procs::MARKER_VAR` in every process of this build.
    marker: String,
    /// `kiln run`'s sandbox flags for this job (see `isolation`).
    sandbox_args: Vec<std::ffi::OsString>,
    /// The GitHub token the build reports with (see `token`).
    token: Option<String>,
    /// Copies the build's output into its log, within `log_max` (see `job_log`).
    pump: Option<std::thread::JoinHandle<std::io::Result<u64>>>,
}

/// How a build's process ended.
enum End {
    Exited(Option<i32>),
    WaitFailed(String),
    TimedOut,
    Superseded(u64),
    /// The shutdown grace period ran out.
    Abort,
}

/// What a finished job is recorded as.
struct Verdict {
    outcome: JobOutcome,
    detail: String,
    exit_code: Option<i32>,
    superseded_by: Option<u64>,
}

impl Verdict {
    fn error(detail: String) -> Verdict {
        Verdict {
            outcome: JobOutcome::Error,
            detail,
            exit_code: None,
            superseded_by: None,
        }
    }
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

    /// One job: prepare its work dir and log, start `kiln run`, wait for it (or kill it), record
    /// the outcome.
    async fn build(&mut self, claim: Claim) {
        let Claim {
            job,
            mut superseded,
        } = claim;
        let started = Instant::now();
        if !self.sealer.verify(&job) {
            return self.refuse_unsealed(&job, started).await;
        }
        let mut prepared = match self.prepare(&job) {
            Ok(p) => p,
            Err(why) => return self.record(&job, Verdict::error(why), started, None).await,
        };
        prepared.token = self
            .token(&job, &prepared.repo.clone(), &mut prepared.log)
            .await;
        let child = match self.spawn(&job, &mut prepared) {
            Ok(c) => c,
            Err(why) => return self.record(&job, Verdict::error(why), started, None).await,
        };
        let end = self.wait(child, &prepared, &mut superseded).await;
        self.finish(&job, prepared, end, started).await;
    }

    /// A job whose seal does not vouch for its row: someone wrote it into the queue (or changed
    /// its repository, commit, branch or fork flag) without a signed webhook. Never built.
    async fn refuse_unsealed(&self, job: &Job, started: Instant) {
        tracing::error!(
            "job {}: refused: its queue row ({} {} on {}, fork={}) carries no valid seal, so no \
             signed webhook vouches for it; something other than a Kiln agent wrote the queue",
            job.id,
            job.repo,
            job.sha,
            job.branch,
            job.fork
        );
        self.metrics.refused("unsealed_job");
        let why = "refused: the job's trust could not be verified (its queue row carries no \
                   valid seal from an agent); it was not built"
            .to_string();
        self.record(job, Verdict::error(why), started, None).await;
    }

    /// The job's repository, a fresh work dir, an open log with the job's header line.
    fn prepare(&self, job: &Job) -> Result<Prepared, String> {
        let id = job.id;
        let s = &self.settings;
        let repo = self
            .config
            .repo(&job.repo)
            .cloned()
            .ok_or_else(|| format!("repository {} is no longer in agent.yml", job.repo))?;
        let sandbox_args = s.isolation.run_args(job.fork).inspect_err(|msg| {
            tracing::warn!("job {id}: {msg}");
        })?;
        let (work, summary, log) = (s.work_dir(id), s.summary_path(id), s.log_path(id));
        let mut log_file = fresh_work_dir(&work, &summary, &log).map_err(|e| {
            let msg = format!(
                "cannot prepare work dir {} or log {}: {e}",
                work.display(),
                log.display()
            );
            tracing::error!("job {id}: {msg}");
            msg
        })?;
        let _ = writeln!(
            log_file,
            "=== kiln agent: job {id} attempt {} — {} {} ({}) at {} ===",
            job.attempts,
            job.repo,
            job.sha,
            job.branch,
            chrono::Utc::now().to_rfc3339()
        );
        Ok(Prepared {
            timeout: repo.timeout.unwrap_or(s.default_timeout),
            repo,
            work,
            summary,
            log: log_file,
            marker: procs::marker(&s.agent_id, id),
            sandbox_args,
            token: None,
            pump: None,
        })
    }

    /// Start `kiln run` for the job in its own process group, output to the job's log.
    fn spawn(&self, job: &Job, p: &mut Prepared) -> Result<tokio::process::Child, String> {
        let mut cmd = self.command(job, p);
        let piped =
            std::io::pipe().and_then(|(r, w)| Ok((r, w.try_clone()?, w, p.log.try_clone()?)));
        let (reader, out, err, mut log) = piped.map_err(|e| {
            let msg = format!("cannot make the pipe to the job's log: {e}");
            tracing::error!("job {}: {msg}", job.id);
            msg
        })?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            let msg = format!("cannot start {}: {e}", self.settings.program.display());
            tracing::error!("job {}: {msg}", job.id);
            msg
        })?;
        // The command holds the pipe's write ends: closed now, the log ends when the build does.
        drop(cmd);
        let max = self.settings.log_max;
        p.pump = Some(std::thread::spawn(move || {
            super::job_log::copy_capped(reader, &mut log, max)
        }));
        tracing::info!(
            "job {}: building {} {} ({}), attempt {}",
            job.id,
            job.repo,
            &job.sha[..12.min(job.sha.len())],
            job.branch,
            job.attempts
        );
        Ok(child)
    }

    /// The `kiln run` command line and environment of a job.
    fn command(&self, job: &Job, p: &mut Prepared) -> tokio::process::Command {
        let s = &self.settings;
        let mut cmd = tokio::process::Command::new(&s.program);
        cmd.args(&s.program_args)
            .arg("--repo")
            .arg(&p.repo.clone_url)
            .arg("--rev")
            .arg(&job.sha)
            .arg("--branch")
            .arg(&job.branch)
            .arg("--workdir")
            .arg(&p.work)
            .arg("--summary-json")
            .arg(&p.summary);
        if let Some(store) = &p.repo.store {
            cmd.arg("--store").arg(store);
        }
        cmd.args(&p.sandbox_args);
        for k in SCRUBBED_ENV
            .iter()
            .copied()
            .chain(s.isolation.scrubbed.iter().map(String::as_str))
        {
            cmd.env_remove(k);
        }
        // Build logs are files read by people (`GET /jobs/{id}/log`): plain text, no colours,
        // whatever format the agent's own logs use.
        cmd.env("NO_COLOR", "1").env_remove(names::LOG_FORMAT);
        cmd.env("GITHUB_REPOSITORY", &job.repo)
            .env(names::GITHUB_REPOSITORY, &job.repo)
            .env(procs::MARKER_VAR, &p.marker);
        if let Some(n) = job.pr_number {
            // Statuses and checks belong on the PR's head commit (which is what we build).
            cmd.env(names::PR_NUMBER, n.to_string())
                .env(names::HEAD_SHA, &job.sha);
        }
        if let Some(u) = &self.config.public_url {
            cmd.env(names::RUN_URL, format!("{u}/builds/{}", job.id));
        }
        if job.fork {
            // Fork code must never write the shared cache (poisoning). The flag is what `kiln run`
            // obeys; the variable tells the build's own scripts.
            cmd.arg("--no-save").env(names::NO_SAVE, "1");
        }
        if let Some(t) = p.token.take() {
            cmd.env("GITHUB_TOKEN", t);
        }
        cmd
    }

    /// Wait for the build to exit, time out, be superseded or be aborted by shutdown; in every
    /// case but a plain exit, kill its whole process tree first.
    async fn wait(
        &self,
        mut child: tokio::process::Child,
        p: &Prepared,
        superseded: &mut watch::Receiver<Option<u64>>,
    ) -> End {
        let pgid = child.id();
        let mut phase = self.phase.clone();
        let end = tokio::select! {
            st = child.wait() => match st {
                Ok(st) => End::Exited(st.code()),
                Err(e) => End::WaitFailed(e.to_string()),
            },
            _ = tokio::time::sleep(p.timeout) => End::TimedOut,
            by = superseded_by(superseded) => End::Superseded(by),
            _ = wait_phase(&mut phase, Phase::Abort) => End::Abort,
        };
        if !matches!(end, End::Exited(_)) {
            let m = p.marker.clone();
            let _ = tokio::task::spawn_blocking(move || procs::kill_build(pgid, &m)).await;
            let _ = child.wait().await;
        }
        end
    }

    /// Record how the build ended (or put it back in the queue when shutdown interrupted it) and
    /// remove its work dir.
    async fn finish(&self, job: &Job, mut p: Prepared, end: End, started: Instant) {
        let id = job.id;
        if let Some(pump) = p.pump.take() {
            // Leftover processes could hold the pipe open: the verdict does not wait for them.
            let joined = tokio::task::spawn_blocking(move || pump.join());
            if tokio::time::timeout(Duration::from_secs(10), joined)
                .await
                .is_err()
            {
                tracing::warn!("job {id}: output still open 10s after the build ended");
            }
        }
        let summary = std::fs::read(&p.summary)
            .ok()
            .and_then(|b| serde_json::from_slice::<RunSummary>(&b).ok());
        let verdict = match end {
            End::Exited(code) => exited(code, summary.as_ref()),
            End::WaitFailed(e) => Verdict::error(format!("waiting for kiln run: {e}")),
            End::TimedOut => {
                let d = format!("timed out after {}", humantime::format_duration(p.timeout));
                tracing::warn!("job {id}: {d}");
                Verdict {
                    outcome: JobOutcome::TimedOut,
                    ..Verdict::error(d)
                }
            }
            End::Superseded(LEASE_LOST) => {
                // Recorded by nobody: the job's current claim belongs to another agent.
                tracing::warn!("job {id}: stopped: its lease passed to another agent");
                let d = "stopped here: another agent took the job over (lease expired)";
                Verdict {
                    outcome: JobOutcome::Cancelled,
                    ..Verdict::error(d.into())
                }
            }
            End::Superseded(by) if by == id => {
                tracing::info!("job {id}: cancelled on request");
                Verdict {
                    outcome: JobOutcome::Cancelled,
                    ..Verdict::error("cancelled on request".into())
                }
            }
            End::Superseded(by) => {
                tracing::info!("job {id}: cancelled, superseded by job {by}");
                Verdict {
                    outcome: JobOutcome::Cancelled,
                    superseded_by: Some(by),
                    ..Verdict::error(format!("superseded by job {by}"))
                }
            }
            End::Abort => {
                tracing::warn!(
                    "job {id}: shutdown grace period over; killed, will run again after restart"
                );
                let _ = writeln!(p.log, "=== job {id}: interrupted by shutdown; it runs again when the agent restarts ===");
                if let Err(e) = self.queue.requeue(id).await {
                    tracing::error!("job {id}: {e}");
                }
                return;
            }
        };
        // The work dir is scratch (checkout, venv); the log and summary are what is kept.
        if let Err(e) = std::fs::remove_dir_all(&p.work) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("job {id}: cannot remove work dir {}: {e}", p.work.display());
            }
        }
        let summary = summary.as_ref().filter(|_| {
            matches!(
                verdict.outcome,
                JobOutcome::Passed | JobOutcome::Failed | JobOutcome::Error
            )
        });
        self.record(job, verdict, started, summary).await;
    }

    /// The GitHub token the build reports with: an installation token of the repository's
    /// GitHub App (scoped to that repository), else its configured token. Fork pull requests
    /// get none unless `fork_token`. Problems are written to the job log, never the token.
    async fn token(&self, job: &Job, repo: &RepoConfig, log: &mut std::fs::File) -> Option<String> {
        if job.fork && !repo.fork_token {
            if repo.token.is_some() || repo.github_app.is_some() {
                let _ = writeln!(log, "kiln agent: fork pull request: built without a token (set fork_token: true to change)");
            }
            return None;
        }
        let got = match (self.apps.for_repo(repo), &repo.token) {
            (Some(app), _) => app.token_for(&job.repo).await.map_err(|e| e.to_string()),
            (None, Some(src)) => src.read().map_err(|e| e.to_string()),
            (None, None) => return None,
        };
        match got {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(
                    "job {}: {e}; building without a token (no GitHub reports)",
                    job.id
                );
                let _ = writeln!(log, "kiln agent: warning: {e}; building without a token");
                None
            }
        }
    }

    /// Count the build in the metrics, close its log with the verdict, store it in the queue.
    async fn record(
        &self,
        job: &Job,
        verdict: Verdict,
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
                "=== job {}: {} ({}) in {secs:.1}s ===",
                job.id,
                verdict.outcome.as_str(),
                verdict.detail
            );
        }
        tracing::info!("job {}: {} in {secs:.1}s", job.id, verdict.outcome.as_str());
        if let Some(sum) = summary.and_then(|s| serde_json::to_value(s).ok()) {
            if let Err(e) = self.queue.save_summary(job.id, &sum).await {
                tracing::warn!("job {}: cannot keep the run summary: {e}", job.id);
            }
        }
        let end = Finished {
            outcome: verdict.outcome,
            detail: Some(verdict.detail),
            exit_code: verdict.exit_code,
            superseded_by: verdict.superseded_by,
        };
        if let Err(e) = self.queue.finish(job.id, end).await {
            tracing::error!("job {}: {e}", job.id);
        }
    }
}

/// Empty the job's work dir, make the summary's and log's folders, remove a stale summary, and
/// open the log for appending (a re-run after restart keeps the first attempt's lines).
fn fresh_work_dir(work: &Path, summary: &Path, log: &Path) -> std::io::Result<std::fs::File> {
    if work.exists() {
        std::fs::remove_dir_all(work)?;
    }
    if let Some(p) = work.parent() {
        std::fs::create_dir_all(p)?;
    }
    for p in [summary, log] {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
    }
    match std::fs::remove_file(summary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new().create(true).append(true),
        0o600,
    )
    .open(log)
}

/// The verdict on a build that exited by itself: its summary's outcome and counts (or error), or
/// an error naming the exit code when it left no summary.
fn exited(code: Option<i32>, summary: Option<&RunSummary>) -> Verdict {
    let Some(sum) = summary else {
        let detail = match code {
            Some(c) => format!("kiln run exited with code {c} without a summary; see the job log"),
            None => "kiln run was killed by a signal; see the job log".into(),
        };
        return Verdict {
            exit_code: code,
            ..Verdict::error(detail)
        };
    };
    let outcome = match sum.outcome {
        Outcome::Passed => JobOutcome::Passed,
        // A broken build is the commit's failure, like failing tests; `error` stays the
        // operator's (its own count in the metrics).
        Outcome::Failed | Outcome::Broken => JobOutcome::Failed,
        Outcome::Error => JobOutcome::Error,
    };
    let t = &sum.tests;
    let detail = sum.error.clone().unwrap_or_else(|| {
        format!(
            "{} passed, {} failed, {} skipped",
            t.passed, t.failed, t.skipped
        )
    });
    Verdict {
        outcome,
        detail,
        exit_code: code,
        superseded_by: None,
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

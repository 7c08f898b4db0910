//! The job queue: one trait ([`JobQueue`]), two backends.
//!
//! - [`embedded`]: one host, no server to run: one fsync'd JSON file per job under the data
//!   dir (the default).
//! - [`postgres`]: a fleet: every agent on one PostgreSQL database (`--queue postgres://…`):
//!   `FOR UPDATE SKIP LOCKED` claims, leases renewed by a heartbeat (a dead host's jobs are
//!   claimed again once its lease runs out), `LISTEN/NOTIFY` to wake idle workers and to cancel
//!   superseded builds on whichever host runs them, de-duplication by a unique constraint.
//!
//! Both keep the same promises, checked by one test suite run against each: a delivery is
//! queued at most once; a job acknowledged is never lost; a newer build of a lane (branch or
//! pull request) cancels the older one, queued or running; a claimed job is built by one worker.

pub mod embedded;
pub mod postgres;

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::events::BuildRequest;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot create queue directory {path}: {source} (check --data-dir permissions)")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read queue directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write job file {path}: {source} (is the disk full or read-only?)")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("job {0} does not exist")]
    NoSuchJob(u64),
    #[error("PostgreSQL queue: {0}")]
    Database(String),
    #[error("PostgreSQL queue: cannot run the schema migrations: {0}")]
    Migrate(String),
    #[error("--queue {0:?} is not a queue: use `embedded` or postgres://user@host/db")]
    BadUrl(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        [JobState::Queued, JobState::Running, JobState::Done]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    Passed,
    Failed,
    Error,
    Cancelled,
    TimedOut,
}

impl JobOutcome {
    pub const ALL: [JobOutcome; 5] = [
        JobOutcome::Passed,
        JobOutcome::Failed,
        JobOutcome::Error,
        JobOutcome::Cancelled,
        JobOutcome::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Passed => "passed",
            JobOutcome::Failed => "failed",
            JobOutcome::Error => "error",
            JobOutcome::Cancelled => "cancelled",
            JobOutcome::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<JobOutcome> {
        JobOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// One build job, as stored and as served by `GET /jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    /// `X-GitHub-Delivery` (or `poll:<repo>:<branch>:<sha>` for polled heads, `retry:<id>:…`
    /// for retries).
    pub delivery: String,
    pub event: String,
    pub repo: String,
    pub sha: String,
    pub branch: String,
    pub lane: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_number: Option<u64>,
    #[serde(default)]
    pub fork: bool,
    /// Who pushed or opened the pull request (GitHub login), when the delivery says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub state: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<JobOutcome>,
    /// One line on why the job ended as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// How many times a build was started (more than 1 after a restart mid-build).
    #[serde(default)]
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<u64>,
    /// The agent (its id) that ran or runs the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The agent's seal over what decides the job's trust (`server::seal`); a worker builds
    /// only a job whose seal checks out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

impl Job {
    /// A new queued job for `req`.
    pub fn new(id: u64, delivery: &str, req: BuildRequest) -> Job {
        Job {
            id,
            delivery: delivery.to_string(),
            event: req.event,
            repo: req.repo,
            sha: req.sha,
            branch: req.branch,
            lane: req.lane,
            pr_number: req.pr_number,
            fork: req.fork,
            author: req.author,
            state: JobState::Queued,
            outcome: None,
            detail: None,
            exit_code: None,
            attempts: 0,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            superseded_by: None,
            host: None,
            seal: req.seal,
        }
    }

    /// The same commit asked for again (retry button, `POST /jobs/{id}/retry`, a check run's
    /// "Re-run").
    pub fn request(&self) -> BuildRequest {
        BuildRequest {
            repo: self.repo.clone(),
            sha: self.sha.clone(),
            branch: self.branch.clone(),
            lane: self.lane.clone(),
            event: self.event.clone(),
            pr_number: self.pr_number,
            fork: self.fork,
            author: self.author.clone(),
            // Re-queuing carries the stored seal as it is: an unsealed row stays unsealed.
            seal: Some(self.seal.clone().unwrap_or_default()),
        }
    }

    /// Build time so far (running) or in all (done).
    pub fn duration(&self) -> Option<chrono::Duration> {
        let start = self.started_at?;
        Some(self.finished_at.unwrap_or_else(Utc::now) - start)
    }

    /// `queued`, `running`, or the outcome of a finished job.
    pub fn status_word(&self) -> &'static str {
        match (self.state, self.outcome) {
            (JobState::Done, Some(o)) => o.as_str(),
            (s, _) => s.as_str(),
        }
    }
}

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Durably stored as job `id`.
    Accepted(u64),
    /// This delivery ID was accepted before, as job `id`; nothing new queued.
    Duplicate(u64),
}

impl Enqueued {
    pub fn id(&self) -> u64 {
        match self {
            Enqueued::Accepted(id) | Enqueued::Duplicate(id) => *id,
        }
    }
}

/// Counts for `/metrics` and `/healthz`.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub queued: usize,
    pub running: usize,
    pub done: HashMap<JobOutcome, usize>,
}

/// Sent on a claim's `superseded` channel when the host lost the job to another host (its lease
/// ran out): stop the build; its result would not be recorded. Job ids start at 1.
pub const LEASE_LOST: u64 = 0;

/// A claimed job and the channel that tells its worker to cancel it: Some(id of the newer job),
/// Some(its own id) when cancelled on request, Some([`LEASE_LOST`]).
pub struct Claim {
    pub job: Job,
    pub superseded: watch::Receiver<Option<u64>>,
}

/// How a build ended, as recorded by `finish`.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub outcome: JobOutcome,
    pub detail: Option<String>,
    pub exit_code: Option<i32>,
    pub superseded_by: Option<u64>,
}

/// Which jobs `list` returns (every field optional; newest first).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Filter {
    /// `owner/name`.
    #[serde(default)]
    pub repo: Option<String>,
    /// A branch name, or a pull request number as `#12`.
    #[serde(default)]
    pub branch: Option<String>,
    /// `queued`, `running`, or an outcome (`passed`, `failed`, ...).
    #[serde(default)]
    pub status: Option<String>,
    /// A full commit SHA.
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
}

impl Filter {
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(100).min(10_000)
    }

    /// Does `job` pass? (The embedded backend filters in memory; PostgreSQL in SQL, alike.)
    pub fn matches(&self, job: &Job) -> bool {
        let nonempty = |o: &Option<String>| o.clone().filter(|s| !s.trim().is_empty());
        if nonempty(&self.repo).is_some_and(|r| r.trim() != job.repo) {
            return false;
        }
        if let Some(b) = nonempty(&self.branch) {
            let b = b.trim();
            let pr = b
                .strip_prefix('#')
                .and_then(|n| n.parse::<u64>().ok())
                .map(Some);
            let hit = match pr {
                Some(n) => job.pr_number == n,
                None => job.branch == b,
            };
            if !hit {
                return false;
            }
        }
        if nonempty(&self.sha).is_some_and(|s| s.trim() != job.sha) {
            return false;
        }
        nonempty(&self.status).is_none_or(|s| s.trim() == job.status_word())
    }
}

/// One agent of the fleet, as it registers itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Host {
    pub id: String,
    /// The machine's hostname.
    pub name: String,
    /// Where its HTTP server is reachable (for logs of jobs it runs).
    pub url: Option<String>,
    pub workers: usize,
    pub busy: usize,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub seen_at: DateTime<Utc>,
}

/// The queue every agent part talks to: the webhook handler (enqueue), the workers (claim,
/// finish), the web page and the JSON API (list, get, retry), the poller (has_build).
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// `embedded` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Store a build durably, unless `delivery` was seen before. Older jobs in the same lane are
    /// cancelled: queued ones at once, running ones through their worker, wherever it runs.
    async fn enqueue(&self, delivery: &str, req: BuildRequest) -> Result<Enqueued, QueueError>;

    /// Wait for the oldest queued job and mark it running (durably). None once stopping.
    async fn claim(&self) -> Option<Claim>;

    /// Record a finished job durably.
    async fn finish(&self, id: u64, end: Finished) -> Result<(), QueueError>;

    /// Put a running job back in the queue (shutdown interrupted it).
    async fn requeue(&self, id: u64) -> Result<(), QueueError>;

    /// Stop handing out jobs (workers' `claim` returns None).
    fn stop(&self);

    /// Jobs this host was running when it last stopped, queued again now (their leftover
    /// processes must be killed before they run again).
    async fn recover(&self) -> Result<Vec<u64>, QueueError>;

    /// Cancel job `id` on request: a queued one at once, a running one through its worker,
    /// wherever it runs (its `superseded` channel carries the job's own id). False when the
    /// job had already ended.
    async fn cancel(&self, id: u64) -> Result<bool, QueueError>;

    async fn get(&self, id: u64) -> Result<Option<Job>, QueueError>;

    /// The run summary a finished job left (`kiln run --summary-json`), if any.
    async fn summary(&self, id: u64) -> Result<Option<serde_json::Value>, QueueError>;

    /// Keep the summary with the job (so every agent of a fleet can show it).
    async fn save_summary(&self, id: u64, summary: &serde_json::Value) -> Result<(), QueueError>;

    /// Is `sha` already queued, running or built (not cancelled) in `lane`?
    async fn has_build(&self, lane: &str, sha: &str) -> Result<bool, QueueError>;

    /// Forget finished jobs that finished before `cutoff` (the newest of each lane stays);
    /// returns their IDs so the caller deletes their logs and summaries.
    async fn prune(&self, cutoff: DateTime<Utc>) -> Result<Vec<u64>, QueueError>;

    /// Jobs passing `filter`, newest first.
    async fn list(&self, filter: &Filter) -> Result<Vec<Job>, QueueError>;

    async fn counts(&self) -> Result<Counts, QueueError>;

    /// Register or refresh this agent in the fleet's host list.
    async fn beat(&self, host: &Host) -> Result<(), QueueError>;

    /// The fleet's agents, most recently seen first.
    async fn hosts(&self) -> Result<Vec<Host>, QueueError>;

    /// Queue job `id`'s commit again, as the newest build of its lane.
    async fn retry(&self, id: u64) -> Result<Enqueued, QueueError> {
        let job = self.get(id).await?.ok_or(QueueError::NoSuchJob(id))?;
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        self.enqueue(&format!("retry:{id}:{nanos}"), job.request())
            .await
    }
}

/// Open the queue `--queue` names: `embedded` (the default) or a `postgres://` URL.
pub async fn open(
    spec: &str,
    data_dir: &std::path::Path,
    host_id: &str,
    lease: std::time::Duration,
) -> Result<std::sync::Arc<dyn JobQueue>, QueueError> {
    if spec.is_empty() || spec == "embedded" {
        let q = embedded::EmbeddedQueue::open(data_dir, host_id)?;
        return Ok(std::sync::Arc::new(q));
    }
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        let q = postgres::PgQueue::connect(spec, host_id, lease).await?;
        return Ok(std::sync::Arc::new(q));
    }
    Err(QueueError::BadUrl(redact(spec)))
}

/// `spec` with any password replaced, for messages.
pub fn redact(spec: &str) -> String {
    match url::Url::parse(spec) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_appear_in_queue_messages() {
        let e = QueueError::BadUrl(redact("mysql://kiln:hunter2@db/x"));
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("mysql://kiln:***@db/x"), "{e}");
    }
}

//! The fleet's queue on PostgreSQL (`kiln agent --queue postgres://…`).
//!
//! - **Claim**: one `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1)`: concurrent
//!   workers of every host take different jobs without waiting for each other.
//! - **Lease**: a claim holds until `lease_until`; a heartbeat renews it every third of the
//!   lease. A host that dies stops renewing, and once the lease is over any host claims the job
//!   again (`attempts` + 1). `finish` only counts for the claim that is current, so a build cut
//!   off from the database cannot overwrite the result of the host that took over; a host whose
//!   heartbeat finds its lease gone stops the build ([`super::LEASE_LOST`]).
//! - **Wake-up**: `NOTIFY kiln_jobs` on every enqueue wakes idle workers on every host (they also
//!   look every few seconds, for expired leases and for notifications lost to a reconnect).
//! - **Supersede**: enqueue, under a per-lane advisory lock, cancels the lane's queued jobs and
//!   marks running ones `cancel_by`; `NOTIFY kiln_cancel` reaches the host running them at once
//!   (the heartbeat reads `cancel_by` as well).
//! - **De-duplication**: `delivery` is `UNIQUE`; a copy arriving at any host is a duplicate.
//!
//! The schema ships in `migrations/` and is applied at start (sqlx's migrator takes an advisory
//! lock, so agents starting together migrate once). sqlx rather than tokio-postgres plus a
//! migrations crate: one well-kept crate gives the pool, `PgListener` with reconnects, and
//! embedded migrations; its compile-time checked `query!` macros are not used, so building Kiln
//! needs no database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::Row;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::{
    Claim, Counts, Enqueued, Filter, Finished, Host, Job, JobOutcome, JobQueue, JobState,
    QueueError,
};
use crate::server::events::BuildRequest;

const JOBS_CHANNEL: &str = "kiln_jobs";
const CANCEL_CHANNEL: &str = "kiln_cancel";

/// The columns of a job, in `JobRow`'s order.
const COLS: &str = "id, delivery, event, repo, sha, branch, lane, pr_number, fork, author, \
    state, outcome, detail, exit_code, attempts, created_at, started_at, finished_at, \
    superseded_by, host, seal";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("agent/server/queue/migrations");

fn db(e: sqlx::Error) -> QueueError {
    QueueError::Database(e.to_string())
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    delivery: String,
    event: String,
    repo: String,
    sha: String,
    branch: String,
    lane: String,
    pr_number: Option<i64>,
    fork: bool,
    author: Option<String>,
    state: String,
    outcome: Option<String>,
    detail: Option<String>,
    exit_code: Option<i32>,
    attempts: i32,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    superseded_by: Option<i64>,
    host: Option<String>,
    seal: Option<String>,
}

impl From<JobRow> for Job {
    fn from(r: JobRow) -> Job {
        Job {
            id: r.id as u64,
            delivery: r.delivery,
            event: r.event,
            repo: r.repo,
            sha: r.sha,
            branch: r.branch,
            lane: r.lane,
            pr_number: r.pr_number.map(|n| n as u64),
            fork: r.fork,
            author: r.author,
            state: JobState::parse(&r.state).unwrap_or(JobState::Done),
            outcome: r.outcome.as_deref().and_then(JobOutcome::parse),
            detail: r.detail,
            exit_code: r.exit_code,
            attempts: r.attempts.max(0) as u32,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            superseded_by: r.superseded_by.map(|n| n as u64),
            host: r.host,
            seal: r.seal,
        }
    }
}

/// A claim this host holds: which attempt it is, how to cancel it, its heartbeat.
struct Held {
    attempts: i32,
    cancel: Arc<watch::Sender<Option<u64>>>,
    heartbeat: JoinHandle<()>,
}

pub struct PgQueue {
    pool: PgPool,
    host: String,
    lease: Duration,
    wake: Arc<Notify>,
    stopping: AtomicBool,
    held: Arc<Mutex<HashMap<u64, Held>>>,
    listener: JoinHandle<()>,
}

impl Drop for PgQueue {
    fn drop(&mut self) {
        self.listener.abort();
        for h in self.lock().values() {
            h.heartbeat.abort();
        }
    }
}

impl PgQueue {
    /// Connect, run the migrations, and start listening for wake-ups and cancellations.
    pub async fn connect(url: &str, host: &str, lease: Duration) -> Result<PgQueue, QueueError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| QueueError::Database(format!("cannot connect: {e}")))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| QueueError::Migrate(e.to_string()))?;
        let mut listener = PgListener::connect_with(&pool).await.map_err(db)?;
        listener
            .listen_all([JOBS_CHANNEL, CANCEL_CHANNEL])
            .await
            .map_err(db)?;
        let wake = Arc::new(Notify::new());
        let held: Arc<Mutex<HashMap<u64, Held>>> = Arc::default();
        let listener = tokio::spawn(listen(listener, wake.clone(), held.clone()));
        Ok(PgQueue {
            pool,
            host: host.to_string(),
            lease,
            wake,
            stopping: AtomicBool::new(false),
            held,
            listener,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lease_secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// Cancel running jobs whose lease ran out after a newer build superseded them (their host
    /// died before it could), then claim the oldest claimable job.
    async fn try_claim(&self) -> Result<Option<Job>, QueueError> {
        sqlx::query(
            "UPDATE kiln_jobs SET state = 'done', outcome = 'cancelled',
                superseded_by = NULLIF(cancel_by, id), detail = CASE WHEN cancel_by = id
                    THEN 'cancelled on request' ELSE 'superseded by job ' || cancel_by END,
                finished_at = now(), lease_until = NULL
             WHERE state = 'running' AND lease_until < now() AND cancel_by IS NOT NULL",
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        let sql = format!(
            "UPDATE kiln_jobs SET state = 'running', attempts = attempts + 1, started_at = now(),
                host = $1, lease_until = now() + make_interval(secs => $2)
             WHERE id = (
                SELECT id FROM kiln_jobs
                WHERE cancel_by IS NULL
                  AND (state = 'queued' OR (state = 'running' AND lease_until < now()))
                  AND id <> ALL($3)
                ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING {COLS}"
        );
        // A build of ours whose lease ran out is still ours to stop, not to start again here.
        let mine: Vec<i64> = self.lock().keys().map(|&id| id as i64).collect();
        let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&self.host)
            .bind(self.lease_secs())
            .bind(mine)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.map(Job::from))
    }

    /// Renew the lease of `id` every third of the lease until the claim ends; pass on a
    /// cancellation the database records (a backstop for a missed notification).
    fn heartbeat(
        &self,
        id: u64,
        attempts: i32,
        cancel: Arc<watch::Sender<Option<u64>>>,
    ) -> JoinHandle<()> {
        let (pool, host, secs) = (self.pool.clone(), self.host.clone(), self.lease_secs());
        let every = (self.lease / 4).max(Duration::from_millis(200));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let renewed: Result<Option<Option<i64>>, _> = sqlx::query_scalar(
                    "UPDATE kiln_jobs SET lease_until = now() + make_interval(secs => $1)
                     WHERE id = $2 AND host = $3 AND attempts = $4 AND state = 'running'
                     RETURNING cancel_by",
                )
                .bind(secs)
                .bind(id as i64)
                .bind(&host)
                .bind(attempts)
                .fetch_optional(&pool)
                .await;
                match renewed {
                    Ok(Some(Some(by))) => {
                        let _ = cancel.send(Some(by as u64));
                    }
                    Ok(Some(None)) => {}
                    Ok(None) => {
                        tracing::error!(
                            "job {id}: lease lost (another agent took the job over); \
                             stopping this host's build"
                        );
                        let _ = cancel.send(Some(super::LEASE_LOST));
                        return;
                    }
                    Err(e) => tracing::warn!("job {id}: cannot renew the lease: {e}"),
                }
            }
        })
    }

    /// Forget a claim of this host; its attempt number, if it was held.
    fn release(&self, id: u64) -> Option<i32> {
        let held = self.lock().remove(&id)?;
        held.heartbeat.abort();
        Some(held.attempts)
    }

    async fn notify_jobs(&self) {
        if let Err(e) = sqlx::query("SELECT pg_notify('kiln_jobs', '')")
            .execute(&self.pool)
            .await
        {
            tracing::warn!("cannot wake the fleet's workers: {e}");
        }
    }
}

/// The listening side: wake-ups for idle workers, cancellations for running builds.
async fn listen(mut listener: PgListener, wake: Arc<Notify>, held: Arc<Mutex<HashMap<u64, Held>>>) {
    loop {
        match listener.recv().await {
            Ok(n) if n.channel() == JOBS_CHANNEL => wake.notify_waiters(),
            Ok(n) => {
                let mut parts = n.payload().split(':').map(|p| p.parse::<u64>());
                if let (Some(Ok(id)), Some(Ok(by))) = (parts.next(), parts.next()) {
                    let held = held.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(h) = held.get(&id) {
                        let _ = h.cancel.send(Some(by));
                    }
                }
            }
            Err(e) => {
                // PgListener reconnects on the next recv; notifications sent meanwhile are lost,
                // which the workers' periodic look and the heartbeat make up for.
                tracing::warn!("PostgreSQL LISTEN connection: {e}; reconnecting");
                wake.notify_waiters();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Insert `req` under its lane's lock; cancel the lane's older jobs. Returns what happened and
/// the running jobs told to cancel.
async fn insert_job(
    tx: &mut sqlx::PgConnection,
    delivery: &str,
    req: &BuildRequest,
) -> Result<Enqueued, sqlx::Error> {
    // One writer per lane at a time: ids then grow in commit order within a lane, so the
    // newest id is the newest push and nothing can be superseded by an older job.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(&req.lane)
        .execute(&mut *tx)
        .await?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO kiln_jobs (delivery, event, repo, sha, branch, lane, pr_number, fork, author, seal, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued')
         ON CONFLICT (delivery) DO NOTHING RETURNING id",
    )
    .bind(delivery)
    .bind(&req.event)
    .bind(&req.repo)
    .bind(&req.sha)
    .bind(&req.branch)
    .bind(&req.lane)
    .bind(req.pr_number.map(|n| n as i64))
    .bind(req.fork)
    .bind(&req.author)
    .bind(&req.seal)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = inserted else {
        let id: i64 = sqlx::query_scalar("SELECT id FROM kiln_jobs WHERE delivery = $1")
            .bind(delivery)
            .fetch_one(&mut *tx)
            .await?;
        return Ok(Enqueued::Duplicate(id as u64));
    };
    sqlx::query(
        "UPDATE kiln_jobs SET state = 'done', outcome = 'cancelled', superseded_by = $2,
            detail = 'superseded by job ' || $2, finished_at = now()
         WHERE lane = $1 AND state = 'queued' AND id < $2",
    )
    .bind(&req.lane)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "WITH told AS (
            UPDATE kiln_jobs SET cancel_by = $2
            WHERE lane = $1 AND state = 'running' AND id < $2 RETURNING id)
         SELECT pg_notify('kiln_cancel', id || ':' || $2) FROM told",
    )
    .bind(&req.lane)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify('kiln_jobs', $1::text)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(Enqueued::Accepted(id as u64))
}

#[async_trait::async_trait]
impl JobQueue for PgQueue {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn enqueue(&self, delivery: &str, req: BuildRequest) -> Result<Enqueued, QueueError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let done = insert_job(&mut tx, delivery, &req).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn claim(&self) -> Option<Claim> {
        // Look again this often even without a notification: expired leases send none.
        let every = (self.lease / 2).clamp(Duration::from_millis(500), Duration::from_secs(5));
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.stopping.load(Ordering::SeqCst) {
                return None;
            }
            match self.try_claim().await {
                Ok(Some(job)) => {
                    let (tx, rx) = watch::channel(None);
                    let cancel = Arc::new(tx);
                    let attempts = job.attempts as i32;
                    let heartbeat = self.heartbeat(job.id, attempts, cancel.clone());
                    self.lock().insert(
                        job.id,
                        Held {
                            attempts,
                            cancel,
                            heartbeat,
                        },
                    );
                    // Another queued job may be waiting for another idle worker.
                    self.wake.notify_one();
                    return Some(Claim {
                        job,
                        superseded: rx,
                    });
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("cannot claim a job: {e}"),
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    async fn finish(&self, id: u64, end: Finished) -> Result<(), QueueError> {
        let attempts = self.release(id).ok_or(QueueError::NoSuchJob(id))?;
        let updated = sqlx::query(
            "UPDATE kiln_jobs SET state = 'done', outcome = $1, detail = $2, exit_code = $3,
                superseded_by = $4, finished_at = now(), lease_until = NULL
             WHERE id = $5 AND host = $6 AND attempts = $7 AND state = 'running'",
        )
        .bind(end.outcome.as_str())
        .bind(&end.detail)
        .bind(end.exit_code)
        .bind(end.superseded_by.map(|n| n as i64))
        .bind(id as i64)
        .bind(&self.host)
        .bind(attempts)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if updated.rows_affected() == 0 {
            tracing::warn!(
                "job {id}: another agent took the job over (lease expired); its result stands"
            );
        }
        Ok(())
    }

    async fn requeue(&self, id: u64) -> Result<(), QueueError> {
        let attempts = self.release(id).ok_or(QueueError::NoSuchJob(id))?;
        sqlx::query(
            "UPDATE kiln_jobs SET state = 'queued', started_at = NULL, host = NULL, lease_until = NULL
             WHERE id = $1 AND host = $2 AND attempts = $3 AND state = 'running'",
        )
        .bind(id as i64)
        .bind(&self.host)
        .bind(attempts)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        self.notify_jobs().await;
        Ok(())
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    async fn recover(&self) -> Result<Vec<u64>, QueueError> {
        let cancelled: Vec<i64> = sqlx::query_scalar(
            "UPDATE kiln_jobs SET state = 'done', outcome = 'cancelled',
                superseded_by = NULLIF(cancel_by, id), detail = CASE WHEN cancel_by = id
                    THEN 'cancelled on request' ELSE 'superseded by job ' || cancel_by END,
                finished_at = now(), lease_until = NULL
             WHERE state = 'running' AND host = $1 AND cancel_by IS NOT NULL RETURNING id",
        )
        .bind(&self.host)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let requeued: Vec<i64> = sqlx::query_scalar(
            "UPDATE kiln_jobs SET state = 'queued', started_at = NULL, host = NULL, lease_until = NULL
             WHERE state = 'running' AND host = $1 RETURNING id",
        )
        .bind(&self.host)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        if !requeued.is_empty() {
            self.notify_jobs().await;
        }
        let mut ids: Vec<u64> = cancelled
            .into_iter()
            .chain(requeued)
            .map(|n| n as u64)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    async fn cancel(&self, id: u64) -> Result<bool, QueueError> {
        let queued = sqlx::query(
            "UPDATE kiln_jobs SET state = 'done', outcome = 'cancelled',
                detail = 'cancelled on request', finished_at = now()
             WHERE id = $1 AND state = 'queued'",
        )
        .bind(id as i64)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if queued.rows_affected() > 0 {
            return Ok(true);
        }
        // A running job: its host's worker kills the build (a job cancelled by itself).
        let told = sqlx::query(
            "WITH told AS (
                UPDATE kiln_jobs SET cancel_by = id WHERE id = $1 AND state = 'running' RETURNING id)
             SELECT pg_notify('kiln_cancel', id || ':' || id) FROM told",
        )
        .bind(id as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(!told.is_empty())
    }

    async fn get(&self, id: u64) -> Result<Option<Job>, QueueError> {
        let sql = format!("SELECT {COLS} FROM kiln_jobs WHERE id = $1");
        let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id as i64)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.map(Job::from))
    }

    async fn summary(&self, id: u64) -> Result<Option<serde_json::Value>, QueueError> {
        let v: Option<Option<serde_json::Value>> =
            sqlx::query_scalar("SELECT summary FROM kiln_jobs WHERE id = $1")
                .bind(id as i64)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(v.flatten())
    }

    async fn save_summary(&self, id: u64, summary: &serde_json::Value) -> Result<(), QueueError> {
        sqlx::query("UPDATE kiln_jobs SET summary = $1 WHERE id = $2")
            .bind(summary)
            .bind(id as i64)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn has_build(&self, lane: &str, sha: &str) -> Result<bool, QueueError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM kiln_jobs WHERE lane = $1 AND sha = $2
                AND outcome IS DISTINCT FROM 'cancelled')",
        )
        .bind(lane)
        .bind(sha)
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn prune(&self, cutoff: DateTime<Utc>) -> Result<Vec<u64>, QueueError> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM kiln_jobs j WHERE state = 'done' AND finished_at < $1
                AND id <> (SELECT max(k.id) FROM kiln_jobs k WHERE k.lane = j.lane)
             RETURNING id",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut ids: Vec<u64> = ids.into_iter().map(|n| n as u64).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    async fn list(&self, filter: &Filter) -> Result<Vec<Job>, QueueError> {
        let text = |o: &Option<String>| {
            o.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let branch = text(&filter.branch);
        let pr = branch
            .as_deref()
            .and_then(|b| b.strip_prefix('#'))
            .and_then(|n| n.parse::<i64>().ok());
        let branch = branch.filter(|_| pr.is_none());
        let sql = format!(
            "SELECT {COLS} FROM kiln_jobs
             WHERE ($1::text IS NULL OR repo = $1) AND ($2::text IS NULL OR branch = $2)
               AND ($3::bigint IS NULL OR pr_number = $3)
               AND ($4::text IS NULL OR COALESCE(outcome, state) = $4)
               AND ($6::text IS NULL OR sha = $6)
             ORDER BY id DESC LIMIT $5"
        );
        let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(text(&filter.repo))
            .bind(branch)
            .bind(pr)
            .bind(text(&filter.status))
            .bind(filter.limit() as i64)
            .bind(text(&filter.sha))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(Job::from).collect())
    }

    async fn counts(&self) -> Result<Counts, QueueError> {
        let rows = sqlx::query(
            "SELECT state, outcome, count(*) AS n FROM kiln_jobs GROUP BY state, outcome",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut c = Counts::default();
        for r in rows {
            let state: String = r.try_get("state").map_err(db)?;
            let outcome: Option<String> = r.try_get("outcome").map_err(db)?;
            let n = r.try_get::<i64, _>("n").map_err(db)?.max(0) as usize;
            match (
                JobState::parse(&state),
                outcome.as_deref().and_then(JobOutcome::parse),
            ) {
                (Some(JobState::Queued), _) => c.queued += n,
                (Some(JobState::Running), _) => c.running += n,
                (_, Some(o)) => *c.done.entry(o).or_default() += n,
                _ => {}
            }
        }
        Ok(c)
    }

    async fn beat(&self, host: &Host) -> Result<(), QueueError> {
        sqlx::query(
            "INSERT INTO kiln_hosts (id, name, url, workers, version, started_at, seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, now())
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, url = EXCLUDED.url,
                workers = EXCLUDED.workers, version = EXCLUDED.version,
                started_at = EXCLUDED.started_at, seen_at = now()",
        )
        .bind(&host.id)
        .bind(&host.name)
        .bind(&host.url)
        .bind(host.workers as i32)
        .bind(&host.version)
        .bind(host.started_at)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn hosts(&self) -> Result<Vec<Host>, QueueError> {
        let rows = sqlx::query(
            "SELECT h.id, h.name, h.url, h.workers, h.version, h.started_at, h.seen_at,
                (SELECT count(*) FROM kiln_jobs j WHERE j.state = 'running' AND j.host = h.id) AS busy
             FROM kiln_hosts h ORDER BY h.seen_at DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|r| {
                Ok(Host {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    url: r.try_get("url")?,
                    workers: r.try_get::<i32, _>("workers")?.max(0) as usize,
                    busy: r.try_get::<i64, _>("busy")?.max(0) as usize,
                    version: r.try_get("version")?,
                    started_at: r.try_get("started_at")?,
                    seen_at: r.try_get("seen_at")?,
                })
            })
            .collect::<Result<Vec<Host>, sqlx::Error>>()
            .map_err(db)
    }
}

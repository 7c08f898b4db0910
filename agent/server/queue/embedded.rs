//! The embedded queue (one host, the default): one JSON file per job under `<data-dir>/queue/`.
//!
//! Every state change is written to a temporary file, fsync'd, renamed over the job's file, and
//! the directory fsync'd, so after a crash each file holds either the old or the new state, never
//! a torn one. A webhook is answered 202 only after its job's file is durable; that is what makes
//! `kill -9` at any moment lose no accepted job. Files rather than SQLite: one writer process, a
//! few thousand small records, and a layout an operator can read with `cat`.
//!
//! The delivery ID of every job is kept in its record, so de-duplication survives restarts. On
//! start-up, jobs found `running` are put back to `queued` (they run again), and of several queued
//! jobs in one lane only the newest is kept (the others are cancelled as superseded).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Notify};

use super::{
    Claim, Counts, Enqueued, Filter, Finished, Host, Job, JobOutcome, JobQueue, JobState,
    QueueError,
};
use crate::server::events::BuildRequest;

#[derive(Default)]
struct Inner {
    jobs: BTreeMap<u64, Job>,
    queued: BTreeSet<u64>,
    deliveries: HashMap<String, u64>,
    /// One lock per delivery being written, so two copies of one delivery arriving together
    /// cannot both be queued.
    pending: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    cancel: HashMap<u64, watch::Sender<Option<u64>>>,
    /// Lane → jobs not yet done (queued, running, or being written): supersede looks here
    /// instead of scanning every job ever stored.
    active: HashMap<String, BTreeSet<u64>>,
}

impl Inner {
    fn activate(&mut self, lane: &str, id: u64) {
        self.active.entry(lane.to_string()).or_default().insert(id);
    }

    fn deactivate(&mut self, id: u64) {
        let Some(lane) = self.jobs.get(&id).map(|j| j.lane.clone()) else {
            return;
        };
        if let Some(set) = self.active.get_mut(&lane) {
            set.remove(&id);
            if set.is_empty() {
                self.active.remove(&lane);
            }
        }
    }

    fn in_lane(&self, lane: &str, range: impl std::ops::RangeBounds<u64>) -> Vec<u64> {
        self.active
            .get(lane)
            .map(|set| set.range(range).copied().collect())
            .unwrap_or_default()
    }

    /// Mark a queued job cancelled because `by` supersedes it.
    fn cancel_superseded(&mut self, id: u64, by: u64) {
        self.deactivate(id);
        self.queued.remove(&id);
        if let Some(j) = self.jobs.get_mut(&id) {
            j.state = JobState::Done;
            j.outcome = Some(JobOutcome::Cancelled);
            j.superseded_by = Some(by);
            j.detail = Some(format!("superseded by job {by}"));
            j.finished_at = Some(Utc::now());
        }
    }
}

const STRIPES: usize = 64;

pub struct Queue {
    dir: PathBuf,
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    wake: Notify,
    stopping: AtomicBool,
    /// Serialises writes of one job's file so the last rename carries the newest state.
    write_locks: Vec<Mutex<()>>,
    recovered: Vec<u64>,
    /// This agent's id, recorded in the jobs it runs.
    host: String,
}

impl Queue {
    /// Open (or create) the queue in `data_dir/queue` and recover what a previous run left.
    pub fn open(data_dir: &Path) -> Result<Queue, QueueError> {
        Queue::open_as(data_dir, "")
    }

    /// `open`, for the agent whose id is `host`.
    pub fn open_as(data_dir: &Path, host: &str) -> Result<Queue, QueueError> {
        let dir = data_dir.join("queue");
        std::fs::create_dir_all(&dir).map_err(|source| QueueError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let rd = |source| QueueError::ReadDir {
            path: dir.clone(),
            source,
        };
        let mut inner = Inner::default();
        for entry in std::fs::read_dir(&dir).map_err(rd)? {
            let entry = entry.map_err(rd)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.ends_with(".tmp") {
                // A write that never reached its rename: the job was never acknowledged.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Job>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(job) => {
                    inner.deliveries.insert(job.delivery.clone(), job.id);
                    inner.jobs.insert(job.id, job);
                }
                Err(e) => {
                    let aside = dir.join(format!("{name}.corrupt"));
                    tracing::error!(
                        "job file {} is unreadable ({e}); moved aside to {}",
                        path.display(),
                        aside.display()
                    );
                    let _ = std::fs::rename(&path, &aside);
                }
            }
        }
        let next = inner.jobs.keys().next_back().map_or(1, |m| m + 1);
        let queue = Queue {
            dir,
            inner: Mutex::new(Inner::default()),
            next_id: AtomicU64::new(next),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            write_locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            recovered: Vec::new(),
            host: host.to_string(),
        };
        let mut queue = queue;
        let mut changed = Vec::new();
        let mut newest_in_lane: HashMap<String, u64> = HashMap::new();
        for job in inner.jobs.values_mut() {
            if job.state == JobState::Running {
                tracing::warn!(
                    "job {} was running when the agent stopped; it will run again",
                    job.id
                );
                job.state = JobState::Queued;
                queue.recovered.push(job.id);
                changed.push(job.id);
            }
            if job.state == JobState::Queued {
                newest_in_lane.insert(job.lane.clone(), job.id);
            }
        }
        for job in inner.jobs.values_mut() {
            if job.state != JobState::Queued {
                continue;
            }
            match newest_in_lane.get(&job.lane) {
                Some(&newest) if newest != job.id => {
                    job.state = JobState::Done;
                    job.outcome = Some(JobOutcome::Cancelled);
                    job.superseded_by = Some(newest);
                    job.detail = Some(format!("superseded by job {newest}"));
                    job.finished_at = Some(Utc::now());
                    changed.push(job.id);
                }
                _ => {
                    inner.queued.insert(job.id);
                }
            }
        }
        let active: Vec<(String, u64)> = inner
            .jobs
            .values()
            .filter(|j| j.state != JobState::Done)
            .map(|j| (j.lane.clone(), j.id))
            .collect();
        for (lane, id) in active {
            inner.activate(&lane, id);
        }
        queue.inner = Mutex::new(inner);
        for id in changed {
            queue.persist(id)?;
        }
        Ok(queue)
    }

    /// Jobs that were running when the previous agent stopped (their leftover processes must be
    /// killed before they run again).
    pub fn recovered(&self) -> &[u64] {
        &self.recovered
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every change is one insert).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:012}.json"))
    }

    /// Write job `id`'s current in-memory state to disk, durably (blocking).
    fn persist(&self, id: u64) -> Result<(), QueueError> {
        let _w = self.write_locks[(id as usize) % STRIPES]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(bytes) = self
            .lock()
            .jobs
            .get(&id)
            .and_then(|j| serde_json::to_vec_pretty(j).ok())
        else {
            return Err(QueueError::NoSuchJob(id));
        };
        let path = self.path(id);
        write_durably(&self.dir, &path, &bytes).map_err(|source| QueueError::Write { path, source })
    }

    async fn persist_async(self: &Arc<Self>, id: u64) -> Result<(), QueueError> {
        let q = self.clone();
        match tokio::task::spawn_blocking(move || q.persist(id)).await {
            Ok(r) => r,
            Err(e) => Err(QueueError::Write {
                path: self.path(id),
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }

    /// Store a build durably, unless `delivery` was seen before. Older jobs in the same lane are
    /// cancelled: queued ones at once, running ones through their worker.
    pub async fn enqueue(
        self: &Arc<Self>,
        delivery: &str,
        req: BuildRequest,
    ) -> Result<Enqueued, QueueError> {
        let gate = {
            let mut inner = self.lock();
            if let Some(&id) = inner.deliveries.get(delivery) {
                return Ok(Enqueued::Duplicate(id));
            }
            inner
                .pending
                .entry(delivery.to_string())
                .or_default()
                .clone()
        };
        let _held = gate.lock().await;
        let id = {
            let mut inner = self.lock();
            if let Some(&id) = inner.deliveries.get(delivery) {
                return Ok(Enqueued::Duplicate(id));
            }
            let id = self.next_id.fetch_add(1, Ordering::SeqCst);
            inner.activate(&req.lane, id);
            inner.jobs.insert(id, Job::new(id, delivery, req));
            id
        };
        let written = self.persist_async(id).await;
        let superseded_queued = {
            let mut inner = self.lock();
            inner.pending.remove(delivery);
            if let Err(e) = written {
                // Not acknowledged, so not queued: GitHub will show the delivery as failed.
                inner.deactivate(id);
                inner.jobs.remove(&id);
                return Err(e);
            }
            inner.deliveries.insert(delivery.to_string(), id);
            let lane = inner
                .jobs
                .get(&id)
                .map(|j| j.lane.clone())
                .unwrap_or_default();
            let mut cancelled = Vec::new();
            // A newer job of this lane that was written first (concurrent deliveries) wins.
            let newer = inner.in_lane(&lane, id + 1..).into_iter().find(|n| {
                inner
                    .jobs
                    .get(n)
                    .is_some_and(|j| inner.deliveries.contains_key(&j.delivery))
            });
            match newer {
                Some(n) => {
                    inner.cancel_superseded(id, n);
                    cancelled.push(id);
                }
                None => {
                    inner.queued.insert(id);
                }
            }
            for old in inner.in_lane(&lane, ..id) {
                if inner.queued.contains(&old) {
                    inner.cancel_superseded(old, id);
                    cancelled.push(old);
                } else if let Some(tx) = inner.cancel.get(&old) {
                    let _ = tx.send(Some(id));
                }
            }
            cancelled
        };
        self.wake.notify_one();
        for old in superseded_queued {
            tracing::info!("job {old} cancelled: superseded by a newer build of its branch");
            // Best effort: if this write is lost, recovery cancels the older job again.
            if let Err(e) = self.persist_async(old).await {
                tracing::warn!("{e}");
            }
        }
        Ok(Enqueued::Accepted(id))
    }

    /// Wait for the oldest queued job and mark it running (durably). None once stopping.
    pub async fn claim(self: &Arc<Self>) -> Option<Claim> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.stopping.load(Ordering::SeqCst) {
                return None;
            }
            let claimed = {
                let mut inner = self.lock();
                let next = inner.queued.pop_first();
                next.and_then(|id| {
                    let job = inner.jobs.get_mut(&id)?;
                    job.state = JobState::Running;
                    job.attempts += 1;
                    job.started_at = Some(Utc::now());
                    job.host = Some(self.host.clone());
                    let job = job.clone();
                    let (tx, rx) = watch::channel(None);
                    inner.cancel.insert(id, tx);
                    Some(Claim {
                        job,
                        superseded: rx,
                    })
                })
            };
            if let Some(c) = claimed {
                if let Err(e) = self.persist_async(c.job.id).await {
                    // The build still runs; if we crash it is re-run from its queued record.
                    tracing::warn!("{e}");
                }
                // Another queued job may be waiting for another idle worker.
                self.wake.notify_one();
                return Some(c);
            }
            notified.await;
        }
    }

    /// Record a finished job durably.
    pub async fn finish(self: &Arc<Self>, id: u64, end: Finished) -> Result<(), QueueError> {
        {
            let mut inner = self.lock();
            inner.cancel.remove(&id);
            inner.deactivate(id);
            let job = inner.jobs.get_mut(&id).ok_or(QueueError::NoSuchJob(id))?;
            job.state = JobState::Done;
            job.outcome = Some(end.outcome);
            job.detail = end.detail;
            job.exit_code = end.exit_code;
            job.superseded_by = end.superseded_by;
            job.finished_at = Some(Utc::now());
        }
        self.persist_async(id).await
    }

    /// Put a running job back in the queue (shutdown interrupted it; it runs after a restart).
    pub async fn requeue(self: &Arc<Self>, id: u64) -> Result<(), QueueError> {
        {
            let mut inner = self.lock();
            inner.cancel.remove(&id);
            let job = inner.jobs.get_mut(&id).ok_or(QueueError::NoSuchJob(id))?;
            job.state = JobState::Queued;
            job.started_at = None;
            inner.queued.insert(id);
        }
        self.persist_async(id).await
    }

    /// Stop handing out jobs (workers' `claim` returns None).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    pub fn get(&self, id: u64) -> Option<Job> {
        self.lock().jobs.get(&id).cloned()
    }

    /// Is `sha` already queued, running or built (not cancelled) in `lane`? Lets the poller leave
    /// alone a head a webhook already queued, instead of superseding that build with itself.
    pub fn has_build(&self, lane: &str, sha: &str) -> bool {
        self.lock()
            .jobs
            .values()
            .rev()
            .any(|j| j.lane == lane && j.sha == sha && j.outcome != Some(JobOutcome::Cancelled))
    }

    /// Forget finished jobs that finished before `cutoff` and delete their records; returns their
    /// IDs (the caller deletes their logs and summaries). The newest job of each lane is kept
    /// whatever its age, so the poller never rebuilds a branch head that simply did not move.
    /// GitHub keeps deliveries for redelivery only a few days, so de-duplication loses nothing
    /// with any retention longer than that.
    pub fn prune(&self, cutoff: DateTime<Utc>) -> Vec<u64> {
        let ids: Vec<u64> = {
            let mut inner = self.lock();
            let mut newest: HashMap<&str, u64> = HashMap::new();
            for j in inner.jobs.values() {
                newest.insert(j.lane.as_str(), j.id);
            }
            let ids: Vec<u64> = inner
                .jobs
                .values()
                .filter(|j| {
                    j.state == JobState::Done
                        && j.finished_at.is_some_and(|f| f < cutoff)
                        && newest.get(j.lane.as_str()) != Some(&j.id)
                })
                .map(|j| j.id)
                .collect();
            for id in &ids {
                if let Some(j) = inner.jobs.remove(id) {
                    inner.deliveries.remove(&j.delivery);
                }
            }
            ids
        };
        for id in &ids {
            let path = self.path(*id);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!("cannot delete {}: {e}", path.display());
            }
        }
        ids
    }

    /// The newest jobs passing `filter`, newest first.
    pub fn list(&self, filter: &Filter) -> Vec<Job> {
        self.lock()
            .jobs
            .values()
            .rev()
            .filter(|j| filter.matches(j))
            .take(filter.limit())
            .cloned()
            .collect()
    }

    /// Cancel on request: a queued job at once, a running one through its worker.
    pub async fn cancel(self: &Arc<Self>, id: u64) -> Result<bool, QueueError> {
        let queued = {
            let mut inner = self.lock();
            let state = inner.jobs.get(&id).ok_or(QueueError::NoSuchJob(id))?.state;
            match state {
                JobState::Done => return Ok(false),
                JobState::Running => {
                    if let Some(tx) = inner.cancel.get(&id) {
                        let _ = tx.send(Some(id));
                    }
                    return Ok(true);
                }
                JobState::Queued => {
                    inner.cancel_superseded(id, id);
                    if let Some(j) = inner.jobs.get_mut(&id) {
                        j.superseded_by = None;
                        j.detail = Some("cancelled on request".into());
                    }
                    id
                }
            }
        };
        self.persist_async(queued).await?;
        Ok(true)
    }

    pub fn counts(&self) -> Counts {
        let inner = self.lock();
        let mut c = Counts::default();
        for j in inner.jobs.values() {
            match j.state {
                JobState::Queued => c.queued += 1,
                JobState::Running => c.running += 1,
                JobState::Done => {
                    if let Some(o) = j.outcome {
                        *c.done.entry(o).or_default() += 1;
                    }
                }
            }
        }
        c
    }
}

/// The file queue behind the [`JobQueue`] trait, with this host's registration.
pub struct EmbeddedQueue {
    queue: Arc<Queue>,
    data_dir: PathBuf,
    me: Mutex<Option<Host>>,
}

impl EmbeddedQueue {
    pub fn open(data_dir: &Path, host: &str) -> Result<EmbeddedQueue, QueueError> {
        Ok(EmbeddedQueue {
            queue: Arc::new(Queue::open_as(data_dir, host)?),
            data_dir: data_dir.to_path_buf(),
            me: Mutex::new(None),
        })
    }

    fn summary_path(&self, id: u64) -> PathBuf {
        self.data_dir.join("summaries").join(format!("{id}.json"))
    }
}

#[async_trait::async_trait]
impl JobQueue for EmbeddedQueue {
    fn backend(&self) -> &'static str {
        "embedded"
    }
    async fn enqueue(&self, delivery: &str, req: BuildRequest) -> Result<Enqueued, QueueError> {
        self.queue.enqueue(delivery, req).await
    }
    async fn claim(&self) -> Option<Claim> {
        self.queue.claim().await
    }
    async fn finish(&self, id: u64, end: Finished) -> Result<(), QueueError> {
        self.queue.finish(id, end).await
    }
    async fn requeue(&self, id: u64) -> Result<(), QueueError> {
        self.queue.requeue(id).await
    }
    fn stop(&self) {
        self.queue.stop()
    }
    async fn recover(&self) -> Result<Vec<u64>, QueueError> {
        Ok(self.queue.recovered().to_vec())
    }
    async fn cancel(&self, id: u64) -> Result<bool, QueueError> {
        self.queue.cancel(id).await
    }
    async fn get(&self, id: u64) -> Result<Option<Job>, QueueError> {
        Ok(self.queue.get(id))
    }
    async fn summary(&self, id: u64) -> Result<Option<serde_json::Value>, QueueError> {
        // Written by the build itself (`kiln run --summary-json`) into the data dir.
        Ok(tokio::fs::read(self.summary_path(id))
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }
    async fn save_summary(&self, _id: u64, _summary: &serde_json::Value) -> Result<(), QueueError> {
        Ok(())
    }
    async fn has_build(&self, lane: &str, sha: &str) -> Result<bool, QueueError> {
        Ok(self.queue.has_build(lane, sha))
    }
    async fn prune(&self, cutoff: DateTime<Utc>) -> Result<Vec<u64>, QueueError> {
        let q = self.queue.clone();
        tokio::task::spawn_blocking(move || q.prune(cutoff))
            .await
            .map_err(|e| QueueError::Database(e.to_string()))
    }
    async fn list(&self, filter: &Filter) -> Result<Vec<Job>, QueueError> {
        Ok(self.queue.list(filter))
    }
    async fn counts(&self) -> Result<Counts, QueueError> {
        Ok(self.queue.counts())
    }
    async fn beat(&self, host: &Host) -> Result<(), QueueError> {
        *self.me.lock().unwrap_or_else(|p| p.into_inner()) = Some(host.clone());
        Ok(())
    }
    async fn hosts(&self) -> Result<Vec<Host>, QueueError> {
        let me = self.me.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let running = self.queue.counts().running;
        Ok(me
            .map(|mut h| {
                h.busy = running;
                h.seen_at = Utc::now();
                vec![h]
            })
            .unwrap_or_default())
    }
}

/// temp file → write → fsync → rename over `path` → fsync the directory.
pub fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(outcome: JobOutcome, exit_code: Option<i32>) -> Finished {
        Finished {
            outcome,
            detail: None,
            exit_code,
            superseded_by: None,
        }
    }

    fn upto(limit: usize) -> Filter {
        Filter {
            limit: Some(limit),
            ..Filter::default()
        }
    }

    fn req(lane: &str) -> BuildRequest {
        BuildRequest {
            repo: "o/r".into(),
            sha: "a".repeat(40),
            branch: lane.into(),
            lane: lane.into(),
            event: "push".into(),
            pr_number: None,
            fork: false,
            author: None,
            seal: None,
        }
    }

    #[tokio::test]
    async fn accepted_jobs_survive_reopen_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let q = Arc::new(Queue::open(dir.path()).unwrap());
        assert_eq!(
            q.enqueue("d1", req("a")).await.unwrap(),
            Enqueued::Accepted(1)
        );
        assert_eq!(
            q.enqueue("d2", req("b")).await.unwrap(),
            Enqueued::Accepted(2)
        );
        assert_eq!(
            q.enqueue("d1", req("a")).await.unwrap(),
            Enqueued::Duplicate(1)
        );
        drop(q);
        let q = Arc::new(Queue::open(dir.path()).unwrap());
        assert_eq!(
            q.enqueue("d2", req("b")).await.unwrap(),
            Enqueued::Duplicate(2)
        );
        assert_eq!(q.counts().queued, 2);
        assert_eq!(
            q.enqueue("d3", req("c")).await.unwrap(),
            Enqueued::Accepted(3)
        );
    }

    #[tokio::test]
    async fn concurrent_copies_of_one_delivery_queue_once() {
        let dir = tempfile::tempdir().unwrap();
        let q = Arc::new(Queue::open(dir.path()).unwrap());
        let mut handles = Vec::new();
        for i in 0..40 {
            let q = q.clone();
            handles.push(tokio::spawn(async move {
                q.enqueue(&format!("d{}", i % 4), req(&format!("l{i}")))
                    .await
                    .unwrap()
            }));
        }
        let mut accepted = 0;
        for h in handles {
            if matches!(h.await.unwrap(), Enqueued::Accepted(_)) {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 4);
        assert_eq!(q.list(&upto(100)).len(), 4);
    }

    #[tokio::test]
    async fn running_jobs_are_requeued_and_older_lane_jobs_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let q = Arc::new(Queue::open(dir.path()).unwrap());
        q.enqueue("d1", req("main")).await.unwrap();
        let c = q.claim().await.unwrap();
        assert_eq!(c.job.id, 1);
        // A newer push to the same lane: the running one is told to cancel.
        q.enqueue("d2", req("main")).await.unwrap();
        assert_eq!(*c.superseded.borrow(), Some(2));
        // And a third cancels the queued second at once.
        q.enqueue("d3", req("main")).await.unwrap();
        assert_eq!(q.get(2).unwrap().outcome, Some(JobOutcome::Cancelled));
        drop(c);
        drop(q);
        // Crash: job 1 was "running" on disk.
        let q = Arc::new(Queue::open(dir.path()).unwrap());
        assert_eq!(q.recovered(), &[1]);
        // Of queued jobs 1 and 3 in lane main, only 3 runs.
        assert_eq!(q.get(1).unwrap().outcome, Some(JobOutcome::Cancelled));
        let c = q.claim().await.unwrap();
        assert_eq!(c.job.id, 3);
        q.finish(3, ended(JobOutcome::Passed, Some(0)))
            .await
            .unwrap();
        drop(q);
        let q = Queue::open(dir.path()).unwrap();
        assert_eq!(q.get(3).unwrap().state, JobState::Done);
        assert_eq!(q.counts().done[&JobOutcome::Passed], 1);
    }

    #[tokio::test]
    async fn torn_temp_files_and_corrupt_records_do_not_stop_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let q = Arc::new(Queue::open(dir.path()).unwrap());
        q.enqueue("d1", req("a")).await.unwrap();
        drop(q);
        std::fs::write(
            dir.path().join("queue/.000000000002.json.1.1.tmp"),
            b"{\"id\":",
        )
        .unwrap();
        std::fs::write(dir.path().join("queue/000000000009.json"), b"garbage").unwrap();
        let q = Queue::open(dir.path()).unwrap();
        assert_eq!(q.list(&upto(10)).len(), 1);
        assert!(dir.path().join("queue/000000000009.json.corrupt").exists());
        assert!(!dir.path().join("queue/.000000000002.json.1.1.tmp").exists());
    }

    #[tokio::test]
    async fn prune_forgets_old_finished_jobs_but_the_newest_of_each_lane() {
        let dir = tempfile::tempdir().unwrap();
        let q = Arc::new(Queue::open(dir.path()).unwrap());
        for (d, lane) in [("d1", "a"), ("d2", "b"), ("d3", "c"), ("d4", "c")] {
            q.enqueue(d, req(lane)).await.unwrap();
        }
        // Lane c: job 3 was superseded by 4 (cancelled, done). Finish 1 and 4; 2 stays queued.
        let c = q.claim().await.unwrap();
        q.finish(c.job.id, ended(JobOutcome::Passed, Some(0)))
            .await
            .unwrap();
        q.enqueue("d5", req("a")).await.unwrap();
        let c = q.claim().await.unwrap();
        assert_eq!(c.job.id, 2);
        q.finish(2, ended(JobOutcome::Failed, Some(1)))
            .await
            .unwrap();
        let pruned = q.prune(Utc::now() + chrono::Duration::seconds(1));
        // 1 (older than 5 in lane a) and 3 (older than 4 in lane c) go; 2 is its lane's newest.
        assert_eq!(pruned, vec![1, 3]);
        assert!(q.get(1).is_none());
        // Its delivery is forgotten too (GitHub stopped offering redelivery long ago).
        assert_eq!(
            q.enqueue("d1", req("z")).await.unwrap(),
            Enqueued::Accepted(6)
        );
        drop(q);
        let q = Queue::open(dir.path()).unwrap();
        let ids: Vec<u64> = q.list(&upto(10)).iter().map(|j| j.id).collect();
        assert_eq!(ids, vec![6, 5, 4, 2]);
        assert!(q.prune(Utc::now() - chrono::Duration::days(1)).is_empty());
    }

    #[tokio::test]
    async fn stop_releases_idle_workers() {
        let dir = tempfile::tempdir().unwrap();
        let q = Arc::new(Queue::open(dir.path()).unwrap());
        let w = {
            let q = q.clone();
            tokio::spawn(async move { q.claim().await.is_none() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        q.stop();
        assert!(w.await.unwrap());
    }
}

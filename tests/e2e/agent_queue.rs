//! One queue test suite, run against both backends: the embedded file queue and PostgreSQL.
//! What it checks is what a user relies on: a delivery is queued once however often and
//! wherever it arrives, a newer push cancels the older build (queued or running), claims hand
//! each job to one worker, oldest first, and retry/cancel/filter behave alike.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kiln::server::events::BuildRequest;
use kiln::server::queue::embedded::EmbeddedQueue;
use kiln::server::queue::postgres::PgQueue;
use kiln::server::queue::{Enqueued, Filter, Finished, JobOutcome, JobQueue, JobState};

use crate::support::postgres::Cluster;

fn req(lane: &str, sha: &str) -> BuildRequest {
    BuildRequest {
        repo: "octo/hello".into(),
        sha: sha.into(),
        branch: lane.into(),
        lane: format!("octo/hello@{lane}"),
        event: "push".into(),
        pr_number: None,
        fork: false,
        author: Some("alice".into()),
        seal: None,
    }
}

fn sha(n: usize) -> String {
    format!("{n:040x}")
}

fn passed() -> Finished {
    Finished {
        outcome: JobOutcome::Passed,
        detail: None,
        exit_code: Some(0),
        superseded_by: None,
    }
}

async fn claim(q: &dyn JobQueue) -> kiln::server::queue::Claim {
    tokio::time::timeout(Duration::from_secs(10), q.claim())
        .await
        .expect("a queued job is claimed within 10s")
        .expect("the queue is not stopping")
}

/// The suite: `q` is a fresh, empty queue of one backend.
async fn suite(q: Arc<dyn JobQueue>) {
    // De-duplication, also of copies arriving at the same time.
    assert_eq!(
        q.enqueue("d1", req("a", &sha(1))).await.unwrap(),
        Enqueued::Accepted(1)
    );
    assert_eq!(
        q.enqueue("d1", req("a", &sha(1))).await.unwrap(),
        Enqueued::Duplicate(1)
    );
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        let q = q.clone();
        set.spawn(async move {
            q.enqueue(
                &format!("c{}", i % 4),
                req(&format!("l{}", i % 4), &sha(100 + i)),
            )
            .await
            .unwrap()
        });
    }
    let mut accepted = 0;
    while let Some(r) = set.join_next().await {
        accepted += matches!(r.unwrap(), Enqueued::Accepted(_)) as usize;
    }
    assert_eq!(accepted, 4, "four distinct deliveries, each queued once");
    assert_eq!(q.list(&Filter::default()).await.unwrap().len(), 5);

    // Oldest first; a newer push of the lane tells the running build, cancels the queued one.
    let first = claim(q.as_ref()).await;
    assert_eq!(first.job.id, 1);
    assert_eq!(first.job.state, JobState::Running);
    let two = q.enqueue("d2", req("a", &sha(2))).await.unwrap().id();
    let mut sup = first.superseded.clone();
    tokio::time::timeout(Duration::from_secs(10), sup.wait_for(|v| v.is_some()))
        .await
        .expect("the running build is told within 10s")
        .unwrap();
    assert_eq!(*first.superseded.borrow(), Some(two));
    let three = q.enqueue("d3", req("a", &sha(3))).await.unwrap().id();
    let j2 = q.get(two).await.unwrap().unwrap();
    assert_eq!(
        (j2.outcome, j2.superseded_by),
        (Some(JobOutcome::Cancelled), Some(three))
    );
    q.finish(
        1,
        Finished {
            outcome: JobOutcome::Cancelled,
            detail: Some(format!("superseded by job {two}")),
            exit_code: None,
            superseded_by: Some(two),
        },
    )
    .await
    .unwrap();
    assert!(q.has_build("octo/hello@a", &sha(3)).await.unwrap());
    assert!(
        !q.has_build("octo/hello@a", &sha(2)).await.unwrap(),
        "cancelled builds do not count"
    );

    // Every remaining job is claimed exactly once by concurrent workers.
    let mut seen = HashSet::new();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let q = q.clone();
        workers.spawn(async move {
            let mut mine = Vec::new();
            while let Ok(Some(c)) = tokio::time::timeout(Duration::from_secs(2), q.claim()).await {
                mine.push(c.job.id);
                q.finish(c.job.id, passed()).await.unwrap();
            }
            mine
        });
    }
    while let Some(r) = workers.join_next().await {
        for id in r.unwrap() {
            assert!(seen.insert(id), "job {id} claimed twice");
        }
    }
    assert_eq!(
        seen.len(),
        5,
        "the four of the storm and the newest of lane a: {seen:?}"
    );
    assert!(seen.contains(&three) && !seen.contains(&two));
    let counts = q.counts().await.unwrap();
    assert_eq!((counts.queued, counts.running), (0, 0));
    assert_eq!(counts.done[&JobOutcome::Passed], 5);

    // Retry: the same commit again, as the newest build of its lane.
    let retried = q.retry(three).await.unwrap();
    let r = q.get(retried.id()).await.unwrap().unwrap();
    assert_eq!(
        (r.sha.as_str(), r.lane.as_str(), r.state),
        (sha(3).as_str(), "octo/hello@a", JobState::Queued)
    );
    assert!(q.retry(9999).await.is_err());

    // Cancel: queued at once; running through its worker (told with its own id).
    assert!(q.cancel(retried.id()).await.unwrap());
    assert_eq!(
        q.get(retried.id()).await.unwrap().unwrap().outcome,
        Some(JobOutcome::Cancelled)
    );
    let pr = BuildRequest {
        pr_number: Some(7),
        lane: "octo/hello#7".into(),
        branch: "feature".into(),
        ..req("x", &sha(7))
    };
    let seven = q.enqueue("d7", pr).await.unwrap().id();
    let c = claim(q.as_ref()).await;
    assert_eq!(c.job.id, seven);
    assert!(q.cancel(seven).await.unwrap());
    let mut sup = c.superseded.clone();
    tokio::time::timeout(Duration::from_secs(10), sup.wait_for(|v| *v == Some(seven)))
        .await
        .expect("the running build is told to cancel")
        .unwrap();
    q.finish(
        seven,
        Finished {
            outcome: JobOutcome::Cancelled,
            detail: Some("cancelled on request".into()),
            exit_code: None,
            superseded_by: None,
        },
    )
    .await
    .unwrap();
    assert!(
        !q.cancel(seven).await.unwrap(),
        "a finished job cannot be cancelled"
    );

    // Filters: repository, branch, pull request, state, commit.
    let ids = |f: Filter| {
        let q = q.clone();
        async move {
            q.list(&f)
                .await
                .unwrap()
                .into_iter()
                .map(|j| j.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids(Filter {
            branch: Some("#7".into()),
            ..Filter::default()
        })
        .await,
        vec![seven]
    );
    assert_eq!(
        ids(Filter {
            sha: Some(sha(3)),
            ..Filter::default()
        })
        .await,
        vec![retried.id(), three]
    );
    assert_eq!(
        ids(Filter {
            status: Some("passed".into()),
            branch: Some("a".into()),
            ..Filter::default()
        })
        .await,
        vec![three]
    );
    assert!(ids(Filter {
        repo: Some("octo/other".into()),
        ..Filter::default()
    })
    .await
    .is_empty());
    let all = ids(Filter::default()).await;
    assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first: {all:?}");

    // Stopping releases idle workers.
    let idle = {
        let q = q.clone();
        tokio::spawn(async move { q.claim().await.is_none() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    q.stop();
    assert!(tokio::time::timeout(Duration::from_secs(10), idle)
        .await
        .unwrap()
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_queue_keeps_the_queue_promises() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(EmbeddedQueue::open(dir.path(), "host-a").unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queue_keeps_the_queue_promises() {
    let url = Cluster::get().database("suite");
    let q = PgQueue::connect(&url, "host-a", Duration::from_secs(30))
        .await
        .unwrap();
    suite(Arc::new(q)).await;
}

/// Two hosts on one database: a delivery reaching both is queued once; a host that dies mid-
/// build loses its job to the other once the lease runs out (a second attempt), and a newer push
/// received by one host cancels the build running on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hosts_share_deliveries_leases_and_supersede() {
    let url = Cluster::get().database("hosts");
    let lease = Duration::from_secs(1);
    let a = PgQueue::connect(&url, "host-a", lease).await.unwrap();
    let b = PgQueue::connect(&url, "host-b", lease).await.unwrap();
    assert_eq!(
        a.enqueue("same", req("m", &sha(1))).await.unwrap(),
        Enqueued::Accepted(1)
    );
    assert_eq!(
        b.enqueue("same", req("m", &sha(1))).await.unwrap(),
        Enqueued::Duplicate(1)
    );

    let on_a = claim(&a).await;
    assert_eq!((on_a.job.id, on_a.job.host.as_deref()), (1, Some("host-a")));
    // Host A dies (its heartbeat with it). B takes the job over after the lease.
    drop(on_a);
    drop(a);
    let on_b = claim(&b).await;
    assert_eq!(
        (on_b.job.id, on_b.job.attempts, on_b.job.host.as_deref()),
        (1, 2, Some("host-b"))
    );
    // While B builds, a push to the lane arrives at a third host: B is told to cancel.
    let c = PgQueue::connect(&url, "host-c", lease).await.unwrap();
    let newer = c.enqueue("newer", req("m", &sha(2))).await.unwrap().id();
    let mut sup = on_b.superseded.clone();
    tokio::time::timeout(Duration::from_secs(10), sup.wait_for(|v| *v == Some(newer)))
        .await
        .expect("the build on host B is told to cancel")
        .unwrap();
    // B's heartbeat kept its lease: nobody else took job 1 meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let j1 = c.get(1).await.unwrap().unwrap();
    assert_eq!((j1.attempts, j1.host.as_deref()), (2, Some("host-b")));
    b.finish(
        1,
        Finished {
            outcome: JobOutcome::Cancelled,
            detail: None,
            exit_code: None,
            superseded_by: Some(newer),
        },
    )
    .await
    .unwrap();
    let hosts: Vec<String> = {
        for (q, id) in [(&b, "host-b"), (&c, "host-c")] {
            q.beat(&kiln::server::queue::Host {
                id: id.into(),
                name: "box".into(),
                url: None,
                workers: 2,
                busy: 0,
                version: "t".into(),
                started_at: chrono::Utc::now(),
                seen_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        }
        c.hosts().await.unwrap().into_iter().map(|h| h.id).collect()
    };
    assert_eq!(hosts.len(), 2, "{hosts:?}");
}

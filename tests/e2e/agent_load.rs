//! Bounded load test: ≥1,000 signed deliveries from 50 concurrent clients on loopback; every one
//! is acknowledged 202, stored exactly once, and still there after `kill -9` and a restart.
//!
//! The agent runs with `--workers 0`: deliveries are queued durably (fsync'd) but not built, so
//! this measures the accept path. `KILN_AGENT_LOAD_N` / `KILN_AGENT_LOAD_CLIENTS` change the size;
//! `KILN_AGENT_BENCH=1` also runs a single-client pass and prints both side by side
//! (`bench/agent.sh`). A second test puts the embedded queue beside PostgreSQL with two agents:
//! accepted deliveries/s and job-claim latency (`KILN_AGENT_FLEET_N`, `KILN_AGENT_CLAIMS`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln::server::events::BuildRequest;
use kiln::server::queue::embedded::EmbeddedQueue;
use kiln::server::queue::postgres::PgQueue;
use kiln::server::queue::{Finished, JobOutcome, JobQueue};

use crate::support::agent::*;
use crate::support::postgres::Cluster;

fn env_usize(k: &str, default: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    /// The column header.
    label: String,
    n: usize,
    seconds: f64,
    latencies_ms: Vec<f64>,
}

impl Stats {
    fn per_sec(&self) -> f64 {
        self.n as f64 / self.seconds
    }
    fn pct(&self, p: f64) -> f64 {
        pct(&self.latencies_ms, p)
    }
}

/// The `p` quantile of sorted `v`.
fn pct(v: &[f64], p: f64) -> f64 {
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// Deliver `n` distinct pushes from `clients` concurrent clients, spread over `urls` in turn;
/// returns timing and job ids.
async fn load(urls: &[String], n: usize, clients: usize, tag: &str) -> (Stats, Vec<u64>) {
    // Payloads are built and signed before the clock starts: we measure the agent.
    let bodies: Arc<Vec<(String, Vec<u8>, String)>> = Arc::new(
        (0..n)
            .map(|i| {
                let p = push(&format!("load/{i}"), &format!("{:040x}", i + 1));
                let body = serde_json::to_vec(&p).unwrap();
                let sig = sign(SECRET, &body);
                (format!("{tag}-{i}"), body, sig)
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for k in 0..clients {
        let (bodies, next, url) = (bodies.clone(), next.clone(), urls[k % urls.len()].clone());
        set.spawn(async move {
            let client = api_client();
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= bodies.len() {
                    return out;
                }
                let (delivery, body, sig) = &bodies[i];
                let t = Instant::now();
                let r = deliver_raw(
                    &client,
                    &url,
                    "push",
                    Some(delivery),
                    Some(sig),
                    body.clone(),
                )
                .await;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                out.push((r.status, r.body["job"].as_u64(), ms));
            }
        });
    }
    let mut results = Vec::new();
    while let Some(r) = set.join_next().await {
        results.extend(r.unwrap());
    }
    let seconds = started.elapsed().as_secs_f64();
    let bad: Vec<_> = results.iter().filter(|r| r.0 != 202).collect();
    assert!(
        bad.is_empty(),
        "{} deliveries not accepted, e.g. {:?}",
        bad.len(),
        bad.first()
    );
    let ids: Vec<u64> = results.iter().map(|r| r.1.unwrap()).collect();
    let mut latencies_ms: Vec<f64> = results.iter().map(|r| r.2).collect();
    latencies_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (
        Stats {
            label: format!("{clients} client(s)"),
            n,
            seconds,
            latencies_ms,
        },
        ids,
    )
}

fn start(tmp: &std::path::Path) -> (Agent, std::path::PathBuf) {
    start_with(tmp, "data", &[])
}

/// An agent with `--workers 0` and `extra` flags, data dir `tmp/<name>`.
fn start_with(tmp: &std::path::Path, name: &str, extra: &[&str]) -> (Agent, std::path::PathBuf) {
    let opts = AgentOpts {
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..AgentOpts::default()
    };
    start_unbuilt(tmp, name, &opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_deliveries_from_fifty_clients_none_lost_none_duplicated() {
    let n = env_usize("KILN_AGENT_LOAD_N", 1000).max(1000);
    let clients = env_usize("KILN_AGENT_LOAD_CLIENTS", 50).max(50);
    let tmp = tempfile::tempdir().unwrap();
    let (mut agent, config) = start(tmp.path());
    let (stats, ids) = tokio::time::timeout(
        Duration::from_secs(300),
        load(std::slice::from_ref(&agent.url), n, clients, "load"),
    )
    .await
    .expect("load did not finish within 300 s");
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), n, "every delivery gets its own job");

    let c = api_client();
    let check = |jobs: Vec<serde_json::Value>| {
        assert_eq!(jobs.len(), n, "jobs stored");
        let deliveries: HashSet<String> = jobs
            .iter()
            .map(|j| j["delivery"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(deliveries.len(), n, "each delivery stored once");
        assert!(jobs.iter().all(|j| j["state"] == "queued"));
    };
    check(jobs(&c, &agent).await);

    // Durable: after kill -9 and a restart every accepted job is still there, once.
    agent.kill9();
    let data = agent.data_dir.clone();
    let agent = Agent::start(&data, &config, &AgentOpts::default());
    check(jobs(&c, &agent).await);
    // And a redelivery storm of all of them queues nothing new.
    let mut set = tokio::task::JoinSet::new();
    for k in 0..clients {
        let url = agent.url.clone();
        set.spawn(async move {
            let client = api_client();
            let mut dup = 0;
            for i in (k..n).step_by(clients) {
                let p = push(&format!("load/{i}"), &format!("{:040x}", i + 1));
                if deliver(&client, &url, "push", &format!("load-{i}"), &p)
                    .await
                    .status
                    == 200
                {
                    dup += 1;
                }
            }
            dup
        });
    }
    let mut dups = 0;
    while let Some(d) = set.join_next().await {
        dups += d.unwrap();
    }
    assert_eq!(dups, n, "every redelivery is recognised as a duplicate");
    check(jobs(&c, &agent).await);

    let mut rows = vec![stats];
    if std::env::var("KILN_AGENT_BENCH").is_ok_and(|v| v == "1") {
        let tmp1 = tempfile::tempdir().unwrap();
        let (a1, _) = start(tmp1.path());
        let (s1, _) = load(std::slice::from_ref(&a1.url), n, 1, "seq").await;
        rows.insert(0, s1);
    }
    print_table(
        "kiln agent accept path (loopback, fsync'd queue, --workers 0)",
        &rows,
    );
}

fn print_table(title: &str, rows: &[Stats]) {
    println!();
    println!("{title}");
    print!("{:<22}", "");
    for r in rows {
        print!("{:>16}", r.label);
    }
    if rows.len() == 2 {
        print!("{:>10}", "ratio");
    }
    println!();
    let line = |name: &str, f: &dyn Fn(&Stats) -> f64, prec: usize| {
        print!("{name:<22}");
        for r in rows {
            print!("{:>16.prec$}", f(r));
        }
        if rows.len() == 2 {
            print!("{:>9.2}x", f(&rows[1]) / f(&rows[0]));
        }
        println!();
    };
    line("deliveries", &|r| r.n as f64, 0);
    line("wall seconds", &|r| r.seconds, 2);
    line("accepted/s", &|r| r.per_sec(), 0);
    line("p50 accept ms", &|r| r.pct(0.50), 2);
    line("p99 accept ms", &|r| r.pct(0.99), 2);
    line("max accept ms", &|r| r.pct(1.0), 2);
}

/// Time from a job's enqueue (durable) to its claim by one of 2 idle workers on each of the
/// `hosts` (queue clients, one per agent), for `m` jobs one after another; sorted milliseconds.
async fn claim_latency(hosts: Vec<Arc<dyn JobQueue>>, m: usize) -> Vec<f64> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let mut workers = tokio::task::JoinSet::new();
    for q in &hosts {
        for _ in 0..2 {
            let (q, tx) = (q.clone(), tx.clone());
            workers.spawn(async move {
                while let Some(c) = q.claim().await {
                    let _ = tx.send((c.job.id, Instant::now()));
                    let end = Finished {
                        outcome: JobOutcome::Passed,
                        detail: None,
                        exit_code: Some(0),
                        superseded_by: None,
                    };
                    q.finish(c.job.id, end).await.unwrap();
                }
            });
        }
    }
    let mut ms = Vec::with_capacity(m);
    for i in 0..m {
        let q = &hosts[i % hosts.len()];
        let req = BuildRequest {
            repo: REPO.into(),
            sha: format!("{:040x}", i + 1),
            branch: format!("claim/{i}"),
            lane: format!("{REPO}@claim/{i}"),
            event: "push".into(),
            pr_number: None,
            fork: false,
            author: None,
            seal: None,
        };
        let id = q.enqueue(&format!("claim-{i}"), req).await.unwrap().id();
        let queued = Instant::now();
        let (claimed, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("claimed within 30 s")
            .unwrap();
        assert_eq!(claimed, id, "the one queued job is the one claimed");
        ms.push((at - queued).as_secs_f64() * 1000.0);
    }
    for q in &hosts {
        q.stop();
    }
    while workers.join_next().await.is_some() {}
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    ms
}

/// The embedded queue (one agent) beside PostgreSQL (two agents on one database, deliveries
/// alternating between them): every delivery accepted and stored once in each; accepted/s,
/// accept latency and job-claim latency printed side by side (`bench/agent.sh`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_and_postgres_queues_side_by_side() {
    let n = env_usize("KILN_AGENT_FLEET_N", 300);
    let m = env_usize("KILN_AGENT_CLAIMS", 100);
    let tmp = tempfile::tempdir().unwrap();
    let c = api_client();
    let (embedded, _) = start_with(tmp.path(), "embedded", &[]);
    let (mut e, ids) = load(std::slice::from_ref(&embedded.url), n, 50, "emb").await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), n);
    e.label = "embedded, 1 agent".into();

    let db = Cluster::get().database("bench");
    let flags = ["--queue", db.as_str()];
    let (a, _) = start_with(tmp.path(), "pg-a", &flags);
    let (b, _) = start_with(tmp.path(), "pg-b", &flags);
    let (mut p, ids) = load(&[a.url.clone(), b.url.clone()], n, 50, "pg").await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), n);
    assert_eq!(
        jobs(&c, &b).await.len(),
        n,
        "one queue: every agent sees every job"
    );
    p.label = "postgres, 2 agents".into();

    let e_claims = claim_latency(
        vec![Arc::new(
            EmbeddedQueue::open(&tmp.path().join("claims"), "h").unwrap(),
        )],
        m,
    )
    .await;
    let db = Cluster::get().database("claims");
    let lease = Duration::from_secs(30);
    let mut hosts: Vec<Arc<dyn JobQueue>> = Vec::new();
    for h in ["h1", "h2"] {
        hosts.push(Arc::new(PgQueue::connect(&db, h, lease).await.unwrap()));
    }
    let p_claims = claim_latency(hosts, m).await;

    let rows = [e, p];
    print_table("kiln agent queues side by side (50 clients, --workers 0; claims: 2 idle workers per agent)", &rows);
    let claims = [e_claims, p_claims];
    for (name, q) in [("p50 claim ms", 0.50), ("p99 claim ms", 0.99)] {
        println!(
            "{name:<22}{:>16.2}{:>16.2}{:>9.2}x",
            pct(&claims[0], q),
            pct(&claims[1], q),
            pct(&claims[1], q) / pct(&claims[0], q)
        );
    }
}

/// 300 idle connections and 20 clients sending their request head a byte at a time are held
/// open while 200 signed deliveries arrive: every delivery is accepted, and the agent closes the
/// hostile sockets itself once its header timeout (3 s here) passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_slow_header_clients_do_not_block_deliveries() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let (agent, _) = start_unbuilt(
        tmp.path(),
        "data",
        &AgentOpts {
            env: vec![("KILN_AGENT_HEADER_TIMEOUT".into(), "3".into())],
            ..Default::default()
        },
    );
    let addr = agent.url.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let addr = addr.clone();
        slow.spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            let started = Instant::now();
            for b in head.iter().cycle() {
                if s.write_all(&[*b]).await.is_err() {
                    return started.elapsed(); // the agent hung up on us
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                if started.elapsed() > Duration::from_secs(60) {
                    break;
                }
            }
            started.elapsed()
        });
    }
    let (stats, ids) = tokio::time::timeout(
        Duration::from_secs(120),
        load(std::slice::from_ref(&agent.url), 200, 8, "hostile"),
    )
    .await
    .expect("deliveries did not finish within 120 s while hostile clients held sockets");
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 200, "every delivery accepted and queued once");
    println!(
        "with 300 idle + 20 slow-header sockets open: 200 deliveries in {:.2}s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        stats.seconds,
        stats.pct(0.5),
        stats.pct(0.99),
        stats.pct(1.0)
    );
    // The agent, not the client, ends the hostile connections (EOF or reset), within bounds.
    for mut s in idle {
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("an idle connection was never closed by the agent");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }
    while let Some(held) = slow.join_next().await {
        let held = held.unwrap();
        assert!(
            held < Duration::from_secs(60),
            "a slow-header client was never cut off ({held:?})"
        );
    }
}

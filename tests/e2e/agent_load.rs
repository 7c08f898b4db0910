//! Bounded load test: ≥1,000 signed deliveries from 50 concurrent clients on loopback; every one
//! is acknowledged 202, stored exactly once, and still there after `kill -9` and a restart.
//!
//! The agent runs with `--workers 0`: deliveries are queued durably (fsync'd) but not built, so
//! this measures the accept path. `KILN_AGENT_LOAD_N` / `KILN_AGENT_LOAD_CLIENTS` change the size;
//! `KILN_AGENT_BENCH=1` also runs a single-client pass and prints both side by side
//! (`bench/agent.sh`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::agent::*;

fn env_usize(k: &str, default: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    n: usize,
    clients: usize,
    seconds: f64,
    latencies_ms: Vec<f64>,
}

impl Stats {
    fn per_sec(&self) -> f64 {
        self.n as f64 / self.seconds
    }
    fn pct(&self, p: f64) -> f64 {
        let i = ((self.latencies_ms.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_ms[i]
    }
}

/// Deliver `n` distinct pushes from `clients` concurrent clients; returns timing and job ids.
async fn load(url: &str, n: usize, clients: usize, tag: &str) -> (Stats, Vec<u64>) {
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
    for _ in 0..clients {
        let (bodies, next, url) = (bodies.clone(), next.clone(), url.to_string());
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
            n,
            clients,
            seconds,
            latencies_ms,
        },
        ids,
    )
}

fn start(tmp: &std::path::Path) -> (Agent, std::path::PathBuf) {
    let config = tmp.join("agent.yml");
    write_config(&config, "/nonexistent/never-built", &tmp.join("store"));
    let agent = Agent::start(&tmp.join("data"), &config, &AgentOpts::default());
    (agent, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_deliveries_from_fifty_clients_none_lost_none_duplicated() {
    let n = env_usize("KILN_AGENT_LOAD_N", 1000).max(1000);
    let clients = env_usize("KILN_AGENT_LOAD_CLIENTS", 50).max(50);
    let tmp = tempfile::tempdir().unwrap();
    let (mut agent, config) = start(tmp.path());
    let (stats, ids) = tokio::time::timeout(
        Duration::from_secs(300),
        load(&agent.url, n, clients, "load"),
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
        let (s1, _) = load(&a1.url, n, 1, "seq").await;
        rows.insert(0, s1);
    }
    print_table(&rows);
}

fn print_table(rows: &[Stats]) {
    println!();
    println!("kiln agent accept path (loopback, fsync'd queue, --workers 0)");
    print!("{:<22}", "");
    for r in rows {
        print!("{:>16}", format!("{} client(s)", r.clients));
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

/// 300 idle connections and 20 clients sending their request head a byte at a time are held
/// open while 200 signed deliveries arrive: every delivery is accepted, and the agent closes the
/// hostile sockets itself once its header timeout (3 s here) passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_slow_header_clients_do_not_block_deliveries() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("agent.yml");
    write_config(
        &config,
        "/nonexistent/never-built",
        &tmp.path().join("store"),
    );
    let agent = Agent::start(
        &tmp.path().join("data"),
        &config,
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
        load(&agent.url, 200, 8, "hostile"),
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

//! `kill -9` of the agent mid-build loses no accepted job and runs none twice to completion.
//!
//! Each build's test command appends its commit SHA to a counter file as its very last act, so
//! the file says exactly which builds completed and how often.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::agent::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_build_then_restart_completes_every_accepted_job_exactly_once() {
    let w = World::new();
    let (starts, done) = (w.path("starts"), w.path("done"));
    let command = format!(
        "sha=$(git rev-parse HEAD); echo $sha >> {s}; sleep 4; echo $sha >> {d}",
        s = starts.display(),
        d = done.display()
    );
    // Six branches, so no build supersedes another.
    let shas: Vec<(String, String)> = (0..6)
        .map(|i| {
            let b = format!("crash/{i}");
            let sha = w.project.commit(&b, &command);
            (b, sha)
        })
        .collect();
    let mut agent = w.start(2, &[]);
    let c = w.client.clone();
    let mut ids = Vec::new();
    for (i, (branch, sha)) in shas.iter().enumerate() {
        let r = deliver(
            &c,
            &agent.url,
            "push",
            &format!("crash-{i}"),
            &push(branch, sha),
        )
        .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        ids.push(r.body["job"].as_u64().unwrap());
    }
    // Two builds are in their test command: kill the agent now.
    wait_lines(&starts, 2, Duration::from_secs(120)).await;
    agent.kill9();
    assert!(!done.exists(), "no build finished before the crash");

    let agent = w.start(2, &[]);
    let mut attempts = HashMap::new();
    for &id in &ids {
        let j = wait_job(&c, &agent, id, Duration::from_secs(240), is_done).await;
        assert_eq!(j["outcome"], "passed", "{j:#}");
        attempts.insert(id, j["attempts"].as_u64().unwrap());
    }
    assert!(
        attempts.values().filter(|&&a| a == 2).count() >= 2,
        "the builds interrupted by the crash ran again: {attempts:?}"
    );
    // Late finishers from before the crash would show up here.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let text = std::fs::read_to_string(&done).unwrap();
    let mut completed: Vec<&str> = text.lines().collect();
    completed.sort();
    let mut expected: Vec<&str> = shas.iter().map(|(_, s)| s.as_str()).collect();
    expected.sort();
    assert_eq!(
        completed, expected,
        "every accepted job completed exactly once"
    );
    for &id in &ids {
        assert!(processes_of_job(&agent.data_dir, id).is_empty());
    }
}

/// `kill -9` in the middle of a stream of deliveries: every delivery that got its 202 is there
/// after the restart, exactly once (those cut off mid-request may or may not be).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_delivery_storm_loses_no_acknowledged_delivery() {
    let w = World::new();
    let mut agent = w.start(0, &[]);
    let url = agent.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for k in 0..20 {
        let (url, stop, acks) = (url.clone(), stop.clone(), acks.clone());
        set.spawn(async move {
            let client = api_client_builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut acked = Vec::new();
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let delivery = format!("storm-{k}-{i}");
                let p = push(&format!("storm/{k}/{i}"), &format!("{:040x}", i + 1));
                let body = serde_json::to_vec(&p).unwrap();
                let sig = sign(SECRET, &body);
                let sent = client
                    .post(format!("{url}/webhook"))
                    .header("X-GitHub-Event", "push")
                    .header("X-GitHub-Delivery", &delivery)
                    .header("X-Hub-Signature-256", sig)
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 202 => {
                        acked.push(delivery);
                        acks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(r) => panic!("unexpected answer {}", r.status()),
                    // The agent died under us: this one was never acknowledged.
                    Err(_) => break,
                }
            }
            acked
        });
    }
    // Kill in the middle of the storm: once enough deliveries were acknowledged (however slow
    // the machine), while the senders keep going.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acks.load(std::sync::atomic::Ordering::SeqCst) < 80 {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent acknowledged only {} deliveries in 60 s",
            acks.load(std::sync::atomic::Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    agent.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut acked = Vec::new();
    while let Some(r) = set.join_next().await {
        acked.extend(r.unwrap());
    }
    assert!(
        acked.len() > 50,
        "only {} deliveries before the kill",
        acked.len()
    );

    let agent = w.start(0, &[]);
    let stored = jobs(&w.client, &agent).await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for j in &stored {
        *count
            .entry(j["delivery"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(count.values().all(|&n| n == 1), "a delivery stored twice");
    let lost: Vec<&String> = acked.iter().filter(|d| !count.contains_key(*d)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged deliveries lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    println!(
        "{} acknowledged before kill -9, {} stored after restart",
        acked.len(),
        stored.len()
    );
}

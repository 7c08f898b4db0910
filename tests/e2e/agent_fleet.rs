//! Two `kiln agent` processes on one PostgreSQL queue (a real server on loopback), each with its
//! own data dir and workers, as two hosts of a fleet behind a load balancer would be.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::agent::*;
use crate::support::postgres::Cluster;

/// Deliveries spread over both agents; every job must build exactly once.
const STORM: usize = 200;

struct Fleet {
    w: World,
    agents: Vec<Agent>,
}

impl Fleet {
    fn start(workers: usize) -> Fleet {
        let w = World::new();
        let url = Cluster::get().database("fleet");
        let agents = ["a", "b"]
            .iter()
            .map(|name| {
                Agent::start(
                    &w.path(name),
                    &w.config,
                    &AgentOpts {
                        workers,
                        extra: vec![
                            "--queue".into(),
                            url.clone(),
                            "--lease".into(),
                            "10s".into(),
                        ],
                        ..Default::default()
                    },
                )
            })
            .collect();
        Fleet { w, agents }
    }

    /// The index of the agent whose id is `host`.
    fn agent_of(&self, host: &str) -> usize {
        self.agents
            .iter()
            .position(|a| {
                std::fs::read_to_string(a.data_dir.join("agent-id"))
                    .unwrap()
                    .trim()
                    == host
            })
            .unwrap_or_else(|| panic!("no agent {host}"))
    }
}

/// Wait until job `id` is running; its host's agent index.
async fn running_on(f: &Fleet, alive: &Agent, id: u64) -> usize {
    let j = wait_job(&f.w.client, alive, id, Duration::from_secs(120), |j| {
        j["state"] == "running"
    })
    .await;
    f.agent_of(j["host"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_agents_on_postgres_build_each_job_once_and_take_over_a_dead_hosts_job() {
    let mut f = Fleet::start(2);
    let c = f.w.client.clone();
    let done = f.w.path("done");
    let quick = format!("echo $(git rev-parse HEAD) >> {}", done.display());

    // A redelivery that reaches both agents is queued once.
    let sha = f.w.project.commit("dup", &quick);
    let dup = push("dup", &sha);
    let (r1, r2) = tokio::join!(
        deliver(&c, &f.agents[0].url, "push", "dup-1", &dup),
        deliver(&c, &f.agents[1].url, "push", "dup-1", &dup),
    );
    let mut statuses = [r1.status, r2.status];
    statuses.sort();
    assert_eq!(statuses, [200, 202], "{:?} {:?}", r1.body, r2.body);
    assert_eq!(r1.body["job"], r2.body["job"]);

    // A storm spread over both agents: every job runs exactly once, on one host or the other.
    let shas: Vec<String> = (0..STORM)
        .map(|i| f.w.project.commit(&format!("storm/{i}"), &quick))
        .collect();
    let mut ids = Vec::new();
    for chunk in shas.chunks(20).enumerate().map(|(k, s)| (k * 20, s)) {
        let sends = chunk.1.iter().enumerate().map(|(j, sha)| {
            let i = chunk.0 + j;
            let url = f.agents[i % 2].url.clone();
            let c = c.clone();
            let body = push(&format!("storm/{i}"), sha);
            async move { deliver(&c, &url, "push", &format!("storm-{i}"), &body).await }
        });
        for r in futures::future::join_all(sends).await {
            assert_eq!(r.status, 202, "{:?}", r.body);
            ids.push(r.body["job"].as_u64().unwrap());
        }
    }
    let mut hosts: HashMap<String, usize> = HashMap::new();
    for &id in &ids {
        let j = wait_job(
            &c,
            &f.agents[id as usize % 2],
            id,
            Duration::from_secs(900),
            is_done,
        )
        .await;
        assert_eq!(j["outcome"], "passed", "{j:#}");
        *hosts
            .entry(j["host"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let text = std::fs::read_to_string(&done).unwrap();
    let mut built: Vec<&str> = text.lines().collect();
    built.sort();
    let mut want: Vec<&str> = shas
        .iter()
        .map(String::as_str)
        .chain([sha.as_str()])
        .collect();
    want.sort();
    assert_eq!(built, want, "every job built exactly once");
    assert_eq!(hosts.len(), 2, "both hosts built: {hosts:?}");

    // A newer push received by one agent cancels the build running on the other.
    let starts = f.w.path("starts");
    let slow = format!("echo go >> {}; sleep 60", starts.display());
    let old = f.w.project.commit("slow", &slow);
    let r = deliver(&c, &f.agents[0].url, "push", "slow-1", &push("slow", &old)).await;
    let old_id = r.body["job"].as_u64().unwrap();
    let runner = running_on(&f, &f.agents[0], old_id).await;
    wait_lines(&starts, 1, Duration::from_secs(120)).await;
    let new = f.w.project.commit("slow", &quick);
    let other = 1 - runner;
    let r = deliver(
        &c,
        &f.agents[other].url,
        "push",
        "slow-2",
        &push("slow", &new),
    )
    .await;
    let new_id = r.body["job"].as_u64().unwrap();
    let j = wait_job(
        &c,
        &f.agents[runner],
        old_id,
        Duration::from_secs(30),
        is_done,
    )
    .await;
    assert_eq!(
        (j["outcome"].as_str(), j["superseded_by"].as_u64()),
        (Some("cancelled"), Some(new_id)),
        "{j:#}"
    );
    wait_job(
        &c,
        &f.agents[other],
        new_id,
        Duration::from_secs(120),
        is_done,
    )
    .await;

    // kill -9 of the host running a build: the other host finishes it once the lease is over.
    let finished = f.w.path("finished");
    let victim_cmd = format!(
        "echo go >> {s}; sleep 5; echo $(git rev-parse HEAD) >> {d}",
        s = starts.display(),
        d = finished.display()
    );
    let victim = f.w.project.commit("victim", &victim_cmd);
    let r = deliver(
        &c,
        &f.agents[0].url,
        "push",
        "victim-1",
        &push("victim", &victim),
    )
    .await;
    let id = r.body["job"].as_u64().unwrap();
    let dead = running_on(&f, &f.agents[0], id).await;
    wait_lines(&starts, 2, Duration::from_secs(120)).await;
    // The host dies: the agent and the build's processes with it.
    let data_dir = f.agents[dead].data_dir.clone();
    f.agents[dead].kill9();
    for pid in processes_of_job(&data_dir, id) {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let alive = &f.agents[1 - dead];
    let j = wait_job(&c, alive, id, Duration::from_secs(180), is_done).await;
    assert_eq!(j["outcome"], "passed", "{j:#}");
    assert_eq!(j["attempts"], 2, "{j:#}");
    assert_eq!(f.agent_of(j["host"].as_str().unwrap()), 1 - dead);
    assert_eq!(
        std::fs::read_to_string(&finished)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        vec![victim.as_str()]
    );
}

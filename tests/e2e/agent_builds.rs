//! `kiln agent` building for real: each job runs `kiln run` on a local git repository (a trivial
//! project: one vendored dependency, a shell test command) with a `file://` store.

use std::time::Duration;

use crate::support::agent::*;

const BUILD: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_pull_requests_build_with_the_right_environment() {
    let w = World::new();
    w.project.with_dependency();
    // Into the job's log: a fork's build is sandboxed and can write nothing outside its work dir.
    let record = "echo \"ENV|$GITHUB_REPOSITORY|${GITHUB_TOKEN:-none}|${KILN_NO_SAVE:-0}|${KILN_PR_NUMBER:-none}|${KILN_WEBHOOK_SECRET:-unset}|$(git rev-parse HEAD)\"";
    let main_sha = w.project.commit("main", record);
    let pr_sha = w.project.commit("feature/tokenizer", record);
    let fork_sha = w.project.commit("fork-head", record);
    let failing = w
        .project
        .commit("broken", "echo 'assert 1 == 2' >&2; exit 1");
    // The agent's own GITHUB_TOKEN must not leak into builds either (fork builds get none).
    let agent = Agent::start(
        &w.path("data"),
        &w.config,
        &AgentOpts {
            workers: 1,
            env: vec![("GITHUB_TOKEN".into(), "agent-own-token".into())],
            ..Default::default()
        },
    );
    let (c, url) = (&w.client, &agent.url);

    let push_id = deliver(c, url, "push", "b-1", &push("main", &main_sha))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    let pr = pull_request("pull_request-opened.json", &pr_sha);
    let pr_id = deliver(c, url, "pull_request", "b-2", &pr).await.body["job"]
        .as_u64()
        .unwrap();
    let fork = pull_request("pull_request-synchronize-fork.json", &fork_sha);
    let fork_id = deliver(c, url, "pull_request", "b-3", &fork).await.body["job"]
        .as_u64()
        .unwrap();
    let fail_id = deliver(c, url, "push", "b-4", &push("broken", &failing))
        .await
        .body["job"]
        .as_u64()
        .unwrap();

    for id in [push_id, pr_id, fork_id] {
        let j = wait_job(c, &agent, id, BUILD, is_done).await;
        assert_eq!(j["outcome"], "passed", "{j:#}");
        assert_eq!(j["exit_code"], 0);
        assert_eq!(j["attempts"], 1);
        assert_eq!(
            j["summary"]["commit"], j["sha"],
            "summary JSON served with the job"
        );
    }
    let j = get_json(c, &format!("{url}/jobs/{fork_id}")).await;
    let save = j["summary"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "save")
        .unwrap()
        .clone();
    assert_eq!(save["outcome"], "skipped", "fork builds never save: {save}");
    let j = wait_job(c, &agent, fail_id, BUILD, is_done).await;
    assert_eq!(j["outcome"], "failed", "{j:#}");
    assert_eq!(j["exit_code"], 1);

    let mut lines = String::new();
    for id in [push_id, pr_id, fork_id] {
        let log = c.get(format!("{url}/jobs/{id}/log")).send().await.unwrap();
        lines.push_str(&log.text().await.unwrap());
    }
    let line_for = |sha: &str| -> Vec<String> {
        let l = lines
            .lines()
            .find(|l| l.starts_with("ENV|") && l.ends_with(sha))
            .unwrap_or_else(|| panic!("no build of {sha}: {lines}"));
        l.split('|').skip(1).map(String::from).collect()
    };
    // The build (kiln run) holds the token for its reports; the project's code never sees it.
    assert_eq!(
        line_for(&main_sha),
        [REPO, "none", "0", "none", "unset", &main_sha]
    );
    assert_eq!(
        line_for(&pr_sha),
        [REPO, "none", "0", "42", "unset", &pr_sha]
    );
    // Fork code runs without the token and never saves caches.
    assert_eq!(
        line_for(&fork_sha),
        [REPO, "none", "1", "43", "unset", &fork_sha]
    );

    // The log is kept and served; the work dir is gone.
    let log = c
        .get(format!("{url}/jobs/{fail_id}/log"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(log.contains("assert 1 == 2"), "{log}");
    assert!(log.contains(&format!("=== job {fail_id}: failed")), "{log}");
    assert!(!agent
        .data_dir
        .join("work")
        .join(fail_id.to_string())
        .exists());
    assert!(!log.contains("ghs_testtoken"));
    assert!(!log.contains('\x1b'), "build logs are plain text: {log}");

    let m = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "kiln_agent_jobs_total{outcome=\"passed\"} 3",
        "kiln_agent_jobs_total{outcome=\"failed\"} 1",
        "kiln_agent_stage_seconds_count{stage=\"bootstrap\"} 4",
        "kiln_agent_cache_restores_total{cache=\"wheelhouse\",result=\"miss\"} 1",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?}:\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_push_cancels_the_running_build_of_its_branch() {
    let w = World::new();
    let (starts, done) = (w.path("starts"), w.path("done"));
    let old = w.project.commit(
        "main",
        &format!(
            "echo old >> {s}; sleep 30; echo old >> {d}",
            s = starts.display(),
            d = done.display()
        ),
    );
    let agent = w.start(2, &[]);
    let (c, url) = (&w.client, &agent.url);
    let old_id = deliver(c, url, "push", "s-1", &push("main", &old))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    wait_lines(&starts, 1, BUILD).await;
    assert!(!processes_of_job(&agent.data_dir, old_id).is_empty());

    let new = w
        .project
        .commit("main", &format!("echo new >> {}", done.display()));
    let new_id = deliver(c, url, "push", "s-2", &push("main", &new))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    let j = wait_job(c, &agent, old_id, Duration::from_secs(30), is_done).await;
    assert_eq!(j["outcome"], "cancelled", "{j:#}");
    assert_eq!(j["superseded_by"], new_id);
    let j = wait_job(c, &agent, new_id, BUILD, is_done).await;
    assert_eq!(j["outcome"], "passed", "{j:#}");
    // The old build's whole process tree is gone; its test command never finished.
    assert!(processes_of_job(&agent.data_dir, old_id).is_empty());
    assert_eq!(std::fs::read_to_string(&done).unwrap(), "new\n");
    let log = c
        .get(format!("{url}/jobs/{old_id}/log"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        log.contains(&format!("cancelled (superseded by job {new_id})")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_over_its_timeout_is_killed() {
    let w = World::new();
    let survived = w.path("survived");
    let sha = w
        .project
        .commit("main", &format!("sleep 25; touch {}", survived.display()));
    let agent = w.start(1, &["--job-timeout", "8s"]);
    let (c, url) = (&w.client, &agent.url);
    let id = deliver(c, url, "push", "t-1", &push("main", &sha))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    let j = wait_job(c, &agent, id, Duration::from_secs(60), is_done).await;
    assert_eq!(j["outcome"], "timed_out", "{j:#}");
    assert_eq!(j["detail"], "timed out after 8s");
    assert!(
        processes_of_job(&agent.data_dir, id).is_empty(),
        "build processes outlived the timeout"
    );
    let m = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("kiln_agent_jobs_total{outcome=\"timed_out\"} 1"),
        "{m}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!survived.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_work_and_lets_the_running_build_finish() {
    let w = World::new();
    let (starts, done) = (w.path("starts"), w.path("done"));
    let sha = w.project.commit(
        "main",
        &format!(
            "echo go >> {s}; sleep 4; echo ok >> {d}",
            s = starts.display(),
            d = done.display()
        ),
    );
    let mut agent = w.start(1, &["--grace", "2m"]);
    let (c, url) = (w.client.clone(), agent.url.clone());
    let id = deliver(&c, &url, "push", "g-1", &push("main", &sha))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    wait_lines(&starts, 1, BUILD).await;
    agent.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = deliver(&c, &url, "push", "g-2", &push("other", &sha)).await;
    assert_eq!(
        r.status, 503,
        "draining agents refuse deliveries: {:?}",
        r.body
    );
    let h = c.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(h.status().as_u16(), 503);
    assert_eq!(agent.wait_exit(Duration::from_secs(60)), Some(0));
    assert_eq!(std::fs::read_to_string(&done).unwrap(), "ok\n");
    // After a restart the job is done, not re-run.
    let agent = w.start(0, &[]);
    let j = get_json(&c, &format!("{}/jobs/{id}", agent.url)).await;
    assert_eq!(
        (j["state"].as_str(), j["outcome"].as_str()),
        (Some("done"), Some("passed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_still_running_when_grace_ends_runs_again_after_restart() {
    let w = World::new();
    let (starts, done) = (w.path("starts"), w.path("done"));
    let sha = w.project.commit(
        "main",
        &format!(
            "echo go >> {s}; sleep 20; echo ok >> {d}",
            s = starts.display(),
            d = done.display()
        ),
    );
    let mut agent = w.start(1, &["--grace", "1s"]);
    let c = w.client.clone();
    let id = deliver(&c, &agent.url, "push", "k-1", &push("main", &sha))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    wait_lines(&starts, 1, BUILD).await;
    agent.sigterm();
    assert_eq!(agent.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(processes_of_job(&agent.data_dir, id).is_empty());
    let agent = w.start(0, &[]);
    let j = get_json(&c, &format!("{}/jobs/{id}", agent.url)).await;
    assert_eq!(j["state"], "queued", "{j:#}");
    assert!(!done.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_finished_jobs_are_pruned_except_each_branchs_newest() {
    let w = World::new();
    let first = w.project.commit("main", "true");
    let second = w.project.commit("main", "true --again");
    let mut agent = w.start(1, &[]);
    let c = w.client.clone();
    let a = deliver(&c, &agent.url, "push", "r-1", &push("main", &first))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    wait_job(&c, &agent, a, BUILD, is_done).await;
    let b = deliver(&c, &agent.url, "push", "r-2", &push("main", &second))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    wait_job(&c, &agent, b, BUILD, is_done).await;
    let data = agent.data_dir.clone();
    assert!(data.join(format!("logs/{a}.log")).exists());
    agent.sigterm();
    agent.wait_exit(Duration::from_secs(30));

    let agent = w.start(0, &["--retain", "1ms"]);
    let r = c
        .get(format!("{}/jobs/{a}", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "job {a} pruned");
    for p in [
        format!("queue/{a:012}.json"),
        format!("logs/{a}.log"),
        format!("summaries/{a}.json"),
    ] {
        assert!(!data.join(&p).exists(), "{p} left behind");
    }
    let j = get_json(&c, &format!("{}/jobs/{b}", agent.url)).await;
    assert_eq!(
        j["outcome"], "passed",
        "the branch's newest job is kept: {j:#}"
    );
    assert!(data.join(format!("logs/{b}.log")).exists());
}

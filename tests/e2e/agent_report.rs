//! Builds run by `kiln agent` report to GitHub (faked with wiremock) as the repository's token,
//! on the right commit, linking to the agent's job log; fork pull requests report nothing (no
//! token).

use std::time::Duration;

use crate::support::agent::*;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_report_status_and_check_run_on_the_built_commit() {
    let w = World::new();
    let yml = "test:\n  command: \"true\"\nreport:\n  mode: all\n";
    let main_sha = w.project.commit_yml("main", yml);
    let pr_sha = w
        .project
        .commit_yml("feature/tokenizer", &format!("{yml}# pr\n"));
    let fork_sha = w.project.commit_yml("fork-head", &format!("{yml}# fork\n"));
    let mut config = std::fs::read_to_string(&w.config).unwrap();
    config.insert_str(0, "public_url: http://ci.example.test/\n");
    std::fs::write(&w.config, config).unwrap();

    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/octo-org/hello-kiln/check-runs$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"id": 77})))
        .mount(&github)
        .await;
    mount_github_fallbacks(&github, 1).await;
    let agent = Agent::start(
        &w.path("data"),
        &w.config,
        &AgentOpts {
            workers: 1,
            env: vec![("GITHUB_API_URL".into(), github.uri())],
            ..Default::default()
        },
    );
    let c = &w.client;
    let mut ids = Vec::new();
    for (event, delivery, payload) in [
        ("push", "r-1", push("main", &main_sha)),
        (
            "pull_request",
            "r-2",
            pull_request("pull_request-opened.json", &pr_sha),
        ),
        (
            "pull_request",
            "r-3",
            pull_request("pull_request-synchronize-fork.json", &fork_sha),
        ),
    ] {
        let r = deliver(c, &agent.url, event, delivery, &payload).await;
        ids.push(r.body["job"].as_u64().unwrap());
    }
    for &id in &ids {
        let j = wait_job(c, &agent, id, Duration::from_secs(120), is_done).await;
        assert_eq!(j["outcome"], "passed", "{j:#}");
    }

    let requests = github.received_requests().await.unwrap();
    let statuses: Vec<(String, serde_json::Value)> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path().contains("/statuses/"))
        .map(|r| {
            assert_eq!(
                r.headers.get("authorization").unwrap().to_str().unwrap(),
                "Bearer ghs_testtoken",
                "reports use the repository's token"
            );
            (
                r.url.path().to_string(),
                serde_json::from_slice(&r.body).unwrap(),
            )
        })
        .collect();
    let on = |sha: &str| {
        statuses
            .iter()
            .find(|(p, _)| p.ends_with(sha))
            .map(|(_, b)| b.clone())
    };
    let main_status =
        on(&main_sha).unwrap_or_else(|| panic!("no status for the push: {statuses:?}"));
    assert_eq!(main_status["state"], "success");
    assert_eq!(
        main_status["target_url"],
        format!("http://ci.example.test/builds/{}", ids[0]),
        "statuses link to the build page"
    );
    assert!(
        on(&pr_sha).is_some(),
        "the PR's head commit gets its status: {statuses:?}"
    );
    assert!(
        on(&fork_sha).is_none(),
        "fork builds have no token, so report nothing"
    );
    let checks = requests
        .iter()
        .filter(|r| r.url.path().ends_with("/check-runs"))
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["head_sha"].clone())
        .collect::<Vec<_>>();
    assert!(checks.contains(&main_sha.clone().into()), "{checks:?}");
    assert!(checks.contains(&pr_sha.clone().into()), "{checks:?}");
    assert!(requests
        .iter()
        .all(|r| r.url.path().starts_with("/repos/octo-org/hello-kiln/")));
}

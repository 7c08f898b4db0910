//! `kiln agent --poll`: without webhooks (no secret), new branch heads found through GitHub's
//! branches API (faked with wiremock) are built, each once.

use std::time::Duration;

use crate::support::agent::*;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_new_heads_are_built_once() {
    let w = World::new();
    let done = w.path("done");
    let sha = w
        .project
        .commit("main", &format!("git rev-parse HEAD >> {}", done.display()));
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/branches")))
        .and(header("authorization", "Bearer ghs_testtoken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
            {"name": "main", "commit": {"sha": sha, "url": "https://api.github.com/repos/x/y/commits/z"}, "protected": true},
        ])))
        .mount(&github)
        .await;
    let data = w.path("data");
    let mut cmd_env = vec![("GITHUB_API_URL".to_string(), github.uri())];
    // Webhooks off: no secret at all.
    cmd_env.push(("KILN_WEBHOOK_SECRET".to_string(), String::new()));
    let agent = Agent::start(
        &data,
        &w.config,
        &AgentOpts {
            workers: 1,
            extra: vec!["--poll".into(), "1s".into()],
            env: cmd_env,
        },
    );
    let c = &w.client;
    let j = wait_job(c, &agent, 1, Duration::from_secs(120), is_done).await;
    assert_eq!(
        (j["event"].as_str(), j["outcome"].as_str()),
        (Some("poll"), Some("passed")),
        "{j:#}"
    );
    assert_eq!(j["sha"], sha.as_str());
    // Several more polls see the same head: nothing new.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(jobs(c, &agent).await.len(), 1);
    assert!(github.received_requests().await.unwrap().len() >= 3);
    assert_eq!(std::fs::read_to_string(&done).unwrap().trim(), sha);
    // Webhooks are off without a secret.
    let r = deliver(c, &agent.url, "push", "p-1", &push("main", &sha)).await;
    assert_eq!(r.status, 503);
}

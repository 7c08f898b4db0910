//! What the project's code cannot reach on the agent's host, whatever it tries: the secret files
//! agent.yml names (wherever they live), the host's unix sockets (path and abstract, with and
//! without the network), and the fleet queue's trust (a job row written straight into
//! PostgreSQL is not built as trusted).

use std::path::Path;
use std::time::Duration;

use crate::support::agent::*;

const BUILD: Duration = Duration::from_secs(240);

async fn job_log(c: &reqwest::Client, agent: &Agent, id: u64) -> String {
    c.get(format!("{}/jobs/{id}/log", agent.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Deliver a fork's pull request of `sha`; wait for its job to end; (job, log).
async fn fork_build(agent: &Agent, sha: &str, delivery: &str) -> (serde_json::Value, String) {
    let c = api_client();
    let fork = pull_request("pull_request-synchronize-fork.json", sha);
    let id = deliver(&c, &agent.url, "pull_request", delivery, &fork)
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    let j = wait_job(&c, agent, id, BUILD, is_done).await;
    let log = job_log(&c, agent, id).await;
    (j, log)
}

fn rsa_key(path: &Path) {
    let ok = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(path)
        .arg("2048")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_key_files_outside_etc_kiln_are_unreadable_by_a_fork_s_tests() {
    // Not under /tmp: every sandbox gets a private /tmp anyway.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let project = Project::new(tmp.path());
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let web_token = secrets.join("web.token");
    std::fs::write(&web_token, "web-token-value-3f9a\n").unwrap();
    let key = secrets.join("app.pem");
    rsa_key(&key);
    let config = tmp.path().join("agent.yml");
    std::fs::write(
        &config,
        format!(
            "web:\n  token_file: {web}\ndefaults:\n  store: file://{store}\nrepositories:\n  - name: {REPO}\n    clone_url: {url}\n    token_env: KILN_TEST_REPO_TOKEN\n    branches: ['*']\n  - name: octo-org/other\n    github_app:\n      app_id: 7\n      installation_id: 8\n      private_key_file: {key}\n",
            web = web_token.display(),
            store = tmp.path().join("store").display(),
            url = project.dir.display(),
            key = key.display(),
        ),
    )
    .unwrap();
    let agent = Agent::start(
        &tmp.path().join("data"),
        &config,
        &AgentOpts {
            workers: 1,
            ..Default::default()
        },
    );
    let script = format!(
        "for f in {web} {key}; do cat \"$f\" && echo \"opened $f\" | tr a-z A-Z; done; echo probe-done",
        web = web_token.display(),
        key = key.display()
    );
    let sha = project.commit("fork-head", &script);
    let (j, log) = fork_build(&agent, &sha, "secret-files-1").await;
    assert_eq!(j["outcome"], "passed", "{j:#}\n{log}");
    assert!(log.contains("probe-done"), "{log}");
    assert!(
        !log.contains("web-token-value-3f9a"),
        "web.token_file leaked:\n{log}"
    );
    assert!(
        !log.contains("PRIVATE KEY"),
        "the App's private key leaked:\n{log}"
    );
    assert!(!log.contains("OPENED"), "{log}");
}

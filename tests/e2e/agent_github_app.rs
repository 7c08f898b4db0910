//! An agent configured with a GitHub App (GitHub faked with wiremock): it signs a JWT with the
//! App's key, exchanges it for an installation token scoped to the build's repository, reuses
//! that token for the next build, and the build creates its check run (with the link to the
//! build page) using the installation token, not a personal token.

use std::time::Duration;

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::agent::*;

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_builds_report_check_runs_with_an_installation_token_of_the_app() {
    let w = World::new();
    let key = w.path("app.pem");
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        key.to_str().unwrap(),
        "2048",
    ]);
    let public = openssl(&["rsa", "-in", key.to_str().unwrap(), "-pubout"]);
    let config = std::fs::read_to_string(&w.config)
        .unwrap()
        .replace("    token_env: KILN_TEST_REPO_TOKEN\n", "")
        .replace(
            "defaults:\n",
            &format!(
                "public_url: http://ci.example.test\ndefaults:\n  github_app:\n    app_id: 31337\n    private_key_file: {}\n",
                key.display()
            ),
        );
    std::fs::write(&w.config, config).unwrap();
    let yml = "test:\n  command: \"true\"\nreport:\n  mode: all\n";
    let first = w.project.commit_yml("main", yml);
    let second = w.project.commit_yml("main", &format!("{yml}# again\n"));

    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octo-org/hello-kiln/installation"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": 45678901})))
        .mount(&github)
        .await;
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    Mock::given(method("POST"))
        .and(path("/app/installations/45678901/access_tokens"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            serde_json::json!({"token": "ghs_installation_31337", "expires_at": expires.to_rfc3339()}),
        ))
        .mount(&github)
        .await;
    mount_github_fallbacks(&github, 5).await;
    let agent = Agent::start(
        &w.path("data"),
        &w.config,
        &AgentOpts {
            workers: 1,
            env: vec![("GITHUB_API_URL".into(), github.uri())],
            ..Default::default()
        },
    );
    let mut ids = Vec::new();
    for (i, sha) in [&first, &second].into_iter().enumerate() {
        let r = deliver(
            &w.client,
            &agent.url,
            "push",
            &format!("app-{i}"),
            &push(&format!("b{i}"), sha),
        )
        .await;
        let id = r.body["job"].as_u64().unwrap();
        let j = wait_job(&w.client, &agent, id, Duration::from_secs(180), is_done).await;
        assert_eq!(j["outcome"], "passed", "{j:#}");
        ids.push(id);
    }

    let requests = github.received_requests().await.unwrap();
    let exchanges: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path().ends_with("/access_tokens"))
        .collect();
    assert_eq!(
        exchanges.len(),
        1,
        "the installation token is reused by the second build"
    );
    let body: serde_json::Value = serde_json::from_slice(&exchanges[0].body).unwrap();
    assert_eq!(
        body["repositories"],
        serde_json::json!(["hello-kiln"]),
        "scoped to the build's repository"
    );
    let jwt = exchanges[0]
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&["31337"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        jwt.strip_prefix("Bearer ").unwrap(),
        &jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap(),
        &v,
    )
    .expect("the JWT verifies with the App's public key");
    let (iat, exp) = (
        claims.claims["iat"].as_i64().unwrap(),
        claims.claims["exp"].as_i64().unwrap(),
    );
    assert!(
        exp - iat <= 600 && exp > chrono::Utc::now().timestamp(),
        "{:?}",
        claims.claims
    );

    let checks: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path() == "/repos/octo-org/hello-kiln/check-runs")
        .collect();
    assert_eq!(checks.len(), 2, "one check run per build");
    for (check, (sha, id)) in checks.iter().zip([&first, &second].into_iter().zip(&ids)) {
        assert_eq!(
            check
                .headers
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap(),
            "Bearer ghs_installation_31337"
        );
        let b: serde_json::Value = serde_json::from_slice(&check.body).unwrap();
        assert_eq!(b["head_sha"], sha.as_str());
        assert_eq!(
            b["details_url"],
            format!("http://ci.example.test/builds/{id}"),
            "links to the build page"
        );
    }
}

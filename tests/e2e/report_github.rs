//! The GitHub client against a fake GitHub (wiremock): each request's method, path and JSON
//! body, batching of annotations, in-place comment updates, rate limits and 5xx retries.

use std::time::{Duration, Instant};

use kiln::report::github::{Annotation, CheckRun, GitHub, Retry, MARKER};
use serde_json::{json, Value};
use wiremock::matchers::{bearer_token, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "ghs_s3cr3t-t0ken";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn client(server: &MockServer) -> GitHub {
    let mut g = GitHub::new(&server.uri(), TOKEN, "octo/app").unwrap();
    g.retry = Retry {
        attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(5),
    };
    g
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

fn body(r: &Request) -> Value {
    r.body_json().unwrap()
}

#[tokio::test]
async fn status_carries_state_context_and_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/octo/app/statuses/{SHA}")))
        .and(bearer_token(TOKEN))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .expect(1)
        .mount(&server)
        .await;
    let gh = client(&server);
    let long = "x".repeat(300);
    gh.create_status(
        SHA,
        "failure",
        &long,
        "kiln",
        Some("https://ci.example/run/7"),
    )
    .await
    .unwrap();
    let reqs = requests(&server).await;
    let b = body(&reqs[0]);
    assert_eq!(b["state"], "failure");
    assert_eq!(b["context"], "kiln");
    assert_eq!(b["target_url"], "https://ci.example/run/7");
    assert_eq!(b["description"].as_str().unwrap().chars().count(), 140);
    assert_eq!(
        reqs[0].headers.get("x-github-api-version").unwrap(),
        "2022-11-28"
    );
}

fn annotation(i: usize) -> Annotation {
    Annotation {
        path: format!("tests/test_{i}.py"),
        start_line: i as u32 + 1,
        end_line: i as u32 + 1,
        annotation_level: "failure",
        title: format!("test_{i}"),
        message: format!("assert {i} == 0"),
    }
}

#[tokio::test]
async fn check_run_batches_annotations_fifty_per_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/octo/app/check-runs"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 4242})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo/app/check-runs/4242"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 4242})))
        .expect(2)
        .mount(&server)
        .await;
    let run = CheckRun {
        name: "kiln".into(),
        head_sha: SHA.into(),
        conclusion: "failure".into(),
        title: "0 passed, 120 failed, 0 skipped".into(),
        summary: "**FAILED**".into(),
        details_url: None,
        annotations: (0..120).map(annotation).collect(),
    };
    let id = client(&server).create_check_run(&run).await.unwrap();
    assert_eq!(id, 4242);
    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 3);
    let first = body(&reqs[0]);
    assert_eq!(reqs[0].method.as_str(), "POST");
    assert_eq!(first["head_sha"], SHA);
    assert_eq!(first["status"], "completed");
    assert_eq!(first["conclusion"], "failure");
    assert_eq!(first["output"]["title"], "0 passed, 120 failed, 0 skipped");
    let a = first["output"]["annotations"].as_array().unwrap();
    assert_eq!(a.len(), 50);
    assert_eq!(a[0]["path"], "tests/test_0.py");
    assert_eq!(a[0]["annotation_level"], "failure");
    assert_eq!(a[49]["start_line"], 50);
    let sizes: Vec<usize> = reqs[1..]
        .iter()
        .map(|r| {
            assert_eq!(r.method.as_str(), "PATCH");
            body(r)["output"]["annotations"].as_array().unwrap().len()
        })
        .collect();
    assert_eq!(sizes, vec![50, 20]);
    assert_eq!(
        body(&reqs[2])["output"]["annotations"][19]["path"],
        "tests/test_119.py"
    );
}

#[tokio::test]
async fn pr_comment_is_created_then_updated_in_place() {
    let server = MockServer::start().await;
    // First build: no comment of ours yet (only someone else's).
    Mock::given(method("GET"))
        .and(path("/repos/octo/app/issues/7/comments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 1, "body": "LGTM"}])))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/octo/app/issues/7/comments"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 99})))
        .expect(1)
        .mount(&server)
        .await;
    // Later builds: ours is there.
    Mock::given(method("GET"))
        .and(path("/repos/octo/app/issues/7/comments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 1, "body": "LGTM"},
            {"id": 99, "body": format!("{MARKER}\nold")}
        ])))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo/app/issues/comments/99"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 99})))
        .expect(1)
        .mount(&server)
        .await;

    let gh = client(&server);
    let c = gh
        .upsert_pr_comment(7, "@bob @carol: broken")
        .await
        .unwrap();
    assert_eq!((c.id, c.updated), (99, false));
    let c = gh.upsert_pr_comment(7, "@bob @carol: fixed").await.unwrap();
    assert_eq!((c.id, c.updated), (99, true));

    let reqs = requests(&server).await;
    let summary: Vec<String> = reqs
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert_eq!(
        summary,
        vec![
            "GET /repos/octo/app/issues/7/comments",
            "POST /repos/octo/app/issues/7/comments",
            "GET /repos/octo/app/issues/7/comments",
            "PATCH /repos/octo/app/issues/comments/99",
        ]
    );
    let posted = body(&reqs[1])["body"].as_str().unwrap().to_string();
    assert!(posted.starts_with(MARKER), "{posted}");
    assert!(posted.contains("@bob @carol: broken"));
    assert!(body(&reqs[3])["body"]
        .as_str()
        .unwrap()
        .contains("@bob @carol: fixed"));
}

#[tokio::test]
async fn commit_comment_on_push_builds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/octo/app/commits/{SHA}/comments")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/octo/app/commits/{SHA}/comments")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 5})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server)
        .upsert_commit_comment(SHA, "@dan: broken")
        .await
        .unwrap();
    assert_eq!(c.id, 5);
}

#[tokio::test]
async fn rate_limited_403_waits_for_retry_after_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/octo/app/statuses/{SHA}")))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"message": "You have exceeded a secondary rate limit"})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    // Primary rate limit: remaining 0, reset already passed → wait at least a second.
    let reset = chrono::Utc::now().timestamp() - 5;
    Mock::given(method("POST"))
        .and(path(format!("/repos/octo/app/statuses/{SHA}")))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(json!({"message": "API rate limit exceeded"})),
        )
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/octo/app/statuses/{SHA}")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .with_priority(3)
        .mount(&server)
        .await;
    let started = Instant::now();
    client(&server)
        .create_status(SHA, "success", "ok", "kiln", None)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(requests(&server).await.len(), 3);
    assert!(waited >= Duration::from_secs(2), "waited only {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

#[tokio::test]
async fn rate_limit_resetting_too_late_is_not_waited_for() {
    let server = MockServer::start().await;
    let reset = chrono::Utc::now().timestamp() + 3600;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(json!({"message": "API rate limit exceeded"})),
        )
        .mount(&server)
        .await;
    let started = Instant::now();
    let err = client(&server)
        .create_status(SHA, "success", "ok", "kiln", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(requests(&server).await.len(), 1);
    assert!(
        err.contains("HTTP 403") && err.contains("rate limit"),
        "{err}"
    );
    assert!(!err.contains(TOKEN));
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_give_up() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/octo/app/check-runs"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad gateway</html>"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/octo/app/check-runs"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 8})))
        .with_priority(2)
        .mount(&server)
        .await;
    let run = CheckRun {
        name: "kiln".into(),
        head_sha: SHA.into(),
        conclusion: "success".into(),
        title: "ok".into(),
        summary: "ok".into(),
        details_url: None,
        annotations: Vec::new(),
    };
    let gh = client(&server);
    assert_eq!(gh.create_check_run(&run).await.unwrap(), 8);
    assert_eq!(requests(&server).await.len(), 3);

    // Always 500: four attempts, then an error naming the call (and not the token).
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"message": "Server Error"})))
        .mount(&server)
        .await;
    let err = client(&server)
        .create_check_run(&run)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(requests(&server).await.len(), 4);
    assert_eq!(
        err,
        "GitHub API POST /repos/octo/app/check-runs: HTTP 500: Server Error"
    );
}

#[tokio::test]
async fn a_missing_permission_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"message": "Resource not accessible by integration"})),
        )
        .mount(&server)
        .await;
    let err = client(&server)
        .create_status(SHA, "success", "ok", "kiln", None)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(requests(&server).await.len(), 1);
    assert!(err.contains("Resource not accessible"), "{err}");
}

#[tokio::test]
async fn logins_and_compare() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/octo/app/commits/{SHA}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "sha": SHA, "author": {"login": "bob"}, "committer": {"login": "web-flow"}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/app/compare/aaa...bbb"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "commits": [
                {"sha": "b1", "author": {"login": "bob"},
                 "commit": {"message": "one\n\nCo-authored-by: Carol <carol@example.com>",
                            "author": {"name": "Bob", "email": "bob@example.com"}}},
                {"sha": "c1", "author": null,
                 "commit": {"message": "two", "author": {"name": "Cy", "email": "cy@example.com"}}}
            ]
        })))
        .mount(&server)
        .await;
    let gh = client(&server);
    assert_eq!(
        gh.commit_author_login(SHA).await.unwrap().as_deref(),
        Some("bob")
    );
    let commits = gh.compare("aaa", "bbb").await.unwrap();
    assert_eq!(commits.len(), 2);
    assert_eq!(commits[0].sha, "c1", "newest first");
    assert_eq!(commits[0].author.login, None);
    assert_eq!(commits[1].author.login.as_deref(), Some("bob"));
    assert_eq!(commits[1].co_authors[0].name, "Carol");
}

#[tokio::test]
async fn a_hung_request_times_out_and_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": 1}))
                .set_delay(Duration::from_secs(10)),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 2})))
        .with_priority(2)
        .mount(&server)
        .await;
    let gh = client(&server)
        .with_request_timeout(Duration::from_millis(300))
        .unwrap();
    let started = Instant::now();
    gh.create_status(SHA, "success", "ok", "kiln", None)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn enterprise_api_root_keeps_its_path_prefix() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/api/v3/repos/octo/app/statuses/{SHA}")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .expect(1)
        .mount(&server)
        .await;
    let env = |k: &str| match k {
        "GITHUB_TOKEN" => Some(TOKEN.to_string()),
        "GITHUB_API_URL" => Some(format!("{}/api/v3/", server.uri())),
        "KILN_GITHUB_REPOSITORY" => Some("octo/app".to_string()),
        "GITHUB_REPOSITORY" => Some("other/repo".to_string()),
        _ => None,
    };
    let gh = GitHub::from_env(&env).unwrap().unwrap();
    assert_eq!(gh.repository(), "octo/app", "KILN_ wins over GITHUB_");
    gh.create_status(SHA, "success", "ok", "kiln", None)
        .await
        .unwrap();
}

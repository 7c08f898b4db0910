//! `kiln agent` webhook endpoint: authentication, size and shape checks, de-duplication and the
//! read-only endpoints, against a real agent on loopback. These run with `--workers 0` (deliveries
//! are queued durably but not built) because they are about what gets queued.

use std::time::Duration;

use crate::support::agent::*;
use serde_json::Value;

const SHA: &str = "4f2d8e1c9b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e";

struct Setup {
    _tmp: tempfile::TempDir,
    agent: Agent,
    client: reqwest::Client,
    config: std::path::PathBuf,
}

fn setup(extra: &[&str]) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let (agent, config) = start_unbuilt(
        tmp.path(),
        "data",
        &AgentOpts {
            workers: 0,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    );
    Setup {
        _tmp: tmp,
        agent,
        client: api_client(),
        config,
    }
}

#[tokio::test]
async fn bad_or_missing_signatures_get_401_and_queue_nothing() {
    let s = setup(&[]);
    let body = serde_json::to_vec(&push("main", SHA)).unwrap();
    let url = &s.agent.url;
    let c = &s.client;
    let wrong_secret = sign("not-the-secret", &body);
    let other_body = sign(SECRET, b"{}");
    let truncated = sign(SECRET, &body)[..40].to_string();
    for (sig, why) in [
        (None, "missing"),
        (Some(wrong_secret.as_str()), "wrong secret"),
        (Some(other_body.as_str()), "signature of another body"),
        (Some(truncated.as_str()), "truncated"),
        (
            Some("sha1=0123456789abcdef0123456789abcdef01234567"),
            "sha1 header",
        ),
    ] {
        let r = deliver_raw(c, url, "push", Some("d-1"), sig, body.clone()).await;
        assert_eq!(r.status, 401, "{why}: {:?}", r.body);
        assert_eq!(r.body["status"], "unauthorized", "{why}");
        assert!(!r.body.to_string().contains(SECRET));
    }
    // A malformed body with a bad signature is still 401: nothing is parsed before the check.
    let r = deliver_raw(
        c,
        url,
        "push",
        Some("d-2"),
        Some("sha256=00"),
        b"{nope".to_vec(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(jobs(c, &s.agent).await.is_empty());
    // The secret never reaches the logs.
    assert!(!s.agent.logs().contains(SECRET));
    let m = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("kiln_agent_webhooks_total{result=\"unauthorized\"} 6"),
        "{m}"
    );
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let s = setup(&["--max-body", "64KiB"]);
    let (c, url) = (&s.client, &s.agent.url);
    // A realistic payload padded past the cap (a push with very many commits).
    let mut big = push("main", SHA);
    let commit = big["commits"][0].clone();
    big["commits"] = Value::Array(vec![commit; 200]);
    let body = serde_json::to_vec(&big).unwrap();
    assert!(body.len() > 64 * 1024);
    // Its own client: the agent closes a connection whose body it refused to read.
    let once = api_client();
    let r = deliver_raw(
        &once,
        url,
        "push",
        Some("big"),
        Some(&sign(SECRET, &body)),
        body,
    )
    .await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    // Without a Content-Length (chunked), the cap still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b' '; 8192])).collect();
    // A fresh connection: the pooled one may be closing after the 413 above.
    let resp = api_client()
        .post(format!("{url}/webhook"))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "chunked")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    // The agent answers 413 and stops reading; the client may see the answer or, still
    // writing, a closed connection. Either way the metrics count it as too large.
    if let Ok(resp) = resp {
        assert_eq!(resp.status().as_u16(), 413);
    }
    let m = api_client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("kiln_agent_webhooks_total{result=\"too_large\"} 2"),
        "{m}"
    );

    for (body, why) in [
        (
            b"{\"ref\": \"refs/heads/main\", ".to_vec(),
            "truncated JSON",
        ),
        (b"not json at all".to_vec(), "not JSON"),
        (b"{\"ref\": \"refs/heads/main\"}".to_vec(), "missing fields"),
        (
            serde_json::to_vec(&push("main", "not-a-sha")).unwrap(),
            "bad sha",
        ),
    ] {
        let r = deliver_raw(
            c,
            url,
            "push",
            Some("m-1"),
            Some(&sign(SECRET, &body)),
            body,
        )
        .await;
        assert_eq!(r.status, 400, "{why}: {:?}", r.body);
        assert_eq!(r.body["status"], "malformed", "{why}");
    }
    let body = serde_json::to_vec(&push("main", SHA)).unwrap();
    let r = deliver_raw(
        c,
        url,
        "push",
        None,
        Some(&sign(SECRET, &body)),
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 400, "missing X-GitHub-Delivery");
    let r = c
        .post(format!("{url}/webhook"))
        .header("X-GitHub-Delivery", "no-event")
        .header("X-Hub-Signature-256", sign(SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "missing X-GitHub-Event");
    assert!(jobs(c, &s.agent).await.is_empty());
}

#[tokio::test]
async fn unknown_repos_and_events_are_4xx_irrelevant_actions_202_ignored() {
    let s = setup(&[]);
    let (c, url) = (&s.client, &s.agent.url);
    let mut other = push("main", SHA);
    other["repository"]["full_name"] = "evil-org/hello-kiln".into();
    let r = deliver(c, url, "push", "u-1", &other).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["status"], "unknown_repo");
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("evil-org/hello-kiln"));

    let r = deliver(c, url, "issues", "u-2", &fixture("issues-opened.json")).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["status"], "unsupported_event");

    for (event, file) in [
        ("push", "push-branch-deleted.json"),
        ("pull_request", "pull_request-closed.json"),
    ] {
        let r = deliver(c, url, event, file, &fixture(file)).await;
        assert_eq!(r.status, 202, "{file}: {:?}", r.body);
        assert_eq!(r.body["status"], "ignored", "{file}");
    }
    let mut tag = push("main", SHA);
    tag["ref"] = "refs/tags/v1.0".into();
    assert_eq!(
        deliver(c, url, "push", "u-3", &tag).await.body["status"],
        "ignored"
    );

    let r = deliver(c, url, "ping", "p-1", &fixture("ping.json")).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("pong")));
    assert!(jobs(c, &s.agent).await.is_empty(), "nothing may be queued");

    // The fixtures that do build are queued with what the payload says.
    let r = deliver(
        c,
        url,
        "pull_request",
        "pr-1",
        &fixture("pull_request-synchronize-fork.json"),
    )
    .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let j = get_json(c, &format!("{url}/jobs/{}", r.body["job"])).await;
    assert_eq!(j["fork"], true);
    assert_eq!(j["pr_number"], 43);
    assert_eq!(j["sha"], "8f7e6d5c4b3a291807f6e5d4c3b2a1908f7e6d5c");
    assert_eq!(j["state"], "queued");
    let r = deliver(c, url, "push", "push-1", &fixture("push.json")).await;
    let j = get_json(c, &format!("{url}/jobs/{}", r.body["job"])).await;
    assert_eq!(
        (j["branch"].as_str(), j["event"].as_str()),
        (Some("main"), Some("push"))
    );
}

#[tokio::test]
async fn duplicate_deliveries_are_queued_once_even_across_restarts() {
    let mut s = setup(&[]);
    let c = s.client.clone();
    let payload = push("main", SHA);
    let first = deliver(
        &c,
        &s.agent.url,
        "push",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        &payload,
    )
    .await;
    assert_eq!(first.status, 202);
    assert_eq!(first.body["status"], "queued");
    // GitHub's "Redeliver" sends the same delivery ID again.
    let again = deliver(
        &c,
        &s.agent.url,
        "push",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        &payload,
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.body["job"], first.body["job"]);
    // Concurrent copies of one new delivery: one job.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (c, url, p) = (c.clone(), s.agent.url.clone(), push("dev", SHA));
        set.spawn(async move { deliver(&c, &url, "push", "concurrent-1", &p).await.status });
    }
    let mut statuses = Vec::new();
    while let Some(r) = set.join_next().await {
        statuses.push(r.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 200, 202]);
    assert_eq!(jobs(&c, &s.agent).await.len(), 2);

    s.agent.kill9();
    let data = s.agent.data_dir.clone();
    s.agent = Agent::start(&data, &s.config, &AgentOpts::default());
    let after = deliver(
        &c,
        &s.agent.url,
        "push",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        &payload,
    )
    .await;
    assert_eq!(
        (after.status, after.body["job"].clone()),
        (200, first.body["job"].clone())
    );
    assert_eq!(jobs(&c, &s.agent).await.len(), 2);
}

#[tokio::test]
async fn health_metrics_and_sigterm_drain() {
    let mut s = setup(&[]);
    let (c, url) = (s.client.clone(), s.agent.url.clone());
    let h = get_json(&c, &format!("{url}/healthz")).await;
    assert_eq!(h["status"], "ok");
    deliver(&c, &url, "push", "h-1", &push("main", SHA)).await;
    let m = c.get(format!("{url}/metrics")).send().await.unwrap();
    assert!(m.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let m = m.text().await.unwrap();
    for line in [
        "kiln_agent_queue_depth 1",
        "kiln_agent_jobs_running 0",
        "kiln_agent_webhooks_total{result=\"accepted\"} 1",
        "kiln_agent_accept_seconds_count 1",
        "kiln_agent_jobs_total{outcome=\"passed\"} 0",
        "kiln_agent_cache_hit_ratio 0",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?}:\n{m}");
    }
    let r = c.get(format!("{url}/jobs/999")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = c.get(format!("{url}/jobs/abc")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);

    s.agent.sigterm();
    assert_eq!(s.agent.wait_exit(Duration::from_secs(20)), Some(0));
    let logs = s.agent.logs();
    assert!(logs.contains("SIGTERM"), "{logs}");
}

#[tokio::test]
async fn a_second_agent_on_the_same_data_dir_is_refused() {
    let s = setup(&[]);
    let out = crate::support::kiln()
        .args([
            "agent",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "0",
            "--data-dir",
        ])
        .arg(&s.agent.data_dir)
        .arg("--config")
        .arg(&s.config)
        .env("KILN_WEBHOOK_SECRET", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another kiln agent"), "{err}");
    assert!(err.contains(&s.agent.child.id().to_string()), "{err}");
}

#[tokio::test]
async fn form_encoded_deliveries_are_understood() {
    // GitHub's "application/x-www-form-urlencoded" content type: payload=<JSON>.
    let s = setup(&[]);
    let json = serde_json::to_string(&push("main", SHA)).unwrap();
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &json)
        .finish();
    let r = s
        .client
        .post(format!("{}/webhook", s.agent.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "form-1")
        .header("X-Hub-Signature-256", sign(SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(jobs(&s.client, &s.agent).await[0]["sha"], SHA);
}

/// `/jobs`, job logs and `/metrics` carry every build's log: a token, unless made public.
#[tokio::test]
async fn read_api_needs_the_token_unless_public() {
    let s = setup(&[]);
    let url = &s.agent.url;
    let anonymous = reqwest::Client::new();
    for path in ["/jobs", "/jobs/1", "/jobs/1/log", "/metrics"] {
        let r = anonymous.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without a token");
        assert!(r.headers().contains_key("www-authenticate"), "{path}");
        let r = anonymous
            .get(format!("{url}{path}"))
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
    }
    let r = s.client.get(format!("{url}/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = s.client.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = anonymous
        .get(format!("{url}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "health stays public");
    // The data dir is the agent's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&s.agent.data_dir)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "data dir mode {mode:o}");

    // No token configured: closed, saying how to open it.
    let tmp = tempfile::tempdir().unwrap();
    let (closed, config) = start_unbuilt(
        tmp.path(),
        "data",
        &AgentOpts {
            env: vec![("KILN_AGENT_API_TOKEN".into(), String::new())],
            ..Default::default()
        },
    );
    let r = anonymous
        .get(format!("{}/jobs", closed.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("KILN_AGENT_API_TOKEN") && body.contains("public_api"),
        "{body}"
    );
    drop(closed);

    // public_api: true opens it.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("public_api: true\n{text}")).unwrap();
    let open = Agent::start(
        &tmp.path().join("data2"),
        &config,
        &AgentOpts {
            env: vec![("KILN_AGENT_API_TOKEN".into(), String::new())],
            ..Default::default()
        },
    );
    let r = anonymous
        .get(format!("{}/jobs", open.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

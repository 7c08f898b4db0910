//! The agent's web page in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, `fantoccini`). Log in, click from the build list to a running build, watch its
//! log lines arrive over SSE, press retry; an unauthenticated visitor is refused.
//! `KILN_UPDATE_SCREENSHOTS=1` also writes the screenshots shown in README into docs/.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::agent::*;

const WEB_TOKEN: &str = "web-token-5b9e1d";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free port and a fresh headless Chromium session.
async fn browser(profile: &std::path::Path) -> (Driver, Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian chromium-driver; scripts/setup.sh installs it)");
    let driver = Driver(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display())],
        }
    });
    // Two rustls crypto providers are linked into the tests (ring, and aws-lc-rs through
    // fantoccini's hyper-rustls): pick one. Only loopback HTTP is used.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    (driver, client)
}

/// Poll `f` until it yields Some, at most `limit`.
async fn until<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "{what} (waited {limit:?})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn log_text(b: &Client) -> String {
    match b.find(Locator::Id("log")).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn screenshot(name: &str, png: &[u8], tmp: &std::path::Path) {
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = match std::env::var("KILN_UPDATE_SCREENSHOTS").as_deref() {
        Ok("1") => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/img"),
        _ => tmp.to_path_buf(),
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// Anonymous requests see the login form (401) and cannot press buttons; a browser session
/// without the form's CSRF token cannot either.
async fn refusals(c: &reqwest::Client, url: &str, id: u64) {
    let r = c.get(format!("{url}/builds")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Log in"));
    let r = c
        .post(format!("{url}/builds/{id}/retry"))
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{url}/builds/{id}/log/stream"))
        .basic_auth("x", Some(SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the webhook secret is not an access token");
    let r = c
        .post(format!("{url}/builds/{id}/retry"))
        .basic_auth("me", Some(WEB_TOKEN))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no CSRF token, no retry");
    let r = c
        .post(format!("{url}/jobs/{id}/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_page_lists_builds_streams_a_live_log_and_retries_in_chromium() {
    let w = World::new();
    let mut config = std::fs::read_to_string(&w.config).unwrap();
    config.push_str("web:\n  token_env: KILN_TEST_WEB_TOKEN\n");
    std::fs::write(&w.config, config).unwrap();
    let green = w.project.commit("main", "echo all good");
    let live = w.project.commit(
        "feature/live",
        "for i in $(seq 1 16); do echo tick $i; sleep 0.5; done",
    );
    let agent = Agent::start(
        &w.path("data"),
        &w.config,
        &AgentOpts {
            workers: 2,
            env: vec![("KILN_TEST_WEB_TOKEN".into(), WEB_TOKEN.into())],
            ..Default::default()
        },
    );
    let c = &w.client;
    let first = deliver(c, &agent.url, "push", "web-1", &push("main", &green))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    wait_job(c, &agent, first, Duration::from_secs(180), is_done).await;
    let id = deliver(c, &agent.url, "push", "web-2", &push("feature/live", &live))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    refusals(c, &agent.url, id).await;

    let profile = tempfile::tempdir().unwrap();
    let (_driver, b) = browser(profile.path()).await;
    b.goto(&format!("{}/builds", agent.url)).await.unwrap();
    // Refused: the login form, not the list.
    assert!(b.find(Locator::Css("table#builds")).await.is_err());
    b.find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(WEB_TOKEN)
        .await
        .unwrap();
    b.find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait()
        .for_element(Locator::Css("table#builds"))
        .await
        .unwrap();
    wait_job(c, &agent, id, Duration::from_secs(120), |j| {
        j["state"] == "running"
    })
    .await;
    b.refresh().await.unwrap();
    let row = b
        .wait()
        .for_element(Locator::Css(&format!("tr[data-job='{id}']")))
        .await
        .unwrap();
    assert!(row.text().await.unwrap().contains("feature/live"));
    screenshot(
        "agent-builds.png",
        &b.screenshot().await.unwrap(),
        profile.path(),
    );

    // From the list to the running build; its log grows while we watch.
    row.find(Locator::Css("a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait().for_element(Locator::Id("log")).await.unwrap();
    assert!(b
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with(&format!("/builds/{id}")));
    let early = until(
        Duration::from_secs(120),
        "tick 2 in the live log",
        || async {
            let t = log_text(&b).await;
            t.contains("tick 2").then_some(t)
        },
    )
    .await;
    assert!(
        !early.contains("tick 16"),
        "the build is still running: {early}"
    );
    until(
        Duration::from_secs(60),
        "tick 16 arrives without a reload",
        || async { log_text(&b).await.contains("tick 16").then_some(()) },
    )
    .await;
    let j = wait_job(c, &agent, id, Duration::from_secs(60), is_done).await;
    assert_eq!(j["outcome"], "passed", "{j:#}");
    b.refresh().await.unwrap();
    b.wait().for_element(Locator::Id("stages")).await.unwrap();
    until(Duration::from_secs(30), "the finished log", || async {
        log_text(&b).await.contains("tick 16").then_some(())
    })
    .await;
    screenshot(
        "agent-build.png",
        &b.screenshot().await.unwrap(),
        profile.path(),
    );

    // Retry: a new build of the same commit, and the browser is on its page.
    b.find(Locator::Id("retry"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let new_id: u64 = until(
        Duration::from_secs(30),
        "the retried build's page",
        || async {
            let path = b.current_url().await.ok()?.path().to_string();
            path.strip_prefix("/builds/")?
                .parse::<u64>()
                .ok()
                .filter(|n| *n != id)
        },
    )
    .await;
    let retried = get_json(c, &format!("{}/jobs/{new_id}", agent.url)).await;
    assert_eq!(retried["sha"], live.as_str());
    assert_eq!(retried["branch"], "feature/live");
    let _ = b.close().await;
}

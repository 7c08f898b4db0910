//! Shared harness of the `agent_*` tests: a real `kiln agent` process on loopback, signed fixture
//! deliveries, local git repositories as build sources.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

pub const SECRET: &str = "test-webhook-secret-8c1f";
/// The agent's read-API token (`KILN_AGENT_API_TOKEN`) in every test agent.
pub const API_TOKEN: &str = "test-api-token-5d2a";

/// A client that presents [`API_TOKEN`] on every request (the read API requires it).
pub fn api_client() -> reqwest::Client {
    api_client_builder().build().unwrap()
}

/// [`api_client`]'s builder, for more settings.
pub fn api_client_builder() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {API_TOKEN}").parse().unwrap(),
    );
    reqwest::Client::builder().default_headers(headers)
}
pub const REPO: &str = "octo-org/hello-kiln";

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn fixture(name: &str) -> Value {
    let path = super::root().join("fixtures/webhooks").join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// `push.json` re-aimed at `branch` and `sha`.
pub fn push(branch: &str, sha: &str) -> Value {
    let mut v = fixture("push.json");
    v["ref"] = format!("refs/heads/{branch}").into();
    v["after"] = sha.into();
    v["head_commit"]["id"] = sha.into();
    v
}

/// A pull_request fixture re-aimed at `sha`.
pub fn pull_request(name: &str, sha: &str) -> Value {
    let mut v = fixture(name);
    v["pull_request"]["head"]["sha"] = sha.into();
    v
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Alice Dev")
        .env("GIT_AUTHOR_EMAIL", "alice@example.com")
        .env("GIT_COMMITTER_NAME", "Alice Dev")
        .env("GIT_COMMITTER_EMAIL", "alice@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A local git repository holding a trivial Kiln project (empty requirements).
pub struct Project {
    pub dir: PathBuf,
}

impl Project {
    pub fn new(root: &Path) -> Project {
        let dir = root.join("origin");
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join("requirements.txt"), "").unwrap();
        Project { dir }
    }

    /// Give the project one dependency (a vendored wheel), so its wheelhouse is saved and the
    /// next build restores it exactly (an empty wheelhouse is never saved).
    pub fn with_dependency(&self) {
        super::run::vendored_dependency(&self.dir);
    }

    /// Commit a kiln.yml whose test command is `command` on `branch` (GitHub reporting off);
    /// returns the SHA.
    pub fn commit(&self, branch: &str, command: &str) -> String {
        let yml = format!(
            "test:\n  command: {}\nreport:\n  github:\n    enabled: false\n",
            serde_json::to_string(command).unwrap()
        );
        self.commit_yml(branch, &yml)
    }

    /// Commit `yml` as kiln.yml on `branch` (created from the current head); returns the SHA.
    pub fn commit_yml(&self, branch: &str, yml: &str) -> String {
        let has_commits = Command::new("git")
            .args(["rev-parse", "--verify", "-q", "HEAD"])
            .current_dir(&self.dir)
            .output()
            .unwrap()
            .status
            .success();
        if has_commits {
            git(&self.dir, &["checkout", "-q", "-B", branch]);
        } else {
            git(&self.dir, &["checkout", "-q", "-b", branch]);
        }
        std::fs::write(self.dir.join("kiln.yml"), yml).unwrap();
        git(&self.dir, &["add", "-A"]);
        let message = format!("build on {branch}");
        git(
            &self.dir,
            &["commit", "-q", "--allow-empty", "-m", &message],
        );
        git(&self.dir, &["rev-parse", "HEAD"])
    }
}

#[derive(Default)]
pub struct AgentOpts {
    pub workers: usize,
    pub extra: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A running `kiln agent`.
pub struct Agent {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    pub stderr: PathBuf,
}

/// An agent for what its endpoints accept and queue: its repository is never built (the clone
/// URL does not exist); its config (returned), store and data dir `data` are under `tmp`.
pub fn start_unbuilt(tmp: &Path, data: &str, opts: &AgentOpts) -> (Agent, PathBuf) {
    let config = tmp.join("agent.yml");
    write_config(&config, "/nonexistent/never-built", &tmp.join("store"));
    let agent = Agent::start(&tmp.join(data), &config, opts);
    (agent, config)
}

/// agent.yml building every branch of `REPO` from `clone_url`. The lifecycle tests watch builds
/// through marker files outside the build's work dir, so trusted builds run unsandboxed here
/// (`sandbox: none`); fork pull requests are sandboxed all the same, and the sandbox's own tests
/// (sandbox_e2e) run with the default.
pub fn write_config(path: &Path, clone_url: &str, store: &Path) {
    std::fs::write(
        path,
        format!(
            "sandbox: none\ndefaults:\n  store: file://{}\nrepositories:\n  - name: {REPO}\n    clone_url: {clone_url}\n    token_env: KILN_TEST_REPO_TOKEN\n    branches: ['*']\n",
            store.display()
        ),
    )
    .unwrap();
}

impl Agent {
    pub fn start(data_dir: &Path, config: &Path, opts: &AgentOpts) -> Agent {
        std::fs::create_dir_all(data_dir).unwrap();
        let stderr_path = data_dir.join(format!(
            "agent-stderr-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut cmd = super::kiln();
        cmd.args(["agent", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--config")
            .arg(config)
            .args(["--workers", &opts.workers.to_string()])
            .args(&opts.extra)
            .env("KILN_WEBHOOK_SECRET", SECRET)
            .env("KILN_AGENT_API_TOKEN", API_TOKEN)
            .env("KILN_TEST_REPO_TOKEN", "ghs_testtoken")
            // No build may reach the real GitHub.
            .env("GITHUB_API_URL", "http://127.0.0.1:9")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_ACTIONS")
            .env("KILN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "agent did not start: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                )
            });
        let url = line
            .rsplit(' ')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        Agent {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            stderr: stderr_path,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Wait for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("agent did not exit within {limit:?}:\n{}", self.logs());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Delivery {
    pub status: u16,
    pub body: Value,
}

pub async fn deliver_raw(
    client: &reqwest::Client,
    url: &str,
    event: &str,
    delivery: Option<&str>,
    signature: Option<&str>,
    body: Vec<u8>,
) -> Delivery {
    let mut req = client
        .post(format!("{url}/webhook"))
        .header("Content-Type", "application/json")
        .header("User-Agent", "GitHub-Hookshot/7a1b2c3")
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Hook-ID", "498765432");
    if let Some(d) = delivery {
        req = req.header("X-GitHub-Delivery", d);
    }
    if let Some(s) = signature {
        req = req.header("X-Hub-Signature-256", s);
    }
    let resp = req.body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Delivery { status, body }
}

/// POST a correctly signed delivery.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    event: &str,
    delivery: &str,
    payload: &Value,
) -> Delivery {
    let body = serde_json::to_vec(payload).unwrap();
    let sig = sign(SECRET, &body);
    deliver_raw(client, url, event, Some(delivery), Some(&sig), body).await
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

pub async fn jobs(client: &reqwest::Client, agent: &Agent) -> Vec<Value> {
    let v = get_json(client, &format!("{}/jobs?limit=100000", agent.url)).await;
    v["jobs"].as_array().unwrap().clone()
}

/// Poll `GET /jobs/{id}` until `done(job)` or the time limit.
pub async fn wait_job(
    client: &reqwest::Client,
    agent: &Agent,
    id: u64,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let j = get_json(client, &format!("{}/jobs/{id}", agent.url)).await;
        if done(&j) {
            return j;
        }
        if start.elapsed() > limit {
            let log = client
                .get(format!("{}/jobs/{id}/log", agent.url))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            panic!(
                "job {id} not as expected after {limit:?}: {j:#}\n--- job log ---\n{log}\n--- agent ---\n{}",
                agent.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn is_done(j: &Value) -> bool {
    j["state"] == "done"
}

/// Wait until `path` exists and holds at least `n` lines.
pub async fn wait_lines(path: &Path, n: usize, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            start.elapsed() < limit,
            "{} has {} line(s), wanted {n}",
            path.display(),
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Live (non-zombie) processes of job `id` of the agent whose data dir is `data_dir`.
pub fn processes_of_job(data_dir: &Path, id: u64) -> Vec<u32> {
    let agent_id = std::fs::read_to_string(data_dir.join("agent-id")).unwrap();
    let needle = format!("KILN_AGENT_JOB={}/{id}", agent_id.trim());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            !stat.contains(") Z ") && env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes())
        })
        .collect()
}

/// A temp dir with a project, a config and a store.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub project: Project,
    pub config: PathBuf,
    pub client: reqwest::Client,
}

impl World {
    pub fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let project = Project::new(tmp.path());
        let config = tmp.path().join("agent.yml");
        write_config(
            &config,
            &project.dir.display().to_string(),
            &tmp.path().join("store"),
        );
        World {
            tmp,
            project,
            config,
            client: api_client(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn start(&self, workers: usize, extra: &[&str]) -> Agent {
        Agent::start(
            &self.path("data"),
            &self.config,
            &AgentOpts {
                workers,
                extra: extra.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
    }
}

/// What a fake GitHub answers to everything the test did not mock on purpose: any other POST
/// creates an object with id `post_id` (statuses, comments), any other GET finds nothing (no
/// earlier comment, no previous check run). Mount after the specific mocks.
pub async fn mount_github_fallbacks(github: &wiremock::MockServer, post_id: u64) {
    use wiremock::matchers::method;
    use wiremock::{Mock, ResponseTemplate};
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"id": post_id})))
        .mount(github)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(serde_json::json!({"message": "Not Found"})),
        )
        .mount(github)
        .await;
}

//! `--poll`: for machines GitHub cannot reach, ask GitHub for branch heads on an interval and
//! queue a build for each head not seen before.
//!
//! A polled head is queued with the delivery ID `poll:<repo>:<branch>:<sha>`, so the queue's
//! persistent de-duplication is the only memory the poller needs: a restart re-polls and queues
//! nothing twice.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::agent_yml::{AgentConfig, RepoConfig};
use super::events::BuildRequest;
use super::queue::{Enqueued, JobQueue};

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("GET {url}: {message}")]
    Http { url: String, message: String },
    #[error("{0}")]
    Queue(#[from] super::queue::QueueError),
}

#[derive(Deserialize)]
struct Branch {
    name: String,
    commit: Commit,
}

#[derive(Deserialize)]
struct Commit {
    sha: String,
}

#[derive(Deserialize)]
struct RepoInfo {
    default_branch: String,
}

pub struct Poller {
    pub queue: Arc<dyn JobQueue>,
    pub config: Arc<AgentConfig>,
    /// `GITHUB_API_URL` or `https://api.github.com`.
    pub api: String,
    pub client: reqwest::Client,
    /// Seals the jobs it queues (see `seal`).
    pub sealer: Arc<super::seal::Sealer>,
}

const PAGE: usize = 100;

impl Poller {
    pub fn new(
        queue: Arc<dyn JobQueue>,
        config: Arc<AgentConfig>,
        api: String,
        sealer: Arc<super::seal::Sealer>,
    ) -> Poller {
        let client = reqwest::Client::builder()
            .user_agent(concat!("kiln-agent/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Poller {
            queue,
            config,
            api: api.trim_end_matches('/').to_string(),
            client,
            sealer,
        }
    }

    /// Poll every repository once; returns the IDs of the jobs queued.
    pub async fn poll_once(&self) -> Vec<u64> {
        let mut queued = Vec::new();
        for repo in &self.config.repositories {
            match self.poll_repo(repo).await {
                Ok(mut ids) => queued.append(&mut ids),
                Err(e) => tracing::warn!("poll {}: {e}", repo.full_name),
            }
        }
        queued
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        repo: &RepoConfig,
        url: String,
    ) -> Result<T, PollError> {
        let mut req = self
            .client
            .get(&url)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(src) = &repo.token {
            match src.read() {
                Ok(t) => req = req.bearer_auth(t),
                Err(e) => tracing::warn!("poll {}: {e}; polling without a token", repo.full_name),
            }
        }
        let err = |message: String| PollError::Http {
            url: url.clone(),
            message,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| err(e.without_url().to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(err(format!(
                "HTTP {status} (check the repository name and its token)"
            )));
        }
        resp.json::<T>()
            .await
            .map_err(|e| err(format!("unexpected response: {}", e.without_url())))
    }

    async fn poll_repo(&self, repo: &RepoConfig) -> Result<Vec<u64>, PollError> {
        let base = format!("{}/repos/{}", self.api, repo.full_name);
        let default_branch = if repo.branches.is_none() {
            Some(
                self.get::<RepoInfo>(repo, base.clone())
                    .await?
                    .default_branch,
            )
        } else {
            None
        };
        let mut queued = Vec::new();
        // 100 pages of 100 branches is far beyond any real repository; stop there rather than
        // loop forever on a misbehaving API.
        for page in 1..=100 {
            let branches: Vec<Branch> = self
                .get(repo, format!("{base}/branches?per_page={PAGE}&page={page}"))
                .await?;
            let n = branches.len();
            for b in branches {
                if !repo.builds_branch(&b.name, default_branch.as_deref()) {
                    continue;
                }
                let sha = b.commit.sha.to_ascii_lowercase();
                let lane = format!("{}@{}", repo.full_name, b.name);
                if self.queue.has_build(&lane, &sha).await? {
                    continue;
                }
                let delivery = format!("poll:{}:{}:{sha}", repo.full_name, b.name);
                let req = BuildRequest {
                    lane,
                    repo: repo.full_name.clone(),
                    sha,
                    branch: b.name.clone(),
                    event: "poll".into(),
                    pr_number: None,
                    fork: false,
                    author: None,
                    seal: None,
                };
                let req = self.sealer.seal(req);
                if let Enqueued::Accepted(id) = self.queue.enqueue(&delivery, req).await? {
                    tracing::info!(
                        "poll {}: new head of {}: queued job {id}",
                        repo.full_name,
                        b.name
                    );
                    queued.push(id);
                }
            }
            if n < PAGE {
                break;
            }
        }
        Ok(queued)
    }

    /// Poll every `interval` until `stop` resolves.
    pub async fn run(self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => { self.poll_once().await; }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_sealer() -> Arc<crate::server::seal::Sealer> {
        let secret = crate::server::signature::Secret::new("test");
        Arc::new(crate::server::seal::Sealer::new(&secret))
    }
    use crate::server::queue::embedded::EmbeddedQueue;
    use crate::server::queue::Filter;
    use std::path::Path;
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    #[tokio::test]
    async fn queues_new_heads_of_configured_branches_once() {
        let server = MockServer::start().await;
        std::env::set_var("KILN_POLL_TEST_TOKEN", "tok-123");
        let config = Arc::new(
            AgentConfig::parse(
                "repositories:\n  - name: octo/hello\n    token_env: KILN_POLL_TEST_TOKEN\n    branches: [main, 'release/*']\n  - name: octo/plain\n",
                Path::new("agent.yml"),
            )
            .unwrap(),
        );
        Mock::given(method("GET"))
            .and(path("/repos/octo/hello/branches"))
            .and(query_param("page", "1"))
            .and(header("authorization", "Bearer tok-123"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
                {"name": "main", "commit": {"sha": A}},
                {"name": "dev", "commit": {"sha": B}},
                {"name": "release/1", "commit": {"sha": B}},
            ])))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/repos/octo/plain"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"default_branch": "trunk"})),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/repos/octo/plain/branches"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
                {"name": "trunk", "commit": {"sha": A}},
                {"name": "other", "commit": {"sha": B}},
            ])))
            .mount(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let queue: Arc<dyn JobQueue> =
            Arc::new(EmbeddedQueue::open(dir.path(), "test-host").unwrap());
        // A webhook already queued main's head: the poller leaves it alone rather than
        // superseding that build with a copy of itself.
        let webhook = BuildRequest {
            repo: "octo/hello".into(),
            sha: A.into(),
            branch: "main".into(),
            lane: "octo/hello@main".into(),
            event: "push".into(),
            pr_number: None,
            fork: false,
            author: None,
            seal: None,
        };
        queue.enqueue("webhook-1", webhook).await.unwrap();
        let p = Poller::new(queue.clone(), config.clone(), server.uri(), test_sealer());
        let ids = p.poll_once().await;
        assert_eq!(ids.len(), 2, "release/1 and plain's default branch");
        assert_eq!(
            queue.get(1).await.unwrap().unwrap().outcome,
            None,
            "the webhook's build is not cancelled"
        );
        let mut built: Vec<(String, String)> = queue
            .list(&Filter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|j| (j.repo, j.branch))
            .collect();
        built.sort();
        assert_eq!(
            built,
            vec![
                ("octo/hello".to_string(), "main".to_string()),
                ("octo/hello".to_string(), "release/1".to_string()),
                ("octo/plain".to_string(), "trunk".to_string())
            ]
        );
        // Same heads again, even after a restart: nothing new.
        drop(p);
        drop(queue);
        let queue: Arc<dyn JobQueue> =
            Arc::new(EmbeddedQueue::open(dir.path(), "test-host").unwrap());
        let p = Poller::new(queue.clone(), config, server.uri(), test_sealer());
        assert!(p.poll_once().await.is_empty());
        let requests = server.received_requests().await.unwrap();
        assert!(requests
            .iter()
            .all(|r| r.headers.get("user-agent").is_some()));
        let unauthenticated = requests
            .iter()
            .filter(|r| r.headers.get("authorization").is_none())
            .count();
        assert_eq!(
            unauthenticated, 4,
            "octo/plain has no token: 2 polls x (repo + branches)"
        );
    }

    #[tokio::test]
    async fn api_errors_are_reported_not_fatal() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        let config = Arc::new(
            AgentConfig::parse(
                "repositories:\n  - name: o/r\n    branches: [main]\n",
                Path::new("a.yml"),
            )
            .unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let queue: Arc<dyn JobQueue> =
            Arc::new(EmbeddedQueue::open(dir.path(), "test-host").unwrap());
        let p = Poller::new(queue, config.clone(), server.uri(), test_sealer());
        let e = p
            .poll_repo(&config.repositories[0])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("404") && e.contains("/repos/o/r/branches"),
            "{e}"
        );
    }
}

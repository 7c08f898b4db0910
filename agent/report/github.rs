//! GitHub's REST API, the few calls reporting needs: commit statuses, check runs with
//! annotations, PR and commit comments, commit logins, compare.
//!
//! Plain `reqwest` rather than a full client library: the requests, the retry policy and the API
//! root (GitHub Enterprise, or a fake server in tests) stay explicit and visible. The token only
//! ever travels in the `Authorization` header; it is never logged or put into an error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, ACCEPT, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use super::blame::{co_authors, Commit, Person, MAX_COMMITS};

/// The hidden marker that identifies Kiln's own comment, so later builds edit it in place.
pub const MARKER: &str = "<!-- kiln-report -->";

/// GitHub accepts at most 50 annotations per check-run request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;

/// More annotations than this are dropped (the summary still lists the count).
pub const MAX_ANNOTATIONS: usize = 1000;

/// Check-run summaries are limited to 65535 characters.
const MAX_SUMMARY: usize = 65_000;

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub API {method} {path}: HTTP {status}: {message}")]
    Status {
        method: Method,
        path: String,
        status: u16,
        message: String,
    },
    #[error("GitHub API {method} {path}: {message}")]
    Http {
        method: Method,
        path: String,
        message: String,
    },
    #[error("GitHub API {method} {path}: unexpected response: {message}")]
    Decode {
        method: Method,
        path: String,
        message: String,
    },
    #[error("GitHub reporting is misconfigured: {0}")]
    Config(String),
}

/// How failed requests are retried: 5xx, network errors, and rate limits (403/429 with
/// `Retry-After`, or an exhausted `x-ratelimit-remaining`, waiting until `x-ratelimit-reset`).
#[derive(Debug, Clone)]
pub struct Retry {
    /// Total tries per request, the first included.
    pub attempts: u32,
    /// First backoff delay; doubled on each retry.
    pub base_delay: Duration,
    /// No single wait is longer than this; a rate limit that resets later is not waited for
    /// (the build is not held up for an hour to post a status).
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl Retry {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// What one answer means for the call.
enum Answer {
    Done(Value),
    /// Wait this long, then try again (the reason, for the log).
    Retry(Duration, String),
}

/// A client for one repository.
#[derive(Clone)]
pub struct GitHub {
    http: reqwest::Client,
    api: String,
    token: String,
    pub owner: String,
    pub repo: String,
    pub retry: Retry,
    /// Set once a request gave up because the API did not answer: later calls of this run
    /// (every clone) are skipped at once instead of each waiting out its timeouts.
    unreachable: Arc<Mutex<Option<String>>>,
    /// A call's retry budget for network failures: two read timeouts.
    network_budget: Duration,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api", &self.api)
            .field("repository", &format!("{}/{}", self.owner, self.repo))
            .finish_non_exhaustive()
    }
}

/// One check-run annotation (a failing test at its file and line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Annotation {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub annotation_level: &'static str,
    pub title: String,
    pub message: String,
}

/// A completed check run.
#[derive(Debug, Clone)]
pub struct CheckRun {
    pub name: String,
    pub head_sha: String,
    /// `success`, `failure`, `neutral`, `timed_out`, ...
    pub conclusion: String,
    pub title: String,
    pub summary: String,
    pub details_url: Option<String>,
    pub annotations: Vec<Annotation>,
}

/// Where Kiln's comment went.
#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub id: u64,
    /// True when an existing comment was edited in place.
    pub updated: bool,
}

/// One request's time limit: a hung API answer is given up on, not waited on forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the API may take to accept a connection, and to send the next bytes of an answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(5);

fn http_client(timeout: Duration) -> Result<reqwest::Client, GithubError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .read_timeout(READ_TIMEOUT.min(timeout))
        .timeout(timeout)
        .build()
        .map_err(|e| GithubError::Config(format!("cannot build an HTTP client: {e}")))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl GitHub {
    /// A client for `owner/name` at `api` (e.g. `https://api.github.com`, or
    /// `https://ghe.example.com/api/v3`).
    pub fn new(api: &str, token: &str, repository: &str) -> Result<GitHub, GithubError> {
        let (owner, repo) = repository
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
            .ok_or_else(|| {
                GithubError::Config(format!(
                    "repository {repository:?} is not owner/name (set GITHUB_REPOSITORY or \
                     KILN_GITHUB_REPOSITORY)"
                ))
            })?;
        let api = api.trim_end_matches('/');
        url::Url::parse(api)
            .map_err(|e| GithubError::Config(format!("API root {api:?} is not a URL: {e}")))?;
        Ok(GitHub {
            http: http_client(REQUEST_TIMEOUT)?,
            api: api.to_string(),
            token: token.to_string(),
            owner: owner.to_string(),
            repo: repo.to_string(),
            retry: Retry::default(),
            unreachable: Arc::default(),
            network_budget: 2 * READ_TIMEOUT.min(REQUEST_TIMEOUT),
        })
    }

    /// From the token and repository CI provides (see `ci::GithubAccess`); `None` when there is
    /// no token or no repository (GitHub reporting is then off).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<Result<GitHub, GithubError>> {
        let a = crate::ci::GithubAccess::from_env(env)?;
        Some(GitHub::new(&a.api_url, &a.token, &a.repository))
    }

    /// Give up on a single request after `timeout` (then retried like a 5xx).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Result<GitHub, GithubError> {
        self.http = http_client(timeout)?;
        self.network_budget = 2 * READ_TIMEOUT.min(timeout);
        Ok(self)
    }

    pub fn repository(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.repo)
    }

    /// How long to wait before retrying this response, or `None` to give up now.
    fn retry_wait(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
        attempt: u32,
    ) -> Option<Duration> {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let retry_after = num("retry-after");
        let remaining = num("x-ratelimit-remaining");
        let reset = num("x-ratelimit-reset");
        let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::FORBIDDEN
                && (retry_after.is_some()
                    || remaining == Some(0)
                    || body.to_ascii_lowercase().contains("rate limit")));
        let wait = if rate_limited {
            if let Some(s) = retry_after {
                Duration::from_secs(s)
            } else if let (Some(0), Some(reset)) = (remaining, reset) {
                let now = chrono::Utc::now().timestamp().max(0) as u64;
                Duration::from_secs(reset.saturating_sub(now).max(1))
            } else {
                self.retry.backoff(attempt)
            }
        } else if status.is_server_error() {
            self.retry.backoff(attempt)
        } else {
            return None;
        };
        (wait <= self.retry.max_delay).then_some(wait)
    }

    /// One API call with retries. Returns the decoded JSON body (`Null` when empty).
    fn request(&self, method: &Method, url: &str, body: Option<&Value>) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method.clone(), url)
            .bearer_auth(&self.token)
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header(USER_AGENT, concat!("kiln/", env!("CARGO_PKG_VERSION")));
        match body {
            Some(b) => req.json(b),
            None => req,
        }
    }

    /// One retry budget per call: a network failure is retried with backoff only while the
    /// call, after the wait, stays within two read timeouts (so a server that never answers is
    /// waited for twice at most, a refused connection is tried a few times), and giving up on the network
    /// marks the API unreachable for the rest of the run.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, GithubError> {
        let http_err = |message: String| GithubError::Http {
            method: method.clone(),
            path: path.to_string(),
            message,
        };
        if let Some(reason) = self.unreachable.lock().ok().and_then(|g| g.clone()) {
            return Err(http_err(format!(
                "skipped: the API did not answer earlier in this run ({reason})"
            )));
        }
        let url = format!("{}{path}", self.api);
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let last = attempt >= self.retry.attempts;
            let (wait, why) = match self.request(&method, &url, body).send().await {
                Err(e) => {
                    // The message of a reqwest error names the URL, never the headers.
                    let (timeout, network) = (
                        e.is_timeout(),
                        e.is_connect() || e.is_timeout() || e.is_request(),
                    );
                    let mut message = e.without_url().to_string();
                    if timeout {
                        message.push_str(" (timed out)");
                    }
                    let retry = network
                        && !last
                        && started.elapsed() + self.retry.backoff(attempt) < self.network_budget;
                    if !retry {
                        if network {
                            if let Ok(mut g) = self.unreachable.lock() {
                                *g = Some(message.chars().take(120).collect());
                            }
                        }
                        return Err(http_err(message));
                    }
                    (self.retry.backoff(attempt), message)
                }
                Ok(resp) => match self.answer(&method, path, resp, attempt, last).await? {
                    Answer::Done(v) => return Ok(v),
                    Answer::Retry(wait, why) => (wait, why),
                },
            };
            tracing::warn!(
                "GitHub API {method} {path}: {why}; retrying in {:.1}s (attempt {}/{})",
                wait.as_secs_f64(),
                attempt + 1,
                self.retry.attempts
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Read an answer: its JSON on success, a wait before retrying, or the error.
    async fn answer(
        &self,
        method: &Method,
        path: &str,
        resp: reqwest::Response,
        attempt: u32,
        last: bool,
    ) -> Result<Answer, GithubError> {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Answer::Done(Value::Null));
            }
            return serde_json::from_str(&text).map(Answer::Done).map_err(|e| {
                GithubError::Decode {
                    method: method.clone(),
                    path: path.to_string(),
                    message: e.to_string(),
                }
            });
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| truncate(text.trim(), 200));
        match self.retry_wait(status, &headers, &text, attempt) {
            Some(w) if !last => Ok(Answer::Retry(
                w,
                format!("HTTP {}: {message}", status.as_u16()),
            )),
            _ => Err(GithubError::Status {
                method: method.clone(),
                path: path.to_string(),
                status: status.as_u16(),
                message,
            }),
        }
    }

    /// `POST /repos/{o}/{r}/statuses/{sha}`.
    pub async fn create_status(
        &self,
        sha: &str,
        state: &str,
        description: &str,
        context: &str,
        target_url: Option<&str>,
    ) -> Result<(), GithubError> {
        let mut body = json!({
            "state": state,
            "description": truncate(description, 140),
            "context": context,
        });
        if let Some(u) = target_url {
            body["target_url"] = json!(u);
        }
        self.call(
            Method::POST,
            &self.repo_path(&format!("/statuses/{sha}")),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    /// Create a completed check run; annotations beyond the first 50 go in follow-up PATCH
    /// requests of 50 each (GitHub appends them). Returns the check run's id.
    pub async fn create_check_run(&self, run: &CheckRun) -> Result<u64, GithubError> {
        let summary = truncate(&run.summary, MAX_SUMMARY);
        let title = truncate(&run.title, 255);
        let annotations = &run.annotations[..run.annotations.len().min(MAX_ANNOTATIONS)];
        let mut chunks = annotations.chunks(ANNOTATIONS_PER_REQUEST);
        let first = chunks.next().unwrap_or(&[]);
        let mut body = json!({
            "name": run.name,
            "head_sha": run.head_sha,
            "status": "completed",
            "conclusion": run.conclusion,
            "completed_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "output": {"title": title, "summary": summary, "annotations": first},
        });
        if let Some(u) = &run.details_url {
            body["details_url"] = json!(u);
        }
        let path = self.repo_path("/check-runs");
        let created = self.call(Method::POST, &path, Some(&body)).await?;
        let id = created
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| GithubError::Decode {
                method: Method::POST,
                path: path.clone(),
                message: "no check run id in the response".into(),
            })?;
        for chunk in chunks {
            let body = json!({
                "output": {"title": title, "summary": summary, "annotations": chunk},
            });
            self.call(
                Method::PATCH,
                &self.repo_path(&format!("/check-runs/{id}")),
                Some(&body),
            )
            .await?;
        }
        Ok(id)
    }

    /// The GitHub login of a commit's author (`None` when the email is not linked to an
    /// account).
    pub async fn commit_author_login(&self, sha: &str) -> Result<Option<String>, GithubError> {
        let v = self
            .call(
                Method::GET,
                &self.repo_path(&format!("/commits/{sha}")),
                None,
            )
            .await?;
        Ok(v.pointer("/author/login")
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    /// The commits in `base...head` from the compare API (newest first, at most
    /// [`MAX_COMMITS`]): the fallback when the checkout cannot produce the range.
    pub async fn compare(&self, base: &str, head: &str) -> Result<Vec<Commit>, GithubError> {
        let path = self.repo_path(&format!("/compare/{base}...{head}"));
        let v = self.call(Method::GET, &path, None).await?;
        let list =
            v.get("commits")
                .and_then(Value::as_array)
                .ok_or_else(|| GithubError::Decode {
                    method: Method::GET,
                    path: path.clone(),
                    message: "no commits array".into(),
                })?;
        let s = |c: &Value, p: &str| {
            c.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let mut out: Vec<Commit> = list
            .iter()
            .map(|c| {
                let message = s(c, "/commit/message");
                let mut author =
                    Person::new(&s(c, "/commit/author/name"), &s(c, "/commit/author/email"));
                if let Some(l) = c.pointer("/author/login").and_then(Value::as_str) {
                    author.login = Some(l.to_string());
                }
                Commit {
                    sha: s(c, "/sha"),
                    author,
                    co_authors: co_authors(&message),
                    subject: message.lines().next().unwrap_or("").to_string(),
                }
            })
            .collect();
        out.reverse();
        out.truncate(MAX_COMMITS);
        Ok(out)
    }

    /// Find Kiln's comment among a listing endpoint's pages.
    async fn find_marked(&self, list_path: &str) -> Result<Option<u64>, GithubError> {
        for page in 1..=10 {
            let v = self
                .call(
                    Method::GET,
                    &format!("{list_path}?per_page=100&page={page}"),
                    None,
                )
                .await?;
            let items = v.as_array().cloned().unwrap_or_default();
            for c in &items {
                let body = c.get("body").and_then(Value::as_str).unwrap_or("");
                if body.contains(MARKER) {
                    if let Some(id) = c.get("id").and_then(Value::as_u64) {
                        return Ok(Some(id));
                    }
                }
            }
            if items.len() < 100 {
                break;
            }
        }
        Ok(None)
    }

    async fn upsert(
        &self,
        list_path: &str,
        edit_prefix: &str,
        body: &str,
    ) -> Result<Comment, GithubError> {
        let body = if body.contains(MARKER) {
            body.to_string()
        } else {
            format!("{MARKER}\n{body}")
        };
        let payload = json!({ "body": body });
        if let Some(id) = self.find_marked(list_path).await? {
            self.call(
                Method::PATCH,
                &format!("{edit_prefix}/{id}"),
                Some(&payload),
            )
            .await?;
            return Ok(Comment { id, updated: true });
        }
        let v = self.call(Method::POST, list_path, Some(&payload)).await?;
        Ok(Comment {
            id: v.get("id").and_then(Value::as_u64).unwrap_or(0),
            updated: false,
        })
    }

    /// Create Kiln's comment on pull request `pr`, or edit the one a previous build left.
    pub async fn upsert_pr_comment(&self, pr: u64, body: &str) -> Result<Comment, GithubError> {
        self.upsert(
            &self.repo_path(&format!("/issues/{pr}/comments")),
            &self.repo_path("/issues/comments"),
            body,
        )
        .await
    }

    /// Create Kiln's comment on commit `sha` (push builds), or edit the one already there.
    pub async fn upsert_commit_comment(
        &self,
        sha: &str,
        body: &str,
    ) -> Result<Comment, GithubError> {
        self.upsert(
            &self.repo_path(&format!("/commits/{sha}/comments")),
            &self.repo_path("/comments"),
            body,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_must_be_owner_slash_name() {
        assert!(GitHub::new("https://api.github.com", "t", "octo").is_err());
        assert!(GitHub::new("https://api.github.com", "t", "a/b/c").is_err());
        let g = GitHub::new("https://ghe.example/api/v3/", "t", "octo/app").unwrap();
        assert_eq!(g.repo_path("/x"), "/repos/octo/app/x");
        assert!(!format!("{g:?}").contains("\"t\""));
    }

    #[test]
    fn from_env_needs_token_and_repository() {
        let env = |k: &str| match k {
            "GITHUB_TOKEN" => Some("secret".to_string()),
            "GITHUB_REPOSITORY" => Some("octo/app".to_string()),
            _ => None,
        };
        let g = GitHub::from_env(&env).unwrap().unwrap();
        assert_eq!(g.api, "https://api.github.com");
        assert!(GitHub::from_env(&|k: &str| (k == "GITHUB_TOKEN").then(|| "x".into())).is_none());
    }

    #[test]
    fn rate_limit_waits_are_honoured_and_capped() {
        let mut g = GitHub::new("http://127.0.0.1:1", "t", "o/r").unwrap();
        g.retry.max_delay = Duration::from_secs(30);
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(
            g.retry_wait(StatusCode::FORBIDDEN, &h, "", 1),
            Some(Duration::from_secs(7))
        );
        let mut h = HeaderMap::new();
        let reset = chrono::Utc::now().timestamp() + 3600;
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        h.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
        assert_eq!(
            g.retry_wait(StatusCode::FORBIDDEN, &h, "", 1),
            None,
            "an hour is too long"
        );
        // A plain 403 (missing permission) is not retried; a 502 is, with backoff.
        assert_eq!(
            g.retry_wait(
                StatusCode::FORBIDDEN,
                &HeaderMap::new(),
                "Resource not accessible by integration",
                1
            ),
            None
        );
        assert_eq!(
            g.retry_wait(StatusCode::BAD_GATEWAY, &HeaderMap::new(), "", 3),
            Some(Duration::from_secs(4))
        );
    }
}

//! Listing and deleting cache entries through the GitHub REST API
//! (`GET/DELETE {GITHUB_API_URL}/repos/{owner}/{repo}/actions/caches`), with the job's
//! `GITHUB_TOKEN` (it needs `actions: write` to delete). Only entries with one of Kiln's
//! versions are listed or deleted: `actions/cache` entries are never touched.

use std::time::Duration;

use serde::Deserialize;

use super::keys;
use super::GhaError;
use crate::cache::backend::Entry;

#[derive(Debug, Clone)]
pub(super) struct Rest {
    http: reqwest::Client,
    api: String,
    repo: String,
    token: String,
    timeout: Duration,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    total_count: u64,
    #[serde(default)]
    actions_caches: Vec<CacheEntry>,
}

#[derive(Debug, Deserialize)]
struct CacheEntry {
    id: u64,
    key: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    size_in_bytes: u64,
    #[serde(default)]
    created_at: Option<chrono::DateTime<chrono::Utc>>,
}

const PER_PAGE: u64 = 100;

/// Every version Kiln writes.
fn ours(version: &str) -> bool {
    ["x.json", "x.tar.zst", "x.tar.gz", "x"]
        .iter()
        .any(|s| keys::version_for(s) == version)
}

impl Rest {
    pub(super) fn new(
        access: crate::ci::GithubAccess,
        http: reqwest::Client,
        timeout: Duration,
    ) -> Rest {
        Rest {
            token: access.token,
            repo: access.repository,
            api: access.api_url.trim_end_matches('/').to_string(),
            http,
            timeout,
        }
    }

    fn request(
        &self,
        method: reqwest::Method,
        query: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        self.http
            .request(
                method,
                format!("{}/repos/{}/actions/caches", self.api, self.repo),
            )
            .query(query)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .timeout(self.timeout)
    }

    async fn send(
        &self,
        call: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, GhaError> {
        let resp = req.send().await.map_err(|e| GhaError::http(call, e))?;
        let status = resp.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(resp);
        }
        #[derive(Deserialize, Default)]
        struct Msg {
            #[serde(default)]
            message: String,
        }
        let msg: Msg = resp.json().await.unwrap_or_default();
        Err(GhaError::Service {
            call,
            status: status.as_u16(),
            code: String::new(),
            message: msg.message,
        })
    }

    async fn entries(&self, key: &str) -> Result<Vec<CacheEntry>, GhaError> {
        let mut out = Vec::new();
        for page in 1.. {
            let query = [
                ("key", key.to_string()),
                ("per_page", PER_PAGE.to_string()),
                ("page", page.to_string()),
                ("sort", "created_at".to_string()),
                ("direction", "desc".to_string()),
            ];
            let resp = self
                .send("list caches", self.request(reqwest::Method::GET, &query))
                .await?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                break;
            }
            let p: Page = resp
                .json()
                .await
                .map_err(|e| GhaError::http("list caches", e))?;
            let n = p.actions_caches.len() as u64;
            out.extend(p.actions_caches);
            if n < PER_PAGE || out.len() as u64 >= p.total_count {
                break;
            }
        }
        Ok(out)
    }

    /// Kiln's entries whose key starts with `prefix` (the API matches `key` as a prefix).
    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<Entry>, GhaError> {
        Ok(self
            .entries(prefix)
            .await?
            .into_iter()
            .filter(|e| e.key.starts_with(prefix) && ours(&e.version))
            .map(|e| Entry {
                path: e.key,
                size: e.size_in_bytes,
                modified: e.created_at,
            })
            .collect())
    }

    /// Delete Kiln's entries under exactly `key`, by id.
    pub(super) async fn delete(&self, key: &str) -> Result<(), GhaError> {
        for e in self.entries(key).await? {
            if e.key != key || !ours(&e.version) {
                continue;
            }
            let url = format!("{}/repos/{}/actions/caches/{}", self.api, self.repo, e.id);
            let req = self
                .http
                .delete(url)
                .bearer_auth(&self.token)
                .header(reqwest::header::ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
                .timeout(self.timeout);
            self.send("delete cache", req).await?;
        }
        Ok(())
    }
}

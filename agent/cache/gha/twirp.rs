//! The cache service v2 RPCs: Twirp with JSON bodies, `POST
//! {ACTIONS_RESULTS_URL}/twirp/github.actions.results.api.v1.CacheService/{Method}` with the
//! runtime token as a bearer token. Requests use the protobuf field names (`restore_keys`,
//! `size_bytes`, int64 as a JSON string), as `@actions/cache` sends them; responses are read in
//! either the proto or the JSON (camelCase) spelling.

use serde::{Deserialize, Serialize};

use super::GhaError;

const SERVICE: &str = "github.actions.results.api.v1.CacheService";

#[derive(Debug, Serialize)]
pub struct CreateCacheEntry<'a> {
    pub key: &'a str,
    pub version: &'a str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateCacheEntryResponse {
    pub ok: bool,
    #[serde(alias = "signedUploadUrl")]
    pub signed_upload_url: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct FinalizeCacheEntryUpload<'a> {
    pub key: &'a str,
    /// int64: a string in proto3 JSON.
    pub size_bytes: String,
    pub version: &'a str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FinalizeCacheEntryUploadResponse {
    pub ok: bool,
    #[serde(alias = "entryId")]
    pub entry_id: serde_json::Value,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct GetCacheEntryDownloadUrl<'a> {
    pub key: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub restore_keys: &'a [&'a str],
    pub version: &'a str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GetCacheEntryDownloadUrlResponse {
    pub ok: bool,
    #[serde(alias = "signedDownloadUrl")]
    pub signed_download_url: String,
    #[serde(alias = "matchedKey")]
    pub matched_key: String,
}

/// A Twirp error body: `{"code": "...", "msg": "..."}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TwirpError {
    code: String,
    msg: String,
}

/// The service endpoint and credentials.
#[derive(Clone)]
pub struct Twirp {
    pub(super) http: reqwest::Client,
    /// `ACTIONS_RESULTS_URL` with a trailing `/`.
    pub(super) base: url::Url,
    pub(super) token: String,
    /// Per-call deadline.
    pub(super) timeout: std::time::Duration,
    /// Tries per call (transient failures only) and the first backoff delay, doubled per try.
    pub(super) attempts: u32,
    pub(super) retry_delay: std::time::Duration,
}

impl std::fmt::Debug for Twirp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twirp")
            .field("base", &self.base.as_str())
            .finish()
    }
}

impl Twirp {
    /// Call `method` with `req`, reading its answer as `R`; the network, 429 and 5xx answers
    /// are tried again with backoff, as the toolkit does.
    pub async fn call<Q: Serialize, R: for<'de> Deserialize<'de>>(
        &self,
        method: &'static str,
        req: &Q,
    ) -> Result<R, GhaError> {
        let mut delay = self.retry_delay;
        let mut attempt = 1;
        loop {
            match self.call_once(method, req).await {
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    tracing::debug!(method, attempt, error = %e, "cache service call failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn call_once<Q: Serialize, R: for<'de> Deserialize<'de>>(
        &self,
        method: &'static str,
        req: &Q,
    ) -> Result<R, GhaError> {
        let url = self
            .base
            .join(&format!("twirp/{SERVICE}/{method}"))
            .map_err(|e| GhaError::Config(format!("ACTIONS_RESULTS_URL: {e}")))?;
        let resp = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .json(req)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| GhaError::http(method, e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| GhaError::http(method, e))?;
        if !status.is_success() {
            let err: TwirpError = serde_json::from_slice(&body).unwrap_or_default();
            return Err(GhaError::Service {
                call: method,
                status: status.as_u16(),
                code: err.code,
                message: err.msg,
            });
        }
        serde_json::from_slice(&body).map_err(|e| GhaError::Service {
            call: method,
            status: status.as_u16(),
            code: "malformed".into(),
            message: format!("the answer is not the expected JSON: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_use_proto_field_names() {
        let keys = ["a-", "b-"];
        let get = GetCacheEntryDownloadUrl {
            key: "k",
            restore_keys: &keys,
            version: "v",
        };
        assert_eq!(
            serde_json::to_value(&get).unwrap(),
            serde_json::json!({"key": "k", "restore_keys": ["a-", "b-"], "version": "v"})
        );
        let fin = FinalizeCacheEntryUpload {
            key: "k",
            size_bytes: 12.to_string(),
            version: "v",
        };
        assert_eq!(
            serde_json::to_value(&fin).unwrap()["size_bytes"],
            serde_json::json!("12")
        );
    }

    #[test]
    fn responses_in_either_spelling() {
        let a: GetCacheEntryDownloadUrlResponse =
            serde_json::from_str(r#"{"ok":true,"signedDownloadUrl":"u","matchedKey":"m"}"#)
                .unwrap();
        let b: GetCacheEntryDownloadUrlResponse =
            serde_json::from_str(r#"{"ok":true,"signed_download_url":"u","matched_key":"m"}"#)
                .unwrap();
        assert_eq!((a.ok, a.matched_key), (b.ok, b.matched_key));
        let miss: GetCacheEntryDownloadUrlResponse = serde_json::from_str("{}").unwrap();
        assert!(!miss.ok);
    }
}

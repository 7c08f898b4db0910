//! A fake GitHub Actions cache service v2 on loopback, faithful to the protocol Kiln and
//! `@actions/cache` speak:
//! - Twirp JSON under `/twirp/github.actions.results.api.v1.CacheService/{Method}` with the
//!   runtime token as bearer (`CreateCacheEntry`, `FinalizeCacheEntryUpload`,
//!   `GetCacheEntryDownloadURL`), proto field names in requests, Twirp error bodies;
//! - signed blob URLs (read and write signatures differ) on the same server taking Azure
//!   block-blob `PUT ?comp=block&blockid=` / `PUT ?comp=blocklist` and plain `GET`/`HEAD`;
//! - keys immutable (a second reservation of key+version is a 409 `already_exists`), entries
//!   visible only once finalized with the size actually uploaded, lookups scoped by version:
//!   the exact key, then key prefixes newest first, at most 10 keys per lookup;
//! - the REST API `GET/DELETE /repos/{owner}/{repo}/actions/caches` with `GITHUB_TOKEN`.
//!
//! Faults can be switched on: finalize refused, block uploads cut mid-way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const RUNTIME_TOKEN: &str = "ghs_fake_runtime_token_4f1c";
pub const GITHUB_TOKEN: &str = "ghs_fake_repo_token_77aa";
pub const REPO: &str = "acme/widgets";
const SECRET: &str = "fake-account-key";
const SERVICE: &str = "/twirp/github.actions.results.api.v1.CacheService/";

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u64,
    pub key: String,
    pub version: String,
    pub blob: u64,
    pub size: u64,
    pub finalized: bool,
    /// Finalization order: newer entries have larger numbers.
    pub seq: u64,
    pub created_at: String,
}

#[derive(Default)]
struct Blob {
    blocks: HashMap<String, Bytes>,
    data: Option<Bytes>,
}

#[derive(Default)]
pub struct Faults {
    /// `FinalizeCacheEntryUpload` answers `ok: false` with this message.
    pub refuse_finalize: Option<String>,
    /// Block uploads after the first one of each blob are cut (the connection dropped
    /// mid-body) this many times.
    pub cut_blocks: u32,
}

#[derive(Default)]
pub struct FakeState {
    pub entries: Vec<Entry>,
    blobs: HashMap<u64, Blob>,
    next_id: u64,
    next_seq: u64,
    /// Every request: `METHOD path?query`.
    pub log: Vec<String>,
    pub faults: Faults,
    base: String,
}

/// The running fake. Dropping it stops the server.
pub struct GhaFake {
    pub url: String,
    pub state: Arc<Mutex<FakeState>>,
    _rt: tokio::runtime::Runtime,
}

impl GhaFake {
    /// Start on 127.0.0.1 on its own runtime (usable from sync and async tests).
    pub fn start() -> GhaFake {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(FakeState::default()));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        state.lock().unwrap().base = url.clone();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        rt.spawn(async move { axum::serve(listener, app).await });
        GhaFake {
            url,
            state,
            _rt: rt,
        }
    }

    /// The variables a job step sees (`ACTIONS_RESULTS_URL` ends with `/`, as on runners).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ACTIONS_RESULTS_URL", format!("{}/", self.url)),
            ("ACTIONS_RUNTIME_TOKEN", RUNTIME_TOKEN.to_string()),
            ("ACTIONS_CACHE_SERVICE_V2", "True".to_string()),
            ("GITHUB_TOKEN", GITHUB_TOKEN.to_string()),
            ("GITHUB_REPOSITORY", REPO.to_string()),
            ("GITHUB_API_URL", self.url.clone()),
        ]
    }

    /// Finalized entries, oldest first.
    pub fn entries(&self) -> Vec<Entry> {
        let st = self.state.lock().unwrap();
        let mut v: Vec<Entry> = st.entries.iter().filter(|e| e.finalized).cloned().collect();
        v.sort_by_key(|e| e.seq);
        v
    }

    pub fn keys(&self) -> Vec<String> {
        self.entries().into_iter().map(|e| e.key).collect()
    }

    /// The bytes of the newest finalized entry whose key starts with `prefix`.
    pub fn newest_data(&self, prefix: &str) -> Option<(String, Vec<u8>)> {
        let st = self.state.lock().unwrap();
        let e = st
            .entries
            .iter()
            .filter(|e| e.finalized && e.key.starts_with(prefix))
            .max_by_key(|e| e.seq)?;
        let data = st.blobs.get(&e.blob)?.data.clone()?;
        Some((e.key.clone(), data.to_vec()))
    }

    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    pub fn calls(&self, what: &str) -> usize {
        self.log().iter().filter(|l| l.contains(what)).count()
    }

    pub fn set_faults(&self, f: Faults) {
        self.state.lock().unwrap().faults = f;
    }
}

fn sign(blob: u64, perm: &str) -> String {
    hex::encode(Sha256::digest(format!("{SECRET}|{blob}|{perm}").as_bytes()))
}

fn twirp_error(status: StatusCode, code: &str, msg: &str) -> Response {
    (status, axum::Json(json!({"code": code, "msg": msg}))).into_response()
}

fn azure_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        [("x-ms-error-code", code.to_string())],
        code.to_string(),
    )
        .into_response()
}

async fn handle(State(st): State<Arc<Mutex<FakeState>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    st.lock().unwrap().log.push(format!(
        "{} {}",
        parts.method,
        parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
    ));
    if let Some(method) = path.strip_prefix(SERVICE) {
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        return twirp(&st, &parts.headers, method, &body);
    }
    if let Some(id) = path.strip_prefix("/blob/") {
        let Ok(id) = id.parse::<u64>() else {
            return azure_error(StatusCode::NOT_FOUND, "BlobNotFound");
        };
        return blob(&st, &parts.method, id, &query, body).await;
    }
    if path.starts_with(&format!("/repos/{REPO}/actions/caches")) {
        return rest(&st, &parts.method, &parts.headers, &path, &query);
    }
    StatusCode::NOT_FOUND.into_response()
}

fn twirp(st: &Mutex<FakeState>, headers: &HeaderMap, method: &str, body: &[u8]) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {RUNTIME_TOKEN}")) {
        return twirp_error(StatusCode::UNAUTHORIZED, "unauthenticated", "invalid token");
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return twirp_error(StatusCode::NOT_FOUND, "bad_route", "only JSON is served");
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return twirp_error(StatusCode::BAD_REQUEST, "malformed", "not JSON");
    };
    let s = |k: &str| req[k].as_str().unwrap_or("").to_string();
    let (key, version) = (s("key"), s("version"));
    if key.is_empty() || version.is_empty() {
        return twirp_error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "key and version are required",
        );
    }
    let mut st = st.lock().unwrap();
    match method {
        "CreateCacheEntry" => create(&mut st, key, version),
        "FinalizeCacheEntryUpload" => finalize(&mut st, &key, &version, &req),
        "GetCacheEntryDownloadURL" => lookup(&st, &key, &version, &req),
        _ => twirp_error(StatusCode::NOT_FOUND, "bad_route", "no such method"),
    }
}

fn bad_key(key: &str) -> Option<Response> {
    (key.len() > 512 || key.contains(','))
        .then(|| twirp_error(StatusCode::BAD_REQUEST, "invalid_argument", "invalid key"))
}

fn create(st: &mut FakeState, key: String, version: String) -> Response {
    if let Some(r) = bad_key(&key) {
        return r;
    }
    if st
        .entries
        .iter()
        .any(|e| e.key == key && e.version == version)
    {
        return twirp_error(
            StatusCode::CONFLICT,
            "already_exists",
            "cache entry with the same key and version already exists",
        );
    }
    st.next_id += 1;
    let id = st.next_id;
    st.blobs.insert(id, Blob::default());
    st.entries.push(Entry {
        id,
        key,
        version,
        blob: id,
        size: 0,
        finalized: false,
        seq: 0,
        created_at: String::new(),
    });
    let url = format!(
        "{}/blob/{id}?sv=2024-11-04&sp=cw&sig={}",
        st.base,
        sign(id, "w")
    );
    axum::Json(json!({"ok": true, "signed_upload_url": url})).into_response()
}

fn finalize(st: &mut FakeState, key: &str, version: &str, req: &Value) -> Response {
    let size: u64 = req["size_bytes"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if let Some(msg) = st.faults.refuse_finalize.clone() {
        return axum::Json(json!({"ok": false, "message": msg})).into_response();
    }
    let Some(i) = st
        .entries
        .iter()
        .position(|e| e.key == key && e.version == version && !e.finalized)
    else {
        return twirp_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no reserved cache entry",
        );
    };
    let blob = st.entries[i].blob;
    let uploaded = st
        .blobs
        .get(&blob)
        .and_then(|b| b.data.as_ref())
        .map(|d| d.len() as u64);
    if uploaded != Some(size) {
        let msg = format!("uploaded size {uploaded:?} does not match size_bytes {size}");
        return axum::Json(json!({"ok": false, "message": msg})).into_response();
    }
    st.next_seq += 1;
    let seq = st.next_seq;
    let e = &mut st.entries[i];
    e.finalized = true;
    e.size = size;
    e.seq = seq;
    e.created_at = chrono::Utc::now().to_rfc3339();
    axum::Json(json!({"ok": true, "entry_id": e.id.to_string()})).into_response()
}

fn lookup(st: &FakeState, key: &str, version: &str, req: &Value) -> Response {
    let restore: Vec<String> = req["restore_keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if restore.len() + 1 > 10 {
        return twirp_error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "at most 10 keys",
        );
    }
    if let Some(r) = std::iter::once(key)
        .chain(restore.iter().map(String::as_str))
        .find_map(bad_key)
    {
        return r;
    }
    let live = || {
        st.entries
            .iter()
            .filter(|e| e.finalized && e.version == version)
    };
    let newest = |pred: &dyn Fn(&Entry) -> bool| live().filter(|e| pred(e)).max_by_key(|e| e.seq);
    let found = newest(&|e| e.key == key)
        .or_else(|| newest(&|e| e.key.starts_with(key)))
        .or_else(|| {
            restore
                .iter()
                .find_map(|p| newest(&|e| e.key.starts_with(p.as_str())))
        });
    match found {
        Some(e) => {
            let url = format!(
                "{}/blob/{}?sv=2024-11-04&sp=r&sig={}",
                st.base,
                e.blob,
                sign(e.blob, "r")
            );
            axum::Json(json!({"ok": true, "signed_download_url": url, "matched_key": e.key}))
                .into_response()
        }
        None => axum::Json(json!({"ok": false})).into_response(),
    }
}

async fn blob(
    st: &Mutex<FakeState>,
    method: &Method,
    id: u64,
    q: &HashMap<String, String>,
    body: axum::body::Body,
) -> Response {
    let perm = if method == Method::PUT { "w" } else { "r" };
    if q.get("sig") != Some(&sign(id, perm)) {
        return azure_error(StatusCode::FORBIDDEN, "AuthenticationFailed");
    }
    match (method.clone(), q.get("comp").map(String::as_str)) {
        (Method::PUT, Some("block")) => put_block(st, id, q, body).await,
        (Method::PUT, Some("blocklist")) => {
            let xml = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let xml = String::from_utf8_lossy(&xml).to_string();
            let mut st = st.lock().unwrap();
            let Some(b) = st.blobs.get_mut(&id) else {
                return azure_error(StatusCode::NOT_FOUND, "BlobNotFound");
            };
            let mut data = Vec::new();
            for part in xml.split("<Latest>").skip(1) {
                let bid = part.split("</Latest>").next().unwrap_or("");
                match b.blocks.get(bid) {
                    Some(d) => data.extend_from_slice(d),
                    None => return azure_error(StatusCode::BAD_REQUEST, "InvalidBlockList"),
                }
            }
            b.data = Some(Bytes::from(data));
            StatusCode::CREATED.into_response()
        }
        (Method::GET | Method::HEAD, None) => {
            let st = st.lock().unwrap();
            match st.blobs.get(&id).and_then(|b| b.data.clone()) {
                Some(d) if method == Method::HEAD => {
                    ([("content-length", d.len().to_string())], StatusCode::OK).into_response()
                }
                Some(d) => d.into_response(),
                None => azure_error(StatusCode::NOT_FOUND, "BlobNotFound"),
            }
        }
        _ => azure_error(StatusCode::BAD_REQUEST, "UnsupportedQueryParameter"),
    }
}

async fn put_block(
    st: &Mutex<FakeState>,
    id: u64,
    q: &HashMap<String, String>,
    body: axum::body::Body,
) -> Response {
    let bid = q.get("blockid").cloned().unwrap_or_default();
    let cut = {
        let mut st = st.lock().unwrap();
        let not_first = st.blobs.get(&id).is_some_and(|b| !b.blocks.is_empty());
        let cut = not_first && st.faults.cut_blocks > 0;
        if cut {
            st.faults.cut_blocks -= 1;
        }
        cut
    };
    if cut {
        // Read part of the body, then drop the connection without an answer (the hook that
        // prints panics is not run by resume_unwind).
        use futures::StreamExt;
        let _ = body.into_data_stream().next().await;
        std::panic::resume_unwind(Box::new("connection cut by the fake"));
    }
    let data = axum::body::to_bytes(body, 256 << 20)
        .await
        .unwrap_or_default();
    let mut st = st.lock().unwrap();
    match st.blobs.get_mut(&id) {
        Some(b) => {
            b.blocks.insert(bid, data);
            StatusCode::CREATED.into_response()
        }
        None => azure_error(StatusCode::NOT_FOUND, "BlobNotFound"),
    }
}

fn rest(
    st: &Mutex<FakeState>,
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    q: &HashMap<String, String>,
) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {GITHUB_TOKEN}")) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    let mut st = st.lock().unwrap();
    let tail = path.rsplit("/actions/caches").next().unwrap_or("");
    if method == Method::DELETE {
        let Ok(id) = tail.trim_start_matches('/').parse::<u64>() else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let before = st.entries.len();
        st.entries.retain(|e| !(e.id == id && e.finalized));
        return if st.entries.len() < before {
            StatusCode::NO_CONTENT.into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        };
    }
    let prefix = q.get("key").cloned().unwrap_or_default();
    let per_page: usize = q.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(30);
    let page: usize = q.get("page").and_then(|v| v.parse().ok()).unwrap_or(1);
    let mut all: Vec<&Entry> = st
        .entries
        .iter()
        .filter(|e| e.finalized && e.key.starts_with(&prefix))
        .collect();
    all.sort_by_key(|e| std::cmp::Reverse(e.seq));
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|e| {
            json!({"id": e.id, "ref": "refs/heads/main", "key": e.key, "version": e.version,
                   "size_in_bytes": e.size, "created_at": e.created_at,
                   "last_accessed_at": e.created_at})
        })
        .collect();
    axum::Json(json!({"total_count": all.len(), "actions_caches": items})).into_response()
}

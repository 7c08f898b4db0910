//! The HTTP side of `kiln index serve`: a read-only "simple" repository over the store.
//!
//! ```text
//! GET /simple/                         every project (PEP 503 HTML or PEP 691 JSON)
//! GET /simple/<project>/               its files, newest first; other spellings redirect (301)
//! GET /files/<project>/<sha256>/<file> the wheel, streamed from the store (Range supported)
//! GET /healthz                         "ok", never behind auth (for load balancers)
//! ```
//!
//! Pages carry a strong ETag (answering `If-None-Match` with 304) and a short max-age, because a
//! publish can add files at any time; file URLs contain the content hash, so files are immutable
//! and cached for a year.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use super::auth::{Auth, CHALLENGE};
use super::error::IndexError;
use super::layout::{self, Sidecar};
use super::pages::{self, Format};
use crate::cache::store::Store;
use crate::wheels::names::{is_valid_project_name, normalize, WheelName};

/// Shared by every request.
#[derive(Clone)]
pub struct IndexState {
    store: Store,
    auth: Auth,
    /// Sidecars are written once, so they are cached for the life of the server.
    sidecars: Arc<Mutex<HashMap<String, Sidecar>>>,
}

/// How long clients may reuse a page without asking again.
const PAGE_MAX_AGE: u32 = 60;

/// The index as an axum router (the CLI serves it; tests can mount it too).
pub fn router(store: Store, auth: Auth) -> Router {
    let state = IndexState {
        store,
        auth,
        sidecars: Arc::default(),
    };
    Router::new()
        .route("/", get(|| async { moved("/simple/") }))
        .route("/simple", get(|| async { moved("/simple/") }))
        .route("/simple/", get(project_list))
        .route("/simple/{project}", get(project_no_slash))
        .route("/simple/{project}/", get(project_page))
        .route("/files/{project}/{sha}/{filename}", get(file))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(middleware::from_fn_with_state(state.clone(), require_auth))
        .with_state(state)
}

/// Serve on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    auth: Auth,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), IndexError> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    axum::serve(listener, router(store, auth))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| IndexError::Serve {
            addr: addr.map(|a| a.to_string()).unwrap_or_default(),
            source,
        })
}

async fn require_auth(State(st): State<IndexState>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if st.auth.allows(header) {
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        let response = next.run(req).await;
        tracing::debug!("{} {method} {path}", response.status().as_u16());
        return response;
    }
    tracing::info!(
        "401 {} {} ({})",
        req.method(),
        req.uri().path(),
        if header.is_some() {
            "wrong credentials"
        } else {
            "no credentials"
        }
    );
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, CHALLENGE)],
        "authentication required: put credentials in the index URL \
         (http://USER:PASSWORD@host/simple/ or http://__token__:TOKEN@host/simple/)\n",
    )
        .into_response()
}

/// 301 to `to` (PEP 503 suggests redirecting other spellings to the normalized URL).
fn moved(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, v)]).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no such page\n").into_response(),
    }
}

fn cache_control(st: &IndexState, rest: &str) -> HeaderValue {
    let scope = if st.auth.is_enabled() {
        "private"
    } else {
        "public"
    };
    HeaderValue::from_str(&format!("{scope}, {rest}"))
        .unwrap_or_else(|_| HeaderValue::from_static("no-cache"))
}

fn internal_error(e: IndexError) -> Response {
    tracing::error!("index: {e}");
    (
        StatusCode::BAD_GATEWAY,
        "the index could not read its store; see the server log\n",
    )
        .into_response()
}

fn not_acceptable() -> Response {
    (
        StatusCode::NOT_ACCEPTABLE,
        format!(
            "no acceptable representation; this index serves {}, {} and {}\n",
            pages::JSON_V1,
            pages::HTML_V1,
            pages::TEXT_HTML
        ),
    )
        .into_response()
}

fn format_of(headers: &HeaderMap) -> Option<Format> {
    pages::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
}

/// A page response with ETag, Cache-Control and Vary, or 304 when the client's copy is current.
fn page(st: &IndexState, headers: &HeaderMap, format: Format, body: String) -> Response {
    let etag = format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(body.as_bytes()))[..32]
    );
    let cache = cache_control(st, &format!("max-age={PAGE_MAX_AGE}"));
    let mut common = HeaderMap::new();
    common.insert(header::CACHE_CONTROL, cache);
    common.insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        common.insert(header::ETAG, v);
    }
    if etag_matches(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    common.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    (StatusCode::OK, common, body).into_response()
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

async fn project_list(State(st): State<IndexState>, headers: HeaderMap) -> Response {
    let Some(format) = format_of(&headers) else {
        return not_acceptable();
    };
    let projects = match layout::list_sidecars(&st.store, None).await {
        Ok(p) => p.into_iter().map(|(name, _)| name).collect::<Vec<_>>(),
        Err(e) => return internal_error(e),
    };
    page(
        &st,
        &headers,
        format,
        pages::project_list(&projects, format),
    )
}

async fn project_no_slash(Path(project): Path<String>) -> Response {
    if !is_valid_project_name(&project) {
        return (StatusCode::NOT_FOUND, "no such project\n").into_response();
    }
    moved(&format!("/simple/{}/", normalize(&project)))
}

async fn project_page(
    State(st): State<IndexState>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !is_valid_project_name(&project) {
        return (StatusCode::NOT_FOUND, "no such project\n").into_response();
    }
    let normalized = normalize(&project);
    if normalized != project {
        return moved(&format!("/simple/{normalized}/"));
    }
    let Some(format) = format_of(&headers) else {
        return not_acceptable();
    };
    let paths = match layout::list_sidecars(&st.store, Some(&project)).await {
        Ok(mut p) => p.pop().map(|(_, paths)| paths).unwrap_or_default(),
        Err(e) => return internal_error(e),
    };
    let mut files = sidecars(&st, &paths).await;
    if files.is_empty() {
        // 404 is what makes pip and uv move on to the next index.
        return (
            StatusCode::NOT_FOUND,
            format!("no wheels for {project} in this index\n"),
        )
            .into_response();
    }
    pages::sort_newest_first(&mut files);
    page(
        &st,
        &headers,
        format,
        pages::project_page(&project, &files, format),
    )
}

/// Sidecars by path, from the memory cache or the store.
async fn sidecars(st: &IndexState, paths: &[String]) -> Vec<Sidecar> {
    let mut found = Vec::with_capacity(paths.len());
    let mut missing = Vec::new();
    if let Ok(cache) = st.sidecars.lock() {
        for p in paths {
            match cache.get(p) {
                Some(s) => found.push(s.clone()),
                None => missing.push(p.clone()),
            }
        }
    } else {
        missing = paths.to_vec();
    }
    if !missing.is_empty() {
        let read = layout::read_sidecars(&st.store, &missing).await;
        if let Ok(mut cache) = st.sidecars.lock() {
            for s in &read {
                if let Some(w) = WheelName::parse(&s.filename) {
                    cache.insert(layout::sidecar_path(&w), s.clone());
                }
            }
        }
        found.extend(read);
    }
    found
}

/// A single byte range from a `Range` header, clamped to `size`. `Err(())` = unsatisfiable.
fn parse_range(value: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multiple ranges: serve the whole file (allowed by RFC 9110)
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return Some(Err(()));
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(range))
}

async fn file(
    State(st): State<IndexState>,
    Path((project, sha, filename)): Path<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "no such file\n").into_response();
    // `<wheel>.metadata` is the PEP 658 metadata file stored beside the wheel.
    let (wheel_name, suffix) = match filename.strip_suffix(".metadata") {
        Some(w) => (w, ".metadata"),
        None => (filename.as_str(), ""),
    };
    let Some(wheel) = WheelName::parse(wheel_name) else {
        return not_found();
    };
    if wheel.project != project || sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return not_found();
    }
    let path = format!("{}{suffix}", layout::blob_path(&wheel, &sha));
    let size = match st.store.size(&path).await {
        Ok(Some(n)) => n,
        Ok(None) => return not_found(),
        Err(e) => return internal_error(IndexError::from(e)),
    };
    let etag = format!("\"{sha}{suffix}\"");
    let mut h = HeaderMap::new();
    h.insert(
        header::CACHE_CONTROL,
        cache_control(&st, "max-age=31536000, immutable"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if etag_matches(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, size));
    let (status, start, end) = match range {
        Some(Ok((a, b))) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{size}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, a, b + 1)
        }
        Some(Err(())) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            return (StatusCode::RANGE_NOT_SATISFIABLE, h).into_response();
        }
        None => (StatusCode::OK, 0, size),
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if method == Method::HEAD || start == end {
        return (status, h).into_response();
    }
    match st.store.read_range(&path, start..end).await {
        Ok(s) => (status, h, Body::from_stream(s)).into_response(),
        Err(e) => internal_error(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-1000", 100), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=50-1000", 100), Some(Ok((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}

//! The HTTP side: `POST /webhook`, `GET /healthz`, `GET /metrics`, `GET /jobs[/{id}[/log]]`
//! (the web page and `POST /jobs/{id}/retry` are in `web`).
//!
//! A delivery goes: draining? (503) → body within the cap? (413) → signature (401) → headers
//! (400) → event kind (422) → JSON (400) → repository (422) → durable enqueue → 202. Nothing is
//! parsed before the signature is checked, and nothing is queued unless every check passed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::agent_yml::AgentConfig;
use super::events::{self, Decision, EventError};
use super::metrics::Metrics;
use super::queue::{Enqueued, Filter, JobQueue};
use super::signature::Secret;
use super::worker;

/// How long a client may take to send a webhook body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What every handler shares.
pub struct AppState {
    pub queue: Arc<dyn JobQueue>,
    pub config: Arc<AgentConfig>,
    pub metrics: Arc<Metrics>,
    /// None: webhooks are off (poll-only agent).
    pub secret: Option<Secret>,
    pub max_body: usize,
    pub draining: Arc<AtomicBool>,
    pub data_dir: PathBuf,
    pub workers: usize,
    /// Who may read `/jobs`, job logs and `/metrics`.
    pub api: Arc<super::api_auth::ApiAccess>,
    /// Seals every job queued (see `seal`).
    pub sealer: Arc<super::seal::Sealer>,
}

/// The HTTP API plus the web page (`web`).
pub fn router(state: Arc<AppState>, web: Arc<super::web::WebState>) -> Router {
    let read_api = Router::new()
        .route("/metrics", get(metrics))
        .route("/jobs", get(jobs))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/log", get(job_log))
        .route_layer(axum::middleware::from_fn_with_state(
            state.api.clone(),
            super::api_auth::require_token,
        ));
    let throttle = (
        Arc::new(super::throttle::Throttle::default()),
        state.metrics.clone(),
    );
    Router::new()
        .route("/webhook", post(webhook))
        .route("/healthz", get(healthz))
        .merge(read_api)
        .with_state(state)
        .merge(super::web::router(web))
        .layer(axum::middleware::from_fn_with_state(
            throttle,
            super::throttle::limit,
        ))
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn refuse(
    st: &AppState,
    status: StatusCode,
    result: &'static str,
    message: impl std::fmt::Display,
) -> Response {
    st.metrics.webhook(result, 0.0);
    tracing::info!("webhook refused ({}): {message}", status.as_u16());
    answer(
        status,
        json!({"status": result, "message": message.to_string()}),
    )
}

/// `POST /webhook`: every check in the order of the module comment, then the durable enqueue.
async fn webhook(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    if st.draining.load(Ordering::SeqCst) {
        return refuse(
            &st,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "agent is shutting down; GitHub can redeliver this later",
        );
    }
    let Some(secret) = &st.secret else {
        return refuse(
            &st,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "webhooks are disabled: set KILN_WEBHOOK_SECRET or KILN_WEBHOOK_SECRET_FILE",
        );
    };
    let body = match read_body(&st, &headers, body).await {
        Ok(b) => b,
        Err(refused) => return *refused,
    };
    let sig = headers.get("x-hub-signature-256").map(|v| v.as_bytes());
    if let Err(e) = secret.verify(sig, &body) {
        return refuse(&st, StatusCode::UNAUTHORIZED, "unauthorized", e);
    }
    let body = match unwrap_form(&st, &headers, body) {
        Ok(b) => b,
        Err(refused) => return *refused,
    };
    let Some(event) = headers.get("x-github-event").and_then(|v| v.to_str().ok()) else {
        return refuse(
            &st,
            StatusCode::BAD_REQUEST,
            "malformed",
            "missing X-GitHub-Event header",
        );
    };
    let delivery = headers
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|d| !d.is_empty() && d.len() <= 200);
    match events::decide(event, &body, &st.config) {
        Ok(decision) => act(&st, decision, delivery, started).await,
        Err(e) => refuse_event(&st, e),
    }
}

/// The body within `--max-body` (declared or actual) and [`BODY_TIMEOUT`], or the refusal.
async fn read_body(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, Box<Response>> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        let message = format!(
            "body larger than the {} byte limit (--max-body)",
            st.max_body
        );
        Box::new(refuse(
            st,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            message,
        ))
    };
    if declared.is_some_and(|n| n > st.max_body) {
        return Err(too_large());
    }
    // A client trickling its body must not hold a connection (and memory) forever.
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, st.max_body)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(Box::new(refuse(
            st,
            StatusCode::REQUEST_TIMEOUT,
            "malformed",
            format!("body not received within {}s", BODY_TIMEOUT.as_secs()),
        ))),
    }
}

/// GitHub's other content type wraps the JSON as `payload=<urlencoded JSON>`; the signature
/// covers the form body as sent, so this unwrapping comes after the check.
fn unwrap_form(
    st: &AppState,
    headers: &HeaderMap,
    body: bytes::Bytes,
) -> Result<bytes::Bytes, Box<Response>> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Ok(body);
    }
    match url::form_urlencoded::parse(&body).find(|(k, _)| k == "payload") {
        Some((_, v)) => Ok(bytes::Bytes::from(v.into_owned().into_bytes())),
        None => Err(Box::new(refuse(
            st,
            StatusCode::BAD_REQUEST,
            "malformed",
            "form-encoded delivery without a `payload` field",
        ))),
    }
}

/// A delivery `events::decide` could not take: 400 malformed, 422 unsupported or unknown.
fn refuse_event(st: &AppState, e: EventError) -> Response {
    match e {
        EventError::Malformed(_) => refuse(st, StatusCode::BAD_REQUEST, "malformed", e),
        EventError::UnsupportedEvent(_) => {
            refuse(st, StatusCode::UNPROCESSABLE_ENTITY, "unsupported_event", e)
        }
        EventError::UnknownRepo(_) => {
            refuse(st, StatusCode::UNPROCESSABLE_ENTITY, "unknown_repo", e)
        }
    }
}

/// Answer what a delivery asks for: pong, ignored (202), or a build queued.
async fn act(
    st: &AppState,
    decision: Decision,
    delivery: Option<&str>,
    started: Instant,
) -> Response {
    match decision {
        Decision::Pong => {
            st.metrics.webhook("pong", 0.0);
            answer(StatusCode::OK, json!({"status": "pong"}))
        }
        Decision::Ignored(reason) => {
            st.metrics.webhook("ignored", 0.0);
            tracing::debug!("webhook ignored: {reason}");
            answer(
                StatusCode::ACCEPTED,
                json!({"status": "ignored", "message": reason}),
            )
        }
        Decision::Build(req) => {
            let Some(delivery) = delivery else {
                return refuse(st, StatusCode::BAD_REQUEST, "malformed", "missing or invalid X-GitHub-Delivery header (needed to de-duplicate redeliveries)");
            };
            enqueue(st, delivery, req, started).await
        }
        Decision::Rerun { repo, sha } => {
            let Some(delivery) = delivery else {
                return refuse(st, StatusCode::BAD_REQUEST, "malformed", "missing or invalid X-GitHub-Delivery header (needed to de-duplicate redeliveries)");
            };
            let last = Filter {
                repo: Some(repo.clone()),
                sha: Some(sha.clone()),
                limit: Some(1),
                ..Filter::default()
            };
            match st.queue.list(&last).await.map(|mut v| v.pop()) {
                Ok(Some(job)) => enqueue(st, delivery, job.request(), started).await,
                Ok(None) => {
                    st.metrics.webhook("ignored", 0.0);
                    answer(
                        StatusCode::ACCEPTED,
                        json!({"status": "ignored", "message": format!("{repo} {sha} was never built here: nothing to re-run")}),
                    )
                }
                Err(e) => queue_error(st, delivery, e),
            }
        }
    }
}

fn queue_error(st: &AppState, delivery: &str, e: super::queue::QueueError) -> Response {
    st.metrics.webhook("error", 0.0);
    tracing::error!("delivery {delivery}: {e}");
    answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"status": "error", "message": e.to_string()}),
    )
}

/// Queue `req` for `delivery` and answer: 202 queued, 200 duplicate, 500 not stored.
async fn enqueue(
    st: &AppState,
    delivery: &str,
    req: super::events::BuildRequest,
    started: Instant,
) -> Response {
    match st.queue.enqueue(delivery, st.sealer.seal(req)).await {
        Ok(Enqueued::Accepted(id)) => {
            st.metrics
                .webhook("accepted", started.elapsed().as_secs_f64());
            tracing::info!("delivery {delivery}: queued job {id}");
            answer(StatusCode::ACCEPTED, json!({"status": "queued", "job": id}))
        }
        Ok(Enqueued::Duplicate(id)) => {
            st.metrics.webhook("duplicate", 0.0);
            tracing::info!("delivery {delivery}: duplicate of job {id}");
            answer(StatusCode::OK, json!({"status": "duplicate", "job": id}))
        }
        Err(e) => queue_error(st, delivery, e),
    }
}

async fn healthz(State(st): State<Arc<AppState>>) -> Response {
    let c = match st.queue.counts().await {
        Ok(c) => c,
        Err(e) => {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "queue_unavailable", "message": e.to_string()}),
            )
        }
    };
    if st.draining.load(Ordering::SeqCst) {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "draining", "queued": c.queued, "running": c.running}),
        );
    }
    answer(
        StatusCode::OK,
        json!({"status": "ok", "queued": c.queued, "running": c.running}),
    )
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let text = st.metrics.render(
        &st.queue.counts().await.unwrap_or_default(),
        st.workers,
        st.draining.load(Ordering::SeqCst),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn jobs(State(st): State<Arc<AppState>>, Query(f): Query<Filter>) -> Response {
    match st.queue.list(&f).await {
        Ok(jobs) => answer(StatusCode::OK, json!({ "jobs": jobs })),
        Err(e) => unavailable(e),
    }
}

fn unavailable(e: super::queue::QueueError) -> Response {
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"status": "error", "message": e.to_string()}),
    )
}

fn bad_id(id: &str) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        json!({"status": "error", "message": format!("{id:?} is not a job id")}),
    )
}

fn not_found(id: u64) -> Response {
    answer(
        StatusCode::NOT_FOUND,
        json!({"status": "error", "message": format!("no job {id}")}),
    )
}

async fn job(State(st): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return bad_id(&id);
    };
    let job = match st.queue.get(id).await {
        Ok(Some(j)) => j,
        Ok(None) => return not_found(id),
        Err(e) => return unavailable(e),
    };
    let mut v = serde_json::to_value(&job).unwrap_or_default();
    if let Ok(Some(summary)) = st.queue.summary(id).await {
        v["summary"] = summary;
    }
    answer(StatusCode::OK, v)
}

async fn job_log(State(st): State<Arc<AppState>>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return bad_id(&id);
    };
    match st.queue.get(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(id),
        Err(e) => return unavailable(e),
    }
    // Streamed: a build log can be far larger than we want to hold in memory.
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match tokio::fs::File::open(worker::log_path(&st.data_dir, id)).await {
        Ok(f) => {
            let stream = futures::stream::unfold(f, |mut f| async move {
                let mut buf = vec![0u8; 64 * 1024];
                match tokio::io::AsyncReadExt::read(&mut f, &mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
                    }
                    Err(e) => Some((Err(e), f)),
                }
            });
            (text, Body::from_stream(stream)).into_response()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (text, "").into_response(),
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"status": "error", "message": format!("cannot read log of job {id}: {e}")}),
        ),
    }
}

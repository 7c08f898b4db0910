//! The agent's web page: the build list, a page per build with its live log, retry and cancel
//! buttons, and the fleet's hosts. Server-rendered HTML (`render`), access rules (`access`), the
//! live log over SSE (`live`). Also `POST /jobs/{id}/retry`, the same retry for scripts.

pub mod access;
pub mod live;
pub mod render;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use self::access::{Access, Visitor, SESSION_COOKIE};
use super::queue::{Enqueued, Filter, Job, JobQueue, QueueError};
use crate::summary::RunSummary;

/// What the page's handlers share.
pub struct WebState {
    pub queue: Arc<dyn JobQueue>,
    pub data_dir: PathBuf,
    pub access: Access,
    /// This agent's id: jobs another host ran have their log there.
    pub host_id: String,
}

type St = State<Arc<WebState>>;

pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/builds") }))
        .route("/builds", get(list))
        .route("/builds/{id}", get(build))
        .route("/builds/{id}/log/stream", get(log_stream))
        .route("/builds/{id}/retry", post(retry_button))
        .route("/builds/{id}/cancel", post(cancel_button))
        .route("/jobs/{id}/retry", post(retry_api))
        .route("/fleet", get(fleet))
        .route("/login", get(login_form).post(login))
        .with_state(state)
}

/// Why a page is not shown: the login form (401), or an error page.
#[derive(Debug)]
enum Denied {
    Login(String),
    Error(StatusCode, String),
}

impl Denied {
    fn error(status: StatusCode, message: impl std::fmt::Display) -> Denied {
        Denied::Error(status, message.to_string())
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Login(next) => {
                let body = render::login(Some("Log in to see this page."), &next);
                let realm = [(header::WWW_AUTHENTICATE, "Bearer realm=\"kiln\"")];
                (StatusCode::UNAUTHORIZED, realm, Html(body)).into_response()
            }
            Denied::Error(status, message) => {
                let body = render::page("Error", &format!("<h1>{}</h1>", render::esc(&message)));
                (status, Html(body)).into_response()
            }
        }
    }
}

type Page = Result<Response, Denied>;

fn unavailable(e: QueueError) -> Denied {
    Denied::error(StatusCode::SERVICE_UNAVAILABLE, e)
}

fn parse_id(id: &str) -> Result<u64, Denied> {
    id.parse::<u64>().map_err(|_| {
        Denied::error(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a build number"),
        )
    })
}

/// The visitor, if they may read.
fn reader(st: &WebState, headers: &HeaderMap, here: &str) -> Result<Visitor, Denied> {
    let v = st.access.visitor(headers);
    if st.access.may_read(v) {
        Ok(v)
    } else {
        Err(Denied::Login(here.to_string()))
    }
}

async fn load(st: &WebState, id: u64) -> Result<Job, Denied> {
    match st.queue.get(id).await {
        Ok(Some(j)) => Ok(j),
        Ok(None) => Err(Denied::error(
            StatusCode::NOT_FOUND,
            format!("no build #{id}"),
        )),
        Err(e) => Err(unavailable(e)),
    }
}

async fn list(State(st): St, headers: HeaderMap, Query(f): Query<Filter>) -> Page {
    reader(&st, &headers, "/builds")?;
    let jobs = st.queue.list(&f).await.map_err(unavailable)?;
    Ok(Html(render::list(&jobs, &f)).into_response())
}

async fn build(State(st): St, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Page {
    let id = parse_id(&id)?;
    let visitor = reader(&st, &headers, &format!("/builds/{id}"))?;
    let job = load(&st, id).await?;
    let summary = st
        .queue
        .summary(id)
        .await
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_value::<RunSummary>(v).ok());
    let csrf = st.access.csrf().filter(|_| visitor != Visitor::Anonymous);
    let controls = render::Controls {
        csrf: csrf.as_deref(),
        remote_log: remote_log(&st, &job).await,
    };
    Ok(Html(render::build(&job, summary.as_ref(), &controls)).into_response())
}

/// Where the log of a job that another agent ran can be read (None: it is here).
async fn remote_log(st: &WebState, job: &Job) -> Option<String> {
    let host = job.host.as_deref().filter(|h| *h != st.host_id)?;
    if super::worker::log_path(&st.data_dir, job.id).exists() {
        return None;
    }
    let hosts = st.queue.hosts().await.ok()?;
    let url = hosts.iter().find(|h| h.id == host)?.url.clone()?;
    Some(format!("{url}/builds/{}", job.id))
}

async fn log_stream(State(st): St, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Page {
    let id = parse_id(&id)?;
    reader(&st, &headers, &format!("/builds/{id}"))?;
    load(&st, id).await?;
    let path = super::worker::log_path(&st.data_dir, id);
    Ok(live::stream(st.queue.clone(), id, path))
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// May this POST change things? Browsers need the CSRF token, scripts their bearer token.
fn writer(st: &WebState, headers: &HeaderMap, csrf: Option<&str>) -> Result<(), Denied> {
    match st.access.visitor(headers) {
        Visitor::Script => Ok(()),
        Visitor::Browser if st.access.csrf_ok(csrf) => Ok(()),
        Visitor::Browser => Err(Denied::error(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong: reload the page and try again",
        )),
        Visitor::Anonymous => Err(Denied::error(
            StatusCode::UNAUTHORIZED,
            "log in to retry or cancel builds",
        )),
    }
}

async fn retry_button(
    State(st): St,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Form(f): Form<CsrfForm>,
) -> Page {
    let id = parse_id(&id)?;
    writer(&st, &headers, f.csrf.as_deref())?;
    let e = st.queue.retry(id).await.map_err(unavailable)?;
    tracing::info!("build {id} retried from the web page as job {}", e.id());
    Ok(Redirect::to(&format!("/builds/{}", e.id())).into_response())
}

async fn cancel_button(
    State(st): St,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Form(f): Form<CsrfForm>,
) -> Page {
    let id = parse_id(&id)?;
    writer(&st, &headers, f.csrf.as_deref())?;
    st.queue.cancel(id).await.map_err(unavailable)?;
    Ok(Redirect::to(&format!("/builds/{id}")).into_response())
}

/// `POST /jobs/{id}/retry`: `Authorization: Bearer <token>` (or a browser session with an
/// `X-Kiln-CSRF` header); 202 with the new job's id.
async fn retry_api(State(st): St, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "error", "message": format!("{id:?} is not a job id")})),
        )
            .into_response();
    };
    let csrf = headers.get("x-kiln-csrf").and_then(|v| v.to_str().ok());
    if let Err(r) = writer(&st, &headers, csrf) {
        return r.into_response();
    }
    match st.queue.retry(id).await {
        Ok(Enqueued::Accepted(n) | Enqueued::Duplicate(n)) => {
            tracing::info!("job {id} retried as job {n}");
            (
                StatusCode::ACCEPTED,
                Json(json!({"status": "queued", "job": n, "retry_of": id})),
            )
                .into_response()
        }
        Err(QueueError::NoSuchJob(_)) => (
            StatusCode::NOT_FOUND,
            Json(json!({"status": "error", "message": format!("no job {id}")})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "error", "message": e.to_string()})),
        )
            .into_response(),
    }
}

async fn fleet(State(st): St, headers: HeaderMap) -> Page {
    reader(&st, &headers, "/fleet")?;
    let hosts = st.queue.hosts().await.map_err(unavailable)?;
    let now = chrono::Utc::now();
    Ok(Html(render::fleet(st.queue.backend(), &hosts, now)).into_response())
}

#[derive(Deserialize)]
struct Next {
    #[serde(default)]
    next: Option<String>,
}

/// Only local paths: a login must not bounce the visitor to another site.
fn local_path(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or("/builds")
        .to_string()
}

async fn login_form(Query(n): Query<Next>) -> Response {
    Html(render::login(None, &local_path(n.next.as_deref()))).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login(State(st): St, Form(f): Form<LoginForm>) -> Response {
    let next = local_path(f.next.as_deref());
    let session = st.access.session().filter(|_| st.access.is_token(&f.token));
    let Some(session) = session else {
        tracing::info!("web login refused: wrong access token");
        let why = if st.access.has_token() {
            "That is not the access token."
        } else {
            "No access token is configured (agent.yml web.token_env or web.token_file)."
        };
        return (
            StatusCode::UNAUTHORIZED,
            Html(render::login(Some(why), &next)),
        )
            .into_response();
    };
    let cookie = format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict");
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

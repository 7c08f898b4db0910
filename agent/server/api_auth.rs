//! Who may read `/jobs`, job logs and `/metrics`: they carry every build's log and the names of
//! the repositories, so by default only a client presenting the API token.
//!
//! The token comes from `KILN_AGENT_API_TOKEN` or the file `api_token_file` in agent.yml and is
//! sent as `Authorization: Bearer <token>`. `public_api: true` in agent.yml opens these routes to
//! anyone who reaches the port. With neither, they answer 403 and say how to configure one.
//! `/webhook` (signed) and `/healthz` are never behind the token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::settings::names;

/// How the read API is reached.
pub enum ApiAccess {
    /// `public_api: true`.
    Public,
    /// The sha256 of the token (compared in constant time, whatever the length).
    Token([u8; 32]),
    /// No token configured and not public.
    Closed,
}

impl std::fmt::Debug for ApiAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApiAccess::Public => "Public",
            ApiAccess::Token(_) => "Token(…)",
            ApiAccess::Closed => "Closed",
        })
    }
}

/// The access rule from `public_api`, `api_token_file` and `KILN_AGENT_API_TOKEN`.
pub fn api_access(
    public: bool,
    token_file: Option<&std::path::Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ApiAccess, String> {
    let token = match (
        env(names::AGENT_API_TOKEN).filter(|t| !t.trim().is_empty()),
        token_file,
    ) {
        (Some(t), _) => Some(t),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read api_token_file {}: {e}", path.display()))?;
            Some(text)
        }
        (None, None) => None,
    };
    match token.map(|t| t.trim().to_string()) {
        Some(t) if t.is_empty() => Err("the API token is empty".into()),
        Some(t) => Ok(ApiAccess::Token(Sha256::digest(t.as_bytes()).into())),
        None if public => Ok(ApiAccess::Public),
        None => Ok(ApiAccess::Closed),
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut r = (
        status,
        axum::Json(serde_json::json!({ "message": message })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"kiln\""),
        );
    }
    r
}

/// Middleware in front of the read API.
pub async fn require_token(
    State(api): State<Arc<ApiAccess>>,
    req: Request,
    next: Next,
) -> Response {
    match api.as_ref() {
        ApiAccess::Public => next.run(req).await,
        ApiAccess::Closed => refuse(
            StatusCode::FORBIDDEN,
            "the job API is private: set KILN_AGENT_API_TOKEN (or api_token_file in agent.yml) \
             and send Authorization: Bearer <token>, or set public_api: true",
        ),
        ApiAccess::Token(want) => {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| Sha256::digest(t.trim().as_bytes()));
            match given {
                Some(g) if bool::from(g.as_slice().ct_eq(want)) => next.run(req).await,
                _ => refuse(StatusCode::UNAUTHORIZED, "a valid API token is required"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_env_or_file_else_public_or_closed() {
        let none = |_: &str| None;
        assert!(matches!(
            api_access(false, None, &none),
            Ok(ApiAccess::Closed)
        ));
        assert!(matches!(
            api_access(true, None, &none),
            Ok(ApiAccess::Public)
        ));
        let env = |k: &str| (k == "KILN_AGENT_API_TOKEN").then(|| "t0k".to_string());
        assert!(matches!(
            api_access(true, None, &env),
            Ok(ApiAccess::Token(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "from-file\n").unwrap();
        assert!(matches!(
            api_access(false, Some(&f), &none),
            Ok(ApiAccess::Token(_))
        ));
        std::fs::write(&f, "\n").unwrap();
        assert!(api_access(false, Some(&f), &none).is_err());
        assert!(format!("{:?}", api_access(false, Some(&f), &env).unwrap()).contains('…'));
    }
}

//! GitHub App authentication: the agent signs a short-lived RS256 JWT with the App's private key,
//! exchanges it for an installation access token scoped to one repository, and hands that token
//! to the build (`GITHUB_TOKEN`), which then reports with check runs and annotations (GitHub
//! refuses check runs to personal access tokens).
//!
//! A small signer (`jsonwebtoken`) on `reqwest` rather than octocrab: the agent needs two
//! endpoints, reporting already speaks REST through `reqwest` with an explicit API root (GitHub
//! Enterprise, or a fake server in tests), and octocrab would bring a second HTTP stack and TLS
//! setup for them. Tokens are cached per repository until five minutes before they expire, so
//! a busy agent mints one token an hour per repository, not one per build. Neither the key nor
//! a token is ever logged or put into an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

pub use super::agent_yml::AppSettings;
use super::agent_yml::{AgentConfig, RepoConfig};

/// A token is reused until this long before its expiry (builds must not start with one that
/// dies half way through the report).
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// GitHub accepts App JWTs valid for at most 10 minutes; `iat` is back-dated for clock drift.
const JWT_LIFETIME: i64 = 9 * 60;
const JWT_BACKDATE: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "cannot read the GitHub App private key {path} (github_app.private_key_file): {source}"
    )]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} (github_app.private_key_file) is not an RSA private key in PEM format: {message}"
    )]
    KeyFormat { path: PathBuf, message: String },
    #[error("cannot sign the GitHub App JWT: {0}")]
    Sign(String),
    #[error("GitHub App {what}: {message}")]
    Http { what: String, message: String },
    #[error("GitHub App {what}: HTTP {status}: {message}")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
}

/// The claims GitHub reads from an App JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iat: i64,
    pub exp: i64,
    /// The App's id, as a string (GitHub accepts the numeric id or the client id).
    pub iss: String,
}

#[derive(Clone)]
struct Cached {
    token: String,
    expires_at: DateTime<Utc>,
}

/// One GitHub App: mints JWTs and installation tokens.
pub struct GithubApp {
    settings: AppSettings,
    key: EncodingKey,
    api: String,
    http: reqwest::Client,
    /// Repository (`owner/name`) → its installation token.
    tokens: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubApp")
            .field("app_id", &self.settings.app_id)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// Read and parse the App's private key (at start, so a bad key stops the agent at once).
pub fn load_key(path: &Path) -> Result<EncodingKey, AppError> {
    let pem = std::fs::read(path).map_err(|source| AppError::KeyFile {
        path: path.to_path_buf(),
        source,
    })?;
    EncodingKey::from_rsa_pem(&pem).map_err(|e| AppError::KeyFormat {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: DateTime<Utc>,
}

impl GithubApp {
    /// `api` is the REST root, e.g. `https://api.github.com`.
    pub fn new(settings: AppSettings, api: &str) -> Result<GithubApp, AppError> {
        let key = load_key(&settings.private_key_file)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| AppError::Http {
                what: "client".into(),
                message: e.to_string(),
            })?;
        Ok(GithubApp {
            settings,
            key,
            api: api.trim_end_matches('/').to_string(),
            http,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn settings(&self) -> &AppSettings {
        &self.settings
    }

    /// A fresh App JWT (RS256), valid for nine minutes.
    pub fn jwt(&self) -> Result<String, AppError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            iat: now - JWT_BACKDATE,
            exp: now + JWT_LIFETIME,
            iss: self.settings.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| AppError::Sign(e.to_string()))
    }

    /// An installation token for `repo` (`owner/name`), scoped to that repository alone; from
    /// the cache while it has more than five minutes left.
    pub async fn token_for(&self, repo: &str) -> Result<String, AppError> {
        let mut tokens = self.tokens.lock().await;
        let fresh_until = Utc::now() + REFRESH_BEFORE;
        if let Some(c) = tokens.get(repo).filter(|c| c.expires_at > fresh_until) {
            return Ok(c.token.clone());
        }
        let installation = match self.settings.installation_id {
            Some(id) => id,
            None => self.installation_of(repo).await?,
        };
        let name = repo.rsplit('/').next().unwrap_or(repo);
        let body = serde_json::json!({ "repositories": [name] });
        let path = format!("/app/installations/{installation}/access_tokens");
        let what = format!("installation token for {repo}");
        let resp = self
            .send(reqwest::Method::POST, &path, Some(&body), &what)
            .await?;
        let t: AccessToken = resp.json().await.map_err(|e| AppError::Http {
            what: what.clone(),
            message: format!("unexpected response: {e}"),
        })?;
        tracing::info!(
            "GitHub App {}: new installation token for {repo}, valid until {}",
            self.settings.app_id,
            t.expires_at.to_rfc3339()
        );
        tokens.insert(
            repo.to_string(),
            Cached {
                token: t.token.clone(),
                expires_at: t.expires_at,
            },
        );
        Ok(t.token)
    }

    /// `GET /repos/{repo}/installation`: which installation of the App covers `repo`.
    async fn installation_of(&self, repo: &str) -> Result<u64, AppError> {
        let what = format!("installation lookup for {repo}");
        let path = format!("/repos/{repo}/installation");
        let resp = self.send(reqwest::Method::GET, &path, None, &what).await?;
        let i: Installation = resp.json().await.map_err(|e| AppError::Http {
            what,
            message: format!("unexpected response: {e}"),
        })?;
        Ok(i.id)
    }

    /// One request authenticated with a fresh JWT; non-2xx answers become `AppError::Status`.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<reqwest::Response, AppError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .header(AUTHORIZATION, format!("Bearer {}", self.jwt()?))
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header(USER_AGENT, concat!("kiln/", env!("CARGO_PKG_VERSION")));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| AppError::Http {
            what: what.to_string(),
            message: e.without_url().to_string(),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(AppError::Status {
            what: what.to_string(),
            status: status.as_u16(),
            message,
        })
    }
}

/// Every GitHub App agent.yml names, each loaded once (its key read and checked at start).
#[derive(Debug, Default)]
pub struct Apps {
    apps: HashMap<AppSettings, GithubApp>,
}

impl Apps {
    /// Load the Apps of `config`'s repositories; `api` is the REST root.
    pub fn load(config: &AgentConfig, api: &str) -> Result<Apps, AppError> {
        let mut apps = HashMap::new();
        for s in config
            .repositories
            .iter()
            .filter_map(|r| r.github_app.as_ref())
        {
            if !apps.contains_key(s) {
                apps.insert(s.clone(), GithubApp::new(s.clone(), api)?);
            }
        }
        Ok(Apps { apps })
    }

    /// The App `repo` reports as, if any.
    pub fn for_repo(&self, repo: &RepoConfig) -> Option<&GithubApp> {
        self.apps.get(repo.github_app.as_ref()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use wiremock::matchers::{body_json, method, path, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// An RSA key pair as GitHub hands it out (PKCS#1 PEM), made by openssl.
    fn key_pair(dir: &Path) -> (PathBuf, Vec<u8>) {
        let key = dir.join("app.pem");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        run(&[
            "genrsa",
            "-traditional",
            "-out",
            key.to_str().unwrap(),
            "2048",
        ]);
        let public = run(&["rsa", "-in", key.to_str().unwrap(), "-pubout"]);
        (key, public)
    }

    fn verify(auth: &str, public: &[u8]) -> Claims {
        let jwt = auth.strip_prefix("Bearer ").expect("a bearer JWT");
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&["4242"]);
        v.set_required_spec_claims(&["exp", "iat", "iss"]);
        let key = DecodingKey::from_rsa_pem(public).unwrap();
        jsonwebtoken::decode::<Claims>(jwt, &key, &v)
            .expect("signed with the App's key")
            .claims
    }

    #[tokio::test]
    async fn jwt_is_exchanged_for_a_repository_token_that_is_reused_until_near_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = key_pair(dir.path());
        let gh = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/repos/octo/[a-z]+/installation$"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": 99})))
            .mount(&gh)
            .await;
        let soon = Utc::now() + chrono::Duration::minutes(3);
        let later = Utc::now() + chrono::Duration::minutes(60);
        Mock::given(method("POST"))
            .and(path("/app/installations/99/access_tokens"))
            .and(body_json(serde_json::json!({"repositories": ["hello"]})))
            .respond_with(ResponseTemplate::new(201).set_body_json(
                serde_json::json!({"token": "ghs_hello_1", "expires_at": later.to_rfc3339()}),
            ))
            .mount(&gh)
            .await;
        Mock::given(method("POST"))
            .and(path("/app/installations/99/access_tokens"))
            .and(body_json(serde_json::json!({"repositories": ["soon"]})))
            .respond_with(ResponseTemplate::new(201).set_body_json(
                serde_json::json!({"token": "ghs_soon", "expires_at": soon.to_rfc3339()}),
            ))
            .mount(&gh)
            .await;
        let settings = AppSettings {
            app_id: 4242,
            private_key_file: key,
            installation_id: None,
        };
        let app = GithubApp::new(settings, &gh.uri()).unwrap();
        assert_eq!(app.token_for("octo/hello").await.unwrap(), "ghs_hello_1");
        assert_eq!(app.token_for("octo/hello").await.unwrap(), "ghs_hello_1");
        // Five minutes or less left: a fresh token each time.
        app.token_for("octo/soon").await.unwrap();
        app.token_for("octo/soon").await.unwrap();
        let reqs = gh.received_requests().await.unwrap();
        let exchanges = |repo: &str| {
            reqs.iter()
                .filter(|r| r.url.path().ends_with("/access_tokens"))
                .filter(|r| String::from_utf8_lossy(&r.body).contains(repo))
                .count()
        };
        assert_eq!(exchanges("hello"), 1, "reused until shortly before expiry");
        assert_eq!(
            exchanges("soon"),
            2,
            "renewed when it would expire within 5 minutes"
        );
        let now = Utc::now().timestamp();
        for r in &reqs {
            let auth = r.headers.get("authorization").unwrap().to_str().unwrap();
            let c = verify(auth, &public);
            assert!(c.iat <= now && c.exp > now && c.exp - c.iat <= 600, "{c:?}");
        }
        // A key that is not one is a clear error naming the file.
        std::fs::write(dir.path().join("bad.pem"), "not a key").unwrap();
        let bad = AppSettings {
            app_id: 1,
            private_key_file: dir.path().join("bad.pem"),
            installation_id: Some(1),
        };
        let e = GithubApp::new(bad, &gh.uri()).unwrap_err().to_string();
        assert!(e.contains("bad.pem") && e.contains("PEM"), "{e}");
    }

    #[tokio::test]
    async fn refusals_are_errors_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = key_pair(dir.path());
        let gh = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_json(
                serde_json::json!({"message": "A JSON web token could not be decoded"}),
            ))
            .mount(&gh)
            .await;
        let settings = AppSettings {
            app_id: 4242,
            private_key_file: key,
            installation_id: Some(7),
        };
        let app = GithubApp::new(settings, &gh.uri()).unwrap();
        let e = app.token_for("octo/hello").await.unwrap_err().to_string();
        assert!(
            e.contains("HTTP 401") && e.contains("could not be decoded"),
            "{e}"
        );
        assert!(!e.contains("Bearer") && !e.contains("PRIVATE"), "{e}");
    }
}

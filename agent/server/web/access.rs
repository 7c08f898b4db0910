//! Who may see the web page and press its buttons.
//!
//! One access token (agent.yml `web.token_env` / `web.token_file`; never the webhook secret)
//! lets a person in three ways: the login form (which sets an HttpOnly, SameSite=Strict session
//! cookie holding a value derived from the token, not the token), basic auth (any user name, the
//! token as password), or `Authorization: Bearer <token>` for scripts. With `web.public: true`
//! anyone may read the pages; changing anything (retry, cancel) always needs the token.
//!
//! Forms carry a CSRF token derived from the access token; a POST is refused without it unless
//! it was authenticated with a bearer token, which browsers never attach by themselves.

use axum::http::{header, HeaderMap};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "kiln_session";

/// How a request proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visitor {
    /// Nothing (or something wrong).
    Anonymous,
    /// Session cookie or basic auth: a browser, so POSTs need the CSRF token.
    Browser,
    /// `Authorization: Bearer`: a script.
    Script,
}

/// The page's access rules.
#[derive(Clone, Default)]
pub struct Access {
    /// None: no token configured (only a public page, read-only, if `public`).
    token: Option<String>,
    pub public: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("public", &self.public)
            .finish()
    }
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

impl Access {
    pub fn new(token: Option<String>, public: bool) -> Access {
        Access {
            token: token.filter(|t| !t.is_empty()),
            public,
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// A value derived from the token for `purpose` (hex HMAC-SHA256).
    fn derive(&self, purpose: &str) -> Option<String> {
        let token = self.token.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).ok()?;
        mac.update(purpose.as_bytes());
        Some(hex::encode(mac.finalize().into_bytes()))
    }

    /// The cookie value a successful login sets.
    pub fn session(&self) -> Option<String> {
        self.derive("kiln-web-session-v1")
    }

    /// The token forms carry.
    pub fn csrf(&self) -> Option<String> {
        self.derive("kiln-web-csrf-v1")
    }

    /// Is `given` the access token?
    pub fn is_token(&self, given: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| eq(t.as_bytes(), given.trim().as_bytes()))
    }

    pub fn csrf_ok(&self, given: Option<&str>) -> bool {
        match (self.csrf(), given) {
            (Some(want), Some(g)) => eq(want.as_bytes(), g.as_bytes()),
            _ => false,
        }
    }

    /// Who sent `headers`.
    pub fn visitor(&self, headers: &HeaderMap) -> Visitor {
        if self.token.is_none() {
            return Visitor::Anonymous;
        }
        if let Some(auth) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            if let Some(t) = auth.strip_prefix("Bearer ") {
                return if self.is_token(t) {
                    Visitor::Script
                } else {
                    Visitor::Anonymous
                };
            }
            if let Some(b) = auth.strip_prefix("Basic ") {
                return if self.basic_ok(b) {
                    Visitor::Browser
                } else {
                    Visitor::Anonymous
                };
            }
        }
        let session = self.session().unwrap_or_default();
        let cookies = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='));
        for (k, v) in cookies {
            if k == SESSION_COOKIE && eq(v.as_bytes(), session.as_bytes()) {
                return Visitor::Browser;
            }
        }
        Visitor::Anonymous
    }

    fn basic_ok(&self, b64: &str) -> bool {
        use base64::Engine;
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let text = String::from_utf8_lossy(&raw);
        text.split_once(':')
            .is_some_and(|(_, pw)| self.is_token(pw))
    }

    /// May `v` read the pages?
    pub fn may_read(&self, v: Visitor) -> bool {
        self.public || v != Visitor::Anonymous
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn token_cookie_basic_and_bearer() {
        let a = Access::new(Some("s3cret-token".into()), false);
        assert_eq!(a.visitor(&HeaderMap::new()), Visitor::Anonymous);
        assert!(!a.may_read(Visitor::Anonymous));
        let cookie = format!("a=b; {SESSION_COOKIE}={}", a.session().unwrap());
        assert_eq!(a.visitor(&with(header::COOKIE, &cookie)), Visitor::Browser);
        assert!(!cookie.contains("s3cret-token"));
        assert_eq!(
            a.visitor(&with(header::COOKIE, "kiln_session=forged")),
            Visitor::Anonymous
        );
        // "anyone:s3cret-token" and "x:wrong"
        assert_eq!(
            a.visitor(&with(
                header::AUTHORIZATION,
                "Basic YW55b25lOnMzY3JldC10b2tlbg=="
            )),
            Visitor::Browser
        );
        assert_eq!(
            a.visitor(&with(header::AUTHORIZATION, "Basic eDp3cm9uZw==")),
            Visitor::Anonymous
        );
        assert_eq!(
            a.visitor(&with(header::AUTHORIZATION, "Bearer s3cret-token")),
            Visitor::Script
        );
        assert!(a.csrf_ok(a.csrf().as_deref()));
        assert!(!a.csrf_ok(Some("nope")) && !a.csrf_ok(None));
    }

    #[test]
    fn public_pages_are_read_only_and_no_token_means_no_login() {
        let a = Access::new(None, true);
        assert!(a.may_read(Visitor::Anonymous));
        assert!(!a.is_token("") && a.csrf().is_none());
        assert_eq!(
            a.visitor(&with(header::AUTHORIZATION, "Bearer ")),
            Visitor::Anonymous
        );
    }
}

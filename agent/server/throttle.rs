//! Slows a client down that keeps presenting wrong credentials (API tokens, the web token,
//! login attempts): the first few failures are free, then each one blocks the client for twice
//! as long as the last (1 s, 2 s, 4 s, … up to 5 minutes), answered `429 Too Many Requests` with
//! `Retry-After` before the credential is even looked at. A success forgets the client.
//!
//! Clients are told apart by their IP address (the connection's peer; behind a reverse proxy
//! that is the proxy, so the proxy should limit too). The table is bounded: past
//! [`MAX_CLIENTS`] the quietest entries are forgotten.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::metrics::Metrics;

/// Failures a client may make before it is slowed down.
const FREE_FAILURES: u32 = 5;
/// The longest a client is made to wait.
const MAX_BLOCK: Duration = Duration::from_secs(300);
/// Clients remembered at once.
const MAX_CLIENTS: usize = 10_000;
/// A client with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, Copy)]
struct Client {
    failures: u32,
    blocked_until: Instant,
    last: Instant,
}

/// The failed-credential table, shared by every route.
#[derive(Debug, Default)]
pub struct Throttle {
    clients: Mutex<HashMap<IpAddr, Client>>,
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Client>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `ip` must still wait, if it is blocked now.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let c = *self.lock().get(&ip)?;
        (c.blocked_until > now).then(|| c.blocked_until - now)
    }

    /// `ip` presented a wrong credential.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut clients = self.lock();
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&ip) {
            clients.retain(|_, c| now.duration_since(c.last) < FORGET_AFTER);
            if clients.len() >= MAX_CLIENTS {
                let quietest = clients.iter().min_by_key(|(_, c)| c.last).map(|(k, _)| *k);
                quietest.map(|k| clients.remove(&k));
            }
        }
        let c = clients.entry(ip).or_insert(Client {
            failures: 0,
            blocked_until: now,
            last: now,
        });
        if now.duration_since(c.last) >= FORGET_AFTER {
            c.failures = 0;
        }
        c.failures += 1;
        c.last = now;
        if c.failures > FREE_FAILURES {
            let doublings = (c.failures - FREE_FAILURES - 1).min(16);
            c.blocked_until = now + Duration::from_secs(1u64 << doublings).min(MAX_BLOCK);
        }
    }

    /// `ip` presented a valid credential: it starts afresh.
    pub fn succeeded(&self, ip: IpAddr) {
        self.lock().remove(&ip);
    }
}

/// Did the request present a credential (so that a 401 means a wrong one)? Webhooks are
/// signed, not logged in: their 401 is a bad signature, and GitHub is never slowed down.
fn presents_credentials(req: &Request) -> bool {
    let h = req.headers();
    if req.uri().path() == "/webhook" {
        return false;
    }
    h.contains_key(header::AUTHORIZATION)
        || (req.method() == Method::POST && req.uri().path() == "/login")
        || h.get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains(super::web::access::SESSION_COOKIE))
}

/// Middleware in front of every route: blocked clients get 429, wrong credentials count.
pub async fn limit(
    State((throttle, metrics)): State<(Arc<Throttle>, Arc<Metrics>)>,
    req: Request,
    next: Next,
) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (Some(ip), true) = (ip, presents_credentials(&req)) else {
        return next.run(req).await;
    };
    if let Some(wait) = throttle.blocked(ip, Instant::now()) {
        metrics.refused("throttled");
        let secs = wait.as_secs().max(1);
        tracing::warn!("{ip}: too many wrong tokens or passwords; refused for {secs}s");
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({
                "message": format!("too many wrong tokens or passwords from {ip}: retry in {secs}s")
            })),
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    let r = next.run(req).await;
    match r.status() {
        StatusCode::UNAUTHORIZED => throttle.failed(ip, Instant::now()),
        s if s.is_success() || s.is_redirection() => throttle.succeeded(ip),
        _ => {}
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_failures_are_free_then_the_wait_doubles_up_to_five_minutes() {
        let t = Throttle::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let now = Instant::now();
        for _ in 0..FREE_FAILURES {
            t.failed(ip, now);
            assert_eq!(t.blocked(ip, now), None);
        }
        t.failed(ip, now);
        assert_eq!(t.blocked(ip, now), Some(Duration::from_secs(1)));
        t.failed(ip, now);
        assert_eq!(t.blocked(ip, now), Some(Duration::from_secs(2)));
        for _ in 0..30 {
            t.failed(ip, now);
        }
        assert_eq!(t.blocked(ip, now), Some(MAX_BLOCK));
        assert_eq!(t.blocked(other, now), None, "per client");
        assert_eq!(t.blocked(ip, now + MAX_BLOCK), None, "the wait ends");
        t.succeeded(ip);
        t.failed(ip, now);
        assert_eq!(t.blocked(ip, now), None, "a success forgets");
    }

    #[test]
    fn the_table_stays_bounded() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 50) {
            t.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(t.lock().len() <= MAX_CLIENTS);
    }
}

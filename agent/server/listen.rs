//! The accept loop: HTTP/1.1 with bounds, so hostile clients cannot starve valid webhooks.
//!
//! Why not `axum::serve`: it has no header or idle timeout and no cap on connections, so 300
//! sockets held open exhausted the agent's file descriptors and valid deliveries were refused.
//! Here every connection must send a complete request head within `header_timeout` (this also
//! closes idle keep-alive connections: hyper starts the clock whenever it waits for a head), no
//! connection lives longer than `max_lifetime`, and at most `max_connections` are served at once
//! (more wait in the kernel's backlog until a slot frees up). An accept error such as `EMFILE`
//! is logged and waited out, never fatal.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::settings::names;

/// How much one connection may cost.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections served at once (`KILN_AGENT_MAX_CONNECTIONS`, default 512).
    pub max_connections: usize,
    /// Time to send a whole request head, and the most a connection may sit idle
    /// (`KILN_AGENT_HEADER_TIMEOUT`, seconds, default 10).
    pub header_timeout: Duration,
    /// Longest life of one connection, whatever it does.
    pub max_lifetime: Duration,
}

impl ConnLimits {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> ConnLimits {
        let num = |k: &str| env(k).and_then(|v| v.trim().parse::<u64>().ok());
        ConnLimits {
            max_connections: num(names::AGENT_MAX_CONNECTIONS).unwrap_or(512).max(1) as usize,
            header_timeout: Duration::from_secs(
                num(names::AGENT_HEADER_TIMEOUT).unwrap_or(10).max(1),
            ),
            max_lifetime: Duration::from_secs(300),
        }
    }
}

/// Let this process hold as many files as its hard limit allows (the soft limit is often 1024,
/// which a few hundred sockets plus the queue's files would exhaust).
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(1 << 16);
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Serve `app` on `listener` within `limits` until `shutdown` resolves, then let the
/// connections in flight finish (at most 10 s).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s,
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            r = listener.accept() => r,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match stream {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accepting a connection failed: {e}; retrying shortly");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Handlers see the peer (the throttle counts wrong credentials per client).
        let app = tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        );
        let service = TowerToHyperService::new(app);
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = tokio::time::timeout(limits.max_lifetime, conn).await;
            drop(slot);
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

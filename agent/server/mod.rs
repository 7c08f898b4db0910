//! `kiln agent`: a self-hosted build server. GitHub webhooks (or polling) in, durable queue,
//! N workers each running `kiln run` in its own process group and work dir, results out through
//! `kiln run`'s own reporting.
//!
//! Modules: `signature` (HMAC check), `events` (what a delivery asks for), `queue` (the job
//! queue: embedded or PostgreSQL), `worker` (running builds), `procs` (killing a build's
//! processes), `http` (the HTTP routes), `web` (the web page), `github_app` (GitHub App auth),
//! `poll` (polling GitHub), `metrics` (Prometheus text), `agent_yml` (the agent config file),
//! `listen` (the bounded accept loop), `api_auth` (the read-API token). Its flags are
//! `crate::cli::agent`.

pub mod agent_yml;
pub mod api_auth;
pub mod events;
pub mod github_app;
pub mod http;
pub mod isolation;
pub mod job_log;
pub mod listen;
pub mod metrics;
pub mod poll;
pub mod procs;
pub mod queue;
pub mod seal;
pub mod signature;
pub mod throttle;
pub mod web;
pub mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use self::agent_yml::AgentConfig;
use self::queue::{Host, JobQueue};
use self::signature::Secret;
use self::worker::{Phase, Worker, WorkerSettings};
use crate::sandbox::BwrapBin;
use crate::settings::names;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] crate::settings::file::ConfigError),
    #[error(transparent)]
    Queue(#[from] queue::QueueError),
    #[error(transparent)]
    App(#[from] github_app::AppError),
    #[error("web access token: {0}")]
    WebToken(#[from] agent_yml::TokenError),
    #[error("{0}")]
    Secret(String),
    #[error("{0}")]
    Busy(String),
    #[error("no agent config at {}: pass --config FILE or create it (format: docs/agent.md)", .0.display())]
    NoConfig(std::path::PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let what = what.into();
    move |source| AgentError::Io { what, source }
}

/// The webhook secret from `KILN_WEBHOOK_SECRET` or `KILN_WEBHOOK_SECRET_FILE`.
pub fn read_secret(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Secret>, AgentError> {
    let direct = env(names::WEBHOOK_SECRET).filter(|s| !s.is_empty());
    let file = env(names::WEBHOOK_SECRET_FILE).filter(|s| !s.is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(AgentError::Secret(
            "both KILN_WEBHOOK_SECRET and KILN_WEBHOOK_SECRET_FILE are set; set only one".into(),
        )),
        (Some(s), None) => Ok(Some(Secret::new(s.into_bytes()))),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                AgentError::Secret(format!("cannot read KILN_WEBHOOK_SECRET_FILE {path}: {e}"))
            })?;
            // Files usually end with a newline that is not part of the secret.
            let s = text.trim_end_matches(['\r', '\n']);
            if s.is_empty() {
                return Err(AgentError::Secret(format!(
                    "{} {path} is empty",
                    names::WEBHOOK_SECRET_FILE
                )));
            }
            Ok(Some(Secret::new(s.as_bytes().to_vec())))
        }
        (None, None) => Ok(None),
    }
}

/// The data dir holds job logs, summaries, the queue and work dirs: `0700`, so no other user
/// of the host can read a build's log or write its queue (existing dirs are tightened too).
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Take `<data-dir>/lock` for this process's lifetime: two agents on one queue would build every
/// job twice. An flock is released by the kernel however the holder dies (`kill -9` included),
/// and the file is opened close-on-exec so builds that outlive the agent do not keep it.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, AgentError> {
    use std::io::{Seek, Write};
    use std::os::fd::AsRawFd;
    let path = data_dir.join("lock");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io(format!("cannot open {}", path.display())))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(AgentError::Busy(format!(
            "another kiln agent (pid {}) is using data dir {}; stop it or use another --data-dir",
            holder.trim(),
            data_dir.display()
        )));
    }
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = writeln!(f, "{}", std::process::id());
    Ok(f)
}

/// Delete finished jobs older than `retain`, with their logs and summaries.
async fn prune(queue: &dyn JobQueue, data_dir: &std::path::Path, retain: Duration) {
    let Ok(age) = chrono::Duration::from_std(retain) else {
        return;
    };
    let ids = match queue.prune(chrono::Utc::now() - age).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!("cannot prune old jobs: {e}");
            return;
        }
    };
    for &id in &ids {
        for path in [
            worker::log_path(data_dir, id),
            worker::summary_path(data_dir, id),
        ] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!("cannot delete {}: {e}", path.display())
                }
                _ => {}
            }
        }
    }
    if !ids.is_empty() {
        tracing::info!(
            "pruned {} job(s) finished more than {} ago",
            ids.len(),
            humantime::format_duration(retain)
        );
    }
}

/// Kill what is left of the builds this host ran before it last stopped (they run again).
async fn kill_leftovers(queue: &dyn JobQueue, agent_id: &str) -> Result<(), AgentError> {
    let recovered = queue.recover().await?;
    if !recovered.is_empty() {
        tracing::warn!(
            "re-running {} job(s) interrupted by the last stop: {recovered:?}",
            recovered.len()
        );
    }
    // Builds that were running when the previous agent died may have outlived it; kill them
    // before anything else so they cannot finish a second time alongside their re-run.
    for id in recovered {
        let marker = procs::marker(agent_id, id);
        let killed = tokio::task::spawn_blocking(move || procs::kill_build(None, &marker))
            .await
            .unwrap_or(0);
        if killed > 0 {
            tracing::warn!(
                "job {id}: killed {killed} leftover process(es) of the interrupted build"
            );
        }
    }
    Ok(())
}

/// Keep this host in the fleet's host list (every 10 s) until `stop`.
fn register(queue: Arc<dyn JobQueue>, host: Host, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = stop.wait_for(|d| *d) => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = queue.beat(&host).await {
                tracing::warn!("cannot register this agent in the fleet: {e}");
            }
        }
    });
}

/// The web page's state: access token from agent.yml `web:`.
fn web_state(
    config: &AgentConfig,
    queue: Arc<dyn JobQueue>,
    data_dir: &std::path::Path,
    host_id: &str,
) -> Result<Arc<web::WebState>, AgentError> {
    let access = web::access::Access::new(config.web.token()?, config.web.public);
    if !access.has_token() && !config.web.public {
        tracing::info!("web page: no access token configured (agent.yml web:), so it is closed");
    }
    Ok(Arc::new(web::WebState {
        queue,
        data_dir: data_dir.to_path_buf(),
        access,
        host_id: host_id.to_string(),
    }))
}

/// Prune finished jobs hourly until `stop` (start-up already pruned once).
fn spawn_pruner(
    queue: Arc<dyn JobQueue>,
    data_dir: std::path::PathBuf,
    retain: Duration,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        tick.tick().await; // the first tick is immediate
        loop {
            tokio::select! {
                _ = stop.wait_for(|d| *d) => return,
                _ = tick.tick() => {}
            }
            prune(queue.as_ref(), &data_dir, retain).await;
        }
    });
}

/// Let running builds finish within `grace`; then kill them (they run again at the next start,
/// or on another host of the fleet).
async fn drain_workers(
    mut workers: tokio::task::JoinSet<()>,
    grace: Duration,
    phase: &watch::Sender<Phase>,
) {
    if !workers.is_empty() {
        tracing::info!(
            "waiting up to {} for running builds",
            humantime::format_duration(grace)
        );
    }
    let all_done = async { while workers.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        tracing::warn!(
            "grace period over: killing running builds; they run again at the next start"
        );
        let _ = phase.send(Phase::Abort);
        while workers.join_next().await.is_some() {}
    }
}

/// This agent as the fleet page lists it.
fn this_host(agent_id: &str, local: std::net::SocketAddr, workers: usize) -> Host {
    Host {
        id: agent_id.to_string(),
        name: hostname(),
        url: Some(format!("http://{local}")),
        workers,
        busy: 0,
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: chrono::Utc::now(),
        seen_at: chrono::Utc::now(),
    }
}

/// This machine's name, for the fleet page.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the agent with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
}

/// The data dir (created and locked), agent.yml, and this agent's id.
struct Opened {
    data_dir: std::path::PathBuf,
    /// The data dir's flock, held for the agent's lifetime (released when dropped).
    _lock: std::fs::File,
    config: Arc<AgentConfig>,
    config_path: std::path::PathBuf,
    agent_id: String,
}

/// What `kiln agent` runs with: its flags and `KILN_AGENT_*` (converted by `cli::agent`) and the
/// machine's sandbox binary.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub listen: std::net::SocketAddr,
    pub data_dir: PathBuf,
    /// Builds at once (0: queue only).
    pub workers: usize,
    /// agent.yml (default: `<data_dir>/agent.yml`).
    pub config: Option<PathBuf>,
    pub poll: Option<Duration>,
    pub job_timeout: Option<Duration>,
    pub grace: Duration,
    pub retain: Duration,
    /// `embedded` or a PostgreSQL URL.
    pub queue: String,
    pub lease: Duration,
    pub max_body: usize,
    pub bwrap: BwrapBin,
}

fn open_data_dir(args: &AgentSettings) -> Result<Opened, AgentError> {
    let data_dir = std::path::absolute(&args.data_dir)
        .map_err(io(format!("data dir {}", args.data_dir.display())))?;
    create_private_dir(&data_dir)
        .map_err(io(format!("cannot create data dir {}", data_dir.display())))?;
    let lock = lock_data_dir(&data_dir)?;
    listen::raise_fd_limit();
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| data_dir.join("agent.yml"));
    if !config_path.exists() {
        return Err(AgentError::NoConfig(config_path));
    }
    let mut config = AgentConfig::load(&config_path)?;
    if let Ok(v) = std::env::var(names::SANDBOX) {
        config.sandbox.mode = v
            .parse()
            .map_err(|message| crate::config::ConfigError::Env {
                var: names::SANDBOX.into(),
                message,
            })?;
    }
    let config = Arc::new(config);
    let agent_id = procs::agent_id(&data_dir).map_err(io(format!(
        "cannot read or create {}/agent-id",
        data_dir.display()
    )))?;
    Ok(Opened {
        data_dir,
        _lock: lock,
        config,
        config_path,
        agent_id,
    })
}

/// What every worker's builds run, where, and how they are isolated.
fn worker_settings(args: &AgentSettings, o: &Opened) -> Result<WorkerSettings, AgentError> {
    let (config, data_dir) = (&o.config, &o.data_dir);
    let mut isolation = isolation::Isolation::new(config, data_dir.clone(), o.config_path.clone());
    isolation.bwrap = args.bwrap.clone();
    if let Some(w) = isolation.startup_warning() {
        tracing::warn!("{w}");
    }
    // Builds run this very binary. `/proc/self/exe` rather than its path: after an upgrade
    // replaces the file on disk, the path names the new version (or nothing, " (deleted)"),
    // while `/proc/self/exe` still execs the version this agent is, until it restarts.
    let program = match std::path::Path::new("/proc/self/exe") {
        p if p.exists() => p.to_path_buf(),
        _ => std::env::current_exe().map_err(io("cannot find the kiln executable"))?,
    };
    Ok(WorkerSettings {
        program,
        program_args: vec!["run".into()],
        data_dir: data_dir.clone(),
        agent_id: o.agent_id.clone(),
        isolation,
        default_timeout: args
            .job_timeout
            .or(config.defaults.timeout)
            .unwrap_or(Duration::from_secs(3600)),
        log_max: config.job_log_max,
    })
}

/// Run the agent until SIGTERM/SIGINT, then drain.
pub async fn run(args: AgentSettings) -> Result<(), AgentError> {
    let secret = read_secret(&|k| std::env::var(k).ok())?;
    if secret.is_none() && args.poll.is_none() {
        return Err(AgentError::Secret(
            "no webhook secret: set KILN_WEBHOOK_SECRET or KILN_WEBHOOK_SECRET_FILE (the same \
             secret as on the GitHub webhook), or use --poll without webhooks"
                .into(),
        ));
    }
    let opened = open_data_dir(&args)?;
    let (data_dir, config) = (opened.data_dir.clone(), opened.config.clone());
    let agent_id = opened.agent_id.clone();
    let queue = queue::open(&args.queue, &data_dir, &agent_id, args.lease).await?;
    kill_leftovers(queue.as_ref(), &agent_id).await?;
    prune(queue.as_ref(), &data_dir, args.retain).await;
    let github_api = std::env::var("GITHUB_API_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "https://api.github.com".into());
    let apps = Arc::new(github_app::Apps::load(&config, &github_api)?);
    let metrics = Arc::new(metrics::Metrics::default());
    let sealer = Arc::new(match &secret {
        Some(s) => seal::Sealer::new(s),
        None => seal::Sealer::from_data_dir(&data_dir).map_err(io(format!(
            "cannot keep the job seal key in {}",
            data_dir.display()
        )))?,
    });
    let draining = Arc::new(AtomicBool::new(false));
    let settings = Arc::new(worker_settings(&args, &opened)?);
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..args.workers {
        let w = Worker {
            queue: queue.clone(),
            apps: apps.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
            settings: settings.clone(),
            phase: phase_rx.clone(),
            sealer: sealer.clone(),
        };
        workers.spawn(w.run(n));
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(io(format!("cannot listen on {}", args.listen)))?;
    let local = listener
        .local_addr()
        .map_err(io("cannot read the listening address"))?;
    // On stdout so scripts (and tests using port 0) can find us.
    println!("kiln agent listening on http://{local}");
    tracing::info!(
        "kiln agent: {} worker(s), data dir {}, {} repositor(ies), webhooks {}",
        args.workers,
        data_dir.display(),
        config.repositories.len(),
        if secret.is_some() { "on" } else { "off" }
    );
    let web = web_state(&config, queue.clone(), &data_dir, &agent_id)?;
    let api = api_auth::api_access(config.public_api, config.api_token_file.as_deref(), &|k| {
        std::env::var(k).ok()
    })
    .map_err(AgentError::Secret)?;
    let state = Arc::new(http::AppState {
        queue: queue.clone(),
        config: config.clone(),
        metrics,
        secret,
        max_body: args.max_body,
        draining: draining.clone(),
        data_dir: data_dir.clone(),
        workers: args.workers,
        api: Arc::new(api),
        sealer: sealer.clone(),
    });
    let (server_stop_tx, server_stop_rx) = watch::channel(false);
    let mut server = tokio::spawn(async move {
        let mut rx = server_stop_rx;
        let limits = listen::ConnLimits::from_env(&|k| std::env::var(k).ok());
        listen::serve(listener, http::router(state, web), limits, async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await;
        Ok::<(), std::io::Error>(())
    });

    let (drain_tx, drain_rx) = watch::channel(false);
    let host = this_host(&agent_id, local, args.workers);
    register(queue.clone(), host, drain_rx.clone());
    spawn_pruner(
        queue.clone(),
        data_dir.clone(),
        args.retain,
        drain_rx.clone(),
    );
    if let Some(interval) = args.poll {
        let poller = poll::Poller::new(queue.clone(), config.clone(), github_api, sealer);
        let mut rx = drain_rx.clone();
        tokio::spawn(poller.run(interval, async move {
            let _ = rx.wait_for(|d| *d).await;
        }));
    }

    tokio::select! {
        _ = shutdown_signal() => {}
        r = &mut server => {
            // The server only ends by itself on an I/O error.
            queue.stop();
            return match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(AgentError::Io { what: "HTTP server failed".into(), source: e }),
                Err(e) => Err(AgentError::Io { what: "HTTP server failed".into(), source: std::io::Error::other(e.to_string()) }),
            };
        }
    }

    // Drain: refuse new deliveries, let running builds finish within the grace period.
    draining.store(true, Ordering::SeqCst);
    let _ = drain_tx.send(true);
    queue.stop();
    drain_workers(workers, args.grace, &phase_tx).await;
    let _ = server_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    tracing::info!("kiln agent stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_from_env_or_file_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "from-file\n").unwrap();
        let fp = f.display().to_string();
        let s = read_secret(&|k| (k == "KILN_WEBHOOK_SECRET_FILE").then(|| fp.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(s.sign(b"x"), Secret::new("from-file").sign(b"x"));
        let both = read_secret(&|_| Some("hunter2".into()))
            .unwrap_err()
            .to_string();
        assert!(
            both.contains("only one") && !both.contains("hunter2"),
            "{both}"
        );
        assert!(read_secret(&|_| None).unwrap().is_none());
    }
}

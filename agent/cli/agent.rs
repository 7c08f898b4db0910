//! `kiln agent` flags (the server is in `server`). The webhook secret is deliberately not a flag: command lines are visible
//! to every user of the machine (`ps`) and end up in shell histories.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::server::AgentSettings;
use crate::settings::{names, Machine};

/// Run a long-lived build server that takes GitHub webhooks (or polls GitHub) and builds every
/// push and pull request of the repositories in agent.yml with `kiln run`.
///
/// The webhook secret comes from KILN_WEBHOOK_SECRET or from the file named by
/// KILN_WEBHOOK_SECRET_FILE. See docs/agent.md.
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Address to listen on (use a reverse proxy for TLS). Port 0 picks a free port; the address
    /// is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:8473", env = names::AGENT_LISTEN)]
    pub listen: SocketAddr,
    /// Directory for the queue, logs, summaries and work dirs.
    #[arg(long, env = names::AGENT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Builds run at once. 0 queues deliveries durably without building them (a standby or
    /// load-test mode).
    #[arg(long, default_value_t = 2, env = names::AGENT_WORKERS)]
    pub workers: usize,
    /// The agent config (default: <data-dir>/agent.yml).
    #[arg(long, env = names::AGENT_CONFIG)]
    pub config: Option<PathBuf>,
    /// Also poll GitHub for new branch heads at this interval, e.g. 60s (for machines GitHub's
    /// webhooks cannot reach). The API is GITHUB_API_URL (default https://api.github.com).
    #[arg(long, value_parser = humantime::parse_duration, env = names::AGENT_POLL)]
    pub poll: Option<Duration>,
    /// Kill a build after this long (default: defaults.timeout in agent.yml, else 1h; a
    /// repository's own `timeout` wins).
    #[arg(long, value_parser = humantime::parse_duration, env = names::AGENT_JOB_TIMEOUT)]
    pub job_timeout: Option<Duration>,
    /// On SIGTERM, how long running builds may take to finish before they are killed (and run
    /// again at the next start).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m", env = names::AGENT_GRACE)]
    pub grace: Duration,
    /// Delete finished jobs (record, log, summary) older than this, e.g. 30d; checked at start
    /// and hourly. The newest job of each branch is always kept.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30d", env = names::AGENT_RETAIN)]
    pub retain: Duration,
    /// The job queue: `embedded` (one host; files under the data dir) or a PostgreSQL URL,
    /// e.g. postgres://kiln@db.internal/kiln, shared by every agent of a fleet (the schema is
    /// created and migrated at start). Put the password in PGPASSWORD or ~/.pgpass rather than
    /// in the URL: command lines are visible to every user of the machine.
    #[arg(long, default_value = "embedded", env = names::AGENT_QUEUE)]
    pub queue: String,
    /// With the PostgreSQL queue: how long a host's claim on a job holds without a heartbeat.
    /// When a host dies, another takes its jobs over this long after its last heartbeat.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s", env = names::AGENT_LEASE)]
    pub lease: Duration,
    /// Largest webhook body accepted, e.g. 25MiB (GitHub's own cap), 512KiB. Larger ones get 413.
    #[arg(long, value_parser = crate::size::parse_size_usize, default_value = "25MiB", env = names::AGENT_MAX_BODY)]
    pub max_body: usize,
}

impl AgentArgs {
    /// The agent's settings: these flags and the machine's sandbox binary.
    pub fn settings(self, machine: &Machine) -> AgentSettings {
        AgentSettings {
            listen: self.listen,
            data_dir: self.data_dir,
            workers: self.workers,
            config: self.config,
            poll: self.poll,
            job_timeout: self.job_timeout,
            grace: self.grace,
            retain: self.retain,
            queue: self.queue,
            lease: self.lease,
            max_body: self.max_body,
            bwrap: machine.bwrap.clone(),
        }
    }
}

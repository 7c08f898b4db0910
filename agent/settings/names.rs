//! Every `KILN_*` environment variable Kiln reads or sets, by name, in one place.
//!
//! Code elsewhere names a variable through these constants, never a string literal, so a new
//! setting is added here first and `grep names::X` finds every reader. Which layer reads a name
//! (the [`super::env`] layer of `kiln run` options, a command's clap flag, a domain's own
//! settings) is said in each group's heading. Tests keep the literal names on purpose: they
//! check the names users type.

/// The prefix of every Kiln variable: none passes into the project's code but
/// [`crate::sandbox`]'s few build facts, and secret-looking ones are masked in Actions logs.
pub const PREFIX: &str = "KILN_";

// ---- `kiln run` options: the `KILN_*` layer under the flags (see `settings::env::layer`). ----

/// Path or git URL of the repository (`--repo`).
pub const REPO: &str = "KILN_REPO";
/// Revision to build (`--rev`).
pub const REV: &str = "KILN_REV";
/// Branch for reporting state (`--branch`).
pub const BRANCH: &str = "KILN_BRANCH";
/// kiln.yml path (`--config`).
pub const CONFIG: &str = "KILN_CONFIG";
/// Work dir (`--workdir`).
pub const WORKDIR: &str = "KILN_WORKDIR";
/// The cache store URL (`--store`; every command resolves it through `settings::store_url`).
pub const STORE: &str = "KILN_STORE";
/// Where the run summary is written (`--summary-json`).
pub const SUMMARY_JSON: &str = "KILN_SUMMARY_JSON";
/// Installer: `auto`, `uv` or `pip`.
pub const INSTALLER: &str = "KILN_INSTALLER";
/// The test command.
pub const TEST_COMMAND: &str = "KILN_TEST_COMMAND";
/// The test timeout (a humantime duration).
pub const TEST_TIMEOUT: &str = "KILN_TEST_TIMEOUT";
/// Checkout mode: `clean` or `reuse`.
pub const CHECKOUT: &str = "KILN_CHECKOUT";
/// Commits of history to clone (0 = all).
pub const CHECKOUT_DEPTH: &str = "KILN_CHECKOUT_DEPTH";
/// Report mode.
pub const REPORT_MODE: &str = "KILN_REPORT_MODE";
/// Do not save caches or report state (also set by `kiln agent` and by a bisect's inner runs).
pub const NO_SAVE: &str = "KILN_NO_SAVE";
/// Install only from wheels already on this machine.
pub const OFFLINE: &str = "KILN_OFFLINE";
/// Sandbox mode for the project's code.
pub const SANDBOX: &str = "KILN_SANDBOX";
/// Extra paths the sandbox hides.
pub const SANDBOX_HIDE: &str = "KILN_SANDBOX_HIDE";
/// Host unix sockets the sandbox keeps reachable (paths, or `@name` for abstract ones).
pub const SANDBOX_SOCKETS: &str = "KILN_SANDBOX_SOCKETS";
/// Directories the sandbox shows read-only although it hides their parent (untrusted builds too).
pub const SANDBOX_SHOW: &str = "KILN_SANDBOX_SHOW";
/// The code being built is a fork's pull request.
pub const UNTRUSTED: &str = "KILN_UNTRUSTED";
/// Whether the tests may use the network.
pub const TEST_NETWORK: &str = "KILN_TEST_NETWORK";
/// The Python interpreter.
pub const PYTHON: &str = "KILN_PYTHON";
/// Requirements files (comma or colon separated).
pub const REQUIREMENTS: &str = "KILN_REQUIREMENTS";
/// A command that replaces Kiln's install.
pub const BOOTSTRAP_COMMAND: &str = "KILN_BOOTSTRAP_COMMAND";
/// Extra text mixed into every cache key.
pub const CACHE_KEY_EXTRA: &str = "KILN_CACHE_KEY_EXTRA";
/// The most a restore may unpack (also `kiln cache restore --max-restore-size`).
pub const CACHE_MAX_RESTORE_SIZE: &str = "KILN_CACHE_MAX_RESTORE_SIZE";
/// Bisect a failing test over the commits since the last green run.
pub const BISECT: &str = "KILN_BISECT";
/// A ccache binary, or empty for none.
pub const CCACHE_BIN: &str = "KILN_CCACHE_BIN";
/// Where Kiln installs uv when it is not on PATH.
pub const TOOLS_DIR: &str = "KILN_TOOLS_DIR";

// ---- Tuning of one machine: store calls, unpacking, the terminal, the sandbox binary, the log. ----

/// Attempts per store call.
pub const STORE_RETRIES: &str = "KILN_STORE_RETRIES";
/// First retry delay, in milliseconds.
pub const STORE_RETRY_DELAY_MS: &str = "KILN_STORE_RETRY_DELAY_MS";
/// Timeout of one store call, in seconds.
pub const STORE_TIMEOUT: &str = "KILN_STORE_TIMEOUT";
/// Threads that unpack a restored archive.
pub const EXTRACT_THREADS: &str = "KILN_EXTRACT_THREADS";
/// Set (to anything) to turn off the progress line on a terminal.
pub const NO_PROGRESS: &str = "KILN_NO_PROGRESS";
/// A wheelhouse the offline install searches before the cache's.
pub const OFFLINE_WHEELHOUSE: &str = "KILN_OFFLINE_WHEELHOUSE";
/// The bubblewrap binary (default: `bwrap` on PATH).
pub const BWRAP_BIN: &str = "KILN_BWRAP_BIN";
/// `tracing` filter for Kiln's log.
pub const LOG: &str = "KILN_LOG";
/// Log format: `text` or `json` (`--log-format`).
pub const LOG_FORMAT: &str = "KILN_LOG_FORMAT";

// ---- Store backends: credentials and endpoints (see `cache::backends`, `cache::gha`). ----

/// S3 endpoint.
pub const S3_ENDPOINT: &str = "KILN_S3_ENDPOINT";
/// S3 region.
pub const S3_REGION: &str = "KILN_S3_REGION";
/// Use virtual-host-style S3 addresses.
pub const S3_VIRTUAL_HOST: &str = "KILN_S3_VIRTUAL_HOST";
/// WebDAV user.
pub const WEBDAV_USER: &str = "KILN_WEBDAV_USER";
/// WebDAV password (a secret).
pub const WEBDAV_PASSWORD: &str = "KILN_WEBDAV_PASSWORD";
/// WebDAV bearer token (a secret).
pub const WEBDAV_TOKEN: &str = "KILN_WEBDAV_TOKEN";
/// Google Cloud Storage endpoint.
pub const GCS_ENDPOINT: &str = "KILN_GCS_ENDPOINT";
/// Block size of a GitHub Actions cache upload, in bytes.
pub const GHA_BLOCK_SIZE: &str = "KILN_GHA_BLOCK_SIZE";
/// Blocks uploaded at once to the GitHub Actions cache.
pub const GHA_UPLOAD_CONCURRENCY: &str = "KILN_GHA_UPLOAD_CONCURRENCY";

// ---- `kiln cache` flags. ----

/// Archive compression (`--compression`).
pub const CACHE_COMPRESSION: &str = "KILN_CACHE_COMPRESSION";
/// Compression level (`--level`).
pub const CACHE_LEVEL: &str = "KILN_CACHE_LEVEL";
/// Most entries a restore may unpack (`--max-restore-entries`).
pub const CACHE_MAX_RESTORE_ENTRIES: &str = "KILN_CACHE_MAX_RESTORE_ENTRIES";

// ---- Reporting: where a run's result goes (see `ci`, `report`). ----

/// The pull request being built (set per job by `kiln agent`; passes into the sandbox).
pub const PR_NUMBER: &str = "KILN_PR_NUMBER";
/// The commit the report is about (passes into the sandbox).
pub const HEAD_SHA: &str = "KILN_HEAD_SHA";
/// `owner/name` on GitHub (passes into the sandbox).
pub const GITHUB_REPOSITORY: &str = "KILN_GITHUB_REPOSITORY";
/// The token the report uses on GitHub (a secret).
pub const GITHUB_TOKEN: &str = "KILN_GITHUB_TOKEN";
/// Link to this run's page.
pub const RUN_URL: &str = "KILN_RUN_URL";
/// SMTP user for the e-mail report.
pub const SMTP_USER: &str = "KILN_SMTP_USER";
/// SMTP password (a secret).
pub const SMTP_PASSWORD: &str = "KILN_SMTP_PASSWORD";

// ---- Set by Kiln for the project's code (never read back by Kiln). ----

/// The wheelhouse a bootstrap command may fill or use.
pub const WHEELHOUSE: &str = "KILN_WHEELHOUSE";
/// The venv a bootstrap command installs into.
pub const VENV: &str = "KILN_VENV";
/// Where the test command writes JUnit XML.
pub const JUNIT_DIR: &str = "KILN_JUNIT_DIR";
/// The test ids a rerun runs, one per line.
pub const RERUN_TESTS: &str = "KILN_RERUN_TESTS";

// ---- `kiln agent` (the build server; see `server`). ----

/// Listen address (`--listen`).
pub const AGENT_LISTEN: &str = "KILN_AGENT_LISTEN";
/// Data dir (`--data-dir`).
pub const AGENT_DATA_DIR: &str = "KILN_AGENT_DATA_DIR";
/// Concurrent builds (`--workers`).
pub const AGENT_WORKERS: &str = "KILN_AGENT_WORKERS";
/// agent.yml path (`--config`).
pub const AGENT_CONFIG: &str = "KILN_AGENT_CONFIG";
/// Poll interval (`--poll`).
pub const AGENT_POLL: &str = "KILN_AGENT_POLL";
/// Timeout of one build (`--job-timeout`).
pub const AGENT_JOB_TIMEOUT: &str = "KILN_AGENT_JOB_TIMEOUT";
/// Grace period at shutdown (`--grace`).
pub const AGENT_GRACE: &str = "KILN_AGENT_GRACE";
/// How long finished builds are kept (`--retain`).
pub const AGENT_RETAIN: &str = "KILN_AGENT_RETAIN";
/// Job queue (`--queue`).
pub const AGENT_QUEUE: &str = "KILN_AGENT_QUEUE";
/// Lease of a claimed job (`--lease`).
pub const AGENT_LEASE: &str = "KILN_AGENT_LEASE";
/// Largest request body (`--max-body`).
pub const AGENT_MAX_BODY: &str = "KILN_AGENT_MAX_BODY";
/// Most open connections.
pub const AGENT_MAX_CONNECTIONS: &str = "KILN_AGENT_MAX_CONNECTIONS";
/// Seconds a client has to send its request headers.
pub const AGENT_HEADER_TIMEOUT: &str = "KILN_AGENT_HEADER_TIMEOUT";
/// Token of the private job API (a secret).
pub const AGENT_API_TOKEN: &str = "KILN_AGENT_API_TOKEN";
/// The webhook secret (a secret).
pub const WEBHOOK_SECRET: &str = "KILN_WEBHOOK_SECRET";
/// A file holding the webhook secret (hidden from builds).
pub const WEBHOOK_SECRET_FILE: &str = "KILN_WEBHOOK_SECRET_FILE";
/// Marks a build's processes so the agent can find and kill them (passes into the sandbox).
pub const AGENT_JOB: &str = "KILN_AGENT_JOB";

// ---- `kiln index` (the package index server). ----

/// Listen address (`--listen`).
pub const INDEX_LISTEN: &str = "KILN_INDEX_LISTEN";
/// Bearer token clients must send (a secret).
pub const INDEX_TOKEN: &str = "KILN_INDEX_TOKEN";
/// `user:password` clients must send (a secret).
pub const INDEX_BASIC_AUTH: &str = "KILN_INDEX_BASIC_AUTH";

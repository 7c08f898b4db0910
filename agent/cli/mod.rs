//! The `kiln` command line: every argument struct of every command (one file per command with
//! subcommands or many flags), their conversion into the settings the domain code takes, and
//! the dispatch that turns each command's result into one exit code (see [`exit`]).
//!
//! Every command has one handler shape: `(its flags, &Machine) -> Exit`, where
//! [`Machine`](crate::settings::Machine) is what this machine is tuned with, read once in
//! [`main`]. Flags here are only flags: `kiln run`'s `KILN_*` variables are read by `settings`,
//! which merges them under the flags in one place.

pub mod agent;
pub mod bisect;
pub mod cache;
pub mod exit;
pub mod index;
pub mod run;
pub mod wheelhouse;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::LogFormat;
use crate::settings::{self, names, Machine};
use exit::{Classify, Exit};

/// Kiln: fast, clean CI builds for Python projects with compiled dependencies.
///
/// `kiln run` checks out a commit, restores the wheelhouse and ccache from a store, bootstraps a
/// fresh virtualenv (building only the wheels the wheelhouse lacks, through ccache), runs the
/// tests, saves what changed, and reports breakage to the commit authors.
///
/// Exit codes (every command): 0 success, 1 the answer is "no" (tests failed, a cache missed,
/// doctor found a problem), 2 usage or configuration error, 3 infrastructure error.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = names::LOG_FORMAT)]
    pub log_format: LogFormat,
    /// More detail in the logs.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build and test one commit: checkout, restore, bootstrap, test, save, report.
    ///
    /// Exit codes: 0 tests passed, 1 tests failed, 2 usage or config error, 3 infrastructure
    /// error (checkout or bootstrap failed).
    Run(run::RunArgs),
    /// Serve GitHub webhooks and build every push and pull request (see docs/agent.md).
    Agent(agent::AgentArgs),
    /// Save, restore, list and prune caches in a store (usable from any CI).
    Cache(cache::CacheArgs),
    /// Check this machine (git, python, pip, uv, ccache, compiler) and the store; say what to fix.
    Doctor(DoctorArgs),
    /// Write a commented kiln.yml for the project in the current directory.
    Init(InitArgs),
    /// Serve or publish the CI-built wheels as a package index for pip and uv.
    Index(index::IndexArgs),
    /// Carry wheels to machines without internet: export an archive, import it there.
    Wheelhouse(wheelhouse::WheelhouseArgs),
    /// List a branch's flakiest tests (from the history `kiln run` keeps in the store).
    ///
    /// A test is flaky in a build when it failed and then passed when re-run; it is known-flaky
    /// when it flipped in two or more of its last 20 builds.
    Flaky(FlakyArgs),
}

#[derive(Args, Debug)]
pub struct FlakyArgs {
    /// Repository whose history to read: a local path or a git URL (names the state like
    /// `kiln run --repo` does) [default: .]
    #[arg(long, default_value = ".")]
    pub repo: String,
    /// `owner/name` on GitHub (default: GITHUB_REPOSITORY, else the repository's origin URL)
    #[arg(long)]
    pub repository: Option<String>,
    /// Branch to list [env: KILN_BRANCH]
    #[arg(long, env = names::BRANCH)]
    pub branch: String,
    /// Cache store URL (default as for `kiln run`) [env: KILN_STORE]
    #[arg(long)]
    pub store: Option<String>,
    /// Print JSON (test name → history) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Config file to validate.
    #[arg(long, default_value = "kiln.yml", env = names::CONFIG)]
    pub config: PathBuf,
    /// Store to probe (write, read, delete a small object). [env: KILN_STORE]
    #[arg(long)]
    pub store: Option<String>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Overwrite an existing kiln.yml.
    #[arg(long)]
    pub force: bool,
}

/// Print an error the way every command does and say how it ends.
fn failed(command: &str, e: &(impl std::fmt::Display + Classify)) -> Exit {
    eprintln!("kiln{command}: error: {e}");
    e.exit()
}

/// Run one command to its exit code.
pub async fn dispatch(command: Command, machine: &Machine) -> Exit {
    match command {
        Command::Run(a) => run::run(a, machine).await,
        Command::Agent(a) => agent(a, machine).await,
        Command::Cache(a) => cache::commands::run(a, machine).await,
        Command::Doctor(a) => doctor(a, machine).await,
        Command::Init(a) => init(a, machine).await,
        Command::Index(a) => index(a, machine).await,
        Command::Wheelhouse(a) => wheelhouse(a, machine).await,
        Command::Flaky(a) => flaky(a, machine).await,
    }
}

/// The end of a command whose domain code returns an error that classifies itself.
fn ended(command: &str, result: Result<(), impl std::fmt::Display + Classify>) -> Exit {
    match result {
        Ok(()) => Exit::Success,
        Err(e) => failed(command, &e),
    }
}

/// `kiln agent`.
async fn agent(a: agent::AgentArgs, machine: &Machine) -> Exit {
    ended(" agent", crate::server::run(a.settings(machine)).await)
}

/// `kiln index`.
async fn index(a: index::IndexArgs, machine: &Machine) -> Exit {
    ended("", crate::index::run_cli(a, &machine.store).await)
}

/// `kiln wheelhouse`.
async fn wheelhouse(a: wheelhouse::WheelhouseArgs, machine: &Machine) -> Exit {
    ended("", crate::wheelhouse::run_cli(a, &machine.store).await)
}

/// `kiln doctor`: check this machine and the store.
async fn doctor(a: DoctorArgs, machine: &Machine) -> Exit {
    let store = settings::store_url(a.store, None, &settings::process_env);
    let checks = crate::doctor::run(&a.config, &store, machine).await;
    if crate::doctor::print(&checks) {
        Exit::Success
    } else {
        Exit::No
    }
}

/// `kiln init`: write a commented kiln.yml in the current directory.
async fn init(a: InitArgs, _machine: &Machine) -> Exit {
    let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    match crate::init::init(&dir, a.force) {
        Ok(path) => {
            println!("wrote {}", path.display());
            Exit::Success
        }
        Err(e) => {
            eprintln!("kiln: error: {e}");
            Exit::Usage
        }
    }
}

/// `kiln flaky`: read the branch's test histories from the store and list them.
async fn flaky(a: FlakyArgs, machine: &Machine) -> Exit {
    let env = settings::process_env;
    let url = settings::store_url(a.store, None, &env);
    let store = match crate::cache::Store::open(&url, &machine.store) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kiln flaky: error: {e}");
            return Exit::Usage;
        }
    };
    let target = crate::ci::ReportTarget::from_env(&env, crate::ci::current());
    let repository = match a.repository.or(target.repository) {
        Some(r) => r,
        None => crate::report::repo_identity(&a.repo).await,
    };
    match crate::report::state::flaky_histories(&store, &repository, &a.branch).await {
        Ok(h) if a.json => {
            println!("{}", serde_json::to_string_pretty(&h).unwrap_or_default());
            Exit::Success
        }
        Ok(h) => {
            print!("{}", crate::report::flaky::render_table(&h));
            Exit::Success
        }
        Err(e) => {
            eprintln!("kiln flaky: error: {e}");
            Exit::Infrastructure
        }
    }
}

/// The async runtime a command runs on. The agent and the package index serve many
/// connections (and jobs) at once: a thread per core. Everything else is one job whose heavy
/// work (archives, child processes) already runs on its own threads, so one runtime thread is
/// enough and spares the wake-ups between worker threads (a tenth of a warm `kiln run`'s own
/// CPU).
fn runtime_for(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    match command {
        Command::Agent(_) | Command::Index(_) => tokio::runtime::Runtime::new(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
}

/// `kiln`'s `main`: parse, set up logging and the runtime, run, exit.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    crate::logging::init(cli.log_format, cli.verbose);
    let machine = Machine::from_process_env();
    let runtime = match runtime_for(&cli.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kiln: cannot start the async runtime: {e}");
            return Exit::Infrastructure.into();
        }
    };
    runtime.block_on(dispatch(cli.command, &machine)).into()
}

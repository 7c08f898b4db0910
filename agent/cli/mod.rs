//! The `kiln` command line: every argument struct of every command (one file per command with
//! subcommands or many flags), and the dispatch that turns each command's result into one exit
//! code (see [`crate::exit`]).
//!
//! Flags here are only flags: `kiln run`'s `KILN_*` variables are read by `settings`, which
//! merges them under the flags in one place.

pub mod agent;
pub mod bisect;
pub mod cache;
pub mod index;
pub mod run;
pub mod wheelhouse;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exit::{Classify, Exit};
use crate::logging::LogFormat;
use crate::settings;
use crate::settings::names;

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
pub async fn dispatch(command: Command) -> Exit {
    match command {
        Command::Run(a) => run::run(a).await,
        Command::Agent(a) => match crate::server::run(a).await {
            Ok(()) => Exit::Success,
            Err(e) => failed(" agent", &e),
        },
        Command::Cache(a) => crate::cache::commands::run(a).await,
        Command::Doctor(a) => {
            let store = settings::store_url(a.store, None, &settings::process_env);
            let checks = crate::doctor::run(&a.config, &store).await;
            if crate::doctor::print(&checks) {
                Exit::Success
            } else {
                Exit::No
            }
        }
        Command::Init(a) => {
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
        Command::Index(a) => match crate::index::run_cli(a).await {
            Ok(()) => Exit::Success,
            Err(e) => failed("", &e),
        },
        Command::Wheelhouse(a) => match crate::wheelhouse::run_cli(a).await {
            Ok(()) => Exit::Success,
            Err(e) => failed("", &e),
        },
        Command::Flaky(a) => flaky(a).await,
    }
}

/// `kiln flaky`: read the branch's test histories from the store and list them.
async fn flaky(a: FlakyArgs) -> Exit {
    let env = settings::process_env;
    let url = settings::store_url(a.store, None, &env);
    let store = match crate::cache::Store::from_url(&url) {
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
    match crate::report::flaky::load(&store, &repository, &a.branch).await {
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
    let runtime = match runtime_for(&cli.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kiln: cannot start the async runtime: {e}");
            return Exit::Infrastructure.into();
        }
    };
    runtime.block_on(dispatch(cli.command)).into()
}

//! The `kiln` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use kiln::config::{CheckoutMode, Installer, ReportMode};
use kiln::logging::{self, LogFormat};
use kiln::pipeline::{self, RunOptions};

/// Kiln: fast, clean CI builds for Python projects with compiled dependencies.
///
/// `kiln run` checks out a commit, restores the wheelhouse and ccache from a store, bootstraps a
/// fresh virtualenv (building only the wheels the wheelhouse lacks, through ccache), runs the
/// tests, saves what changed, and reports breakage to the commit authors.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, propagate_version = true)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "KILN_LOG_FORMAT")]
    log_format: LogFormat,
    /// More detail in the logs.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build and test one commit: checkout, restore, bootstrap, test, save, report.
    ///
    /// Exit codes: 0 tests passed, 1 tests failed, 2 usage or config error, 3 infrastructure
    /// error (checkout or bootstrap failed).
    Run(RunArgs),
    /// Serve GitHub webhooks and build every push and pull request (see docs/agent.md).
    Agent(kiln::server::cli::AgentArgs),
    /// Save, restore, list and prune caches in a store (usable from any CI).
    Cache(kiln::cache::cli::CacheArgs),
    /// Check this machine (git, python, pip, uv, ccache, compiler) and the store; say what to fix.
    Doctor(DoctorArgs),
    /// Write a commented kiln.yml for the project in the current directory.
    Init(InitArgs),
    /// Serve or publish the CI-built wheels as a package index for pip and uv.
    Index(kiln::index::IndexArgs),
    /// Carry wheels to machines without internet: export an archive, import it there.
    Wheelhouse(kiln::wheelhouse::WheelhouseArgs),
}

#[derive(Args, Debug)]
struct DoctorArgs {
    /// Config file to validate.
    #[arg(long, default_value = "kiln.yml", env = "KILN_CONFIG")]
    config: PathBuf,
    /// Store to probe (write, read, delete a small object).
    #[arg(long, env = "KILN_STORE")]
    store: Option<String>,
}

#[derive(Args, Debug)]
struct InitArgs {
    /// Overwrite an existing kiln.yml.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Repository to build: a local path or a git URL.
    #[arg(long, default_value = ".", env = "KILN_REPO")]
    repo: String,
    /// Commit to build: a SHA, branch, tag or HEAD.
    #[arg(long, default_value = "HEAD", env = "KILN_REV")]
    rev: String,
    /// Branch name for reporting state (default: the branch --rev names, if any).
    #[arg(long, env = "KILN_BRANCH")]
    branch: Option<String>,
    /// Config file (default: kiln.yml at the checkout's root; a missing file means defaults).
    #[arg(long, env = "KILN_CONFIG")]
    config: Option<PathBuf>,
    /// Work directory, emptied at the start of every run (default: ~/.cache/kiln/work/<repo>).
    /// Kiln refuses to empty a non-empty directory it did not create.
    #[arg(long, env = "KILN_WORKDIR")]
    workdir: Option<PathBuf>,
    /// Cache store URL: file:///path, s3://bucket/prefix, gha, webdav+https://host/path, ...
    /// (default: file://~/.cache/kiln/store).
    #[arg(long, env = "KILN_STORE")]
    store: Option<String>,
    /// Write the run summary as JSON to this file.
    #[arg(long, env = "KILN_SUMMARY_JSON")]
    summary_json: Option<PathBuf>,
    /// Which tool installs the wheels (overrides bootstrap.installer).
    #[arg(long, value_enum, env = "KILN_INSTALLER")]
    installer: Option<Installer>,
    /// Test command (overrides test.command).
    #[arg(long, env = "KILN_TEST_COMMAND")]
    test_command: Option<String>,
    /// `clone` a fresh checkout, or `reuse` the --repo directory as it is.
    #[arg(long, value_enum, env = "KILN_CHECKOUT")]
    checkout: Option<CheckoutMode>,
    /// When to notify people (overrides report.mode).
    #[arg(long, value_enum, env = "KILN_REPORT_MODE")]
    report_mode: Option<ReportMode>,
    /// Do not save caches (use for untrusted builds).
    #[arg(long, env = "KILN_NO_SAVE", value_parser = clap::builder::BoolishValueParser::new())]
    no_save: bool,
    /// No network: install only from the wheelhouse and imported wheels (`kiln wheelhouse
    /// import`), failing with the name of any requirement that has no wheel there.
    #[arg(long, env = "KILN_OFFLINE", value_parser = clap::builder::BoolishValueParser::new())]
    offline: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kiln: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let code = runtime.block_on(dispatch(cli.command));
    ExitCode::from(code)
}

async fn dispatch(command: Command) -> u8 {
    match command {
        Command::Agent(a) => match kiln::server::run(a).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("kiln agent: error: {e}");
                2
            }
        },
        Command::Cache(a) => kiln::cache::cli::run(a).await,
        Command::Doctor(a) => {
            let store = a.store.unwrap_or_else(kiln::cache::store::auto_url);
            let checks = kiln::doctor::run(&a.config, &store).await;
            if kiln::doctor::print(&checks) {
                0
            } else {
                1
            }
        }
        Command::Init(a) => {
            let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            match kiln::init::init(&dir, a.force) {
                Ok(path) => {
                    println!("wrote {}", path.display());
                    0
                }
                Err(e) => {
                    eprintln!("kiln: error: {e}");
                    2
                }
            }
        }
        Command::Run(a) => {
            let opts = RunOptions {
                repo: a.repo,
                rev: a.rev,
                config: a.config,
                workdir: a.workdir,
                store: a.store,
                summary_json: a.summary_json,
                installer: a.installer,
                test_command: a.test_command,
                branch: a.branch,
                checkout: a.checkout,
                report_mode: a.report_mode,
                no_save: a.no_save,
                offline: a.offline,
            };
            match pipeline::run(opts).await {
                Ok(summary) => summary.exit_code as u8,
                Err(e) => {
                    eprintln!("kiln: error: {e}");
                    2
                }
            }
        }
        Command::Index(a) => match kiln::index::run_cli(a).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("kiln: error: {e}");
                1
            }
        },
        Command::Wheelhouse(a) => match kiln::wheelhouse::run_cli(a).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("kiln: error: {e}");
                1
            }
        },
    }
}

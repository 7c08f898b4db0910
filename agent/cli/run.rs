//! `kiln run`: the flags, then settings → executor → report → console and summary JSON.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::ci::{self, ReportTarget};
use crate::report::culprit::Bisector;

use super::bisect::StepBuilds;
use super::exit::{Classify, Exit};
use crate::report::{self, RunFacts};
use crate::run::{self, stage::Done, Finished, Stage, StageHooks};
use crate::settings::{self, CheckoutMode, Installer, Layer, ReportMode};
use crate::summary::{RunSummary, StageOutcome};

/// `kiln run`'s flags. Each has a `KILN_*` variable (read by `settings`, below the flag).
#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// Repository to build: a local path or a git URL [default: .] [env: KILN_REPO]
    #[arg(long)]
    pub repo: Option<String>,
    /// Commit to build: a SHA, branch, tag or HEAD [default: HEAD] [env: KILN_REV]
    #[arg(long)]
    pub rev: Option<String>,
    /// Branch name for reporting state (default: the branch --rev names, if any) [env: KILN_BRANCH]
    #[arg(long)]
    pub branch: Option<String>,
    /// Config file (default: kiln.yml at the checkout's root; a missing file means defaults)
    /// [env: KILN_CONFIG]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Work directory, emptied at the start of every run (default: ~/.cache/kiln/work/<repo>).
    /// Kiln refuses to empty a non-empty directory it did not create. [env: KILN_WORKDIR]
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Cache store URL: file:///path, s3://bucket/prefix, gha, webdav+https://host/path, ...
    /// (default: file://~/.cache/kiln/store) [env: KILN_STORE]
    #[arg(long)]
    pub store: Option<String>,
    /// Write the run summary as JSON to this file [env: KILN_SUMMARY_JSON]
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Which tool installs the wheels (overrides bootstrap.installer) [env: KILN_INSTALLER]
    #[arg(long, value_enum)]
    pub installer: Option<Installer>,
    /// Test command (overrides test.command) [env: KILN_TEST_COMMAND]
    #[arg(long)]
    pub test_command: Option<String>,
    /// `clone` a fresh checkout, or `reuse` the --repo directory as it is [env: KILN_CHECKOUT]
    #[arg(long, value_enum)]
    pub checkout: Option<CheckoutMode>,
    /// Commits of history to clone; 0 = all (default: 1 for a network remote, all for a local
    /// path; blame fetches more when it needs it) [env: KILN_CHECKOUT_DEPTH]
    #[arg(long, value_name = "N")]
    pub checkout_depth: Option<u32>,
    /// When to notify people (overrides report.mode) [env: KILN_REPORT_MODE]
    #[arg(long, value_enum)]
    pub report_mode: Option<ReportMode>,
    /// Do not save caches (use for untrusted builds) [env: KILN_NO_SAVE]
    #[arg(long)]
    pub no_save: bool,
    /// No network: install only from the wheelhouse and imported wheels (`kiln wheelhouse
    /// import`), failing with the name of any requirement that has no wheel there.
    /// [env: KILN_OFFLINE]
    #[arg(long)]
    pub offline: bool,
    /// When several commits since the last green build may have broken it, find the first
    /// failing one by bisection (warm builds of the failing tests) and tell only its authors
    /// (sets report.bisect.enabled; on by default in `problem` mode) [env: KILN_BISECT]
    #[arg(long, conflicts_with = "no_bisect")]
    pub bisect: bool,
    /// Blame the whole range since the last green build, without bisection
    /// (report.bisect.enabled: false) [env: KILN_BISECT=0]
    #[arg(long)]
    pub no_bisect: bool,
    /// How the project's code (builds, installs, tests) runs: `auto` (bubblewrap when it works
    /// here, else a warning), `bwrap` (or fail), `none` [env: KILN_SANDBOX]
    #[arg(long, value_enum)]
    pub sandbox: Option<crate::sandbox::SandboxMode>,
    /// Also hide this path from the project's code (repeatable; `kiln agent` hides its data
    /// dir, agent.yml and token files) [env: KILN_SANDBOX_HIDE, `:`-separated]
    #[arg(long, value_name = "PATH")]
    pub sandbox_hide: Vec<PathBuf>,
    /// Keep this host unix socket reachable from the project's code (repeatable; a path, or
    /// `@name` for an abstract socket, which keeps every abstract socket of the host reachable
    /// from steps with network) [env: KILN_SANDBOX_SOCKETS, `:`-separated]
    #[arg(long, value_name = "SOCKET")]
    pub sandbox_socket: Vec<String>,
    /// Show this directory read-only to the project's code although the sandbox hides its
    /// parent (`$HOME`, `/tmp`): a package dir an untrusted build's requirement files name
    /// (repeatable; trusted builds see the directories their configuration names)
    /// [env: KILN_SANDBOX_SHOW, `:`-separated]
    #[arg(long, value_name = "DIR")]
    pub sandbox_show: Vec<PathBuf>,
    /// The code is untrusted (a fork's pull request): no saves, no network for its tests, no
    /// secret-looking `env:` variables, kiln.yml cannot choose the sandbox [env: KILN_UNTRUSTED]
    #[arg(long)]
    pub untrusted: bool,
    /// Let the tests of untrusted code reach the network all the same [env: KILN_TEST_NETWORK]
    #[arg(long)]
    pub test_network: bool,
}

impl RunArgs {
    /// The flag layer of the settings.
    pub fn layer(self) -> Layer {
        Layer {
            repo: self.repo,
            rev: self.rev,
            branch: self.branch,
            config: self.config,
            workdir: self.workdir,
            store: self.store,
            summary_json: self.summary_json,
            installer: self.installer,
            test_command: self.test_command,
            checkout: self.checkout,
            checkout_depth: self.checkout_depth,
            report_mode: self.report_mode,
            no_save: self.no_save.then_some(true),
            offline: self.offline.then_some(true),
            bisect: match (self.bisect, self.no_bisect) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            sandbox: self.sandbox,
            sandbox_hide: (!self.sandbox_hide.is_empty()).then_some(self.sandbox_hide),
            sandbox_sockets: (!self.sandbox_socket.is_empty()).then_some(self.sandbox_socket),
            sandbox_show: (!self.sandbox_show.is_empty()).then_some(self.sandbox_show),
            untrusted: self.untrusted.then_some(true),
            test_network: self.test_network.then_some(true),
            ..Layer::default()
        }
    }
}

/// Under GitHub Actions, each stage is a collapsible log group.
struct LogGroups;

impl StageHooks for LogGroups {
    fn started(&self, stage: Stage) {
        ci::actions::group_start(&format!("kiln {stage}"));
    }
    fn finished(&self, _stage: Stage) {
        ci::actions::group_end();
    }
}

/// `kiln run` to its exit code.
pub async fn run(args: RunArgs, machine: &settings::Machine) -> Exit {
    let ci = ci::current();
    if let Some(ci) = ci {
        ci::actions::mask_secrets();
        if let Some(w) = &ci.payload_warning {
            tracing::warn!("{w}");
        }
    }
    let env = settings::process_env;
    let target = ReportTarget::from_env(&env, ci);
    let result = match settings::resolve(args.layer(), &env, ci, machine.clone()) {
        Ok(request) => run::execute(request, &LogGroups).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(finished) => Exit::from_run(report_and_seal(finished, &target).await.exit_code),
        Err(e) => {
            eprintln!("kiln: error: {e}");
            e.exit()
        }
    }
}

/// The report stage, then the console summary and the summary JSON.
pub async fn report_and_seal(f: Finished<'_>, target: &ReportTarget) -> RunSummary {
    let Finished {
        mut summary,
        mut stages,
        clock,
        request,
        paths,
        settings,
        store,
        log_tail,
        git,
        ..
    } = f;
    let default_report = settings::file::ReportConfig::default();
    let steps = settings
        .as_ref()
        .filter(|s| s.project.report.bisect.on(s.project.report.mode))
        .map(|s| StepBuilds::new(&request, s, &summary));
    let facts = RunFacts {
        repo: &request.repo,
        checkout: &paths.checkout,
        git: git.as_ref(),
        store: store.as_ref(),
        report: settings
            .as_ref()
            .map(|s| &s.project.report)
            .unwrap_or(&default_report),
        save_allowed: request.save_allowed,
        summary_json: request.summary_json.as_deref(),
        log_tail: &log_tail,
        target,
        bisector: steps.as_ref().map(|s| s as &dyn Bisector),
        test_command: settings.as_ref().map(|s| s.project.test.command.as_str()),
    };
    // The reports say how long the run took so far (the report stage itself is added below).
    clock.seal(&mut summary);
    let told = stages
        .time(Stage::Report, async {
            Done::new(
                report::report(&summary, &facts).await,
                StageOutcome::Ok,
                None,
            )
        })
        .await;
    if let Some(s) = &steps {
        s.clean_up();
    }
    told.seal(&mut summary);
    summary.stages = stages.into_summaries();
    clock.seal(&mut summary);
    report::console::print(&summary);
    if let Some(path) = &request.summary_json {
        if let Err(e) = write_summary(path, &summary) {
            tracing::error!("cannot write summary JSON to {}: {e}", path.display());
        }
    }
    summary
}

fn write_summary(path: &Path, summary: &RunSummary) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_vec_pretty(summary).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, path)
}

//! The breakage report of one build: blame → decide → deliver → remember.
//!
//! 1. Load the branch's state from the store (last green commit, who was told).
//! 2. Blame: the commits since the last green build, from git, else GitHub's compare API, else
//!    the tested commit alone; GitHub logins from the commits API.
//! 3. Decide with `policy` who hears about it under `report.mode`.
//! 4. Deliver: commit status + check run on every build, the @mention comment and the email
//!    only to the people decided on.
//! 5. Save the new state; fill `blame` and `notified` in the run summary.
//!
//! Nothing here can fail the build: every fault is a warning.

use crate::checkout;
use crate::config::ReportMode;
use crate::pipeline::RunContext;
use crate::summary::{BlameEntry, Notified, Outcome};

use super::blame::{self, Commit, Person};
use super::email::Mailer;
use super::github::GitHub;
use super::policy::{self, Decision};
use super::render;
use super::state::{self, BranchState};

/// The test stage leaves the tail of the test output here (in the results dir) for the email.
pub const TEST_LOG_TAIL: &str = "test-output.log";

/// Lines of test output quoted in an email.
const LOG_TAIL_LINES: usize = 60;

/// At most this many commits get a GitHub login lookup (one API call each).
const MAX_LOGIN_LOOKUPS: usize = 30;

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

/// The link a status or message points to: `KILN_RUN_URL`, else the GitHub Actions run.
fn run_url() -> Option<String> {
    env("KILN_RUN_URL").or_else(|| {
        Some(format!(
            "{}/{}/actions/runs/{}",
            env("GITHUB_SERVER_URL")?.trim_end_matches('/'),
            env("GITHUB_REPOSITORY")?,
            env("GITHUB_RUN_ID")?
        ))
    })
}

/// The blamed commits for `base..head`, by the best means available.
async fn commits(
    ctx: &RunContext,
    github: Option<&GitHub>,
    base: Option<&str>,
    head: &str,
) -> (Vec<Commit>, Option<String>) {
    let dir = &ctx.paths.checkout;
    // With `checkout: reuse` the repository *is* the checkout (e.g. a shallow actions/checkout):
    // missing history then comes from its `origin`.
    let same = |a: &std::path::Path, b: &std::path::Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    let repo = if same(std::path::Path::new(&ctx.opts.repo), dir) {
        "origin".to_string()
    } else {
        checkout::repo_location(&ctx.opts.repo)
    };
    match blame::git_commits(dir, &repo, base, head).await {
        Ok(c) => return (c, base.map(str::to_string)),
        Err(e) => tracing::warn!("blame from git: {e}"),
    }
    if let (Some(gh), Some(base)) = (github, base) {
        match gh.compare(base, head).await {
            Ok(c) => return (c, Some(base.to_string())),
            Err(e) => tracing::warn!("blame from GitHub's compare API: {e}"),
        }
    }
    tracing::warn!("blaming the tested commit alone");
    match blame::git_commits(dir, &repo, None, head).await {
        Ok(c) => (c, None),
        Err(e) => {
            tracing::warn!("cannot read the tested commit's author: {e}");
            (Vec::new(), None)
        }
    }
}

/// Fill authors' GitHub logins from the commits API, then share what is known between the
/// records of the same person (a co-author is often the author of another commit).
async fn fill_logins(github: Option<&GitHub>, commits: &mut [Commit]) {
    if let Some(gh) = github {
        use futures::StreamExt;
        let shas: Vec<String> = commits
            .iter()
            .filter(|c| c.author.login.is_none())
            .take(MAX_LOGIN_LOOKUPS)
            .map(|c| c.sha.clone())
            .collect();
        // A few at a time: fast, and gentle with GitHub's secondary rate limits.
        let found: Vec<(String, _)> = futures::stream::iter(shas)
            .map(|sha| async move {
                let login = gh.commit_author_login(&sha).await;
                (sha, login)
            })
            .buffered(4)
            .collect()
            .await;
        let mut warned = false;
        for (sha, login) in found {
            match login {
                Ok(login) => {
                    if let Some(c) = commits.iter_mut().find(|c| c.sha == sha) {
                        c.author.login = login;
                    }
                }
                Err(e) if !warned => {
                    tracing::warn!("cannot look up a GitHub login: {e}");
                    warned = true;
                }
                Err(_) => {}
            }
        }
    }
    let everyone = blame::people(commits);
    for c in commits.iter_mut() {
        for p in std::iter::once(&mut c.author).chain(c.co_authors.iter_mut()) {
            if let Some(known) = everyone.iter().find(|k| k.same_as(p)) {
                p.merge(known);
            }
        }
    }
}

/// What names the repository in the state's key when GitHub's `owner/name` is unknown: the
/// `origin` URL of a local clone (so fresh clones in different directories share their state),
/// else the location Kiln was given.
async fn repo_identity(repo: &str) -> String {
    let location = checkout::repo_location(repo);
    if std::path::Path::new(&location).is_dir() {
        let origin = crate::git::run(
            std::path::Path::new(&location),
            &["config", "--get", "remote.origin.url"],
        )
        .await;
        if let Ok(out) = origin {
            let url = out.stdout_text().trim().to_string();
            if out.success && !url.is_empty() {
                return url;
            }
        }
    }
    location
}

fn blame_entries(commits: &[Commit]) -> Vec<BlameEntry> {
    commits
        .iter()
        .flat_map(|c| {
            c.people().into_iter().map(|p| BlameEntry {
                sha: c.sha.clone(),
                author: p.name,
                login: p.login,
                email: p.email,
            })
        })
        .collect()
}

/// How long the breakage report may take in all (retries included).
const REPORT_BUDGET: std::time::Duration = std::time::Duration::from_secs(300);

/// Report one build. Never fails; faults are logged as warnings. A hung API or mail server must
/// not hold the build: the whole report gets a time budget.
pub async fn report(ctx: &mut RunContext) {
    if tokio::time::timeout(REPORT_BUDGET, report_build(ctx))
        .await
        .is_err()
    {
        tracing::warn!(
            "breakage report abandoned after {}s (GitHub or SMTP not answering)",
            REPORT_BUDGET.as_secs()
        );
    }
}

async fn report_build(ctx: &mut RunContext) {
    if ctx.summary.commit.is_empty() {
        tracing::debug!("no commit was checked out: no breakage report");
        return;
    }
    let sha = ctx.summary.commit.clone();
    let outcome = ctx.summary.outcome;
    let mode = ctx.config.report.mode;

    let github = if ctx.config.report.github.enabled {
        match GitHub::from_env(&env) {
            Some(Ok(g)) => Some(g),
            Some(Err(e)) => {
                tracing::warn!("GitHub reporting off: {e}");
                None
            }
            None => None,
        }
    } else {
        None
    };
    let mailer = match Mailer::from_config(&ctx.config.report.email, &env) {
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            tracing::warn!("email reporting off: {e}");
            None
        }
        None => None,
    };
    let repository = match github
        .as_ref()
        .map(GitHub::repository)
        .or_else(|| env("KILN_GITHUB_REPOSITORY"))
        .or_else(|| env("GITHUB_REPOSITORY"))
    {
        Some(r) => r,
        None => repo_identity(&ctx.opts.repo).await,
    };
    let branch = ctx.summary.branch.clone();

    // 1. state
    let state_path = branch.as_deref().map(|b| state::state_path(&repository, b));
    let (prev, can_save) = match (&ctx.store, &state_path) {
        (Some(store), Some(path)) => match state::load(store, path).await {
            Ok(s) => (s, true),
            Err(e) => {
                tracing::warn!("{e}; reporting as if this were the branch's first build");
                (BranchState::default(), false)
            }
        },
        _ => {
            tracing::info!("no branch name: blaming the tested commit alone, no state kept");
            (BranchState::default(), false)
        }
    };

    // 2. blame
    let failing = outcome != Outcome::Passed;
    let base = if failing {
        prev.last_green.clone()
    } else {
        prev.last_sha.clone()
    };
    let (mut commits, base) = if failing || mode == ReportMode::All {
        if base.as_deref() == Some(sha.as_str()) {
            if failing {
                tracing::info!(
                    "no new commits since the last green build: a flaky test or a changed \
                     environment?"
                );
            }
            (Vec::new(), base)
        } else {
            commits(ctx, github.as_ref(), base.as_deref(), &sha).await
        }
    } else {
        (Vec::new(), base)
    };
    fill_logins(github.as_ref(), &mut commits).await;
    let culprits = if failing {
        blame::people(&commits)
    } else {
        Vec::new()
    };
    let new_commits: Vec<Commit> = commits
        .iter()
        .take_while(|c| Some(&c.sha) != prev.last_sha.as_ref())
        .cloned()
        .collect();
    let new_people = blame::people(&new_commits);
    if failing {
        ctx.summary.blame = blame_entries(&commits);
    }

    // 3. decide
    let failing_tests: Vec<String> = ctx
        .summary
        .tests
        .failures
        .iter()
        .map(|f| f.name.clone())
        .collect();
    let build = policy::Build {
        sha: &sha,
        outcome,
        culprits: &culprits,
        new_people: &new_people,
        failing_tests: &failing_tests,
    };
    let Decision { event, recipients } = policy::decide(mode, &prev, &build);
    tracing::info!(
        "report: {} ({} mode), {} to tell",
        event.word(),
        format!("{mode:?}").to_lowercase(),
        recipients.len()
    );

    // 4. deliver
    let log_tail = std::fs::read_to_string(ctx.paths.results.join(TEST_LOG_TAIL))
        .map(|t| {
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        })
        .unwrap_or_default();
    let url = run_url();
    let branch_name = branch.clone().unwrap_or_else(|| "(detached)".into());
    let r = render::Build {
        summary: &ctx.summary,
        event,
        repository: &repository,
        branch: &branch_name,
        base: base.as_deref(),
        commits: &commits,
        recipients: &recipients,
        log_tail: &log_tail,
        run_url: url.as_deref(),
    };
    let mut notified: Vec<Notified> = Vec::new();
    let mut told: Vec<Person> = Vec::new();

    if let Some(gh) = &github {
        to_github(gh, &r, &mut notified, &mut told).await;
    }
    if let Some(m) = &mailer {
        by_email(m, &r, &mut notified, &mut told).await;
    }
    if github.is_none() && mailer.is_none() && !recipients.is_empty() {
        tracing::info!(
            "no reporting channel configured (GITHUB_TOKEN + GITHUB_REPOSITORY, or \
             report.email.smtp): nobody told"
        );
    }
    for n in &notified {
        tracing::info!("told {} via {}", n.to, n.channel);
    }
    ctx.summary.notified = notified;

    // 5. remember
    let next = policy::next_state(&prev, &build, event, &told);
    // Not from untrusted builds (fork pull requests, --no-save): a fork's branch may be named
    // like one of ours, and its state would then decide who gets blamed there.
    if let (true, Some(store), Some(path)) = (can_save && ctx.save_allowed, &ctx.store, &state_path)
    {
        if let Err(e) = state::save(store, path, &next).await {
            tracing::warn!("cannot save the report state: {e}");
        }
    }
}

/// Status and check run on every build; the @mention comment when someone is to be told.
async fn to_github(
    gh: &GitHub,
    r: &render::Build<'_>,
    notified: &mut Vec<Notified>,
    told: &mut Vec<Person>,
) {
    // A pull request build tests GitHub's merge commit, but the PR shows the head commit's
    // checks: `KILN_HEAD_SHA` (set from the event) says where they belong.
    let sha = env("KILN_HEAD_SHA")
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| r.summary.commit.clone());
    let sha = &sha;
    let (state_word, description) = render::status(r.summary);
    if let Err(e) = gh
        .create_status(sha, state_word, &description, "kiln", r.run_url)
        .await
    {
        tracing::warn!("cannot post the commit status: {e}");
    }
    let mut run = render::check_run(r);
    run.head_sha = sha.clone();
    if let Err(e) = gh.create_check_run(&run).await {
        tracing::warn!("cannot post the check run: {e}");
    }
    if r.recipients.is_empty() {
        return;
    }
    let body = render::comment(r);
    let pr = env("KILN_PR_NUMBER").and_then(|n| match n.trim().parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            tracing::warn!("KILN_PR_NUMBER={n:?} is not a number: commenting on the commit");
            None
        }
    });
    let posted = match pr {
        Some(n) => gh.upsert_pr_comment(n, &body).await,
        None => gh.upsert_commit_comment(sha, &body).await,
    };
    match posted {
        Ok(_) => {
            for p in r.recipients {
                if let Some(l) = &p.login {
                    notified.push(Notified {
                        channel: "github".into(),
                        to: format!("@{l}"),
                    });
                    told.push(p.clone());
                }
            }
        }
        Err(e) => tracing::warn!("cannot post the comment: {e}"),
    }
}

/// One email to every recipient with an address that takes mail.
async fn by_email(
    m: &Mailer,
    r: &render::Build<'_>,
    notified: &mut Vec<Notified>,
    told: &mut Vec<Person>,
) {
    let mut to: Vec<(String, &Person)> = Vec::new();
    for p in r.recipients {
        if let Some(a) = p.mail_address() {
            if !to.iter().any(|(t, _)| t.eq_ignore_ascii_case(a)) {
                to.push((a.to_string(), p));
            }
        }
    }
    if to.is_empty() {
        return;
    }
    let mail = render::mail(r, to.iter().map(|(a, _)| a.clone()).collect());
    match m.send(&mail).await {
        Ok(()) => {
            for (a, p) in to {
                notified.push(Notified {
                    channel: "email".into(),
                    to: a,
                });
                if !told.iter().any(|t| t.same_as(p)) {
                    told.push(p.clone());
                }
            }
        }
        Err(e) => tracing::warn!("cannot send the email: {e}"),
    }
}

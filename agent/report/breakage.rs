//! The breakage report of one build: blame → decide → deliver → remember.
//!
//! 1. Load the branch's state from the store (last green commit, who was told); class a test
//!    command that could not start by whether the range changed it (`summary::classify`).
//! 2. Blame: the commits since the last green build, from git, else GitHub's compare API, else
//!    the tested commit alone; GitHub logins from the commits API.
//! 3. Decide with `policy` who hears about it under `report.mode`.
//! 4. Deliver: commit status + check run on every build, the @mention comment and the email
//!    only to the people decided on.
//! 5. Save the new state; return who was blamed and told, for the run summary.
//!
//! Nothing here can fail the build: every fault is a warning.

use std::path::Path;

use crate::cache::Store;
use crate::git::{repo_location, GitDir};
use crate::settings::ReportMode;
use crate::summary::{
    classify, BlameEntry, Cause, Culprit, Notified, Outcome, RangeFacts, RunSummary,
};

use super::blame::{self, Commit, Person};
use super::culprit;
use super::email::Mailer;
use super::flaky;
use super::github::GitHub;
use super::policy::{self, Decision, Event};
use super::render;
use super::state::{self, BranchState};
use super::{RunFacts, Told};

/// Lines of test output quoted in an email.
const LOG_TAIL_LINES: usize = 60;

/// At most this many commits get a GitHub login lookup (one API call each).
const MAX_LOGIN_LOOKUPS: usize = 30;

/// The blamed commits for `base..head`, by the best means available.
async fn commits(
    f: &RunFacts<'_>,
    github: Option<&GitHub>,
    base: Option<&str>,
    head: &str,
) -> (Vec<Commit>, Option<String>) {
    let dir = f.checkout;
    // With `checkout: reuse` the repository *is* the checkout (e.g. a shallow actions/checkout):
    // missing history then comes from its `origin`.
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    let Some(git) = f.git else {
        return (Vec::new(), None);
    };
    let repo = if same(Path::new(f.repo), dir) {
        "origin".to_string()
    } else {
        repo_location(f.repo)
    };
    match blame::git_commits(git, &repo, base, head).await {
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
    match blame::git_commits(git, &repo, None, head).await {
        Ok(c) => (c, None),
        Err(e) => {
            tracing::warn!("cannot read the tested commit's author: {e}");
            (Vec::new(), None)
        }
    }
}

/// GitHub logins of these commits' authors, a few lookups at a time (fast, and gentle with
/// GitHub's secondary rate limits).
async fn lookup_logins(gh: &GitHub, commits: &mut [Commit]) {
    use futures::StreamExt;
    let shas: Vec<String> = commits
        .iter()
        .filter(|c| c.author.login.is_none())
        .take(MAX_LOGIN_LOOKUPS)
        .map(|c| c.sha.clone())
        .collect();
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

/// Fill authors' GitHub logins from the commits API, then share what is known between the
/// records of the same person (a co-author is often the author of another commit).
async fn fill_logins(github: Option<&GitHub>, commits: &mut [Commit]) {
    if let Some(gh) = github {
        lookup_logins(gh, commits).await;
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
pub async fn repo_identity(repo: &str) -> String {
    let location = repo_location(repo);
    if Path::new(&location).is_dir() {
        if let Some(url) = crate::git::local_config(Path::new(&location), "remote.origin.url").await
        {
            return url;
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
/// not hold the build: blaming and telling each get a time budget (culprit finding, between
/// them, is bounded by its number of steps instead).
pub async fn report(s: &RunSummary, f: &RunFacts<'_>) -> Told {
    let untold = |s: &RunSummary| Told {
        outcome: Some(s.outcome),
        blame_withheld: policy::blame_withheld(s),
        ..Told::default()
    };
    if s.commit.is_empty() {
        tracing::debug!("no commit was checked out: no breakage report");
        return untold(s);
    }
    let Some(mut g) = budgeted(gather(s, f)).await else {
        return untold(s);
    };
    let s = g.summary.clone();
    if let Some(bisector) = f.bisector {
        g.culprit = find_culprit(&s, f, bisector, &mut g.blamed).await;
    }
    if s.outcome == Outcome::Error {
        tracing::warn!(
            "outcome error ({}): not a commit's fault, nobody blamed or told, the branch state \
             left as it was; the operator should look",
            s.error
                .as_deref()
                .map(super::vocab::first_line)
                .unwrap_or("Kiln or the machine failed")
        );
    }
    budgeted(tell(&s, f, g)).await.unwrap_or_else(|| untold(&s))
}

/// A test command that could not start is the machine's, unless the range changed it: then
/// the run is a broken build (the one place the class depends on the range).
async fn class_in_range(s: &RunSummary, f: &RunFacts<'_>, prev: &BranchState) -> RunSummary {
    let mut s = s.clone();
    if s.cause != Some(Cause::TestCommandNotStarted) {
        return s;
    }
    let Some(base) = prev.last_green.as_deref().filter(|b| *b != s.commit) else {
        return s;
    };
    let range = format!("{base}..{}", s.commit);
    // Through the git dir Kiln recorded before the project's code ran, never the checkout's
    // own config (the work dir is hostile once the tests ran).
    let Some(git) = f.git else {
        return s;
    };
    let changed = match git.stdout(&["diff", "--name-only", &range]).await {
        Ok(out) => out,
        Err(e) => {
            tracing::warn!("cannot tell whether {range} changed the test command: {e}");
            return s;
        }
    };
    let facts = RangeFacts {
        changed_test_command: changes_test_command(changed.lines(), f.test_command),
    };
    s.outcome = classify(Cause::TestCommandNotStarted, facts);
    s.exit_code = s.outcome.exit_code();
    s
}

/// Whether one of `changed` (paths from the checkout's root) is kiln.yml or a file the test
/// command names.
fn changes_test_command<'a>(
    changed: impl IntoIterator<Item = &'a str>,
    command: Option<&str>,
) -> bool {
    let named: Vec<&str> = command
        .unwrap_or("")
        .split_whitespace()
        .map(|w| w.trim_matches(['\'', '"']).trim_start_matches("./"))
        .filter(|w| !w.is_empty())
        .collect();
    changed
        .into_iter()
        .any(|p| matches!(p, "kiln.yml" | ".kiln.yml") || named.contains(&p))
}

async fn budgeted<T>(work: impl std::future::Future<Output = T>) -> Option<T> {
    match tokio::time::timeout(REPORT_BUDGET, work).await {
        Ok(t) => Some(t),
        Err(_) => {
            tracing::warn!(
                "breakage report abandoned after {}s (GitHub or SMTP not answering)",
                REPORT_BUDGET.as_secs()
            );
            None
        }
    }
}

/// The reporting channels this run has: GitHub (a token and a repository) and email.
struct Channels {
    github: Option<GitHub>,
    mailer: Option<Mailer>,
}

impl Channels {
    fn open(f: &RunFacts<'_>) -> Channels {
        let github = match f.target.github.as_ref().filter(|_| f.report.github.enabled) {
            Some(access) => match GitHub::new(&access.api_url, &access.token, &access.repository) {
                Ok(g) => Some(g),
                Err(e) => {
                    tracing::warn!("GitHub reporting off: {e}");
                    None
                }
            },
            None => None,
        };
        let mailer = match Mailer::from_config(&f.report.email, &crate::settings::process_env) {
            Some(Ok(m)) => Some(m),
            Some(Err(e)) => {
                tracing::warn!("email reporting off: {e}");
                None
            }
            None => None,
        };
        Channels { github, mailer }
    }
}

/// The branch's report state, and whether it may be saved back.
struct Memory<'a> {
    store: Option<&'a Store>,
    path: Option<String>,
    prev: BranchState,
    can_save: bool,
}

impl<'a> Memory<'a> {
    async fn load(store: Option<&'a Store>, repository: &str, branch: Option<&str>) -> Memory<'a> {
        let path = branch.map(|b| state::state_path(repository, b));
        let (prev, can_save) = match (store, &path) {
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
        Memory {
            store,
            path,
            prev,
            can_save,
        }
    }

    /// Not from untrusted builds (fork pull requests, --no-save): a fork's branch may be named
    /// like one of ours, and its state would then decide who gets blamed there.
    async fn save(&self, next: &BranchState, save_allowed: bool) {
        if let (true, Some(store), Some(path)) =
            (self.can_save && save_allowed, self.store, &self.path)
        {
            if let Err(e) = state::save(store, path, next).await {
                tracing::warn!("cannot save the report state: {e}");
            }
        }
    }
}

/// The commits a build is blamed on, and the people behind them.
#[derive(Default)]
struct Blamed {
    commits: Vec<Commit>,
    base: Option<String>,
    culprits: Vec<Person>,
    new_people: Vec<Person>,
}

async fn blame_range(
    s: &RunSummary,
    f: &RunFacts<'_>,
    github: Option<&GitHub>,
    prev: &BranchState,
) -> Blamed {
    let sha = s.commit.as_str();
    let failing = s.outcome.blames();
    let base = if failing {
        prev.last_green.clone()
    } else {
        prev.last_sha.clone()
    };
    let (mut commits, base) = if !failing && f.report.mode != ReportMode::All {
        (Vec::new(), base)
    } else if base.as_deref() == Some(sha) {
        if failing {
            tracing::info!(
                "no new commits since the last green build: a flaky test or a changed \
                 environment?"
            );
        }
        (Vec::new(), base)
    } else {
        commits(f, github, base.as_deref(), sha).await
    };
    fill_logins(github, &mut commits).await;
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
    Blamed {
        commits,
        base,
        culprits,
        new_people,
    }
}

/// The last lines of the test output, for the email.
fn log_tail(tail: &str) -> String {
    let lines: Vec<&str> = tail.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// What the report knows before it decides: channels, the branch's memory, the blame.
struct Gathered<'a> {
    /// The run's summary, its outcome classed in the range.
    summary: RunSummary,
    ch: Channels,
    repository: String,
    memory: Memory<'a>,
    blamed: Blamed,
    culprit: Option<Culprit>,
}

async fn gather<'a>(s: &RunSummary, f: &RunFacts<'a>) -> Gathered<'a> {
    let ch = Channels::open(f);
    let repository = match ch
        .github
        .as_ref()
        .map(GitHub::repository)
        .or_else(|| f.target.repository.clone())
    {
        Some(r) => r,
        None => repo_identity(f.repo).await,
    };
    let memory = Memory::load(f.store, &repository, s.branch.as_deref()).await;
    let summary = class_in_range(s, f, &memory.prev).await;
    // An error blames nobody: no range to read.
    let blamed = match summary.outcome {
        Outcome::Error => Blamed::default(),
        _ => blame_range(&summary, f, ch.github.as_ref(), &memory.prev).await,
    };
    Gathered {
        summary,
        ch,
        repository,
        memory,
        blamed,
        culprit: None,
    }
}

/// Bisect a failing range of several commits; on success only the culprit stays blamed.
async fn find_culprit(
    s: &RunSummary,
    f: &RunFacts<'_>,
    bisector: &dyn culprit::Bisector,
    blamed: &mut Blamed,
) -> Option<Culprit> {
    let base = blamed.base.clone()?;
    if s.outcome != Outcome::Failed || s.tests.failures.is_empty() || blamed.commits.len() < 2 {
        return None;
    }
    let started = std::time::Instant::now();
    let range = match first_parent_range(f.git, &base, &s.commit).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("culprit finding off: cannot list {base}..{}: {e}", s.commit);
            return None;
        }
    };
    let search = culprit::bisect(&range, bisector, f.report.bisect.max_steps).await;
    let found = search.culprit.as_ref().and_then(|sha| {
        let c = blamed.commits.iter().find(|c| &c.sha == sha)?;
        Some(c.clone())
    });
    let Some(commit) = found else {
        let why = search
            .why_not
            .unwrap_or_else(|| "the culprit is not in the blamed range".into());
        tracing::warn!(
            "no single culprit ({why}): blaming every commit since the last green build"
        );
        return None;
    };
    let people = commit.people();
    blamed
        .new_people
        .retain(|p| people.iter().any(|c| c.same_as(p)));
    blamed.culprits = blame::people(std::slice::from_ref(&commit));
    blamed.commits = vec![commit.clone()];
    let found = Culprit {
        sha: commit.sha,
        author: commit.author.name,
        subject: commit.subject,
        steps: search.tested.len() as u32,
        skipped: search.skipped(),
        seconds: started.elapsed().as_secs_f64(),
        others: range.len().saturating_sub(1) as u32,
    };
    tracing::info!(
        "culprit: {} ({}) after {} build(s) in {:.1}s",
        found.sha,
        found.author,
        found.steps,
        found.seconds
    );
    Some(found)
}

/// `base..head` along first parents, oldest first.
async fn first_parent_range(
    git: Option<&GitDir>,
    base: &str,
    head: &str,
) -> Result<Vec<String>, String> {
    let git = git.ok_or("the checkout failed")?;
    let range = format!("{base}..{head}");
    let out = git
        .stdout(&["rev-list", "--first-parent", "--reverse", &range])
        .await
        .map_err(|e| e.to_string())?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Decide, deliver, remember.
async fn tell(s: &RunSummary, f: &RunFacts<'_>, g: Gathered<'_>) -> Told {
    let Gathered {
        summary: _,
        ch,
        repository,
        memory,
        blamed,
        culprit,
    } = g;
    let failing_tests: Vec<String> = s.tests.failures.iter().map(|t| t.name.clone()).collect();
    let build = policy::Build {
        sha: &s.commit,
        outcome: s.outcome,
        culprits: &blamed.culprits,
        new_people: &blamed.new_people,
        failing_tests: &failing_tests,
    };
    let mode = f.report.mode;
    let Decision { event, recipients } = policy::decide(mode, &memory.prev, &build);
    tracing::info!(
        "report: {} ({} mode), {} to tell",
        event.word(),
        format!("{mode:?}").to_lowercase(),
        recipients.len()
    );
    let mut seen = s.clone();
    seen.culprit = culprit.clone();
    seen.blame_withheld = policy::blame_withheld(s);
    let (notified, told) = deliver(&seen, f, &ch, &repository, &blamed, event, &recipients).await;
    let mut next = policy::next_state(&memory.prev, &build, event, &told);
    if event != Event::Error {
        next.tests = flaky::update(&memory.prev.tests, s);
        memory.save(&next, f.save_allowed).await;
    }
    Told {
        blame: if s.outcome.blames() {
            blame_entries(&blamed.commits)
        } else {
            Vec::new()
        },
        notified,
        culprit,
        flaky: flaky::annotate(&s.flaky, &next.tests),
        outcome: Some(s.outcome),
        blame_withheld: policy::blame_withheld(s),
    }
}

/// Send the status, check run, comment and email; say who heard.
async fn deliver(
    s: &RunSummary,
    f: &RunFacts<'_>,
    ch: &Channels,
    repository: &str,
    blamed: &Blamed,
    event: Event,
    recipients: &[Person],
) -> (Vec<Notified>, Vec<Person>) {
    let tail = log_tail(f.log_tail);
    let branch_name = s.branch.clone().unwrap_or_else(|| "(detached)".into());
    let r = render::Build {
        summary: s,
        event,
        repository,
        branch: &branch_name,
        base: blamed.base.as_deref(),
        commits: &blamed.commits,
        recipients,
        log_tail: &tail,
        run_url: f.target.run_url.as_deref(),
    };
    let mut notified: Vec<Notified> = Vec::new();
    let mut told: Vec<Person> = Vec::new();
    if let Some(gh) = &ch.github {
        to_github(gh, f, &r, &mut notified, &mut told).await;
    }
    if let Some(m) = &ch.mailer {
        by_email(m, &r, &mut notified, &mut told).await;
    }
    if ch.github.is_none() && ch.mailer.is_none() && !recipients.is_empty() {
        tracing::info!(
            "no reporting channel configured (GITHUB_TOKEN + GITHUB_REPOSITORY, or \
             report.email.smtp): nobody told"
        );
    }
    for n in &notified {
        tracing::info!("told {} via {}", n.to, n.channel);
    }
    (notified, told)
}

/// Status and check run on every build; the @mention comment when someone is to be told.
async fn to_github(
    gh: &GitHub,
    f: &RunFacts<'_>,
    r: &render::Build<'_>,
    notified: &mut Vec<Notified>,
    told: &mut Vec<Person>,
) {
    // A pull request build tests GitHub's merge commit, but the PR shows the head commit's
    // checks: the target's head SHA says where they belong.
    let sha = f.target.head_sha.as_ref().unwrap_or(&r.summary.commit);
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
    let posted = match f.target.pr_number {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_changes_the_test_command_through_kiln_yml_or_the_file_it_names() {
        let cmd = Some("sh ./scripts/check.sh --fast");
        assert!(changes_test_command(["README", "kiln.yml"], cmd));
        assert!(changes_test_command(["scripts/check.sh"], cmd));
        assert!(!changes_test_command(["README", "src/app.py"], cmd));
        assert!(
            !changes_test_command(["check.sh"], cmd),
            "another file of that name"
        );
        assert!(!changes_test_command(["README"], None));
    }
}

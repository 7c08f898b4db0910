//! Where this run happens: GitHub Actions, read from the standard `GITHUB_*` variables and the
//! event payload at `GITHUB_EVENT_PATH`.
//!
//! `ci/` is the only code that reads or writes `GITHUB_*`, `RUNNER_*`, `ACTIONS_*`,
//! `GITHUB_OUTPUT` and `GITHUB_STEP_SUMMARY` (see [`actions`] for the writing side). Everything
//! else gets typed values: [`CiEnv`] (which commit, which PR, is it a fork), [`ReportTarget`]
//! (where the GitHub reporter posts) and [`CacheService`] (whether `gha` is the default store), so each
//! question has one answer per run.
//!
//! Detection is deliberately strict: only `GITHUB_ACTIONS=true` counts, so a developer with a
//! stray `GITHUB_REPOSITORY` in their shell does not get `::group::` lines or a `gha` store.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::Deserialize;

pub mod actions;
mod github;

pub use github::{clone_auth, GithubAccess, ReportTarget};

use crate::settings::names;

/// The job's cache service (v2) credentials, for the `gha` store.
#[derive(Clone)]
pub struct CacheService {
    /// `ACTIONS_RESULTS_URL`.
    pub results_url: String,
    /// `ACTIONS_RUNTIME_TOKEN`. Never logged.
    pub runtime_token: String,
    /// `GITHUB_TOKEN` and the repository, for listing and deleting entries (REST API).
    pub rest: Option<GithubAccess>,
}

impl std::fmt::Debug for CacheService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheService")
            .field("results_url", &self.results_url)
            .finish_non_exhaustive()
    }
}

impl CacheService {
    /// Errors name the missing variable.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<CacheService, String> {
        let var = |k: &str| non_empty(env(k));
        let results_url = var("ACTIONS_RESULTS_URL").ok_or_else(|| {
            cache_service_problem(env).unwrap_or_else(|| {
                "gha: ACTIONS_RESULTS_URL is not set (is this a GitHub Actions job?)".into()
            })
        })?;
        let runtime_token =
            var("ACTIONS_RUNTIME_TOKEN").ok_or("gha: ACTIONS_RUNTIME_TOKEN is not set")?;
        Ok(CacheService {
            results_url,
            runtime_token,
            rest: GithubAccess::from_env(env),
        })
    }
}

/// Why the environment does not give a usable cache service when some `ACTIONS_*` variables are
/// set but not the ones Kiln needs (`None` when both are there, or none of them is).
pub fn cache_service_problem(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    let token = set("ACTIONS_RUNTIME_TOKEN");
    let results = set("ACTIONS_RESULTS_URL");
    let any = token || results || set("ACTIONS_CACHE_URL") || set("ACTIONS_CACHE_SERVICE_V2");
    if !any || (token && results) {
        return None;
    }
    let missing: Vec<&str> = [
        ("ACTIONS_RESULTS_URL", results),
        ("ACTIONS_RUNTIME_TOKEN", token),
    ]
    .iter()
    .filter(|(_, ok)| !ok)
    .map(|(k, _)| *k)
    .collect();
    Some(format!(
        "the GitHub cache service needs ACTIONS_RESULTS_URL and ACTIONS_RUNTIME_TOKEN, but {} {} \
         not set (a plain `run:` step must export both; see docs/github-action.md); not using \
         the gha store",
        missing.join(" and "),
        if missing.len() == 1 { "is" } else { "are" }
    ))
}

/// The GitHub Actions facts Kiln uses. Built by [`CiEnv::from_env`]; see [`current`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CiEnv {
    /// `owner/name` (`GITHUB_REPOSITORY`).
    pub repository: Option<String>,
    /// The commit statuses and check runs belong on: the PR head for pull requests (GitHub shows
    /// checks there), else `GITHUB_SHA`.
    pub sha: Option<String>,
    /// `GITHUB_SHA`: the commit the workflow checked out (a merge commit for pull requests).
    pub workflow_sha: Option<String>,
    /// `GITHUB_REF`, e.g. `refs/heads/main` or `refs/pull/7/merge`.
    pub git_ref: Option<String>,
    /// The branch being built: the PR head branch for pull requests, else the pushed branch.
    /// `None` for tags.
    pub branch: Option<String>,
    /// The PR base branch (`GITHUB_BASE_REF`), for pull requests.
    pub base_branch: Option<String>,
    /// `GITHUB_EVENT_NAME`: `push`, `pull_request`, `schedule`, ...
    pub event_name: Option<String>,
    /// The pull request number, for `pull_request`/`pull_request_target` events.
    pub pr_number: Option<u64>,
    /// True when the PR head lives in another repository (a fork) or its repository is gone:
    /// such builds run untrusted code and must never write to the shared cache.
    pub fork: bool,
    /// `GITHUB_API_URL` (default `https://api.github.com`).
    pub api_url: String,
    /// `GITHUB_SERVER_URL` (default `https://github.com`).
    pub server_url: String,
    /// `GITHUB_RUN_ID`.
    pub run_id: Option<String>,
    /// Link to this workflow run's page (with the attempt when known).
    pub run_url: Option<String>,
    /// `GITHUB_WORKSPACE`: where actions/checkout put the sources.
    pub workspace: Option<PathBuf>,
    /// `GITHUB_ACTOR`.
    pub actor: Option<String>,
    /// `GITHUB_STEP_SUMMARY`: the Markdown file shown on the run's page.
    pub step_summary: Option<PathBuf>,
    /// `GITHUB_OUTPUT`: the step's outputs file.
    pub output: Option<PathBuf>,
    /// A problem reading the event payload (logged; the run goes on with what the variables say).
    pub payload_warning: Option<String>,
}

/// The parts of the event payload we read. Unknown fields are ignored: payloads are large.
#[derive(Debug, Default, Deserialize)]
struct Payload {
    #[serde(default)]
    pull_request: Option<PullRequest>,
    #[serde(default)]
    number: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct PullRequest {
    number: u64,
    head: Side,
    base: Side,
}

#[derive(Debug, Deserialize)]
struct Side {
    #[serde(default)]
    sha: Option<String>,
    #[serde(rename = "ref", default)]
    git_ref: Option<String>,
    /// `null` when the head repository was deleted.
    #[serde(default)]
    repo: Option<Repo>,
}

#[derive(Debug, Deserialize)]
struct Repo {
    full_name: String,
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The event payload at `path`, or a warning saying why it could not be read.
fn read_payload(path: Option<String>) -> (Payload, Option<String>) {
    let Some(path) = path else {
        return (Payload::default(), None);
    };
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Payload>(&bytes) {
            Ok(p) => (p, None),
            Err(e) => (
                Payload::default(),
                Some(format!("cannot parse the event payload {path}: {e}")),
            ),
        },
        Err(e) => (
            Payload::default(),
            Some(format!("cannot read the event payload {path}: {e}")),
        ),
    }
}

impl CiEnv {
    /// Read the environment through `get` (tests pass a map; [`current`] passes the process env).
    /// `None` unless `GITHUB_ACTIONS=true`.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Option<CiEnv> {
        if get("GITHUB_ACTIONS").as_deref() != Some("true") {
            return None;
        }
        let var = |k: &str| non_empty(get(k));
        let server_url = var("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
        let repository = var("GITHUB_REPOSITORY");
        let run_id = var("GITHUB_RUN_ID");
        let run_url = match (&repository, &run_id) {
            (Some(repo), Some(id)) => Some(match var("GITHUB_RUN_ATTEMPT") {
                Some(a) => format!("{server_url}/{repo}/actions/runs/{id}/attempts/{a}"),
                None => format!("{server_url}/{repo}/actions/runs/{id}"),
            }),
            _ => None,
        };
        let git_ref = var("GITHUB_REF");
        let event_name = var("GITHUB_EVENT_NAME");
        let workflow_sha = var("GITHUB_SHA");
        let mut env = CiEnv {
            repository,
            sha: workflow_sha.clone(),
            workflow_sha,
            branch: None,
            base_branch: var("GITHUB_BASE_REF"),
            event_name,
            pr_number: None,
            fork: false,
            api_url: var("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into()),
            server_url,
            run_id,
            run_url,
            workspace: var("GITHUB_WORKSPACE").map(PathBuf::from),
            actor: var("GITHUB_ACTOR"),
            step_summary: var("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            output: var("GITHUB_OUTPUT").map(PathBuf::from),
            payload_warning: None,
            git_ref,
        };
        // Branch from the variables: GITHUB_HEAD_REF is set only for pull requests.
        env.branch = var("GITHUB_HEAD_REF").or_else(|| {
            env.git_ref
                .as_deref()
                .and_then(|r| r.strip_prefix("refs/heads/"))
                .map(str::to_string)
        });

        let (payload, warning) = read_payload(var("GITHUB_EVENT_PATH"));
        env.payload_warning = warning;
        env.apply_payload(payload);
        Some(env)
    }

    /// What the event payload says about a pull request: its number, head commit and branch,
    /// base branch, and whether the head is a fork.
    fn apply_payload(&mut self, payload: Payload) {
        let is_pr_event = matches!(
            self.event_name.as_deref(),
            Some("pull_request" | "pull_request_target" | "pull_request_review")
        );
        if let Some(pr) = payload.pull_request {
            self.apply_pull_request(pr, is_pr_event);
        } else if is_pr_event {
            // A PR event without a readable payload: the number is in the ref, the fork status is
            // unknown, so assume the worst and do not save.
            self.pr_number = payload.number.or_else(|| {
                self.git_ref
                    .as_deref()
                    .and_then(|r| r.strip_prefix("refs/pull/"))
                    .and_then(|r| r.split('/').next())
                    .and_then(|n| n.parse().ok())
            });
            self.fork = true;
        }
    }

    fn apply_pull_request(&mut self, pr: PullRequest, is_pr_event: bool) {
        self.pr_number = Some(pr.number);
        if let Some(sha) = non_empty(pr.head.sha) {
            self.sha = Some(sha);
        }
        if self.branch.is_none() || is_pr_event {
            self.branch = non_empty(pr.head.git_ref).or(self.branch.take());
        }
        if self.base_branch.is_none() {
            self.base_branch = non_empty(pr.base.git_ref);
        }
        // A fork: the head repository differs from the base one, or it was deleted. Compare
        // names rather than trusting `head.repo.fork`, which is also true for a branch of a
        // repository that is itself a fork.
        self.fork = match (&pr.head.repo, &pr.base.repo) {
            (Some(h), Some(b)) => !h.full_name.eq_ignore_ascii_case(&b.full_name),
            (None, _) => true,
            (Some(h), None) => self
                .repository
                .as_deref()
                .is_none_or(|r| !h.full_name.eq_ignore_ascii_case(r)),
        };
    }

    /// Why caches must not be saved in this run, if they must not: a pull request whose head is a
    /// fork runs untrusted code, which could poison the cache every later build restores. For
    /// `kiln cache save` and the pipeline alike.
    pub fn save_forbidden(&self) -> Option<String> {
        self.fork.then(|| {
            format!(
                "pull request #{} comes from a fork: caches are restored but never saved",
                self.pr_number
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "?".into())
            )
        })
    }

    /// What the event says in the terms `kiln agent` passes to a child `kiln run`:
    /// `KILN_PR_NUMBER` (the PR comment) and `KILN_HEAD_SHA` (statuses and check runs go on the
    /// PR's head, not the merge commit). [`ReportTarget`] uses them where the variables are unset.
    pub fn exported_vars(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(n) = self.pr_number {
            out.push((names::PR_NUMBER, n.to_string()));
            if let Some(sha) = &self.sha {
                out.push((names::HEAD_SHA, sha.clone()));
            }
        }
        out
    }
}

static CURRENT: OnceLock<Option<CiEnv>> = OnceLock::new();

/// This process's CI environment, detected once. `None` outside GitHub Actions.
pub fn current() -> Option<&'static CiEnv> {
    CURRENT
        .get_or_init(|| CiEnv::from_env(&|k| std::env::var(k).ok()))
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_with(vars: &[(&str, &str)]) -> Option<CiEnv> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CiEnv::from_env(&move |k| map.get(k).cloned())
    }

    fn payload(dir: &tempfile::TempDir, json: &str) -> String {
        let p = dir.path().join("event.json");
        std::fs::write(&p, json).unwrap();
        p.display().to_string()
    }

    #[test]
    fn partial_actions_variables_are_named() {
        let problem = |vars: &[(&str, &str)]| {
            let map: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            cache_service_problem(&move |k| map.get(k).cloned())
        };
        assert_eq!(problem(&[]), None);
        assert_eq!(
            problem(&[
                ("ACTIONS_RUNTIME_TOKEN", "t"),
                ("ACTIONS_RESULTS_URL", "http://x/")
            ]),
            None
        );
        let w = problem(&[("ACTIONS_RESULTS_URL", "http://x/")]).unwrap();
        assert!(w.contains("ACTIONS_RUNTIME_TOKEN is not set"), "{w}");
        let w = problem(&[
            ("ACTIONS_RUNTIME_TOKEN", "ghs_x"),
            ("ACTIONS_CACHE_URL", "http://x/"),
        ])
        .unwrap();
        assert!(w.contains("ACTIONS_RESULTS_URL is not set"), "{w}");
        assert!(!w.contains("ghs_x"), "never prints a token");
    }

    #[test]
    fn not_actions_without_github_actions_true() {
        assert_eq!(env_with(&[("GITHUB_REPOSITORY", "a/b")]), None);
        assert_eq!(env_with(&[("GITHUB_ACTIONS", "false")]), None);
    }

    #[test]
    fn push_event() {
        let e = env_with(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REPOSITORY", "acme/widgets"),
            ("GITHUB_SHA", "abc123"),
            ("GITHUB_REF", "refs/heads/main"),
            ("GITHUB_REF_NAME", "main"),
            ("GITHUB_HEAD_REF", ""),
            ("GITHUB_EVENT_NAME", "push"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
        ])
        .unwrap();
        assert_eq!(e.repository.as_deref(), Some("acme/widgets"));
        assert_eq!(e.sha.as_deref(), Some("abc123"));
        assert_eq!(e.branch.as_deref(), Some("main"));
        assert_eq!(e.pr_number, None);
        assert!(!e.fork);
        assert_eq!(e.api_url, "https://api.github.com");
        assert_eq!(
            e.run_url.as_deref(),
            Some("https://github.com/acme/widgets/actions/runs/42/attempts/2")
        );
        assert!(e.exported_vars().is_empty());
    }

    #[test]
    fn tag_push_has_no_branch() {
        let e = env_with(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF", "refs/tags/v1.0.0"),
        ])
        .unwrap();
        assert_eq!(e.branch, None);
    }

    const PR: &str = r#"{
      "action": "synchronize", "number": 7,
      "pull_request": {
        "number": 7,
        "head": {"sha": "headsha", "ref": "feature/x", "repo": {"full_name": "HEAD_REPO", "fork": true}},
        "base": {"sha": "basesha", "ref": "main", "repo": {"full_name": "acme/widgets", "fork": false}}
      }
    }"#;

    #[test]
    fn same_repo_pull_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = payload(&dir, &PR.replace("HEAD_REPO", "acme/widgets"));
        let e = env_with(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REPOSITORY", "acme/widgets"),
            ("GITHUB_SHA", "mergesha"),
            ("GITHUB_REF", "refs/pull/7/merge"),
            ("GITHUB_HEAD_REF", "feature/x"),
            ("GITHUB_BASE_REF", "main"),
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_EVENT_PATH", &path),
            ("GITHUB_API_URL", "https://ghe.example/api/v3"),
        ])
        .unwrap();
        assert_eq!(e.pr_number, Some(7));
        assert_eq!(e.sha.as_deref(), Some("headsha"));
        assert_eq!(e.workflow_sha.as_deref(), Some("mergesha"));
        assert_eq!(e.branch.as_deref(), Some("feature/x"));
        assert_eq!(e.base_branch.as_deref(), Some("main"));
        assert!(!e.fork, "a branch of the same repository is not a fork");
        assert_eq!(e.api_url, "https://ghe.example/api/v3");
        assert_eq!(
            e.exported_vars(),
            vec![
                ("KILN_PR_NUMBER", "7".to_string()),
                ("KILN_HEAD_SHA", "headsha".to_string())
            ]
        );
    }

    #[test]
    fn fork_pull_request_and_deleted_fork() {
        let dir = tempfile::tempdir().unwrap();
        let path = payload(&dir, &PR.replace("HEAD_REPO", "mallory/widgets"));
        let vars = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REPOSITORY", "acme/widgets"),
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_EVENT_PATH", path.as_str()),
        ];
        assert!(env_with(&vars).unwrap().fork);

        let deleted = PR.replace(r#"{"full_name": "HEAD_REPO", "fork": true}"#, "null");
        let path = payload(&dir, &deleted);
        let vars = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_EVENT_PATH", path.as_str()),
        ];
        let e = env_with(&vars).unwrap();
        assert!(e.fork, "a PR whose head repository is gone is untrusted");
        assert_eq!(e.pr_number, Some(7));
    }

    #[test]
    fn unreadable_payload_on_a_pr_is_treated_as_a_fork() {
        let e = env_with(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_REF", "refs/pull/12/merge"),
            ("GITHUB_EVENT_PATH", "/nonexistent/event.json"),
        ])
        .unwrap();
        assert_eq!(e.pr_number, Some(12));
        assert!(e.fork);
        assert!(e
            .payload_warning
            .as_deref()
            .unwrap()
            .contains("/nonexistent/event.json"));
    }
}

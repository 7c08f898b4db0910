//! Where the GitHub reporter posts and with what token, from the variables GitHub Actions or
//! `kiln agent` set. Read once per run; the reporter gets these typed values.

use super::CiEnv;
use crate::settings::names;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var(env: Env, k: &str) -> Option<String> {
    env(k)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A token and a repository for GitHub's REST API.
#[derive(Clone, PartialEq, Eq)]
pub struct GithubAccess {
    /// `GITHUB_API_URL` (default `https://api.github.com`).
    pub api_url: String,
    /// `GITHUB_TOKEN`. Never logged.
    pub token: String,
    /// `KILN_GITHUB_REPOSITORY`, else `GITHUB_REPOSITORY`.
    pub repository: String,
}

impl std::fmt::Debug for GithubAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubAccess")
            .field("api_url", &self.api_url)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

impl GithubAccess {
    /// `None` when there is no token or no repository (GitHub reporting is then off).
    pub fn from_env(env: Env) -> Option<GithubAccess> {
        let token = var(env, "GITHUB_TOKEN")?;
        let repository = repository(env)?;
        let api_url = var(env, "GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
        Some(GithubAccess {
            api_url,
            token,
            repository,
        })
    }
}

/// `GITHUB_TOKEN` as git credentials for `repo`, when `repo` is an https URL on the GitHub server
/// (`GITHUB_SERVER_URL`, default `https://github.com`) and carries no credentials of its own.
pub fn clone_auth(repo: &str, env: Env) -> Option<crate::git::HttpAuth> {
    let token = var(env, "GITHUB_TOKEN")?;
    let server = var(env, "GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
    crate::git::HttpAuth::github_token(repo, &server, &token)
}

/// `owner/name` of the repository being built, when GitHub's variables say it.
fn repository(env: Env) -> Option<String> {
    var(env, names::GITHUB_REPOSITORY).or_else(|| var(env, "GITHUB_REPOSITORY"))
}

/// Where this build's reports belong.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportTarget {
    /// GitHub API access, when a token and a repository are known.
    pub github: Option<GithubAccess>,
    /// `owner/name`, when known (names the report state even without a token).
    pub repository: Option<String>,
    /// The pull request to comment on (`KILN_PR_NUMBER`, else the event's).
    pub pr_number: Option<u64>,
    /// The commit statuses and check runs go on (`KILN_HEAD_SHA`, else the PR head): a pull
    /// request build tests GitHub's merge commit, but the PR shows the head commit's checks.
    pub head_sha: Option<String>,
    /// A page about this run: `KILN_RUN_URL`, else the GitHub Actions run.
    pub run_url: Option<String>,
}

impl ReportTarget {
    /// Read the target from `env`, filling what the agent did not set from the Actions event.
    pub fn from_env(env: Env, ci: Option<&CiEnv>) -> ReportTarget {
        let from_event = ci.map(CiEnv::exported_vars).unwrap_or_default();
        let get = |k: &str| {
            var(env, k).or_else(|| {
                from_event
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.clone())
            })
        };
        let pr_number = get(names::PR_NUMBER).and_then(|n| match n.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                tracing::warn!(
                    "{}={n:?} is not a number: commenting on the commit",
                    names::PR_NUMBER
                );
                None
            }
        });
        let head_sha = get(names::HEAD_SHA)
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit()));
        ReportTarget {
            github: GithubAccess::from_env(env),
            repository: repository(env),
            pr_number,
            head_sha,
            run_url: run_url(env),
        }
    }
}

/// `KILN_RUN_URL`, else the GitHub Actions run's page.
fn run_url(env: Env) -> Option<String> {
    var(env, names::RUN_URL).or_else(|| {
        Some(format!(
            "{}/{}/actions/runs/{}",
            var(env, "GITHUB_SERVER_URL")?.trim_end_matches('/'),
            var(env, "GITHUB_REPOSITORY")?,
            var(env, "GITHUB_RUN_ID")?
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_variables_win_over_the_event() {
        let sha = "a".repeat(40);
        let ci = CiEnv {
            pr_number: Some(7),
            sha: Some("b".repeat(40)),
            ..CiEnv::default()
        };
        let env = |k: &str| match k {
            "KILN_HEAD_SHA" => Some(sha.to_uppercase()),
            "GITHUB_SERVER_URL" => Some("https://github.com/".into()),
            "GITHUB_REPOSITORY" => Some("octo/app".into()),
            "GITHUB_RUN_ID" => Some("9".into()),
            _ => None,
        };
        let t = ReportTarget::from_env(&env, Some(&ci));
        assert_eq!(t.pr_number, Some(7), "from the event");
        assert_eq!(
            t.head_sha.as_deref(),
            Some(sha.as_str()),
            "from KILN_HEAD_SHA"
        );
        assert_eq!(t.repository.as_deref(), Some("octo/app"));
        assert_eq!(
            t.run_url.as_deref(),
            Some("https://github.com/octo/app/actions/runs/9")
        );
        assert!(t.github.is_none(), "no token");
        let bad = ReportTarget::from_env(&|k| (k == "KILN_PR_NUMBER").then(|| "x".into()), None);
        assert_eq!(bad.pr_number, None);
    }
}

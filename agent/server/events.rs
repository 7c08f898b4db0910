//! What a GitHub webhook delivery asks of us: build a commit, answer a ping, or nothing.
//!
//! Only the fields we use are parsed, so GitHub adding fields never breaks us, but a field we need
//! that is missing or of the wrong type is a 400: building a guessed commit would be worse.

use serde::Deserialize;

use super::agent_yml::AgentConfig;

/// A commit to build, as decided from a delivery (or a poll).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    /// `owner/name` as configured.
    pub repo: String,
    pub sha: String,
    /// Branch name handed to `kiln run --branch`.
    pub branch: String,
    /// Builds in the same lane supersede each other: a newer one cancels the older.
    pub lane: String,
    /// `push`, `pull_request` or `poll`.
    pub event: String,
    pub pr_number: Option<u64>,
    /// The pull request comes from another repository: its code is untrusted.
    pub fork: bool,
    /// Who pushed, opened the pull request or asked for the re-run (GitHub login).
    pub author: Option<String>,
    /// The agent's seal over the fields that decide trust (see `seal`): None until sealed.
    pub seal: Option<String>,
}

/// The answer to a delivery that was understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Pong,
    Build(BuildRequest),
    /// Build `sha` of `repo` again as it was last built (a check run's "Re-run").
    Rerun {
        repo: String,
        sha: String,
    },
    /// Understood and deliberately not built (202 with this reason).
    Ignored(String),
}

/// A delivery we refuse (4xx, nothing queued).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("malformed payload: {0}")]
    Malformed(String),
    #[error("event `{0}` is not handled (subscribe the webhook to push, pull_request and check_run only)")]
    UnsupportedEvent(String),
    #[error("repository {0} is not configured in agent.yml")]
    UnknownRepo(String),
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
    #[serde(default)]
    default_branch: Option<String>,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct Pusher {
    name: String,
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    repository: Repository,
    #[serde(default)]
    pusher: Option<Pusher>,
    #[serde(default)]
    sender: Option<User>,
}

#[derive(Deserialize)]
struct PrSide {
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
    /// Null when the fork was deleted.
    repo: Option<Repository>,
}

#[derive(Deserialize)]
struct PullRequest {
    head: PrSide,
    #[serde(default)]
    user: Option<User>,
}

#[derive(Deserialize)]
struct PrEvent {
    action: String,
    number: u64,
    pull_request: PullRequest,
    repository: Repository,
}

#[derive(Deserialize)]
struct CheckRunBody {
    head_sha: String,
}

#[derive(Deserialize)]
struct CheckRunEvent {
    action: String,
    check_run: CheckRunBody,
    repository: Repository,
}

const PR_ACTIONS: [&str; 3] = ["opened", "synchronize", "reopened"];

/// Decide what the delivery `event` with `body` (already authenticated) asks for.
pub fn decide(event: &str, body: &[u8], config: &AgentConfig) -> Result<Decision, EventError> {
    match event {
        "ping" => {
            // Still must be JSON: a ping that is not is not from GitHub.
            serde_json::from_slice::<serde_json::Value>(body)
                .map_err(|e| EventError::Malformed(e.to_string()))?;
            Ok(Decision::Pong)
        }
        "push" => {
            let p: Push =
                serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))?;
            let repo = config
                .repo(&p.repository.full_name)
                .ok_or_else(|| EventError::UnknownRepo(p.repository.full_name.clone()))?;
            let Some(branch) = p.git_ref.strip_prefix("refs/heads/") else {
                return Ok(Decision::Ignored(format!("{} is not a branch", p.git_ref)));
            };
            if p.deleted || p.after.bytes().all(|b| b == b'0') {
                return Ok(Decision::Ignored(format!("branch {branch} was deleted")));
            }
            check_sha(&p.after)?;
            if !repo.builds_branch(branch, p.repository.default_branch.as_deref()) {
                return Ok(Decision::Ignored(format!(
                    "branch {branch} is not configured to build"
                )));
            }
            Ok(Decision::Build(BuildRequest {
                lane: format!("{}@{branch}", repo.full_name),
                repo: repo.full_name.clone(),
                sha: p.after.to_ascii_lowercase(),
                branch: branch.to_string(),
                event: "push".into(),
                pr_number: None,
                fork: false,
                author: p.sender.map(|u| u.login).or(p.pusher.map(|u| u.name)),
                seal: None,
            }))
        }
        "pull_request" => {
            let p: PrEvent =
                serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))?;
            let repo = config
                .repo(&p.repository.full_name)
                .ok_or_else(|| EventError::UnknownRepo(p.repository.full_name.clone()))?;
            if !PR_ACTIONS.contains(&p.action.as_str()) {
                return Ok(Decision::Ignored(format!(
                    "pull_request action `{}` does not change the code",
                    p.action
                )));
            }
            if !repo.pull_requests {
                return Ok(Decision::Ignored(format!(
                    "pull requests are not built for {}",
                    repo.full_name
                )));
            }
            check_sha(&p.pull_request.head.sha)?;
            let head_repo = p
                .pull_request
                .head
                .repo
                .as_ref()
                .map(|r| r.full_name.as_str());
            let fork = !head_repo.is_some_and(|h| h.eq_ignore_ascii_case(&p.repository.full_name));
            // A fork's branch names mean nothing in the base repository: keep their build state
            // apart from ours (a fork's "main" is not our main).
            let branch = match (fork, head_repo) {
                (false, _) => p.pull_request.head.git_ref.clone(),
                (true, Some(h)) => format!("{h}:{}", p.pull_request.head.git_ref),
                (true, None) => format!("pull/{}/head", p.number),
            };
            Ok(Decision::Build(BuildRequest {
                lane: format!("{}#{}", repo.full_name, p.number),
                repo: repo.full_name.clone(),
                sha: p.pull_request.head.sha.to_ascii_lowercase(),
                branch,
                event: "pull_request".into(),
                pr_number: Some(p.number),
                fork,
                author: p.pull_request.user.map(|u| u.login),
                seal: None,
            }))
        }
        "check_run" => rerun(body, config),
        other => Err(EventError::UnsupportedEvent(other.to_string())),
    }
}

/// `check_run` `rerequested` (GitHub's "Re-run" on one of our check runs): the commit is built
/// again exactly as it was the last time (same lane, same fork flag), so a re-run can never
/// turn a fork's commit into a trusted build.
fn rerun(body: &[u8], config: &AgentConfig) -> Result<Decision, EventError> {
    let p: CheckRunEvent =
        serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))?;
    let repo = config
        .repo(&p.repository.full_name)
        .ok_or_else(|| EventError::UnknownRepo(p.repository.full_name.clone()))?;
    if p.action != "rerequested" {
        return Ok(Decision::Ignored(format!(
            "check_run action `{}` asks for no build",
            p.action
        )));
    }
    check_sha(&p.check_run.head_sha)?;
    Ok(Decision::Rerun {
        repo: repo.full_name.clone(),
        sha: p.check_run.head_sha.to_ascii_lowercase(),
    })
}

fn check_sha(sha: &str) -> Result<(), EventError> {
    if (sha.len() == 40 || sha.len() == 64) && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(EventError::Malformed(format!(
            "{sha:?} is not a commit SHA"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> AgentConfig {
        AgentConfig::parse(
            "repositories:\n  - name: octo/hello\n    branches: [main, 'release/*']\n",
            Path::new("agent.yml"),
        )
        .unwrap()
    }

    fn push(r: &str, after: &str, deleted: bool) -> Vec<u8> {
        serde_json::json!({"ref": r, "after": after, "deleted": deleted,
            "repository": {"full_name": "octo/hello", "default_branch": "main"}})
        .to_string()
        .into_bytes()
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn push_to_configured_branch_builds() {
        let d = decide("push", &push("refs/heads/release/2", SHA, false), &config()).unwrap();
        let Decision::Build(b) = d else {
            panic!("{d:?}")
        };
        assert_eq!(b.branch, "release/2");
        assert_eq!(b.lane, "octo/hello@release/2");
        assert_eq!(b.sha, SHA);
    }

    #[test]
    fn ignored_pushes() {
        let c = config();
        for body in [
            push("refs/heads/dev", SHA, false),
            push("refs/tags/v1", SHA, false),
            push("refs/heads/main", &"0".repeat(40), true),
        ] {
            assert!(matches!(
                decide("push", &body, &c),
                Ok(Decision::Ignored(_))
            ));
        }
    }

    #[test]
    fn refusals() {
        let c = config();
        assert!(matches!(
            decide("push", b"{not json", &c),
            Err(EventError::Malformed(_))
        ));
        assert!(matches!(
            decide("push", b"{}", &c),
            Err(EventError::Malformed(_))
        ));
        assert!(matches!(
            decide("push", &push("refs/heads/main", "nope", false), &c),
            Err(EventError::Malformed(_))
        ));
        assert!(matches!(
            decide("issues", b"{}", &c),
            Err(EventError::UnsupportedEvent(_))
        ));
        let other = br#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567","repository":{"full_name":"evil/repo"}}"#;
        assert_eq!(
            decide("push", other, &c),
            Err(EventError::UnknownRepo("evil/repo".into()))
        );
    }

    #[test]
    fn fork_pull_request_is_marked() {
        let body = serde_json::json!({"action": "synchronize", "number": 7,
            "pull_request": {"head": {"sha": SHA, "ref": "main", "repo": {"full_name": "mallory/hello"}}},
            "repository": {"full_name": "octo/hello"}});
        let d = decide("pull_request", body.to_string().as_bytes(), &config()).unwrap();
        let Decision::Build(b) = d else {
            panic!("{d:?}")
        };
        assert!(b.fork);
        assert_eq!(b.pr_number, Some(7));
        assert_eq!(b.branch, "mallory/hello:main");
        assert_eq!(b.lane, "octo/hello#7");
        let closed = serde_json::json!({"action": "closed", "number": 7,
            "pull_request": {"head": {"sha": SHA, "ref": "x", "repo": null}},
            "repository": {"full_name": "octo/hello"}});
        assert!(matches!(
            decide("pull_request", closed.to_string().as_bytes(), &config()),
            Ok(Decision::Ignored(_))
        ));
    }
}

//! Checkout stage: a clean checkout of the exact commit with the git CLI.
//!
//! The target directory is always fresh: `git init` + `git fetch <repo> <rev>` + detached checkout.
//! Fetching by rev (not cloning) works the same for a local path, a file:// URL and a remote URL,
//! for branch names, tags and full SHAs.

use std::path::{Path, PathBuf};

use crate::git::GitError;
use crate::process::ProcessError;
use crate::settings::{CheckoutMode, RunRequest};
use crate::summary::{short_sha, StageOutcome};

use super::stage::Done;

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("cannot prepare {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What was checked out.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub dir: PathBuf,
    pub sha: String,
    /// The branch the rev names, when it names one.
    pub branch: Option<String>,
}

async fn git(dir: &Path, args: &[&str]) -> Result<String, CheckoutError> {
    Ok(crate::git::stdout(dir, args).await?.trim().to_string())
}

/// Best-effort: the branch a local repo's HEAD is on (for `--rev HEAD` runs).
pub async fn local_branch(repo: &str, rev: &str) -> Option<String> {
    let path = Path::new(repo);
    if !path.is_dir() {
        return None;
    }
    let name = git(path, &["rev-parse", "--abbrev-ref", rev]).await.ok()?;
    (!name.is_empty() && name != "HEAD").then_some(name)
}

/// Fetch `rev` from `repo` into the empty directory `dir` and check it out detached.
pub async fn checkout(repo: &str, rev: &str, dir: &Path) -> Result<Checkout, CheckoutError> {
    std::fs::create_dir_all(dir).map_err(|source| CheckoutError::Io {
        dir: dir.to_path_buf(),
        source,
    })?;
    let location = crate::git::repo_location(repo);
    git(dir, &["init", "--quiet"]).await?;
    let looks_like_sha = rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit());
    // Fetch the rev, plus branch heads so blame can walk history from the last green commit.
    let refspec = if looks_like_sha || rev == "HEAD" || rev.starts_with("refs/") {
        rev.to_string()
    } else {
        format!("+refs/heads/{rev}:refs/remotes/origin/{rev}")
    };
    let fetched = git(dir, &["fetch", "--quiet", "--no-tags", &location, &refspec]).await;
    let target = match fetched {
        Ok(_) if refspec == rev => "FETCH_HEAD".to_string(),
        Ok(_) => format!("refs/remotes/origin/{rev}"),
        // Not a branch: maybe a tag or an abbreviated SHA; fetch everything and resolve.
        Err(_) => {
            git(
                dir,
                &[
                    "fetch",
                    "--quiet",
                    "--tags",
                    &location,
                    "+refs/heads/*:refs/remotes/origin/*",
                ],
            )
            .await?;
            rev.to_string()
        }
    };
    let spec = format!("{target}^{{commit}}");
    let sha = git(dir, &["rev-parse", "--verify", "--quiet", &spec])
        .await
        .map_err(|_| GitError::Failed {
            what: "rev-parse".into(),
            dir: dir.to_path_buf(),
            tail: format!(
                "revision {rev:?} not found in {}",
                crate::cache::store::redact(&location)
            ),
        })?;
    git(dir, &["checkout", "--quiet", "--detach", &sha]).await?;
    let branch = if looks_like_sha || rev == "HEAD" || rev.starts_with("refs/") {
        rev.strip_prefix("refs/heads/").map(str::to_string)
    } else if target.starts_with("refs/remotes/origin/") {
        Some(rev.to_string())
    } else {
        None
    };
    Ok(Checkout {
        dir: dir.to_path_buf(),
        sha,
        branch,
    })
}

/// Use an existing working tree as it is (`checkout: reuse`).
pub async fn reuse(dir: &Path) -> Result<Checkout, CheckoutError> {
    let sha = git(dir, &["rev-parse", "--verify", "HEAD^{commit}"]).await?;
    let branch = git(dir, &["rev-parse", "--abbrev-ref", "HEAD"])
        .await
        .ok()
        .filter(|b| b != "HEAD");
    Ok(Checkout {
        dir: dir.to_path_buf(),
        sha,
        branch,
    })
}

/// The checkout stage: a fresh clone of `--rev` into `dir`, or the `--repo` directory as it is
/// (`checkout: reuse`). The branch is the request's, else the one the rev names.
pub async fn stage(req: &RunRequest, dir: &Path) -> Done<Result<Checkout, String>> {
    let reuse = req.checkout == CheckoutMode::Reuse;
    let result = if reuse {
        self::reuse(Path::new(&req.repo)).await
    } else {
        checkout(&req.repo, &req.rev, dir).await
    };
    match result {
        Ok(mut c) => {
            let detail = format!(
                "{} at {}",
                crate::cache::store::redact(&req.repo),
                short_sha(&c.sha)
            );
            c.branch = req.branch.clone().or(c.branch);
            if c.branch.is_none() && !reuse {
                c.branch = local_branch(&req.repo, &req.rev).await;
            }
            Done::new(Ok(c), StageOutcome::Ok, detail)
        }
        Err(e) => Done::new(Err(e.to_string()), StageOutcome::Failed, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, script: &str) {
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "T")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "T")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    }

    #[tokio::test]
    async fn checks_out_exact_commit_branch_and_sha() {
        let repo = tempfile::tempdir().unwrap();
        sh(
            repo.path(),
            "git init -q -b main && echo 1 > f && git add f && git commit -qm one && echo 2 > f && git commit -qam two",
        );
        let first = String::from_utf8(
            std::process::Command::new("git")
                .args(["rev-parse", "HEAD~1"])
                .current_dir(repo.path())
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let first = first.trim();
        let repo_s = repo.path().display().to_string();

        let work = tempfile::tempdir().unwrap();
        let c = checkout(&repo_s, first, &work.path().join("a"))
            .await
            .unwrap();
        assert_eq!(c.sha, first);
        assert_eq!(std::fs::read_to_string(c.dir.join("f")).unwrap(), "1\n");

        let c = checkout(&repo_s, "main", &work.path().join("b"))
            .await
            .unwrap();
        assert_eq!(c.branch.as_deref(), Some("main"));
        assert_eq!(std::fs::read_to_string(c.dir.join("f")).unwrap(), "2\n");

        let err = checkout(&repo_s, "no-such-branch", &work.path().join("c"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no-such-branch"), "{err}");
    }
}

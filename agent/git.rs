//! The git CLI as every stage calls it: in a given directory, never prompting for credentials
//! (CI has no one to answer: fail instead), all output kept.

use std::path::{Path, PathBuf};

use crate::process::{Cmd, Output, ProcessError};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("git {what} failed in {dir}: {tail}")]
    Failed {
        what: String,
        dir: PathBuf,
        tail: String,
    },
}

/// Run `git -C dir args…`; a non-zero exit is for the caller to judge.
pub async fn run(dir: &Path, args: &[&str]) -> Result<Output, ProcessError> {
    let mut cmd = Cmd::new("git")
        .arg("-C")
        .arg(dir)
        .args(args.iter().copied())
        .env("GIT_TERMINAL_PROMPT", "0");
    // `git log` bodies of a long range run to thousands of lines: keep them all.
    cmd.keep_lines = usize::MAX;
    cmd.run().await
}

/// Run git and return its output; a non-zero exit is an error naming the subcommand and the
/// last lines git printed.
pub async fn stdout(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let out = run(dir, args).await?;
    if !out.success {
        return Err(GitError::Failed {
            what: args.first().copied().unwrap_or("").to_string(),
            dir: dir.to_path_buf(),
            tail: out.tail(5),
        });
    }
    Ok(out.stdout_text())
}

/// The repository argument as git understands it (relative paths made absolute).
pub fn repo_location(repo: &str) -> String {
    let looks_like_url = repo.contains("://") || repo.contains('@') && repo.contains(':');
    if looks_like_url {
        return repo.to_string();
    }
    std::fs::canonicalize(repo)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| repo.to_string())
}

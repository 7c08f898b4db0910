//! Checkout stage: a clean checkout of the exact commit with the git CLI.
//!
//! The target directory is always fresh: one `git clone` (`--branch <rev>` for a branch or a tag),
//! which is what a person would type, and the fewest git processes: a clone of a local path
//! hard-links its objects. A network remote is cloned shallow (`--depth 1`) unless
//! `--checkout-depth` / `KILN_CHECKOUT_DEPTH` asks for more (0 = the whole history); blame fetches
//! the history it needs when it needs it. A SHA or a full ref (`refs/pull/7/head`) is checked out
//! detached, fetched by name when the clone did not bring it.
//!
//! The clone's git dir lives beside the checkout (`src.git`, see [`git_dir_of`]) and is recorded
//! as a [`GitDir`] before any of the project's code runs: Kiln's later git commands go through
//! it, never through the (by then hostile) checkout.

use std::path::{Path, PathBuf};

use crate::git::{GitDir, GitError, HttpAuth};
use crate::process::ProcessError;
use crate::settings::{CheckoutMode, Config, RunRequest};
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
    /// The checkout's git dir, recorded before any of the project's code ran: every git
    /// command after that goes through it.
    pub git: GitDir,
}

impl Checkout {
    async fn made(dir: &Path, sha: String, branch: Option<String>) -> Result<Self, CheckoutError> {
        Ok(Checkout {
            dir: dir.to_path_buf(),
            git: GitDir::record(dir).await?,
            sha,
            branch,
        })
    }
}

async fn git(dir: &Path, args: &[&str]) -> Result<String, CheckoutError> {
    Ok(crate::git::stdout(dir, args).await?.trim().to_string())
}

/// Where a clone comes from: the location without credentials (what `origin` says), and the
/// credentials, given to git for each clone and fetch alone (see [`HttpAuth`]).
#[derive(Debug, Clone)]
pub struct Remote {
    location: String,
    auth: Option<HttpAuth>,
}

impl Remote {
    /// `repo` as given (a path or URL, maybe with `user:token@`), and the token Kiln was given
    /// for the GitHub server it may live on.
    pub fn new(repo: &str, token: Option<&HttpAuth>) -> Remote {
        let (location, auth) = HttpAuth::split_url(&crate::git::repo_location(repo));
        Remote {
            location,
            auth: auth.or_else(|| token.cloned()),
        }
    }

    async fn git(&self, dir: &Path, args: &[&str]) -> Result<String, CheckoutError> {
        let out = crate::git::stdout_auth(dir, args, self.auth.as_ref()).await?;
        Ok(out.trim().to_string())
    }
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

/// How much history a clone of `location` fetches: `depth` when given (0 = all of it), else one
/// commit for a network remote and all of it for a local repository (a local clone hard-links
/// its objects: the whole history costs nothing, and blame can walk it).
pub fn clone_depth(location: &str, depth: Option<u32>) -> Option<u32> {
    let remote = location.contains("://") && !location.starts_with("file://")
        || location.contains('@') && location.contains(':');
    match depth {
        Some(0) => None,
        Some(d) => Some(d),
        None if remote => Some(1),
        None => None,
    }
}

/// Clone `repo` into the empty or missing directory `dir` at `rev`: one `git clone` for a branch,
/// a tag or `HEAD`; a clone and a checkout (and a fetch when the clone lacks it) for a SHA or a
/// full ref such as `refs/pull/7/head`. The depth is [`clone_depth`]'s default.
pub async fn checkout(repo: &str, rev: &str, dir: &Path) -> Result<Checkout, CheckoutError> {
    clone_at(repo, rev, dir, None).await
}

/// [`checkout`] with `depth` commits of history (0 = all), as [`clone_depth`] says.
pub async fn clone_at(
    repo: &str,
    rev: &str,
    dir: &Path,
    depth: Option<u32>,
) -> Result<Checkout, CheckoutError> {
    clone_from(&Remote::new(repo, None), rev, dir, depth).await
}

/// [`clone_at`] from a [`Remote`]: its credentials reach git for this clone alone, and the
/// clone's `origin` carries none.
pub async fn clone_from(
    remote: &Remote,
    rev: &str,
    dir: &Path,
    depth: Option<u32>,
) -> Result<Checkout, CheckoutError> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|source| CheckoutError::Io {
            dir: parent.to_path_buf(),
            source,
        })?;
    }
    let location = &remote.location;
    let depth = clone_depth(location, depth).map(|d| d.to_string());
    let mut clone: Vec<&str> = vec!["clone", "--quiet"];
    if let Some(d) = &depth {
        clone.extend(["--depth", d]);
    }
    let looks_like_sha = rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit());
    let by_name = !looks_like_sha && !rev.starts_with("refs/");
    if by_name && rev != "HEAD" {
        clone.extend(["--branch", rev]);
    }
    if !by_name {
        clone.push("--no-checkout");
    }
    let dest = dir.display().to_string();
    let separate = format!("--separate-git-dir={}", git_dir_of(dir).display());
    clone.extend([&separate, "--", location, &dest]);
    let cwd = dir.parent().unwrap_or(Path::new("."));
    let cloned = remote.git(cwd, &clone).await;
    if by_name && cloned.is_ok() {
        return cloned_at(dir, rev).await;
    }
    if by_name {
        // Not a branch or a tag: an abbreviated SHA, say. The whole history, then resolve it.
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(git_dir_of(dir));
        let args = ["clone", "--quiet", "--no-checkout", &separate, "--"];
        remote
            .git(cwd, &[&args[..], &[location, &dest]].concat())
            .await?;
    } else {
        cloned?;
    }
    detach_at(dir, rev, remote, depth.as_deref()).await
}

/// Where a clone into `dir` keeps its git dir: beside it (`src` → `src.git`), not inside it. The
/// work dir is the sandbox's writable place, but this directory, its direct child, is shown
/// read-only there: a mount point the project's code can neither change nor rename away (it
/// could rename the checkout itself, `.git` and all).
pub fn git_dir_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".git");
    dir.with_file_name(name)
}

/// After `git clone --branch rev`: the commit, and the branch it names (`--abbrev-ref` of a tag
/// is the tag's name, as it was when Kiln fetched instead of cloning).
async fn cloned_at(dir: &Path, rev: &str) -> Result<Checkout, CheckoutError> {
    let out = git(dir, &["rev-parse", "HEAD", "--abbrev-ref", rev]).await?;
    let mut lines = out.lines().map(str::trim);
    let sha = lines.next().unwrap_or_default().to_string();
    let branch = lines
        .next()
        .filter(|b| !b.is_empty() && *b != "HEAD")
        .map(str::to_string);
    Checkout::made(dir, sha, branch).await
}

/// Check out `rev` detached in the clone at `dir`, fetching it first when the clone lacks it.
async fn detach_at(
    dir: &Path,
    rev: &str,
    remote: &Remote,
    depth: Option<&str>,
) -> Result<Checkout, CheckoutError> {
    let location = remote.location.as_str();
    let spec = format!("{rev}^{{commit}}");
    let mut sha = git(dir, &["rev-parse", "--verify", "--quiet", &spec]).await;
    if sha.is_err() {
        let mut fetch = vec!["fetch", "--quiet", "--no-tags"];
        if let Some(d) = depth {
            fetch.extend(["--depth", d]);
        }
        fetch.extend([location, rev]);
        if remote.git(dir, &fetch).await.is_ok() {
            sha = git(
                dir,
                &["rev-parse", "--verify", "--quiet", "FETCH_HEAD^{commit}"],
            )
            .await;
        }
    }
    let sha = sha.map_err(|_| GitError::Failed {
        what: "rev-parse".into(),
        dir: dir.to_path_buf(),
        tail: format!(
            "revision {rev:?} not found in {}",
            crate::cache::store::redact(location)
        ),
    })?;
    git(dir, &["checkout", "--quiet", "--detach", &sha]).await?;
    let branch = rev.strip_prefix("refs/heads/").map(str::to_string);
    Checkout::made(dir, sha, branch).await
}

/// kiln.yml's `checkout.depth` (read when no flag or `KILN_CHECKOUT_DEPTH` chose a depth, so
/// the clone took the default): a shallow clone is deepened to it, 0 = the whole history. A
/// kiln.yml that cannot be read is left for the settings to report (exit 2).
async fn deepen_to_config(req: &RunRequest, c: Checkout) -> Result<Checkout, CheckoutError> {
    let Some(depth) = req
        .config_path(&c.dir)
        .ok()
        .and_then(|path| Config::load(&path).ok())
        .and_then(|config| config.checkout.depth)
    else {
        return Ok(c);
    };
    if git(&c.dir, &["rev-parse", "--is-shallow-repository"]).await? != "true" {
        return Ok(c);
    }
    let remote = Remote::new(&req.repo, req.clone_auth.as_ref());
    let depth_arg = format!("--depth={depth}");
    let how = if depth == 0 {
        "--unshallow"
    } else {
        &depth_arg
    };
    tracing::info!("kiln.yml checkout.depth {depth}: fetching more history ({how})");
    let fetch = [
        "fetch",
        "--quiet",
        "--no-tags",
        how,
        &remote.location,
        &c.sha,
    ];
    remote.git(&c.dir, &fetch).await?;
    Ok(c)
}

/// Use an existing working tree as it is (`checkout: reuse`).
pub async fn reuse(dir: &Path) -> Result<Checkout, CheckoutError> {
    let sha = git(dir, &["rev-parse", "--verify", "HEAD^{commit}"]).await?;
    let branch = git(dir, &["rev-parse", "--abbrev-ref", "HEAD"])
        .await
        .ok()
        .filter(|b| b != "HEAD");
    Checkout::made(dir, sha, branch).await
}

/// The checkout stage: a fresh clone of `--rev` into `dir`, or the `--repo` directory as it is
/// (`checkout: reuse`). The branch is the request's, else the one the rev names.
pub async fn stage(req: &RunRequest, dir: &Path) -> Done<Result<Checkout, String>> {
    let reuse = req.checkout == CheckoutMode::Reuse;
    let result = if reuse {
        self::reuse(Path::new(&req.repo)).await
    } else {
        let remote = Remote::new(&req.repo, req.clone_auth.as_ref());
        match clone_from(&remote, &req.rev, dir, req.checkout_depth).await {
            Ok(c) if req.checkout_depth.is_none() => deepen_to_config(req, c).await,
            other => other,
        }
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

    #[test]
    fn network_remotes_are_cloned_shallow_unless_told_otherwise() {
        assert_eq!(clone_depth("https://github.com/o/r.git", None), Some(1));
        assert_eq!(clone_depth("git@github.com:o/r.git", None), Some(1));
        assert_eq!(clone_depth("ssh://git@host/r", None), Some(1));
        assert_eq!(clone_depth("/srv/repo", None), None, "local: all history");
        assert_eq!(clone_depth("file:///srv/repo", None), None);
        assert_eq!(clone_depth("https://github.com/o/r.git", Some(0)), None);
        assert_eq!(
            clone_depth("https://github.com/o/r.git", Some(50)),
            Some(50)
        );
        assert_eq!(clone_depth("file:///srv/repo", Some(2)), Some(2));
    }

    #[tokio::test]
    async fn a_depth_clones_that_much_history_for_branch_tag_and_sha() {
        let repo = tempfile::tempdir().unwrap();
        sh(
            repo.path(),
            "git init -q -b main && for i in 1 2 3; do echo $i > f && git add f && git commit -qm c$i; done \
             && git tag v3 && git branch side HEAD~1",
        );
        let url = format!("file://{}", repo.path().display());
        let head = |dir: &Path, args: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("git {args}"))
                .current_dir(dir)
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let work = tempfile::tempdir().unwrap();
        let c = clone_at(&url, "main", &work.path().join("a"), Some(1))
            .await
            .unwrap();
        assert_eq!(c.branch.as_deref(), Some("main"));
        assert_eq!(head(&c.dir, "rev-parse --is-shallow-repository"), "true");
        assert_eq!(head(&c.dir, "rev-list --count HEAD"), "1");
        assert_eq!(std::fs::read_to_string(c.dir.join("f")).unwrap(), "3\n");

        let c = clone_at(&url, "v3", &work.path().join("b"), Some(2))
            .await
            .unwrap();
        assert_eq!(head(&c.dir, "rev-list --count HEAD"), "2");
        assert_eq!(c.sha, head(repo.path(), "rev-parse v3"));

        let side = head(repo.path(), "rev-parse side");
        let c = clone_at(&url, &side, &work.path().join("c"), Some(1))
            .await
            .unwrap();
        assert_eq!(c.sha, side, "a SHA the shallow clone lacked is fetched");
        assert_eq!(std::fs::read_to_string(c.dir.join("f")).unwrap(), "2\n");

        let c = clone_at(&url, "main", &work.path().join("d"), Some(0))
            .await
            .unwrap();
        assert_eq!(head(&c.dir, "rev-parse --is-shallow-repository"), "false");
        assert_eq!(head(&c.dir, "rev-list --count HEAD"), "3");
    }
}

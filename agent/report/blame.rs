//! Who broke the build: the commits between the branch's last green build and this one, with
//! their authors and co-authors (Jenkins' "culprits", Buildbot's "blamelist").
//!
//! The range comes from git in the checkout. A checkout may not hold the last green commit (a
//! shallow clone, a fresh machine): the range is then fetched from the repository (never the whole
//! history); when that fails the caller asks GitHub's compare API, and as a last resort blames the
//! tested commit alone.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::git::GitDir;
use crate::process::ProcessError;

/// At most this many commits are blamed: a range longer than this is a force push or a very old
/// green build, and mailing a hundred people helps nobody.
pub const MAX_COMMITS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum BlameError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error(
        "last green commit {sha} is not in {dir} and could not be fetched from the repository"
    )]
    Missing { sha: String, dir: PathBuf },
    #[error("{dir} is a shallow clone and its history could not be deepened to {sha}")]
    Shallow { sha: String, dir: PathBuf },
}

/// One person behind a commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// GitHub login, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
}

impl Person {
    pub fn new(name: &str, email: &str) -> Person {
        let email = email.trim();
        Person {
            name: name.trim().to_string(),
            email: (!email.is_empty()).then(|| email.to_string()),
            login: login_from_noreply(email),
        }
    }

    /// Bots (dependabot, renovate, GitHub Actions…) appear in the blame but are never notified.
    pub fn is_bot(&self) -> bool {
        let name = self.name.to_ascii_lowercase();
        let login = self.login.as_deref().unwrap_or("").to_ascii_lowercase();
        let email = self.email.as_deref().unwrap_or("").to_ascii_lowercase();
        name.ends_with("[bot]")
            || login.ends_with("[bot]")
            || email.contains("[bot]@")
            || ["dependabot", "renovate", "github-actions", "pre-commit-ci"]
                .iter()
                .any(|b| login == *b || name == *b)
    }

    /// The address to mail, if any: noreply addresses (GitHub's privacy addresses and the like)
    /// would bounce or vanish, so they are skipped.
    pub fn mail_address(&self) -> Option<&str> {
        let email = self.email.as_deref()?;
        let lower = email.to_ascii_lowercase();
        let domain = lower.rsplit('@').next().unwrap_or("");
        let local = lower.split('@').next().unwrap_or("");
        let noreply = domain.ends_with("users.noreply.github.com")
            || local.contains("noreply")
            || local.contains("no-reply")
            || !lower.contains('@');
        (!noreply).then_some(email)
    }

    /// Whether two records name the same person (by login, else by email, else by name).
    pub fn same_as(&self, other: &Person) -> bool {
        if let (Some(a), Some(b)) = (&self.login, &other.login) {
            return a.eq_ignore_ascii_case(b);
        }
        if let (Some(a), Some(b)) = (&self.email, &other.email) {
            return a.eq_ignore_ascii_case(b);
        }
        self.name == other.name
    }

    /// Fill in what `other` (the same person) knows and we do not.
    pub fn merge(&mut self, other: &Person) {
        if self.login.is_none() {
            self.login = other.login.clone();
        }
        if self.mail_address().is_none() && other.mail_address().is_some() {
            self.email = other.email.clone();
        }
    }
}

/// `12345+octocat@users.noreply.github.com` and `octocat@users.noreply.github.com` → `octocat`.
pub fn login_from_noreply(email: &str) -> Option<String> {
    let (local, domain) = email.rsplit_once('@')?;
    if !domain.eq_ignore_ascii_case("users.noreply.github.com") {
        return None;
    }
    let login = local.split_once('+').map(|(_, l)| l).unwrap_or(local);
    (!login.is_empty()).then(|| login.to_string())
}

/// One blamed commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
    pub author: Person,
    /// People named in `Co-authored-by:` trailers.
    pub co_authors: Vec<Person>,
    /// First line of the message.
    pub subject: String,
}

impl Commit {
    /// Author first, then co-authors, without duplicates.
    pub fn people(&self) -> Vec<Person> {
        let mut out: Vec<Person> = vec![self.author.clone()];
        for c in &self.co_authors {
            if !out.iter().any(|p| p.same_as(c)) {
                out.push(c.clone());
            }
        }
        out
    }
}

/// The people named in `Co-authored-by: Name <email>` trailers of a commit message.
pub fn co_authors(message: &str) -> Vec<Person> {
    let mut out: Vec<Person> = Vec::new();
    for line in message.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("co-authored-by") {
            continue;
        }
        let value = value.trim();
        let (name, email) = match (value.find('<'), value.rfind('>')) {
            (Some(a), Some(b)) if a < b => (&value[..a], &value[a + 1..b]),
            _ => (value, ""),
        };
        let p = Person::new(name, email);
        if !p.name.is_empty() && !out.iter().any(|o| o.same_as(&p)) {
            out.push(p);
        }
    }
    out
}

/// Everyone behind `commits`, merged by identity, in order of first appearance.
pub fn people(commits: &[Commit]) -> Vec<Person> {
    let mut out: Vec<Person> = Vec::new();
    for p in commits.iter().flat_map(Commit::people) {
        match out.iter_mut().find(|o| o.same_as(&p)) {
            Some(o) => o.merge(&p),
            None => out.push(p),
        }
    }
    out
}

async fn has_commit(git: &GitDir, sha: &str) -> bool {
    let spec = format!("{sha}^{{commit}}");
    matches!(git.run(&["cat-file", "-e", &spec]).await, Ok(o) if o.success)
}

/// Whether `base` is in the checkout and reachable from `head` there: then `base..head` is whole.
async fn connected(git: &GitDir, base: &str, head: &str) -> bool {
    has_commit(git, base).await
        && matches!(git.run(&["merge-base", "--is-ancestor", base, head]).await, Ok(o) if o.success)
}

/// Make sure `base` and the history from it to `head` are in the checkout, fetching from `repo`
/// (a path or URL git understands) only what is missing. A shallow clone is deepened by
/// [`MAX_COMMITS`] (all the range blame reads), never unshallowed: a repository's whole history
/// can be gigabytes. A base further back (or not an ancestor, after a force push) is then
/// fetched on its own, one commit deep.
async fn ensure_history(
    git: &GitDir,
    repo: &str,
    base: &str,
    head: &str,
) -> Result<(), BlameError> {
    let dir = git.path();
    let shallow = git
        .stdout(&["rev-parse", "--is-shallow-repository"])
        .await
        .map(|s| s.trim() == "true")
        .unwrap_or(false);
    if shallow && !connected(git, base, head).await {
        let deepen = format!("--deepen={MAX_COMMITS}");
        let out = git
            .run(&["fetch", "--quiet", "--no-tags", &deepen, repo, head])
            .await?;
        if !out.success {
            return Err(BlameError::Shallow {
                sha: base.to_string(),
                dir: dir.to_path_buf(),
            });
        }
    }
    if has_commit(git, base).await {
        return Ok(());
    }
    tracing::debug!("fetching last green commit {base} from the repository");
    let mut fetch = vec!["fetch", "--quiet", "--no-tags"];
    if shallow {
        fetch.push("--depth=1");
    }
    fetch.extend([repo, base]);
    let _ = git.run(&fetch).await?;
    if has_commit(git, base).await {
        Ok(())
    } else {
        Err(BlameError::Missing {
            sha: base.to_string(),
            dir: dir.to_path_buf(),
        })
    }
}

const FIELD: char = '\u{1f}';
const RECORD: char = '\u{1e}';

fn parse_log(text: &str) -> Vec<Commit> {
    text.split(RECORD)
        .filter_map(|rec| {
            let rec = rec.trim_start_matches('\n');
            let mut f = rec.splitn(4, FIELD);
            let sha = f.next()?.trim().to_string();
            let name = f.next()?;
            let email = f.next()?;
            let body = f.next().unwrap_or("");
            if sha.is_empty() {
                return None;
            }
            Some(Commit {
                sha,
                author: Person::new(name, email),
                co_authors: co_authors(body),
                subject: body.lines().next().unwrap_or("").trim().to_string(),
            })
        })
        .collect()
}

/// The commits in `base..head` (newest first, at most [`MAX_COMMITS`]), or just `head` when
/// there is no base (the branch's first build). Fetches missing history from `repo`.
pub async fn git_commits(
    git: &GitDir,
    repo: &str,
    base: Option<&str>,
    head: &str,
) -> Result<Vec<Commit>, BlameError> {
    let range = match base {
        Some(base) => {
            ensure_history(git, repo, base, head).await?;
            format!("{base}..{head}")
        }
        None => head.to_string(),
    };
    let max = format!(
        "--max-count={}",
        if base.is_some() { MAX_COMMITS } else { 1 }
    );
    // Unit and record separators: characters a commit message never contains.
    let text = git
        .stdout(&[
            "log",
            &max,
            "--format=%H%x1f%an%x1f%ae%x1f%B%x1e",
            &range,
            "--",
        ])
        .await?;
    Ok(parse_log(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noreply_addresses_give_logins_and_no_mail() {
        let p = Person::new("Octo Cat", "12345+octocat@users.noreply.github.com");
        assert_eq!(p.login.as_deref(), Some("octocat"));
        assert_eq!(p.mail_address(), None);
        let p = Person::new("Old", "old@users.noreply.github.com");
        assert_eq!(p.login.as_deref(), Some("old"));
        assert_eq!(Person::new("X", "noreply@github.com").mail_address(), None);
        assert_eq!(
            Person::new("B", "b@example.com").mail_address(),
            Some("b@example.com")
        );
    }

    #[test]
    fn bots_are_recognised() {
        assert!(Person::new(
            "dependabot[bot]",
            "49699333+dependabot[bot]@users.noreply.github.com"
        )
        .is_bot());
        assert!(Person::new("github-actions", "x@example.com").is_bot());
        assert!(!Person::new("Bob", "bob@example.com").is_bot());
    }

    #[test]
    fn co_authored_by_trailers() {
        let msg = "Fix parser\n\nLonger text.\n\nCo-authored-by: Carol C <carol@example.com>\nco-authored-by: Dan <123+dan@users.noreply.github.com>\nCo-Authored-By: Carol C <CAROL@example.com>\n";
        let c = co_authors(msg);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].email.as_deref(), Some("carol@example.com"));
        assert_eq!(c[1].login.as_deref(), Some("dan"));
    }

    #[test]
    fn people_are_merged_across_commits() {
        let a = Commit {
            sha: "1".into(),
            author: Person::new("Bob", "bob@example.com"),
            co_authors: vec![Person::new("Carol", "carol@example.com")],
            subject: String::new(),
        };
        let mut b = a.clone();
        b.sha = "2".into();
        b.co_authors.clear();
        b.author.login = Some("bob".into());
        let p = people(&[a, b]);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "Bob");
        assert_eq!(p[0].login.as_deref(), Some("bob"));
    }

    use std::path::Path;

    async fn gd(co: &Path) -> GitDir {
        GitDir::record(co).await.unwrap()
    }

    fn sh(dir: &Path, script: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("GIT_COMMITTER_NAME", "CI")
            .env("GIT_COMMITTER_EMAIL", "ci@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn commit_as(dir: &Path, name: &str, email: &str, msg: &str) -> String {
        sh(
            dir,
            &format!(
                "echo '{msg}' >> log && git add log && GIT_AUTHOR_NAME='{name}' GIT_AUTHOR_EMAIL='{email}' git commit -q -F - <<'EOF'\n{msg}\nEOF\ngit rev-parse HEAD"
            ),
        )
    }

    #[tokio::test]
    async fn a_shallow_clone_fetches_the_range_not_the_whole_history() {
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        sh(r, "git init -q -b main");
        let shas: Vec<String> = (0..120)
            .map(|i| commit_as(r, "Alice", "alice@example.com", &format!("c{i}")))
            .collect();
        let url = format!("file://{}", r.display());
        let work = tempfile::tempdir().unwrap();
        sh(work.path(), &format!("git clone -q --depth 1 {url} co"));
        let co = work.path().join("co");
        let head = &shas[119];
        let commits = git_commits(&gd(&co).await, &url, Some(&shas[116]), head)
            .await
            .unwrap();
        let got: Vec<_> = commits.iter().map(|c| c.sha.clone()).collect();
        assert_eq!(
            got,
            vec![shas[119].clone(), shas[118].clone(), shas[117].clone()]
        );
        assert_eq!(sh(&co, "git rev-parse --is-shallow-repository"), "true");
        let held: usize = sh(&co, "git rev-list --count HEAD").parse().unwrap();
        assert!(held <= MAX_COMMITS + 1, "fetched {held} of 120 commits");

        // A base further back than blame reads: the newest MAX_COMMITS, the base alone fetched.
        let commits = git_commits(&gd(&co).await, &url, Some(&shas[10]), head)
            .await
            .unwrap();
        assert_eq!(commits.len(), MAX_COMMITS);
        assert_eq!(commits[0].sha, shas[119]);
        assert_eq!(commits[MAX_COMMITS - 1].sha, shas[119 - MAX_COMMITS + 1]);
        let held: usize = sh(&co, "git rev-list --count --all").parse().unwrap();
        assert!(held < 110, "fetched {held} of 120 commits");
    }

    #[tokio::test]
    async fn range_from_git_with_missing_base_fetched() {
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        sh(r, "git init -q -b main");
        let green = commit_as(r, "Alice", "alice@example.com", "green");
        let b = commit_as(r, "Bob", "bob@example.com", "break it");
        let c = commit_as(
            r,
            "Carol",
            "carol@example.com",
            "break more\n\nCo-authored-by: Erin <erin@example.com>",
        );

        // A checkout holding only the tip (shallow), like actions/checkout's default.
        let work = tempfile::tempdir().unwrap();
        let co = work.path().join("co");
        sh(
            work.path(),
            &format!("git clone -q --depth 1 file://{} co", r.display()),
        );
        let repo_s = format!("file://{}", r.display());
        let commits = git_commits(&gd(&co).await, &repo_s, Some(&green), &c)
            .await
            .unwrap();
        let shas: Vec<_> = commits.iter().map(|c| c.sha.as_str()).collect();
        assert_eq!(shas, vec![c.as_str(), b.as_str()]);
        assert_eq!(commits[0].subject, "break more");
        assert_eq!(commits[0].co_authors[0].name, "Erin");
        let names: Vec<_> = people(&commits).into_iter().map(|p| p.name).collect();
        assert_eq!(names, vec!["Carol", "Erin", "Bob"]);

        // No base: only the tested commit.
        let only = git_commits(&gd(&co).await, &repo_s, None, &c)
            .await
            .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].author.name, "Carol");

        // A base that exists nowhere.
        let err = git_commits(&gd(&co).await, &repo_s, Some(&"0".repeat(40)), &c)
            .await
            .unwrap_err();
        assert!(matches!(err, BlameError::Missing { .. }), "{err}");
    }
}

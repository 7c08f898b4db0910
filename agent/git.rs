//! The git CLI as every stage calls it: never prompting for credentials (CI has no one to
//! answer: fail instead), all output kept.
//!
//! Two ways in:
//! - [`run`]/[`stdout`] in a directory Kiln trusts (the clone itself, the user's `--repo`):
//!   git with the operator's configuration, as a person would run it;
//! - [`GitDir`], for every git command after the project's code may have run. The checkout's
//!   git dir is recorded right after the checkout (its path and the identity of every directory
//!   on the way to it), shown read-only inside the sandbox, and checked again before each
//!   command; the command then runs on that git dir alone (no work tree, nothing read from the
//!   hostile checkout), with system and global configuration off and every key that runs a
//!   program pinned ([`PINNED`]).

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::process::{Cmd, Output, ProcessError, PARSED_OUTPUT_LIMIT};

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
    #[error(
        "the checkout's git dir {dir} changed while the project's code ran ({why}); \
         Kiln does not run git on it"
    )]
    Tampered { dir: PathBuf, why: String },
}

/// Configuration pinned on every command run through [`GitDir`]: on the command line, so it
/// wins over anything in the repository's own config. Nothing here runs a program, asks a
/// helper for credentials, or reads the work tree.
pub const PINNED: &[(&str, &str)] = &[
    ("core.bare", "true"),
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("core.pager", "cat"),
    ("core.sshCommand", "ssh"),
    ("log.showSignature", "false"),
    ("gpg.program", "false"),
    ("gpg.ssh.program", "false"),
    ("gpg.x509.program", "false"),
    ("protocol.ext.allow", "never"),
    ("credential.helper", ""),
    ("safe.directory", "*"),
];

/// Variables of Kiln's own environment that would point git somewhere else than the git dir
/// it was given.
const LOCATION_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_EXTERNAL_DIFF",
    "GIT_PAGER",
];

/// Run `git -C dir args…`; a non-zero exit is for the caller to judge.
pub async fn run(dir: &Path, args: &[&str]) -> Result<Output, ProcessError> {
    let cmd = Cmd::new("git")
        .arg("-C")
        .arg(dir)
        .args(args.iter().copied())
        .env("GIT_TERMINAL_PROMPT", "0");
    // `git log` bodies of a long range run to thousands of lines: read them all.
    cmd.read_whole(PARSED_OUTPUT_LIMIT).run().await
}

/// Run git and return its output; a non-zero exit is an error naming the subcommand and the
/// last lines git printed.
pub async fn stdout(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    checked(run(dir, args).await?, dir, args)
}

fn checked(out: Output, dir: &Path, args: &[&str]) -> Result<String, GitError> {
    if !out.success {
        return Err(GitError::Failed {
            what: args.first().copied().unwrap_or("").to_string(),
            dir: dir.to_path_buf(),
            tail: out.tail(5),
        });
    }
    Ok(out.stdout)
}

/// Read one key of a repository's own config with system, global and include files off: what
/// Kiln reads to name a repository, never a program to run.
pub async fn local_config(dir: &Path, key: &str) -> Option<String> {
    let out = hardened(Cmd::new("git").arg("-C").arg(dir))
        .args(["config", "--local", "--no-includes", "--get", key])
        .read_whole(PARSED_OUTPUT_LIMIT)
        .run()
        .await
        .ok()?;
    let value = out.stdout.trim().to_string();
    (out.success && !value.is_empty()).then_some(value)
}

/// System and global configuration off, the location variables gone, no prompt.
fn hardened(cmd: Cmd) -> Cmd {
    let mut cmd = cmd
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_SYSTEM", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0");
    for v in LOCATION_VARS {
        cmd = cmd.env_remove(*v);
    }
    cmd
}

/// One directory on the way to a git dir, as it was when the checkout was made.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// The git dir of a checkout, recorded while Kiln alone had written to it. See the module doc.
#[derive(Debug, Clone)]
pub struct GitDir {
    /// Where git keeps this checkout's objects and refs (`src/.git`, or a worktree's dir).
    dir: PathBuf,
    /// The common dir (config, objects) when it is not `dir` (a `git worktree`).
    common: Option<PathBuf>,
    /// Every directory from the root to `dir` and `common`, with its device and inode.
    chain: Vec<Identity>,
}

impl GitDir {
    /// Record the git dir of the work tree at `checkout` (before any of the project's code ran).
    pub async fn record(checkout: &Path) -> Result<GitDir, GitError> {
        let args = ["rev-parse", "--absolute-git-dir", "--git-common-dir"];
        let text = stdout(checkout, &args).await?;
        let mut lines = text.lines().map(str::trim);
        let dir = PathBuf::from(lines.next().unwrap_or_default());
        let common = lines.next().map(|c| checkout.join(c));
        let canon = |p: &Path| {
            std::fs::canonicalize(p).map_err(|e| GitError::Failed {
                what: "rev-parse".into(),
                dir: checkout.to_path_buf(),
                tail: format!("{}: {e}", p.display()),
            })
        };
        let dir = canon(&dir)?;
        let common = match common {
            Some(c) => Some(canon(&c)?).filter(|c| *c != dir),
            None => None,
        };
        let mut chain = Vec::new();
        for d in std::iter::once(&dir).chain(&common) {
            for id in identities(d)? {
                if !chain.contains(&id) {
                    chain.push(id);
                }
            }
        }
        Ok(GitDir { dir, common, chain })
    }

    /// The directories the sandbox must show read-only (the git dir and its common dir).
    pub fn protected(&self) -> Vec<&Path> {
        std::iter::once(self.dir.as_path())
            .chain(self.common.as_deref())
            .collect()
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Whether every directory on the way to the git dir is still the one recorded: no link
    /// put in its place, nothing renamed over it.
    pub fn verify(&self) -> Result<(), GitError> {
        for want in &self.chain {
            let why = match std::fs::symlink_metadata(&want.path) {
                Ok(m) if m.file_type().is_symlink() => "a link now",
                Ok(m) if m.dev() != want.dev || m.ino() != want.ino => "replaced",
                Ok(m) if !m.is_dir() => "not a directory now",
                Ok(_) => continue,
                Err(_) => "gone",
            };
            return Err(GitError::Tampered {
                dir: self.dir.clone(),
                why: format!("{} is {why}", want.path.display()),
            });
        }
        Ok(())
    }

    /// Run `git args…` on this git dir alone, hardened (see the module doc); a non-zero exit is
    /// for the caller to judge.
    pub async fn run(&self, args: &[&str]) -> Result<Output, GitError> {
        self.verify()?;
        let mut cmd = hardened(Cmd::new("git"))
            .arg("--git-dir")
            .arg(&self.dir)
            .cwd(&self.dir);
        for (k, v) in PINNED {
            cmd = cmd.arg("-c").arg(format!("{k}={v}"));
        }
        let cmd = cmd.args(args.iter().copied());
        Ok(cmd.read_whole(PARSED_OUTPUT_LIMIT).run().await?)
    }

    /// [`GitDir::run`], its output on success, an error naming the subcommand otherwise.
    pub async fn stdout(&self, args: &[&str]) -> Result<String, GitError> {
        checked(self.run(args).await?, &self.dir, args)
    }
}

/// `path` (canonical) and each of its ancestors, with device and inode.
fn identities(path: &Path) -> Result<Vec<Identity>, GitError> {
    let mut out = Vec::new();
    let mut at = PathBuf::new();
    for c in path.components() {
        at.push(c);
        if matches!(c, Component::RootDir) {
            continue;
        }
        let m = std::fs::symlink_metadata(&at).map_err(|e| GitError::Failed {
            what: "rev-parse".into(),
            dir: path.to_path_buf(),
            tail: format!("{}: {e}", at.display()),
        })?;
        out.push(Identity {
            path: at.clone(),
            dev: m.dev(),
            ino: m.ino(),
        });
    }
    Ok(out)
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

/// Credentials for one remote, handed to git in its environment for one command: never written
/// into a config file (so never into the checkout), never on a command line (so never in
/// another process's view of `/proc`), and scoped by git to the remote's URL.
#[derive(Clone)]
pub struct HttpAuth {
    /// `scheme://host[:port]/`: git sends the header only to URLs under it.
    scope: String,
    /// `Authorization: Basic …`.
    header: String,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuth")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl HttpAuth {
    /// An http(s) URL without its `user[:password]@`, and those credentials as an auth; any
    /// other location as it is.
    pub fn split_url(location: &str) -> (String, Option<HttpAuth>) {
        let Ok(mut url) = url::Url::parse(location) else {
            return (location.to_string(), None);
        };
        if !matches!(url.scheme(), "http" | "https") || url.username().is_empty() {
            return (location.to_string(), None);
        }
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let user = decode(url.username());
        let password = url.password().map(decode).unwrap_or_default();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let auth = HttpAuth::basic(&url, &user, &password);
        (url.to_string(), auth)
    }

    /// A GitHub token for clones from `server` (`https://github.com`, or a GitHub Enterprise
    /// Server's URL), when `location` is on that server.
    pub fn github_token(location: &str, server: &str, token: &str) -> Option<HttpAuth> {
        let url = url::Url::parse(location).ok()?;
        let server = url::Url::parse(server).ok()?;
        let same = url.scheme() == server.scheme()
            && url.host_str() == server.host_str()
            && url.port_or_known_default() == server.port_or_known_default();
        same.then(|| HttpAuth::basic(&url, "x-access-token", token))
            .flatten()
    }

    fn basic(url: &url::Url, user: &str, password: &str) -> Option<HttpAuth> {
        use base64::Engine as _;
        let host = url.host_str()?;
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Some(HttpAuth {
            scope: format!("{}://{host}{port}/", url.scheme()),
            header: format!("Authorization: Basic {pair}"),
        })
    }

    /// The variables that give git this header for this command alone.
    pub fn env(&self) -> [(String, String); 3] {
        [
            ("GIT_CONFIG_COUNT".into(), "1".into()),
            (
                "GIT_CONFIG_KEY_0".into(),
                format!("http.{}.extraHeader", self.scope),
            ),
            ("GIT_CONFIG_VALUE_0".into(), self.header.clone()),
        ]
    }
}

/// [`stdout`] with `auth` for the remote, when there is one.
pub async fn stdout_auth(
    dir: &Path,
    args: &[&str],
    auth: Option<&HttpAuth>,
) -> Result<String, GitError> {
    let Some(auth) = auth else {
        return stdout(dir, args).await;
    };
    let mut cmd = Cmd::new("git")
        .arg("-C")
        .arg(dir)
        .args(args.iter().copied())
        .env("GIT_TERMINAL_PROMPT", "0");
    for (k, v) in auth.env() {
        cmd = cmd.env(k, v);
    }
    checked(cmd.run().await?, dir, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_leave_the_url_for_a_scoped_header() {
        let (url, auth) = HttpAuth::split_url("https://bot:p%40ss@git.example.com:8443/o/r.git");
        assert_eq!(url, "https://git.example.com:8443/o/r.git");
        let env = auth.unwrap().env();
        assert_eq!(env[1].1, "http.https://git.example.com:8443/.extraHeader");
        // base64("bot:p@ss")
        assert_eq!(env[2].1, "Authorization: Basic Ym90OnBAc3M=");
        for plain in [
            "/srv/repo",
            "git@github.com:o/r.git",
            "https://github.com/o/r",
        ] {
            let (same, none) = HttpAuth::split_url(plain);
            assert_eq!((same.as_str(), none.is_none()), (plain, true));
        }
    }

    #[test]
    fn a_github_token_goes_only_to_its_server() {
        let on = HttpAuth::github_token("https://github.com/o/r.git", "https://github.com", "t");
        assert!(on.is_some());
        for elsewhere in [
            "https://evil.example/o/r",
            "http://github.com/o/r",
            "/srv/r",
        ] {
            let auth = HttpAuth::github_token(elsewhere, "https://github.com", "t");
            assert!(auth.is_none(), "{elsewhere}");
        }
        assert!(!format!("{:?}", on.unwrap()).contains("Basic"));
    }
}

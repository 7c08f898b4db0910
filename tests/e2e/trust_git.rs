//! A hostile test rewrites the checkout's git config to make Kiln's own git (blame's `git log`
//! and `git fetch`, outside the sandbox) run its script: signature verification, fsmonitor,
//! hooks, a URL rewritten to the `ext::` transport, a credential helper; in place, by replacing
//! `.git`, by renaming the git dir away, by moving the checkout itself. None of it runs, and
//! blame still reads the real history.

use std::path::Path;

use crate::support::report::{Kiln, Repo, Run};

const ALICE: &str = "Alice A <alice@example.com>";
const BOB: &str = "Bob B <bob@example.com>";

/// The project's test command: every way in to the git config Kiln's report reads, then a
/// failing test (so the report blames the range and fetches the history it lacks).
fn attack_py(mark: &Path, repo_url: &str) -> String {
    format!(
        r##"import os, shutil, subprocess, sys
mark, repo_url = {mark:?}, {repo_url:?}
evil = os.path.abspath("evil.sh")
open(evil, "w").write("#!/bin/sh\necho \"$0 $*\" >> %s/ran\ncat >/dev/null 2>&1 || true\n" % mark)
os.chmod(evil, 0o755)
hooks = os.path.abspath("hooks")
os.makedirs(hooks, exist_ok=True)
for h in ["reference-transaction", "post-checkout", "post-merge", "pre-auto-gc", "post-index-change"]:
    shutil.copy(evil, os.path.join(hooks, h))
    os.chmod(os.path.join(hooks, h), 0o755)
config = """
[log]
	showSignature = true
[gpg]
	program = {{e}}
[core]
	fsmonitor = {{e}}
	hooksPath = {{h}}
	pager = {{e}}
	sshCommand = {{e}}
[protocol "ext"]
	allow = always
[protocol]
	allow = always
[url "ext::{{e}} %S x"]
	insteadOf = {{u}}
[credential]
	helper = !{{e}}
""".format(e=evil, h=hooks, u=repo_url)
gd = subprocess.check_output(["git", "rev-parse", "--absolute-git-dir"]).decode().strip()
def attempt(name, fn):
    try:
        fn()
        print(name, "done")
    except Exception as e:
        print(name, "refused:", e)
def in_place():
    with open(os.path.join(gd, "config"), "a") as f:
        f.write(config)
def evil_copy(to):
    shutil.copytree(gd, to, symlinks=True)
    with open(os.path.join(to, "config"), "a") as f:
        f.write(config)
def dot_git():
    evil_copy(os.path.abspath(".git-evil"))
    if os.path.isdir(".git") and not os.path.islink(".git"):
        shutil.rmtree(".git")
    else:
        os.remove(".git")
    os.rename(".git-evil", ".git")
def git_dir():
    evil_copy(gd + "-evil")
    os.rename(gd, gd + "-old")
    os.rename(gd + "-evil", gd)
def checkout():
    here = os.getcwd()
    shutil.copytree(here, here + "-evil", symlinks=True)
    os.rename(here, here + "-old")
    os.rename(here + "-evil", here)
attempt("in place", in_place)
attempt("dot git", dot_git)
attempt("git dir", git_dir)
attempt("checkout", checkout)
sys.exit(1)
"##
    )
}

/// One build of `main`: a shallow clone by Kiln, or (`reuse`) one made beforehand and built in
/// place, as `actions/checkout` and the GitHub Action do. Either way blame has to fetch history.
async fn build(kiln: &mut Kiln, url: &str, clones: &Path, n: u32, reuse: bool) -> Run {
    if !reuse {
        let args = ["--sandbox", "bwrap", "--checkout-depth", "1"];
        return kiln.run_with(Path::new(url), &args).await;
    }
    let dir = clones.join(n.to_string());
    let ok = std::process::Command::new("git")
        .args(["clone", "-q", "--depth", "1", "--branch", "main", url])
        .arg(&dir)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let args = ["--sandbox", "bwrap", "--checkout", "reuse"];
    kiln.run_with(&dir, &args).await
}

async fn attacked(reuse: bool) {
    let mark = tempfile::tempdir().unwrap();
    let repo = Repo::new();
    let url = format!("file://{}", repo.path().display());
    let yml = "requirements: [requirements.txt]\ntest:\n  command: python3 check.py\n";
    repo.commit(
        ALICE,
        "Initial project",
        &[
            ("requirements.txt", ""),
            ("check.py", "print('ok')\n"),
            ("kiln.yml", yml),
        ],
    );
    let mut kiln = Kiln::new(&[]);
    let clones = tempfile::tempdir().unwrap();
    let r = build(&mut kiln, &url, clones.path(), 1, reuse).await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    repo.commit(
        BOB,
        "Harmless, surely",
        &[("check.py", &attack_py(mark.path(), &url))],
    );
    let r = build(&mut kiln, &url, clones.path(), 2, reuse).await;
    assert_eq!(r.code, 1, "the tests failed: {}", r.stderr);
    let ran = std::fs::read_to_string(mark.path().join("ran")).unwrap_or_default();
    assert!(
        ran.is_empty(),
        "Kiln's git ran the project's program:\n{ran}"
    );
    assert_eq!(r.blamed(), ["Bob B"], "blame read the real history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_cannot_make_kilns_git_run_its_program() {
    attacked(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nor_in_a_reused_checkout_as_the_github_action_builds() {
    attacked(true).await;
}

/// A private repository behind `git http-backend` with basic auth, on loopback.
struct PrivateGit {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
    _root: tempfile::TempDir,
}

impl Drop for PrivateGit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the project's test looks for: the secret anywhere in the work dir (the checkout, its
/// git dir beside it) or in what `origin` says.
const LOOK_PY: &str = r#"import os, subprocess, sys
secret = open("secret-name").read().strip()
found = []
origin = subprocess.run(["git", "config", "--get", "remote.origin.url"], capture_output=True, text=True).stdout
if secret in origin:
    found.append("origin: " + origin.strip())
for d in [os.path.dirname(os.getcwd())]:
    for base, dirs, files in os.walk(d):
        for f in files:
            if f == "secret-name":
                continue
            p = os.path.join(base, f)
            try:
                if secret.encode() in open(p, "rb").read():
                    found.append(p)
            except OSError:
                pass
print("FOUND", found)
sys.exit(1 if found else 0)
"#;

impl PrivateGit {
    /// `app.git`, one commit whose tests look for `password` where the build can read it.
    fn start(user: &str, password: &str) -> PrivateGit {
        let root = tempfile::tempdir().unwrap();
        let repo = Repo::new();
        let yml = "requirements: [requirements.txt]\ntest:\n  command: python3 look.py\n";
        repo.commit(
            ALICE,
            "Private project",
            &[
                ("requirements.txt", ""),
                ("look.py", LOOK_PY),
                ("secret-name", &format!("{password}\n")),
                ("kiln.yml", yml),
            ],
        );
        let bare = root.path().join("app.git");
        let ok = std::process::Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(repo.path())
            .arg(&bare)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let log = root.path().join("requests.log");
        let mut child = std::process::Command::new("python3")
            .arg(crate::support::root().join("tests/e2e/support/git_http.py"))
            .arg(root.path())
            .args([user, password])
            .arg(&log)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let out = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
        PrivateGit {
            child,
            port: line.trim().parse().unwrap(),
            log,
            _root: root,
        }
    }

    fn requests(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Every file under `dir` that holds `secret` (but the test's own note of it).
fn holding(dir: &Path, secret: &str) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.file_name() != "secret-name")
        .filter(|e| {
            std::fs::read(e.path())
                .is_ok_and(|b| b.windows(secret.len()).any(|w| w == secret.as_bytes()))
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_clone_leaves_no_credentials_in_the_checkout() {
    let secret = "s3cret-clone-password";
    let server = PrivateGit::start("kiln", secret);
    let url = format!("http://kiln:{secret}@127.0.0.1:{}/app.git", server.port);
    let mut kiln = Kiln::new(&[]);
    let r = kiln
        .run_with(Path::new(&url), &["--sandbox", "bwrap"])
        .await;
    assert_eq!(r.code, 0, "the tests found the password: {}", r.stderr);
    assert!(!r.stderr.contains(secret), "{}", r.stderr);
    let work = kiln.workdir();
    assert_eq!(holding(&work, secret), Vec::<String>::new());
    let requests = server.requests();
    assert!(requests.contains("auth"), "{requests}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_github_token_clones_from_its_server_and_stays_out_of_the_checkout() {
    let token = "ghs_clonetokenvalue";
    let server = PrivateGit::start("x-access-token", token);
    let base = format!("http://127.0.0.1:{}", server.port);
    let mut kiln = Kiln::new(&[
        ("GITHUB_TOKEN", token.to_string()),
        ("GITHUB_SERVER_URL", base.clone()),
    ]);
    let url = format!("{base}/app.git");
    let r = kiln
        .run_with(Path::new(&url), &["--sandbox", "bwrap"])
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(holding(&kiln.workdir(), token), Vec::<String>::new());
    assert!(server.requests().contains("auth"), "{}", server.requests());
}

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

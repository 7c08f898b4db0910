//! `kiln run` on the fixture project with the GitHub Actions cache service (v2 fake) as its
//! store: caches and the branch's report state go through Twirp and signed blob URLs, and a
//! branch's state moves with every build although the service never overwrites an entry.

use kiln::summary::{Outcome, RestoreHit};

use crate::support::gha_fake::GhaFake;
use crate::support::kiln_home;
use crate::support::run::{finish, fixture_repo, sh, Run};

/// `kiln run` of branch `main` with `--store gha` and the job's cache variables.
fn run_gha(fake: &GhaFake, root: &std::path::Path, repo: &std::path::Path, n: usize) -> Run {
    let workdir = root.join(format!("work{n}"));
    let summary = root.join(format!("summary{n}.json"));
    let mut cmd = kiln_home(&root.join("home"));
    cmd.arg("run")
        .arg("--repo")
        .arg(repo)
        .args(["--rev", "main", "--store", "gha"])
        .arg("--workdir")
        .arg(&workdir)
        .arg("--summary-json")
        .arg(&summary);
    for (k, v) in fake.env() {
        cmd.env(k, v);
    }
    // No GITHUB_TOKEN: no GitHub reporter, and old states cannot be listed (they stay).
    cmd.env_remove("GITHUB_TOKEN");
    finish(cmd.output().expect("run kiln"), &summary)
}

fn state(fake: &GhaFake) -> (String, serde_json::Value) {
    let (key, bytes) = fake
        .newest_data("kiln-1-state/")
        .expect("a report state was saved");
    (key, serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn report_state_and_growing_caches_move_on_the_immutable_github_cache() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    fixture_repo(&repo);
    let rev = |r: &str| {
        let out = std::process::Command::new("git")
            .args(["rev-parse", r])
            .current_dir(&repo)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (green, broken) = (rev("green"), rev("broken"));
    let fake = GhaFake::start();

    // 1. Green: caches saved, ccache under a run-unique key; the state remembers the green.
    sh(&repo, &format!("git update-ref refs/heads/main {green}"));
    let r = run_gha(&fake, t.path(), &repo, 1);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    let cc = s.cache("ccache").unwrap();
    assert!(cc.saved, "{cc:?}");
    let ccache_runs: Vec<String> = fake
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&format!("caches/{}.", cc.key)) && k.ends_with(".json"))
        .collect();
    assert_eq!(ccache_runs.len(), 1, "{:?}", fake.keys());
    let (key1, st) = state(&fake);
    assert_eq!(st["last_green"], green.as_str(), "{st}");
    assert!(st["failing_since"].is_null());

    // 2. Broken: blamed from the remembered green; a new state entry (never overwritten).
    sh(&repo, &format!("git update-ref refs/heads/main {broken}"));
    let r = run_gha(&fake, t.path(), &repo, 2);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.outcome, Outcome::Failed);
    let cc = s.cache("ccache").unwrap();
    assert_eq!(
        cc.restore,
        RestoreHit::Exact,
        "the newest ccache run: {cc:?}"
    );
    assert_eq!(s.cache("wheelhouse").unwrap().restore, RestoreHit::Exact);
    let blamed: Vec<&str> = s.blame.iter().map(|b| b.sha.as_str()).collect();
    assert_eq!(blamed, [broken.as_str()], "{:?}", s.blame);
    let (key2, st) = state(&fake);
    assert_ne!(key2, key1);
    assert_eq!(st["failing_since"], broken.as_str(), "{st}");
    assert_eq!(st["last_green"], green.as_str());

    // 3. Still broken (a rebuild): the breakage keeps its start.
    let r = run_gha(&fake, t.path(), &repo, 3);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let (key3, st) = state(&fake);
    assert_ne!(key3, key2);
    assert_eq!(st["failing_since"], broken.as_str(), "{st}");
    assert_eq!(st["last_outcome"], "failed");

    // 4. Green again: cleared.
    sh(
        &repo,
        &format!(
            "git checkout -q -f main && git reset -q --hard {broken} && git revert --no-edit HEAD"
        ),
    );
    let fixed = rev("HEAD");
    let r = run_gha(&fake, t.path(), &repo, 4);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.summary().blame.is_empty());
    let (_, st) = state(&fake);
    assert!(st["failing_since"].is_null(), "{st}");
    assert_eq!(st["last_green"], fixed.as_str());
    // Four builds, four state entries on the service: nothing was overwritten or refused.
    let states = fake
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("kiln-1-state/"))
        .count();
    assert_eq!(states, 4);
    assert!(!r.stderr.contains("already exists"), "{}", r.stderr);
}

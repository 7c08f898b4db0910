//! The `kiln run` harness: fixture repositories, one run with its summary, one cold run shared
//! by every test that needs warm caches.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use kiln::summary::RunSummary;

/// Create the fixture project as a git repo at `dest` (see fixtures/make_repo.sh): tags `green`
/// (tests pass) and `broken` (one test fails), branch `main` at `broken`.
pub fn fixture_repo(dest: &Path) -> PathBuf {
    let out = Command::new("bash")
        .arg(super::root().join("fixtures/make_repo.sh"))
        .arg(dest)
        .output()
        .expect("run fixtures/make_repo.sh");
    assert!(
        out.status.success(),
        "make_repo.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dest.to_path_buf()
}

/// Run a shell script in `dir` (for editing fixture repos), with a fixed git identity.
pub fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test Author")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The result of one `kiln run`.
pub struct Run {
    pub code: i32,
    pub summary: Option<RunSummary>,
    pub stderr: String,
}

impl Run {
    pub fn summary(&self) -> &RunSummary {
        self.summary
            .as_ref()
            .unwrap_or_else(|| panic!("no summary JSON; stderr:\n{}", self.stderr))
    }
}

/// `kiln run --repo REPO --rev REV --workdir WORKDIR --store file://STORE --summary-json …`.
pub fn run(
    home: &Path,
    repo: &Path,
    rev: &str,
    workdir: &Path,
    store: &Path,
    extra: &[&str],
) -> Run {
    run_env(home, repo, rev, workdir, store, extra, &[])
}

/// `run` with environment changes: `(name, Some(value))` sets, `(name, None)` removes.
pub fn run_env(
    home: &Path,
    repo: &Path,
    rev: &str,
    workdir: &Path,
    store: &Path,
    extra: &[&str],
    env: &[(&str, Option<&str>)],
) -> Run {
    let summary = workdir.with_extension("summary.json");
    let _ = std::fs::remove_file(&summary);
    let mut cmd = super::kiln_home(home);
    cmd.arg("run")
        .arg("--repo")
        .arg(repo)
        .arg("--rev")
        .arg(rev)
        .arg("--workdir")
        .arg(workdir)
        .arg("--store")
        .arg(format!("file://{}", store.display()))
        .arg("--summary-json")
        .arg(&summary)
        .args(extra);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    finish(cmd.output().expect("run kiln"), &summary)
}

/// A git repository at `dest` of a project (fixtures/make_project_repo.sh): one of ours from
/// fixtures/projects, or a real project's released sdist; tag `release`.
pub fn project_repo(name: &str, dest: &Path) -> PathBuf {
    let out = Command::new("bash")
        .arg(super::root().join("fixtures/make_project_repo.sh"))
        .arg(name)
        .arg(dest)
        .output()
        .expect("run fixtures/make_project_repo.sh");
    assert!(
        out.status.success(),
        "make_project_repo.sh {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dest.to_path_buf()
}

/// Run fixtures/fetch.sh once per test binary: it downloads only when its list of packages
/// changed since the last fetch (a stamp file), so an older vendor dir gets what new tests need.
pub fn ensure_fetched() {
    static FETCHED: OnceLock<()> = OnceLock::new();
    FETCHED.get_or_init(|| {
        let ok = Command::new("bash")
            .arg(super::root().join("fixtures/fetch.sh"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run fixtures/fetch.sh");
        assert!(ok.success(), "fixtures/fetch.sh failed");
    });
}

/// The offline package source (fixtures/fetch.sh), as pip and uv environment: the index is
/// never asked, everything comes from .cache/fixtures/vendor.
pub fn vendor_env() -> Vec<(&'static str, Option<String>)> {
    ensure_fetched();
    let vendor = super::root()
        .join(".cache/fixtures/vendor")
        .display()
        .to_string();
    vec![
        ("PIP_NO_INDEX", Some("1".into())),
        ("PIP_FIND_LINKS", Some(vendor.clone())),
        ("UV_NO_INDEX", Some("1".into())),
        ("UV_FIND_LINKS", Some(vendor)),
    ]
}

/// A file of the offline package source (fixtures/fetch.sh, run when missing) whose name
/// starts with `prefix`, e.g. `iniconfig-`; of several (an older pin kept for one project's
/// own test requirements), the last in name order (the newest of the versions fetched).
pub fn vendor_file(prefix: &str) -> PathBuf {
    ensure_fetched();
    let vendor = super::root().join(".cache/fixtures/vendor");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&vendor)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no {prefix}* in {}", vendor.display()))
}

/// Copy the fixture files named by `prefixes` (see [`vendor_file`]) into `dir/vendor/`;
/// returns the copies' paths.
pub fn vendor_into(dir: &Path, prefixes: &[&str]) -> Vec<PathBuf> {
    let vendor = dir.join("vendor");
    std::fs::create_dir_all(&vendor).unwrap();
    prefixes
        .iter()
        .map(|prefix| {
            let f = vendor_file(prefix);
            let dest = vendor.join(f.file_name().unwrap());
            std::fs::copy(&f, &dest).unwrap();
            dest
        })
        .collect()
}

/// Give the project at `dir` one real dependency, offline: `iniconfig` (a small pure-Python
/// wheel) from `vendor/`, named by its requirements.txt.
pub fn vendored_dependency(dir: &Path) {
    vendor_into(dir, &["iniconfig-"]);
    std::fs::write(
        dir.join("requirements.txt"),
        "--no-index\n--find-links vendor\niniconfig==2.3.1\n",
    )
    .unwrap();
}

pub fn finish(out: Output, summary: &Path) -> Run {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = std::fs::read(summary)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("summary JSON parses"));
    Run {
        code: out.status.code().unwrap_or(-1),
        summary,
        stderr,
    }
}

/// Copy a directory tree (for seeding a store from a shared cold run).
pub fn copy_tree(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp")
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

/// One cold run of the fixture shared by the tests of a binary: (repo, store with its caches,
/// summary of the cold run). Each test copies the store so tests stay independent.
pub struct Seed {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub store: PathBuf,
    pub cold: RunSummary,
    pub cold_stderr: String,
}

pub fn seed() -> &'static Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    SEED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = fixture_repo(&dir.path().join("repo"));
        let store = dir.path().join("store");
        let home = dir.path().join("home");
        let r = run(&home, &repo, "green", &dir.path().join("work"), &store, &[]);
        assert_eq!(r.code, 0, "cold run failed:\n{}", r.stderr);
        let cold = r.summary().clone();
        Seed {
            repo,
            store,
            cold,
            cold_stderr: r.stderr,
            dir,
        }
    })
}

/// A fresh copy of the seeded store for one test.
pub fn seeded_store(into: &Path) -> PathBuf {
    let dest = into.join("store");
    copy_tree(&seed().store, &dest);
    dest
}

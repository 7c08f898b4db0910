//! What the sandbox shows because the build names it: a `--find-links` directory under `$HOME`
//! or `/tmp` (both hidden by the sandbox) is shown read-only to a trusted build; an untrusted
//! build gets a clear error naming the directory and the flag that shows it, and passes once
//! the operator shows it; a credentials directory stays hidden whatever names it.

use std::path::{Path, PathBuf};

use crate::support::kiln_home;
use crate::support::run::{finish, sh, vendor_file, Run};

/// A project whose requirements.txt takes iniconfig from `wheels` only, and whose test imports
/// it from the venv.
fn repo_naming(root: &Path, wheels: &Path) -> PathBuf {
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("requirements.txt"),
        format!(
            "--no-index\n--find-links {}\niniconfig==2.3.1\n",
            wheels.display()
        ),
    )
    .unwrap();
    std::fs::write(
        repo.join("kiln.yml"),
        "test:\n  command: python -c 'import iniconfig; print(\"imported\", iniconfig.__name__)'\n\
         report:\n  github:\n    enabled: false\n",
    )
    .unwrap();
    sh(
        &repo,
        "git init -q -b main && git add -A && git commit -qm project",
    );
    repo
}

/// A directory holding the iniconfig wheel.
fn wheels_at(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let wheel = vendor_file("iniconfig-2.3.1");
    std::fs::copy(&wheel, dir.join(wheel.file_name().unwrap())).unwrap();
    std::fs::canonicalize(dir).unwrap()
}

/// `kiln run --sandbox bwrap` of `repo` with HOME at `home`, in a fresh work dir under `t`.
fn run(t: &Path, home: &Path, repo: &Path, name: &str, extra: &[&str]) -> Run {
    let summary = t.join(format!("{name}.summary.json"));
    let out = kiln_home(home)
        .arg("run")
        .arg("--repo")
        .arg(repo)
        .arg("--workdir")
        .arg(t.join(name))
        .arg("--store")
        .arg(format!("file://{}", t.join("store").display()))
        .arg("--summary-json")
        .arg(&summary)
        .args(["--sandbox", "bwrap"])
        .args(extra)
        .output()
        .unwrap();
    finish(out, &summary)
}

fn assert_passed(r: &Run, wheels: &Path) {
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("imported iniconfig"), "{}", r.stderr);
    let shown = format!("the sandbox shows {} read-only", wheels.display());
    assert!(r.stderr.contains(&shown), "{}", r.stderr);
}

#[test]
fn a_find_links_dir_under_home_and_one_under_tmp_are_shown_to_a_trusted_build() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let in_home = wheels_at(&home.join("wheels"));
    let r = run(
        t.path(),
        &home,
        &repo_naming(&t.path().join("a"), &in_home),
        "w1",
        &[],
    );
    assert_passed(&r, &in_home);

    // A directory under /tmp, outside HOME: the sandbox's /tmp is private.
    let scratch = tempfile::tempdir().unwrap();
    let in_tmp = wheels_at(&scratch.path().join("wheels"));
    assert!(in_tmp.starts_with("/tmp"), "{}", in_tmp.display());
    let r = run(
        t.path(),
        &home,
        &repo_naming(&t.path().join("b"), &in_tmp),
        "w2",
        &[],
    );
    assert_passed(&r, &in_tmp);
}

#[test]
fn an_untrusted_build_sees_a_named_dir_only_when_the_operator_shows_it() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let wheels = wheels_at(&home.join("wheels"));
    let repo = repo_naming(t.path(), &wheels);
    let r = run(t.path(), &home, &repo, "w1", &["--untrusted"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let named = format!("requirements.txt:2 names {}", wheels.display());
    assert!(r.stderr.contains(&named), "{}", r.stderr);
    let flag = format!("--sandbox-show {}", wheels.display());
    assert!(r.stderr.contains(&flag), "{}", r.stderr);

    let shown = wheels.display().to_string();
    let r = run(
        t.path(),
        &home,
        &repo,
        "w2",
        &["--untrusted", "--sandbox-show", &shown],
    );
    assert_passed(&r, &wheels);
}

#[test]
fn a_credentials_dir_stays_hidden_whatever_names_it() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let ssh = wheels_at(&home.join(".ssh"));
    std::fs::write(ssh.join("id_ed25519"), "PRIVATE KEY").unwrap();
    let r = run(t.path(), &home, &repo_naming(t.path(), &ssh), "w1", &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("holds credentials"), "{}", r.stderr);
    assert!(!r.stderr.contains("imported iniconfig"), "{}", r.stderr);
}

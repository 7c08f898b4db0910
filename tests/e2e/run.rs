//! `kiln run` end to end on the fixture project: real git, venv, pip/uv, gcc and ccache.

use crate::support::run::*;
use kiln::summary::{Outcome, RestoreHit, StageOutcome};

#[test]
fn cold_run_builds_every_wheel_and_saves_both_caches() {
    let s = &seed().cold;
    assert_eq!(s.outcome, Outcome::Passed);
    assert_eq!(s.exit_code, 0);
    assert_eq!(
        s.wheels.built, 5,
        "fastsum, vecmath, markupsafe, simplejson, wrapt"
    );
    assert_eq!(s.tests.passed, 6);
    let wh = s.cache("wheelhouse").unwrap();
    assert_eq!(wh.restore, RestoreHit::Miss);
    assert!(wh.saved && wh.bytes_saved > 0, "{wh:?}");
    let cc = s.cache("ccache").unwrap();
    assert!(
        s.ccache.misses >= 5,
        "every C file compiled once: {:?}",
        s.ccache
    );
    assert!(cc.saved && cc.bytes_saved > 0, "{cc:?}");
    let names: Vec<&str> = s.stages.iter().map(|st| st.name.as_str()).collect();
    assert_eq!(
        names,
        ["checkout", "restore", "bootstrap", "test", "save", "report"]
    );
}

#[test]
fn warm_run_in_a_new_workdir_restores_exact_and_compiles_nothing() {
    let t = tempfile::tempdir().unwrap();
    let store = seeded_store(t.path());
    let home = t.path().join("home");
    for installer in ["uv", "pip"] {
        let work = t.path().join(format!("work-{installer}"));
        let r = run(
            &home,
            &seed().repo,
            "green",
            &work,
            &store,
            &["--installer", installer],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let s = r.summary();
        assert_eq!(s.installer, installer);
        assert_eq!(s.cache("wheelhouse").unwrap().restore, RestoreHit::Exact);
        assert_eq!(s.cache("ccache").unwrap().restore, RestoreHit::Exact);
        assert_eq!(s.wheels.built, 0);
        assert!(
            s.wheels.reused >= 10,
            "all installed from the wheelhouse: {:?}",
            s.wheels
        );
        assert_eq!((s.ccache.hits, s.ccache.misses), (0, 0), "ccache untouched");
        // Nothing changed: nothing uploaded.
        assert!(!s.cache("wheelhouse").unwrap().saved);
        assert!(!s.cache("ccache").unwrap().saved);
        assert_eq!(s.tests.passed, 6);
    }
}

#[test]
fn breaking_commit_exits_1_and_names_the_failing_test() {
    let t = tempfile::tempdir().unwrap();
    let store = seeded_store(t.path());
    let r = run(
        &t.path().join("home"),
        &seed().repo,
        "broken",
        &t.path().join("w"),
        &store,
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.outcome, Outcome::Failed);
    assert_eq!(s.tests.failed, 1);
    assert_eq!(s.tests.passed, 5);
    let f = &s.tests.failures[0];
    assert_eq!(f.name, "tests.test_report::test_summarize_totals");
    assert_eq!(f.file.as_deref(), Some("tests/test_report.py"));
    assert_eq!(f.line, Some(8));
    assert!(f.message.contains("11.0 == 10"), "{}", f.message);
    assert!(r
        .stderr
        .contains("FAILED tests.test_report::test_summarize_totals"));
    // Requirements did not change: the caches restored exactly and nothing was rebuilt.
    assert_eq!(s.cache("wheelhouse").unwrap().restore, RestoreHit::Exact);
    assert_eq!(s.stage("save").unwrap().outcome, StageOutcome::Ok);
}

#[test]
fn corrupt_wheelhouse_archive_is_a_miss_and_ccache_makes_the_rebuild_hit() {
    let t = tempfile::tempdir().unwrap();
    let store = seeded_store(t.path());
    // Damage every wheelhouse archive in the store (flip bytes in the middle).
    let mut damaged = 0;
    for e in walkdir::WalkDir::new(&store).into_iter().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains("wheels") && !name.ends_with(".json") && e.file_type().is_file() {
            let mut bytes = std::fs::read(e.path()).unwrap();
            let mid = bytes.len() / 2;
            let end = (mid + 64).min(bytes.len());
            for b in &mut bytes[mid..end] {
                *b ^= 0xff;
            }
            std::fs::write(e.path(), bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(
        damaged > 0,
        "no wheelhouse archive found in {}",
        store.display()
    );
    let r = run(
        &t.path().join("home"),
        &seed().repo,
        "green",
        &t.path().join("w"),
        &store,
        &[],
    );
    assert_eq!(
        r.code, 0,
        "a corrupt cache never fails the build:\n{}",
        r.stderr
    );
    let s = r.summary();
    let wh = s.cache("wheelhouse").unwrap();
    assert_eq!(wh.restore, RestoreHit::Miss);
    assert!(!wh.warnings.is_empty(), "the miss is explained");
    assert!(r.stderr.contains("WARN"), "warned on the console");
    assert_eq!(s.wheels.built, 5, "wheels rebuilt");
    // The ccache restored from a different work dir still serves every compile.
    assert_eq!(s.cache("ccache").unwrap().restore, RestoreHit::Exact);
    assert!(s.ccache.hits >= 5, "{:?}", s.ccache);
    assert_eq!(s.ccache.misses, 0, "{:?}", s.ccache);
    // Without the preprocessor: the sdists compile in uv's cache, whose build environment's
    // random path is left out of the hash from there too.
    assert_eq!(s.ccache.direct_hits, s.ccache.hits, "{:?}", s.ccache);
    assert!(wh.saved, "a good archive replaces the corrupt one");
}

#[test]
fn changed_requirements_restore_partially_and_prune_unused_wheels() {
    let t = tempfile::tempdir().unwrap();
    let store = seeded_store(t.path());
    let repo = t.path().join("repo");
    copy_tree(&seed().repo, &repo);
    sh(&repo, "git checkout -q green && git checkout -q -b slim");
    drop_wrapt(&repo);
    sh(&repo, "git commit -qam 'Drop wrapt'");
    let r = run(
        &t.path().join("home"),
        &repo,
        "slim",
        &t.path().join("w"),
        &store,
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    let wh = s.cache("wheelhouse").unwrap();
    assert_eq!(wh.restore, RestoreHit::Partial, "{wh:?}");
    assert_ne!(wh.restored_key.as_deref(), Some(wh.key.as_str()));
    assert_eq!(
        s.wheels.built, 0,
        "everything needed was in the restored wheelhouse"
    );
    assert!(wh.saved, "new key saved");
    let wheelhouse = t.path().join("w/wheelhouse");
    let names: Vec<String> = std::fs::read_dir(&wheelhouse)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("wrapt-")),
        "unused wheel pruned: {names:?}"
    );
    assert!(names.iter().any(|n| n.starts_with("fastsum-")), "{names:?}");
}

/// Drop wrapt: the requirements change (a new wheelhouse key, restored partially), the app gets
/// a plain-Python decorator. Commits nothing.
fn drop_wrapt(repo: &std::path::Path) {
    let req = std::fs::read_to_string(repo.join("requirements.txt")).unwrap();
    std::fs::write(
        repo.join("requirements.txt"),
        req.replace("wrapt==2.5.2\n", ""),
    )
    .unwrap();
    let app = std::fs::read_to_string(repo.join("app/report.py")).unwrap();
    let app = app.replace("import wrapt\n", "").replace(
        "@wrapt.decorator\ndef traced(wrapped, instance, args, kwargs):\n    CALLS.append(wrapped.__name__)\n    return wrapped(*args, **kwargs)\n",
        "def traced(f):\n    def inner(*args, **kwargs):\n        CALLS.append(f.__name__)\n        return f(*args, **kwargs)\n    return inner\n",
    );
    assert!(!app.contains("wrapt"), "fixture changed: update this test");
    std::fs::write(repo.join("app/report.py"), app).unwrap();
}

#[test]
fn save_on_lets_only_the_chosen_branches_write_the_cache() {
    let t = tempfile::tempdir().unwrap();
    let store = seeded_store(t.path());
    let repo = t.path().join("repo");
    copy_tree(&seed().repo, &repo);
    sh(
        &repo,
        "git checkout -q green && git checkout -q -b feature/slim",
    );
    drop_wrapt(&repo);
    let yml = std::fs::read_to_string(repo.join("kiln.yml")).unwrap();
    std::fs::write(
        repo.join("kiln.yml"),
        format!("{yml}cache:\n  save_on: [main, \"release/*\"]\n"),
    )
    .unwrap();
    sh(
        &repo,
        "git commit -qam 'Drop wrapt, save caches from main only'",
    );
    let home = t.path().join("home");
    let wheelhouse_saved = |work: &str, extra: &[&str], env: &[(&str, Option<&str>)]| {
        let r = run_env(
            &home,
            &repo,
            "feature/slim",
            &t.path().join(work),
            &store,
            extra,
            env,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let s = r.summary().clone();
        (s.cache("wheelhouse").unwrap().saved, s, r.stderr)
    };
    // A feature branch restores the caches but writes nothing.
    let (saved, s, err) = wheelhouse_saved("w1", &[], &[]);
    assert!(!saved, "a branch outside save_on saved the wheelhouse");
    let save = s.stage("save").unwrap();
    assert_eq!(save.outcome, StageOutcome::Skipped);
    assert!(
        err.contains("branch feature/slim is not in cache.save_on (main, release/*)"),
        "{err}"
    );
    assert_eq!(s.cache("wheelhouse").unwrap().restore, RestoreHit::Partial);
    // A pull request never saves, even from a listed branch.
    let pr = [("KILN_PR_NUMBER", Some("7"))];
    let (saved, _, err) = wheelhouse_saved("w2", &["--branch", "main"], &pr);
    assert!(!saved, "a pull request saved: {err}");
    assert!(err.contains("not by pull requests"), "{err}");
    // The same commit built as a release branch saves its new wheelhouse key.
    let (saved, s, err) = wheelhouse_saved("w3", &["--branch", "release/2.0"], &[]);
    assert!(saved, "a branch matching release/* did not save: {err}");
    assert_eq!(s.stage("save").unwrap().outcome, StageOutcome::Ok);
    // …which the next feature-branch run restores exactly.
    let (_, s, _) = wheelhouse_saved("w4", &[], &[]);
    assert_eq!(s.cache("wheelhouse").unwrap().restore, RestoreHit::Exact);
}

#[test]
fn malformed_config_is_exit_2_with_file_line_col() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    copy_tree(&seed().repo, &repo);
    sh(
        &repo,
        "git checkout -q green && printf 'test:\\n  comand: pytest\\n' > kiln.yml && git commit -qam 'typo'",
    );
    let r = run(
        &t.path().join("home"),
        &repo,
        "HEAD",
        &t.path().join("w"),
        &t.path().join("s"),
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("kiln.yml:2:3"), "{}", r.stderr);
    assert!(r.stderr.contains("comand"), "{}", r.stderr);
}

#[test]
fn refuses_to_empty_a_workdir_it_did_not_make() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("precious");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("thesis.tex"), "years of work").unwrap();
    let r = run(
        &t.path().join("home"),
        &seed().repo,
        "green",
        &work,
        &t.path().join("s"),
        &[],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("refusing"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(work.join("thesis.tex")).unwrap(),
        "years of work"
    );
}

#[test]
fn works_without_ccache_with_one_warning() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let mut cmd = crate::support::kiln_home(&t.path().join("home"));
    let summary = t.path().join("s.json");
    cmd.env("KILN_CCACHE_BIN", "")
        .args(["run", "--rev", "green", "--installer", "pip"])
        .arg("--repo")
        .arg(&seed().repo)
        .arg("--workdir")
        .arg(t.path().join("w"))
        .arg("--store")
        .arg(format!("file://{}", store.display()))
        .arg("--summary-json")
        .arg(&summary);
    let r = finish(cmd.output().unwrap(), &summary);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("ccache is not installed").count(),
        1,
        "{}",
        r.stderr
    );
    let s = r.summary();
    assert!(!s.ccache.enabled);
    assert_eq!(s.wheels.built, 5);
    assert!(!s.cache("ccache").unwrap().saved);
}

#[test]
fn missing_revision_is_an_infrastructure_error() {
    let t = tempfile::tempdir().unwrap();
    let r = run(
        &t.path().join("home"),
        &seed().repo,
        "no-such-branch",
        &t.path().join("w"),
        &t.path().join("s"),
        &[],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.outcome, Outcome::Error);
    assert!(
        s.error.as_deref().unwrap_or("").contains("no-such-branch"),
        "{:?}",
        s.error
    );
    assert_eq!(s.stage("checkout").unwrap().outcome, StageOutcome::Failed);
}

/// kiln.yml written by someone hostile (anyone who can open a pull request): each is a config
/// error (exit 2) naming file:line:col, in well under a second, echoing no more than a short
/// prefix of any value.
#[test]
fn hostile_config_is_a_bounded_config_error() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    sh(
        &repo,
        "git init -q -b main && git commit -q --allow-empty -m init",
    );
    let long_key = "k".repeat(60_000);
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "nested brackets, one line",
            format!("python: {}{}\n", "[".repeat(30_000), "]".repeat(30_000)),
            "kiln.yml:1:",
            "nesting deeper than 64 levels",
        ),
        (
            "100,000 nested brackets",
            format!("python:\n{}", "  [\n".repeat(100_000)),
            "kiln.yml:64:",
            "nesting deeper than 64 levels",
        ),
        (
            "a 50 MB value",
            format!("python: \"{}\"\n", "v".repeat(50 << 20)),
            "kiln.yml:1:1:",
            "larger than 1024 KiB",
        ),
        (
            "a 200,000-entry list",
            format!("requirements:\n{}", "  - r.txt\n".repeat(100_000)),
            "kiln.yml:",
            "at most 1000",
        ),
        (
            "a 60 KB key",
            format!("{long_key}: 1\n"),
            "kiln.yml:1:1:",
            "invalid type: string \"kkkk",
        ),
    ];
    for (name, text, place, reason) in cases {
        std::fs::write(repo.join("kiln.yml"), &text).unwrap();
        sh(&repo, "git add kiln.yml && git commit -qm hostile");
        let started = std::time::Instant::now();
        let r = run(
            &t.path().join("home"),
            &repo,
            "HEAD",
            &t.path().join("w"),
            &t.path().join("s"),
            &[],
        );
        eprintln!("{name}: exit {} in {:.2?}", r.code, started.elapsed());
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(place), "{name}: {}", r.stderr);
        assert!(r.stderr.contains(reason), "{name}: {}", r.stderr);
        assert!(
            !r.stderr.contains(&"k".repeat(41)) && !r.stderr.contains(&"v".repeat(41)),
            "{name}: a value is echoed: {:.300}",
            r.stderr
        );
        assert!(r.stderr.len() < 4000, "{name}: {:.300}", r.stderr);
    }
}

#[test]
fn cold_uv_run_builds_the_sdists_in_parallel_and_pip_only_collects() {
    let s = seed();
    assert_eq!(s.cold.installer, "uv");
    // Kiln's frontend builds every sdist uv resolved (concurrently) into the wheelhouse, so uv's
    // install builds none, and the pip pass that gathers the ready-made wheels builds none
    // either.
    assert!(
        s.cold_stderr.contains("built 5 sdist(s) in parallel in ")
            && s.cold_stderr
                .contains(": fastsum, markupsafe, simplejson, vecmath, wrapt"),
        "Kiln built the five sdists:\n{}",
        s.cold_stderr
    );
    for name in ["fastsum", "vecmath", "markupsafe", "simplejson", "wrapt"] {
        assert!(
            !s.cold_stderr.contains(&format!("Building {name}==")),
            "uv built {name} again:\n{}",
            s.cold_stderr
        );
    }
    assert!(
        !s.cold_stderr.contains("Building wheel for"),
        "pip built a wheel itself:\n{}",
        s.cold_stderr
    );
    assert_eq!(
        s.cold.wheels.built_names,
        ["fastsum", "markupsafe", "simplejson", "vecmath", "wrapt"]
    );
}

#[test]
fn a_bad_kiln_variable_is_exit_2_naming_it_unless_its_flag_is_given() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let run = |workdir: &str, flags: &[&str]| {
        crate::support::kiln_home(&home)
            .args(["run", "--repo", "/nonexistent/kiln-repo", "--workdir"])
            .arg(t.path().join(workdir))
            .args(flags)
            .env("KILN_REPORT_MODE", "loud")
            .output()
            .expect("run kiln")
    };
    let out = run("a", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("KILN_REPORT_MODE"), "{err}");
    assert!(
        err.contains("`problem`, `failing`, `change`, `all`"),
        "{err}"
    );
    // The flag wins, and the variable is not even read: the run goes on to the checkout, which
    // fails (an infrastructure error, exit 3).
    let out = run("b", &["--report-mode", "failing"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("checkout failed"), "{err}");
}

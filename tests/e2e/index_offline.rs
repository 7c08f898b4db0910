//! CI builds and publishes; the wheels travel as one archive to a machine without network;
//! `kiln run --offline` there installs only from them, and names the requirement it lacks.

use crate::support;

use kiln::summary::Outcome;

fn ok(c: &mut std::process::Command) -> String {
    let (ok, log) = support::index::run(c);
    assert!(ok, "{c:?} failed:\n{log}");
    log
}

#[test]
fn offline_run_installs_from_imported_wheels_and_names_a_missing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repo = support::run::fixture_repo(&t.join("repo"));

    // Machine A (CI): a normal run builds the wheels; its save stage publishes them to the store.
    let (home_a, store_a) = (t.join("home-a"), t.join("store-a"));
    let r = support::run::run(&home_a, &repo, "green", &t.join("work-a"), &store_a, &[]);
    assert_eq!(r.code, 0, "CI run failed:\n{}", r.stderr);
    let save = r.summary().stage("save").unwrap();
    assert!(
        save.detail
            .as_deref()
            .unwrap_or("")
            .contains("wheel(s) published"),
        "{save:?}"
    );
    assert!(
        store_a.join("wheels/fastsum").is_dir(),
        "fastsum not published"
    );
    let archive = t.join("team-wheels.tar.zst");
    ok(support::kiln_home(&home_a)
        .args(["wheelhouse", "export", "--store"])
        .arg(format!("file://{}", store_a.display()))
        .arg("--output")
        .arg(&archive));

    // Machine B: another home, an empty store; only the archive arrives.
    let (home_b, store_b) = (t.join("home-b"), t.join("store-b"));
    let log = ok(support::kiln_home(&home_b)
        .args(["wheelhouse", "import"])
        .arg(&archive));
    assert!(log.contains("all sha256 verified"), "{log}");
    let imported = home_b.join(".cache/kiln/wheelhouse");

    for installer in ["uv", "pip"] {
        let r = support::run::run(
            &home_b,
            &repo,
            "green",
            &t.join(format!("work-b-{installer}")),
            &store_b,
            &["--offline", "--no-save", "--installer", installer],
        );
        assert_eq!(r.code, 0, "offline run ({installer}) failed:\n{}", r.stderr);
        let s = r.summary();
        assert_eq!(s.outcome, Outcome::Passed);
        assert_eq!(s.wheels.built, 0, "nothing may be built offline");
        assert_eq!(s.tests.passed, 6);
    }

    // A wheel goes missing: the run fails at bootstrap and names it, for both installers.
    let wrapt = std::fs::read_dir(&imported)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("wrapt-")
        })
        .expect("wrapt wheel imported");
    std::fs::remove_file(&wrapt).unwrap();
    for installer in ["uv", "pip"] {
        let r = support::run::run(
            &home_b,
            &repo,
            "green",
            &t.join(format!("work-b-missing-{installer}")),
            &store_b,
            &["--offline", "--no-save", "--installer", installer],
        );
        assert_eq!(r.code, 3, "{}", r.stderr);
        let error = r.summary().error.clone().unwrap_or_default();
        assert!(
            error.contains("no wheel for `wrapt==2.5.2`"),
            "{installer}: {error}"
        );
        assert!(error.contains(imported.to_str().unwrap()), "{error}");
        assert!(error.contains("kiln wheelhouse export"), "{error}");
    }
}

//! `kiln run` on the projects people have (issue 11): real third-party C-extension projects from
//! their released sdists with no kiln.yml, and our own small fixtures for each dependency
//! source (uv.lock, pylock.toml, PEP 735 groups and extras, an editable path dependency, hashed
//! requirements). Offline after set-up: pip and uv read .cache/fixtures/vendor, never an index.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::support::run::*;
use kiln::summary::{Outcome, RestoreHit, RunSummary};

/// `kiln run` with the vendor dir as the only package source.
fn run_offline(
    home: &Path,
    repo: &Path,
    rev: &str,
    work: &Path,
    store: &Path,
    extra: &[&str],
) -> Run {
    let env = vendor_env();
    let env: Vec<(&str, Option<&str>)> = env.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    run_env(home, repo, rev, work, store, extra, &env)
}

/// A cold run of a real project, shared by the tests that start from its caches.
struct Cold {
    dir: tempfile::TempDir,
    repo: PathBuf,
    store: PathBuf,
    summary: RunSummary,
}

fn cold(name: &str, extra: &[&str]) -> Cold {
    let dir = tempfile::tempdir().unwrap();
    let repo = project_repo(name, &dir.path().join("repo"));
    let store = dir.path().join("store");
    let r = run_offline(
        &dir.path().join("home"),
        &repo,
        "release",
        &dir.path().join("cold"),
        &store,
        extra,
    );
    assert_eq!(r.code, 0, "{name} cold run failed:\n{}", r.stderr);
    let summary = r.summary().clone();
    Cold {
        dir,
        repo,
        store,
        summary,
    }
}

fn msgpack() -> &'static Cold {
    static COLD: OnceLock<Cold> = OnceLock::new();
    COLD.get_or_init(|| cold("msgpack", &[]))
}

#[test]
fn real_c_extension_projects_without_kiln_yml_are_tested_against_their_compiled_extension() {
    let mut cases = vec![("msgpack", "msgpack._cmsgpack", msgpack().summary.clone())];
    for (name, module) in [
        ("markupsafe", "markupsafe._speedups"),
        ("simplejson", "simplejson._speedups"),
    ] {
        cases.push((name, module, cold(name, &[]).summary));
    }
    for (name, module, s) in cases {
        assert_eq!(s.outcome, Outcome::Passed, "{name}");
        let p = s
            .project
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no project"));
        assert_eq!(p.install, "editable", "{name}");
        assert!(
            p.compiled_modules.iter().any(|m| m == module),
            "{name}: {:?}",
            p.compiled_modules
        );
        // markupsafe's tests take requirements/tests.txt (its pytest, pinned); the others list
        // no pytest: Kiln brought it, and said so.
        if name == "markupsafe" {
            assert_eq!(s.test_deps, "requirements/tests.txt", "{name}");
            assert!(!p.pytest_added, "{name}");
        } else {
            assert!(p.pytest_added, "{name}");
        }
        assert!(s.tests.passed >= 50, "{name}: {:?}", s.tests);
        assert!(
            s.ccache.misses >= 1,
            "{name}: its C code compiled: {:?}",
            s.ccache
        );
        assert!(!p.build_requires.is_empty(), "{name}");
        assert!(
            ["pyproject", "setup.py"].contains(&s.deps_source.as_str()),
            "{name}: {}",
            s.deps_source
        );
    }
}

#[test]
fn warm_run_with_every_index_unreachable_builds_nothing_and_passes() {
    let seed = msgpack();
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    copy_tree(&seed.store, &store);
    // Every index a closed port, no find-links: anything fetched would fail the run.
    let closed = "http://127.0.0.1:9/simple";
    let r = run_env(
        &t.path().join("home"),
        &seed.repo,
        "release",
        &t.path().join("warm"),
        &store,
        &[],
        &[
            ("PIP_INDEX_URL", Some(closed)),
            ("UV_INDEX_URL", Some(closed)),
            ("UV_DEFAULT_INDEX", Some(closed)),
            ("PIP_FIND_LINKS", None),
            ("UV_FIND_LINKS", None),
            ("PIP_NO_INDEX", None),
            ("UV_NO_INDEX", None),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.cache("wheelhouse").unwrap().restore, RestoreHit::Exact);
    assert_eq!(s.wheels.built, 0, "{:?}", s.wheels);
    // pytest and its four dependencies, every one from the wheelhouse (it said 0).
    assert!(s.wheels.reused >= 5, "{:?}", s.wheels);
    // The project's own C code is compiled on every run, from the restored ccache, without
    // the preprocessor: uv's random build environment path is not in the hash.
    assert_eq!(
        (s.ccache.misses, s.ccache.hits, s.ccache.direct_hits),
        (0, 1, 1),
        "{:?}",
        s.ccache
    );
    let p = s.project.as_ref().unwrap();
    assert_eq!(p.compiled_modules, ["msgpack._cmsgpack"]);
    assert_eq!(s.tests.passed, seed.summary.tests.passed);
    assert!(!s.cache("wheelhouse").unwrap().saved, "nothing new to save");
}

#[test]
fn editing_one_c_file_recompiles_that_file_only() {
    // bitarray: two C extensions. Its own suite is run by `bitarray.test()`, not pytest.
    let cmd = [
        "--test-command",
        "python -m pytest -q bitarray/test_util.py",
    ];
    let seed = cold("bitarray", &cmd);
    assert_eq!(seed.summary.ccache.misses, 2, "{:?}", seed.summary.ccache);
    sh(
        &seed.repo,
        "printf 'int kiln_edit_marker(void) { return 1; }\\n' >> bitarray/_util.c && \
         git commit -qam 'edit _util.c' && git tag edited",
    );
    let r = run_offline(
        &seed.dir.path().join("home"),
        &seed.repo,
        "edited",
        &seed.dir.path().join("warm"),
        &seed.store,
        &cmd,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!((s.ccache.misses, s.ccache.hits), (1, 1), "{:?}", s.ccache);
    assert_eq!(s.ccache.direct_hits, 1, "the unedited file: {:?}", s.ccache);
    assert_eq!(s.wheels.built, 0);
    assert_eq!(s.project.as_ref().unwrap().compiled_modules.len(), 2);
}

#[test]
fn uv_lock_then_pylock_then_a_stale_lock() {
    let t = tempfile::tempdir().unwrap();
    let repo = project_repo("lockdemo", &t.path().join("repo"));
    let store = t.path().join("store");
    let home = t.path().join("home");
    let r = run_offline(&home, &repo, "release", &t.path().join("w1"), &store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.deps_source, "uv.lock");
    // markupsafe's sdist passed its locked hash, was built (C speedups), and its test passed.
    assert_eq!(s.wheels.built_names, ["markupsafe"], "{:?}", s.wheels);
    assert_eq!(s.tests.passed, 2);
    assert!(
        !s.project.as_ref().unwrap().pytest_added,
        "the lock has pytest"
    );

    sh(
        &repo,
        "git rm -q uv.lock && git commit -qm 'pylock only' && git tag pylock",
    );
    let r = run_offline(&home, &repo, "pylock", &t.path().join("w2"), &store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.summary().deps_source, "pylock.toml");
    assert_eq!(r.summary().tests.passed, 2);

    sh(
        &repo,
        "git checkout -q release && sed -i 's/\"markupsafe==3.0.2\"]/\"markupsafe==3.0.2\", \"iniconfig\"]/' \
         pyproject.toml && git commit -qam 'new dependency, lock not updated' && git tag stale",
    );
    let r = run_offline(&home, &repo, "stale", &t.path().join("w3"), &store, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("uv.lock is out of date"), "{}", r.stderr);
    assert!(r.stderr.contains("uv lock"), "{}", r.stderr);
}

#[test]
fn dependency_groups_extras_and_bad_names() {
    let t = tempfile::tempdir().unwrap();
    let repo = project_repo("groupsdemo", &t.path().join("repo"));
    let store = t.path().join("store");
    let home = t.path().join("home");
    // Default: the `test` group, which includes `lint` (iniconfig).
    let r = run_offline(&home, &repo, "release", &t.path().join("w1"), &store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.deps_source, "pyproject");
    assert_eq!(s.tests.passed, 1);
    assert!(s.project.as_ref().unwrap().compiled_modules.is_empty());

    sh(
        &repo,
        "printf 'project:\\n  extras: [speed]\\n  groups: [test]\\n' > kiln.yml && \
         printf 'def test_speed():\\n    from markupsafe import _speedups\\n' > tests/test_speed.py && \
         git add -A && git commit -qm 'extras' && git tag extras",
    );
    let r = run_offline(&home, &repo, "extras", &t.path().join("w2"), &store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.summary().tests.passed, 2);
    // Kiln's frontend built the extra's sdist (resolved from pyproject.toml with the extra)
    // and the editable project alongside it: uv's install built neither.
    assert!(
        r.stderr.contains("built 1 sdist(s) in parallel") && r.stderr.contains("s: markupsafe"),
        "{}",
        r.stderr
    );
    for name in ["markupsafe==", "groupsdemo @"] {
        assert!(
            !r.stderr.contains(&format!("Building {name}")),
            "{}",
            r.stderr
        );
    }
    assert!(r
        .summary()
        .wheels
        .built_names
        .contains(&"markupsafe".to_string()));

    sh(
        &repo,
        "printf 'project:\\n  extras: [fast]\\n' > kiln.yml && git commit -qam 'typo' && git tag typo",
    );
    let r = run_offline(&home, &repo, "typo", &t.path().join("w3"), &store, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("extra `fast` is not defined by pyproject.toml (it defines: speed)"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_header_from_a_build_requirement_hits_ccache_in_the_next_work_dir() {
    // Like a pybind11 or numpy extension: the compile includes a header that a build
    // requirement (hdrkit) installs in the build environment.
    let t = tempfile::tempdir().unwrap();
    let repo = project_repo("buildhdr", &t.path().join("repo"));
    let (store, home) = (t.path().join("store"), t.path().join("home"));
    let r = run_offline(&home, &repo, "release", &t.path().join("w1"), &store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.tests.passed, 1, "{:?}", s.tests);
    let p = s.project.as_ref().unwrap();
    assert_eq!(p.compiled_modules, ["buildhdr._calc"]);
    assert_eq!(s.ccache.misses, 1, "{:?}", s.ccache);
    let r = run_offline(&home, &repo, "release", &t.path().join("w2"), &store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.cache("wheelhouse").unwrap().restore, RestoreHit::Exact);
    // The build environment is where it was in the first work dir (relative to it): the
    // header's path is the same, and ccache hits without running the preprocessor.
    assert_eq!(
        (s.ccache.hits, s.ccache.direct_hits, s.ccache.misses),
        (1, 1, 0),
        "{:?}",
        s.ccache
    );
    // A build that breaks is reported with the compiler's error.
    sh(
        &repo,
        "printf 'int broken(void) { return undeclared_name; }\\n' >> src/buildhdr/_calc.c && \
         git commit -qam 'break the build' && git tag broken",
    );
    let r = run_offline(&home, &repo, "broken", &t.path().join("w3"), &store, &[]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("building the project failed"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("undeclared_name"), "{}", r.stderr);
}

#[test]
fn editable_path_dependency_is_built_in_place_and_never_kept() {
    let t = tempfile::tempdir().unwrap();
    let repo = project_repo("localdep", &t.path().join("repo"));
    let store = t.path().join("store");
    let home = t.path().join("home");
    let work = t.path().join("w1");
    let r = run_offline(&home, &repo, "release", &work, &store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.deps_source, "requirements");
    assert_eq!(s.tests.passed, 1);
    let wheels: Vec<String> = std::fs::read_dir(work.join("wheelhouse"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !wheels.iter().any(|w| w.starts_with("helper-")),
        "{wheels:?}"
    );
    assert!(
        wheels.iter().any(|w| w.starts_with("setuptools-")),
        "{wheels:?}"
    );
    // A warm run builds the helper again, through ccache, with no index at all.
    let r = run_env(
        &home,
        &repo,
        "release",
        &t.path().join("w2"),
        &store,
        &[],
        &[
            ("PIP_INDEX_URL", Some("http://127.0.0.1:9/simple")),
            ("PIP_FIND_LINKS", None),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!((r.summary().ccache.hits, r.summary().ccache.misses), (1, 0));
}

#[test]
fn hashed_requirements_are_checked_and_a_wrong_hash_names_the_package() {
    let t = tempfile::tempdir().unwrap();
    let repo = project_repo("hashes", &t.path().join("repo"));
    let store = t.path().join("store");
    let home = t.path().join("home");
    let r = run_offline(&home, &repo, "release", &t.path().join("w1"), &store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.summary().tests.passed, 1);
    assert_eq!(r.summary().wheels.built_names, ["markupsafe"]);

    sh(
        &repo,
        "sed -i 's/sha256:ee55d3edf80167e48ea11a923c7386f4669df67d7994554387f84e7d8b0a2bf0/sha256:0000000000000000000000000000000000000000000000000000000000000000/' requirements.txt && \
         git commit -qam 'wrong hash' && git tag wrong",
    );
    let r = run_offline(
        &home,
        &repo,
        "wrong",
        &t.path().join("w2"),
        &t.path().join("store2"),
        &[],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    let err = r.summary().error.clone().unwrap_or_default();
    assert!(err.contains("markupsafe"), "{err}");
    assert!(r.stderr.contains("DO NOT MATCH THE HASHES"), "{}", r.stderr);
}

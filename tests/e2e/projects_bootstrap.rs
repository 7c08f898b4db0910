//! What a bootstrap keeps and says (issue 11): an empty wheelhouse is never saved nor shared, a
//! failed bootstrap keeps what it built, compile probes do not make every warm run save the
//! ccache, the ccache figures count uncacheable calls and the hit rate, and a
//! `bootstrap.command` keeps the wheelhouse and ccache. Offline: every package comes from
//! .cache/fixtures/vendor or from sdists the tests make.

use std::path::{Path, PathBuf};

use crate::support::run::*;
use kiln::summary::{RestoreHit, RunSummary};

/// `kiln run` with the vendor dir as the only package source.
fn run_offline(t: &Path, repo: &Path, rev: &str, work: &str, extra: &[&str]) -> Run {
    let env = vendor_env();
    let env: Vec<(&str, Option<&str>)> = env.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    run_env(
        &t.join("home"),
        repo,
        rev,
        &t.join(work),
        &t.join("store"),
        extra,
        &env,
    )
}

fn git_repo(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    for (name, body) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    sh(
        dir,
        "git init -q -b main && git add -A && git commit -qm init && git tag release",
    );
    dir.to_path_buf()
}

fn save_detail(s: &RunSummary) -> String {
    s.stage("save")
        .and_then(|st| st.detail.clone())
        .unwrap_or_default()
}

#[test]
fn a_project_with_nothing_to_install_saves_no_wheelhouse_and_gets_no_other_projects() {
    let t = tempfile::tempdir().unwrap();
    // A: no dependency files, tests run by pytest, which Kiln keeps in the wheelhouse.
    let a = git_repo(
        &t.path().join("a"),
        &[("tests/test_a.py", "def test_a():\n    assert True\n")],
    );
    let r = run_offline(t.path(), &a, "release", "wa", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.summary().project.is_none());
    assert!(
        r.summary().cache("wheelhouse").unwrap().saved,
        "pytest is kept"
    );

    // B: no dependency files either, and a test command that needs nothing installed.
    let b = git_repo(&t.path().join("b"), &[("check.sh", "exit 0\n")]);
    for work in ["wb1", "wb2"] {
        let r = run_offline(
            t.path(),
            &b,
            "release",
            work,
            &["--test-command", "sh check.sh"],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let s = r.summary();
        let wh = s.cache("wheelhouse").unwrap();
        // B's key is not A's (A's pytest wheels may come back by prefix, as any project's do)
        // and B keeps nothing: no exact hit on an empty or borrowed wheelhouse, ever.
        assert_ne!(wh.restore, RestoreHit::Exact, "{work}: {wh:?}");
        assert!(!wh.saved, "{work}: {wh:?}");
        let why = "wheelhouse not saved: nothing to install";
        assert!(save_detail(s).contains(why), "{}", save_detail(s));
        assert!(r.stderr.contains(why), "the console says so:\n{}", r.stderr);
    }
}

#[test]
fn compile_probes_in_temp_dirs_do_not_make_warm_runs_save_ccache() {
    let t = tempfile::tempdir().unwrap();
    let repo = project_repo("probe", &t.path().join("repo"));
    let cold = run_offline(t.path(), &repo, "release", "cold", &[]);
    assert_eq!(cold.code, 0, "{}", cold.stderr);
    let s = cold.summary();
    assert_eq!(s.tests.passed, 1, "the probe found clock_gettime");
    // The project's extension and the probe compiled; both links are uncacheable.
    assert_eq!((s.ccache.hits, s.ccache.misses), (0, 2), "{:?}", s.ccache);
    assert!(s.ccache.uncacheable >= 2, "{:?}", s.ccache);
    assert_eq!(s.ccache.hit_rate, Some(0.0));
    assert!(s.cache("ccache").unwrap().saved);

    for work in ["warm1", "warm2"] {
        let r = run_offline(t.path(), &repo, "release", work, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let s = r.summary();
        // The extension hits; the probe's random temp file misses, as it always will.
        assert_eq!(
            (s.ccache.hits, s.ccache.misses),
            (1, 1),
            "{work}: {:?}",
            s.ccache
        );
        assert_eq!(s.ccache.kept_misses, 0, "{work}: {:?}", s.ccache);
        assert_eq!(s.ccache.hit_rate, Some(50.0));
        let cc = s.cache("ccache").unwrap();
        assert!(!cc.saved, "{work}: nothing a later run can hit: {cc:?}");
        assert!(
            save_detail(s).contains("ccache unchanged"),
            "{}",
            save_detail(s)
        );
        assert!(
            r.stderr.contains("ccache: 1 hit, 1 miss, ")
                && r.stderr.contains("uncacheable (50.0% hit rate)"),
            "the console has the figures:\n{}",
            r.stderr
        );
    }

    // A change to the project's own C code is kept.
    sh(
        &repo,
        "printf 'int probe_edit(void) { return 2; }\\n' >> src/probe/_fast.c && \
         git commit -qam edit && git tag edited",
    );
    let r = run_offline(t.path(), &repo, "edited", "edited", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.ccache.kept_misses, 1, "{:?}", s.ccache);
    assert!(s.cache("ccache").unwrap().saved);
}

/// The test command of the repositories that bring a `check.sh`.
const CHECK_SH: [&str; 2] = ["--test-command", "sh check.sh"];

/// An sdist (a tar.gz of a setuptools source tree) of `brokenpkg` 1.0 with two C extensions;
/// `bad` decides whether `_bad.c` compiles.
fn brokenpkg_sdist(into: &Path, bad: bool) {
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("brokenpkg-1.0");
    let module = |name: &str, body: &str| {
        format!(
            "#include <Python.h>\n{body}\nstatic struct PyModuleDef m = {{PyModuleDef_HEAD_INIT, \"{name}\", NULL, -1, NULL}};\n\
             PyMODINIT_FUNC PyInit_{name}(void) {{ return PyModule_Create(&m); }}\n"
        )
    };
    let files = [
        ("pyproject.toml", "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"brokenpkg\"\nversion = \"1.0\"\n".to_string()),
        ("PKG-INFO", "Metadata-Version: 2.1\nName: brokenpkg\nVersion: 1.0\n".to_string()),
        ("setup.py", "from setuptools import Extension, setup\n\nsetup(ext_modules=[Extension(\"_good\", [\"good.c\"]), Extension(\"_bad\", [\"bad.c\"])])\n".to_string()),
        ("good.c", module("_good", "static int good = 1;")),
        ("bad.c", module("_bad", if bad { "static int bad = ;" } else { "static int bad = 2;" })),
    ];
    std::fs::create_dir_all(&root).unwrap();
    for (name, body) in files {
        std::fs::write(root.join(name), body).unwrap();
    }
    let out = into.join("brokenpkg-1.0.tar.gz");
    sh(
        src.path(),
        &format!("tar -czf {} brokenpkg-1.0", out.display()),
    );
}

#[test]
fn a_failed_bootstrap_keeps_its_wheels_and_compiles_and_the_next_run_builds_only_the_failure() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("repo");
    let vendor = dir.join("vendor");
    vendor_into(&dir, &["fastsum-", "vecmath-"]);
    brokenpkg_sdist(&vendor, true);
    let repo = git_repo(
        &dir,
        &[
            (
                "requirements.txt",
                "--find-links vendor\nfastsum==1.0\nvecmath==1.0\nbrokenpkg==1.0\n",
            ),
            ("check.sh", "exit 0\n"),
        ],
    );
    let cmd = ["--test-command", "sh check.sh"];
    let r = run_offline(t.path(), &repo, "release", "w1", &cmd);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let s = r.summary();
    assert!(
        s.error.as_deref().unwrap_or("").contains("brokenpkg"),
        "{:?}",
        s.error
    );
    // Kiln's frontend built the two good sdists and left the broken one to uv, saying why.
    assert!(
        r.stderr.contains("Kiln could not build brokenpkg (")
            && r.stderr.contains("; uv builds it"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("built 2 sdist(s) in parallel"),
        "{}",
        r.stderr
    );
    let wh = s.cache("wheelhouse").unwrap();
    assert!(wh.saved, "the two wheels that built are kept: {wh:?}");
    assert!(s.cache("ccache").unwrap().saved, "and the compiles");

    brokenpkg_sdist(&vendor, false);
    sh(&repo, "git commit -qam 'fix bad.c' && git tag fixed");
    let r = run_offline(t.path(), &repo, "fixed", "w2", &cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.cache("wheelhouse").unwrap().restore, RestoreHit::Partial);
    assert_eq!(s.wheels.built, 1, "{:?}", s.wheels);
    assert!(
        s.wheels
            .built_names
            .iter()
            .all(|n| n.starts_with("brokenpkg")),
        "{:?}",
        s.wheels
    );
    assert_eq!(
        s.wheels.reused, 2,
        "fastsum and vecmath from the failed run: {:?}",
        s.wheels
    );
    // good.c compiled in the failed run: a hit now; only the fixed bad.c compiles.
    assert_eq!((s.ccache.hits, s.ccache.misses), (1, 1), "{:?}", s.ccache);
}

/// An sdist of `needy` 1.0, a C extension whose setup.py asks for a requirement of its own
/// (`setup_requires`): setuptools' `get_requires_for_build_wheel` returns it.
fn needy_sdist(into: &Path) {
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("needy-1.0");
    let files = [
        ("setup.py", "from setuptools import Extension, setup\n\nsetup(name=\"needy\", version=\"1.0\", setup_requires=[\"iniconfig\"],\n      ext_modules=[Extension(\"_needy\", [\"needy.c\"])])\n"),
        ("PKG-INFO", "Metadata-Version: 2.1\nName: needy\nVersion: 1.0\n"),
        ("needy.c", "#include <Python.h>\nstatic struct PyModuleDef m = {PyModuleDef_HEAD_INIT, \"_needy\", NULL, -1, NULL};\nPyMODINIT_FUNC PyInit__needy(void) { return PyModule_Create(&m); }\n"),
    ];
    std::fs::create_dir_all(&root).unwrap();
    for (name, body) in files {
        std::fs::write(root.join(name), body).unwrap();
    }
    sh(
        src.path(),
        &format!(
            "tar -czf {} needy-1.0",
            into.join("needy-1.0.tar.gz").display()
        ),
    );
}

#[test]
fn an_sdist_whose_backend_asks_for_more_is_built_by_kilns_frontend() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("repo");
    let vendor = dir.join("vendor");
    std::fs::create_dir_all(&vendor).unwrap();
    needy_sdist(&vendor);
    let repo = git_repo(
        &dir,
        &[
            ("requirements.txt", "--find-links vendor\nneedy==1.0\n"),
            ("check.sh", "python -c 'import _needy'\n"),
        ],
    );
    let r = run_offline(t.path(), &repo, "release", "w", &CHECK_SH);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Built in a build environment with iniconfig added, not left to uv.
    assert!(
        r.stderr.contains("built 1 sdist(s) in parallel"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("Building needy=="), "{}", r.stderr);
    assert_eq!(r.summary().wheels.built_names, ["needy"]);
}

#[test]
fn a_bootstrap_that_fails_before_compiling_anything_saves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let repo = git_repo(
        &t.path().join("repo"),
        &[
            ("requirements.txt", "no-such-package==1.0\n"),
            ("check.sh", "exit 0\n"),
        ],
    );
    let r = run_offline(t.path(), &repo, "release", "w", &CHECK_SH);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let s = r.summary();
    for cache in ["wheelhouse", "ccache"] {
        let c = s.cache(cache).unwrap();
        assert!(
            !c.saved,
            "an empty partial {cache} is not worth a store entry: {c:?}"
        );
    }
}

#[test]
fn a_bootstrap_command_keeps_the_wheelhouse_and_ccache_and_its_venv_has_pip() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("repo");
    // fastsum and its build backend (the command's pip finds only these and the wheelhouse).
    vendor_into(&dir, &["fastsum-", "setuptools-"]);
    // As README says: `pip wheel` writes into the wheelhouse (PIP_WHEEL_DIR), pip and uv read
    // it (PIP_FIND_LINKS, UV_FIND_LINKS); compiles go through ccache.
    let yml = "bootstrap:\n  command: python -m pip wheel -q -r requirements.txt && python -m pip install -q -r requirements.txt\n\
               test:\n  command: python -c 'import fastsum; assert fastsum.total([1, 2]) == 3'\n";
    let repo = git_repo(
        &dir,
        &[
            ("requirements.txt", "--find-links vendor\nfastsum==1.0\n"),
            ("kiln.yml", yml),
        ],
    );
    let r = run_offline(t.path(), &repo, "release", "cold", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.installer, "command");
    assert_eq!(s.wheels.built_names.len(), 1, "{:?}", s.wheels);
    assert_eq!(s.ccache.misses, 1, "{:?}", s.ccache);
    assert!(s.cache("wheelhouse").unwrap().saved);
    assert!(s.cache("ccache").unwrap().saved);

    let r = run_offline(t.path(), &repo, "release", "warm", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.cache("wheelhouse").unwrap().restore, RestoreHit::Exact);
    assert_eq!(s.wheels.built, 0, "{:?}", s.wheels);
    assert_eq!(s.ccache.misses, 0, "{:?}", s.ccache);
    // The venv's pip is the interpreter's bundled one, put there by uv (its INSTALLER record),
    // not by ensurepip (which records "pip").
    let site = std::fs::read_dir(t.path().join("warm/venv/lib"))
        .unwrap()
        .flatten()
        .map(|py| py.path().join("site-packages"))
        .find(|site| site.join("pip").is_dir())
        .expect("the command's venv has pip");
    let installer = std::fs::read_dir(&site)
        .unwrap()
        .flatten()
        .find(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("pip-") && name.ends_with(".dist-info")
        })
        .map(|d| std::fs::read_to_string(d.path().join("INSTALLER")).unwrap_or_default());
    assert_eq!(
        installer.as_deref().map(str::trim),
        Some("uv"),
        "no ensurepip"
    );
}

/// A prebuilt wheel of fastsum 1.0 that is not the source's: its `total` adds 100. A run that
/// installs it instead of building fastsum from source fails its test.
fn foreign_fastsum_wheel(into: &Path) {
    let src = tempfile::tempdir().unwrap();
    sh(
        src.path(),
        &format!(
            "cp -r {pkg} fastsum && sed -i 's/return PyFloat_FromDouble(total);/return PyFloat_FromDouble(total + 100);/' fastsum/src/fastsum.c && \
             python3 -m pip wheel -q --no-deps --no-index --find-links {vendor} -w {into} ./fastsum",
            pkg = crate::support::root().join("fixtures/packages/fastsum").display(),
            vendor = vendor_file("setuptools-").parent().unwrap().display(),
            into = into.display(),
        ),
    );
}

#[test]
fn no_binary_in_a_requirement_file_builds_from_source_and_installs_the_built_wheel() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("repo");
    let vendor = dir.join("vendor");
    vendor_into(&dir, &["fastsum-"]);
    foreign_fastsum_wheel(&vendor);
    let check =
        "python -c 'import fastsum; assert fastsum.total([1, 2]) == 3, fastsum.total([1, 2])'";
    let repo = git_repo(
        &dir,
        &[(
            "requirements.txt",
            "--find-links vendor\n--no-binary fastsum\nfastsum==1.0\n",
        )],
    );
    for installer in ["uv", "pip"] {
        let cmd = ["--test-command", check, "--installer", installer];
        let cold = format!("cold-{installer}");
        let r = run_offline(t.path(), &repo, "release", &cold, &cmd);
        assert_eq!(r.code, 0, "{installer}: {}", r.stderr);
        let s = r.summary();
        if installer == "uv" {
            // Built from the sdist, through ccache, into the wheelhouse.
            assert_eq!(s.wheels.built_names, ["fastsum"], "{:?}", s.wheels);
            assert_eq!(s.ccache.misses, 1, "{:?}", s.ccache);
        }
        let warm = format!("warm-{installer}");
        let r = run_offline(t.path(), &repo, "release", &warm, &cmd);
        assert_eq!(r.code, 0, "{installer}: {}", r.stderr);
        let s = r.summary();
        assert_eq!(s.cache("wheelhouse").unwrap().restore, RestoreHit::Exact);
        assert_eq!(s.wheels.built, 0, "{installer}: {:?}", s.wheels);
        assert_eq!(s.ccache.misses, 0, "{installer}: {:?}", s.ccache);
        let warnings = r.stderr.contains("the restored wheelhouse lacks wheels");
        assert!(
            !warnings,
            "{installer}: the built wheel was used:\n{}",
            r.stderr
        );
    }
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn pylock_path_entries_install_from_the_lock_s_files_and_directories_build_in_place() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("repo");
    let hashes: Vec<String> = vendor_into(&dir, &["fastsum-", "iniconfig-"])
        .iter()
        .map(|dest| sha256(dest))
        .collect();
    copy_tree(
        &crate::support::root().join("fixtures/projects/localdep/lib"),
        &dir.join("lib"),
    );
    let lock = format!(
        "lock-version = \"1.0\"\ncreated-by = \"hand\"\n\n\
         [[packages]]\nname = \"fastsum\"\nversion = \"1.0\"\n\
         sdist = {{ path = \"vendor/fastsum-1.0.tar.gz\", hashes = {{ sha256 = \"{}\" }} }}\n\n\
         [[packages]]\nname = \"iniconfig\"\nversion = \"2.3.1\"\n\
         wheels = [{{ path = \"vendor/iniconfig-2.3.1-py3-none-any.whl\", hashes = {{ sha256 = \"{}\" }} }}]\n\n\
         [[packages]]\nname = \"helper\"\ndirectory = {{ path = \"lib/helper\", editable = true }}\n",
        hashes[0], hashes[1]
    );
    let check = "python -c 'import fastsum, iniconfig; from helper._triple import triple; \
                 assert fastsum.total([1, 2]) == 3 and triple(14) == 42'";
    let repo = git_repo(&dir, &[("pylock.toml", lock.as_str())]);
    let cmd = ["--test-command", check];
    let r = run_offline(t.path(), &repo, "release", "cold", &cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.deps_source, "pylock.toml");
    assert!(
        s.wheels.built_names.contains(&"fastsum".to_string()),
        "the lock's sdist, built: {:?}",
        s.wheels
    );
    let kept = std::fs::read_dir(t.path().join("cold/wheelhouse"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert!(kept.iter().any(|w| w.starts_with("iniconfig-")), "{kept:?}");
    assert!(
        !kept.iter().any(|w| w.starts_with("helper-")),
        "never kept: {kept:?}"
    );

    // Warm: nothing built, the directory compiled again from ccache.
    let r = run_offline(t.path(), &repo, "release", "warm", &cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.cache("wheelhouse").unwrap().restore, RestoreHit::Exact);
    assert_eq!(s.wheels.built, 0, "{:?}", s.wheels);
    assert_eq!((s.ccache.hits, s.ccache.misses), (1, 0), "{:?}", s.ccache);

    // A local file whose hash is not the lock's fails, naming it.
    sh(
        &repo,
        &format!(
            "sed -i 's/{}/{}/' pylock.toml && git commit -qam 'bad hash' && git tag bad",
            hashes[0],
            "0".repeat(64)
        ),
    );
    let t2 = tempfile::tempdir().unwrap();
    let r = run_offline(t2.path(), &repo, "bad", "w", &cmd);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("fastsum"), "{}", r.stderr);
    assert!(r.stderr.contains("DO NOT MATCH THE HASHES"), "{}", r.stderr);
}

#[test]
fn uv_export_runs_the_project_s_build_backend_in_the_sandbox() {
    // Outside /tmp (which the sandbox replaces): a place setup.py must not be able to write.
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mark = t.path().join("setup-py-was-here");
    let dir = t.path().join("repo");
    // Dynamic dependencies: checking uv.lock runs setup.py (uv needs the project's metadata).
    let setup = format!(
        "import os\n\
         try:\n    open({mark:?}, 'a').write('ran\\n')\nexcept OSError:\n    pass\n\
         if os.environ.get('GITHUB_TOKEN'):\n    raise SystemExit('setup.py saw GITHUB_TOKEN')\n\
         from setuptools import setup\nsetup(install_requires=['iniconfig==2.3.1'], py_modules=['dyn'])\n",
        mark = mark.display().to_string()
    );
    let pyproject = "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
                     [project]\nname = \"dyn\"\nversion = \"1.0\"\nrequires-python = \">=3.11\"\ndynamic = [\"dependencies\"]\n";
    for (name, body) in [
        ("pyproject.toml", pyproject),
        ("setup.py", setup.as_str()),
        ("dyn.py", "X = 1\n"),
    ] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), body).unwrap();
    }
    let mut lock = std::process::Command::new("uv");
    lock.args(["lock", "--quiet"]).current_dir(&dir);
    lock.env("UV_CACHE_DIR", t.path().join("uv-cache"));
    for (k, v) in vendor_env() {
        lock.env(k, v.unwrap());
    }
    let out = lock.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&mark).unwrap();
    let repo = git_repo(&dir, &[]);

    let check = ["--test-command", "python -c 'import dyn, iniconfig'"];
    let env = vendor_env();
    let mut env: Vec<(&str, Option<&str>)> = env.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    env.push(("GITHUB_TOKEN", Some("ghs_uv_export_must_not_see_this")));
    let run = |work: &str, extra: &[&str]| {
        let args: Vec<&str> = check.iter().chain(extra).copied().collect();
        run_env(
            &t.path().join("home"),
            &repo,
            "release",
            &t.path().join(work),
            &t.path().join("store"),
            &args,
            &env,
        )
    };
    let r = run("sandboxed", &["--sandbox", "bwrap"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.summary().deps_source, "uv.lock");
    assert!(
        !r.stderr
            .contains("could not check that uv.lock is up to date"),
        "the lock was checked (setup.py ran, without the token):\n{}",
        r.stderr
    );
    assert!(
        !mark.exists(),
        "setup.py wrote outside the work dir during the export or the build"
    );
    // Without the sandbox the same setup.py reaches that place: the check above can fail.
    let r = run("unsandboxed", &["--sandbox", "none"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(mark.exists(), "setup.py ran unsandboxed");
}

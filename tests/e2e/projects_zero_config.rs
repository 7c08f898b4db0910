//! Real projects with no kiln.yml, part two (issue 27): the whole lock however long its export,
//! the project named in its own requirement file, test dependencies where projects keep them.
//! Offline: every package comes from a local directory (the fixtures' vendor dir, or wheels
//! these tests write), never an index.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::run::*;

/// Write `count` tiny pure-Python wheels `lockpkg_NNN-1.0` (module `lockpkg_NNN`) into `dir`:
/// valid wheels (METADATA, WHEEL, RECORD with hashes), made in well under a second.
fn many_wheels(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let script = r#"
import base64, hashlib, sys, zipfile
out, count = sys.argv[1], int(sys.argv[2])
def digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
for i in range(count):
    name = "lockpkg_%03d" % i
    info = name + "-1.0.dist-info"
    files = {
        name + ".py": b"N = %d\n" % i,
        info + "/METADATA": b"Metadata-Version: 2.1\nName: " + name.encode() + b"\nVersion: 1.0\n",
        info + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: kiln-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join("%s,%s,%d\n" % (p, digest(d), len(d)) for p, d in files.items())
    record += info + "/RECORD,,\n"
    with zipfile.ZipFile("%s/%s-1.0-py3-none-any.whl" % (out, name), "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
        z.writestr(info + "/RECORD", record)
"#;
    let ok = Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .arg(count.to_string())
        .status()
        .unwrap();
    assert!(ok.success(), "writing the wheels failed");
}

/// pip and uv offline, from `dir` only.
fn offline_from(dir: &Path) -> Vec<(&'static str, Option<String>)> {
    let d = dir.display().to_string();
    vec![
        ("PIP_NO_INDEX", Some("1".into())),
        ("PIP_FIND_LINKS", Some(d.clone())),
        ("UV_NO_INDEX", Some("1".into())),
        ("UV_FIND_LINKS", Some(d)),
    ]
}

fn run_with(
    t: &Path,
    repo: &Path,
    work: &str,
    env: &[(&'static str, Option<String>)],
    extra: &[&str],
) -> Run {
    let env: Vec<(&str, Option<&str>)> = env.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    run_env(
        &t.join("home"),
        repo,
        "HEAD",
        &t.join(work),
        &t.join("store"),
        extra,
        &env,
    )
}

/// `uv export` of `repo`'s lock as Kiln asks for it: its line count.
fn export_lines(repo: &Path, uv_cache: &Path) -> usize {
    let out = Command::new("uv")
        .args(["export", "--frozen", "--format", "requirements.txt"])
        .args([
            "--no-emit-project",
            "--no-header",
            "--no-annotate",
            "--quiet",
        ])
        .current_dir(repo)
        .env("UV_CACHE_DIR", uv_cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn a_lock_whose_export_exceeds_200_lines_installs_every_package() {
    // One line per package (wheels from a local directory carry no hash in the lock).
    const COUNT: usize = 230;
    let t = tempfile::tempdir().unwrap();
    let wheels = t.path().join("wheels");
    many_wheels(&wheels, COUNT);
    let repo: PathBuf = t.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let deps: Vec<String> = (0..COUNT).map(|i| format!("\"lockpkg_{i:03}\"")).collect();
    std::fs::write(
        repo.join("pyproject.toml"),
        format!(
            "[project]\nname = \"biglock\"\nversion = \"1.0\"\nrequires-python = \">=3.8\"\n\
             dependencies = [{}]\n\n[tool.uv]\npackage = false\n",
            deps.join(", ")
        ),
    )
    .unwrap();
    std::fs::write(
        repo.join("check.py"),
        format!(
            "import importlib\nfor i in range({COUNT}):\n    importlib.import_module('lockpkg_%03d' % i)\n\
             print('imported all {COUNT}')\n"
        ),
    )
    .unwrap();
    std::fs::write(
        repo.join("kiln.yml"),
        "project:\n  install: none\ntest:\n  command: python check.py\n\
         report:\n  github:\n    enabled: false\n",
    )
    .unwrap();
    let uv_cache = t.path().join("uv-cache");
    let locked = Command::new("uv")
        .args(["lock", "--no-index", "--python", "python3", "--find-links"])
        .arg(&wheels)
        .current_dir(&repo)
        .env("UV_CACHE_DIR", &uv_cache)
        .output()
        .unwrap();
    assert!(
        locked.status.success(),
        "{}",
        String::from_utf8_lossy(&locked.stderr)
    );
    let lines = export_lines(&repo, &uv_cache);
    assert!(
        lines > 200,
        "the export must outgrow the old 200-line tail: {lines} lines"
    );
    sh(
        &repo,
        "git init -q -b main && git add -A && git commit -qm lock",
    );

    let r = run_with(t.path(), &repo, "w1", &offline_from(&wheels), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.summary().deps_source, "uv.lock");
    assert!(
        r.stderr.contains(&format!("imported all {COUNT}")),
        "{}",
        r.stderr
    );
}

/// `run_env` with the fixtures' vendor dir as the only package source.
fn run_vendored(t: &Path, repo: &Path, work: &str, extra: &[&str]) -> Run {
    run_with(t, repo, work, &vendor_env(), extra)
}

#[test]
fn the_project_named_in_its_requirement_file_is_installed_once_with_its_compiled_check() {
    let t = tempfile::tempdir().unwrap();
    let repo = project_repo("markupsafe", &t.path().join("repo"));
    // As countless requirements-dev.txt files do: the project itself, then the test tools.
    sh(
        &repo,
        "printf -- '-e .\\n' > requirements.txt && git add -A && \
         git commit -qm 'requirements with the project'",
    );
    let r = run_vendored(t.path(), &repo, "w1", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.deps_source, "requirements");
    let p = s.project.as_ref().expect("the project is installed");
    assert_eq!(p.install, "editable");
    assert!(
        p.compiled_modules
            .iter()
            .any(|m| m == "markupsafe._speedups"),
        "{:?}",
        p.compiled_modules
    );
    assert!(s.tests.passed >= 50, "{:?}", s.tests);
    assert!(
        r.stderr
            .contains("requirements.txt:1 names the project itself"),
        "{}",
        r.stderr
    );

    // `.` and the wheel mode of kiln.yml: still once, as kiln.yml says.
    sh(
        &repo,
        "printf -- '.\\n' > requirements.txt && \
         printf 'project:\\n  install: wheel\\n' > kiln.yml && git add -A && \
         git commit -qm 'dot, as a wheel'",
    );
    let r = run_vendored(t.path(), &repo, "w2", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let p = r
        .summary()
        .project
        .clone()
        .expect("the project is installed");
    assert_eq!(p.install, "wheel");
    assert!(
        p.compiled_modules
            .iter()
            .any(|m| m == "markupsafe._speedups"),
        "{:?}",
        p.compiled_modules
    );
}

/// A package whose tests only start with pytest-cov (`addopts = --cov`), which it lists in
/// `requirements/test.txt` only.
fn coverage_project(root: &Path) -> PathBuf {
    let repo = root.join("repo");
    for (name, body) in [
        (
            "pyproject.toml",
            "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
             [project]\nname = \"covdemo\"\nversion = \"1.0\"\n\n\
             [tool.pytest.ini_options]\naddopts = \"--cov=covdemo\"\n",
        ),
        ("covdemo.py", "def double(x):\n    return 2 * x\n"),
        (
            "tests/test_covdemo.py",
            "import covdemo\n\ndef test_double():\n    assert covdemo.double(2) == 4\n",
        ),
        ("requirements/test.txt", "pytest==9.2.0\npytest-cov==7.1.0\n"),
    ] {
        let p = repo.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    vendor_file("pytest_cov-");
    sh(
        &repo,
        "git init -q -b main && git add -A && git commit -qm covdemo",
    );
    repo
}

#[test]
fn tests_that_need_pytest_cov_from_requirements_test_txt_pass_with_no_kiln_yml() {
    let t = tempfile::tempdir().unwrap();
    let repo = coverage_project(t.path());
    let r = run_vendored(t.path(), &repo, "w1", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.deps_source, "pyproject");
    assert_eq!(s.test_deps, "requirements/test.txt");
    assert_eq!(s.tests.passed, 1, "{:?}", s.tests);
    assert!(
        r.stderr
            .contains("test dependencies: requirements/test.txt"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("covdemo.py"),
        "coverage reported: {}",
        r.stderr
    );

    // kiln.yml says otherwise: no test requirements; pytest cannot start with --cov.
    sh(
        &repo,
        "printf 'project:\\n  test_requirements: []\\n' > kiln.yml && git add -A && \
         git commit -qm 'no test requirements'",
    );
    let r = run_vendored(t.path(), &repo, "w2", &[]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.summary().test_deps, "kiln.yml project.test_requirements");
    assert_eq!(r.summary().tests.passed, 0);
}

#[test]
fn a_uv_lock_installs_the_tests_group_not_every_default_group() {
    let t = tempfile::tempdir().unwrap();
    let wheels = t.path().join("wheels");
    many_wheels(&wheels, 3);
    let repo = t.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    // uv installs `dev` and `lint` by default; the tests need `tests` only.
    std::fs::write(
        repo.join("pyproject.toml"),
        "[project]\nname = \"groupy\"\nversion = \"1.0\"\nrequires-python = \">=3.8\"\n\n\
         [dependency-groups]\ndev = [\"lockpkg_000\"]\nlint = [\"lockpkg_001\"]\n\
         tests = [\"lockpkg_002\"]\n\n[tool.uv]\npackage = false\ndefault-groups = [\"dev\", \"lint\"]\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("check.py"),
        "import importlib.util as u\nprint('installed:', [n for n in ('lockpkg_000', 'lockpkg_001', \
         'lockpkg_002') if u.find_spec(n)])\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("kiln.yml"),
        "project:\n  install: none\ntest:\n  command: python check.py\n\
         report:\n  github:\n    enabled: false\n",
    )
    .unwrap();
    let locked = Command::new("uv")
        .args(["lock", "--no-index", "--python", "python3", "--find-links"])
        .arg(&wheels)
        .current_dir(&repo)
        .env("UV_CACHE_DIR", t.path().join("uv-cache"))
        .output()
        .unwrap();
    assert!(
        locked.status.success(),
        "{}",
        String::from_utf8_lossy(&locked.stderr)
    );
    sh(
        &repo,
        "git init -q -b main && git add -A && git commit -qm groups",
    );
    let r = run_with(t.path(), &repo, "w1", &offline_from(&wheels), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.summary().test_deps, "dependency group `tests`");
    assert!(
        r.stderr.contains("installed: ['lockpkg_002']"),
        "{}",
        r.stderr
    );
    let kept: Vec<String> = std::fs::read_dir(t.path().join("w1/wheelhouse"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !kept
            .iter()
            .any(|w| w.starts_with("lockpkg_000") || w.starts_with("lockpkg_001")),
        "{kept:?}"
    );

    // kiln.yml: uv's default groups too.
    std::fs::write(
        repo.join("kiln.yml"),
        "project:\n  install: none\n  default_groups: true\ntest:\n  command: python check.py\n\
         report:\n  github:\n    enabled: false\n",
    )
    .unwrap();
    sh(&repo, "git commit -qam 'default groups too'");
    let r = run_with(t.path(), &repo, "w2", &offline_from(&wheels), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("installed: ['lockpkg_000', 'lockpkg_001', 'lockpkg_002']"),
        "{}",
        r.stderr
    );
}

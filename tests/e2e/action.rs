//! The GitHub Action, end to end, in a simulated runner: its own `run:` steps from action.yml,
//! the release asset (the `kiln` built by cargo, tarred as the release workflow does) served
//! from loopback, checksum verification, the tool cache, and `kiln run` writing the job summary,
//! annotations and outputs a workflow sees.

use crate::support;
use crate::support::action::*;
use crate::support::gha_fake::{self, GhaFake};
use std::path::{Path, PathBuf};

fn kiln_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn action_dir() -> PathBuf {
    support::root().join("action")
}

/// A small project whose "tests" write a JUnit file with one pass and one failure (so the test
/// needs no pytest): the failure is in tests/test_math.py, line 12. It has one dependency (a
/// vendored wheel), so its wheelhouse is worth saving and the next job's exact hit is real.
fn sample_project(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    support::run::vendored_dependency(dir);
    std::fs::write(
        dir.join("run_tests.sh"),
        r#"#!/bin/sh
cat > "$KILN_JUNIT_DIR/junit.xml" <<'XML'
<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="2" failures="1" errors="0" skipped="0">
<testcase classname="tests.test_math" name="test_add" file="tests/test_math.py" line="3"/>
<testcase classname="tests.test_math" name="test_sub" file="tests/test_math.py" line="10">
<failure message="assert 1 == 2">def test_sub():
&gt;       assert sub(3, 1) == 2, "50%: off, by one"
E       assert 1 == 2

tests/test_math.py:12: AssertionError</failure></testcase>
</testsuite></testsuites>
XML
echo "1 failed, 1 passed"
exit 1
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("tests/test_math.py"),
        "def test_sub():\n    pass\n",
    )
    .unwrap();
    sh(
        dir,
        "git init -q -b main && git add -A && git commit -qm 'sample' && git rev-parse HEAD",
    )
    .trim()
    .to_string()
}

/// What the action's `actions/github-script` step (not run offline) hands to its kiln step: the
/// cache service v2 credentials of `fake`.
fn runtime_outputs(fake: &GhaFake) -> Vec<(&'static str, &'static str, String)> {
    vec![
        (
            "runtime",
            "runtime-token",
            gha_fake::RUNTIME_TOKEN.to_string(),
        ),
        ("runtime", "results-url", format!("{}/", fake.url)),
        ("runtime", "cache-url", String::new()),
        ("runtime", "cache-service-v2", "True".to_string()),
    ]
}

fn preset<'a>(p: &'a [(&'static str, &'static str, String)]) -> Vec<(&'a str, &'a str, &'a str)> {
    p.iter().map(|(a, b, c)| (*a, *b, c.as_str())).collect()
}

fn assert_contains(haystack: &str, needle: &str, what: &str) {
    assert!(
        haystack.contains(needle),
        "{what} lacks {needle:?}:\n{haystack}"
    );
}

#[test]
fn install_rejects_a_wrong_checksum_and_caches_a_verified_binary() {
    let project = tempfile::tempdir().unwrap();
    let sha = sample_project(project.path());

    // A release whose published checksum is wrong: the install step must refuse it.
    let bad = tempfile::tempdir().unwrap();
    publish_release(
        bad.path(),
        kiln_version(),
        &support::kiln_bin(),
        Some(&"0".repeat(64)),
    );
    let bad_server = AssetServer::start(bad.path(), kiln_version());
    let mut runner = Runner::new(project.path(), &sha);
    let run = runner.run_action(
        &action_dir(),
        &[
            ("download-url", &bad_server.base),
            ("version", kiln_version()),
        ],
        Some(&["install"]),
        &[],
    );
    assert!(
        !run.success,
        "a wrong checksum must fail the step\n{}",
        run.log()
    );
    let install = run.step("install");
    assert_eq!(install.code, 1, "{}", run.log());
    assert_contains(
        &install.stdout,
        "::error title=Kiln install::checksum mismatch",
        "stdout",
    );
    assert!(!install.outputs.contains_key("path"));
    assert!(
        !runner.tool_cache.join("kiln").exists(),
        "nothing may enter the tool cache from a rejected download"
    );
    assert!(bad_server
        .requests()
        .iter()
        .any(|r| r.ends_with(".tar.gz.sha256")));

    // A version that could escape the tool cache directory is refused before any download.
    let run = runner.run_action(
        &action_dir(),
        &[("download-url", &bad_server.base), ("version", "../../x")],
        Some(&["install"]),
        &[],
    );
    assert!(!run.success);
    assert_contains(
        &run.step("install").stdout,
        "version '../../x' is not",
        "stdout",
    );

    // The good release, asked for as `latest`: resolved through the redirect, verified, cached.
    let good = tempfile::tempdir().unwrap();
    publish_release(good.path(), kiln_version(), &support::kiln_bin(), None);
    let server = AssetServer::start(good.path(), kiln_version());
    let run = runner.run_action(
        &action_dir(),
        &[("download-url", &server.base)],
        Some(&["install"]),
        &[],
    );
    assert!(run.success, "{}", run.log());
    assert_contains(
        &run.step("install").stderr,
        "sha256 verified",
        "install log",
    );
    let (_, arch) = runner_platform();
    let cached = runner
        .tool_cache
        .join("kiln")
        .join(kiln_version())
        .join(arch.to_lowercase())
        .join("kiln");
    assert_eq!(run.outputs["kiln-version"], kiln_version());
    assert_eq!(
        run.step("install").outputs["path"],
        cached.display().to_string()
    );
    assert!(cached.is_file());
    assert_eq!(
        runner.path_prepend.first().map(String::as_str),
        Some(cached.parent().unwrap().to_str().unwrap()),
        "the binary's directory is added to GITHUB_PATH"
    );
    let asset = format!("kiln-{}.tar.gz", release_target());
    assert!(server.requests().contains(&format!(
        "GET /releases/download/v{}/{asset}",
        kiln_version()
    )));

    // A second job on the same runner asking for that version: served from the tool cache.
    let before = server.requests().len();
    let run = runner.run_action(
        &action_dir(),
        &[
            ("download-url", &server.base),
            ("version", &format!("v{}", kiln_version())),
        ],
        Some(&["install"]),
        &[],
    );
    assert!(run.success, "{}", run.log());
    assert_contains(
        &run.step("install").stderr,
        "from the tool cache",
        "install log",
    );
    assert_eq!(
        server.requests().len(),
        before,
        "no download on a tool-cache hit"
    );
}

#[test]
fn the_action_runs_kiln_and_reports_to_the_runner() {
    let project = tempfile::tempdir().unwrap();
    let sha = sample_project(project.path());
    let releases = tempfile::tempdir().unwrap();
    publish_release(releases.path(), kiln_version(), &support::kiln_bin(), None);
    let server = AssetServer::start(releases.path(), kiln_version());
    // The caches go to the GitHub cache service (v2 fake), the action's default store.
    let cache_service = GhaFake::start();
    let runtime = runtime_outputs(&cache_service);

    let github = FakeGitHub::start();
    let mut runner = Runner::new(project.path(), &sha);
    runner.env.insert("GITHUB_API_URL".into(), github.uri());
    let run = runner.run_action(
        &action_dir(),
        &[
            ("download-url", &server.base),
            ("version", kiln_version()),
            ("checkout", "reuse"),
            ("test-command", "sh run_tests.sh"),
        ],
        None,
        &preset(&runtime),
    );
    let log = run.log();
    // The token input (default: github.token) reached the GitHub reporter: a commit status and a
    // check run on the tested commit.
    let reqs = github.requests();
    let status = format!("/repos/acme/widgets/statuses/{sha}");
    let auth = reqs
        .iter()
        .find(|(m, p, _)| m == "POST" && *p == status)
        .map(|(_, _, a)| a.clone())
        .unwrap_or_else(|| panic!("no commit status: {reqs:?}\n{log}"));
    assert!(auth.ends_with(" ghs_simulatedtoken0123456789"), "{auth}");
    assert!(reqs
        .iter()
        .any(|(m, p, _)| m == "POST" && p == "/repos/acme/widgets/check-runs"));
    // The tests fail, so the step fails with kiln's exit code 1 ...
    assert!(!run.success, "{log}");
    assert_eq!(run.step("run").code, 1, "{log}");
    assert!(run.step("runtime").skipped);

    // ... and the workflow still gets its outputs.
    assert_eq!(run.outputs["outcome"], "failed", "{log}");
    assert_eq!(run.outputs["wheelhouse-hit"], "miss", "{log}");
    assert_eq!(run.outputs["ccache-hit"], "miss", "{log}");
    assert_eq!(run.outputs["kiln-version"], kiln_version());
    let summary_json = PathBuf::from(&run.outputs["summary-json"]);
    assert!(summary_json.starts_with(&runner.temp), "{summary_json:?}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_json).unwrap()).unwrap();
    assert_eq!(summary["outcome"], "failed");
    assert_eq!(summary["commit"], sha.as_str());
    assert_eq!(summary["branch"], "main");

    // One log group per stage, on stderr with the logs they group: each stage's lines (and the
    // test command's output) inside its own group.
    let stderr = &run.step("run").stderr;
    let mut at = 0;
    for (stage, inside) in [
        ("checkout", "checkout: "),
        ("restore", "restore: "),
        ("bootstrap", "bootstrap: "),
        ("test", "1 failed, 1 passed"),
        ("save", "save: "),
        ("report", "report: "),
    ] {
        let open = format!("::group::kiln {stage}\n");
        let start = at
            + stderr[at..]
                .find(&open)
                .unwrap_or_else(|| panic!("no {open:?} after byte {at}:\n{stderr}"));
        let end = start + stderr[start..].find("::endgroup::").unwrap();
        assert_contains(&stderr[start..end], inside, &format!("the {stage} group"));
        at = end;
    }
    // One annotation per failing test, on stdout.
    let stdout = run.stdout();
    assert_contains(
        &stdout,
        "::error file=tests/test_math.py,line=12,title=Test failed%3A tests.test_math%3A%3Atest_sub::assert 1 == 2",
        "stdout",
    );
    assert_contains(
        stderr,
        "::add-mask::ghs_simulatedtoken0123456789",
        "stderr (the token input defaults to github.token and is masked)",
    );
    assert!(
        stderr.starts_with("::add-mask::"),
        "secrets are masked before anything is logged:\n{stderr}"
    );

    // The job summary a person reads.
    let md = run.summary();
    assert_contains(
        &md,
        &format!("## :x: Kiln: failed at `{}` on `main`", &sha[..12]),
        "summary",
    );
    for row in [
        "| checkout |",
        "| restore |",
        "| bootstrap |",
        "| test |",
        "| save |",
    ] {
        assert_contains(&md, row, "summary");
    }
    assert_contains(&md, "| wheelhouse | miss |", "summary");
    assert_contains(&md, "**Wheels:** 0 built", "summary");
    assert_contains(&md, "**Tests:** 1 passed, 1 failed, 0 skipped", "summary");
    assert_contains(
        &md,
        "| `tests.test_math::test_sub` | `tests/test_math.py:12` | assert 1 == 2 |",
        "summary",
    );
    assert_contains(&md, "**Notified:**", "summary");
    assert_contains(
        &md,
        "[Workflow run](http://127.0.0.1:9/acme/widgets/actions/runs/4242/attempts/1)",
        "summary",
    );

    // The next job on this runner: kiln from the tool cache, the wheelhouse restored exactly.
    let before = server.requests().len();
    let run = runner.run_action(
        &action_dir(),
        &[
            ("download-url", &server.base),
            ("version", kiln_version()),
            ("checkout", "reuse"),
            ("test-command", "sh run_tests.sh"),
        ],
        None,
        &preset(&runtime),
    );
    assert_eq!(
        server.requests().len(),
        before,
        "kiln came from the tool cache"
    );
    assert_eq!(run.outputs["outcome"], "failed", "{}", run.log());
    assert_eq!(run.outputs["wheelhouse-hit"], "exact", "{}", run.log());
    assert!(
        cache_service
            .keys()
            .iter()
            .any(|k| k.starts_with("caches/") && k.contains("wheels")),
        "{:?}",
        cache_service.keys()
    );
    assert_eq!(run.outputs["wheels-built"], "0");
    assert_contains(&run.summary(), "| wheelhouse | exact |", "summary");
}

#[test]
fn the_action_on_the_fixture_project_names_the_breaking_test() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fixture");
    let out = std::process::Command::new("bash")
        .arg(support::root().join("fixtures/make_repo.sh"))
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sha = sh(&repo, "git rev-parse broken").trim().to_string();
    let store = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}", store.path().display());

    // Clone mode (the default): a fresh checkout of the tag into the work dir.
    let mut runner = Runner::new(&repo, &sha);
    let run = runner.run_action(
        &action_dir(),
        &[
            ("working-directory", repo.to_str().unwrap()),
            ("rev", "broken"),
            ("store", &store_url),
            ("token", ""),
        ],
        Some(&["run"]),
        &[("install", "path", support::KILN_BIN)],
    );
    let log = run.log();
    assert_eq!(run.step("run").code, 1, "{log}");
    assert_eq!(run.outputs["outcome"], "failed");
    let built: u32 = run.outputs["wheels-built"].parse().unwrap();
    assert!(built >= 2, "the C extensions were built: {built}\n{log}");
    assert_contains(
        &run.stdout(),
        "::error file=tests/test_report.py,line=",
        "stdout",
    );
    assert_contains(&run.stdout(), "test_summarize_totals", "stdout");
    let md = run.summary();
    assert_contains(&md, &format!("**Wheels:** {built} built"), "summary");
    assert_contains(&md, "**ccache:** ", "summary");
    assert_contains(&md, "### Failing tests (1)", "summary");
    assert_contains(&md, "test_summarize_totals", "summary");
}

#[test]
fn a_fork_pull_request_restores_but_never_saves() {
    let project = tempfile::tempdir().unwrap();
    let sha = sample_project(project.path());
    std::fs::write(project.path().join("run_tests.sh"), "exit 0\n").unwrap();
    let store = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}", store.path().display());

    let github = FakeGitHub::start();
    let mut runner = Runner::new(project.path(), &sha);
    runner.env.insert("GITHUB_API_URL".into(), github.uri());
    // GitHub's merge commit is what the workflow checked out; the PR shows its head's checks.
    let head = "f".repeat(40);
    runner.pull_request(true);
    let event = PathBuf::from(&runner.env["GITHUB_EVENT_PATH"]);
    let payload = std::fs::read_to_string(&event)
        .unwrap()
        .replace(&sha, &head);
    std::fs::write(&event, payload).unwrap();
    let run = runner.run_action(
        &action_dir(),
        &[
            ("checkout", "reuse"),
            ("store", &store_url),
            ("test-command", "true"),
        ],
        Some(&["run"]),
        &[("install", "path", support::KILN_BIN)],
    );
    let log = run.log();
    assert!(run.success, "{log}");
    assert_eq!(run.outputs["outcome"], "passed", "{log}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&run.outputs["summary-json"]).unwrap()).unwrap();
    let save = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "save")
        .unwrap();
    assert_eq!(save["outcome"], "skipped", "{save}");
    assert!(save["detail"].as_str().unwrap().contains("fork"), "{save}");
    assert_eq!(
        summary["branch"], "feature",
        "the PR's head branch, not the merge ref"
    );
    let md = run.summary();
    assert_contains(&md, "| save |", "summary");
    let reqs = github.requests();
    assert!(
        reqs.iter()
            .any(|(m, p, _)| m == "POST" && *p == format!("/repos/acme/widgets/statuses/{head}")),
        "the status goes on the PR's head commit (KILN_HEAD_SHA): {reqs:?}"
    );
    assert!(
        walk_files(store.path()).is_empty(),
        "a fork PR wrote to the store: {:?}",
        walk_files(store.path())
    );
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

/// A stand-in `cargo` that records its arguments and "installs" the real kiln into `--root`.
fn fake_cargo(dir: &Path) {
    std::fs::write(
        dir.join("cargo"),
        format!(
            "#!/usr/bin/env bash\nprintf '%s\\n' \"$@\" > \"{rec}\"\nwhile [ $# -gt 0 ]; do \
             [ \"$1\" = --root ] && root=\"$2\"; shift; done\nmkdir -p \"$root/bin\" && cp '{kiln}' \"$root/bin/kiln\"\n",
            rec = dir.join("cargo.args").display(),
            kiln = support::kiln_bin().display()
        ),
    )
    .unwrap();
    sh(dir, "chmod +x cargo");
}

#[test]
fn no_asset_for_the_platform_falls_back_to_cargo_install_from_the_action_checkout() {
    let project = tempfile::tempdir().unwrap();
    let sha = sample_project(project.path());
    let empty = tempfile::tempdir().unwrap();
    let server = AssetServer::start(empty.path(), "9.9.9");
    let bin = tempfile::tempdir().unwrap();
    fake_cargo(bin.path());

    let mut runner = Runner::new(project.path(), &sha);
    let path = format!("{}:{}", bin.path().display(), runner.env["PATH"]);
    runner.env.insert("PATH".into(), path);
    for version in ["0.0.1", "source"] {
        let run = runner.run_action(
            &action_dir(),
            &[("download-url", &server.base), ("version", version)],
            Some(&["install"]),
            &[],
        );
        assert!(run.success, "{}", run.log());
        let installed = PathBuf::from(&run.step("install").outputs["path"]);
        assert!(installed.starts_with(&runner.temp), "{installed:?}");
        assert!(
            installed.is_file(),
            "the built kiln outlives the install step"
        );
        let args = std::fs::read_to_string(bin.path().join("cargo.args")).unwrap();
        let args: Vec<&str> = args.lines().collect();
        assert_eq!(
            &args[..4],
            ["install", "--locked", "--quiet", "--path"],
            "{args:?}"
        );
        assert_eq!(
            std::fs::canonicalize(args[4]).unwrap(),
            std::fs::canonicalize(support::root()).unwrap()
        );
        std::fs::remove_file(bin.path().join("cargo.args")).unwrap();
    }
    // 0.0.1 was looked for (404); `source` downloads nothing.
    let asked: Vec<String> = server.requests();
    assert_eq!(
        asked,
        [format!(
            "GET /releases/download/v0.0.1/kiln-{}.tar.gz",
            release_target()
        )],
    );
    assert!(
        !runner.tool_cache.join("kiln").exists(),
        "source builds are not put in the tool cache"
    );
}

#[test]
fn a_corrupt_cache_is_a_warning_annotation_not_a_failure() {
    let project = tempfile::tempdir().unwrap();
    let sha = sample_project(project.path());
    let store = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}", store.path().display());
    let mut runner = Runner::new(project.path(), &sha);
    let with = [
        ("checkout", "reuse"),
        ("store", store_url.as_str()),
        ("test-command", "true"),
        ("token", ""),
    ];
    let kiln = [("install", "path", support::KILN_BIN)];
    let run = runner.run_action(&action_dir(), &with, Some(&["run"]), &kiln);
    assert!(run.success, "{}", run.log());
    // Flip bytes in every saved archive (not the manifests that hold their hashes).
    let mut corrupted = 0;
    for f in walk_files(store.path()) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".json") {
            continue;
        }
        let mut bytes = std::fs::read(&f).unwrap();
        if let Some(b) = bytes.get_mut(20) {
            *b ^= 0xff;
            std::fs::write(&f, bytes).unwrap();
            corrupted += 1;
        }
    }
    assert!(corrupted > 0, "{:?}", walk_files(store.path()));

    let run = runner.run_action(&action_dir(), &with, Some(&["run"]), &kiln);
    let log = run.log();
    assert!(run.success, "a cache fault never fails a build\n{log}");
    assert_eq!(run.outputs["outcome"], "passed");
    assert_eq!(run.outputs["wheelhouse-hit"], "miss", "{log}");
    let stdout = run.stdout();
    assert_contains(&stdout, "::warning title=Kiln wheelhouse cache::", "stdout");
    assert!(!stdout.contains("::error"), "{stdout}");
}

#[test]
fn restore_and_save_sub_actions_round_trip_through_the_github_cache() {
    let work = tempfile::tempdir().unwrap();
    let fake = GhaFake::start();
    let runtime = runtime_outputs(&fake);
    let mut with_kiln = preset(&runtime);
    with_kiln.push(("install", "path", support::KILN_BIN));
    let mut runner = Runner::new(work.path(), &"a".repeat(40));
    std::fs::create_dir_all(work.path().join("wheelhouse")).unwrap();
    std::fs::write(
        work.path().join("wheelhouse/a-1.0-py3-none-any.whl"),
        b"wheel",
    )
    .unwrap();

    // No `store` input: under Actions with the runtime credentials, the GitHub cache.
    let save = |runner: &mut Runner, key: &str| {
        runner.run_action(
            &action_dir().join("save"),
            &[("key", key), ("path", "wheelhouse")],
            Some(&["save"]),
            &with_kiln,
        )
    };
    let run = save(&mut runner, "wheels-linux-1111");
    assert!(run.success, "{}", run.log());
    assert!(
        fake.keys()
            .contains(&"caches/wheels-linux-1111.json".to_string()),
        "{:?}\n{}",
        fake.keys(),
        run.log()
    );
    assert!(fake.log().iter().any(|l| l.contains("comp=blocklist")));

    // Exact key, into a fresh directory.
    std::fs::remove_dir_all(work.path().join("wheelhouse")).unwrap();
    let restore = |runner: &mut Runner, key: &str| {
        runner.run_action(
            &action_dir().join("restore"),
            &[
                ("key", key),
                ("restore-keys", "wheels-linux-\n"),
                ("path", "wheelhouse"),
            ],
            Some(&["restore"]),
            &with_kiln,
        )
    };
    let run = restore(&mut runner, "wheels-linux-1111");
    assert!(run.success, "{}", run.log());
    assert_eq!(run.outputs["cache-hit"], "true", "{}", run.log());
    assert_eq!(run.outputs["cache-result"], "exact");
    assert_eq!(run.outputs["cache-matched-key"], "wheels-linux-1111");
    assert_eq!(run.outputs["cache-primary-key"], "wheels-linux-1111");
    assert_eq!(
        std::fs::read(work.path().join("wheelhouse/a-1.0-py3-none-any.whl")).unwrap(),
        b"wheel"
    );

    // A new key: the service's prefix lookup finds the old one, cache-hit stays false.
    let run = restore(&mut runner, "wheels-linux-2222");
    assert!(run.success, "{}", run.log());
    assert_eq!(run.outputs["cache-hit"], "false");
    assert_eq!(run.outputs["cache-result"], "partial");
    assert_eq!(run.outputs["cache-matched-key"], "wheels-linux-1111");

    // A fork's pull request cannot add to the cache.
    let before = fake.keys();
    runner.pull_request(true);
    let run = save(&mut runner, "wheels-linux-3333");
    assert!(run.success, "{}", run.log());
    assert_eq!(fake.keys(), before, "{}", run.log());
    // Nor can `kiln cache save` run directly in such a build.
    let out = support::kiln()
        .args([
            "cache",
            "save",
            "--key",
            "wheels-linux-4444",
            "--path",
            "wheelhouse",
        ])
        .current_dir(work.path())
        .env_clear()
        .envs(&runner.env)
        .envs(fake.env())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_contains(&stderr, "comes from a fork", "kiln cache save");
    assert_eq!(fake.keys(), before);
    assert!(!stderr.contains(gha_fake::RUNTIME_TOKEN));
}

//! Culprit finding and flaky tests, end to end through the real `kiln run`: multi-author
//! histories, a real SMTP server, bisection by warm builds of the failing tests, re-runs of
//! failing tests through pytest and through the `test.rerun_command` hook.

use std::path::Path;

use crate::support::report::{rcpts, Kiln, Repo, SmtpSink};

const ALICE: &str = "Alice A <alice@example.com>";
const BOB: &str = "Bob B <bob@example.com>";
const CAROL: &str = "Carol C <carol@example.com>";
const DAN: &str = "Dan D <dan@example.com>";
const EVE: &str = "Eve E <eve@example.com>";
const FRANK: &str = "Frank F <frank@example.com>";

/// The project's tests: `ok`, `flaky_net` (fails the first time it runs in a checkout, passes
/// after: a seeded counter file) and one failing test per name in `status`. With arguments
/// (`tests/test_app.py::test_NAME` ids) it runs only those, like pytest with node ids.
const CHECK_PY: &str = r#"import os, sys
status = open("status").read().strip()
failing = [] if status == "ok" else status.split(",")
names = ["ok", "flaky_net"] + failing
if len(sys.argv) > 1:
    names = [a.split("::")[-1][len("test_"):] for a in sys.argv[1:]]
cases, bad = [], []
for i, n in enumerate(names):
    fail = n in failing
    if n == "flaky_net":
        c = int(open(".count").read()) if os.path.exists(".count") else 0
        open(".count", "w").write(str(c + 1))
        fail = c == 0
    attrs = 'classname="tests.test_app" name="test_%s" file="tests/test_app.py" line="%d"' % (n, 10 * i)
    if fail:
        bad.append(n)
        cases.append('<testcase %s><failure message="assert %s">tests/test_app.py:%d: AssertionError</failure></testcase>' % (attrs, n, 10 * i + 1))
    else:
        cases.append('<testcase %s/>' % attrs)
xml = '<testsuite name="t" tests="%d" failures="%d">%s</testsuite>' % (len(cases), len(bad), "".join(cases))
open(os.path.join(os.environ["KILN_JUNIT_DIR"], "junit.xml"), "w").write(xml)
print("FAILED: " + ", ".join(bad) if bad else "all passed")
sys.exit(1 if bad else 0)
"#;

fn kiln_yml(smtp: &str) -> String {
    format!(
        "requirements: [requirements.txt]\n\
         test:\n  command: python3 check.py\n  rerun_command: python3 check.py {{tests}}\n\
         report:\n  mode: problem\n  bisect:\n    enabled: true\n    max_steps: 6\n\
         \x20 email:\n    smtp: {smtp}\n    from: Kiln CI <ci@example.com>\n    tls: none\n"
    )
}

/// A project at its green start, committed by Alice.
fn project(sink: &SmtpSink) -> (Repo, String) {
    let repo = Repo::new();
    let yml = kiln_yml(&sink.url());
    let green = repo.commit(
        ALICE,
        "Initial project",
        &[
            ("requirements.txt", ""),
            ("check.py", CHECK_PY),
            ("status", "ok\n"),
            ("kiln.yml", &yml),
        ],
    );
    (repo, green)
}

/// Build the green start first (the baseline), then the branch's head.
async fn baseline_then_head(
    kiln: &mut Kiln,
    repo: &Repo,
    green: &str,
) -> crate::support::report::Run {
    let head = repo.git(&["rev-parse", "main"]);
    repo.git(&["update-ref", "refs/heads/main", green]);
    let r = kiln.run(repo.path()).await;
    assert_eq!(
        r.code, 0,
        "the baseline passes (its flaky test too): {}",
        r.stderr
    );
    assert_eq!(
        r.summary["flaky"][0]["name"],
        "tests.test_app::test_flaky_net"
    );
    repo.git(&["update-ref", "refs/heads/main", &head]);
    kiln.run(repo.path()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisection_tells_only_the_author_of_the_breaking_commit() {
    let sink = SmtpSink::start(None);
    let (repo, green) = project(&sink);
    repo.commit(BOB, "Docs", &[("README", "one\n")]);
    repo.commit(CAROL, "Refactor", &[("README", "two\n")]);
    let dan = repo.commit(DAN, "bits: off by one", &[("status", "parse\n")]);
    repo.commit(EVE, "More docs", &[("README", "three\n")]);
    repo.commit(FRANK, "Even more docs", &[("README", "four\n")]);
    let mut kiln = Kiln::new(&[]);

    let r = baseline_then_head(&mut kiln, &repo, &green).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    let c = &r.summary["culprit"];
    assert_eq!(c["sha"], dan.as_str(), "{}", r.stderr);
    assert_eq!(c["author"], "Dan D");
    assert_eq!(c["others"], 4);
    let steps = c["steps"].as_u64().unwrap();
    assert!(
        (1..=3).contains(&steps),
        "5 commits take at most 3 builds: {steps}"
    );
    assert_eq!(
        r.blamed(),
        ["Dan D"],
        "the range's other authors are not blamed"
    );
    assert_eq!(r.notified(), ["email:dan@example.com"]);
    let flaky = &r.summary["flaky"][0];
    assert_eq!(flaky["name"], "tests.test_app::test_flaky_net");
    assert_eq!(flaky["history"], "kk");
    assert_eq!(flaky["known_flaky"], true, "it flipped in both builds");
    assert_eq!(
        r.summary["tests"]["failures"][0]["name"],
        "tests.test_app::test_parse"
    );
    assert_eq!(r.summary["tests"]["failures"].as_array().unwrap().len(), 1);

    let mails = sink.wait_for(1);
    assert_eq!(mails.len(), 1);
    assert_eq!(rcpts(&mails[0]), ["dan@example.com"]);
    // The raw message; quoted-printable soft line breaks joined.
    let text = mails[0]["data"]
        .as_str()
        .unwrap()
        .replace("=\r\n", "")
        .replace("=\n", "");
    let short = &dan[..12];
    assert!(
        text.contains(&format!(
            "started failing at {short} (Dan D, \"bits: off by one\")"
        )) && text.contains("the 4 other commits in the range pass"),
        "{text}"
    );
    assert!(r.stderr.contains("culprit:"), "{}", r.stderr);
    assert!(
        !kiln.tmp.path().join("work.bisect").exists(),
        "the bisection's work dir is removed"
    );
}

/// kiln.yml with nothing about bisection: the defaults decide.
fn default_kiln_yml(smtp: &str) -> String {
    format!(
        "requirements: [requirements.txt]\n\
         test:\n  command: python3 check.py\n  rerun_command: python3 check.py {{tests}}\n\
         report:\n  email:\n    smtp: {smtp}\n    from: Kiln CI <ci@example.com>\n    tls: none\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_authors_the_third_breaks_no_flag_only_the_third_is_emailed() {
    let sink = SmtpSink::start(None);
    let repo = Repo::new();
    let green = repo.commit(
        ALICE,
        "Initial project",
        &[
            ("requirements.txt", ""),
            ("check.py", CHECK_PY),
            ("status", "ok\n"),
            ("kiln.yml", &default_kiln_yml(&sink.url())),
        ],
    );
    repo.commit(BOB, "Docs", &[("README", "one\n")]);
    repo.commit(CAROL, "Refactor", &[("README", "two\n")]);
    let dan = repo.commit(DAN, "bits: off by one", &[("status", "parse\n")]);
    repo.commit(EVE, "More docs", &[("README", "three\n")]);
    repo.commit(FRANK, "Even more docs", &[("README", "four\n")]);
    let mut kiln = Kiln::new(&[]);

    let r = baseline_then_head(&mut kiln, &repo, &green).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.summary["culprit"]["sha"], dan.as_str(), "{}", r.stderr);
    let steps = r.summary["culprit"]["steps"].as_u64().unwrap();
    assert!((1..=3).contains(&steps), "{steps}");
    assert_eq!(r.blamed(), ["Dan D"]);
    assert_eq!(r.notified(), ["email:dan@example.com"]);
    let mails = sink.wait_for(1);
    assert_eq!(mails.len(), 1);
    assert_eq!(rcpts(&mails[0]), ["dan@example.com"]);
    // The report says what the search cost.
    assert!(
        r.stderr
            .contains(&format!("found by bisection in {steps} build(s)")),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bisect_blames_the_whole_range() {
    let sink = SmtpSink::start(None);
    let repo = Repo::new();
    let green = repo.commit(
        ALICE,
        "Initial project",
        &[
            ("requirements.txt", ""),
            ("check.py", CHECK_PY),
            ("status", "ok\n"),
            ("kiln.yml", &default_kiln_yml(&sink.url())),
        ],
    );
    repo.commit(BOB, "Break", &[("status", "parse\n")]);
    repo.commit(CAROL, "Docs", &[("README", "x\n")]);
    let mut kiln = Kiln::new(&[]);
    let head = repo.git(&["rev-parse", "main"]);
    repo.git(&["update-ref", "refs/heads/main", &green]);
    assert_eq!(kiln.run(repo.path()).await.code, 0);
    repo.git(&["update-ref", "refs/heads/main", &head]);
    let r = kiln.run_with(repo.path(), &["--no-bisect"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.summary.get("culprit").is_none());
    assert_eq!(
        r.notified(),
        ["email:bob@example.com", "email:carol@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_cannot_bootstrap_is_skipped() {
    let sink = SmtpSink::start(None);
    let (repo, green) = project(&sink);
    repo.commit(BOB, "Docs", &[("README", "one\n")]);
    let broken = repo.commit(
        CAROL,
        "Pin a package that does not exist",
        &[(
            "requirements.txt",
            "--no-index\nno-such-package-kiln==1.0\n",
        )],
    );
    repo.commit(DAN, "Unpin it", &[("requirements.txt", "")]);
    let eve = repo.commit(EVE, "Break the parser", &[("status", "parse\n")]);
    repo.commit(FRANK, "Docs", &[("README", "two\n")]);
    let mut kiln = Kiln::new(&[]);

    let r = baseline_then_head(&mut kiln, &repo, &green).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    let c = &r.summary["culprit"];
    assert_eq!(c["sha"], eve.as_str(), "{}", r.stderr);
    assert_eq!(c["skipped"], 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("bisect: {} skip", &broken[..12])),
        "{}",
        r.stderr
    );
    assert_eq!(r.notified(), ["email:eve@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bisection_the_whole_range_is_blamed() {
    let sink = SmtpSink::start(None);
    let (repo, green) = project(&sink);
    repo.commit(BOB, "Break", &[("status", "parse\n")]);
    repo.commit(CAROL, "Docs", &[("README", "x\n")]);
    let mut kiln = Kiln::new(&[("KILN_BISECT", "0".to_string())]);
    let r = baseline_then_head(&mut kiln, &repo, &green).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.summary.get("culprit").is_none());
    assert_eq!(
        r.notified(),
        ["email:bob@example.com", "email:carol@example.com"]
    );
}

/// pytest and its dependencies, offline, from the fixture vendor dir.
fn vendor_pytest(repo: &Path) {
    let vendor = crate::support::root().join(".cache/fixtures/vendor");
    let dest = repo.join("vendor");
    std::fs::create_dir_all(&dest).unwrap();
    for e in std::fs::read_dir(&vendor).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let wanted = [
            "pytest-",
            "pluggy-",
            "iniconfig-",
            "packaging-",
            "pygments-",
        ];
        if name.ends_with(".whl") && wanted.iter().any(|w| name.starts_with(w)) {
            std::fs::copy(&p, dest.join(&name)).unwrap();
        }
    }
}

const FLAKY_TEST: &str = r#"import os

def test_ok():
    assert 1 + 1 == 2

def test_network_flake():
    # Fails the first time it runs in a checkout (a seeded counter), passes after.
    seen = os.path.exists(".flaked")
    open(".flaked", "w").write("1")
    assert seen, "connection reset by peer"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_pytest_test_blames_nobody_and_kiln_flaky_lists_it() {
    let sink = SmtpSink::start(None);
    let repo = Repo::new();
    vendor_pytest(repo.path());
    let yml = format!(
        "report:\n  email:\n    smtp: {}\n    from: Kiln CI <ci@example.com>\n    tls: none\n",
        sink.url()
    );
    repo.commit(
        ALICE,
        "Project",
        &[
            (
                "requirements.txt",
                "--no-index\n--find-links vendor\npytest\n",
            ),
            ("tests/test_app.py", FLAKY_TEST),
            ("kiln.yml", &yml),
        ],
    );
    repo.commit(BOB, "A flaky change", &[("README", "x\n")]);
    let mut kiln = Kiln::new(&[]);
    for history in ["k", "kk"] {
        let r = kiln.run(repo.path()).await;
        assert_eq!(
            r.code, 0,
            "a build whose only failure is flaky passes: {}",
            r.stderr
        );
        let flaky = &r.summary["flaky"];
        assert_eq!(flaky[0]["name"], "tests.test_app::test_network_flake");
        assert_eq!(flaky[0]["history"], history);
        assert_eq!(r.summary["tests"]["failed"], 0);
        assert!(r.summary["tests"]["failures"]
            .as_array()
            .unwrap()
            .is_empty());
        assert!(r.notified().is_empty(), "nobody is told about a flaky test");
        assert!(
            r.stderr
                .contains("FLAKY tests.test_app::test_network_flake"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(sink.messages().len(), 0);

    let out = crate::support::kiln_home(&kiln.tmp.path().join("home"))
        .args(["flaky", "--branch", "main", "--repo"])
        .arg(repo.path())
        .arg("--store")
        .arg(format!("file://{}", kiln.store().display()))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        table.contains("kk") && table.contains("tests.test_app::test_network_flake  (known flaky)"),
        "{table}"
    );
}

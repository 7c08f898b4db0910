//! Outcome classes end to end (docs/reporting.md "Outcome classes"): a build that fails for the
//! machine's reasons (python, the store, the index, the disk, a missing test tool) is an
//! `error`: nobody blamed or emailed, the branch state left as it was, so the next real
//! breakage is still reported as the first. Real git, Python, uv, a local index (Python's
//! http.server over a directory of wheels) and a real SMTP sink.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::report::{Kiln, Repo, Run, SmtpSink};

const ALICE: &str = "Alice A <alice@example.com>";
const BOB: &str = "Bob B <bob@example.com>";
const CAROL: &str = "Carol C <carol@example.com>";

/// Fails the tests named in `status`, writing JUnit XML like pytest; imports iniconfig when
/// the requirements bring it.
const CHECK_PY: &str = r#"import os, sys
if os.path.exists("needs-iniconfig"):
    import iniconfig
status = open("status").read().strip()
failing = [] if status == "ok" else status.split(",")
cases = ['<testcase classname="tests.test_app" name="test_ok" file="tests/test_app.py" line="1"/>']
for i, name in enumerate(failing):
    cases.append('<testcase classname="tests.test_app" name="test_%s" file="tests/test_app.py" line="%d">'
                 '<failure message="assert %s">AssertionError</failure></testcase>' % (name, 10 * (i + 1), name))
xml = '<testsuite name="t" tests="%d" failures="%d">%s</testsuite>' % (len(cases), len(failing), "".join(cases))
open(os.path.join(os.environ["KILN_JUNIT_DIR"], "junit.xml"), "w").write(xml)
sys.exit(1 if failing else 0)
"#;

fn kiln_yml(smtp: &str, command: &str) -> String {
    format!(
        "requirements: [requirements.txt]\ntest:\n  command: {command}\nreport:\n  mode: problem\n\
         \x20 email:\n    smtp: {smtp}\n    from: Kiln CI <ci@example.com>\n    tls: none\n"
    )
}

/// A package index on loopback: Python's http.server over `simple/<name>/<wheel>` (its
/// directory listings are PEP 503 pages). Stopped on drop; `start` again on the same port.
struct LocalIndex {
    root: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl LocalIndex {
    fn new() -> LocalIndex {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("simple/iniconfig");
        std::fs::create_dir_all(&dir).unwrap();
        // The version requirements.txt pins (the vendor dir holds an older one too).
        let wheel = crate::support::run::vendor_file("iniconfig-2.3.1");
        std::fs::copy(&wheel, dir.join(wheel.file_name().unwrap())).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut index = LocalIndex {
            root,
            port,
            child: None,
        };
        index.start();
        index
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/simple", self.port)
    }

    fn start(&mut self) {
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(self.port.to_string())
            .current_dir(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the index did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for LocalIndex {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every file under the store's report states, with its bytes.
fn states(store: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![store.join("kiln-1-state")];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

/// Empty the store but for the report states (every cache evicted): the next build needs the
/// index.
fn evict_caches(store: &Path) {
    for e in std::fs::read_dir(store).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() == "kiln-1-state" {
            continue;
        }
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
}

fn assert_nobody_blamed(r: &Run, sink: &SmtpSink, mails_before: usize) {
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.summary["outcome"], "error", "{}", r.summary);
    assert_eq!(r.summary["cause"], "infrastructure", "{}", r.summary);
    assert!(r.blamed().is_empty(), "{}", r.summary);
    assert!(r.notified().is_empty(), "{}", r.summary);
    let withheld = r.summary["blame_withheld"].as_str().unwrap_or_default();
    assert!(withheld.contains("not a commit's fault"), "{}", r.summary);
    assert!(r.stderr.contains("blame withheld"), "{}", r.stderr);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.messages().len(), mails_before, "nobody is emailed");
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Python,
    Index,
    Store,
}

/// Green (Alice), then Bob's README-only commit built while `fault` holds, then Carol's
/// breaking commit on a healthy machine.
async fn error_then_breakage(fault: Fault) {
    let sink = SmtpSink::start(None);
    let mut index = LocalIndex::new();
    let repo = Repo::new();
    let requirements = format!("--index-url {}\niniconfig==2.3.1\n", index.url());
    repo.commit(
        ALICE,
        "Initial project",
        &[
            ("requirements.txt", &requirements),
            ("needs-iniconfig", ""),
            ("check.py", CHECK_PY),
            ("status", "ok\n"),
            ("kiln.yml", &kiln_yml(&sink.url(), "python3 check.py")),
        ],
    );
    let mut kiln = Kiln::new(&[]);
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 0, "the green build: {}", r.stderr);
    let green_state = states(&kiln.store());
    assert!(!green_state.is_empty(), "the green build saved its state");

    repo.commit(BOB, "Docs", &[("README", "read me\n")]);
    let r = match fault {
        Fault::Python => {
            kiln.env
                .push(("KILN_PYTHON".into(), "/nonexistent/python3".into()));
            let r = kiln.run(repo.path()).await;
            kiln.env.clear();
            r
        }
        Fault::Index => {
            index.stop();
            evict_caches(&kiln.store());
            let r = kiln.run(repo.path()).await;
            index.start();
            r
        }
        Fault::Store => {
            // The store is a regular file (a dead mount) and the machine is offline: no wheel.
            let broken = kiln.tmp.path().join("dead-store");
            std::fs::write(&broken, "not a directory").unwrap();
            kiln.store_url = Some(format!("file://{}", broken.display()));
            let r = kiln.run_with(repo.path(), &["--offline"]).await;
            kiln.store_url = None;
            r
        }
    };
    assert_nobody_blamed(&r, &sink, 0);
    assert_eq!(
        states(&kiln.store()),
        green_state,
        "{fault:?}: the branch state is unchanged"
    );

    repo.commit(CAROL, "Break the parser", &[("status", "parse\n")]);
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.summary["outcome"], "failed");
    assert!(
        r.stderr.contains("report: broken (problem mode)"),
        "{fault:?}: still the first failure after green: {}",
        r.stderr
    );
    // Bob's README commit is in the range; culprit finding (on by default) clears him.
    assert_eq!(r.notified(), ["email:carol@example.com"], "{}", r.summary);
    assert_eq!(sink.wait_for(1).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_without_python_blames_nobody_and_the_next_breakage_is_the_first() {
    error_then_breakage(Fault::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_that_is_down_blames_nobody_and_the_next_breakage_is_the_first() {
    error_then_breakage(Fault::Index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_store_offline_blames_nobody_and_the_next_breakage_is_the_first() {
    error_then_breakage(Fault::Store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_command_that_is_not_found_is_an_error_unless_the_range_changed_it() {
    let sink = SmtpSink::start(None);
    let repo = Repo::new();
    repo.commit(
        ALICE,
        "Initial project",
        &[
            ("requirements.txt", ""),
            ("check.py", CHECK_PY),
            ("status", "ok\n"),
            ("kiln.yml", &kiln_yml(&sink.url(), "python3 check.py")),
        ],
    );
    let mut kiln = Kiln::new(&[]);
    assert_eq!(kiln.run(repo.path()).await.code, 0);
    let green_state = states(&kiln.store());

    // The operator's runner names a tool this machine lacks: exit 127, nobody's commit.
    repo.commit(BOB, "Docs", &[("README", "read me\n")]);
    kiln.env
        .push(("KILN_TEST_COMMAND".into(), "no-such-test-runner -q".into()));
    let r = kiln.run(repo.path()).await;
    kiln.env.clear();
    assert_eq!(
        r.summary["cause"], "test_command_not_started",
        "{}",
        r.summary
    );
    let error = r.summary["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("could not start (exit 127: not found)")
            && error.contains("no-such-test-runner"),
        "{}",
        r.summary
    );
    let r = Run {
        summary: {
            let mut s = r.summary.clone();
            s["cause"] = "infrastructure".into();
            s
        },
        ..r
    };
    assert_nobody_blamed(&r, &sink, 0);
    assert_eq!(states(&kiln.store()), green_state);

    // The range changes the test command to one that does not exist: the commit's fault.
    repo.commit(
        CAROL,
        "Switch the test runner",
        &[("kiln.yml", &kiln_yml(&sink.url(), "no-such-test-runner -q"))],
    );
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.summary["outcome"], "broken", "{}", r.summary);
    assert!(
        r.stderr.contains("report: broken (problem mode)"),
        "{}",
        r.stderr
    );
    assert!(
        r.notified()
            .contains(&"email:carol@example.com".to_string()),
        "{}",
        r.summary
    );
}

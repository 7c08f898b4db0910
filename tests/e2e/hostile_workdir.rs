//! What the project's code leaves in the work dir is read by Kiln only as plain, bounded files
//! (issue 26, finding 6): a JUnit report that is a link to `/dev/zero`, a FIFO or a file of
//! gigabytes, and a ccache stats log turned into a FIFO by the bootstrap, neither hang the run
//! nor grow Kiln; each is ignored with a warning and the real report still counts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::kiln_home;
use crate::support::run::{finish, sh, Run};

/// The test command: one honest JUnit report, and three hostile ones beside it.
const HOSTILE_TESTS: &str = r#"set -e
cd "$KILN_JUNIT_DIR"
cat > ok.xml <<'XML'
<testsuite tests="1"><testcase classname="t" name="test_ok"/></testsuite>
XML
ln -s /dev/zero zero.xml
mkfifo fifo.xml
truncate -s 3G huge.xml
echo hostile-tests-done
"#;

/// The bootstrap: replaces ccache's stats log (read after the bootstrap) with a FIFO.
const HOSTILE_BOOTSTRAP: &str = r#"set -e
if [ -n "$CCACHE_STATSLOG" ]; then rm -f "$CCACHE_STATSLOG"; mkfifo "$CCACHE_STATSLOG"; echo fifo-statslog; fi
"#;

fn hostile_repo(root: &Path) -> PathBuf {
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("requirements.txt"), "").unwrap();
    std::fs::write(repo.join("tests.sh"), HOSTILE_TESTS).unwrap();
    std::fs::write(repo.join("boot.sh"), HOSTILE_BOOTSTRAP).unwrap();
    std::fs::write(
        repo.join("kiln.yml"),
        "bootstrap:\n  command: sh boot.sh\ntest:\n  command: sh tests.sh\nreport:\n  github:\n    enabled: false\n",
    )
    .unwrap();
    sh(
        &repo,
        "git init -q -b main && git add -A && git commit -qm hostile",
    );
    repo
}

/// The largest resident set of any child this process has waited for, in bytes.
fn children_max_rss() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) }, 0);
    u.ru_maxrss as u64 * 1024
}

fn kiln_run_with_deadline(t: &Path, repo: &Path, deadline: Duration) -> Run {
    let summary = t.join("summary.json");
    let mut cmd = kiln_home(&t.join("home"));
    cmd.arg("run")
        .arg("--repo")
        .arg(repo)
        .arg("--workdir")
        .arg(t.join("work"))
        .arg("--store")
        .arg(format!("file://{}", t.join("store").display()))
        .arg("--summary-json")
        .arg(&summary)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(out) => finish(out.unwrap(), &summary),
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("kiln run still running after {deadline:?}: a hostile file hung it");
        }
    }
}

#[test]
fn junit_links_fifos_huge_files_and_a_fifo_stats_log_are_ignored_with_warnings() {
    let t = tempfile::tempdir().unwrap();
    let repo = hostile_repo(t.path());
    let started = Instant::now();
    let r = kiln_run_with_deadline(t.path(), &repo, Duration::from_secs(120));
    let took = started.elapsed();
    assert!(r.stderr.contains("hostile-tests-done"), "{}", r.stderr);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.summary();
    assert_eq!(s.tests.passed, 1, "the honest report still counts: {s:?}");
    assert!(!s.tests.not_counted);
    for (file, why) in [
        ("zero.xml", "symbolic link"),
        ("fifo.xml", "FIFO"),
        ("huge.xml", "larger than"),
    ] {
        let warned = r
            .stderr
            .lines()
            .any(|l| l.contains("ignoring JUnit file") && l.contains(file) && l.contains(why));
        assert!(warned, "no warning for {file} ({why}):\n{}", r.stderr);
    }
    assert!(
        r.stderr.contains("fifo-statslog"),
        "ccache is on: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("ignoring the ccache stats log") && r.stderr.contains("FIFO"),
        "{}",
        r.stderr
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
    let rss = children_max_rss();
    assert!(rss < 512 << 20, "a child grew to {} MiB", rss >> 20);
}

//! The checkout of a network remote: a repository served by `git daemon` on loopback, so the
//! shallow default really applies (a local path or `file://` is cloned whole).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::support::run::*;

/// `git daemon` serving every repository under `base` at `git://127.0.0.1:<port>/`.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // git-daemon itself, not `git daemon`: killing the `git` wrapper would orphan it.
        let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
        let exec_path = String::from_utf8(exec_path.stdout).unwrap();
        let child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .spawn()
            .expect("git daemon");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        GitDaemon { child, port }
    }

    fn url(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("git://127.0.0.1:{}/{name}", self.port))
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A project without dependencies whose test checks how much history its checkout holds:
/// five commits on `main`; kiln.yml asks for `depth` and the test for `expect` commits.
fn project(dir: &Path, depth: &str, expect: u32) {
    std::fs::create_dir_all(dir).unwrap();
    sh(dir, "git init -q -b main");
    for i in 1..=4 {
        sh(
            dir,
            &format!("echo {i} > f && git add f && git commit -qm c{i}"),
        );
    }
    std::fs::write(
        dir.join("kiln.yml"),
        format!(
            "checkout:\n  depth: {depth}\ntest:\n  command: test \"$(git rev-list --count HEAD)\" = {expect}\n"
        ),
    )
    .unwrap();
    sh(dir, "git add kiln.yml && git commit -qm 'kiln.yml'");
}

#[test]
fn kiln_yml_checkout_depth_deepens_a_shallow_remote_clone_unless_a_flag_says_otherwise() {
    let t = tempfile::tempdir().unwrap();
    let served = t.path().join("served");
    project(&served.join("three.git"), "3", 3);
    project(&served.join("all.git"), "0", 5);
    let daemon = GitDaemon::start(&served);
    let (home, store) = (t.path().join("home"), t.path().join("store"));

    for name in ["three.git", "all.git"] {
        let work = t.path().join(format!("w-{name}"));
        let r = run(&home, &daemon.url(name), "main", &work, &store, &[]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert_eq!(r.summary().tests.failures.len(), 0, "{name}");
    }
    // The flag is above kiln.yml: one commit deep, and the history test fails.
    let work = t.path().join("w-flag");
    let r = run(
        &home,
        &daemon.url("three.git"),
        "main",
        &work,
        &store,
        &["--checkout-depth", "1"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
}

#[test]
fn a_bad_checkout_depth_in_kiln_yml_names_file_line_and_column() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    project(&repo, "lots", 1);
    let work = t.path().join("work");
    let r = run(
        &t.path().join("home"),
        &repo,
        "main",
        &work,
        &t.path().join("store"),
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("kiln.yml:2:10"), "{}", r.stderr);
}

//! Helpers shared by the report tests (tests/report_*.rs): a real SMTP server (aiosmtpd) and multi-author git
//! histories.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// aiosmtpd on a free loopback port, writing each delivered message to a JSON file.
pub struct SmtpSink {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl SmtpSink {
    /// Start the sink; with `auth` ("user:password") it requires that login.
    pub fn start(auth: Option<&str>) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let script = super::root().join("tests/e2e/support/smtp_sink.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg(dir.path());
        if let Some(a) = auth {
            cmd.arg(a);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with aiosmtpd (scripts/setup.sh installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("smtp sink did not start: {line:?}"))
            .parse()
            .unwrap();
        SmtpSink { child, dir, port }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message delivered so far, in order of delivery.
    pub fn messages(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
            .collect()
    }

    /// Wait (briefly) until at least `n` messages arrived; returns them all.
    pub fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Recipients of a delivered message, sorted.
pub fn rcpts(m: &Value) -> Vec<String> {
    let mut v: Vec<String> = m["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// A header's value in a raw message (first occurrence, unfolded).
pub fn header(m: &Value, name: &str) -> String {
    let data = m["data"].as_str().unwrap();
    let mut out = String::new();
    let mut in_header = false;
    for line in data.lines() {
        if line.is_empty() {
            break;
        }
        if in_header && (line.starts_with(' ') || line.starts_with('\t')) {
            out.push_str(line.trim_start_matches([' ', '\t']));
            out.push(' ');
            continue;
        }
        if in_header {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case(name) {
                in_header = true;
                out.push_str(v.trim());
                out.push(' ');
            }
        }
    }
    out.trim().to_string()
}

/// A git repository with commits by different people.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let r = Repo { dir };
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .env("GIT_COMMITTER_NAME", "Committer")
            .env("GIT_COMMITTER_EMAIL", "committer@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Write `files`, commit them as `author` ("Name <email>"), return the SHA.
    pub fn commit(&self, author: &str, message: &str, files: &[(&str, &str)]) -> String {
        for (name, content) in files {
            let p = self.path().join(name);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).unwrap();
            }
            std::fs::write(p, content).unwrap();
        }
        self.git(&["add", "-A"]);
        self.git(&[
            "commit",
            "-q",
            "--allow-empty",
            "--author",
            author,
            "-m",
            message,
        ]);
        self.git(&["rev-parse", "HEAD"])
    }
}

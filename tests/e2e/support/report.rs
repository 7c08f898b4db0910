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

/// The outcome of one `kiln run`: exit code, summary JSON, stderr.
pub struct Run {
    pub code: i32,
    pub summary: Value,
    pub stderr: String,
}

impl Run {
    /// `notified` as sorted "channel:to" strings.
    pub fn notified(&self) -> Vec<String> {
        let mut v: Vec<String> = self.summary["notified"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                format!(
                    "{}:{}",
                    n["channel"].as_str().unwrap(),
                    n["to"].as_str().unwrap()
                )
            })
            .collect();
        v.sort();
        v
    }

    /// `blame` as sorted "author" names (one per commit and person).
    pub fn blamed(&self) -> Vec<String> {
        let mut v: Vec<String> = self.summary["blame"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["author"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

pub struct Kiln {
    pub tmp: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    runs: usize,
    /// `--store`; None = a file store in the temp dir.
    pub store_url: Option<String>,
}

impl Kiln {
    pub fn new(env: &[(&str, String)]) -> Kiln {
        Kiln {
            tmp: tempfile::tempdir().unwrap(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            runs: 0,
            store_url: None,
        }
    }

    /// The work dir every run of this `Kiln` uses.
    pub fn workdir(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    pub fn store(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    /// `kiln run` of the repository's `main` branch, as a CI system would start it.
    pub async fn run(&mut self, repo: &Path) -> Run {
        self.run_with(repo, &[]).await
    }

    pub async fn run_with(&mut self, repo: &Path, extra: &[&str]) -> Run {
        self.runs += 1;
        let summary_path = self.tmp.path().join(format!("summary-{}.json", self.runs));
        // Isolated from the machine: own HOME and cache dir, no CI variables of the host.
        let mut cmd = crate::support::kiln_home(&self.tmp.path().join("home"));
        cmd.arg("run")
            .arg("--repo")
            .arg(repo)
            .args(["--rev", "main"])
            .arg("--workdir")
            .arg(self.tmp.path().join("work"))
            .arg("--store")
            .arg(
                self.store_url
                    .clone()
                    .unwrap_or_else(|| format!("file://{}", self.store().display())),
            )
            .arg("--summary-json")
            .arg(&summary_path)
            .args(extra);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(&summary_path)
                .unwrap_or_else(|e| panic!("no summary JSON ({e}); stderr:\n{stderr}")),
        )
        .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            summary,
            stderr,
        }
    }
}

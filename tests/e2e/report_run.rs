//! End to end through the real `kiln run`: multi-author git histories, a fake GitHub (wiremock)
//! and a real SMTP server (aiosmtpd). Asserts exactly who is told, through which channel, when.
//!
//! History: green by Alice; breaking commits by Bob and by Carol (co-authored by Erin, who only
//! has a GitHub noreply address) plus a dependabot commit; a still-failing commit by Eve; the fix
//! by Dan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::support::report::{header, rcpts, Kiln, Repo, SmtpSink};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ALICE: &str = "Alice A <alice@example.com>";
const BOB: &str = "Bob B <bob@example.com>";
const CAROL: &str = "Carol C <carol@example.com>";
const DAN: &str = "Dan D <dan@example.com>";
const EVE: &str = "Eve E <eve@example.com>";
const BOT: &str = "dependabot[bot] <49699333+dependabot[bot]@users.noreply.github.com>";

/// The project's test command: fails the tests listed in `status` (or none for "ok"), writing
/// JUnit XML like pytest would.
const CHECK_PY: &str = r#"import os, sys
status = open("status").read().strip()
failing = [] if status == "ok" else status.split(",")
cases = ['<testcase classname="tests.test_app" name="test_ok" file="tests/test_app.py" line="1"/>']
for i, name in enumerate(failing):
    cases.append('<testcase classname="tests.test_app" name="test_%s" file="tests/test_app.py" line="%d">'
                 '<failure message="assert %s">tests/test_app.py:%d: AssertionError</failure></testcase>'
                 % (name, 10 * (i + 1), name, 10 * (i + 1) + 1))
xml = '<testsuite name="t" tests="%d" failures="%d">%s</testsuite>' % (len(cases), len(failing), "".join(cases))
open(os.path.join(os.environ["KILN_JUNIT_DIR"], "junit.xml"), "w").write(xml)
print("FAILED: " + ", ".join(failing) if failing else "all passed")
sys.exit(1 if failing else 0)
"#;

fn kiln_yml(smtp: Option<&str>, mode: &str) -> String {
    let mut y = format!(
        "requirements: [requirements.txt]\ntest:\n  command: python3 check.py\nreport:\n  mode: {mode}\n\
         \x20 bisect:\n    enabled: false\n"
    );
    if let Some(url) = smtp {
        y.push_str(&format!(
            "  email:\n    smtp: {url}\n    from: Kiln CI <ci@example.com>\n    tls: none\n"
        ));
    }
    y
}

/// A project at its green start, committed by Alice.
fn project(smtp: Option<&str>, mode: &str) -> (Repo, String) {
    let repo = Repo::new();
    let yml = kiln_yml(smtp, mode);
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

/// A fake GitHub: logins per commit, statuses, check runs and comments (kept, so a later build
/// finds its earlier comment and edits it).
struct FakeGithub {
    server: MockServer,
    seen: usize,
    logins: Logins,
    compares: Compares,
}

/// `GET /repos/octo/app/compare/{base}...{head}`: the answers set by the test, else 404.
#[derive(Clone, Default)]
struct Compares(Arc<Mutex<HashMap<String, Value>>>);

impl Respond for Compares {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let range = req.url.path().rsplit('/').next().unwrap();
        match self.0.lock().unwrap().get(range) {
            Some(v) => ResponseTemplate::new(200).set_body_json(v.clone()),
            None => ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})),
        }
    }
}

#[derive(Clone, Default)]
struct Comments(Arc<Mutex<Vec<Value>>>);

impl Respond for Comments {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut list = self.0.lock().unwrap();
        match req.method.as_str() {
            "GET" => ResponseTemplate::new(200).set_body_json(Value::Array(list.clone())),
            "POST" => {
                let id = 100 + list.len() as u64;
                let body = req.body_json::<Value>().unwrap()["body"].clone();
                list.push(json!({"id": id, "body": body}));
                ResponseTemplate::new(201).set_body_json(json!({"id": id}))
            }
            "PATCH" => {
                let id: u64 = req.url.path().rsplit('/').next().unwrap().parse().unwrap();
                let body = req.body_json::<Value>().unwrap()["body"].clone();
                for c in list.iter_mut() {
                    if c["id"] == id {
                        c["body"] = body.clone();
                    }
                }
                ResponseTemplate::new(200).set_body_json(json!({"id": id}))
            }
            _ => ResponseTemplate::new(405),
        }
    }
}

#[derive(Clone, Default)]
struct Logins(Arc<Mutex<HashMap<String, String>>>);

impl Respond for Logins {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let sha = req.url.path().rsplit('/').next().unwrap().to_string();
        let author = match self.0.lock().unwrap().get(&sha) {
            Some(l) => json!({"login": l}),
            None => Value::Null,
        };
        ResponseTemplate::new(200).set_body_json(json!({"sha": sha, "author": author}))
    }
}

impl FakeGithub {
    async fn start(logins: HashMap<String, String>) -> FakeGithub {
        let server = MockServer::start().await;
        let logins = Logins(Arc::new(Mutex::new(logins)));
        Mock::given(method("GET"))
            .and(path_regex(r"^/repos/octo/app/commits/[0-9a-f]{40}$"))
            .respond_with(logins.clone())
            .mount(&server)
            .await;
        let compares = Compares::default();
        Mock::given(method("GET"))
            .and(path_regex(
                r"^/repos/octo/app/compare/[0-9a-f]{40}\.\.\.[0-9a-f]{40}$",
            ))
            .respond_with(compares.clone())
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(r"^/repos/octo/app/statuses/[0-9a-f]{40}$"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/repos/octo/app/check-runs"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 555})))
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/repos/octo/app/check-runs/555"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 555})))
            .mount(&server)
            .await;
        let comments = Comments::default();
        Mock::given(path_regex(
            r"^/repos/octo/app/(issues/7/comments|issues/comments/\d+|commits/[0-9a-f]{40}/comments|comments/\d+)$",
        ))
        .respond_with(comments)
        .mount(&server)
        .await;
        FakeGithub {
            server,
            seen: 0,
            logins,
            compares,
        }
    }

    fn set_login(&self, sha: &str, login: &str) {
        self.logins
            .0
            .lock()
            .unwrap()
            .insert(sha.to_string(), login.to_string());
    }

    /// The requests since the last call, minus the login lookups, as
    /// (method + path, JSON body).
    async fn take(&mut self) -> Vec<(String, Value)> {
        let all = self.server.received_requests().await.unwrap();
        let new = all[self.seen..].to_vec();
        self.seen = all.len();
        new.iter()
            .filter(|r| {
                !(r.method.as_str() == "GET"
                    && r.url.path().contains("/commits/")
                    && !r.url.path().ends_with("/comments"))
            })
            .map(|r| {
                (
                    format!("{} {}", r.method, r.url.path()),
                    r.body_json::<Value>().unwrap_or(Value::Null),
                )
            })
            .collect()
    }
}

fn mentions(body: &str) -> Vec<String> {
    let mut v: Vec<String> = body
        .split_whitespace()
        .filter_map(|w| w.strip_prefix('@'))
        .map(|w| w.trim_end_matches([':', ',', ')']).to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problem_mode_tells_the_culprits_once_and_fixed_on_recovery() {
    let sink = SmtpSink::start(None);
    let (repo, green) = project(Some(&sink.url()), "problem");
    let b = repo.commit(BOB, "Refactor the parser", &[("status", "parse\n")]);
    let bot = repo.commit(BOT, "Bump a dependency", &[("requirements.txt", "\n")]);
    let c = repo.commit(
        CAROL,
        "Faster tokenizer\n\nCo-authored-by: Erin <4242+erin@users.noreply.github.com>",
        &[("status", "parse,tokenize\n")],
    );
    let logins: HashMap<String, String> = [
        (green.clone(), "alice"),
        (b.clone(), "bob"),
        (c.clone(), "carol"),
        (bot.clone(), "dependabot[bot]"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    let mut gh = FakeGithub::start(logins).await;
    let mut kiln = Kiln::new(&[
        ("GITHUB_TOKEN", "ghs_e2e-secret".into()),
        ("GITHUB_API_URL", gh.server.uri()),
        ("GITHUB_REPOSITORY", "octo/app".into()),
        ("KILN_PR_NUMBER", "7".into()),
    ]);

    // Build 1 needs a green baseline: run at Alice's commit.
    let head = repo.git(&["rev-parse", "main"]);
    repo.git(&["update-ref", "refs/heads/main", &green]);
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.notified().is_empty());
    assert!(r.blamed().is_empty());
    let reqs = gh.take().await;
    let calls: Vec<&str> = reqs.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        calls,
        [
            format!("POST /repos/octo/app/statuses/{green}").as_str(),
            "POST /repos/octo/app/check-runs"
        ]
    );
    assert_eq!(reqs[0].1["state"], "success");
    assert_eq!(reqs[1].1["conclusion"], "success");
    assert_eq!(sink.messages().len(), 0);

    // Build 2: Bob, dependabot and Carol (with Erin) broke it.
    repo.git(&["update-ref", "refs/heads/main", &head]);
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.blamed(),
        ["Bob B", "Carol C", "Erin", "dependabot[bot]"],
        "Alice's green commit is not blamed"
    );
    assert_eq!(
        r.notified(),
        [
            "email:bob@example.com",
            "email:carol@example.com",
            "github:@bob",
            "github:@carol",
            "github:@erin"
        ]
    );
    let reqs = gh.take().await;
    let calls: Vec<&str> = reqs.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        calls,
        [
            format!("POST /repos/octo/app/statuses/{c}").as_str(),
            "POST /repos/octo/app/check-runs",
            "GET /repos/octo/app/issues/7/comments",
            "POST /repos/octo/app/issues/7/comments",
        ]
    );
    assert_eq!(reqs[0].1["state"], "failure");
    assert_eq!(reqs[0].1["context"], "kiln");
    let run = &reqs[1].1;
    assert_eq!(run["head_sha"], c.as_str());
    assert_eq!(run["conclusion"], "failure");
    let ann = run["output"]["annotations"].as_array().unwrap();
    assert_eq!(ann.len(), 2);
    assert_eq!(ann[0]["path"], "tests/test_app.py");
    assert_eq!(ann[0]["title"], "tests.test_app::test_parse");
    let comment = reqs[3].1["body"].as_str().unwrap();
    assert!(comment.starts_with("<!-- kiln-report -->"), "{comment}");
    assert_eq!(mentions(comment), ["bob", "carol", "erin"], "{comment}");
    assert!(comment.contains("`main` is broken"), "{comment}");
    let mails = sink.wait_for(1);
    assert_eq!(mails.len(), 1);
    assert_eq!(rcpts(&mails[0]), ["bob@example.com", "carol@example.com"]);
    assert!(header(&mails[0], "Subject").contains("main: broken at"));
    let data = mails[0]["data"].as_str().unwrap();
    assert!(data.contains("tests.test_app::test_tokenize"), "{data}");
    assert!(data.contains("FAILED: parse, tokenize"), "log tail: {data}");

    // Build 3: Eve's commit, still failing (a new failure too): nobody new in `problem` mode.
    let e = repo.commit(EVE, "Docs", &[("status", "parse,tokenize,docs\n")]);
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 1);
    assert!(r.notified().is_empty(), "{:?}", r.notified());
    assert!(r.blamed().contains(&"Eve E".to_string()));
    let reqs = gh.take().await;
    let calls: Vec<&str> = reqs.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        calls,
        [
            format!("POST /repos/octo/app/statuses/{e}").as_str(),
            "POST /repos/octo/app/check-runs",
        ]
    );
    assert_eq!(sink.messages().len(), 1);

    // Build 4: a rebuild of the same commit tells nobody either.
    let r = kiln.run(repo.path()).await;
    assert!(r.notified().is_empty());
    gh.take().await;

    // Build 5: Dan's fix. Bob, Carol and Erin hear it; the PR comment is edited in place.
    let d = repo.commit(DAN, "Fix the parser", &[("status", "ok\n")]);
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.blamed().is_empty());
    assert_eq!(
        r.notified(),
        [
            "email:bob@example.com",
            "email:carol@example.com",
            "github:@bob",
            "github:@carol",
            "github:@erin"
        ]
    );
    let reqs = gh.take().await;
    let calls: Vec<&str> = reqs.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        calls,
        [
            format!("POST /repos/octo/app/statuses/{d}").as_str(),
            "POST /repos/octo/app/check-runs",
            "GET /repos/octo/app/issues/7/comments",
            "PATCH /repos/octo/app/issues/comments/100",
        ]
    );
    assert_eq!(reqs[0].1["state"], "success");
    let fixed = reqs[3].1["body"].as_str().unwrap();
    assert!(fixed.contains("`main` is fixed"), "{fixed}");
    assert_eq!(mentions(fixed), ["bob", "carol", "erin"]);
    let mails = sink.wait_for(2);
    assert_eq!(mails.len(), 2);
    assert_eq!(rcpts(&mails[1]), ["bob@example.com", "carol@example.com"]);
    assert!(header(&mails[1], "Subject").contains("main: fixed at"));

    // Build 6: green again, nothing to say to anyone.
    let r = kiln.run(repo.path()).await;
    assert!(r.notified().is_empty());
    assert_eq!(sink.messages().len(), 2);
    assert!(!r.stderr.contains("ghs_e2e-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_mode_tells_the_culprits_on_every_failing_build() {
    let sink = SmtpSink::start(None);
    let (repo, _green) = project(Some(&sink.url()), "failing");
    let mut kiln = Kiln::new(&[]);
    assert_eq!(kiln.run(repo.path()).await.code, 0);

    repo.commit(BOB, "Break", &[("status", "parse\n")]);
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.notified(), ["email:bob@example.com"]);

    repo.commit(CAROL, "More", &[("status", "parse,lex\n")]);
    let r = kiln.run(repo.path()).await;
    assert_eq!(
        r.notified(),
        ["email:bob@example.com", "email:carol@example.com"]
    );

    // Even a rebuild of the same failing commit tells them again.
    let r = kiln.run(repo.path()).await;
    assert_eq!(
        r.notified(),
        ["email:bob@example.com", "email:carol@example.com"]
    );
    let mails = sink.wait_for(3);
    let to: Vec<Vec<String>> = mails.iter().map(rcpts).collect();
    assert_eq!(
        to,
        [
            vec!["bob@example.com"],
            vec!["bob@example.com", "carol@example.com"],
            vec!["bob@example.com", "carol@example.com"],
        ]
    );

    repo.commit(DAN, "Fix", &[("status", "ok\n")]);
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 0);
    assert_eq!(
        r.notified(),
        ["email:bob@example.com", "email:carol@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_reporter_never_changes_the_exit_code() {
    // GitHub rejects the token; the SMTP server is down.
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"message": "Bad credentials"})),
        )
        .mount(&server)
        .await;
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (repo, _) = project(Some(&format!("smtp://127.0.0.1:{dead_port}")), "problem");
    let mut kiln = Kiln::new(&[
        ("GITHUB_TOKEN", "ghs_never-print-me".into()),
        ("GITHUB_API_URL", server.uri()),
        ("GITHUB_REPOSITORY", "octo/app".into()),
    ]);
    assert_eq!(kiln.run(repo.path()).await.code, 0);
    repo.commit(BOB, "Break", &[("status", "parse\n")]);
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.notified().is_empty());
    assert_eq!(r.blamed(), ["Bob B"]);
    assert!(r.stderr.contains("Bad credentials"), "{}", r.stderr);
    assert!(r.stderr.contains("cannot send the email"), "{}", r.stderr);
    assert!(!r.stderr.contains("ghs_never-print-me"));
}

/// Rewrite `main`'s history so that `gone` (a former green commit) exists nowhere any more: a
/// force push followed by garbage collection.
fn force_push_away(repo: &Repo, gone: &str) {
    repo.git(&["commit", "-q", "--amend", "-m", "Rewritten history"]);
    repo.git(&["reflog", "expire", "--expire=now", "--all"]);
    repo.git(&["gc", "-q", "--prune=now"]);
    let spec = format!("{gone}^{{commit}}");
    let still = std::process::Command::new("git")
        .args(["cat-file", "-e", &spec])
        .current_dir(repo.path())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!still.success(), "{gone} should be gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blame_falls_back_to_github_compare_then_to_the_tested_commit() {
    let (repo, green) = project(None, "problem");
    let mut gh = FakeGithub::start(HashMap::new()).await;
    let mut kiln = Kiln::new(&[
        ("GITHUB_TOKEN", "ghs_x".into()),
        ("GITHUB_API_URL", gh.server.uri()),
        ("GITHUB_REPOSITORY", "octo/app".into()),
    ]);
    assert_eq!(kiln.run(repo.path()).await.code, 0);
    gh.take().await;

    // The green commit is force-pushed away: git cannot give the range, GitHub's compare can.
    force_push_away(&repo, &green);
    let b = repo.commit(BOB, "Break", &[("status", "parse\n")]);
    gh.compares.0.lock().unwrap().insert(
        format!("{green}...{b}"),
        json!({"commits": [
            {"sha": b, "author": {"login": "bob"},
             "commit": {"message": "Break", "author": {"name": "Bob B", "email": "bob@example.com"}}}
        ]}),
    );
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.blamed(), ["Bob B"]);
    assert_eq!(r.notified(), ["github:@bob"]);
    let calls: Vec<String> = gh.take().await.into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        calls,
        [
            format!("GET /repos/octo/app/compare/{green}...{b}"),
            format!("POST /repos/octo/app/statuses/{b}"),
            "POST /repos/octo/app/check-runs".to_string(),
            format!("GET /repos/octo/app/commits/{b}/comments"),
            format!("POST /repos/octo/app/commits/{b}/comments"),
        ]
    );

    // Fixed by Dan, then the fix is force-pushed away too and Carol breaks it: neither git nor
    // GitHub knows the range, so the tested commit alone is blamed.
    let d = repo.commit(DAN, "Fix", &[("status", "ok\n")]);
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 0);
    assert_eq!(r.notified(), ["github:@bob"]);
    force_push_away(&repo, &d);
    let c = repo.commit(CAROL, "Break again", &[("status", "lex\n")]);
    gh.set_login(&c, "carol");
    gh.take().await;
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.blamed(), ["Carol C"]);
    assert_eq!(r.notified(), ["github:@carol"]);
    assert!(
        r.stderr.contains("blaming the tested commit alone"),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_mode_tells_new_authors_when_the_failures_change() {
    let sink = SmtpSink::start(None);
    let (repo, _) = project(Some(&sink.url()), "change");
    let mut kiln = Kiln::new(&[]);
    assert_eq!(kiln.run(repo.path()).await.code, 0);
    repo.commit(BOB, "Break", &[("status", "parse\n")]);
    assert_eq!(
        kiln.run(repo.path()).await.notified(),
        ["email:bob@example.com"]
    );
    // Carol's commit leaves the same test failing: nobody.
    repo.commit(CAROL, "Unrelated", &[("README", "hi\n")]);
    assert!(kiln.run(repo.path()).await.notified().is_empty());
    // Eve's commit breaks another test: Eve hears, Bob (already told) does not.
    repo.commit(EVE, "Lexer", &[("status", "parse,lex\n")]);
    assert_eq!(
        kiln.run(repo.path()).await.notified(),
        ["email:eve@example.com"]
    );
    repo.commit(DAN, "Fix", &[("status", "ok\n")]);
    assert_eq!(
        kiln.run(repo.path()).await.notified(),
        ["email:bob@example.com", "email:eve@example.com"]
    );
    let to: Vec<Vec<String>> = sink.wait_for(3).iter().map(rcpts).collect();
    assert_eq!(
        to,
        [
            vec!["bob@example.com"],
            vec!["eve@example.com"],
            vec!["bob@example.com", "eve@example.com"]
        ]
    );
}

/// Like actions/checkout: a depth-1 clone in a fresh directory, built with `--checkout reuse`.
fn shallow_clone(origin: &Path, into: &Path) -> PathBuf {
    let ok = std::process::Command::new("git")
        .args(["clone", "-q", "--depth", "1", "--branch", "main"])
        .arg(format!("file://{}", origin.display()))
        .arg(into)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    into.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shallow_reused_checkouts_fetch_the_range_from_origin() {
    let sink = SmtpSink::start(None);
    let (repo, _) = project(Some(&sink.url()), "problem");
    let clones = tempfile::tempdir().unwrap();
    let mut kiln = Kiln::new(&[]);
    let first = shallow_clone(repo.path(), &clones.path().join("one"));
    let r = kiln.run_with(&first, &["--checkout", "reuse"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    repo.commit(BOB, "Break", &[("status", "parse\n")]);
    repo.commit(CAROL, "More", &[("status", "parse,lex\n")]);
    // Another runner, another directory, one commit deep: the state (keyed by the origin URL)
    // and the history (fetched from origin) still give the whole range.
    let second = shallow_clone(repo.path(), &clones.path().join("two"));
    let r = kiln.run_with(&second, &["--checkout", "reuse"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.blamed(), ["Bob B", "Carol C"]);
    assert_eq!(
        r.notified(),
        ["email:bob@example.com", "email:carol@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_request_builds_post_on_the_head_commit_and_comment_on_the_pr() {
    let (repo, _) = project(None, "problem");
    let b = repo.commit(BOB, "Break", &[("status", "parse\n")]);
    let head = "feedfacefeedfacefeedfacefeedfacefeedface";
    let mut gh = FakeGithub::start(HashMap::from([(b.clone(), "bob".to_string())])).await;
    let mut kiln = Kiln::new(&[
        ("GITHUB_TOKEN", "ghs_x".into()),
        ("GITHUB_API_URL", gh.server.uri()),
        ("GITHUB_REPOSITORY", "octo/app".into()),
        ("KILN_PR_NUMBER", "7".into()),
        ("KILN_HEAD_SHA", head.into()),
    ]);
    // The branch's first build, failing: the tested commit's author is blamed.
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.notified(), ["github:@bob"]);
    let reqs = gh.take().await;
    let calls: Vec<&str> = reqs.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        calls,
        [
            format!("POST /repos/octo/app/statuses/{head}").as_str(),
            "POST /repos/octo/app/check-runs",
            "GET /repos/octo/app/issues/7/comments",
            "POST /repos/octo/app/issues/7/comments",
        ]
    );
    assert_eq!(reqs[1].1["head_sha"], head);
    assert_eq!(mentions(reqs[3].1["body"].as_str().unwrap()), ["bob"]);
}

/// A TCP endpoint that accepts connections and never answers (nor closes them).
struct Silent {
    port: u16,
}

impl Silent {
    fn start() -> Silent {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming().flatten() {
                held.push(conn);
            }
        });
        Silent { port }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_store_github_and_smtp_cost_seconds_and_the_build_goes_on() {
    let silent = Silent::start();
    let at = format!("127.0.0.1:{}", silent.port);
    let (repo, _green) = project(Some(&format!("smtp://{at}")), "problem");
    repo.commit(BOB, "Break", &[("status", "parse\n")]);
    let mut kiln = Kiln::new(&[
        ("GITHUB_TOKEN", "ghs_silent-secret".into()),
        ("GITHUB_API_URL", format!("http://{at}")),
        ("KILN_GITHUB_REPOSITORY", "octo/app".into()),
        ("AWS_ACCESS_KEY_ID", "AKIDSILENT".into()),
        ("AWS_SECRET_ACCESS_KEY", "silent-secret-key".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]);
    kiln.store_url = Some(format!("s3://kiln/cache?endpoint=http://{at}"));
    let started = std::time::Instant::now();
    let r = kiln.run(repo.path()).await;
    let took = started.elapsed();
    eprintln!("kiln run against a silent store, GitHub API and SMTP server: {took:.1?}");
    // A hang guard, not a speed assertion: before, this took minutes.
    assert!(took < std::time::Duration::from_secs(150), "{took:?}");
    // The build itself ran and failed on its tests: exit 1, not a crash or a usage error.
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.summary["outcome"], "failed", "{}", r.summary);
    let err = &r.stderr;
    assert!(err.contains("store unavailable"), "store warning: {err}");
    assert!(err.contains("GitHub API"), "GitHub warning: {err}");
    assert!(
        err.contains(&format!("sending email through {at}")),
        "email warning: {err}"
    );
    for secret in ["ghs_silent-secret", "silent-secret-key"] {
        assert!(!err.contains(secret), "{secret} printed: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regular_file_as_store_path_builds_uncached() {
    let (repo, _green) = project(None, "problem");
    let mut kiln = Kiln::new(&[]);
    let file = kiln.tmp.path().join("not-a-dir");
    std::fs::write(&file, "a file").unwrap();
    kiln.store_url = Some(format!("file://{}", file.display()));
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.summary["outcome"], "passed", "{}", r.summary);
    assert!(
        r.stderr.contains("cache store unusable") && r.stderr.contains("building without cache"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "a file");

    // A store URL that does not even parse: the same, and its password is never printed.
    kiln.store_url = Some("s3://bob:hunter2 x@bad host/prefix".into());
    let r = kiln.run(repo.path()).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("cache store unusable"), "{}", r.stderr);
    assert!(r.stderr.contains("s3://bad host/prefix"), "{}", r.stderr);
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
}

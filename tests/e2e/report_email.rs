//! Email through a real SMTP server on loopback (aiosmtpd), read back from what it received.

use crate::support::report::{header, rcpts, SmtpSink};
use kiln::report::blame::{Commit, Person};
use kiln::report::email::Mailer;
use kiln::report::policy::Event;
use kiln::report::render;
use kiln::settings::SmtpTls;
use kiln::summary::{Outcome, RunSummary, TestFailure};

fn summary() -> RunSummary {
    let mut s = RunSummary {
        outcome: Outcome::Failed,
        exit_code: 1,
        commit: "c0ffee".repeat(6) + "abcd",
        branch: Some("main".into()),
        ..Default::default()
    };
    s.tests.passed = 3;
    s.tests.failed = 1;
    s.tests.failures.push(TestFailure {
        name: "tests/test_parse.py::test_empty".into(),
        file: Some("tests/test_parse.py".into()),
        line: Some(12),
        message: "AssertionError: assert '' == 'x'".into(),
        ..Default::default()
    });
    s
}

#[tokio::test]
async fn multipart_mail_reaches_every_recipient() {
    let sink = SmtpSink::start(None);
    let mailer = Mailer::new(
        &sink.url(),
        Some("Kiln CI <ci@example.com>"),
        SmtpTls::None,
        None,
        None,
    )
    .unwrap();
    let s = summary();
    let commits = vec![Commit {
        sha: "b".repeat(40),
        author: Person::new("Bob", "bob@example.com"),
        co_authors: vec![Person::new("Carol", "carol@example.com")],
        subject: "Parse <empty> input".into(),
    }];
    let b = render::Build {
        summary: &s,
        event: Event::Broken,
        repository: "octo/app",
        branch: "main",
        base: Some("aaaaaaaaaaaaaaaa"),
        commits: &commits,
        recipients: &[],
        log_tail: "E   AssertionError: assert '' == 'x'\n1 failed, 3 passed",
        run_url: Some("https://ci.example/runs/1"),
    };
    let mail = render::mail(
        &b,
        vec!["bob@example.com".into(), "carol@example.com".into()],
    );
    mailer.send(&mail).await.unwrap();

    let msgs = sink.wait_for(1);
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(rcpts(m), ["bob@example.com", "carol@example.com"]);
    assert_eq!(m["mail_from"], "ci@example.com");
    assert_eq!(header(m, "From"), "\"Kiln CI\" <ci@example.com>");
    assert!(
        header(m, "Subject").contains("octo/app main: broken at c0ffeec0ff"),
        "{}",
        header(m, "Subject")
    );
    assert!(header(m, "Content-Type").starts_with("multipart/alternative"));
    let data = m["data"].as_str().unwrap();
    assert!(data.contains("Content-Type: text/plain"), "{data}");
    assert!(data.contains("Content-Type: text/html"), "{data}");
    // Failing test, commit range and log tail, in both parts.
    assert!(data.contains("tests/test_parse.py::test_empty (tests/test_parse.py:12)"));
    assert!(data.contains("Parse <empty> input (Bob, Carol)"), "{data}");
    assert!(data.contains("Parse &lt;empty&gt; input"), "{data}");
    assert!(data.contains("1 failed, 3 passed"));
    assert!(data.contains("https://ci.example/runs/1"));
}

#[tokio::test]
async fn smtp_login_is_used_and_a_wrong_password_is_not_revealed() {
    let sink = SmtpSink::start(Some("kiln:pa55word"));
    let mail = kiln::report::email::Mail {
        to: vec!["dan@example.com".into()],
        subject: "s".into(),
        text: "t".into(),
        html: "<p>t</p>".into(),
    };
    let ok = Mailer::new(
        &sink.url(),
        Some("ci@example.com"),
        SmtpTls::None,
        Some("kiln".into()),
        Some("pa55word".into()),
    )
    .unwrap();
    ok.send(&mail).await.unwrap();
    let msgs = sink.wait_for(1);
    assert_eq!(msgs[0]["login"], "kiln");

    let bad = Mailer::new(
        &sink.url(),
        Some("ci@example.com"),
        SmtpTls::None,
        Some("kiln".into()),
        Some("wr0ng-secret".into()),
    )
    .unwrap();
    let err = bad.send(&mail).await.unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{}", sink.port)), "{err}");
    assert!(!err.contains("wr0ng-secret"), "{err}");
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn unreachable_server_is_an_error_naming_it() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let m = Mailer::new(
        &format!("smtp://127.0.0.1:{port}"),
        Some("ci@example.com"),
        SmtpTls::None,
        None,
        None,
    )
    .unwrap();
    let mail = kiln::report::email::Mail {
        to: vec!["dan@example.com".into()],
        subject: "s".into(),
        text: "t".into(),
        html: "t".into(),
    };
    let err = m.send(&mail).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("sending email through 127.0.0.1:{port}")),
        "{err}"
    );
}

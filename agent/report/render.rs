//! What Kiln says about a build: the commit status line, the check run's Markdown summary and
//! annotations, the @mention comment, and the email. Pure text, no I/O, so the wording is tested
//! on its own.

use crate::summary::{Outcome, RunSummary, TestFailure};

use super::blame::{Commit, Person};
use super::email::Mail;
use super::github::{Annotation, CheckRun, MARKER};
use super::markdown;
use super::policy::Event;
use super::vocab::{self, failure_location, first_line, md_cell, short_sha as short};

/// Failing tests listed in full in a comment or email (the rest are counted).
const LIST_FAILURES: usize = 20;

/// Everything the renderers need about one build.
#[derive(Debug, Clone)]
pub struct Build<'a> {
    pub summary: &'a RunSummary,
    pub event: Event,
    /// `owner/name`, or the repository location.
    pub repository: &'a str,
    pub branch: &'a str,
    /// The last green commit (start of the blamed range), if any.
    pub base: Option<&'a str>,
    /// The blamed commits, newest first.
    pub commits: &'a [Commit],
    /// Who this message is for.
    pub recipients: &'a [Person],
    /// Last lines of the test output.
    pub log_tail: &'a str,
    /// A page about this run (e.g. the Actions run), if any.
    pub run_url: Option<&'a str>,
}

/// `(state, description)` of the commit status.
pub fn status(s: &RunSummary) -> (&'static str, String) {
    let state = match s.outcome {
        Outcome::Passed => "success",
        Outcome::Failed | Outcome::Broken => "failure",
        Outcome::Error => "error",
    };
    let desc = match (s.outcome, &s.error) {
        (Outcome::Error | Outcome::Broken, Some(e)) => first_line(e).to_string(),
        _ => format!("{} in {:.0}s", vocab::test_counts(&s.tests), s.seconds),
    };
    (state, desc)
}

/// One annotation per failing test that has a file (GitHub needs a path to anchor it).
pub fn annotations(s: &RunSummary) -> Vec<Annotation> {
    s.tests
        .failures
        .iter()
        .filter_map(|f| {
            let path = f.file.as_deref()?.trim_start_matches("./").to_string();
            let line = f.line.unwrap_or(1).max(1);
            Some(Annotation {
                path,
                start_line: line,
                end_line: line,
                annotation_level: "failure",
                title: f.name.clone(),
                message: if f.message.trim().is_empty() {
                    "test failed".into()
                } else {
                    f.message.clone()
                },
            })
        })
        .collect()
}

fn who(p: &Person) -> String {
    match &p.login {
        Some(l) => format!("{} (@{l})", p.name),
        None => p.name.clone(),
    }
}

/// The check run: conclusion, title, a Markdown summary (stages, caches, failing tests, blame)
/// and the annotations.
pub fn check_run(b: &Build<'_>) -> CheckRun {
    let s = b.summary;
    // An error is nobody's commit: GitHub shows "neutral", not a red cross on the author's work.
    let conclusion = match s.outcome {
        Outcome::Passed => "success",
        Outcome::Failed | Outcome::Broken => "failure",
        Outcome::Error => "neutral",
    };
    let title = match (s.outcome, &s.error) {
        (Outcome::Error | Outcome::Broken, Some(e)) => first_line(e).to_string(),
        _ => vocab::test_counts(&s.tests),
    };
    let mut md = String::new();
    md.push_str(&format!(
        "**{}** `{}` at `{}` in {:.1}s\n\n",
        vocab::outcome_word(s.outcome).to_uppercase(),
        b.branch,
        short(&s.commit),
        s.seconds
    ));
    md.push_str(&markdown::stage_table(s));
    if !s.caches.is_empty() {
        md.push_str(&markdown::cache_table(s));
        md.push_str(&format!(
            "Wheels: {}. ccache: {}.\n",
            vocab::wheel_counts(&s.wheels),
            vocab::ccache_counts(s)
        ));
    }
    if !s.tests.failures.is_empty() {
        md.push_str(&format!(
            "\n### {} failing test(s)\n\n",
            s.tests.failed.max(s.tests.failures.len() as u32)
        ));
        push_failure_list(&mut md, &s.tests.failures, 100);
    }
    push_culprit_and_flaky(&mut md, s, "###");
    if let Some(w) = &s.blame_withheld {
        md.push_str(&format!("\n{}\n", vocab::capitalized(w)));
    }
    if !b.commits.is_empty() && s.outcome != Outcome::Passed {
        md.push_str(&format!(
            "\n### Commits since the last green build{}\n\n",
            b.base
                .map(|g| format!(" (`{}`)", short(g)))
                .unwrap_or_default()
        ));
        for c in b.commits {
            md.push_str(&commit_line_md(c));
        }
    }
    CheckRun {
        name: "kiln".into(),
        head_sha: s.commit.clone(),
        conclusion: conclusion.into(),
        title,
        summary: md,
        details_url: b.run_url.map(str::to_string),
        annotations: annotations(s),
    }
}

fn commit_line_md(c: &Commit) -> String {
    let mut people = vec![who(&c.author)];
    people.extend(c.co_authors.iter().map(who));
    format!(
        "- `{}` {} — {}\n",
        short(&c.sha),
        md_cell(&c.subject),
        people.join(", ")
    )
}

fn headline(b: &Build<'_>) -> String {
    let sha = short(&b.summary.commit);
    match b.event {
        Event::Broken => format!("`{}` is broken at `{sha}`", b.branch),
        Event::StillFailing => format!("`{}` is still failing at `{sha}`", b.branch),
        Event::Fixed => format!("`{}` is fixed at `{sha}`", b.branch),
        Event::Passed => format!("`{}` passed at `{sha}`", b.branch),
        Event::Error => format!(
            "`{}` could not be built at `{sha}` (an error: nobody blamed)",
            b.branch
        ),
    }
}

/// The PR or commit comment: headline, @mentions of the recipients, failing tests, commits.
/// Starts with the hidden marker so the next build edits it instead of adding another.
pub fn comment(b: &Build<'_>) -> String {
    let s = b.summary;
    let icon = if s.outcome == Outcome::Passed {
        "✅"
    } else {
        "❌"
    };
    let mut md = format!("{MARKER}\n### {icon} kiln: {}\n\n", headline(b));
    let mentions: Vec<String> = b
        .recipients
        .iter()
        .map(|p| match &p.login {
            Some(l) => format!("@{l}"),
            None => p.name.clone(),
        })
        .collect();
    if !mentions.is_empty() {
        let ask = match b.event {
            Event::Broken | Event::StillFailing if s.culprit.is_some() => {
                "bisection found that your commit broke the build; please take a look."
            }
            Event::Broken | Event::StillFailing => {
                "your commits are in the range that broke the build; please take a look."
            }
            Event::Fixed => "the build is green again.",
            Event::Passed => "the build passed.",
            Event::Error => "nobody is blamed for an error.",
        };
        md.push_str(&format!("{}: {ask}\n\n", mentions.join(" ")));
    }
    md.push_str(&format!("{}.", vocab::test_counts(&s.tests)));
    if let Some(u) = b.run_url {
        md.push_str(&format!(" [Details]({u})"));
    }
    md.push('\n');
    if !s.tests.failures.is_empty() {
        md.push_str("\n**Failing tests**\n\n");
        push_failure_list(&mut md, &s.tests.failures, LIST_FAILURES);
    }
    push_culprit_and_flaky(&mut md, s, "**");
    if !b.commits.is_empty() && s.outcome != Outcome::Passed {
        md.push_str(&format!(
            "\n**Commits since the last green build{}**\n\n",
            b.base
                .map(|g| format!(" `{}`", short(g)))
                .unwrap_or_default()
        ));
        for c in b.commits {
            md.push_str(&commit_line_md(c));
        }
    }
    md
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An email body being written twice: plain text and HTML, with the same content.
#[derive(Default)]
struct Body {
    text: String,
    html: String,
}

impl Body {
    fn intro(b: &Build<'_>) -> Body {
        let s = b.summary;
        let counts = vocab::test_counts(&s.tests);
        let mut body = Body {
            text: format!(
                "The build of {} branch {} is {} at {}.\n{counts}.\n",
                b.repository,
                b.branch,
                b.event.word(),
                s.commit
            ),
            html: format!(
                "<p>The build of <b>{}</b> branch <b>{}</b> is <b>{}</b> at <code>{}</code>.<br>{counts}.</p>\n",
                html_escape(b.repository),
                html_escape(b.branch),
                b.event.word(),
                html_escape(&s.commit)
            ),
        };
        if let Some(e) = &s.error {
            body.text.push_str(&format!("Error: {e}\n"));
            body.html
                .push_str(&format!("<p>Error: {}</p>\n", html_escape(e)));
        }
        if let Some(c) = vocab::culprit_sentence(s) {
            let plain = c.replace('`', "");
            body.text.push_str(&format!("{plain}\n"));
            body.html
                .push_str(&format!("<p>{}</p>\n", html_escape(&plain)));
        }
        if let Some(u) = b.run_url {
            body.text.push_str(&format!("Details: {u}\n"));
            body.html
                .push_str(&format!("<p><a href=\"{0}\">{0}</a></p>\n", html_escape(u)));
        }
        body
    }

    fn failures(&mut self, failures: &[TestFailure]) {
        if failures.is_empty() {
            return;
        }
        self.text.push_str("\nFailing tests:\n");
        self.html.push_str("<h3>Failing tests</h3>\n<ul>\n");
        for f in failures.iter().take(LIST_FAILURES) {
            let loc = failure_location(f);
            let loc = if loc.is_empty() {
                String::new()
            } else {
                format!(" ({loc})")
            };
            let msg = first_line(&f.message);
            self.text.push_str(&format!("  {}{loc}: {msg}\n", f.name));
            self.html.push_str(&format!(
                "<li><code>{}</code>{}: {}</li>\n",
                html_escape(&f.name),
                html_escape(&loc),
                html_escape(msg)
            ));
        }
        if failures.len() > LIST_FAILURES {
            let more = failures.len() - LIST_FAILURES;
            self.text.push_str(&format!("  ... and {more} more\n"));
            self.html.push_str(&format!("<li>… and {more} more</li>\n"));
        }
        self.html.push_str("</ul>\n");
    }

    fn commits(&mut self, b: &Build<'_>) {
        let base = b
            .base
            .map(|g| format!(" ({})", short(g)))
            .unwrap_or_default();
        self.text
            .push_str(&format!("\nCommits since the last green build{base}:\n"));
        self.html.push_str(&format!(
            "<h3>Commits since the last green build{}</h3>\n<ul>\n",
            html_escape(&base)
        ));
        for c in b.commits {
            let mut people = vec![c.author.name.clone()];
            people.extend(c.co_authors.iter().map(|p| p.name.clone()));
            let people = people.join(", ");
            let sha = short(&c.sha);
            self.text
                .push_str(&format!("  {sha} {} ({people})\n", c.subject));
            self.html.push_str(&format!(
                "<li><code>{sha}</code> {} ({})</li>\n",
                html_escape(&c.subject),
                html_escape(&people)
            ));
        }
        self.html.push_str("</ul>\n");
    }

    fn log_tail(&mut self, tail: &str) {
        self.text
            .push_str(&format!("\nLast lines of the test output:\n{tail}\n"));
        self.html.push_str(&format!(
            "<h3>Last lines of the test output</h3>\n<pre>{}</pre>\n",
            html_escape(tail)
        ));
    }

    fn signature(&mut self) {
        const WHY: &str =
            "Sent by kiln because you are an author of a commit in this build's range.";
        self.text.push_str(&format!("\n-- \n{WHY}\n"));
        self.html
            .push_str(&format!("<p><small>{WHY}</small></p>\n"));
    }
}

/// The email: subject, plain text and HTML with the same content.
pub fn mail(b: &Build<'_>, to: Vec<String>) -> Mail {
    let s = b.summary;
    let subject = format!(
        "[kiln] {} {}: {} at {} ({})",
        b.repository,
        b.branch,
        b.event.word(),
        short(&s.commit),
        vocab::test_counts(&s.tests)
    );
    let failing = s.outcome != Outcome::Passed;
    let mut body = Body::intro(b);
    body.failures(&s.tests.failures);
    if !b.commits.is_empty() && failing {
        body.commits(b);
    }
    if !b.log_tail.trim().is_empty() && failing {
        body.log_tail(b.log_tail);
    }
    body.signature();
    Mail {
        to,
        subject,
        text: body.text,
        html: format!("<html><body>\n{}</body></html>\n", body.html),
    }
}

/// The culprit sentence and the flaky tests, under `heading` (`###` or `**`).
fn push_culprit_and_flaky(md: &mut String, s: &RunSummary, heading: &str) {
    if let Some(c) = vocab::culprit_sentence(s) {
        md.push_str(&format!("\n{c}\n"));
    }
    let flaky = vocab::flaky_items(s);
    if flaky.is_empty() {
        return;
    }
    let title = format!(
        "{} flaky test(s): failed, then passed when re-run",
        flaky.len()
    );
    match heading {
        "###" => md.push_str(&format!("\n### {title}\n\n")),
        h => md.push_str(&format!("\n{h}{title}{h}\n\n")),
    }
    for f in flaky {
        md.push_str(&format!("- {f}\n"));
    }
}

/// A Markdown bullet per failing test (name, file:line, first line of the message), at most
/// `limit`, then how many more there were.
fn push_failure_list(md: &mut String, failures: &[TestFailure], limit: usize) {
    for f in failures.iter().take(limit) {
        let loc = failure_location(f);
        md.push_str(&format!(
            "- `{}`{}: {}\n",
            f.name,
            if loc.is_empty() {
                String::new()
            } else {
                format!(" ({loc})")
            },
            md_cell(first_line(&f.message))
        ));
    }
    if failures.len() > limit {
        md.push_str(&format!("- … and {} more\n", failures.len() - limit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_summary(n: usize) -> RunSummary {
        let mut s = RunSummary {
            outcome: Outcome::Failed,
            commit: "c".repeat(40),
            ..Default::default()
        };
        s.tests.failed = n as u32;
        for i in 0..n {
            s.tests.failures.push(TestFailure {
                name: format!("tests/test_a.py::test_{i}"),
                file: (i % 2 == 0).then(|| "tests/test_a.py".to_string()),
                line: Some(i as u32 + 1),
                message: format!("assert {i} == 0\nmore"),
                ..Default::default()
            });
        }
        s
    }

    #[test]
    fn comment_mentions_logins_and_names_and_lists_commits() {
        let s = failed_summary(25);
        let bob = Person {
            name: "Bob".into(),
            email: None,
            login: Some("bob".into()),
        };
        let carol = Person::new("Carol", "carol@example.com");
        let commits = vec![Commit {
            sha: "b".repeat(40),
            author: bob.clone(),
            co_authors: vec![carol.clone()],
            subject: "Break | things".into(),
        }];
        let b = Build {
            summary: &s,
            event: Event::Broken,
            repository: "octo/app",
            branch: "main",
            base: Some("aaaaaaaaaaaa"),
            commits: &commits,
            recipients: &[bob, carol],
            log_tail: "E assert 0 == 1",
            run_url: None,
        };
        let c = comment(&b);
        assert!(c.starts_with(MARKER));
        assert!(c.contains("@bob Carol: your commits"), "{c}");
        assert!(c.contains("… and 5 more"), "{c}");
        assert!(c.contains("Break \\| things — Bob (@bob), Carol"), "{c}");
        let m = mail(&b, vec!["carol@example.com".into()]);
        assert!(
            m.subject.contains("octo/app main: broken at cccccccccc"),
            "{}",
            m.subject
        );
        assert!(m.text.contains("E assert 0 == 1"));
        assert!(m.html.contains("Break | things"));
        let run = check_run(&b);
        assert_eq!(run.conclusion, "failure");
        assert_eq!(run.annotations.len(), 13, "only failures with a file");
        assert_eq!(run.annotations[1].start_line, 3);
    }
}

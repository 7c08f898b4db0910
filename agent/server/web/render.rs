//! The HTML of the agent's pages: plain server-rendered markup with every value escaped, one
//! small stylesheet, and one short script (the live log's `EventSource`). No framework, no
//! build step.

use std::fmt::Write;

use chrono::{DateTime, Utc};

pub use crate::html::esc;
use crate::report::vocab;
use crate::server::queue::{Filter, Host, Job, JobOutcome, JobState};
use crate::summary::{RestoreHit, RunSummary};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1f2328}
header{background:#24292f;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:center}
header a{color:#fff;text-decoration:none}main{padding:1em 1.2em}
table{border-collapse:collapse;width:100%;margin:.5em 0 1.2em}th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #d0d7de}
th{background:#f6f8fa}.state{padding:.1em .5em;border-radius:1em;font-size:.9em;color:#fff;background:#6e7781}
.passed{background:#1a7f37}.failed,.error,.timed_out{background:#cf222e}.running{background:#bf8700}.queued{background:#0969da}
pre{background:#0d1117;color:#e6edf3;padding:1em;overflow:auto;max-height:36em;font-size:.85em}
form.inline{display:inline}button{padding:.3em .9em;margin-right:.5em}.muted{color:#656d76}
code{font-size:.9em}";

/// A whole page around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content='width=device-width,initial-scale=1'>\
         <title>{t} · kiln</title><style>{STYLE}</style></head><body>\
         <header><strong>kiln</strong><a href='/builds'>Builds</a><a href='/fleet'>Fleet</a></header>\
         <main>{body}</main></body></html>",
        t = esc(title)
    )
}

fn state_badge(job: &Job) -> String {
    let w = job.status_word();
    format!("<span class='state {w}' data-state='{w}'>{w}</span>")
}

pub fn duration(job: &Job) -> String {
    match job.duration() {
        Some(d) => humantime::format_duration(std::time::Duration::from_secs(
            d.num_seconds().max(0) as u64,
        ))
        .to_string(),
        None => "—".into(),
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Branch name, or `#12 (branch)` for a pull request.
pub fn target(job: &Job) -> String {
    match job.pr_number {
        Some(n) => format!("#{n} ({})", job.branch),
        None => job.branch.clone(),
    }
}

fn filter_form(f: &Filter) -> String {
    let v = |o: &Option<String>| esc(o.as_deref().unwrap_or(""));
    let mut options = String::from("<option value=''>any state</option>");
    let words = ["queued", "running"]
        .into_iter()
        .chain(JobOutcome::ALL.iter().map(|o| o.as_str()));
    for w in words {
        let sel = if f.status.as_deref() == Some(w) {
            " selected"
        } else {
            ""
        };
        let _ = write!(options, "<option{sel}>{w}</option>");
    }
    format!(
        "<form method=get action='/builds' id=filter>\
         <input name=repo placeholder='owner/repo' value='{}'> \
         <input name=branch placeholder='branch or #PR' value='{}'> \
         <select name=status>{options}</select> <button>Filter</button></form>",
        v(&f.repo),
        v(&f.branch)
    )
}

/// The build list, newest first.
pub fn list(jobs: &[Job], f: &Filter) -> String {
    let mut rows = String::new();
    for j in jobs {
        let _ = write!(
            rows,
            "<tr data-job='{id}'><td><a href='/builds/{id}'>#{id}</a></td><td>{repo}</td>\
             <td>{target}</td><td><code>{sha}</code></td><td>{author}</td><td>{state}</td>\
             <td>{dur}</td><td class=muted>{created}</td></tr>",
            id = j.id,
            repo = esc(&j.repo),
            target = esc(&target(j)),
            sha = esc(&j.sha[..j.sha.len().min(10)]),
            author = esc(j.author.as_deref().unwrap_or("—")),
            state = state_badge(j),
            dur = duration(j),
            created = when(j.created_at),
        );
    }
    if jobs.is_empty() {
        rows.push_str("<tr><td colspan=8 class=muted>No builds match.</td></tr>");
    }
    page(
        "Builds",
        &format!(
            "<h1>Builds</h1>{}<table id=builds><thead><tr><th>Build</th><th>Repository</th>\
             <th>Branch / PR</th><th>Commit</th><th>Author</th><th>State</th><th>Duration</th>\
             <th>Queued</th></tr></thead><tbody>{rows}</tbody></table>",
            filter_form(f)
        ),
    )
}

/// What the build page can do: the CSRF token for its buttons (None: read-only visitor).
pub struct Controls<'a> {
    pub csrf: Option<&'a str>,
    /// Where the log lives when another agent of the fleet ran the job.
    pub remote_log: Option<String>,
}

fn buttons(job: &Job, c: &Controls) -> String {
    let Some(csrf) = c.csrf else {
        return String::new();
    };
    let form = |action: &str, label: &str| {
        format!(
            "<form class=inline method=post action='/builds/{}/{action}'>\
             <input type=hidden name=csrf value='{}'><button id={action}>{label}</button></form>",
            job.id,
            esc(csrf)
        )
    };
    let mut out = form("retry", "Retry");
    if job.state != JobState::Done {
        out.push_str(&form("cancel", "Cancel"));
    }
    out
}

fn header(job: &Job) -> String {
    let pr = job
        .pr_number
        .map(|n| format!("pull request #{n}, "))
        .unwrap_or_default();
    format!(
        "<h1>Build #{id} {state}</h1><p><strong>{repo}</strong> · {pr}branch <code>{branch}</code> \
         · commit <code>{sha}</code> · by {author}</p>\
         <p class=muted>queued {created} · duration <span id=duration>{dur}</span> · attempt {att} \
         · host {host}{detail}</p>",
        id = job.id,
        state = state_badge(job),
        repo = esc(&job.repo),
        branch = esc(&job.branch),
        sha = esc(&job.sha),
        author = esc(job.author.as_deref().unwrap_or("unknown")),
        created = when(job.created_at),
        dur = duration(job),
        att = job.attempts,
        host = esc(job.host.as_deref().unwrap_or("—")),
        detail = job
            .detail
            .as_deref()
            .map(|d| format!(" · {}", esc(d)))
            .unwrap_or_default(),
    )
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn stages(s: &RunSummary) -> String {
    let mut rows = String::new();
    for st in &s.stages {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{:.1}s</td><td>{:?}</td><td>{}</td></tr>",
            esc(&st.name),
            st.seconds,
            st.outcome,
            esc(st.detail.as_deref().unwrap_or(""))
        );
    }
    format!("<h2>Stages</h2><table id=stages><tr><th>Stage</th><th>Time</th><th>Outcome</th><th>Detail</th></tr>{rows}</table>")
}

fn caches(s: &RunSummary) -> String {
    let mut rows = String::new();
    for c in &s.caches {
        let hit = match c.restore {
            RestoreHit::Exact => "hit",
            RestoreHit::Partial => "partial hit",
            RestoreHit::Miss => "miss",
        };
        let saved = if c.saved {
            bytes(c.bytes_saved)
        } else {
            "—".into()
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{hit}</td><td>{}</td><td>{saved}</td></tr>",
            esc(&c.name),
            bytes(c.bytes_restored)
        );
    }
    let cc = &s.ccache;
    let rate = match vocab::ccache_hit_rate(s) {
        Some(r) => format!("{r:.0}% ({} of {})", cc.hits, cc.hits + cc.misses),
        None => "no compilations".into(),
    };
    let names = esc(&s.wheels.built_names.join(", "));
    format!(
        "<h2>Caches</h2><table id=caches><tr><th>Cache</th><th>Restore</th><th>Restored</th>\
         <th>Saved</th></tr>{rows}</table><p id=wheels>Wheels built: <strong>{}</strong> \
         (reused {}) {names}</p><p id=ccache>ccache hit rate: <strong>{rate}</strong></p>",
        s.wheels.built, s.wheels.reused
    )
}

fn tests_and_people(s: &RunSummary) -> String {
    let t = &s.tests;
    let mut out = format!(
        "<h2>Tests</h2><p>{} passed, {} failed, {} skipped</p>",
        t.passed, t.failed, t.skipped
    );
    if !t.failures.is_empty() {
        out.push_str(
            "<table id=failures><tr><th>Failing test</th><th>Where</th><th>Message</th></tr>",
        );
        for f in &t.failures {
            let at = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{file}:{line}"),
                (Some(file), None) => file.clone(),
                _ => String::new(),
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&f.name),
                esc(&at),
                esc(&f.message.chars().take(300).collect::<String>())
            );
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Who was told</h2><ul id=notified>");
    for n in &s.notified {
        let _ = write!(out, "<li>{}: {}</li>", esc(&n.channel), esc(&n.to));
    }
    if s.notified.is_empty() {
        out.push_str("<li class=muted>nobody</li>");
    }
    out.push_str("</ul>");
    out
}

const LIVE_LOG: &str = "<script>(function(){var pre=document.getElementById('log');\
var es=new EventSource(pre.dataset.stream);es.onmessage=function(e){\
pre.textContent+=e.data+'\\n';pre.scrollTop=pre.scrollHeight;};\
es.addEventListener('end',function(){es.close();pre.dataset.done='1';});})();</script>";

/// The build page: header, buttons, stages, caches, tests, people, and the (live) log.
pub fn build(job: &Job, summary: Option<&RunSummary>, c: &Controls) -> String {
    let mut body = header(job);
    body.push_str(&buttons(job, c));
    if let Some(s) = summary {
        body.push_str(&stages(s));
        body.push_str(&caches(s));
        body.push_str(&tests_and_people(s));
    }
    body.push_str("<h2>Log</h2>");
    match &c.remote_log {
        Some(url) => {
            let _ = write!(
                body,
                "<p>This build ran on another agent of the fleet: <a href='{u}'>{u}</a></p>",
                u = esc(url)
            );
        }
        None => {
            let _ = write!(
                body,
                "<pre id=log data-stream='/builds/{}/log/stream'></pre>{LIVE_LOG}",
                job.id
            );
        }
    }
    page(&format!("Build #{}", job.id), &body)
}

/// The fleet: every agent on the queue, with its workers.
pub fn fleet(backend: &str, hosts: &[Host], now: DateTime<Utc>) -> String {
    let mut rows = String::new();
    for h in hosts {
        let alive = (now - h.seen_at).num_seconds() < 60;
        let _ = write!(
            rows,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{} of {} busy</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(&h.name),
            esc(&h.id),
            esc(h.url.as_deref().unwrap_or("—")),
            h.busy,
            h.workers,
            esc(&h.version),
            when(h.seen_at),
            if alive { "up" } else { "not seen for a minute" }
        );
    }
    page(
        "Fleet",
        &format!(
            "<h1>Fleet</h1><p>Queue: <strong>{}</strong></p><table id=hosts><tr><th>Host</th>\
             <th>Agent</th><th>URL</th><th>Workers</th><th>Version</th><th>Last seen</th>\
             <th>Status</th></tr>{rows}</table>",
            esc(backend)
        ),
    )
}

/// The login form (`error`: why the last try failed).
pub fn login(error: Option<&str>, next: &str) -> String {
    let err = error
        .map(|e| format!("<p style='color:#cf222e'>{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        "Log in",
        &format!(
            "<h1>Log in</h1>{err}<form method=post action='/login'>\
             <input type=hidden name=next value='{}'>\
             <input type=password name=token placeholder='access token' autofocus> \
             <button id=login>Log in</button></form>",
            esc(next)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}

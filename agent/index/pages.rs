//! The index pages: PEP 503 HTML and PEP 691 JSON, and which one a client asked for.
//!
//! File links are relative (`../../files/…`) so the index works unchanged behind a reverse proxy
//! that mounts it under a path prefix. Each link carries `#sha256=` (PEP 503) and the JSON carries
//! `hashes`, which is what makes `pip install --require-hashes` work against this index.

use serde_json::json;

use super::layout::Sidecar;
use crate::html::esc;
use crate::wheels::names::Version;

pub const JSON_V1: &str = "application/vnd.pypi.simple.v1+json";
pub const HTML_V1: &str = "application/vnd.pypi.simple.v1+html";
pub const TEXT_HTML: &str = "text/html";

/// A representation of an index page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    HtmlV1,
    /// Legacy PEP 503 `text/html`: the default for clients that say nothing.
    Html,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => JSON_V1,
            Format::HtmlV1 => HTML_V1,
            Format::Html => "text/html; charset=utf-8",
        }
    }

    fn matches(self, media: &str) -> bool {
        let media = media.to_ascii_lowercase();
        match self {
            Format::Json => media == JSON_V1 || media == "application/vnd.pypi.simple.latest+json",
            Format::HtmlV1 => {
                media == HTML_V1 || media == "application/vnd.pypi.simple.latest+html"
            }
            Format::Html => media == TEXT_HTML || media == "text/*",
        }
    }
}

/// Pick a format from an `Accept` header (PEP 691 content negotiation). `None` means nothing the
/// client accepts is available: answer 406.
///
/// The client's quality values decide; a specific media type beats a wildcard; on a tie the
/// server prefers legacy `text/html`, then the v1 HTML, then JSON (`*/*` gets what old pips get).
pub fn negotiate(accept: Option<&str>) -> Option<Format> {
    let accept = match accept.map(str::trim) {
        None | Some("") => return Some(Format::Html),
        Some(a) => a,
    };
    let order = [Format::Html, Format::HtmlV1, Format::Json];
    let mut best: Option<(f32, Format)> = None;
    for f in order {
        let mut specific: Option<f32> = None;
        let mut wildcard: Option<f32> = None;
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                .filter_map(|v| v.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            if f.matches(media) {
                specific = Some(specific.map_or(q, |s: f32| s.max(q)));
            } else if media == "*/*" || (media == "application/*" && f != Format::Html) {
                wildcard = Some(wildcard.map_or(q, |w: f32| w.max(q)));
            }
        }
        let q = specific.or(wildcard).unwrap_or(0.0);
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, f));
        }
    }
    best.map(|(_, f)| f)
}

/// `/simple/`: every project.
pub fn project_list(projects: &[String], format: Format) -> String {
    match format {
        Format::Json => json!({
            "meta": {"api-version": "1.1"},
            "projects": projects.iter().map(|p| json!({"name": p})).collect::<Vec<_>>(),
        })
        .to_string(),
        Format::Html | Format::HtmlV1 => {
            let mut s = String::from(
                "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.1\">\n    <title>Simple index</title>\n  </head>\n  <body>\n",
            );
            for p in projects {
                let p = esc(p);
                s.push_str(&format!("    <a href=\"{p}/\">{p}</a><br/>\n"));
            }
            s.push_str("  </body>\n</html>\n");
            s
        }
    }
}

/// The relative URL of a file from `/simple/<project>/`.
pub fn file_href(s: &Sidecar) -> String {
    format!("../../files/{}/{}/{}", s.project, s.sha256, s.filename)
}

/// Sort files newest version first (then by file name, for a stable page).
pub fn sort_newest_first(files: &mut [Sidecar]) {
    files.sort_by(|a, b| {
        Version::parse(&b.version)
            .cmp(&Version::parse(&a.version))
            .then_with(|| a.filename.cmp(&b.filename))
    });
}

/// `/simple/<project>/`: the project's files, already sorted.
pub fn project_page(project: &str, files: &[Sidecar], format: Format) -> String {
    match format {
        Format::Json => {
            let mut versions: Vec<&str> = Vec::new();
            for f in files {
                if !versions.contains(&f.version.as_str()) {
                    versions.push(&f.version);
                }
            }
            json!({
                "meta": {"api-version": "1.1"},
                "name": project,
                "versions": versions,
                "files": files.iter().map(|f| json!({
                    "filename": f.filename,
                    "url": file_href(f),
                    "hashes": {"sha256": f.sha256},
                    "size": f.size,
                    "upload-time": f.uploaded.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    "requires-python": f.requires_python,
                    "core-metadata": f.metadata_sha256.as_ref().map_or(json!(false), |h| json!({"sha256": h})),
                    "dist-info-metadata": f.metadata_sha256.as_ref().map_or(json!(false), |h| json!({"sha256": h})),
                })).collect::<Vec<_>>(),
            })
            .to_string()
        }
        Format::Html | Format::HtmlV1 => {
            let name = esc(project);
            let mut s = format!(
                "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.1\">\n    <title>Links for {name}</title>\n  </head>\n  <body>\n    <h1>Links for {name}</h1>\n"
            );
            for f in files {
                let mut attrs = String::new();
                if let Some(rp) = &f.requires_python {
                    attrs.push_str(&format!(" data-requires-python=\"{}\"", esc(rp)));
                }
                if let Some(m) = &f.metadata_sha256 {
                    attrs.push_str(&format!(
                        " data-dist-info-metadata=\"sha256={m}\" data-core-metadata=\"sha256={m}\""
                    ));
                }
                s.push_str(&format!(
                    "    <a href=\"{}#sha256={}\"{attrs}>{}</a><br/>\n",
                    esc(&file_href(f)),
                    f.sha256,
                    esc(&f.filename)
                ));
            }
            s.push_str("  </body>\n</html>\n");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_pep691() {
        assert_eq!(negotiate(None), Some(Format::Html));
        assert_eq!(negotiate(Some("*/*")), Some(Format::Html));
        assert_eq!(negotiate(Some("text/html")), Some(Format::Html));
        // What pip sends.
        assert_eq!(
            negotiate(Some(
                "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
            )),
            Some(Format::Json)
        );
        assert_eq!(
            negotiate(Some("application/vnd.pypi.simple.v1+html")),
            Some(Format::HtmlV1)
        );
        assert_eq!(
            negotiate(Some("application/vnd.pypi.simple.latest+json")),
            Some(Format::Json)
        );
        assert_eq!(
            negotiate(Some(
                "text/html;q=0.2, application/vnd.pypi.simple.v1+json;q=0.5"
            )),
            Some(Format::Json)
        );
        assert_eq!(negotiate(Some("application/vnd.pypi.simple.v2+json")), None);
        assert_eq!(negotiate(Some("image/png")), None);
        assert_eq!(negotiate(Some("text/html;q=0")), None);
    }

    fn car(file: &str, version: &str) -> Sidecar {
        Sidecar {
            filename: file.into(),
            project: "demo".into(),
            version: version.into(),
            sha256: "ab".repeat(32),
            size: 3,
            blob: String::new(),
            uploaded: chrono::Utc::now(),
            kiln_version: String::new(),
            requires_python: Some(">=3.8".into()),
            metadata_sha256: None,
        }
    }

    #[test]
    fn pages_list_newest_first_with_hashes() {
        let mut files = vec![
            car("demo-1.9-py3-none-any.whl", "1.9"),
            car("demo-1.10-py3-none-any.whl", "1.10"),
            car("demo-1.10rc1-py3-none-any.whl", "1.10rc1"),
        ];
        sort_newest_first(&mut files);
        let html = project_page("demo", &files, Format::Html);
        let i10 = html.find("demo-1.10-py3").unwrap();
        let irc = html.find("demo-1.10rc1-py3").unwrap();
        let i9 = html.find("demo-1.9-py3").unwrap();
        assert!(i10 < irc && irc < i9, "{html}");
        assert!(html.contains(&format!(
            "href=\"../../files/demo/{}/demo-1.10-py3-none-any.whl#sha256={}\"",
            "ab".repeat(32),
            "ab".repeat(32)
        )));
        let j: serde_json::Value =
            serde_json::from_str(&project_page("demo", &files, Format::Json)).unwrap();
        assert_eq!(j["name"], "demo");
        assert_eq!(j["versions"][0], "1.10");
        assert_eq!(j["files"][0]["hashes"]["sha256"], "ab".repeat(32));
        assert_eq!(j["files"][2]["filename"], "demo-1.9-py3-none-any.whl");
    }

    #[test]
    fn html_is_escaped() {
        let page = project_list(&["a<b".into()], Format::Html);
        assert!(page.contains("a&lt;b"));
    }
}

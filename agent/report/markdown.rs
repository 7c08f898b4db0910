//! The Markdown tables of a run, shared by the Actions job summary and the check run so the two
//! pages show the same stages and caches in the same words.

use crate::summary::RunSummary;

use super::vocab::{self, human_bytes, md_cell as cell};

/// Inline code that survives backticks in the text.
pub fn code(s: &str) -> String {
    if s.contains('`') {
        format!("`` {} ``", s.replace('|', "\\|"))
    } else {
        format!("`{}`", s.replace('|', "\\|"))
    }
}

/// The stage table: time, result and detail of each stage, and the total.
pub fn stage_table(s: &RunSummary) -> String {
    let mut md = String::new();
    md.push_str("| Stage | Time | Result | Detail |\n|---|---:|---|---|\n");
    let mut total = 0.0;
    for r in vocab::stage_rows(s) {
        total += r.seconds;
        let result = if r.failed {
            format!("**{}**", r.result)
        } else {
            r.result.to_string()
        };
        md.push_str(&format!(
            "| {} | {:.2} s | {} | {} |\n",
            r.name,
            r.seconds,
            result,
            cell(r.detail)
        ));
    }
    let total = if s.seconds > 0.0 { s.seconds } else { total };
    md.push_str(&format!("| **total** | {total:.2} s | | |\n\n"));
    md
}

/// The cache table: how each cache restored, what was saved, its key (empty without caches).
pub fn cache_table(s: &RunSummary) -> String {
    let mut md = String::new();
    if s.caches.is_empty() {
        return md;
    }
    md.push_str("### Caches\n\n| Cache | Restore | Restored | Saved | Key |\n");
    md.push_str("|---|---|---:|---:|---|\n");
    for c in vocab::cache_rows(s) {
        let restore = match c.partial_from {
            Some(k) => format!("{} ({})", c.restore, code(k)),
            None => c.restore.to_string(),
        };
        let saved = if c.saved {
            human_bytes(c.bytes_saved)
        } else {
            "not saved".to_string()
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            c.name,
            restore,
            human_bytes(c.bytes_restored),
            saved,
            code(c.key)
        ));
    }
    md.push('\n');
    md
}

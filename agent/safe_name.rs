//! Names made safe to use as one path component or cache key part.

/// Lowercase, with anything outside `[a-z0-9._]` turned into `_` so keys are safe object names.
pub fn sanitize(part: &str) -> String {
    let s: String = part
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "none".into()
    } else {
        s
    }
}

//! A syntax error in a file Kiln reads (kiln.yml, agent.yml, pyproject.toml, pylock.toml): the
//! file, the 1-based line and column, and what is wrong. One type, shown `file:line:col: …`, for
//! the config errors ([`crate::settings::ConfigError`]) and the project's
//! ([`crate::project::ProjectError`]).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}:{column}: {message}")]
pub struct FileSyntax {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl FileSyntax {
    pub fn new(path: &Path, line: usize, column: usize, message: String) -> FileSyntax {
        FileSyntax {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    }

    /// `e`, from parsing `text` (the contents of `path`), at the start of its span (1:1 when it
    /// has none).
    pub fn toml(path: &Path, text: &str, e: &toml::de::Error) -> FileSyntax {
        let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
        FileSyntax::new(path, line, column, e.message().trim().to_string())
    }
}

/// 1-based (line, column) of a byte offset in `text` (inside a character: that character's).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_error_names_the_line_and_column_where_it_starts() {
        let text = "[project]\nname = \"x\"\nversion = = 1\n";
        let e = toml::from_str::<toml::Table>(text).unwrap_err();
        let s = FileSyntax::toml(Path::new("pyproject.toml"), text, &e);
        assert_eq!((s.line, s.column), (3, 11), "{s}");
        assert!(s.to_string().starts_with("pyproject.toml:3:11: "), "{s}");
        assert_eq!(line_col("ab\ncé!\n", 6), (2, 3), "columns count characters");
        assert_eq!(
            line_col("ab\ncé!\n", 5),
            (2, 2),
            "an offset inside `é` is at `é`"
        );
    }
}

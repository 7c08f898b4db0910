//! Reading the YAML files Kiln is configured by (kiln.yml, agent.yml), within bounds.
//!
//! Why bounds: a kiln.yml comes with the commit under test, so anyone who can open a pull request
//! writes one. The YAML parser's time grows with the square of the nesting depth (100,000 nested
//! brackets took 40 s) and its memory with the file, and serde's messages echo whole values. So
//! before parsing: at most [`MAX_FILE_BYTES`], at most [`MAX_LINE_BYTES`] per line, at most
//! [`MAX_DEPTH`] levels of nesting (a linear pre-scan that fails at the first line:col too deep);
//! after: error messages quote at most a short prefix of any value.

use std::io::Read;
use std::path::Path;

use crate::file_syntax::FileSyntax;
use crate::settings::error::ConfigError;

/// The largest configuration file Kiln reads (1 MiB: a real one is a few KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The longest line (64 KiB).
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// The deepest nesting of mappings, sequences and flow collections (a real file uses 5).
pub const MAX_DEPTH: usize = 64;

/// Values quoted in error messages are cut to this many characters.
const QUOTE_CHARS: usize = 40;

fn syntax(path: &Path, line: usize, column: usize, message: String) -> ConfigError {
    FileSyntax::new(path, line, column, message).into()
}

/// Read `path`, refusing a file above [`MAX_FILE_BYTES`] without reading more than that.
/// `Ok(None)` when the file does not exist.
pub fn read(path: &Path) -> Result<Option<String>, ConfigError> {
    let read_err = |source: std::io::Error| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(path));
    }
    String::from_utf8(bytes).map(Some).map_err(|e| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        ))
    })
}

fn too_big(path: &Path) -> ConfigError {
    syntax(
        path,
        1,
        1,
        format!(
            "the file is larger than {} KiB, the most a configuration file may be",
            MAX_FILE_BYTES >> 10
        ),
    )
}

/// Deserialize YAML strictly, within the bounds above, turning the parser's error into
/// `file:line:col: message`. Shared by every YAML file Kiln reads (kiln.yml, agent.yml).
pub fn parse<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(path));
    }
    check_shape(text).map_err(|(line, column, message)| syntax(path, line, column, message))?;
    serde_yaml::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        // serde_yaml appends " at line X column Y" to some messages; the prefix already says it.
        let message = e.to_string();
        let message = match message.find(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        syntax(path, line, column, shorten_quoted(&message))
    })
}

/// Cut every quoted or backticked value in `message` to [`QUOTE_CHARS`] characters, so a
/// message never echoes a huge (or secret-bearing) value whole.
pub fn shorten_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(1024));
    let mut rest = message;
    while let Some(start) = rest.find(['`', '"']) {
        let delim = rest[start..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=start]);
        let after = &rest[start + 1..];
        let end = after.find(delim).unwrap_or(after.len());
        out.push_str(&short(&after[..end]));
        rest = &after[end..];
        if let Some(stripped) = rest.strip_prefix(delim) {
            out.push(delim);
            rest = stripped;
        }
    }
    out.push_str(rest);
    out
}

/// `value` if short, else its first [`QUOTE_CHARS`] characters and `…`.
pub fn short(value: &str) -> String {
    if value.chars().count() <= QUOTE_CHARS {
        return value.to_string();
    }
    let mut s: String = value.chars().take(QUOTE_CHARS).collect();
    s.push('…');
    s
}

/// Where a scan stands between lines.
#[derive(Default)]
struct Scan {
    /// Open flow collections (`[`, `{`).
    flow: usize,
    /// Inside a quoted scalar: its quote character.
    quote: Option<u8>,
    /// Indentation of the block collections open at the current line.
    indents: Vec<usize>,
    /// Inside a block scalar (`|`, `>`) whose header line had this indentation.
    block_scalar: Option<usize>,
}

type ShapeError = (usize, usize, String);

/// A linear pre-scan: line lengths and nesting depth, without building anything. It errs on the
/// side of counting (a bracket inside an odd plain scalar counts), which only matters for files
/// nested near [`MAX_DEPTH`], which no real configuration is.
fn check_shape(text: &str) -> Result<(), ShapeError> {
    let mut scan = Scan::default();
    for (i, line) in text.lines().enumerate() {
        if line.len() > MAX_LINE_BYTES {
            return Err((
                i + 1,
                MAX_LINE_BYTES + 1,
                format!("line longer than {} KiB", MAX_LINE_BYTES >> 10),
            ));
        }
        scan.line(line.as_bytes())
            .map_err(|(col, msg)| (i + 1, col + 1, msg))?;
    }
    Ok(())
}

fn too_deep() -> String {
    format!("nesting deeper than {MAX_DEPTH} levels")
}

impl Scan {
    fn line(&mut self, b: &[u8]) -> Result<(), (usize, String)> {
        let indent = b.iter().take_while(|&&c| c == b' ').count();
        let blank = b[indent..].iter().all(|c| c.is_ascii_whitespace());
        if let Some(parent) = self.block_scalar {
            if blank || indent > parent {
                return Ok(());
            }
            self.block_scalar = None;
        }
        let mut start = 0;
        if self.quote.is_none() && self.flow == 0 && !blank && b[indent] != b'#' {
            while self.indents.last().is_some_and(|&t| t >= indent) {
                self.indents.pop();
            }
            self.indents.push(indent);
            // Compact nesting on one line: `- - - x`, `- key: v`, `? x`.
            let mut j = indent;
            while j < b.len()
                && matches!(b[j], b'-' | b'?')
                && b.get(j + 1).is_none_or(|&c| c == b' ')
            {
                self.indents.push(j + 2);
                j += 2;
                while j < b.len() && b[j] == b' ' {
                    j += 1;
                }
            }
            if self.indents.len() > MAX_DEPTH {
                return Err((indent, too_deep()));
            }
            start = indent;
        }
        let end = self.chars(b, start)?;
        if self.quote.is_none() && self.flow == 0 && block_scalar_header(&b[start..end]) {
            self.block_scalar = Some(indent);
        }
        Ok(())
    }

    /// Scan the characters of one line from `start`: quotes, comments and flow brackets.
    /// Returns where the content ends (a comment starts).
    fn chars(&mut self, b: &[u8], start: usize) -> Result<usize, (usize, String)> {
        let mut prev = b' ';
        let mut j = start;
        while j < b.len() {
            let c = b[j];
            match self.quote {
                Some(b'"') if c == b'\\' => j += 1,
                Some(q) if c == q => self.quote = None,
                Some(_) => {}
                None => match c {
                    b'#' if prev == b' ' || prev == b'\t' => return Ok(j),
                    b'"' | b'\'' if matches!(prev, b' ' | b'\t' | b'[' | b'{' | b',' | b':') => {
                        self.quote = Some(c)
                    }
                    b'[' | b'{' => {
                        self.flow += 1;
                        if self.indents.len() + self.flow > MAX_DEPTH {
                            return Err((j, too_deep()));
                        }
                    }
                    b']' | b'}' => self.flow = self.flow.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
            j += 1;
        }
        Ok(b.len())
    }
}

/// The line (comment removed) ends with a block scalar header: `key: |`, `- >-`, `|2`.
fn block_scalar_header(content: &[u8]) -> bool {
    let t = content.trim_ascii_end();
    let head_len = t
        .iter()
        .rev()
        .take_while(|c| matches!(c, b'-' | b'+' | b'1'..=b'9'))
        .count();
    let t = &t[..t.len() - head_len];
    match t.split_last() {
        Some((b'|' | b'>', before)) => before.is_empty() || before.ends_with(b" "),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(text: &str) -> Result<(), ShapeError> {
        check_shape(text)
    }

    #[test]
    fn real_files_pass_the_shape_check() {
        let text = "python: python3\nrequirements: [req/a.txt, \"b[x].txt\"]\ntest:\n  command: |\n    if [ -f x ]; then\n      echo '[[[[[[['\n    fi\n  timeout: 90s # [ not a bracket\ncache:\n  ccache:\n    max_size: 1G\nrepositories:\n  - name: octo/a\n    branches: ['release/*', \"it's\"]\n";
        assert_eq!(shape(text), Ok(()));
    }

    #[test]
    fn deep_nesting_fails_at_its_line_and_column() {
        let deep = format!("a: {}{}\n", "[".repeat(30_000), "]".repeat(30_000));
        let (line, col, msg) = shape(&deep).unwrap_err();
        assert_eq!((line, col), (1, 4 + MAX_DEPTH - 1));
        assert!(msg.contains("deeper than 64"), "{msg}");
        let one_per_line = format!("a:\n{}", "  [\n".repeat(100_000));
        assert_eq!(shape(&one_per_line).unwrap_err().0, MAX_DEPTH);
        let one_line = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let (line, col, msg) = shape(&one_line).unwrap_err();
        assert_eq!((line, col), (1, MAX_LINE_BYTES + 1));
        assert!(msg.contains("line longer than 64 KiB"), "{msg}");
        let dashes = format!("x:\n{}y\n", "- ".repeat(200));
        assert_eq!(shape(&dashes).unwrap_err().0, 2);
        let mut indented = String::new();
        for i in 0..100 {
            indented.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert_eq!(shape(&indented).unwrap_err().0, 65);
    }

    #[test]
    fn quoted_values_are_cut() {
        let long = "x".repeat(5000);
        let m = shorten_quoted(&format!(
            "unknown field `{long}`, expected `python` or \"{long}\""
        ));
        assert!(m.len() < 200, "{m}");
        assert!(m.contains("`python`"), "{m}");
        assert!(m.contains(&format!("`{}…`", "x".repeat(40))), "{m}");
    }
}

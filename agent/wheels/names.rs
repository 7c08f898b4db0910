//! Project names, wheel file names and versions, as the Python packaging specs define them.
//!
//! The wheelhouse and the index have to agree with pip and uv on three things: which project a wheel belongs to
//! (PEP 503 name normalization), what a wheel's file name says (the wheel spec's
//! `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`), and which version is newest
//! (PEP 440 ordering, so "newest first" lists `1.10` above `1.9` and `2.0rc1` below `2.0`).

use std::cmp::Ordering;

/// PEP 503 normalization: runs of `-`, `_` and `.` become one `-`, lowercased.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.extend(c.to_lowercase());
            in_sep = false;
        }
    }
    out
}

/// `zope_interface-6.0-cp311-….whl` → `zope_interface`.
pub fn dist_name(wheel: &str) -> String {
    wheel.split('-').next().unwrap_or(wheel).to_string()
}

/// Whether `name` is a valid project name (PEP 508): ASCII letters, digits, `-_.`, starting and
/// ending with a letter or digit. Checked before a name becomes part of a store path.
pub fn is_valid_project_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 200
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The parts of a wheel file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    pub filename: String,
    /// Distribution name as written in the file name (underscores for dashes).
    pub distribution: String,
    /// PEP 503 normalized project name.
    pub project: String,
    pub version: String,
    pub build: Option<String>,
    /// Compressed tag sets, e.g. `py2.py3`, `none`, `manylinux_2_17_x86_64.manylinux2014_x86_64`.
    pub python_tag: String,
    pub abi_tag: String,
    pub platform_tag: String,
}

impl WheelName {
    /// Parse a wheel file name; `None` when it is not one (or could escape a store path).
    pub fn parse(filename: &str) -> Option<WheelName> {
        if filename.contains(['/', '\\']) || filename.starts_with('.') {
            return None;
        }
        let stem = filename.strip_suffix(".whl")?;
        let parts: Vec<&str> = stem.split('-').collect();
        let (dist, version, build, py, abi, plat) = match parts.as_slice() {
            [d, v, p, a, pl] => (*d, *v, None, *p, *a, *pl),
            [d, v, b, p, a, pl] => (*d, *v, Some(*b), *p, *a, *pl),
            _ => return None,
        };
        if !is_valid_project_name(dist)
            || version.is_empty()
            || [py, abi, plat].iter().any(|t| t.is_empty())
            || build.is_some_and(|b| !b.starts_with(|c: char| c.is_ascii_digit()))
        {
            return None;
        }
        let allowed = |t: &str| {
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '!'))
        };
        if ![version, py, abi, plat].iter().all(|t| allowed(t)) {
            return None;
        }
        Some(WheelName {
            filename: filename.to_string(),
            distribution: dist.to_string(),
            project: normalize(dist),
            version: version.to_string(),
            build: build.map(str::to_string),
            python_tag: py.to_string(),
            abi_tag: abi.to_string(),
            platform_tag: plat.to_string(),
        })
    }

    /// Platform tags of the compressed set (`a.b` → `[a, b]`).
    pub fn platforms(&self) -> impl Iterator<Item = &str> {
        self.platform_tag.split('.')
    }

    /// True for `…-any.whl` (pure Python: fits every platform).
    pub fn is_any_platform(&self) -> bool {
        self.platforms().any(|p| p == "any")
    }
}

/// A PEP 440 version, parsed enough to sort. Versions that do not parse sort below all that do
/// (and among themselves by text), so a strange file never hides a well-formed newer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    text: String,
    key: Option<VersionKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct VersionKey {
    epoch: u64,
    release: Vec<u64>,
    pre: Phase,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<LocalPart>,
}

/// The pre-release slot: a dev release without pre/post sorts before every pre-release.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    DevOnly,
    Pre(u8, u64),
    Final,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LocalPart {
    // Strings sort before numbers (PEP 440), hence the variant order.
    Str(String),
    Num(u64),
}

impl Version {
    pub fn parse(text: &str) -> Version {
        Version {
            text: text.to_string(),
            key: parse_key(text),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.key, &other.key) {
            (Some(a), Some(b)) => a.cmp(b).then_with(|| self.text.cmp(&other.text)),
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => self.text.cmp(&other.text),
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A tiny cursor over the lowercased version text.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn sep(&mut self) -> bool {
        if self.i < self.s.len() && matches!(self.s[self.i], b'.' | b'-' | b'_') {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Try `[sep]word[sep]N?` for each word; restores the position when none matches.
    fn labelled(&mut self, words: &[&str]) -> Option<(usize, u64)> {
        let save = self.i;
        self.sep();
        for (n, w) in words.iter().enumerate() {
            if self.eat(w) {
                let after_word = self.i;
                self.sep();
                return match self.number() {
                    Some(v) => Some((n, v)),
                    None => {
                        self.i = after_word;
                        Some((n, 0))
                    }
                };
            }
        }
        self.i = save;
        None
    }
}

fn parse_key(text: &str) -> Option<VersionKey> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_prefix('v').unwrap_or(&lower);
    let (public, local) = match lower.split_once('+') {
        Some((p, l)) => (p, Some(l)),
        None => (lower, None),
    };
    let mut c = Cursor {
        s: public.as_bytes(),
        i: 0,
    };
    let first = c.number()?;
    let (epoch, mut release) = if c.eat("!") {
        (first, vec![c.number()?])
    } else {
        (0, vec![first])
    };
    while c.i < c.s.len() && c.s[c.i] == b'.' {
        let save = c.i;
        c.i += 1;
        match c.number() {
            Some(n) => release.push(n),
            None => {
                c.i = save;
                break;
            }
        }
    }
    while release.len() > 1 && release.last() == Some(&0) {
        release.pop();
    }
    const PRE: [&str; 7] = ["alpha", "beta", "preview", "pre", "rc", "a", "b"];
    let pre = c.labelled(&PRE).map(|(n, v)| {
        let phase = match PRE[n] {
            "alpha" | "a" => 0,
            "beta" | "b" => 1,
            _ => 2,
        };
        (phase, v)
    });
    let mut post = c.labelled(&["post", "rev", "r"]).map(|(_, v)| v);
    if post.is_none() && c.i < c.s.len() && c.s[c.i] == b'-' {
        let save = c.i;
        c.i += 1;
        post = c.number();
        if post.is_none() {
            c.i = save;
        }
    }
    let dev = c.labelled(&["dev"]).map(|(_, v)| v);
    if c.i != c.s.len() {
        return None;
    }
    let phase = match (pre, post, dev) {
        (Some((p, n)), _, _) => Phase::Pre(p, n),
        (None, None, Some(_)) => Phase::DevOnly,
        _ => Phase::Final,
    };
    let local = local
        .map(|l| {
            l.split(['.', '-', '_'])
                .map(|part| match part.parse() {
                    Ok(n) => LocalPart::Num(n),
                    Err(_) => LocalPart::Str(part.to_string()),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(VersionKey {
        epoch,
        release,
        pre: phase,
        post,
        // No dev segment sorts after any dev segment: map None to MAX.
        dev: Some(dev.unwrap_or(u64::MAX)),
        local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503_normalization() {
        assert_eq!(normalize("Friendly-Bard"), "friendly-bard");
        assert_eq!(normalize("FRIENDLY-BARD"), "friendly-bard");
        assert_eq!(normalize("friendly.bard"), "friendly-bard");
        assert_eq!(normalize("friendly_bard"), "friendly-bard");
        assert_eq!(normalize("friendly--bard"), "friendly-bard");
        assert_eq!(normalize("FrIeNdLy-._.-bArD"), "friendly-bard");
    }

    #[test]
    fn wheel_names() {
        let w = WheelName::parse(
            "Kiln_Demo-1.2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        )
        .unwrap();
        assert_eq!(w.project, "kiln-demo");
        assert_eq!(w.version, "1.2.0");
        assert_eq!(w.build, None);
        assert_eq!(
            w.platforms().collect::<Vec<_>>(),
            ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
        );
        let w = WheelName::parse("pkg-1.0-1-py3-none-any.whl").unwrap();
        assert_eq!(w.build.as_deref(), Some("1"));
        assert!(w.is_any_platform());
        for bad in [
            "pkg-1.0.tar.gz",
            "pkg-py3-none-any.whl",
            "../x-1.0-py3-none-any.whl",
            "a/b-1.0-py3-none-any.whl",
            "-1.0-py3-none-any.whl",
            "pkg-1.0-x-py3-none-any.whl",
            "pkg-1.0-py3-none-an y.whl",
        ] {
            assert_eq!(WheelName::parse(bad), None, "{bad}");
        }
    }

    fn sorted(vs: &[&str]) -> Vec<String> {
        let mut v: Vec<Version> = vs.iter().map(|s| Version::parse(s)).collect();
        v.sort();
        v.iter().map(|v| v.as_str().to_string()).collect()
    }

    #[test]
    fn pep440_ordering() {
        let expected = [
            "1.0.dev0",
            "1.0a1",
            "1.0a2.dev1",
            "1.0a2",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0.post1",
            "1.0.post2.dev3",
            "1.0.post2",
            "1.0.1",
            "1.9",
            "1.10",
            "1!0.1",
        ];
        let mut shuffled = expected.to_vec();
        shuffled.reverse();
        shuffled.swap(2, 9);
        assert_eq!(sorted(&shuffled), expected);
        assert_eq!(
            Version::parse("1.0").cmp(&Version::parse("1.0.0")),
            Ordering::Less
        );
        assert!(Version::parse("1.0+local.2") > Version::parse("1.0"));
        assert!(Version::parse("1.0+2") > Version::parse("1.0+abc"));
        assert!(Version::parse("0.1") > Version::parse("not-a-version"));
        assert!(Version::parse("1.0-1") > Version::parse("1.0"));
    }
}

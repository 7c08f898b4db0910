//! `cache.save_on`: the branches whose builds write the shared cache.
//!
//! GitHub's cache holds 10 GB per repository and evicts the least recently used entries: caches
//! saved by every pull request push the default branch's out. `save_on: [main]` keeps the
//! default branch's caches warm; other builds still restore them (and report state is saved as
//! usual: it is per branch and small).

use serde::{Deserialize, Serialize};

/// A branch name or glob (`main`, `release/*`): `*` stays within one `/`-separated part, `**`
/// spans parts, `?` and `[…]` as in shell globs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BranchPattern(glob::Pattern);

impl TryFrom<String> for BranchPattern {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("a branch pattern must not be empty".into());
        }
        glob::Pattern::new(&s)
            .map(BranchPattern)
            .map_err(|e| format!("`{s}` is not a branch pattern: {}", e.msg))
    }
}

impl From<BranchPattern> for String {
    fn from(p: BranchPattern) -> String {
        p.0.as_str().to_string()
    }
}

impl BranchPattern {
    pub fn matches(&self, branch: &str) -> bool {
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        self.0.matches_with(branch, opts)
    }
}

/// What the build is, as far as `save_on` cares.
#[derive(Debug, Clone, Copy)]
pub struct BuildRef<'a> {
    /// The branch being built (`None`: a tag or a detached commit).
    pub branch: Option<&'a str>,
    /// A pull request build (its caches would only serve that pull request).
    pub pull_request: bool,
}

/// Why this build must not save caches under `save_on`, or `None` when it may. An empty list
/// lets every build save.
pub fn refusal(save_on: &[BranchPattern], build: BuildRef) -> Option<String> {
    if save_on.is_empty() {
        return None;
    }
    let list = save_on
        .iter()
        .map(|p| p.0.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if build.pull_request {
        return Some(format!(
            "caches are saved only by builds of {list} (cache.save_on), not by pull requests"
        ));
    }
    match build.branch {
        Some(b) if save_on.iter().any(|p| p.matches(b)) => None,
        Some(b) => Some(format!(
            "branch {b} is not in cache.save_on ({list}): caches restored, not saved"
        )),
        None => Some(format!(
            "this build is on no branch; caches are saved only by builds of {list} (cache.save_on)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Vec<BranchPattern> {
        p.iter()
            .map(|s| BranchPattern::try_from(s.to_string()).expect("pattern"))
            .collect()
    }

    fn on(branch: &str) -> BuildRef<'_> {
        BuildRef {
            branch: Some(branch),
            pull_request: false,
        }
    }

    #[test]
    fn an_empty_list_saves_everywhere() {
        assert_eq!(refusal(&[], on("feature/x")), None);
    }

    #[test]
    fn globs_stay_within_one_part_unless_doubled() {
        let p = pats(&["main", "release/*"]);
        assert_eq!(refusal(&p, on("main")), None);
        assert_eq!(refusal(&p, on("release/1.2")), None);
        let why = refusal(&p, on("release/1.2/hotfix")).expect("refused");
        assert!(why.contains("release/1.2/hotfix"), "{why}");
        assert!(refusal(&p, on("mainline")).is_some());
        assert_eq!(refusal(&pats(&["release/**"]), on("release/1/x")), None);
    }

    #[test]
    fn pull_requests_and_tags_do_not_save() {
        let p = pats(&["*"]);
        let pr = BuildRef {
            branch: Some("main"),
            pull_request: true,
        };
        assert!(refusal(&p, pr).expect("refused").contains("pull requests"));
        let tag = BuildRef {
            branch: None,
            pull_request: false,
        };
        assert!(refusal(&p, tag).is_some());
    }

    #[test]
    fn a_bad_pattern_in_kiln_yml_names_its_line_and_column() {
        let text = "python: python3\ncache:\n  save_on:\n    - main\n    - \"release/[\"\n";
        let e = crate::settings::file::Config::parse(text, std::path::Path::new("kiln.yml"))
            .unwrap_err()
            .to_string();
        // serde_yaml points at the list the bad pattern is in.
        assert!(e.starts_with("kiln.yml:4:5: cache.save_on:"), "{e}");
        assert!(e.contains("release/["), "{e}");
    }

    #[test]
    fn a_bad_pattern_says_what_is_wrong() {
        let e = BranchPattern::try_from("release/[".to_string()).unwrap_err();
        assert!(e.contains("release/["), "{e}");
        assert!(BranchPattern::try_from(" ".to_string()).is_err());
    }
}

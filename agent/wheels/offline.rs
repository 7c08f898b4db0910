//! `kiln run --offline`: install from wheels already on the machine (the run's wheelhouse, then
//! the wheels `kiln wheelhouse import` placed), and when one is missing say which requirement,
//! instead of pip's or uv's resolver prose.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::settings::names;

/// Installer arguments added to the usual `--no-index --find-links <run wheelhouse>`: no source
/// builds, and the imported wheels (`kiln wheelhouse import`'s default directory) searched too.
pub fn install_args(run_wheelhouse: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--only-binary".into(), ":all:".into()];
    for dir in search_dirs(run_wheelhouse).into_iter().skip(1) {
        args.push("--find-links".into());
        args.push(dir.into());
    }
    args
}

/// Where an offline install looks: the run's (restored) wheelhouse, then the imported wheels.
pub fn search_dirs(run_wheelhouse: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![run_wheelhouse.to_path_buf()];
    let imported = default_import_dir();
    if imported.is_dir() && imported != run_wheelhouse {
        dirs.push(imported);
    }
    dirs
}

/// Where `kiln wheelhouse import` puts wheels by default and where `kiln run --offline` looks
/// for them: `~/.cache/kiln/wheelhouse` (beside the embedded store), or `KILN_OFFLINE_WHEELHOUSE`.
pub fn default_import_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(names::OFFLINE_WHEELHOUSE).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    crate::cache::store::default_store_dir()
        .parent()
        .map(|p| p.join("wheelhouse"))
        .unwrap_or_else(|| PathBuf::from("/tmp/kiln-wheelhouse"))
}

/// For a failed offline install: (the missing requirement, the directories searched), when the
/// installer's output names one.
pub fn explain(lines: &[String], run_wheelhouse: &Path) -> Option<(String, String)> {
    let requirement = missing_requirement(lines)?;
    let searched: Vec<String> = search_dirs(run_wheelhouse)
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    Some((requirement, searched.join(", ")))
}

/// The requirement pip or uv could not find, from their output:
/// pip: `ERROR: No matching distribution found for fastsum==1.0`;
/// uv: `Because fastsum was not found in the provided package locations and you require
/// fastsum==1.0, …` or `Because there is no version of fastsum==1.0 and you require …`.
pub fn missing_requirement(lines: &[String]) -> Option<String> {
    for line in lines {
        if let Some(rest) = line.split("No matching distribution found for ").nth(1) {
            return Some(rest.trim().to_string()).filter(|s| !s.is_empty());
        }
    }
    for line in lines {
        if let Some(rest) = line.split("you require ").nth(1) {
            let end = [rest.find(", "), rest.find(" and ")]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(rest.len());
            let req = rest[..end].trim().trim_end_matches([',', '.']);
            if !req.is_empty() {
                return Some(req.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    #[test]
    fn finds_the_missing_requirement() {
        let pip = lines(
            "Processing ./alpha-1.0-py3-none-any.whl\n\
             ERROR: Could not find a version that satisfies the requirement missingpkg==2.0 (from versions: none)\n\
             ERROR: No matching distribution found for missingpkg==2.0",
        );
        assert_eq!(
            missing_requirement(&pip).as_deref(),
            Some("missingpkg==2.0")
        );
        let uv = lines(
            "error: No solution found when resolving dependencies\n  cause: Because missingpkg was not found in the provided package locations and you require missingpkg==2.0, we can conclude that your requirements are unsatisfiable.",
        );
        assert_eq!(missing_requirement(&uv).as_deref(), Some("missingpkg==2.0"));
        let uv = lines(
            "  ╰─▶ Because there is no version of alpha==3.0 and you require alpha==3.0, we can conclude that your requirements are unsatisfiable.",
        );
        assert_eq!(missing_requirement(&uv).as_deref(), Some("alpha==3.0"));
        assert_eq!(missing_requirement(&lines("something else")), None);
    }
}

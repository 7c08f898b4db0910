//! The distributions installed in a venv, read from its `site-packages` (`*.dist-info`
//! directories) instead of asking an installer (`uv pip freeze` is a process and ~0.1 s).

use std::path::{Path, PathBuf};

use crate::untrusted_fs::{read_text_or_warn, real_dir};
use crate::wheels::names::normalize;

/// The largest small dist-info file read (`direct_url.json`, `WHEEL`).
pub const MAX_METADATA_FILE: u64 = 1 << 20;

/// One installed distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dist {
    /// PEP 503 normalized name.
    pub name: String,
    pub version: String,
    /// Installed from a direct reference (`direct_url.json`: a local directory, an archive URL,
    /// a VCS URL) rather than by name from an index or `--find-links`: it cannot be pinned.
    pub direct: bool,
    /// Installed from a local directory (the project, a path dependency), editable or not.
    pub local_dir: bool,
}

/// The venv's `lib/*/site-packages` directories.
pub fn site_packages(venv: &Path) -> Vec<PathBuf> {
    let Ok(libs) = std::fs::read_dir(venv.join("lib")) else {
        return Vec::new();
    };
    libs.flatten()
        .map(|lib| lib.path().join("site-packages"))
        .filter(|p| real_dir(p))
        .collect()
}

/// Every distribution installed in `venv`, sorted by name.
pub fn read(venv: &Path) -> Vec<Dist> {
    let mut out = Vec::new();
    for site in site_packages(venv) {
        for info in dist_infos(&site) {
            let direct = read_text_or_warn(
                &info.path.join("direct_url.json"),
                MAX_METADATA_FILE,
                "a dist-info file",
            );
            out.push(Dist {
                name: info.name,
                version: info.version,
                direct: direct.is_some(),
                local_dir: direct.is_some_and(|d| is_local_dir(&d)),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A `NAME-VERSION.dist-info` directory.
pub struct DistInfo {
    pub path: PathBuf,
    /// PEP 503 normalized.
    pub name: String,
    pub version: String,
}

/// The `*.dist-info` directories in `dir` (none when it cannot be read).
pub fn dist_infos(dir: &Path) -> Vec<DistInfo> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        // A link the project's code put there is not a distribution Kiln reads.
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let file = e.file_name().to_string_lossy().into_owned();
        if let Some((name, version)) = file
            .strip_suffix(".dist-info")
            .and_then(|stem| stem.split_once('-'))
        {
            out.push(DistInfo {
                path: e.path(),
                name: normalize(name),
                version: version.to_string(),
            });
        }
    }
    out
}

/// PEP 610: a local directory is a `file://` URL with `dir_info`.
fn is_local_dir(direct_url_json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(direct_url_json).is_ok_and(|v| {
        v.get("dir_info").is_some()
            && v.get("url")
                .and_then(|u| u.as_str())
                .is_some_and(|u| u.starts_with("file:"))
    })
}

/// `name==version` lines for the distributions installed by name (a constraints file).
pub fn pins(dists: &[Dist]) -> String {
    dists
        .iter()
        .filter(|d| !d.direct)
        .map(|d| format!("{}=={}\n", d.name, d.version))
        .collect()
}

/// Whether a distribution named `name` (any spelling) is installed.
pub fn has(dists: &[Dist], name: &str) -> bool {
    let name = normalize(name);
    dists.iter().any(|d| d.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist_info(site: &Path, dir: &str, direct_url: Option<&str>) {
        let d = site.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("METADATA"), "Metadata-Version: 2.1\n").unwrap();
        if let Some(json) = direct_url {
            std::fs::write(d.join("direct_url.json"), json).unwrap();
        }
    }

    #[test]
    fn reads_names_versions_and_direct_installs_from_site_packages() {
        let t = tempfile::tempdir().unwrap();
        let site = t.path().join("lib/python3.11/site-packages");
        dist_info(&site, "zope.interface-6.4.post2.dist-info", None);
        dist_info(&site, "pytest-9.2.0.dist-info", None);
        dist_info(
            &site,
            "msgpack-1.1.2.dist-info",
            Some(r#"{"url": "file:///w/src", "dir_info": {"editable": true}}"#),
        );
        dist_info(
            &site,
            "fastsum-1.0.dist-info",
            Some(r#"{"url": "file:///v/fastsum-1.0.tar.gz", "archive_info": {}}"#),
        );
        std::fs::create_dir_all(site.join("pytest")).unwrap();
        std::fs::write(site.join("_virtualenv.pth"), "").unwrap();
        let d = read(t.path());
        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["fastsum", "msgpack", "pytest", "zope-interface"]);
        assert_eq!(pins(&d), "pytest==9.2.0\nzope-interface==6.4.post2\n");
        let local: Vec<&str> = d
            .iter()
            .filter(|d| d.local_dir)
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(
            local,
            ["msgpack"],
            "an archive URL is not a local directory"
        );
        assert!(has(&d, "Zope_Interface"));
        assert!(!has(&d, "pytest-cov"));
        assert!(read(&t.path().join("none")).is_empty());
    }
}

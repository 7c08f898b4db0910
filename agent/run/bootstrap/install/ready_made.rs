//! The ready-made wheels of a uv install, copied into the wheelhouse from the local directories
//! they came from.
//!
//! uv keeps every wheel it installed (into the venv or a build environment) only unpacked, in
//! its cache (`archive-v*/<id>/<name>-<version>.dist-info`, whose `WHEEL` file lists the tags).
//! When that wheel came from a local `--find-links` directory (a vendor dir, a mirror on disk),
//! the file is still there: copying it is all the wheelhouse needs, with no `pip wheel` pass.
//! What came from an index is left to the background pass ([`super::collect`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::wheels::names::{Version, WheelName};

use super::super::venv::dists;

/// A wheel uv unpacked: a distribution of the venv or of a build environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// PEP 503 normalized name.
    pub name: String,
    pub version: String,
    /// `py3-none-any`, … (the `Tag:` lines of its `WHEEL` file).
    pub tags: Vec<String>,
}

impl Unpacked {
    /// `name==version`.
    pub fn pin(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }

    /// `file` (a wheel file name) is this distribution, built for one of its tags.
    fn is(&self, file: &WheelName) -> bool {
        file.project == self.name
            && Version::parse(&file.version) == Version::parse(&self.version)
            && self.tags.iter().any(|t| tag_matches(t, file))
    }
}

/// `py3-none-any` is one of the tags the file name's compressed tag sets expand to.
fn tag_matches(tag: &str, file: &WheelName) -> bool {
    let mut parts = tag.splitn(3, '-');
    let (Some(py), Some(abi), Some(plat)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let has = |set: &str, t: &str| set.split('.').any(|s| s == t);
    has(&file.python_tag, py) && has(&file.abi_tag, abi) && has(&file.platform_tag, plat)
}

/// Every wheel uv unpacked into `uv_cache`.
pub fn unpacked(uv_cache: &Path) -> Vec<Unpacked> {
    let mut out = Vec::new();
    let buckets = std::fs::read_dir(uv_cache).into_iter().flatten().flatten();
    for bucket in buckets.filter(|b| b.file_name().to_string_lossy().starts_with("archive-v")) {
        for entry in std::fs::read_dir(bucket.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.extend(dist_infos(&entry.path()));
        }
    }
    out.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    out.dedup();
    out
}

fn dist_infos(dir: &Path) -> Vec<Unpacked> {
    dists::dist_infos(dir)
        .into_iter()
        .map(|info| {
            let wheel = crate::untrusted_fs::read_text_or_warn(
                &info.path.join("WHEEL"),
                dists::MAX_METADATA_FILE,
                "a dist-info file",
            )
            .unwrap_or_default();
            let tags = wheel
                .lines()
                .filter_map(|l| l.strip_prefix("Tag:"))
                .map(|t| t.trim().to_string())
                .collect();
            Unpacked {
                name: info.name,
                version: info.version,
                tags,
            }
        })
        .collect()
}

/// Copy the wheel file of each of `wanted` found in `dirs` into `wheelhouse`. Returns the
/// file names copied and the distributions not found.
pub fn copy_local(
    wanted: &[Unpacked],
    dirs: &[PathBuf],
    wheelhouse: &Path,
) -> (Vec<String>, Vec<Unpacked>) {
    let files: Vec<(PathBuf, WheelName)> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        // Only a wheel that is a regular file itself: never a link out of the directory.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let w = WheelName::parse(&e.file_name().to_string_lossy())?;
            Some((e.path(), w))
        })
        .collect();
    let (mut copied, mut not_found) = (Vec::new(), Vec::new());
    for u in wanted {
        let Some((path, w)) = files.iter().find(|(_, w)| u.is(w)) else {
            not_found.push(u.clone());
            continue;
        };
        let dest = wheelhouse.join(&w.filename);
        let done = dest.exists()
            || std::fs::hard_link(path, &dest)
                .or_else(|_| std::fs::copy(path, &dest).map(drop))
                .is_ok();
        if done {
            copied.push(w.filename.clone());
        } else {
            not_found.push(u.clone());
        }
    }
    (copied, not_found)
}

/// The local directories packages may come from: `UV_FIND_LINKS` (comma-separated),
/// `PIP_FIND_LINKS` (space-separated), and the `--find-links`/`-f` options of `args` and of the
/// requirement files they name (relative to the file).
pub fn find_links_dirs(args: &[OsString]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    out.extend(env("UV_FIND_LINKS").split(',').map(location));
    out.extend(env("PIP_FIND_LINKS").split_whitespace().map(location));
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    out.extend(find_links_options(&args, Path::new("")));
    let mut files = args.iter();
    while let Some(a) = files.next() {
        if matches!(a.as_str(), "-r" | "--requirement") {
            if let Some(f) = files.next() {
                let f = Path::new(f);
                let text = std::fs::read_to_string(f).unwrap_or_default();
                let tokens: Vec<String> = text
                    .lines()
                    .map(|l| l.split(" #").next().unwrap_or(""))
                    .flat_map(|l| l.split_whitespace().map(str::to_string))
                    .collect();
                out.extend(find_links_options(
                    &tokens,
                    f.parent().unwrap_or(Path::new("")),
                ));
            }
        }
    }
    out.retain(|d| d.is_dir());
    out.dedup();
    out
}

/// The values of `--find-links X`, `--find-links=X`, `-f X` in `tokens`, relative to `dir`.
fn find_links_options(tokens: &[String], dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut it = tokens.iter();
    while let Some(t) = it.next() {
        let value = match t.as_str() {
            "-f" | "--find-links" => it.next().map(String::as_str),
            _ => t.strip_prefix("--find-links="),
        };
        if let Some(v) = value {
            out.push(dir.join(location(v)));
        }
    }
    out
}

/// A `file://` URL's path, else the text as a path.
fn location(s: &str) -> PathBuf {
    let s = s.trim();
    PathBuf::from(s.strip_prefix("file://").unwrap_or(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(cache: &Path, id: &str, dist_info: &str, tags: &[&str]) {
        let d = cache.join("archive-v0").join(id).join(dist_info);
        std::fs::create_dir_all(&d).unwrap();
        let wheel: String = tags.iter().map(|t| format!("Tag: {t}\n")).collect();
        std::fs::write(d.join("WHEEL"), format!("Wheel-Version: 1.0\n{wheel}")).unwrap();
    }

    #[test]
    fn copies_the_unpacked_wheels_found_in_local_dirs_and_names_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let (cache, vendor, wh) = (t.path().join("c"), t.path().join("v"), t.path().join("w"));
        unpack(&cache, "a", "pytest-9.2.0.dist-info", &["py3-none-any"]);
        unpack(
            &cache,
            "b",
            "setuptools-84.2.1.dist-info",
            &["py3-none-any"],
        );
        unpack(
            &cache,
            "c",
            "zope_interface-6.4.dist-info",
            &["cp311-cp311-linux_x86_64"],
        );
        unpack(
            &cache,
            "d",
            "six-1.17.0.dist-info",
            &["py2-none-any", "py3-none-any"],
        );
        let got = unpacked(&cache);
        let names: Vec<String> = got.iter().map(Unpacked::pin).collect();
        assert_eq!(
            names,
            [
                "pytest==9.2.0",
                "setuptools==84.2.1",
                "six==1.17.0",
                "zope-interface==6.4"
            ]
        );
        std::fs::create_dir_all(&vendor).unwrap();
        std::fs::create_dir_all(&wh).unwrap();
        for f in [
            "pytest-9.2.0-py3-none-any.whl",
            "pytest-9.1.0-py3-none-any.whl",
            "six-1.17.0-py2.py3-none-any.whl",
            "zope_interface-6.4-cp312-cp312-linux_x86_64.whl",
        ] {
            std::fs::write(vendor.join(f), f).unwrap();
        }
        let (copied, rest) = copy_local(&got, std::slice::from_ref(&vendor), &wh);
        assert_eq!(
            copied,
            [
                "pytest-9.2.0-py3-none-any.whl",
                "six-1.17.0-py2.py3-none-any.whl"
            ]
        );
        let rest: Vec<String> = rest.iter().map(Unpacked::pin).collect();
        assert_eq!(
            rest,
            ["setuptools==84.2.1", "zope-interface==6.4"],
            "not in the dir; another interpreter's wheel"
        );
        assert!(wh.join("six-1.17.0-py2.py3-none-any.whl").exists());
    }

    #[test]
    fn find_links_come_from_args_and_requirement_files() {
        let t = tempfile::tempdir().unwrap();
        let (vendor, other) = (t.path().join("vendor"), t.path().join("other"));
        std::fs::create_dir_all(&vendor).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let req = t.path().join("requirements.txt");
        std::fs::write(&req, "--no-index\n--find-links vendor  # ours\nsix==1\n").unwrap();
        let args: Vec<OsString> = vec![
            "-r".into(),
            req.into(),
            format!("--find-links={}", other.display()).into(),
            "-f".into(),
            t.path().join("missing").into(),
        ];
        let dirs = find_links_dirs(&args);
        assert!(dirs.contains(&vendor), "{dirs:?}");
        assert!(dirs.contains(&other), "{dirs:?}");
        assert!(!dirs.iter().any(|d| d.ends_with("missing")));
    }
}

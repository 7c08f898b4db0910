//! The wheels uv built, harvested from its cache into the wheelhouse.
//!
//! uv keeps each wheel it built from an sdist as a `.whl` file in its cache
//! (`sdists-v*/<kind>/…`); copying them is all the wheelhouse needs.

use std::path::{Path, PathBuf};

use super::names::{dist_name, normalize};

/// Copy each wheel uv built (`<uv_cache>/sdists-v*/**/*.whl`) into `wheelhouse`, unless a wheel
/// of that name is already there, it is an editable build (`sdists-v*/editable/`), or a
/// distribution of `skip` (normalized names: the project, local path dependencies). Returns the
/// file names copied.
pub fn harvest_built_wheels(uv_cache: &Path, wheelhouse: &Path, skip: &[String]) -> Vec<String> {
    let mut found: Vec<PathBuf> = Vec::new();
    let Ok(buckets) = std::fs::read_dir(uv_cache) else {
        return Vec::new();
    };
    for bucket in buckets.flatten() {
        if !bucket.file_name().to_string_lossy().starts_with("sdists-v") {
            continue;
        }
        for kind in std::fs::read_dir(bucket.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if kind.file_name() != "editable" {
                find_wheels(&kind.path(), &mut found);
            }
        }
    }
    let mut copied = Vec::new();
    for whl in found {
        let Some(name) = whl.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let dest = wheelhouse.join(&name);
        if dest.exists() || copied.contains(&name) || skip.contains(&normalize(&dist_name(&name))) {
            continue;
        }
        match std::fs::hard_link(&whl, &dest).or_else(|_| std::fs::copy(&whl, &dest).map(drop)) {
            Ok(()) => copied.push(name),
            Err(e) => tracing::warn!("cannot copy {} into the wheelhouse: {e}", whl.display()),
        }
    }
    copied.sort();
    copied
}

fn find_wheels(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        let path = e.path();
        if kind.is_dir() {
            find_wheels(&path, out);
        } else if kind.is_file() && path.extension().is_some_and(|x| x == "whl") {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harvest_copies_each_built_wheel_once_and_keeps_what_is_there() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("uv-cache");
        let wh = d.path().join("wheelhouse");
        for (dir, name) in [
            (
                "sdists-v11/index/ab/fastsum/1.0/x1",
                "fastsum-1.0-cp311-cp311-linux_x86_64.whl",
            ),
            (
                "sdists-v11/path/cd/vecmath/1.1/x2",
                "vecmath-1.1-cp311-cp311-linux_x86_64.whl",
            ),
            (
                "sdists-v11/path/ef/vecmath/1.1/x3",
                "vecmath-1.1-cp311-cp311-linux_x86_64.whl",
            ),
            ("wheels-v8/pypi/pytest", "pytest-9.2.0-py3-none-any.whl"),
        ] {
            std::fs::create_dir_all(cache.join(dir)).unwrap();
            std::fs::write(cache.join(dir).join(name), name).unwrap();
        }
        std::fs::create_dir_all(&wh).unwrap();
        std::fs::write(wh.join("fastsum-1.0-cp311-cp311-linux_x86_64.whl"), b"old").unwrap();
        let copied = harvest_built_wheels(&cache, &wh, &[]);
        assert_eq!(copied, vec!["vecmath-1.1-cp311-cp311-linux_x86_64.whl"]);
        assert_eq!(
            std::fs::read(wh.join("fastsum-1.0-cp311-cp311-linux_x86_64.whl")).unwrap(),
            b"old",
            "a wheel already in the wheelhouse is kept as it is"
        );
        assert!(
            !wh.join("pytest-9.2.0-py3-none-any.whl").exists(),
            "only built wheels"
        );
        assert!(harvest_built_wheels(&d.path().join("none"), &wh, &[]).is_empty());
        // The project's own (editable) wheel never goes in.
        let editable = "sdists-v11/editable/ab/x1";
        let name = "msgpack-1.1.2-0.editable-cp311-cp311-linux_x86_64.whl";
        std::fs::create_dir_all(cache.join(editable)).unwrap();
        std::fs::write(cache.join(editable).join(name), name).unwrap();
        assert!(harvest_built_wheels(&cache, &wh, &[]).is_empty());
        let path = "sdists-v11/path/cd/x2";
        let name = "msgpack-1.1.2-cp311-cp311-linux_x86_64.whl";
        std::fs::create_dir_all(cache.join(path)).unwrap();
        std::fs::write(cache.join(path).join(name), name).unwrap();
        assert!(harvest_built_wheels(&cache, &wh, &["msgpack".into()]).is_empty());
        assert!(!wh.join(name).exists());
    }
}

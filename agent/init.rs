//! `kiln init`: write a commented `kiln.yml` for the project in the current directory.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already exists (use --force to overwrite)")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Requirement files found at the project root, sorted (`requirements*.txt`).
fn find_requirements(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("requirements") && n.ends_with(".txt"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The template, listing the requirement files that exist in `dir`.
pub fn template(dir: &Path) -> String {
    let reqs = find_requirements(dir);
    let reqs = if reqs.is_empty() {
        "[requirements.txt]".to_string()
    } else {
        format!("[{}]", reqs.join(", "))
    };
    format!(
        "# Kiln configuration (every key is optional; see README \"kiln.yml\").\n\
         python: python3\n\
         requirements: {reqs}\n\
         bootstrap:\n  installer: auto        # auto | uv | pip\n\
         test:\n  command: python -m pytest\n  timeout: 1h\n\
         cache:\n  # store: s3://bucket/kiln   # default: the embedded file store\n  \
         compression: zstd\n  ccache:\n    max_size: 1G\n\
         report:\n  mode: problem           # problem | failing | change | all\n"
    )
}

/// Write `kiln.yml` into `dir`.
pub fn init(dir: &Path, force: bool) -> Result<PathBuf, InitError> {
    let path = dir.join("kiln.yml");
    if path.exists() && !force {
        return Err(InitError::Exists(path));
    }
    std::fs::write(&path, template(dir)).map_err(|source| InitError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::file::Config;

    #[test]
    fn template_is_valid_config_listing_requirement_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("requirements.txt"), "").unwrap();
        std::fs::write(d.path().join("requirements-dev.txt"), "").unwrap();
        let path = init(d.path(), false).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.requirements.len(), 2);
        assert!(matches!(init(d.path(), false), Err(InitError::Exists(_))));
        assert!(init(d.path(), true).is_ok());
    }
}

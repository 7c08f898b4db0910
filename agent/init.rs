//! `kiln init`: write a commented `kiln.yml` for the project in the current directory.

use std::path::{Path, PathBuf};

use crate::project::{detect, InstallMode, ProjectConfig};

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

/// The `project:` section for what detection found in `dir` (see `project::detect`), with the
/// detected values written out so the file says what Kiln will do.
fn project_section(dir: &Path) -> String {
    let config = ProjectConfig::default();
    let found = detect::detect(detect::DetectInput {
        checkout: dir,
        config: &config,
        requirements: None,
    });
    let p = match found {
        Ok(p) => p,
        Err(e) => {
            return format!(
                "# project: detection failed ({e}); every key below is the default.\n\
                 project:\n  source: auto\n"
            )
        }
    };
    let list = |v: &[String]| format!("[{}]", v.join(", "));
    let mut s = format!(
        "# Detected: dependencies from {}; the project is installed {}.\n\
         project:\n  source: {}            # auto | uv.lock | pylock.toml | requirements | pyproject | setup.py | none\n",
        p.source.name(),
        match p.install {
            InstallMode::None => "not at all".to_string(),
            m => format!("as {}", m.as_str()),
        },
        p.source.name(),
    );
    if !p.extras.is_empty() {
        s.push_str(&format!("  extras: {}\n", list(&p.extras)));
    }
    if !p.groups.is_empty() {
        s.push_str(&format!("  groups: {}\n", list(&p.groups)));
    }
    s.push_str(&format!(
        "  install: {}          # editable | wheel | none\n",
        p.install.as_str()
    ));
    if !p.native_sources.is_empty() {
        let names: Vec<String> = p
            .native_sources
            .iter()
            .map(|s| s.display().to_string())
            .collect();
        s.push_str(&format!(
            "  # C/C++/Cython sources found ({}): their modules must import after the install.\n",
            names.join(", ")
        ));
    }
    s
}

/// The template: what detection found, and the requirement files that exist in `dir`.
pub fn template(dir: &Path) -> String {
    let reqs = find_requirements(dir);
    let reqs = if reqs.is_empty() {
        "# requirements: [requirements.txt]\n".to_string()
    } else {
        format!("requirements: [{}]\n", reqs.join(", "))
    };
    format!(
        "# Kiln configuration (every key is optional; see README \"kiln.yml\").\n\
         python: python3\n\
         {}\
         {reqs}\
         bootstrap:\n  installer: auto        # auto | uv | pip\n\
         test:\n  command: python -m pytest\n  timeout: 1h\n\
         cache:\n  # store: s3://bucket/kiln   # default: the embedded file store\n  \
         compression: zstd\n  ccache:\n    max_size: 1G\n\
         report:\n  mode: problem           # problem | failing | change | all\n",
        project_section(dir)
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

    #[test]
    fn template_says_what_detection_found() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("pyproject.toml"),
            "[project]\nname = \"p\"\n[dependency-groups]\ntests = [\"pytest\"]\n",
        )
        .unwrap();
        std::fs::create_dir_all(d.path().join("src/p")).unwrap();
        std::fs::write(d.path().join("src/p/_fast.c"), "").unwrap();
        let path = init(d.path(), false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("dependencies from pyproject; the project is installed as editable"),
            "{text}"
        );
        assert!(text.contains("src/p/_fast.c"), "{text}");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.project.source, crate::project::SourceChoice::Pyproject);
        assert_eq!(c.project.groups, Some(vec!["tests".to_string()]));
        assert_eq!(c.project.install, Some(InstallMode::Editable));
    }
}

//! Local directories shown read-only inside the sandbox because the build legitimately names
//! them: package sources the operator set (`PIP_FIND_LINKS`, `UV_FIND_LINKS`, a `file://` index
//! in `PIP_INDEX_URL`, …), directories the operator allows (`--sandbox-show`), and those the
//! project's own configuration names outside its checkout (find-links, local indexes, path
//! dependencies: see `project::local_dirs`).
//!
//! The sandbox hides `$HOME` and gives a private `/tmp`, which is right for secrets and wrong
//! for a vendor dir that lives there: the install would fail with "no matching distribution"
//! and never say why. So a trusted build sees every such directory read-only; an untrusted one
//! (a fork's pull request, whose requirement files the fork wrote) sees only what the operator
//! allows, and a directory it names but may not see is an error that names it and the flag that
//! shows it. No build ever sees, through this, what stays hidden: an operator-hidden path, the
//! store, or a credentials directory of `$HOME`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::settings::names;

/// The operator's variables that name package sources (find-links dirs, indexes).
pub(super) const SOURCE_VARS: &[&str] = &[
    "PIP_FIND_LINKS",
    "UV_FIND_LINKS",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
];

/// Directories of `$HOME` that hold credentials: never shown, whatever names them.
const HOME_SECRETS: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".docker",
    ".kube",
    ".config/gcloud",
    ".config/gh",
    ".password-store",
];

/// Why a directory the build names cannot be shown.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShowError {
    #[error(
        "{named_by} names {}, which the sandbox hides from untrusted builds (a fork's pull \
         request); the operator can show it read-only with --sandbox-show {} ({})",
        path.display(),
        path.display(),
        names::SANDBOX_SHOW
    )]
    Untrusted { path: PathBuf, named_by: String },
    #[error(
        "{named_by} names {}, which the sandbox keeps hidden ({reason}); keep those packages \
         somewhere else",
        path.display()
    )]
    Refused {
        path: PathBuf,
        named_by: String,
        reason: String,
    },
}

/// The local directories in the value of one of [`SOURCE_VARS`]: entries separated by spaces
/// or commas, each a `file://` URL or an absolute path, optionally `name=` first (`UV_INDEX`).
/// URLs of other schemes and relative paths are not directories Kiln can name.
pub(super) fn dirs_in_value(value: &OsStr) -> Vec<PathBuf> {
    let value = value.to_string_lossy();
    value
        .split([' ', ',', '\n', '\t'])
        .filter(|s| !s.is_empty())
        .filter_map(|entry| {
            let entry = match entry.split_once('=') {
                Some((name, rest)) if !name.contains('/') && !name.contains(':') => rest,
                _ => entry,
            };
            let path = entry.strip_prefix("file://").unwrap_or(entry);
            let path = Path::new(path);
            (path.is_absolute() && path.is_dir()).then(|| path.to_path_buf())
        })
        .collect()
}

/// Why `dir` must stay hidden even from a trusted build, if it must: it lies in (or is) a path
/// the operator hid or the store (`kept`), or a credentials directory of `home`.
pub(super) fn kept_hidden(dir: &Path, kept: &[PathBuf], home: Option<&Path>) -> Option<String> {
    let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if let Some(k) = kept.iter().find(|k| real.starts_with(k)) {
        return Some(format!("{} is hidden by the operator", k.display()));
    }
    let home = home.and_then(|h| std::fs::canonicalize(h).ok())?;
    HOME_SECRETS
        .iter()
        .map(|s| home.join(s))
        .find(|s| real.starts_with(s))
        .map(|s| format!("{} holds credentials", s.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_variables_name_absolute_dirs_and_file_urls() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let value = format!(
            "{} file://{},https://pypi.example/simple relative local={} {}/missing",
            a.display(),
            b.display(),
            a.display(),
            d.path().display()
        );
        assert_eq!(dirs_in_value(OsStr::new(&value)), [a.clone(), b, a]);
    }

    #[test]
    fn credentials_and_operator_hidden_paths_stay_hidden() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh/wheels");
        let wheels = home.path().join("wheels");
        let hidden = home.path().join("agent-data");
        for d in [&ssh, &wheels, &hidden] {
            std::fs::create_dir_all(d).unwrap();
        }
        let kept = [std::fs::canonicalize(&hidden).unwrap()];
        assert!(kept_hidden(&ssh, &kept, Some(home.path())).is_some());
        assert!(kept_hidden(&hidden.join("."), &kept, Some(home.path())).is_some());
        assert_eq!(kept_hidden(&wheels, &kept, Some(home.path())), None);
    }
}

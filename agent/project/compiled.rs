//! After the install: find the project's compiled modules and import each one, so a project
//! whose C extension silently failed to build (and falls back to pure Python) is reported
//! instead of passing against the fallback.

use std::path::Path;

use serde::Deserialize;

use crate::process::Cmd;

/// Finds the project's installed distribution by its PEP 610 `direct_url.json` (the checkout for
/// editable installs, the wheel file for wheel installs), collects extension modules from its
/// RECORD and, for in-place builds, from the checkout, then imports each.
const PROBE: &str = r#"
import importlib, importlib.machinery as mach, importlib.metadata as md, json, os, sys
checkout, wheel = os.path.realpath(sys.argv[1]), sys.argv[2]
sufs = tuple(mach.EXTENSION_SUFFIXES)
mods = set()
def strip(p):
    for s in sufs:
        if p.endswith(s):
            return p[: -len(s)]
for d in md.distributions():
    try:
        info = json.loads(d.read_text("direct_url.json") or "null") or {}
    except ValueError:
        continue
    url = info.get("url", "")
    mine = url.startswith("file://") and (
        os.path.realpath(url[7:]) == checkout or (wheel and url.endswith("/" + wheel)))
    if not mine:
        continue
    for f in d.files or []:
        m = strip(str(f))
        if m and not str(f).startswith(".."):
            mods.add(m.replace("/", "."))
skip = {".git", "build", "dist", ".tox", ".nox", "venv", ".venv", "node_modules"}
for root, dirs, files in os.walk(checkout):
    dirs[:] = [x for x in dirs if x not in skip]
    for f in files:
        m = strip(f)
        if not m:
            continue
        parts, top = [m], root
        while os.path.isfile(os.path.join(top, "__init__.py")):
            parts.insert(0, os.path.basename(top))
            top = os.path.dirname(top)
        mods.add(".".join(parts))
failed = {}
for m in sorted(mods):
    try:
        importlib.import_module(m)
    except Exception as e:
        failed[m] = "%s: %s" % (type(e).__name__, e)
print(json.dumps({"modules": sorted(mods), "failed": failed}))
"#;

/// What the probe found.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct CompiledModules {
    pub modules: Vec<String>,
    /// module → `ExceptionType: message`.
    pub failed: std::collections::BTreeMap<String, String>,
}

/// Run the probe: `python` is the venv's interpreter as a command (the caller puts it in the
/// sandbox, outside the checkout, so a flat layout imports through the install, not the current
/// directory).
pub async fn probe(
    python: Cmd,
    checkout: &Path,
    wheel_file: Option<&str>,
) -> Result<CompiledModules, String> {
    let out = python
        .args(["-c", PROBE])
        .arg(checkout)
        .arg(wheel_file.unwrap_or(""))
        .run()
        .await
        .map_err(|e| e.to_string())?;
    if !out.success {
        return Err(out.tail(10));
    }
    let text = out.stdout_text();
    let last = text.lines().last().unwrap_or("");
    serde_json::from_str(last).map_err(|e| format!("{e}: {}", out.tail(5)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finds_in_place_extension_modules_and_reports_the_ones_that_do_not_import() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let suffix = Cmd::new("python3")
            .args([
                "-c",
                "import importlib.machinery as m; print(m.EXTENSION_SUFFIXES[0])",
            ])
            .run()
            .await
            .unwrap()
            .stdout_text();
        std::fs::create_dir_all(src.join("pkg/sub")).unwrap();
        std::fs::create_dir_all(src.join("build/lib/pkg")).unwrap();
        std::fs::write(src.join("pkg/__init__.py"), "").unwrap();
        std::fs::write(src.join("pkg/sub/__init__.py"), "").unwrap();
        // Not a real shared object: the import must fail and be reported with its reason.
        std::fs::write(
            src.join(format!("pkg/sub/_speed{}", suffix.trim())),
            b"junk",
        )
        .unwrap();
        std::fs::write(
            src.join(format!("build/lib/pkg/_old{}", suffix.trim())),
            b"x",
        )
        .unwrap();
        let python = Cmd::new("python3").cwd(d.path()).env("PYTHONPATH", &src);
        let found = probe(python, &src, None).await.unwrap();
        assert_eq!(found.modules, ["pkg.sub._speed"]);
        let why = &found.failed["pkg.sub._speed"];
        assert!(why.starts_with("ImportError"), "{why}");
    }
}

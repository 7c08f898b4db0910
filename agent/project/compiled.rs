//! After the install: find the project's compiled modules and import each one, so a project
//! whose C extension silently failed to build (and falls back to pure Python) is reported
//! instead of passing against the fallback.

use std::path::Path;

use serde::Deserialize;

use crate::process::Cmd;

/// Finds the project's installed distribution by its PEP 610 `direct_url.json` (the checkout for
/// editable installs, the wheel file for wheel installs), collects extension modules from its
/// RECORD and, for in-place builds, from the checkout, then imports each. The `*.dist-info`
/// directories on `sys.path` are read directly: importing `importlib.metadata` costs more than
/// the rest of the probe.
const PROBE: &str = r#"
import csv, importlib, importlib.machinery as mach, json, os, sys
checkout, wheel = os.path.realpath(sys.argv[1]), sys.argv[2]
sufs = tuple(mach.EXTENSION_SUFFIXES)
mods = set()
def strip(p):
    for s in sufs:
        if p.endswith(s):
            return p[: -len(s)]
def dist_infos():
    seen = set()
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for n in names:
            if n.endswith(".dist-info") and n not in seen:
                seen.add(n)
                yield os.path.join(entry or ".", n)
for d in dist_infos():
    try:
        with open(os.path.join(d, "direct_url.json")) as f:
            info = json.load(f) or {}
    except (OSError, ValueError):
        continue
    url = info.get("url", "") if isinstance(info, dict) else ""
    mine = url.startswith("file://") and (
        os.path.realpath(url[7:]) == checkout or (wheel and url.endswith("/" + wheel)))
    if not mine:
        continue
    try:
        with open(os.path.join(d, "RECORD"), newline="") as f:
            files = [row[0] for row in csv.reader(f) if row]
    except OSError:
        files = []
    for f in files:
        m = strip(f)
        if m and not f.startswith(".."):
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
        .read_whole(crate::process::PARSED_OUTPUT_LIMIT)
        .run()
        .await
        .map_err(|e| e.to_string())?;
    if !out.success {
        return Err(out.tail(10));
    }
    let last = out.stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).map_err(|e| format!("{e}: {}", out.tail(5)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This interpreter's file name suffix for extension modules (`.cpython-311-…so`).
    async fn extension_suffix() -> String {
        Cmd::new("python3")
            .args([
                "-c",
                "import importlib.machinery as m; print(m.EXTENSION_SUFFIXES[0])",
            ])
            .read_whole(crate::process::PARSED_OUTPUT_LIMIT)
            .run()
            .await
            .unwrap()
            .stdout
            .trim()
            .to_string()
    }

    #[tokio::test]
    async fn finds_in_place_extension_modules_and_reports_the_ones_that_do_not_import() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let suffix = extension_suffix().await;
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

    #[tokio::test]
    async fn finds_the_extension_modules_a_wheel_install_recorded() {
        let d = tempfile::tempdir().unwrap();
        let (src, site) = (d.path().join("src"), d.path().join("site"));
        let suffix = extension_suffix().await;
        let module = format!("fast/_core{}", suffix.trim());
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(site.join("fast")).unwrap();
        std::fs::write(site.join("fast/__init__.py"), "").unwrap();
        std::fs::write(site.join(&module), b"junk").unwrap();
        let info = site.join("fast-1.0.dist-info");
        std::fs::create_dir_all(&info).unwrap();
        let url = format!("file://{}", src.display());
        std::fs::write(
            info.join("direct_url.json"),
            format!(r#"{{"url": "{url}", "dir_info": {{}}}}"#),
        )
        .unwrap();
        std::fs::write(
            info.join("RECORD"),
            format!("fast/__init__.py,,\n{module},sha256=x,4\n\"fast-1.0.dist-info/RECORD\",,\n"),
        )
        .unwrap();
        // Another distribution's module is not the project's.
        let other = site.join("other-2.0.dist-info");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(
            other.join("direct_url.json"),
            r#"{"url": "file:///elsewhere"}"#,
        )
        .unwrap();
        std::fs::write(
            other.join("RECORD"),
            format!("other/_x{},,\n", suffix.trim()),
        )
        .unwrap();
        let python = Cmd::new("python3").cwd(d.path()).env("PYTHONPATH", &site);
        let found = probe(python, &src, None).await.unwrap();
        assert_eq!(found.modules, ["fast._core"]);
        assert!(found.failed["fast._core"].starts_with("ImportError"));
    }
}

//! Kiln builds the sdists a cold install needs, before uv's install, with its own frontend.
//!
//! uv builds each sdist in two or three Python processes (`get_requires_for_build_wheel`, at
//! times `prepare_metadata_for_build_wheel`, then `build_wheel`), each importing the backend
//! again, and it runs every sdist's first hook before any `build_wheel`: the longest compiles
//! start last and end alone on one core. So, when uv would build:
//!
//! 1. `uv pip compile` resolves the dependencies (as the install will: same sources, same
//!    interpreter). uv unpacks each sdist it resolves into its cache to read the metadata
//!    (`sdists-v*/index/<index>/<name>/<version>/<revision>/src`);
//! 2. each resolved sdist unpacked there, whose wheel the wheelhouse lacks, is built by
//!    [`super::frontend`]: a fresh environment at a fixed place (`<work tmp>/sdist-builds/<name>`,
//!    so its headers are on the same path every run and ccache hits them), its build
//!    requirements from the wheelhouse and the index, then one hook process that asks for more
//!    requirements and builds the wheel. As many at once as there are cores, the ones with the
//!    most native source first;
//! 3. each wheel goes into the wheelhouse, where the install takes it as a ready wheel.
//!
//! Anything this does not build (a direct URL or VCS requirement, a failed build, a future uv
//! that unpacks elsewhere) is left to uv's install, which builds it as before, so the result is
//! the same install, only sooner.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::stream::{self, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::{OnceCell, Semaphore};

use crate::project::pyproject::PyProject;
use crate::wheels::{
    self,
    names::{normalize, WheelName},
};

use super::super::error::BootstrapError;
use super::super::install::installing::Installing;
use super::concurrent_builds;
use super::editable::checkout_extras;
use super::frontend::{
    hooks_path, uv_build_settings, write_hooks, Build, BuildEnv, Built, Kind, Sources,
};

/// A resolved sdist uv unpacked, to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdist {
    /// Normalized.
    pub name: String,
    pub version: String,
    /// The unpacked source tree.
    pub src: PathBuf,
    /// Bytes of native source (C, C++, Cython, Fortran, Rust): the longest builds go first.
    pub weight: u64,
}

/// Source files whose size says how long a build compiles.
const NATIVE: &[&str] = &[
    "c", "cc", "cpp", "cxx", "h", "hh", "hpp", "hxx", "pyx", "pxd", "f", "f90", "rs",
];

/// At most this many files are looked at to weigh an sdist.
const MAX_WEIGHED_FILES: usize = 200_000;
/// The largest `uv pip compile` output read (a pin is a line: room for any real resolution).
const MAX_PINS_FILE: u64 = 16 << 20;

impl Installing<'_> {
    /// The sdists built (see [`Self::prebuild_sdists`]) and, alongside them, the editable
    /// project by [`super::frontend`] when it is installed so: the wheels built into the
    /// wheelhouse, and the project's install arguments (its wheel in place of the checkout
    /// when built). A project that fails to build is the bootstrap's failure.
    pub async fn prebuild(
        &self,
        uv: &Path,
        uv_cache: &Path,
        tmp: &Path,
    ) -> Result<(Vec<String>, Vec<OsString>), BootstrapError> {
        let editable = self.checkout_arg().is_some();
        let slots = Semaphore::new(concurrent_builds());
        let index_options = self.index_options(tmp);
        let sources = Sources {
            nothing_alongside: true,
            ..ONLINE
        };
        let project = async {
            if !editable {
                return Ok(None);
            }
            // The project takes one of the build slots while it builds.
            let _slot = slots.acquire().await;
            (self.prebuild_editable(tmp, sources, index_options.clone())).await
        };
        let sdists = self.prebuild_sdists(uv, uv_cache, tmp, &slots, index_options.clone());
        let (project, built) = tokio::join!(project, sdists);
        let args = match project? {
            Some(wheel) => self.with_prebuilt(&wheel),
            None => self.project.clone(),
        };
        Ok((built, args))
    }

    /// Steps 1–3 above with uv at `uv`, its cache at `uv_cache`, scratch files in `tmp`, each
    /// build in one of the `slots`, build requirements from `index_options` too.
    /// Returns the file names of the wheels Kiln built into the wheelhouse; whatever it could
    /// not build is logged and left to the install.
    pub async fn prebuild_sdists(
        &self,
        uv: &Path,
        uv_cache: &Path,
        tmp: &Path,
        slots: &Semaphore,
        index_options: Vec<OsString>,
    ) -> Vec<String> {
        if let Some(var) = uv_build_settings() {
            tracing::debug!("{var} is set: uv builds the sdists, as it says");
            return Vec::new();
        }
        let Some(resolved) = self.resolve(uv, tmp).await else {
            return Vec::new();
        };
        let missing = wheels::covered_by(&resolved, &wheels::list(self.wheelhouse)).missing;
        let mut sdists: Vec<Sdist> = pins(&missing.join("\n"))
            .iter()
            .filter_map(|(name, version)| unpacked_sdist(uv_cache, name, version))
            .collect();
        if sdists.is_empty() {
            return Vec::new();
        }
        if let Err(e) = write_hooks(&hooks_path(tmp)) {
            tracing::info!("Kiln's build frontend is not available ({e}): uv builds the sdists");
            return Vec::new();
        }
        sdists.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.name.cmp(&b.name)));
        let started = Instant::now();
        let envs = SharedEnvs::new(tmp, index_options);
        let envs = &envs;
        let results: Vec<(String, Result<String, String>)> = stream::iter(&sdists)
            .map(|s| async move {
                let _slot = slots.acquire().await;
                (s.name.clone(), self.build_sdist(uv, s, envs).await)
            })
            .buffer_unordered(concurrent_builds())
            .collect()
            .await;
        let (mut built, mut wheels) = (Vec::new(), Vec::new());
        for (name, result) in results {
            match result {
                Ok(wheel) => {
                    built.push(name);
                    wheels.push(wheel);
                }
                Err(reason) => {
                    tracing::info!("Kiln could not build {name} ({reason}); uv builds it")
                }
            }
        }
        built.sort();
        if !built.is_empty() {
            tracing::info!(
                "built {} sdist(s) in parallel in {:.2}s: {}",
                built.len(),
                started.elapsed().as_secs_f64(),
                built.join(", ")
            );
        }
        wheels
    }

    /// Step 1: `uv pip compile` of the dependencies; what it wrote (nothing when it cannot be
    /// asked or fails: the install reports what is wrong).
    async fn resolve(&self, uv: &Path, tmp: &Path) -> Option<String> {
        let sources = self.compile_sources()?;
        let out = tmp.join("kiln-prebuild-resolved.txt");
        let o = self
            .uv_pip_into(uv, "compile", &self.venv_python)
            .args(["--quiet", "--no-header", "--no-annotate", "-o"])
            .arg(&out)
            .args(sources)
            .echo(false)
            .run()
            .await
            .ok()?;
        if !o.success {
            tracing::debug!(
                "uv pip compile failed; uv builds the sdists:\n{}",
                o.tail(10)
            );
            return None;
        }
        // Written inside the sandbox (a backend may have run): read like any untrusted file.
        crate::untrusted_fs::read_text_or_warn(&out, MAX_PINS_FILE, "uv pip compile's output")
    }

    /// `uv pip compile`'s inputs: the dependencies' requirement and constraint files, and the
    /// project's `pyproject.toml` (with its extras) when it states its dependencies. `None`
    /// when the arguments are of another kind.
    fn compile_sources(&self) -> Option<Vec<OsString>> {
        let mut out = Vec::new();
        for (flag, file) in self.dep_files()? {
            if flag == "-c" {
                out.push(flag.into());
            }
            out.push(file.clone());
        }
        if let Some(extras) = self.project_extras() {
            let file = self.scope.cwd.join("pyproject.toml");
            let static_deps = PyProject::load(&file)
                .is_ok_and(|p| p.project.is_some() && !p.dynamic_dependencies());
            if static_deps && !self.dynamic_deps {
                out.push(file.into());
                for e in extras {
                    out.extend(["--extra".into(), e.into()]);
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// The dependencies' requirement (`-r`) and constraint (`-c`) files, in order; `None` when
    /// their arguments hold anything else.
    fn dep_files(&self) -> Option<Vec<(&'static str, &OsString)>> {
        let mut out = Vec::new();
        let mut args = self.deps.wheel_args.iter();
        while let Some(a) = args.next() {
            match a.to_str() {
                Some("-r") => out.push(("-r", args.next()?)),
                Some("-c") => out.push(("-c", args.next()?)),
                _ => return None,
            }
        }
        Some(out)
    }

    /// Step 2 for one sdist, in the shared environment of its build requirements (and of what
    /// its backend asks for, when it asks): its wheel's file name, now in the wheelhouse, or
    /// why not.
    async fn build_sdist(&self, uv: &Path, s: &Sdist, envs: &SharedEnvs) -> Result<String, String> {
        let file = s.src.join("pyproject.toml");
        let pyproject = match PyProject::load(&file) {
            Ok(p) => p,
            Err(_) if !file.exists() => PyProject::default(),
            Err(e) => return Err(e.to_string()),
        };
        let dir = envs.tmp.join("sdist-builds").join(&s.name);
        let mut build = Build {
            env: envs.get(self, uv, &pyproject.build_requires()).await?,
            source: Some(s.src.clone()),
            out: dir.join("out"),
            status: dir.join("status.json"),
            hooks: hooks_path(&envs.tmp),
            kind: Kind::Wheel,
        };
        let mut built = build.attempt(self, &pyproject, false).await;
        if let Ok(Built::Needs(more)) = built {
            // The environment of the build requirements and what the backend asks for,
            // shared the same way.
            let mut requires = pyproject.build_requires();
            requires.extend(more);
            build.env = envs.get(self, uv, &requires).await?;
            built = build.attempt(self, &pyproject, true).await;
        }
        match built.map_err(reason)? {
            Built::Wheel(wheel) => self.keep(&wheel, s),
            Built::Unsupported => Err("its build backend has no build_wheel".into()),
            Built::Needs(_) => Err("its build backend asked for requirements twice".into()),
        }
    }

    /// The package-source options of the dependencies' requirement and constraint files
    /// (`--index-url`, `--extra-index-url`, `--find-links`, `--no-index`), in a file of their
    /// own for the installs of build requirements (uv's builds take their requirements from the
    /// same sources as the install). Empty when there are none or it cannot be written.
    fn index_options(&self, tmp: &Path) -> Vec<OsString> {
        let mut lines = Vec::new();
        for (_, file) in self.dep_files().unwrap_or_default() {
            source_options(Path::new(file), 0, &mut lines);
        }
        if lines.is_empty() {
            return Vec::new();
        }
        let path = tmp.join("kiln-build-sources.txt");
        match std::fs::write(&path, lines.join("\n") + "\n") {
            Ok(()) => vec!["-r".into(), path.into()],
            Err(e) => {
                tracing::debug!("cannot write {}: {e}", path.display());
                Vec::new()
            }
        }
    }

    /// Step 3: the wheel into the wheelhouse, when it is the sdist's.
    fn keep(&self, wheel: &Path, s: &Sdist) -> Result<String, String> {
        let name = wheel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match WheelName::parse(&name) {
            Some(w) if w.project == s.name && w.version == s.version => {}
            _ => {
                return Err(format!(
                    "its backend built {name}, not {} {}",
                    s.name, s.version
                ))
            }
        }
        let dest = self.wheelhouse.join(&name);
        if dest.exists() {
            return Ok(name);
        }
        std::fs::rename(wheel, &dest)
            .or_else(|_| std::fs::copy(wheel, &dest).map(|_| ()))
            .map_err(|e| format!("cannot put {name} in the wheelhouse: {e}"))?;
        Ok(name)
    }

    /// The extras of the project's install argument (`<checkout>[a,b]`, editable or not), when
    /// the project is installed.
    fn project_extras(&self) -> Option<Vec<String>> {
        let checkout = self.scope.cwd.to_string_lossy();
        self.project.iter().find_map(|a| {
            let extras = match checkout_extras(a.to_str()?, &checkout)? {
                "" => "",
                r => r.strip_prefix('[')?.strip_suffix(']')?,
            };
            Some(
                extras
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_string)
                    .collect(),
            )
        })
    }
}

/// Build requirements come from the wheelhouse, the requirement files' package sources and the
/// index, as uv's builds take them.
const ONLINE: Sources = Sources {
    nothing_alongside: false,
    wheelhouse_only: false,
    offline: false,
};

/// Why a build failed, for a log line.
fn reason(e: BootstrapError) -> String {
    match e {
        BootstrapError::ProjectBuild { tail } => last_lines(&tail),
        e => last_lines(&e.to_string()),
    }
}

/// One build environment per set of build requirements, made when a build first needs it and
/// shared by the builds that need the same set (the hooks only read it). At a fixed place for
/// the set, `<work tmp>/build-envs/<digest>`, so its headers are on the same path every run.
struct SharedEnvs {
    tmp: PathBuf,
    install_args: Vec<OsString>,
    made: Mutex<BTreeMap<Vec<String>, Arc<EnvCell>>>,
}

/// A shared environment once made, or why it could not be made.
type EnvCell = OnceCell<Result<BuildEnv, String>>;

impl SharedEnvs {
    fn new(tmp: &Path, install_args: Vec<OsString>) -> SharedEnvs {
        SharedEnvs {
            tmp: tmp.to_path_buf(),
            install_args,
            made: Mutex::default(),
        }
    }

    /// The environment with `requires` in it, made by the first build that asks.
    async fn get(
        &self,
        i: &Installing<'_>,
        uv: &Path,
        requires: &[String],
    ) -> Result<BuildEnv, String> {
        let mut key = requires.to_vec();
        key.sort();
        let cell = match self.made.lock() {
            Ok(mut made) => made.entry(key.clone()).or_default().clone(),
            Err(_) => return Err("a build environment could not be made".into()),
        };
        let init = || async {
            let digest = Sha256::digest(key.join("\n").as_bytes());
            let name: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
            let env = BuildEnv {
                dir: self.tmp.join("build-envs").join(name),
                echo: false,
                install_args: self.install_args.clone(),
            };
            env.create(i).await.map_err(reason)?;
            env.install(i, uv, &key, ONLINE).await.map_err(reason)?;
            Ok(env)
        };
        cell.get_or_init(init).await.clone()
    }
}

/// Requirement files include each other at most this deep.
const MAX_INCLUDE_DEPTH: usize = 8;

/// The package-source option lines of the requirement file `file` and the files it includes
/// (`-r`, `-c`), a relative `--find-links` directory made absolute (uv reads it from the
/// file's directory).
fn source_options(file: &Path, depth: usize, out: &mut Vec<String>) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    let base = file.parent().unwrap_or(Path::new("."));
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        let (opt, value) = match line.split_once(|c: char| c == '=' || c.is_whitespace()) {
            Some((o, v)) => (o, v.trim()),
            None => (line, ""),
        };
        match opt {
            "-r" | "--requirement" | "-c" | "--constraint" if depth < MAX_INCLUDE_DEPTH => {
                source_options(&base.join(value), depth + 1, out)
            }
            "--no-index" => out.push(opt.to_string()),
            "-i" | "--index-url" | "--extra-index-url" if !value.is_empty() => {
                out.push(format!("{opt} {value}"))
            }
            "-f" | "--find-links" if !value.is_empty() => {
                let local = !value.contains("://") && !value.starts_with('$');
                let value = match local {
                    true => base.join(value).to_string_lossy().into_owned(),
                    false => value.to_string(),
                };
                out.push(format!("--find-links {value}"));
            }
            _ => {}
        }
    }
}

/// The `name==version` lines of `uv pip compile`'s output, names normalized (direct URLs,
/// editable and option lines are not pins).
fn pins(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.split(['#', ';']).next()?.trim();
            let (name, version) = l.split_once("==")?;
            let (name, version) = (name.trim(), version.trim());
            let plain = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-+!".contains(c))
            };
            (plain(name) && plain(version) && !name.starts_with('-'))
                .then(|| (normalize(name), version.to_string()))
        })
        .collect()
}

/// The one source tree uv unpacked for `name` `version` from an index or a find-links
/// location: `<uv_cache>/sdists-v*/index/*/<name>/<version>/*/src`. None when there is none,
/// or more than one (which one the install would use is uv's to say).
fn unpacked_sdist(uv_cache: &Path, name: &str, version: &str) -> Option<Sdist> {
    let mut found = Vec::new();
    for bucket in subdirs(uv_cache) {
        let versioned = bucket
            .file_name()?
            .to_string_lossy()
            .starts_with("sdists-v");
        if !versioned {
            continue;
        }
        for index in subdirs(&bucket.join("index")) {
            let dir = index.join(name).join(version);
            found.extend(subdirs(&dir).into_iter().map(|r| r.join("src")));
        }
    }
    found.retain(|src| src.is_dir());
    match found.as_slice() {
        [src] => Some(Sdist {
            name: name.to_string(),
            version: version.to_string(),
            weight: native_bytes(src),
            src: src.clone(),
        }),
        _ => None,
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Bytes of native source under `src` (see [`NATIVE`]), looking at a bounded number of files.
fn native_bytes(src: &Path) -> u64 {
    walkdir::WalkDir::new(src)
        .into_iter()
        .flatten()
        .take(MAX_WEIGHED_FILES)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            e.path()
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| NATIVE.contains(&x.to_ascii_lowercase().as_str()))
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The last lines of a failure, for a log line.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    tail.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_the_plain_name_version_lines() {
        let text = "Markup_Safe==3.0.2\n\
                    wrapt==2.5.2 ; python_version >= '3.8'\n\
                    -e file:///w/src\n\
                    pkg @ https://example.com/pkg-1.0.tar.gz\n\
                    --find-links vendor\n\
                    # a comment\n\
                    torch==2.9.0+cpu\n";
        assert_eq!(
            pins(text),
            vec![
                ("markup-safe".to_string(), "3.0.2".to_string()),
                ("wrapt".into(), "2.5.2".into()),
                ("torch".into(), "2.9.0+cpu".into()),
            ]
        );
    }

    #[test]
    fn the_requirement_files_package_sources_go_to_the_build_environments() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("ci")).unwrap();
        std::fs::write(
            d.path().join("requirements.txt"),
            "--no-index\n--find-links vendor  # local sdists\nwrapt==2.5.2\n-r ci/more.txt\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("ci/more.txt"),
            "-i https://pypi.example/simple\n--find-links=https://x.example/wheels\npytest\n",
        )
        .unwrap();
        let mut lines = Vec::new();
        source_options(&d.path().join("requirements.txt"), 0, &mut lines);
        assert_eq!(
            lines,
            vec![
                "--no-index".to_string(),
                format!("--find-links {}", d.path().join("vendor").display()),
                "-i https://pypi.example/simple".into(),
                "--find-links https://x.example/wheels".into(),
            ]
        );
    }

    #[test]
    fn the_one_unpacked_sdist_is_found_and_weighed_by_its_native_source() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("sdists-v11/index/abc/wrapt/2.5.2/rev1/src");
        std::fs::create_dir_all(src.join("src/wrapt")).unwrap();
        std::fs::write(src.join("src/wrapt/_wrappers.c"), vec![b'x'; 1000]).unwrap();
        std::fs::write(src.join("src/wrapt/__init__.py"), vec![b'x'; 5000]).unwrap();
        let s = unpacked_sdist(d.path(), "wrapt", "2.5.2").unwrap();
        assert_eq!((s.src, s.weight), (src, 1000));
        assert_eq!(unpacked_sdist(d.path(), "wrapt", "2.5.3"), None);
        // Two revisions: uv's to choose, not Kiln's.
        std::fs::create_dir_all(d.path().join("sdists-v11/index/def/wrapt/2.5.2/rev2/src"))
            .unwrap();
        assert_eq!(unpacked_sdist(d.path(), "wrapt", "2.5.2"), None);
    }
}

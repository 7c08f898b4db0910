//! Bootstrap stage: a fresh virtualenv with the project's requirements, compiling as little as
//! possible.
//!
//! The technique (see the seed article): build wheels with `pip wheel` into a persistent
//! wheelhouse, with ccache as the compiler, then install offline from the wheelhouse. On a warm run
//! the wheelhouse already holds every wheel, so nothing compiles and the install is seconds —
//! and with uv (creating the venv and installing) well under one.
//!
//! Why the venv is created `--without-pip` when pip installs: ensurepip costs ~6 s per venv, while
//! the host's pip (≥ 22.3) can install into any interpreter with `--python`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cache::key::KeyInputs;
use crate::config::{Config, Installer};
use crate::pipeline::{Paths, RunContext};
use crate::process::{Cmd, Output, ProcessError};
use crate::summary::{CcacheSummary, RestoreHit, WheelSummary};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("python interpreter {python:?} is not usable: {detail} (set `python` in kiln.yml or KILN_PYTHON)")]
    Python { python: String, detail: String },
    #[error("{python} has no pip ({detail}); pip is needed to build wheels (install python3-pip)")]
    NoPip { python: String, detail: String },
    #[error("requirement file {0} does not exist in the checkout")]
    MissingRequirements(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating the virtualenv failed:\n{0}")]
    Venv(String),
    #[error("building wheels failed (pip wheel exit {code}):\n{tail}")]
    WheelBuild { code: i32, tail: String },
    #[error("installing from the wheelhouse failed ({installer} exit {code}):\n{tail}")]
    Install {
        installer: String,
        code: i32,
        tail: String,
    },
    #[error(
        "offline: no wheel for `{requirement}` in {searched}; build it where the network \
             is reachable and bring it with `kiln wheelhouse export` / `import`, or drop --offline"
    )]
    OfflineMissing {
        requirement: String,
        searched: String,
    },
    #[error("bootstrap.command failed (exit {code}):\n{tail}")]
    Command { code: i32, tail: String },
}

/// What bootstrap produced, for the test and save stages and the summary.
#[derive(Debug, Clone, Default)]
pub struct BootstrapOutput {
    /// "uv", "pip" or "command".
    pub installer: String,
    pub wheels: WheelSummary,
    pub ccache: CcacheSummary,
    /// ccache stored new results in this run: its cache is worth saving.
    pub ccache_new_entries: bool,
    /// Environment for the test command (venv activated).
    pub test_env: Vec<(OsString, OsString)>,
    /// Seconds spent creating the venv, building wheels and installing.
    pub venv_seconds: f64,
    pub build_seconds: f64,
    pub install_seconds: f64,
}

/// The interpreter's identity, as the cache keys need it.
#[derive(Debug, Clone)]
pub struct PythonInfo {
    /// Absolute path of the interpreter.
    pub path: PathBuf,
    /// e.g. `cp311`.
    pub tag: String,
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `x86_64`.
    pub arch: String,
    /// The interpreter's scripts dir (where `pip install uv` puts uv).
    pub scripts: PathBuf,
    /// pip's (major, minor), when pip is importable.
    pub pip: Option<(u32, u32)>,
}

/// One interpreter start answers everything bootstrap needs to know (each start costs ~50 ms,
/// and `python -m pip --version` ~400 ms, on the warm path that is most of the budget).
const PY_PROBE: &str = "import sys, platform, sysconfig\n\
impl = {'cpython': 'cp', 'pypy': 'pp'}.get(sys.implementation.name, sys.implementation.name)\n\
print(sys.executable)\n\
print('%s%d%d' % (impl, sys.version_info[0], sys.version_info[1]))\n\
print(sys.platform)\n\
print(platform.machine())\n\
print(sysconfig.get_path('scripts'))\n\
try: import importlib.metadata as m; print(m.version('pip'))\n\
except Exception: print('none')";

pub async fn python_info(python: &str) -> Result<PythonInfo, BootstrapError> {
    let bad = |detail: String| BootstrapError::Python {
        python: python.to_string(),
        detail,
    };
    let out = Cmd::new(python)
        .args(["-c", PY_PROBE])
        .run()
        .await
        .map_err(|e| bad(e.to_string()))?;
    if !out.success {
        return Err(bad(out.tail(3)));
    }
    let lines: Vec<&str> = out.lines.iter().map(|s| s.trim()).collect();
    match lines.as_slice() {
        [path, tag, os, arch, scripts, pip, ..] => Ok(PythonInfo {
            path: PathBuf::from(path),
            tag: tag.to_string(),
            os: os.to_string(),
            arch: arch.to_string(),
            scripts: PathBuf::from(scripts),
            pip: parse_version(pip),
        }),
        _ => Err(bad(format!("unexpected probe output: {}", out.tail(4)))),
    }
}

/// "23.2.1" → (23, 2); anything else → None.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()
        .map(|m| {
            m.chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
        })
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    Some((major, minor))
}

/// `gcc-12.2.0` (from `$CC` or gcc), or `none` when there is no C compiler.
pub async fn compiler_id() -> String {
    let cc = std::env::var("CC").unwrap_or_else(|_| "gcc".into());
    let program = cc.split_whitespace().last().unwrap_or("gcc").to_string();
    let name = Path::new(&program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.clone());
    match Cmd::new(&program)
        .arg("-dumpfullversion")
        .arg("-dumpversion")
        .run()
        .await
    {
        Ok(out) if out.success => format!("{name}-{}", out.stdout_text().trim()),
        _ => "none".into(),
    }
}

/// The requirement and constraint files that exist, as (relative path, contents).
fn requirement_files(
    config: &Config,
    checkout: &Path,
) -> Result<Vec<(String, Vec<u8>)>, BootstrapError> {
    let default_only = config.requirements == Config::default().requirements;
    let mut files = Vec::new();
    for rel in config.requirements.iter().chain(&config.constraints) {
        let path = checkout.join(rel);
        match std::fs::read(&path) {
            Ok(body) => files.push((rel.display().to_string(), body)),
            // The default requirements.txt may be absent: a project with no dependencies.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && default_only => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BootstrapError::MissingRequirements(rel.clone()))
            }
            Err(source) => return Err(BootstrapError::Io { path, source }),
        }
    }
    Ok(files)
}

/// Inputs of this run's cache keys; also probes the interpreter (kept in `ctx.python`).
pub async fn key_inputs(ctx: &mut RunContext) -> Result<KeyInputs, BootstrapError> {
    let (py, compiler) = tokio::join!(python_info(&ctx.config.python), compiler_id());
    let py = py?;
    ctx.python = Some(py.clone());
    Ok(KeyInputs {
        os: py.os,
        arch: py.arch,
        python_tag: py.tag,
        compiler,
        requirement_files: requirement_files(&ctx.config, &ctx.paths.checkout)?,
        extra: ctx.config.cache.key_extra.clone(),
    })
}

/// ccache as the C/C++ compiler: a directory of `gcc`, `cc`, … symlinks to ccache put first on PATH.
struct Ccache {
    bin: PathBuf,
}

impl Ccache {
    /// `KILN_CCACHE_BIN` picks a ccache binary (empty = don't use ccache); else ccache on PATH.
    fn find() -> Option<Ccache> {
        match std::env::var_os("KILN_CCACHE_BIN") {
            Some(p) if p.is_empty() => None,
            Some(p) => which::which(&p).ok().map(|bin| Ccache { bin }),
            None => which::which("ccache").ok().map(|bin| Ccache { bin }),
        }
    }

    fn masquerade(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for name in [
            "cc",
            "gcc",
            "c++",
            "g++",
            "clang",
            "clang++",
            "x86_64-linux-gnu-gcc",
            "aarch64-linux-gnu-gcc",
        ] {
            let link = dir.join(name);
            if !link.exists() {
                std::os::unix::fs::symlink(&self.bin, &link)?;
            }
        }
        Ok(())
    }

    /// Environment that makes every compile go through this ccache dir, hitting across work dirs.
    fn env(&self, paths: &Paths, config: &Config) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = vec![
            ("CCACHE_DIR".into(), paths.ccache.clone().into()),
            // Absolute paths under the work dir become relative: other work dirs still hit.
            ("CCACHE_BASEDIR".into(), paths.workdir.clone().into()),
            ("CCACHE_COMPILERCHECK".into(), "content".into()),
            // pip builds each sdist in a fresh temp dir; the cwd must not be part of the hash.
            ("CCACHE_NOHASHDIR".into(), "1".into()),
            (
                "CCACHE_MAXSIZE".into(),
                config.cache.ccache.max_size.clone().into(),
            ),
        ];
        if let Some(remote) = &config.cache.ccache.remote {
            env.push(("CCACHE_REMOTE_STORAGE".into(), remote.into()));
        }
        env
    }

    async fn run(
        &self,
        env: &[(OsString, OsString)],
        args: &[&str],
    ) -> Result<Output, ProcessError> {
        Cmd::new(&self.bin)
            .args(args.iter().copied())
            .envs(env)
            .run()
            .await
    }

    async fn stats(&self, env: &[(OsString, OsString)]) -> CcacheSummary {
        let mut s = CcacheSummary {
            enabled: true,
            ..Default::default()
        };
        let Ok(out) = self.run(env, &["--print-stats"]).await else {
            return s;
        };
        for line in &out.lines {
            let mut it = line.split_whitespace();
            let (Some(k), Some(v)) = (it.next(), it.next()) else {
                continue;
            };
            let v: u64 = v.parse().unwrap_or(0);
            match k {
                "direct_cache_hit" | "preprocessed_cache_hit" => s.hits += v,
                "cache_miss" => s.misses += v,
                "remote_storage_hit" => s.remote_hits += v,
                _ => {}
            }
        }
        s
    }
}

/// Resolved installer.
#[derive(Debug, Clone)]
enum Tool {
    Uv(PathBuf),
    Pip,
}

/// Kiln's own tool dir (uv is installed there when it is not on PATH).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("KILN_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::cache::store::default_store_dir()
                .parent()
                .map(|p| p.join("tools"))
                .unwrap_or_else(|| PathBuf::from("/tmp/kiln-tools"))
        })
}

async fn find_or_install_uv(
    py: &PythonInfo,
    offline: bool,
    warnings: &mut Vec<String>,
) -> Option<PathBuf> {
    // The interpreter's own scripts dir first: PATH may hold a slow wrapper (pyenv shims).
    let beside = py.scripts.join("uv");
    if beside.is_file() {
        return Some(beside);
    }
    if let Ok(p) = which::which("uv") {
        return Some(p);
    }
    let python = &py.path;
    let target = tools_dir().join("uv");
    let bin = target.join("bin").join("uv");
    if bin.exists() {
        return Some(bin);
    }
    if offline {
        warnings.push("uv is not installed and --offline forbids fetching it: using pip".into());
        return None;
    }
    tracing::info!("uv not on PATH: installing it into {}", target.display());
    let out = Cmd::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&target)
        .arg("uv")
        .timeout(Some(Duration::from_secs(180)))
        .run()
        .await;
    match out {
        Ok(o) if o.success && bin.exists() => Some(bin),
        Ok(o) => {
            warnings.push(format!(
                "could not install uv (falling back to pip): {}",
                o.tail(2)
            ));
            None
        }
        Err(e) => {
            warnings.push(format!("could not install uv (falling back to pip): {e}"));
            None
        }
    }
}

/// What `pip wheel` reported.
#[derive(Debug, Default, PartialEq)]
struct WheelReport {
    built: Vec<String>,
    /// Wheel file names the resolution used (built, downloaded or already there).
    used: BTreeSet<String>,
    reused: u32,
}

fn parse_pip_wheel(lines: &[String]) -> WheelReport {
    let mut r = WheelReport::default();
    let file_name = |p: &str| {
        Path::new(p.trim())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    };
    for line in lines {
        let l = line.trim();
        if let Some(names) = l.strip_prefix("Successfully built ") {
            r.built.extend(names.split_whitespace().map(str::to_string));
        } else if let Some(p) = l.strip_prefix("File was already downloaded ") {
            r.reused += 1;
            r.used.extend(file_name(p));
        } else if let Some(p) = l.strip_prefix("Saved ") {
            r.used.extend(file_name(p));
        } else if let Some(rest) = l.strip_prefix("Created wheel for ") {
            if let Some(f) = rest.split("filename=").nth(1) {
                r.used
                    .extend(f.split_whitespace().next().map(str::to_string));
            }
        }
    }
    r
}

/// Number of packages an install reported.
fn parse_installed(lines: &[String]) -> u32 {
    for line in lines.iter().rev() {
        let l = line.trim();
        if let Some(names) = l.strip_prefix("Successfully installed ") {
            return names.split_whitespace().count() as u32;
        }
        // uv: "Installed 10 packages in 21ms"
        if let Some(rest) = l.strip_prefix("Installed ") {
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                return n;
            }
        }
    }
    0
}

/// Remove wheels the current requirements did not use, unless younger than `max_age`.
fn prune_wheelhouse(dir: &Path, used: &BTreeSet<String>, max_age: Option<Duration>) -> Vec<String> {
    let mut removed = Vec::new();
    if used.is_empty() {
        return removed; // nothing parsed: never guess
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".whl") || used.contains(&name) {
            continue;
        }
        let age = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if max_age.is_some_and(|max| age < max) {
            continue;
        }
        if std::fs::remove_file(e.path()).is_ok() {
            removed.push(name);
        }
    }
    removed.sort();
    removed
}

fn path_with(prefix: &[&Path]) -> OsString {
    let mut parts: Vec<PathBuf> = prefix.iter().map(|p| p.to_path_buf()).collect();
    if let Some(path) = std::env::var_os("PATH") {
        parts.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(parts).unwrap_or_default()
}

fn venv_bin(paths: &Paths) -> PathBuf {
    paths.venv.join("bin")
}

fn req_args(config: &Config, checkout: &Path) -> Vec<OsString> {
    let mut args = Vec::new();
    for r in &config.requirements {
        if checkout.join(r).exists() {
            args.push("-r".into());
            args.push(r.clone().into_os_string());
        }
    }
    for c in &config.constraints {
        args.push("-c".into());
        args.push(c.clone().into_os_string());
    }
    args
}

/// Build the fresh venv and install the requirements.
pub async fn bootstrap(ctx: &mut RunContext) -> Result<BootstrapOutput, BootstrapError> {
    let paths = ctx.paths.clone();
    let config = ctx.config.clone();
    let py = match ctx.python.clone() {
        Some(py) => py,
        None => python_info(&config.python).await?,
    };

    let mut warnings = Vec::new();
    let offline = ctx.opts.offline;

    // ccache: the compiler for every C/C++ build below.
    let ccache = Ccache::find();
    let masq = paths.tmp.join("ccache-bin");
    let mut build_env: Vec<(OsString, OsString)> = vec![
        ("TMPDIR".into(), paths.tmp.clone().into()),
        ("PIP_DISABLE_PIP_VERSION_CHECK".into(), "1".into()),
        ("PIP_NO_INPUT".into(), "1".into()),
    ];
    // pip's and uv's own caches live in the work dir: the wheelhouse (and, when enabled, the
    // cached pip download dir) is the only thing a run inherits, so cold means cold.
    build_env.push(("PIP_CACHE_DIR".into(), paths.pip_cache.clone().into()));
    build_env.push(("UV_CACHE_DIR".into(), paths.tmp.join("uv-cache").into()));
    if offline {
        build_env.push(("PIP_NO_INDEX".into(), "1".into()));
        build_env.push(("UV_OFFLINE".into(), "1".into()));
    }
    let mut path_prefix: Vec<&Path> = Vec::new();
    match &ccache {
        Some(c) => match c.masquerade(&masq) {
            Ok(()) => {
                build_env.extend(c.env(&paths, &config));
                path_prefix.push(&masq);
                let _ = c.run(&build_env, &["--zero-stats"]).await;
            }
            Err(e) => warnings.push(format!("cannot set up ccache in {}: {e}", masq.display())),
        },
        None => warnings.push(
            "ccache is not installed: C extensions compile without a compile cache \
             (install ccache to make rebuilds fast)"
                .into(),
        ),
    }
    build_env.push(("PATH".into(), path_with(&path_prefix)));

    let started = std::time::Instant::now();
    let mut out = BootstrapOutput::default();

    // 1. The venv.
    let tool = if config.bootstrap.command.is_some() {
        None
    } else {
        match config.bootstrap.installer {
            Installer::Pip => Some(Tool::Pip),
            Installer::Uv => match find_or_install_uv(&py, offline, &mut warnings).await {
                Some(uv) => Some(Tool::Uv(uv)),
                None => {
                    return Err(BootstrapError::Install {
                        installer: "uv".into(),
                        code: -1,
                        tail: "bootstrap.installer is `uv` but uv is not on PATH and could not be installed".into(),
                    })
                }
            },
            Installer::Auto => Some(match find_or_install_uv(&py, offline, &mut warnings).await {
                Some(uv) => Tool::Uv(uv),
                None => Tool::Pip,
            }),
        }
    };
    // The host pip installs into a pip-less venv when it is new enough (saves ensurepip's ~6 s).
    let host_pip = match &tool {
        Some(Tool::Pip) => py.pip.is_some_and(|v| v >= (22, 3)),
        _ => false,
    };
    let venv_cmd = match &tool {
        Some(Tool::Uv(uv)) => Cmd::new(uv)
            .args(["venv", "--quiet", "--python"])
            .arg(&py.path)
            .arg(&paths.venv),
        Some(Tool::Pip) if host_pip => Cmd::new(&py.path)
            .args(["-m", "venv", "--without-pip"])
            .arg(&paths.venv),
        _ => Cmd::new(&py.path).args(["-m", "venv"]).arg(&paths.venv),
    };
    let v = venv_cmd.envs(&build_env).run().await?;
    if !v.success {
        return Err(BootstrapError::Venv(v.tail(20)));
    }
    out.venv_seconds = started.elapsed().as_secs_f64();
    let venv_python = venv_bin(&paths).join("python");
    let bin = venv_bin(&paths);
    let mut test_env: Vec<(OsString, OsString)> = vec![
        ("VIRTUAL_ENV".into(), paths.venv.clone().into()),
        ("PATH".into(), path_with(&[&bin])),
    ];

    let wheelhouse_exact = ctx
        .summary
        .cache("wheelhouse")
        .is_some_and(|c| c.restore == RestoreHit::Exact);

    match tool {
        None => {
            // The project's own bootstrap command, with the same environment.
            let command = config.bootstrap.command.clone().unwrap_or_default();
            let before = list_wheels(&paths.wheelhouse);
            let mut env = build_env.clone();
            let wh = paths.wheelhouse.clone().into_os_string();
            env.extend([
                ("VIRTUAL_ENV".into(), paths.venv.clone().into()),
                ("PATH".into(), path_with(&[&bin, &masq])),
                ("PIP_FIND_LINKS".into(), wh.clone()),
                ("PIP_WHEEL_DIR".into(), wh.clone()),
                ("KILN_WHEELHOUSE".into(), wh),
                ("KILN_VENV".into(), paths.venv.clone().into()),
            ]);
            tracing::info!("$ {command}");
            let o = Cmd::shell(&command)
                .cwd(&paths.checkout)
                .envs(&env)
                .echo(true)
                .run()
                .await?;
            if !o.success {
                return Err(BootstrapError::Command {
                    code: o.code.unwrap_or(-1),
                    tail: o.tail(30),
                });
            }
            let after = list_wheels(&paths.wheelhouse);
            out.installer = "command".into();
            out.wheels.built = after.difference(&before).count() as u32;
            out.wheels.built_names = after.difference(&before).cloned().collect();
            out.wheels.reused = after.intersection(&before).count() as u32;
        }
        Some(tool) => {
            let installer = match &tool {
                Tool::Uv(_) => "uv",
                Tool::Pip => "pip",
            };
            out.installer = installer.into();
            let reqs = req_args(&config, &paths.checkout);
            let install = |tool: &Tool| {
                let base = match tool {
                    Tool::Uv(uv) => Cmd::new(uv)
                        .args(["pip", "install", "--python"])
                        .arg(&venv_python),
                    // Like uv, pip leaves bytecode to the first import: compiling every module
                    // of every wheel up front doubles a warm install.
                    Tool::Pip if host_pip => Cmd::new(&py.path)
                        .args(["-m", "pip", "--python"])
                        .arg(&venv_python)
                        .args(["install", "--no-compile"]),
                    Tool::Pip => {
                        Cmd::new(&venv_python).args(["-m", "pip", "install", "--no-compile"])
                    }
                };
                base.args(["--no-index", "--find-links"])
                    .arg(&paths.wheelhouse)
                    .args(reqs.clone())
                    .cwd(&paths.checkout)
                    .envs(&build_env)
                    .echo(true)
            };
            let mut installed = None;
            if reqs.is_empty() {
                installed = Some(0);
            } else if offline {
                // Only wheels already here; a missing one is named, nothing is built.
                let t = std::time::Instant::now();
                let extra = crate::wheelhouse::offline::install_args(&paths.wheelhouse);
                let o = install(&tool).args(extra).run().await?;
                out.install_seconds = t.elapsed().as_secs_f64();
                if !o.success {
                    let why = crate::wheelhouse::offline::explain(&o.lines, &paths.wheelhouse);
                    return Err(match why {
                        Some((requirement, searched)) => BootstrapError::OfflineMissing {
                            requirement,
                            searched,
                        },
                        None => BootstrapError::Install {
                            installer: installer.into(),
                            code: o.code.unwrap_or(-1),
                            tail: o.tail(30),
                        },
                    });
                }
                installed = Some(parse_installed(&o.lines));
            } else if wheelhouse_exact {
                // Same requirements as the run that saved this wheelhouse: every wheel is there.
                let t = std::time::Instant::now();
                let o = install(&tool).run().await?;
                out.install_seconds = t.elapsed().as_secs_f64();
                if o.success {
                    installed = Some(parse_installed(&o.lines));
                } else {
                    warnings.push("the restored wheelhouse lacks wheels for these requirements: building them".into());
                }
            }
            if installed.is_none() {
                // pip builds the wheels, whichever tool installs them.
                if py.pip.is_none() {
                    return Err(BootstrapError::NoPip {
                        python: py.path.display().to_string(),
                        detail: "`import pip` failed".into(),
                    });
                }
                let t = std::time::Instant::now();
                let o = Cmd::new(&py.path)
                    .args(["-m", "pip", "wheel", "--wheel-dir"])
                    .arg(&paths.wheelhouse)
                    .arg("--find-links")
                    .arg(&paths.wheelhouse)
                    .args(reqs.clone())
                    .cwd(&paths.checkout)
                    .envs(&build_env)
                    .echo(true)
                    .run()
                    .await?;
                if !o.success {
                    return Err(BootstrapError::WheelBuild {
                        code: o.code.unwrap_or(-1),
                        tail: o.tail(40),
                    });
                }
                out.build_seconds = t.elapsed().as_secs_f64();
                let report = parse_pip_wheel(&o.lines);
                out.wheels.built = report.built.len() as u32;
                out.wheels.built_names = report.built.clone();
                out.wheels.reused = report.reused;
                let removed = prune_wheelhouse(
                    &paths.wheelhouse,
                    &report.used,
                    config.cache.wheelhouse.max_age,
                );
                if !removed.is_empty() {
                    tracing::info!(
                        "pruned {} unused wheel(s): {}",
                        removed.len(),
                        removed.join(", ")
                    );
                }
                let t = std::time::Instant::now();
                let o = install(&tool).run().await?;
                out.install_seconds = t.elapsed().as_secs_f64();
                if !o.success {
                    return Err(BootstrapError::Install {
                        installer: installer.into(),
                        code: o.code.unwrap_or(-1),
                        tail: o.tail(30),
                    });
                }
            } else if let Some(n) = installed {
                out.wheels.reused = n;
            }
        }
    }

    if let Some(c) = &ccache {
        out.ccache = c.stats(&build_env).await;
        out.ccache_new_entries = out.ccache.misses > 0;
    }
    test_env.push(("KILN_WHEELHOUSE".into(), paths.wheelhouse.clone().into()));
    out.test_env = test_env;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(out)
}

fn list_wheels(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".whl"))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    #[test]
    fn parses_pip_wheel_output() {
        let r = parse_pip_wheel(&lines(
            "Processing ./vendor/pytest-9.2.0-py3-none-any.whl\n\
             Saved /w/wheelhouse/pytest-9.2.0-py3-none-any.whl\n\
               File was already downloaded /w/wheelhouse/six-1.16.0-py2.py3-none-any.whl\n\
               Created wheel for fastsum: filename=fastsum-1.0-cp311-cp311-linux_x86_64.whl size=9 sha256=ab\n\
             Successfully built fastsum vecmath\n",
        ));
        assert_eq!(r.built, vec!["fastsum", "vecmath"]);
        assert_eq!(r.reused, 1);
        assert!(r.used.contains("fastsum-1.0-cp311-cp311-linux_x86_64.whl"));
        assert!(r.used.contains("pytest-9.2.0-py3-none-any.whl"));
        assert!(r.used.contains("six-1.16.0-py2.py3-none-any.whl"));
    }

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("23.2.1"), Some((23, 2)));
        assert_eq!(parse_version("24.0"), Some((24, 0)));
        assert_eq!(parse_version("25.1rc1"), Some((25, 1)));
        assert_eq!(parse_version("none"), None);
    }

    #[tokio::test]
    async fn probes_the_interpreter_once_for_everything() {
        let py = python_info("python3").await.unwrap();
        assert!(py.path.is_absolute());
        assert!(py.tag.starts_with("cp3"), "{}", py.tag);
        assert!(py.scripts.is_dir(), "{}", py.scripts.display());
        assert!(
            py.pip.is_some(),
            "pip is importable in the test interpreter"
        );
        let err = python_info("kiln-no-such-python").await.unwrap_err();
        assert!(err.to_string().contains("kiln-no-such-python"), "{err}");
    }

    #[test]
    fn parses_install_counts() {
        assert_eq!(
            parse_installed(&lines("Successfully installed a-1 b-2 c-3")),
            3
        );
        assert_eq!(
            parse_installed(&lines("Resolved 9 packages\nInstalled 9 packages in 12ms")),
            9
        );
    }

    #[test]
    fn prune_keeps_used_and_young_wheels() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "used-1-py3-none-any.whl",
            "old-1-py3-none-any.whl",
            "notes.txt",
        ] {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        let used: BTreeSet<String> = ["used-1-py3-none-any.whl".to_string()].into();
        // A generous age limit keeps the unused (but young) wheel.
        assert!(prune_wheelhouse(d.path(), &used, Some(Duration::from_secs(3600))).is_empty());
        // No limit: unused wheels go, other files stay.
        assert_eq!(
            prune_wheelhouse(d.path(), &used, None),
            vec!["old-1-py3-none-any.whl"]
        );
        assert!(d.path().join("used-1-py3-none-any.whl").exists());
        assert!(d.path().join("notes.txt").exists());
        // Nothing parsed: nothing removed.
        assert!(prune_wheelhouse(d.path(), &BTreeSet::new(), None).is_empty());
    }
}

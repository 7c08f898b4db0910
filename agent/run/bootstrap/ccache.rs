//! ccache as the compiler of every C/C++ build in the bootstrap: a directory of `gcc`, `cc`, …
//! symlinks to ccache first on PATH, and the environment that makes compiles hit across work
//! dirs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::settings::Config;
use crate::summary::CcacheSummary;

use crate::run::build_env;
use crate::run::workdir::Paths;
use crate::sandbox::Trust;

/// ccache as the C/C++ compiler: a directory of `gcc`, `cc`, … symlinks to ccache put first on PATH.
pub struct Ccache {
    bin: PathBuf,
}

impl Ccache {
    /// `KILN_CCACHE_BIN` (`ccache_bin`) picks a ccache binary (empty = don't use ccache); else
    /// ccache on PATH.
    pub fn find(ccache_bin: Option<&str>) -> Option<Ccache> {
        match ccache_bin {
            Some("") => None,
            Some(p) => which::which(p).ok().map(|bin| Ccache { bin }),
            None => which::which("ccache").ok().map(|bin| Ccache { bin }),
        }
    }

    pub fn masquerade(&self, dir: &Path) -> std::io::Result<()> {
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
    pub fn env(&self, paths: &Paths, config: &Config) -> Vec<(OsString, OsString)> {
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
        env.push((
            "CCACHE_IGNOREOPTIONS".into(),
            build_env_includes(paths).into(),
        ));
        env.extend(depend_mode(std::env::var_os("CPPFLAGS")));
        if let Some(remote) = &config.cache.ccache.remote {
            env.push(("CCACHE_REMOTE_STORAGE".into(), remote.into()));
        }
        env.push(("CCACHE_STATSLOG".into(), stats_log(paths).into()));
        env
    }
}

/// ccache's depend mode, with the `-MD` it needs appended to `CPPFLAGS` (the caller's, kept):
/// setuptools, meson and autotools pass `CPPFLAGS` to every compile, and cmake and meson pass
/// `-MD` themselves. On a miss, ccache's default modes run the preprocessor before the
/// compiler to hash its output: 45 to 130 ms a C file here (most of it `Python.h`), more for
/// C++. In depend mode a miss only compiles, then hashes the headers the compiler's dependency
/// file lists. A hit is the direct mode's, as before; depend mode has no preprocessor fallback,
/// which is why every compile Kiln runs must be able to hit directly (see
/// [`build_env_includes`]).
fn depend_mode(cppflags: Option<OsString>) -> Vec<(OsString, OsString)> {
    let mut cppflags = cppflags.unwrap_or_default();
    if !cppflags.is_empty() {
        cppflags.push(" ");
    }
    cppflags.push("-MD");
    vec![
        ("CCACHE_DEPEND".into(), "1".into()),
        ("CPPFLAGS".into(), cppflags),
    ]
}

/// How deep below the work dir a compile may run and still have uv's build environment include
/// left out of its hash (see [`build_env_includes`]).
const MAX_BUILD_DEPTH: usize = 8;
/// How deep below uv's cache an sdist's compile may run (`sdists-v*/index/<hash>/<name>/
/// <version>/<id>/src` is 7) and still have it left out.
const MAX_SDIST_DEPTH: usize = 12;

/// `CCACHE_IGNOREOPTIONS` for uv's build environments. uv builds the project and every sdist in
/// a fresh build environment at a random path (`<uv cache>/builds-v0/.tmpXXXXXX`), and
/// setuptools adds that environment's `include` dir to every compile. Hashed, that option made
/// ccache's direct mode miss on every run, so each warm compile paid the preprocessor. ccache
/// matches the option after making it relative to the compile's directory (`CCACHE_BASEDIR` is
/// the work dir), hence one prefix per depth, plus the absolute one. An sdist compiles inside
/// uv's cache, where the relative path climbs to `builds-*` without passing the work dir: one
/// more prefix per depth there (without them, every sdist compile in a new work dir missed the
/// direct mode and ran the preprocessor to hit). A header actually included
/// from there is still in the direct-mode manifest, under its random path: that compile misses
/// and falls back to the preprocessor as before. What direct mode never notices anywhere, a
/// header newly put in an include dir ahead of the one a cached result used, is no likelier
/// here: the dir holds only what the build requirements install.
fn build_env_includes(paths: &Paths) -> String {
    let builds = crate::run::build_env::uv_cache(paths).join("builds-");
    let rel = builds.strip_prefix(&paths.workdir).unwrap_or(&builds);
    let mut options = vec![format!("-I{}*", builds.display())];
    for depth in 1..=MAX_BUILD_DEPTH {
        options.push(format!("-I{}{}*", "../".repeat(depth), rel.display()));
    }
    for depth in 1..=MAX_SDIST_DEPTH {
        options.push(format!("-I{}builds-*", "../".repeat(depth)));
    }
    options.join(" ")
}

/// Where ccache logs each compile's counters in this run (`CCACHE_STATSLOG`). Reading this file
/// at the end tells what this run compiled without a ccache process, and without zeroing the
/// restored cache's counters first (`ccache --zero-stats` rewrote every stats file of the fresh
/// cache dir: ~0.4 s of a warm run).
pub fn stats_log(paths: &Paths) -> PathBuf {
    paths.tmp.join("ccache-stats.log")
}

/// ccache's counters for calls it cannot cache (`ccache -s` counts them as "uncacheable").
const UNCACHEABLE: [&str; 19] = [
    "autoconf_test",
    "bad_compiler_arguments",
    "called_for_link",
    "called_for_preprocessing",
    "compile_failed",
    "compiler_produced_empty_output",
    "compiler_produced_no_output",
    "compiler_produced_stdout",
    "could_not_use_modules",
    "could_not_use_precompiled_header",
    "disabled",
    "multiple_source_files",
    "no_input_file",
    "output_to_stdout",
    "preprocessor_error",
    "unsupported_code_directive",
    "unsupported_compiler_option",
    "unsupported_environment_variable",
    "unsupported_source_language",
];

/// The largest stats log read: ~60 bytes a compile, so room for a million compiles.
const MAX_STATS_LOG: u64 = 64 << 20;

/// This run's hits, misses and uncacheable calls, from the stats log (no log: nothing was
/// compiled). `sources` are the directories Kiln builds from (the checkout, local path
/// dependencies, the work dir): a miss counts as kept when its source is still there in one
/// of them after the bootstrap (see [`still_there`]).
pub fn stats(paths: &Paths, sources: &[PathBuf]) -> CcacheSummary {
    let mut s = CcacheSummary {
        enabled: true,
        ..Default::default()
    };
    // ccache writes the log inside the sandbox: the project's code may have replaced it.
    let Some(log) = crate::untrusted_fs::read_text_or_warn(
        &stats_log(paths),
        MAX_STATS_LOG,
        "the ccache stats log",
    ) else {
        return s.with_hit_rate();
    };
    let mut source = "";
    for line in log.lines().map(str::trim) {
        if let Some(path) = line.strip_prefix('#') {
            source = path.trim();
            continue;
        }
        match line {
            "direct_cache_hit" => {
                s.hits += 1;
                s.direct_hits += 1;
            }
            "preprocessed_cache_hit" => s.hits += 1,
            "cache_miss" => {
                s.misses += 1;
                if still_there(source, sources) {
                    s.kept_misses += 1;
                }
            }
            "remote_storage_hit" => s.remote_hits += 1,
            c if UNCACHEABLE.contains(&c) => s.uncacheable += 1,
            _ => {}
        }
    }
    s.with_hit_rate()
}

/// Whether a compiled source is still there after the bootstrap, so a later run compiles the
/// same path again and hits. A compile probe (setup.py's `has_function`, feature checks) writes
/// a randomly named file in a temp dir and deletes it: its result can never be hit, and must
/// not make every warm run save the ccache again. The log names the source as the compiler got
/// it, made relative to the compile's directory when under `CCACHE_BASEDIR`; that directory is
/// not logged, so a relative path is tried under each source directory, as it is and with its
/// leading `..` (the climb out of a build dir) removed.
pub fn still_there(source: &str, sources: &[PathBuf]) -> bool {
    use std::path::Component;
    let path = Path::new(source);
    if source.is_empty() {
        return false;
    }
    if path.is_absolute() {
        return path.is_file();
    }
    let below: PathBuf = path
        .components()
        .skip_while(|c| matches!(c, Component::ParentDir | Component::CurDir))
        .collect();
    sources
        .iter()
        .any(|dir| dir.join(path).is_file() || dir.join(&below).is_file())
}

/// Put ccache in front of the compilers for `env`: returns the directory to put first on PATH,
/// or a warning when compiles will go uncached.
pub async fn enable(
    ccache: Option<&Ccache>,
    paths: &Paths,
    config: &Config,
    env: &mut Vec<(OsString, OsString)>,
) -> Result<PathBuf, String> {
    let masq = paths.tmp.join("ccache-bin");
    let Some(c) = ccache else {
        return Err(
            "ccache is not installed: C extensions compile without a compile cache \
             (install ccache to make rebuilds fast)"
                .into(),
        );
    };
    match c.masquerade(&masq) {
        Ok(()) => {
            env.extend(c.env(paths, config));
            Ok(masq)
        }
        Err(e) => Err(format!("cannot set up ccache in {}: {e}", masq.display())),
    }
}

/// The build environment: the work dir's variables, ccache in front of the compilers, PATH.
pub async fn build_env(
    ccache: Option<&Ccache>,
    paths: &Paths,
    config: &Config,
    offline: bool,
    trust: Trust,
    warnings: &mut Vec<String>,
) -> Vec<(OsString, OsString)> {
    let mut env = build_env::build_env(paths, offline);
    let prefix = match enable(ccache, paths, config, &mut env).await {
        Ok(dir) => Some(dir),
        Err(w) => {
            warnings.push(w);
            None
        }
    };
    let prefix: Vec<&Path> = prefix.iter().map(|p| p.as_path()).collect();
    env.push(("PATH".into(), build_env::path_with(&prefix)));
    if trust == Trust::Untrusted {
        let before = env.len();
        env.retain(|(k, _)| k != "CCACHE_REMOTE_STORAGE");
        if env.len() != before {
            warnings.push(
                "untrusted build: the ccache remote is not used (its code could write to it)"
                    .into(),
            );
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_this_runs_compiles_from_the_log() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::new(d.path());
        std::fs::create_dir_all(&paths.tmp).unwrap();
        let none = stats(&paths, &[]);
        assert_eq!(none.hits + none.misses, 0, "no log: nothing compiled");
        assert_eq!(none.hit_rate, None);
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("lib")).unwrap();
        std::fs::write(src.join("lib/a.c"), "int a;").unwrap();
        // As ccache 4 writes it: a comment naming the source, then one counter per line.
        std::fs::write(
            stats_log(&paths),
            "# lib/a.c\ncache_miss\ndirect_cache_miss\nlocal_storage_miss\npreprocessed_cache_miss\n\
             # lib/a.c\ndirect_cache_hit\nlocal_storage_hit\n\
             # src/b.c\npreprocessed_cache_hit\nremote_storage_hit\n\
             # ../tmp/tmpk3x9q1zz/clock_gettimeab12cd.c\ncache_miss\n\
             # lib/a.o\ncalled_for_link\n# conftest.c\nunsupported_compiler_option\n",
        )
        .unwrap();
        let s = stats(&paths, &[src.clone(), d.path().to_path_buf()]);
        assert!(s.enabled);
        assert_eq!((s.hits, s.misses, s.remote_hits), (2, 2, 1));
        assert_eq!(
            s.direct_hits, 1,
            "a.c's second compile, without the preprocessor"
        );
        assert_eq!(s.uncacheable, 2, "the link and the unsupported option");
        assert_eq!(s.hit_rate, Some(50.0));
        assert_eq!(s.kept_misses, 1, "the probe's source is gone: {s:?}");
    }

    #[test]
    fn depend_mode_adds_md_to_the_callers_cppflags() {
        let flags = |v: Option<&str>| {
            depend_mode(v.map(OsString::from))
                .into_iter()
                .find(|(k, _)| k == "CPPFLAGS")
                .map(|(_, v)| v)
        };
        assert_eq!(flags(None), Some("-MD".into()));
        assert_eq!(flags(Some("")), Some("-MD".into()));
        assert_eq!(
            flags(Some("-DX=1 -I/opt/inc")),
            Some("-DX=1 -I/opt/inc -MD".into())
        );
    }

    #[test]
    fn a_source_is_found_below_a_build_dir_climb() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("pkg")).unwrap();
        std::fs::write(d.path().join("pkg/x.c"), "").unwrap();
        let dirs = [d.path().to_path_buf()];
        assert!(still_there("pkg/x.c", &dirs));
        assert!(
            still_there("../../pkg/x.c", &dirs),
            "from a build dir below"
        );
        assert!(still_there(
            &d.path().join("pkg/x.c").display().to_string(),
            &[]
        ));
        assert!(!still_there("../tmpabc/x.c", &dirs));
        assert!(!still_there("", &dirs));
    }
}

//! ccache as the compiler of every C/C++ build in the bootstrap: a directory of `gcc`, `cc`, …
//! symlinks to ccache first on PATH, and the environment that makes compiles hit across work
//! dirs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::settings::Config;
use crate::summary::CcacheSummary;

use super::super::workdir::Paths;

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
        if let Some(remote) = &config.cache.ccache.remote {
            env.push(("CCACHE_REMOTE_STORAGE".into(), remote.into()));
        }
        env.push(("CCACHE_STATSLOG".into(), stats_log(paths).into()));
        env
    }
}

/// Where ccache logs each compile's counters in this run (`CCACHE_STATSLOG`). Reading this file
/// at the end tells what this run compiled without a ccache process, and without zeroing the
/// restored cache's counters first (`ccache --zero-stats` rewrote every stats file of the fresh
/// cache dir: ~0.4 s of a warm run).
pub fn stats_log(paths: &Paths) -> PathBuf {
    paths.tmp.join("ccache-stats.log")
}

/// This run's hits and misses, from the stats log (no log: nothing was compiled).
pub fn stats(paths: &Paths) -> CcacheSummary {
    let mut s = CcacheSummary {
        enabled: true,
        ..Default::default()
    };
    let Ok(log) = std::fs::read_to_string(stats_log(paths)) else {
        return s;
    };
    for counter in log.lines().map(str::trim) {
        match counter {
            "direct_cache_hit" | "preprocessed_cache_hit" => s.hits += 1,
            "cache_miss" => s.misses += 1,
            "remote_storage_hit" => s.remote_hits += 1,
            _ => {}
        }
    }
    s
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_this_runs_compiles_from_the_log() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::new(d.path());
        std::fs::create_dir_all(&paths.tmp).unwrap();
        assert_eq!(
            stats(&paths).hits + stats(&paths).misses,
            0,
            "no log: nothing compiled"
        );
        // As ccache 4 writes it: a comment naming the source, then one counter per line.
        std::fs::write(
            stats_log(&paths),
            "# src/a.c\ncache_miss\ndirect_cache_miss\nlocal_storage_miss\npreprocessed_cache_miss\n\
             # src/a.c\ndirect_cache_hit\nlocal_storage_hit\n\
             # src/b.c\npreprocessed_cache_hit\nremote_storage_hit\n",
        )
        .unwrap();
        let s = stats(&paths);
        assert!(s.enabled);
        assert_eq!((s.hits, s.misses, s.remote_hits), (2, 1, 1));
    }
}

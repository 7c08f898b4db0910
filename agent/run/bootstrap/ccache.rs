//! ccache as the compiler of every C/C++ build in the bootstrap: a directory of `gcc`, `cc`, …
//! symlinks to ccache first on PATH, and the environment that makes compiles hit across work
//! dirs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::process::{Cmd, Output, ProcessError};
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
        env
    }

    pub async fn run(
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

    pub async fn stats(&self, env: &[(OsString, OsString)]) -> CcacheSummary {
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
            let _ = c.run(env, &["--zero-stats"]).await;
            Ok(masq)
        }
        Err(e) => Err(format!("cannot set up ccache in {}: {e}", masq.display())),
    }
}

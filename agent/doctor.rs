//! `kiln doctor`: check that this machine can run builds, and say what to fix.

use std::path::Path;

use crate::cache::Store;
use crate::process::Cmd;
use crate::sandbox::BwrapBin;
use crate::settings::file::Config;
use crate::settings::{Machine, StoreSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
}

async fn version(program: &str, args: &[&str]) -> Option<String> {
    let out = Cmd::new(program)
        .args(args.iter().copied())
        .read_whole(crate::process::PARSED_OUTPUT_LIMIT)
        .run()
        .await
        .ok()?;
    out.success.then(|| {
        out.lines
            .first()
            .cloned()
            .unwrap_or_default()
            .trim()
            .to_string()
    })
}

fn check(name: &'static str, found: Option<String>, missing: Level, hint: &str) -> Check {
    match found {
        Some(v) => Check {
            name,
            level: Level::Ok,
            detail: v,
        },
        None => Check {
            name,
            level: missing,
            detail: hint.to_string(),
        },
    }
}

/// Run every check. `config` is the kiln.yml to validate (if it exists), `store_url` the store.
/// Is the config valid? Returns the check and the config to probe the tools with.
fn config_check(config: &Path) -> (Check, Config) {
    match Config::load(config) {
        Ok(c) => {
            let detail = if config.exists() {
                format!("{} is valid", config.display())
            } else {
                format!("{} absent: defaults", config.display())
            };
            let check = Check {
                name: "config",
                level: Level::Ok,
                detail,
            };
            (check, c)
        }
        Err(e) => {
            let check = Check {
                name: "config",
                level: Level::Fail,
                detail: e.to_string(),
            };
            (check, Config::default())
        }
    }
}

pub async fn run(config: &Path, store_url: &str, machine: &Machine) -> Vec<Check> {
    let (config_check, cfg) = config_check(config);
    let mut checks = vec![config_check];
    checks.push(check(
        "git",
        version("git", &["--version"]).await,
        Level::Fail,
        "git not found: install git",
    ));
    checks.push(check(
        "python",
        version(&cfg.python, &["--version"]).await,
        Level::Fail,
        "interpreter not found: set `python` in kiln.yml or KILN_PYTHON",
    ));
    checks.push(check(
        "pip",
        version(&cfg.python, &["-m", "pip", "--version"]).await,
        Level::Fail,
        "pip missing: install python3-pip (pip builds the wheels)",
    ));
    let uv_tools = crate::settings::tools_dir(&crate::settings::process_env).join("uv/bin/uv");
    let uv = match version("uv", &["--version"]).await {
        Some(v) => Some(v),
        None => version(&uv_tools.to_string_lossy(), &["--version"]).await,
    };
    checks.push(check(
        "uv",
        uv,
        Level::Warn,
        "uv not found: installer `auto` will try to install it, else use pip (slower installs)",
    ));
    checks.push(check(
        "ccache",
        version("ccache", &["--version"]).await,
        Level::Warn,
        "ccache not found: C extensions compile uncached (apt-get install ccache)",
    ));
    checks.push(check(
        "compiler",
        version("gcc", &["--version"]).await,
        Level::Warn,
        "gcc not found: sdists with C extensions cannot build",
    ));
    checks.push(sandbox_check(&machine.bwrap));
    checks.push(store_check(store_url, &machine.store).await);
    checks
}

/// Can the project's code be sandboxed here (bubblewrap installed and able to create
/// namespaces)? Without it `--sandbox auto` runs the project's code unsandboxed.
fn sandbox_check(bwrap: &BwrapBin) -> Check {
    match crate::sandbox::check(bwrap) {
        Ok(bin) => Check {
            name: "sandbox",
            level: Level::Ok,
            detail: format!("{} can sandbox the project's code", bin.display()),
        },
        Err(e) => Check {
            name: "sandbox",
            level: Level::Warn,
            detail: format!(
                "{}: `--sandbox auto` runs the project's code unsandboxed",
                crate::sandbox::unsandboxed_reason(&e)
            ),
        },
    }
}

async fn store_check(url: &str, settings: &StoreSettings) -> Check {
    let fail = |detail: String| Check {
        name: "store",
        level: Level::Fail,
        detail,
    };
    let store = match Store::open(url, settings) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let probe = format!("doctor/probe-{}", std::process::id());
    if let Err(e) = store.put(&probe, b"kiln doctor".to_vec()).await {
        return fail(format!("cannot write: {e}"));
    }
    let read = store.get(&probe).await;
    let _ = store.delete(&probe).await;
    match read {
        Ok(Some(b)) if b == b"kiln doctor" => Check {
            name: "store",
            level: Level::Ok,
            detail: format!("{} is readable and writable", store.display()),
        },
        Ok(_) => fail(format!(
            "{}: wrote a probe but read back something else",
            store.display()
        )),
        Err(e) => fail(format!("cannot read: {e}")),
    }
}

/// Print the checks; returns true when nothing failed.
pub fn print(checks: &[Check]) -> bool {
    for c in checks {
        let mark = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("{mark}  {:<9} {}", c.name, c.detail);
    }
    !checks.iter().any(|c| c.level == Level::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_bad_config_and_good_store() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("kiln.yml");
        std::fs::write(&cfg, "pyhton: python3\n").unwrap();
        let checks = run(
            &cfg,
            &format!("file://{}", d.path().join("store").display()),
            &Machine::default(),
        )
        .await;
        let config = checks.iter().find(|c| c.name == "config").unwrap();
        assert_eq!(config.level, Level::Fail);
        assert!(config.detail.contains("kiln.yml:1:1"), "{}", config.detail);
        let store = checks.iter().find(|c| c.name == "store").unwrap();
        assert_eq!(store.level, Level::Ok, "{}", store.detail);
        assert!(!print(&checks));
    }
}

//! The sandbox against real bubblewrap and real processes (scripts/setup.sh installs it).

use std::path::Path;

use super::*;

fn bwrap_sandbox(layout: Layout) -> Sandbox {
    let (sandbox, warning) = Sandbox::resolve(SandboxMode::Bwrap, layout, &BwrapBin::default())
        .expect("bubblewrap must be installed and usable (scripts/setup.sh installs it)");
    assert!(warning.is_none());
    sandbox
}

/// A scratch dir outside /tmp (which every sandbox replaces anyway), so hiding is really tested.
fn scratch() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sandbox-tests");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

async fn sh(sandbox: &Sandbox, work: &Path, script: &str, network: Network) -> (bool, String) {
    let cmd = Cmd::shell(script).cwd(work).env("HOME", "/root");
    let out = sandbox.wrap(cmd, network).run().await.unwrap();
    (out.success, out.lines.join("\n"))
}

#[tokio::test]
async fn the_work_dir_is_the_only_writable_place() {
    let dir = scratch();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let sandbox = bwrap_sandbox(Layout::new(&work, Some(Path::new("/root"))));
    let script = "touch built.txt && echo wrote-work; \
                  touch /etc/kiln-escape 2>/dev/null || echo etc-readonly; \
                  echo private > /tmp/kiln-sandbox-private && echo tmp-ok; \
                  ls -A \"$HOME\" | wc -l";
    let (ok, out) = sh(&sandbox, &work, script, Network::Denied).await;
    assert!(ok, "{out}");
    assert!(work.join("built.txt").exists());
    assert!(!Path::new("/etc/kiln-escape").exists());
    assert!(out.contains("wrote-work") && out.contains("etc-readonly") && out.contains("tmp-ok"));
    assert_eq!(out.lines().last(), Some("0"), "HOME must be empty: {out}");
    assert!(
        !Path::new("/tmp/kiln-sandbox-private").exists(),
        "/tmp is not private"
    );
}

#[tokio::test]
async fn hidden_paths_are_empty_inside_and_untouched_outside() {
    let dir = scratch();
    let data = dir.path().join("agent-data");
    let work = data.join("work/7");
    let other_job = data.join("work/6");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&other_job).unwrap();
    std::fs::write(other_job.join("log"), "other job's log").unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "ghp_secret_token").unwrap();
    let mut layout = Layout::new(&work, None);
    layout.hide(&data);
    layout.hide(&token);
    let sandbox = bwrap_sandbox(layout);
    let script = format!(
        "cat {token} {other}/log 2>&1; ls -A {data}; rm -rf {other} 2>&1; echo ok > mine",
        token = token.display(),
        other = other_job.display(),
        data = data.display(),
    );
    let (_, out) = sh(&sandbox, &work, &script, Network::Denied).await;
    assert!(
        !out.contains("ghp_secret_token") && !out.contains("other job's log"),
        "{out}"
    );
    // Only the path down to this job's work dir exists in the hidden data dir.
    assert_eq!(out.lines().filter(|l| *l == "work").count(), 1, "{out}");
    assert!(
        other_job.join("log").exists(),
        "another job's files were deleted"
    );
    assert_eq!(std::fs::read_to_string(work.join("mine")).unwrap(), "ok\n");
}

/// Processes whose command line contains `needle`, outside any sandbox.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) && !text.contains("sh -c") {
                found.push(text);
            }
        }
    }
    found
}

#[tokio::test]
async fn nothing_the_command_started_outlives_it() {
    let dir = scratch();
    let sandbox = bwrap_sandbox(Layout::new(dir.path(), None));
    // A detached daemon (new session, double fork) and a plain background job.
    let script = "setsid sleep 4242 & (sleep 4243 &); sleep 0.2; echo started";
    let (ok, out) = sh(&sandbox, dir.path(), script, Network::Denied).await;
    assert!(ok && out.contains("started"), "{out}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(processes_with("sleep 4242"), Vec::<String>::new());
    assert_eq!(processes_with("sleep 4243"), Vec::<String>::new());
}

#[tokio::test]
async fn other_processes_are_out_of_sight() {
    let dir = scratch();
    let sandbox = bwrap_sandbox(Layout::new(dir.path(), None));
    let me = std::process::id();
    let script = format!(
        "ls /proc | grep -c '^[0-9]'; cat /proc/{me}/environ >/dev/null 2>&1 && echo read-environ"
    );
    let (_, out) = sh(&sandbox, dir.path(), &script, Network::Denied).await;
    let count: u32 = out.lines().next().unwrap().trim().parse().unwrap();
    // bubblewrap's init, the shell, ls and grep at most.
    assert!(count <= 4, "sees {count} processes: {out}");
    assert!(!out.contains("read-environ"), "{out}");
}

#[tokio::test]
async fn network_only_when_allowed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = scratch();
    let sandbox = bwrap_sandbox(Layout::new(dir.path(), None));
    let script =
        format!("bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' 2>/dev/null && echo reached");
    let (_, denied) = sh(&sandbox, dir.path(), &script, Network::Denied).await;
    let (_, allowed) = sh(&sandbox, dir.path(), &script, Network::Allowed).await;
    assert!(!denied.contains("reached"), "{denied}");
    assert!(allowed.contains("reached"), "{allowed}");
}

#[tokio::test]
async fn only_the_given_environment_reaches_the_command() {
    let dir = scratch();
    let sandbox = bwrap_sandbox(Layout::new(dir.path(), None));
    let env = ChildEnv::inherit(
        [
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("GITHUB_TOKEN".into(), "ghs_x".into()),
        ],
        &[],
        Trust::Trusted,
    )
    .0;
    let cmd = env.apply(Cmd::shell("env").cwd(dir.path()));
    let out = sandbox.wrap(cmd, Network::Denied).run().await.unwrap();
    let mut names: Vec<&str> = out
        .lines
        .iter()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    names.sort();
    // sh adds PWD (and sometimes SHLVL/_) itself; nothing of Kiln's environment.
    names.retain(|n| !["PWD", "SHLVL", "_", "OLDPWD"].contains(n));
    assert_eq!(names, ["PATH"], "{:?}", out.lines);
}

#[test]
fn a_bwrap_that_cannot_create_namespaces_is_detected() {
    let dir = scratch();
    let fake = dir.path().join("bwrap");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n",
    )
    .unwrap();
    let mut perm = std::fs::metadata(&fake).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&fake, perm).unwrap();
    let err = probe::probe(&fake).unwrap_err();
    assert_eq!(err, "exit 1: bwrap: setting up uid map: Permission denied");
    let real = which::which("bwrap").expect("bubblewrap is installed");
    assert_eq!(probe::probe(&real), Ok(()));
}

#[test]
fn expose_never_uncovers_a_hidden_path() {
    let dir = scratch();
    let data = dir.path().join("data");
    let tools = data.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let mut layout = Layout::new(dir.path(), None);
    layout.hide(&data);
    assert!(layout.expose(&tools).is_ok());
    let err = layout.expose(dir.path()).unwrap_err();
    assert!(err.contains("stays hidden"), "{err}");
    assert!(layout.expose(Path::new("/")).is_err());
}

#[test]
fn disabled_sandbox_leaves_commands_alone() {
    let cmd = Cmd::shell("true").cwd("/");
    let wrapped = Sandbox::disabled().wrap(cmd.clone(), Network::Denied);
    assert_eq!(wrapped.display(), cmd.display());
    let (s, w) =
        Sandbox::resolve(SandboxMode::None, Layout::default(), &BwrapBin::default()).unwrap();
    assert!(!s.active() && w.is_none());
}

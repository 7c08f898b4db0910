//! Untrusted code under `kiln agent` and `kiln run`, against real bubblewrap and real processes:
//! a hostile fork pull request cannot read a secret, another job's files or the store, cannot
//! write the store, leaves no process behind, and the next trusted build restores the cache as
//! it was. An honest project builds green in the same sandbox.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::agent::*;
use crate::support::kiln_home;
use crate::support::run::{finish, sh, Run};

const BUILD: Duration = Duration::from_secs(240);
/// What the honest project needs, from the fixtures' vendored packages.
const VENDORED: [&str; 8] = [
    "fastsum-",
    "pytest-",
    "iniconfig-",
    "packaging-",
    "pluggy-",
    "pygments-",
    "setuptools-",
    "wheel-",
];
const SECRETS: [&str; 7] = [
    API_TOKEN,
    "ghs_testtoken",
    "ghs_other_env_token",
    "ghs_other_file_token",
    SECRET,
    "aws-secret-e2e-value",
    "smtp-secret-e2e-value",
];

/// A project with one C extension (fastsum, built by `pip wheel` in the sandbox) and pytest,
/// all from a vendored directory (offline).
fn honest_project(root: &Path) -> Project {
    let project = Project::new(root);
    let vendor_src = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/fixtures/vendor");
    if !vendor_src.is_dir() {
        let ok = std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fetch.sh"))
            .status()
            .unwrap();
        assert!(ok.success(), "fixtures/fetch.sh failed");
    }
    let vendor = project.dir.join("vendor");
    std::fs::create_dir_all(&vendor).unwrap();
    for e in std::fs::read_dir(&vendor_src).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if VENDORED.iter().any(|w| name.starts_with(w)) {
            std::fs::copy(e.path(), vendor.join(&name)).unwrap();
        }
    }
    std::fs::write(
        project.dir.join("requirements.txt"),
        "--no-index\n--find-links vendor\nfastsum==1.0\npytest==9.2.0\n",
    )
    .unwrap();
    std::fs::create_dir_all(project.dir.join("tests")).unwrap();
    std::fs::write(
        project.dir.join("tests/test_sum.py"),
        "import fastsum\n\ndef test_total():\n    assert fastsum.total([1, 2, 3]) == 6\n",
    )
    .unwrap();
    project
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    files
}

fn processes_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

fn hostile_script(paths: &[(&str, String)]) -> String {
    let mut s = String::from(
        "echo '== env'; env\n\
         echo '== proc'; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < \"$f\" 2>/dev/null; done\n\
         echo '== agent'; tr '\\0' '\\n' < /proc/AGENT_PID/environ 2>&1\n\
         echo '== files'; cat SECRET_FILE TOKEN_FILE AGENT_YML 2>&1\n\
         ls -laR DATA 2>&1 | head -40; cat DATA/logs/*.log 2>&1 | head -40\n\
         echo '== poison'\n\
         for f in $(find STORE -type f 2>/dev/null); do echo poisoned > \"$f\" 2>/dev/null && echo \"POISONED $f\"; done\n\
         echo poisoned > STORE/poison 2>/dev/null && echo 'POISONED a new file'\n\
         echo '{}' > DATA/queue-poison 2>/dev/null && echo 'POISONED the data dir'\n\
         echo '== escape'\n\
         setsid sleep 4711 >/dev/null 2>&1 </dev/null &\n\
         (nohup sleep 4712 >/dev/null 2>&1 </dev/null &)\n\
         echo '== net'\n\
         python -c \"import socket; socket.create_connection(('127.0.0.1', AGENT_PORT), 3); print('NET-REACHED')\" 2>&1 | tail -1\n\
         echo '== done'\n",
    );
    for (k, v) in paths {
        s = s.replace(k, v);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_fork_build_cannot_steal_poison_or_outlive_and_main_stays_clean() {
    // Outside /tmp (which every sandbox replaces anyway): the agent's own paths must be hidden
    // because Kiln hides them.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let project = honest_project(tmp.path());
    let store = tmp.path().join("store");
    let data = tmp.path().join("data");
    let secret_file = tmp.path().join("webhook-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let token_file = tmp.path().join("other.token");
    std::fs::write(&token_file, "ghs_other_file_token\n").unwrap();
    let config = tmp.path().join("agent.yml");
    std::fs::write(
        &config,
        format!(
            "defaults:\n  store: file://{store}\nrepositories:\n  - name: {REPO}\n    clone_url: {url}\n    token_env: KILN_TEST_REPO_TOKEN\n    branches: ['*']\n  - name: octo-org/other\n    token_file: {token}\n  - name: octo-org/third\n    token_env: OTHER_ENV_TOKEN\n",
            store = store.display(),
            url = project.dir.display(),
            token = token_file.display(),
        ),
    )
    .unwrap();
    let agent = Agent::start(
        &data,
        &config,
        &AgentOpts {
            workers: 1,
            env: vec![
                ("KILN_WEBHOOK_SECRET".into(), String::new()),
                (
                    "KILN_WEBHOOK_SECRET_FILE".into(),
                    secret_file.display().to_string(),
                ),
                ("OTHER_ENV_TOKEN".into(), "ghs_other_env_token".into()),
                (
                    "AWS_SECRET_ACCESS_KEY".into(),
                    "aws-secret-e2e-value".into(),
                ),
                ("KILN_SMTP_PASSWORD".into(), "smtp-secret-e2e-value".into()),
            ],
            ..Default::default()
        },
    );
    let client = api_client();
    let (c, url) = (&client, &agent.url);

    // 1. An honest push builds green in the sandbox and fills the store.
    let main_sha = project.commit("main", "python -m pytest -q");
    let id = deliver(c, url, "push", "s-1", &push("main", &main_sha))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    let j = wait_job(c, &agent, id, BUILD, is_done).await;
    assert_eq!(j["outcome"], "passed", "{j:#}");
    assert_eq!(
        j["summary"]["wheels"]["built"], 1,
        "fastsum built in the sandbox: {j:#}"
    );
    let before = snapshot(&store);
    assert!(!before.is_empty(), "the trusted build saved its caches");
    let first_log = std::fs::read_to_string(data.join(format!("logs/{id}.log"))).unwrap();

    // 2. A fork's pull request runs a hostile test suite, and its kiln.yml asks for no sandbox
    //    and for the secrets by name.
    let port = url.rsplit(':').next().unwrap().to_string();
    let script = hostile_script(&[
        ("AGENT_PID", agent.child.id().to_string()),
        ("AGENT_PORT", port),
        ("SECRET_FILE", secret_file.display().to_string()),
        ("TOKEN_FILE", token_file.display().to_string()),
        ("AGENT_YML", config.display().to_string()),
        ("DATA", data.display().to_string()),
        ("STORE", store.display().to_string()),
    ]);
    std::fs::write(project.dir.join("hostile.sh"), script).unwrap();
    let fork_sha = project.commit_yml(
        "fork-head",
        "sandbox: none\nenv: [OTHER_ENV_TOKEN, AWS_SECRET_ACCESS_KEY]\ntest:\n  command: sh hostile.sh\nreport:\n  github:\n    enabled: false\n",
    );
    let fork = pull_request("pull_request-synchronize-fork.json", &fork_sha);
    let fork_id = deliver(c, url, "pull_request", "s-2", &fork).await.body["job"]
        .as_u64()
        .unwrap();
    let j = wait_job(c, &agent, fork_id, BUILD, is_done).await;
    let log = job_log_text(c, &agent, fork_id).await;
    assert_eq!(j["outcome"], "passed", "{j:#}\n{log}");
    assert!(
        log.contains("== done"),
        "the hostile script ran to its end:\n{log}"
    );
    for secret in SECRETS {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the fork's build:\n{log}"
        );
    }
    assert!(!log.contains("POISONED"), "{log}");
    assert!(
        !log.contains("NET-REACHED"),
        "fork tests reached the network:\n{log}"
    );
    let other_header = format!("=== kiln agent: job {id} attempt");
    assert!(
        !log.contains(&other_header),
        "another job's log was readable:\n{log}"
    );
    assert_eq!(
        snapshot(&store),
        before,
        "the store changed under a fork build"
    );
    assert!(!data.join("queue-poison").exists());
    assert_eq!(
        std::fs::read_to_string(data.join(format!("logs/{id}.log"))).unwrap(),
        first_log
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        processes_with("sleep 4711"),
        Vec::<String>::new(),
        "setsid daemon survived"
    );
    assert_eq!(
        processes_with("sleep 4712"),
        Vec::<String>::new(),
        "nohup job survived"
    );

    // 3. The next trusted build restores the unpoisoned cache: an exact hit, nothing rebuilt.
    let main2 = project.commit("main", "python -m pytest -q");
    let id = deliver(c, url, "push", "s-3", &push("main", &main2))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    let j = wait_job(c, &agent, id, BUILD, is_done).await;
    assert_eq!(j["outcome"], "passed", "{j:#}");
    let wheelhouse = j["summary"]["caches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "wheelhouse")
        .unwrap()
        .clone();
    assert_eq!(wheelhouse["restore"], "exact", "{wheelhouse:#}");
    assert_eq!(j["summary"]["wheels"]["built"], 0, "{j:#}");
}

async fn job_log_text(c: &reqwest::Client, agent: &Agent, id: u64) -> String {
    c.get(format!("{}/jobs/{id}/log", agent.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bubblewrap_fork_pull_requests_are_refused_unless_the_risk_is_accepted() {
    for accept in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let project = Project::new(tmp.path());
        let config = tmp.path().join("agent.yml");
        write_config(
            &config,
            &project.dir.display().to_string(),
            &tmp.path().join("store"),
        );
        if accept {
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(&config, format!("allow_unsandboxed_forks: true\n{text}")).unwrap();
        }
        // An empty KILN_BWRAP_BIN: Kiln behaves as if bubblewrap were not installed.
        let agent = Agent::start(
            &tmp.path().join("data"),
            &config,
            &AgentOpts {
                workers: 1,
                env: vec![("KILN_BWRAP_BIN".into(), String::new())],
                ..Default::default()
            },
        );
        let c = api_client();
        let push_sha = project.commit("main", "echo trusted-ran");
        let fork_sha = project.commit("fork-head", "echo fork-ran");
        let push_id = deliver(&c, &agent.url, "push", "n-1", &push("main", &push_sha))
            .await
            .body["job"]
            .as_u64()
            .unwrap();
        let fork = pull_request("pull_request-synchronize-fork.json", &fork_sha);
        let fork_id = deliver(&c, &agent.url, "pull_request", "n-2", &fork)
            .await
            .body["job"]
            .as_u64()
            .unwrap();
        let j = wait_job(&c, &agent, push_id, BUILD, is_done).await;
        assert_eq!(j["outcome"], "passed", "trusted builds go on: {j:#}");
        let j = wait_job(&c, &agent, fork_id, BUILD, is_done).await;
        let log = job_log_text(&c, &agent, fork_id).await;
        if accept {
            assert_eq!(j["outcome"], "passed", "{j:#}");
            assert!(log.contains("fork-ran"), "{log}");
            assert!(
                log.contains("runs unsandboxed"),
                "the risk is said in the log: {log}"
            );
        } else {
            assert_eq!(j["outcome"], "error", "{j:#}");
            let detail = j["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("fork pull request refused"), "{j:#}");
            assert!(detail.contains("allow_unsandboxed_forks"), "{j:#}");
            assert!(!log.contains("fork-ran"), "{log}");
            assert!(
                agent.logs().contains("fork pull requests will be refused"),
                "{}",
                agent.logs()
            );
        }
    }
}

/// A trivial project (no requirements) whose kiln.yml is `yml`, with `dump.sh` beside it.
fn small_repo(root: &Path, yml: &str) -> PathBuf {
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("requirements.txt"), "").unwrap();
    std::fs::write(repo.join("kiln.yml"), yml).unwrap();
    std::fs::write(
        repo.join("dump.sh"),
        "env\nfor f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < \"$f\"; done 2>/dev/null\necho dumped\n",
    )
    .unwrap();
    sh(
        &repo,
        "git init -q -b main && git add -A && git commit -qm project",
    );
    repo
}

const PLAIN: &str = "test:\n  command: sh dump.sh\nreport:\n  github:\n    enabled: false\n";

fn kiln_run(t: &Path, repo: &Path, env: &[(&str, &str)], extra: &[&str]) -> Run {
    let summary = t.join("summary.json");
    let mut cmd = kiln_home(&t.join("home"));
    cmd.arg("run")
        .arg("--repo")
        .arg(repo)
        .arg("--workdir")
        .arg(t.join("work"))
        .arg("--store")
        .arg(format!("file://{}", t.join("store").display()))
        .arg("--summary-json")
        .arg(&summary)
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    finish(cmd.output().unwrap(), &summary)
}

#[test]
fn the_test_command_sees_no_secret_of_kiln_s_environment() {
    let t = tempfile::tempdir().unwrap();
    let yml = format!("env: [TEST_SHARDS]\n{PLAIN}");
    let repo = small_repo(t.path(), &yml);
    let secrets = [
        ("GITHUB_TOKEN", "ghs_grep-secret-1"),
        ("GH_TOKEN", "ghs_grep-secret-2"),
        ("KILN_SMTP_PASSWORD", "grep-secret-smtp"),
        ("AWS_SECRET_ACCESS_KEY", "grep-secret-aws"),
        ("KILN_WEBHOOK_SECRET", "grep-secret-hook"),
        ("KILN_AGENT_API_TOKEN", "grep-secret-api"),
    ];
    let mut env = secrets.to_vec();
    env.push(("TEST_SHARDS", "4"));
    // GitHub reporting is off: the token is only there to be stolen.
    let r = kiln_run(t.path(), &repo, &env, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("dumped"), "the dump ran: {}", r.stderr);
    assert!(
        r.stderr.contains("TEST_SHARDS=4"),
        "named variables pass: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("runs in a bubblewrap sandbox"),
        "{}",
        r.stderr
    );
    for (name, value) in secrets {
        assert!(
            !r.stderr.contains(value),
            "{name} reached the test command:\n{}",
            r.stderr
        );
    }
}

#[test]
fn kiln_yml_cannot_pass_kiln_s_own_secrets() {
    let t = tempfile::tempdir().unwrap();
    let repo = small_repo(t.path(), &format!("env:\n  - GITHUB_TOKEN\n{PLAIN}"));
    let r = kiln_run(t.path(), &repo, &[("GITHUB_TOKEN", "ghs_named")], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("kiln.yml:2:3"), "{}", r.stderr);
    assert!(
        r.stderr.contains("GITHUB_TOKEN cannot be passed"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("ghs_named"), "{}", r.stderr);
}

#[test]
fn a_bubblewrap_that_cannot_create_namespaces_fails_bwrap_mode_and_warns_once_in_auto() {
    let t = tempfile::tempdir().unwrap();
    let repo = small_repo(t.path(), PLAIN);
    let fake = t.path().join("bwrap");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n",
    )
    .unwrap();
    sh(t.path(), "chmod +x bwrap");
    let env = [("KILN_BWRAP_BIN", fake.to_str().unwrap())];
    let r = kiln_run(t.path(), &repo, &env, &["--sandbox", "bwrap"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot create a sandbox here"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("No permissions to creating new namespace"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("dumped"),
        "the project's code ran: {}",
        r.stderr
    );

    let r = kiln_run(t.path(), &repo, &env, &["--sandbox", "auto"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("runs unsandboxed:").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("dumped"), "{}", r.stderr);
}

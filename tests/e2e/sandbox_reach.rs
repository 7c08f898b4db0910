//! What the project's code cannot reach on the agent's host, whatever it tries: the secret files
//! agent.yml names (wherever they live), the host's unix sockets (path and abstract, with and
//! without the network), and the fleet queue's trust (a job row written straight into
//! PostgreSQL is not built as trusted).

use std::path::Path;
use std::time::Duration;

use crate::support::agent::*;

const BUILD: Duration = Duration::from_secs(240);

async fn job_log(c: &reqwest::Client, agent: &Agent, id: u64) -> String {
    c.get(format!("{}/jobs/{id}/log", agent.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Deliver a fork's pull request of `sha`; wait for its job to end; (job, log).
async fn fork_build(agent: &Agent, sha: &str, delivery: &str) -> (serde_json::Value, String) {
    let c = api_client();
    let fork = pull_request("pull_request-synchronize-fork.json", sha);
    let id = deliver(&c, &agent.url, "pull_request", delivery, &fork)
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    let j = wait_job(&c, agent, id, BUILD, is_done).await;
    let log = job_log(&c, agent, id).await;
    (j, log)
}

fn rsa_key(path: &Path) {
    let ok = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(path)
        .arg("2048")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_key_files_outside_etc_kiln_are_unreadable_by_a_fork_s_tests() {
    // Not under /tmp: every sandbox gets a private /tmp anyway.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let project = Project::new(tmp.path());
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let web_token = secrets.join("web.token");
    std::fs::write(&web_token, "web-token-value-3f9a\n").unwrap();
    let key = secrets.join("app.pem");
    rsa_key(&key);
    let config = tmp.path().join("agent.yml");
    std::fs::write(
        &config,
        format!(
            "web:\n  token_file: {web}\ndefaults:\n  store: file://{store}\nrepositories:\n  - name: {REPO}\n    clone_url: {url}\n    token_env: KILN_TEST_REPO_TOKEN\n    branches: ['*']\n  - name: octo-org/other\n    github_app:\n      app_id: 7\n      installation_id: 8\n      private_key_file: {key}\n",
            web = web_token.display(),
            store = tmp.path().join("store").display(),
            url = project.dir.display(),
            key = key.display(),
        ),
    )
    .unwrap();
    let agent = Agent::start(
        &tmp.path().join("data"),
        &config,
        &AgentOpts {
            workers: 1,
            ..Default::default()
        },
    );
    let script = format!(
        "for f in {web} {key}; do cat \"$f\" && echo \"opened $f\" | tr a-z A-Z; done; echo probe-done",
        web = web_token.display(),
        key = key.display()
    );
    let sha = project.commit("fork-head", &script);
    let (j, log) = fork_build(&agent, &sha, "secret-files-1").await;
    assert_eq!(j["outcome"], "passed", "{j:#}\n{log}");
    assert!(log.contains("probe-done"), "{log}");
    assert!(
        !log.contains("web-token-value-3f9a"),
        "web.token_file leaked:\n{log}"
    );
    assert!(
        !log.contains("PRIVATE KEY"),
        "the App's private key leaked:\n{log}"
    );
    assert!(!log.contains("OPENED"), "{log}");
}

/// Tries to connect to the host's path socket and abstract socket; prints what happened.
const PROBE: &str = r#"import socket, sys
stage, path, name = sys.argv[1:4]
for kind, addr in (("path", path), ("abstract", "\0" + name)):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(addr)
        print(f"{stage} {kind}: connected", flush=True)
    except OSError as e:
        print(f"{stage} {kind}: blocked ({e})", flush=True)
"#;

/// `kiln run --untrusted` of a project whose bootstrap (with the network) and tests (without)
/// both probe `sock` and the abstract socket `name`.
fn probe_run(t: &Path, sock: &Path, name: &str, extra: &[&str]) -> crate::support::run::Run {
    use crate::support::run::{finish, sh};
    let repo = t.join("repo");
    if !repo.exists() {
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(repo.join("requirements.txt"), "").unwrap();
        std::fs::write(repo.join("probe.py"), PROBE).unwrap();
        let args = format!("{} {name}", sock.display());
        std::fs::write(
            repo.join("kiln.yml"),
            format!(
                "bootstrap:\n  command: python3 probe.py bootstrap {args}\ntest:\n  command: python3 probe.py test {args}\nreport:\n  github:\n    enabled: false\n"
            ),
        )
        .unwrap();
        sh(
            &repo,
            "git init -q -b main && git add -A && git commit -qm probe",
        );
    }
    let summary = t.join("summary.json");
    let mut cmd = crate::support::kiln_home(&t.join("home"));
    cmd.arg("run")
        .arg("--repo")
        .arg(&repo)
        .arg("--workdir")
        .arg(t.join("work"))
        .arg("--store")
        .arg(format!("file://{}", t.join("store").display()))
        .arg("--summary-json")
        .arg(&summary)
        .args(["--untrusted", "--sandbox", "bwrap"])
        .args(extra);
    finish(cmd.output().unwrap(), &summary)
}

/// Connections waiting on `l` (non-blocking).
fn accepted(l: &std::os::unix::net::UnixListener) -> usize {
    std::iter::from_fn(|| l.accept().ok()).count()
}

#[test]
fn neither_a_build_with_network_nor_tests_without_reach_the_host_s_unix_sockets() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    // A daemon's socket outside /tmp (every sandbox has its own /tmp anyway) and an abstract
    // one (no file: only a network namespace or Landlock keeps it out of reach).
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sock = t.path().join("daemon.sock");
    let path_l = UnixListener::bind(&sock).unwrap();
    let name = format!("kiln-e2e-daemon-{}", std::process::id());
    let abs_l = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
    path_l.set_nonblocking(true).unwrap();
    abs_l.set_nonblocking(true).unwrap();

    let r = probe_run(t.path(), &sock, &name, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for line in [
        "bootstrap path: blocked",
        "bootstrap abstract: blocked",
        "test path: blocked",
        "test abstract: blocked",
    ] {
        assert!(r.stderr.contains(line), "no {line:?}:\n{}", r.stderr);
    }
    assert!(!r.stderr.contains(": connected"), "{}", r.stderr);
    assert_eq!(accepted(&path_l), 0, "the path socket was reached");
    assert_eq!(accepted(&abs_l), 0, "the abstract socket was reached");

    // The operator may list a socket: then it is reachable (an abstract one only where the
    // step shares the host's network).
    let abstract_name = format!("@{name}");
    let extra = [
        "--sandbox-socket",
        sock.to_str().unwrap(),
        "--sandbox-socket",
        &abstract_name,
    ];
    let r = probe_run(t.path(), &sock, &name, &extra);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for line in [
        "bootstrap path: connected",
        "bootstrap abstract: connected",
        "test path: connected",
        "test abstract: blocked",
    ] {
        assert!(r.stderr.contains(line), "no {line:?}:\n{}", r.stderr);
    }
    assert_eq!(accepted(&path_l), 2);
    assert_eq!(accepted(&abs_l), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_row_written_straight_into_the_fleet_queue_is_not_built_as_trusted() {
    use crate::support::postgres::Cluster;
    let w = World::new();
    let cluster = Cluster::get();
    // The agent reaches its queue through PostgreSQL's unix socket, as a fleet host with peer
    // authentication would.
    let url = cluster.socket_url(&cluster.database("forged"));
    let agent = Agent::start(
        &w.path("data"),
        &w.config,
        &AgentOpts {
            workers: 1,
            extra: vec!["--queue".into(), url.clone()],
            ..Default::default()
        },
    );
    let c = &w.client;
    // A signed push builds as usual (its job is sealed).
    let honest = w.project.commit("main", "echo honest-ran");
    let id = deliver(c, &agent.url, "push", "forged-1", &push("main", &honest))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    let j = wait_job(c, &agent, id, BUILD, is_done).await;
    assert_eq!(j["outcome"], "passed", "{j:#}");

    // Whoever can write the database inserts a trusted-looking job for a fork's commit.
    let fork_sha = w.project.commit("fork-head", "echo FORGED-JOB-RAN");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let forged: i64 = sqlx::query_scalar(
        "INSERT INTO kiln_jobs (delivery, event, repo, sha, branch, lane, fork, state)
         VALUES ('forged-row', 'push', $1, $2, 'main', $3, false, 'queued') RETURNING id",
    )
    .bind(REPO)
    .bind(&fork_sha)
    .bind(format!("{REPO}@main"))
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_notify('kiln_jobs', '')")
        .execute(&pool)
        .await
        .unwrap();
    let j = wait_job(c, &agent, forged as u64, BUILD, is_done).await;
    let log = job_log(c, &agent, forged as u64).await;
    assert_eq!(j["outcome"], "error", "{j:#}\n{log}");
    assert!(
        j["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("could not be verified"),
        "{j:#}"
    );
    assert!(
        !log.contains("FORGED-JOB-RAN"),
        "the forged job was built:\n{log}"
    );
    assert!(
        agent.logs().contains("carries no valid seal"),
        "{}",
        agent.logs()
    );
    let metrics = c
        .get(format!("{}/metrics", agent.url))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kiln_agent_refused_total{reason=\"unsealed_job\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_build_output_is_capped_with_its_end_kept() {
    let w = World::new();
    let config = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(&w.config, format!("job_log_max: 256KiB\n{config}")).unwrap();
    let agent = w.start(1, &[]);
    let c = &w.client;
    // About 4 MB of output, then the line people look for.
    let sha = w.project.commit(
        "main",
        "python3 -c \"print('FIRST-LINE'); [print('x' * 99) for _ in range(40000)]; print('LAST-' + 'LINE')\"",
    );
    let id = deliver(c, &agent.url, "push", "log-cap-1", &push("main", &sha))
        .await
        .body["job"]
        .as_u64()
        .unwrap();
    let j = wait_job(c, &agent, id, BUILD, is_done).await;
    assert_eq!(j["outcome"], "passed", "{j:#}");
    let path = agent.data_dir.join(format!("logs/{id}.log"));
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size <= 256 * 1024 + 4096, "the log kept {size} bytes");
    let log = std::fs::read_to_string(&path).unwrap();
    assert!(log.contains("FIRST-LINE"), "the head is kept");
    assert!(
        log.contains("log truncated:"),
        "{}",
        &log[log.len() - 2000..]
    );
    let tail = &log[log.find("log truncated:").unwrap()..];
    assert!(tail.contains("LAST-LINE"), "the end is kept: {tail:.2000}");
    assert!(
        tail.contains(&format!("=== job {id}: passed")),
        "{tail:.2000}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_guessing_tokens_is_slowed_down_and_told_when_to_retry() {
    let w = World::new();
    let agent = w.start(0, &[]);
    let c = &w.client;
    let get = |token: &'static str| {
        c.get(format!("{}/jobs", agent.url))
            .bearer_auth(token)
            .send()
    };
    for _ in 0..5 {
        assert_eq!(get("wrong-guess").await.unwrap().status(), 401);
    }
    // The sixth wrong token is refused and blocks the client for a while.
    assert_eq!(get("wrong-guess").await.unwrap().status(), 401);
    let r = get("wrong-guess").await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    // Even the right token waits its turn (a guess must not be checked while blocked)...
    assert_eq!(get(API_TOKEN).await.unwrap().status(), 429);
    // ... and the web login too.
    let login = c
        .post(format!("{}/login", agent.url))
        .form(&[("token", "another-guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 429);
    tokio::time::sleep(Duration::from_millis(1100 * retry)).await;
    assert_eq!(get(API_TOKEN).await.unwrap().status(), 200);
    let m = c
        .get(format!("{}/metrics", agent.url))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("kiln_agent_refused_total{reason=\"throttled\"} 3"),
        "{m}"
    );
}

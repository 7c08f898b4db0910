//! A simulated GitHub Actions runner for the action's composite steps, and a loopback HTTP
//! server standing in for the GitHub releases page.
//!
//! The runner does what GitHub's does for a composite action, to the extent our actions use it:
//! inputs with defaults (themselves expressions), `${{ }}` expressions over `inputs`, `github`,
//! `runner`, `env` and `steps.<id>.outputs`, one `GITHUB_OUTPUT`/`GITHUB_ENV`/`GITHUB_PATH`/
//! `GITHUB_STEP_SUMMARY` file per step, `GITHUB_ACTION_PATH`, `bash --noprofile --norc -eo
//! pipefail {0}`, and "a failed step skips the rest". Composite actions get no `INPUT_*`
//! variables on GitHub (only JavaScript and Docker actions do), so neither do they here: inputs
//! reach the scripts only through the `env:` the action.yml maps them to. `uses:` steps (the
//! github-script step that hands over the cache-service token) cannot run offline: they are
//! recorded as skipped with empty outputs. An expression the simulator does not understand
//! fails the test, so the action cannot quietly grow syntax the test does not check.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_yaml::Value;

/// Parsed `action.yml`.
pub struct Action {
    pub dir: PathBuf,
    pub doc: Value,
}

impl Action {
    pub fn load(dir: &Path) -> Action {
        let text = std::fs::read_to_string(dir.join("action.yml")).unwrap();
        Action {
            dir: dir.to_path_buf(),
            doc: serde_yaml::from_str(&text).unwrap(),
        }
    }

    /// Input names with their default (raw, possibly an expression).
    pub fn inputs(&self) -> Vec<(String, Option<String>)> {
        let Some(m) = self.doc.get("inputs").and_then(Value::as_mapping) else {
            return Vec::new();
        };
        m.iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap().to_string(),
                    v.get("default").map(scalar),
                )
            })
            .collect()
    }

    /// Output names with their value expression.
    pub fn outputs(&self) -> Vec<(String, String)> {
        let Some(m) = self.doc.get("outputs").and_then(Value::as_mapping) else {
            return Vec::new();
        };
        m.iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap().to_string(),
                    v.get("value").map(scalar).unwrap_or_default(),
                )
            })
            .collect()
    }

    pub fn steps(&self) -> Vec<Value> {
        self.doc["runs"]["steps"].as_sequence().unwrap().clone()
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct StepRun {
    pub id: String,
    pub skipped: bool,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub outputs: BTreeMap<String, String>,
    pub summary: String,
}

/// What the whole action did.
#[derive(Debug)]
pub struct ActionRun {
    pub steps: Vec<StepRun>,
    pub outputs: BTreeMap<String, String>,
    pub success: bool,
}

impl ActionRun {
    pub fn step(&self, id: &str) -> &StepRun {
        self.steps.iter().find(|s| s.id == id).unwrap()
    }
    /// stdout of every step, in order: where the runner reads workflow commands.
    pub fn stdout(&self) -> String {
        self.steps.iter().map(|s| s.stdout.as_str()).collect()
    }
    pub fn log(&self) -> String {
        self.steps
            .iter()
            .map(|s| format!("--- {} (exit {})\n{}{}", s.id, s.code, s.stdout, s.stderr))
            .collect()
    }
    /// The job summary as GitHub shows it: every step's file, in order.
    pub fn summary(&self) -> String {
        self.steps.iter().map(|s| s.summary.as_str()).collect()
    }
}

/// One simulated job on one runner.
pub struct Runner {
    pub root: tempfile::TempDir,
    pub workspace: PathBuf,
    pub temp: PathBuf,
    pub tool_cache: PathBuf,
    /// The job's environment (GITHUB_*, RUNNER_*, HOME, PATH, ...).
    pub env: BTreeMap<String, String>,
    /// Directories added through GITHUB_PATH, newest first.
    pub path_prepend: Vec<String>,
}

impl Runner {
    /// A push to `main` of `acme/widgets` at `sha`, with the workspace at `workspace`.
    pub fn new(workspace: &Path, sha: &str) -> Runner {
        let root = tempfile::tempdir().unwrap();
        let temp = root.path().join("_temp");
        let tool_cache = root.path().join("_tool");
        let home = root.path().join("home");
        for d in [&temp, &tool_cache, &home] {
            std::fs::create_dir_all(d).unwrap();
        }
        let event = temp.join("_github_workflow").join("event.json");
        std::fs::create_dir_all(event.parent().unwrap()).unwrap();
        std::fs::write(
            &event,
            r#"{"ref": "refs/heads/main", "repository": {"full_name": "acme/widgets"}}"#,
        )
        .unwrap();
        let (os, arch) = runner_platform();
        let mut env = BTreeMap::new();
        for (k, v) in [
            ("CI", "true"),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REPOSITORY", "acme/widgets"),
            ("GITHUB_REPOSITORY_OWNER", "acme"),
            ("GITHUB_SHA", sha),
            ("GITHUB_REF", "refs/heads/main"),
            ("GITHUB_REF_NAME", "main"),
            ("GITHUB_REF_TYPE", "branch"),
            ("GITHUB_HEAD_REF", ""),
            ("GITHUB_BASE_REF", ""),
            ("GITHUB_EVENT_NAME", "push"),
            ("GITHUB_RUN_ID", "4242"),
            ("GITHUB_RUN_NUMBER", "7"),
            ("GITHUB_RUN_ATTEMPT", "1"),
            ("GITHUB_JOB", "build"),
            ("GITHUB_WORKFLOW", "CI"),
            ("GITHUB_ACTOR", "alice"),
            ("GITHUB_ACTION", "__acme_kiln"),
            // Loopback addresses nothing listens on: a reporter that calls GitHub must fail fast.
            ("GITHUB_SERVER_URL", "http://127.0.0.1:9"),
            ("GITHUB_API_URL", "http://127.0.0.1:9/api/v3"),
            ("GITHUB_GRAPHQL_URL", "http://127.0.0.1:9/api/graphql"),
            ("RUNNER_OS", os),
            ("RUNNER_ARCH", arch),
            ("RUNNER_NAME", "simulated"),
            ("RUNNER_ENVIRONMENT", "self-hosted"),
        ] {
            env.insert(k.to_string(), v.to_string());
        }
        env.insert("GITHUB_WORKSPACE".into(), workspace.display().to_string());
        env.insert("GITHUB_EVENT_PATH".into(), event.display().to_string());
        env.insert("RUNNER_TEMP".into(), temp.display().to_string());
        env.insert("RUNNER_TOOL_CACHE".into(), tool_cache.display().to_string());
        env.insert("HOME".into(), home.display().to_string());
        env.insert(
            "XDG_CACHE_HOME".into(),
            home.join(".cache").display().to_string(),
        );
        for k in [
            "PATH",
            "LANG",
            "TMPDIR",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "PYENV_ROOT",
        ] {
            if let Ok(v) = std::env::var(k) {
                env.insert(k.into(), v);
            }
        }
        Runner {
            root,
            workspace: workspace.to_path_buf(),
            temp,
            tool_cache,
            env,
            path_prepend: Vec::new(),
        }
    }

    /// Make the event a pull request (number 7, head `feature`); `fork` puts the head in
    /// another repository.
    pub fn pull_request(&mut self, fork: bool) {
        let head_repo = if fork {
            "mallory/widgets"
        } else {
            "acme/widgets"
        };
        let payload = serde_json::json!({
            "action": "synchronize",
            "number": 7,
            "pull_request": {
                "number": 7,
                "head": {"sha": self.env["GITHUB_SHA"], "ref": "feature", "repo": {"full_name": head_repo}},
                "base": {"sha": "0000", "ref": "main", "repo": {"full_name": "acme/widgets"}}
            }
        });
        let event = PathBuf::from(&self.env["GITHUB_EVENT_PATH"]);
        std::fs::write(&event, payload.to_string()).unwrap();
        for (k, v) in [
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_REF", "refs/pull/7/merge"),
            ("GITHUB_REF_NAME", "7/merge"),
            ("GITHUB_HEAD_REF", "feature"),
            ("GITHUB_BASE_REF", "main"),
        ] {
            self.env.insert(k.into(), v.into());
        }
    }

    fn github_context(&self, key: &str) -> String {
        match key {
            "token" => "ghs_simulatedtoken0123456789".to_string(),
            "action_repository" | "action_ref" => String::new(),
            "ref" | "sha" | "repository" | "event_name" | "workspace" | "run_id" | "actor"
            | "server_url" | "api_url" | "head_ref" | "base_ref" | "job" => self
                .env
                .get(&format!("GITHUB_{}", key.to_uppercase()))
                .cloned()
                .unwrap_or_default(),
            other => panic!("the simulated runner does not know github.{other}"),
        }
    }

    fn runner_context(&self, key: &str) -> String {
        self.env
            .get(&format!("RUNNER_{}", key.to_uppercase()))
            .cloned()
            .unwrap_or_else(|| panic!("the simulated runner does not know runner.{key}"))
    }

    /// Expand every `${{ expr }}` in `text`.
    fn expand(&self, text: &str, ctx: &ExprCtx) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find("${{") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 3..];
            let j = after.find("}}").expect("unterminated ${{");
            out.push_str(&self.eval(after[..j].trim(), ctx));
            rest = &after[j + 2..];
        }
        out.push_str(rest);
        out
    }

    fn eval(&self, expr: &str, ctx: &ExprCtx) -> String {
        let parts: Vec<&str> = expr.split('.').collect();
        match parts.as_slice() {
            ["inputs", name] => ctx.inputs.get(*name).cloned().unwrap_or_default(),
            ["github", key] => self.github_context(key),
            ["github", "event", path @ ..] => {
                let text = std::fs::read_to_string(&self.env["GITHUB_EVENT_PATH"]).unwrap();
                let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
                for p in path {
                    v = v.get(*p).cloned().unwrap_or(serde_json::Value::Null);
                }
                match v {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                }
            }
            ["runner", key] => self.runner_context(key),
            ["env", key] => self.env.get(*key).cloned().unwrap_or_default(),
            ["steps", id, "outputs", name] => ctx
                .steps
                .get(*id)
                .and_then(|o| o.get(*name))
                .cloned()
                .unwrap_or_default(),
            _ => panic!("the simulated runner does not support the expression `{expr}`"),
        }
    }

    /// Run the composite action at `action_dir` with `with` inputs. `only` limits which step ids
    /// run (the others are skipped); `preset` gives outputs of steps that are not run.
    pub fn run_action(
        &mut self,
        action_dir: &Path,
        with: &[(&str, &str)],
        only: Option<&[&str]>,
        preset: &[(&str, &str, &str)],
    ) -> ActionRun {
        let action = Action::load(action_dir);
        let mut ctx = ExprCtx::default();
        for (name, default) in action.inputs() {
            let value = match with.iter().find(|(k, _)| *k == name) {
                Some((_, v)) => v.to_string(),
                None => self.expand(&default.unwrap_or_default(), &ctx),
            };
            ctx.inputs.insert(name, value);
        }
        for (k, _) in with {
            assert!(
                ctx.inputs.contains_key(*k),
                "input {k} is not declared in {}",
                action_dir.display()
            );
        }
        for (step, name, value) in preset {
            ctx.steps
                .entry(step.to_string())
                .or_default()
                .insert(name.to_string(), value.to_string());
        }
        let mut runs = Vec::new();
        let mut failed = false;
        for (i, step) in action.steps().iter().enumerate() {
            let id = step
                .get("id")
                .map(scalar)
                .unwrap_or_else(|| format!("__step{i}"));
            let wanted = only.is_none_or(|o| o.contains(&id.as_str()));
            let Some(script) = step.get("run").map(scalar).filter(|_| wanted && !failed) else {
                runs.push(StepRun {
                    id,
                    skipped: true,
                    code: 0,
                    stdout: String::new(),
                    stderr: String::new(),
                    outputs: BTreeMap::new(),
                    summary: String::new(),
                });
                continue;
            };
            assert_eq!(
                step.get("shell").map(scalar).as_deref(),
                Some("bash"),
                "composite run steps need `shell: bash`"
            );
            let run = self.run_step(&id, step, &script, action_dir, &ctx);
            failed |= run.code != 0;
            ctx.steps.insert(id.clone(), run.outputs.clone());
            runs.push(run);
        }
        let outputs = action
            .outputs()
            .into_iter()
            .map(|(name, expr)| (name, self.expand(&expr, &ctx)))
            .collect();
        ActionRun {
            steps: runs,
            outputs,
            success: !failed,
        }
    }

    fn run_step(
        &mut self,
        id: &str,
        step: &Value,
        script: &str,
        action_dir: &Path,
        ctx: &ExprCtx,
    ) -> StepRun {
        let dir = self.temp.join("_runner_file_commands");
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str| {
            let p = dir.join(format!("{name}_{id}"));
            std::fs::write(&p, "").unwrap();
            p
        };
        let (output, envf, pathf, summary) = (
            file("set_output"),
            file("set_env"),
            file("add_path"),
            file("step_summary"),
        );
        let script_path = self.temp.join(format!("{id}.sh"));
        std::fs::write(&script_path, self.expand(script, ctx)).unwrap();

        let mut env = self.env.clone();
        if !self.path_prepend.is_empty() {
            let mut p = self.path_prepend.join(":");
            p.push(':');
            p.push_str(env.get("PATH").map(String::as_str).unwrap_or(""));
            env.insert("PATH".into(), p);
        }
        env.insert(
            "GITHUB_ACTION_PATH".into(),
            action_dir.display().to_string(),
        );
        env.insert("GITHUB_OUTPUT".into(), output.display().to_string());
        env.insert("GITHUB_ENV".into(), envf.display().to_string());
        env.insert("GITHUB_PATH".into(), pathf.display().to_string());
        env.insert("GITHUB_STEP_SUMMARY".into(), summary.display().to_string());
        if let Some(m) = step.get("env").and_then(Value::as_mapping) {
            for (k, v) in m {
                env.insert(k.as_str().unwrap().into(), self.expand(&scalar(v), ctx));
            }
        }
        let out = std::process::Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&script_path)
            .current_dir(&self.workspace)
            .env_clear()
            .envs(&env)
            .output()
            .unwrap();
        // File commands, as the runner applies them after the step.
        for line in std::fs::read_to_string(&pathf).unwrap().lines() {
            if !line.trim().is_empty() {
                self.path_prepend.insert(0, line.trim().to_string());
            }
        }
        for (k, v) in parse_kv_file(&std::fs::read_to_string(&envf).unwrap()) {
            self.env.insert(k, v);
        }
        StepRun {
            id: id.to_string(),
            skipped: false,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            outputs: parse_kv_file(&std::fs::read_to_string(&output).unwrap()),
            summary: std::fs::read_to_string(&summary).unwrap(),
        }
    }
}

#[derive(Default)]
struct ExprCtx {
    inputs: BTreeMap<String, String>,
    steps: BTreeMap<String, BTreeMap<String, String>>,
}

/// `name=value` lines and `name<<DELIM` … `DELIM` blocks, as in GITHUB_OUTPUT and GITHUB_ENV.
pub fn parse_kv_file(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            out.insert(name.to_string(), value.join("\n"));
        } else if let Some((k, v)) = line.split_once('=') {
            out.insert(k.to_string(), v.to_string());
        } else if !line.trim().is_empty() {
            panic!("malformed file-command line: {line:?}");
        }
    }
    out
}

/// `RUNNER_OS`, `RUNNER_ARCH` for this machine.
pub fn runner_platform() -> (&'static str, &'static str) {
    let os = match std::env::consts::OS {
        "macos" => "macOS",
        _ => "Linux",
    };
    let arch = match std::env::consts::ARCH {
        "aarch64" => "ARM64",
        _ => "X64",
    };
    (os, arch)
}

/// The Rust target triple of the release asset for this machine.
pub fn release_target() -> String {
    let os = match std::env::consts::OS {
        "macos" => "apple-darwin",
        _ => "unknown-linux-gnu",
    };
    format!("{}-{os}", std::env::consts::ARCH)
}

/// A static file server on loopback for release assets, recording every request.
pub struct AssetServer {
    pub base: String,
    pub requests: Arc<Mutex<Vec<String>>>,
    _thread: std::thread::JoinHandle<()>,
}

impl AssetServer {
    /// Serve `root` at `http://127.0.0.1:PORT/releases/...`; `/releases/latest` redirects to
    /// `/releases/tag/v{latest}` like GitHub's.
    pub fn start(root: &Path, latest: &str) -> AssetServer {
        use axum::extract::{Path as UrlPath, State};
        use axum::http::{Method, StatusCode};
        use axum::response::{IntoResponse, Redirect};
        use axum::routing::{any, get};

        #[derive(Clone)]
        struct St {
            root: PathBuf,
            latest: String,
            requests: Arc<Mutex<Vec<String>>>,
        }
        async fn file(
            State(st): State<St>,
            method: Method,
            UrlPath(rest): UrlPath<String>,
        ) -> axum::response::Response {
            st.requests
                .lock()
                .unwrap()
                .push(format!("{method} /releases/{rest}"));
            if rest.split('/').any(|p| p == "..") {
                return StatusCode::BAD_REQUEST.into_response();
            }
            match std::fs::read(st.root.join(&rest)) {
                Ok(bytes) => bytes.into_response(),
                Err(_) => StatusCode::NOT_FOUND.into_response(),
            }
        }
        async fn latest_redirect(State(st): State<St>, method: Method) -> axum::response::Response {
            st.requests
                .lock()
                .unwrap()
                .push(format!("{method} /releases/latest"));
            Redirect::to(&format!("/releases/tag/v{}", st.latest)).into_response()
        }
        async fn tag(State(st): State<St>, UrlPath(t): UrlPath<String>) -> String {
            st.requests
                .lock()
                .unwrap()
                .push(format!("GET /releases/tag/{t}"));
            format!("release {t}")
        }

        let requests = Arc::new(Mutex::new(Vec::new()));
        let st = St {
            root: root.to_path_buf(),
            latest: latest.to_string(),
            requests: requests.clone(),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new()
                    .route("/releases/latest", any(latest_redirect))
                    .route("/releases/tag/{t}", get(tag))
                    .route("/releases/{*rest}", any(file))
                    .with_state(st);
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        AssetServer {
            base: format!("http://127.0.0.1:{port}/releases"),
            requests,
            _thread: thread,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Package `binary` as the release does: `kiln-<target>.tar.gz` with `kiln` at the top, and its
/// `.sha256` (`<hex>  <file>`), under `<dir>/download/v<version>/`. `checksum` overrides the
/// published hash (to publish a wrong one).
pub fn publish_release(dir: &Path, version: &str, binary: &Path, checksum: Option<&str>) {
    use sha2::{Digest, Sha256};
    let rel = dir.join("download").join(format!("v{version}"));
    std::fs::create_dir_all(&rel).unwrap();
    let stage = tempfile::tempdir().unwrap();
    std::fs::copy(binary, stage.path().join("kiln")).unwrap();
    // Release binaries carry no debug info; a debug build's would make every download slow.
    let _ = std::process::Command::new("strip")
        .arg(stage.path().join("kiln"))
        .status();
    let asset = format!("kiln-{}.tar.gz", release_target());
    let ok = std::process::Command::new("tar")
        .arg("-czf")
        .arg(rel.join(&asset))
        .arg("-C")
        .arg(stage.path())
        .arg("kiln")
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar failed");
    let hash = hex::encode(Sha256::digest(std::fs::read(rel.join(&asset)).unwrap()));
    let published = checksum.map(str::to_string).unwrap_or(hash);
    std::fs::write(
        rel.join(format!("{asset}.sha256")),
        format!("{published}  {asset}\n"),
    )
    .unwrap();
}

/// Run a shell snippet in `dir`; panic with its output when it fails.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = std::process::Command::new("bash")
        .args(["-eo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Alice")
        .env("GIT_AUTHOR_EMAIL", "alice@example.com")
        .env("GIT_COMMITTER_NAME", "Alice")
        .env("GIT_COMMITTER_EMAIL", "alice@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fake GitHub API (wiremock, on its own thread) that accepts statuses, check runs and
/// comments for `acme/widgets` and answers 404 to everything else.
pub struct FakeGitHub {
    pub rt: tokio::runtime::Runtime,
    pub server: wiremock::MockServer,
}

impl FakeGitHub {
    pub fn start() -> FakeGitHub {
        use serde_json::json;
        use wiremock::matchers::{method, path_regex};
        use wiremock::{Mock, ResponseTemplate};
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = rt.block_on(async {
            let server = wiremock::MockServer::start().await;
            Mock::given(method("POST"))
                .and(path_regex(r"^/repos/acme/widgets/statuses/[0-9a-f]{40}$"))
                .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
                .mount(&server)
                .await;
            Mock::given(method("POST"))
                .and(path_regex(r"^/repos/acme/widgets/check-runs$"))
                .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 555})))
                .mount(&server)
                .await;
            Mock::given(method("PATCH"))
                .and(path_regex(r"^/repos/acme/widgets/check-runs/555$"))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 555})))
                .mount(&server)
                .await;
            Mock::given(method("GET"))
                .and(path_regex(r"/comments$"))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
                .mount(&server)
                .await;
            Mock::given(method("POST"))
                .and(path_regex(r"/comments$"))
                .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 9})))
                .mount(&server)
                .await;
            server
        });
        FakeGitHub { rt, server }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// (method, path, authorization header) of every request received.
    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.rt
            .block_on(self.server.received_requests())
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let auth = r
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                (r.method.to_string(), r.url.path().to_string(), auth)
            })
            .collect()
    }
}

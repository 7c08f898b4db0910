//! `kiln index serve` against real pip and uv: hash-checked installs from the index on loopback,
//! falling through to a second index for what the first lacks, PEP 691 negotiation, redirects,
//! caching headers, ranges and auth.

use std::path::Path;
use std::process::Command;

use crate::support::index::*;
use reqwest::header;
use sha2::Digest;

/// Two stores, as two teams' CI would leave them: A has alpha 1.0 + 2.0 and Beta_Pkg; B has gamma.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    store_a: std::path::PathBuf,
    store_b: std::path::PathBuf,
    wheels: Vec<std::path::PathBuf>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let wh_a = root.join("wheelhouse-a");
    let wh_b = root.join("wheelhouse-b");
    let mut wheels = build_wheels(
        &root,
        &wh_a,
        &[
            py("alpha", "1.0"),
            py("alpha", "2.0"),
            py("Beta_Pkg", "0.1"),
        ],
    );
    wheels.extend(build_wheels(&root, &wh_b, &[py("gamma", "1.0")]));
    let store_a = root.join("store-a");
    let store_b = root.join("store-b");
    let out = publish(&store_a, &wh_a);
    assert!(out.contains("published 3 wheel(s)"), "{out}");
    // Publishing again uploads nothing.
    let out = publish(&store_a, &wh_a);
    assert!(out.contains("published 0 wheel(s) (0 bytes)"), "{out}");
    assert!(out.contains("3 already there"), "{out}");
    publish(&store_b, &wh_b);
    Fixture {
        _tmp: tmp,
        root,
        store_a,
        store_b,
        wheels,
    }
}

/// A requirements file pinning every package with its sha256 (pip's hash-checking mode).
fn hashed_requirements(f: &Fixture, path: &Path) {
    let line = |req: &str, prefix: &str| {
        format!(
            "{req} --hash=sha256:{}\n",
            sha256_file(wheel(&f.wheels, prefix))
        )
    };
    let text = [
        line("alpha==2.0", "alpha-2.0-"),
        line("beta-pkg==0.1", "Beta_Pkg-0.1-"),
        line("gamma==1.0", "gamma-1.0-"),
    ]
    .concat();
    std::fs::write(path, text).unwrap();
}

fn assert_installed(target: &Path) {
    let py = Path::new("python3");
    assert_eq!(installed_version(py, Some(target), "alpha"), "2.0");
    assert_eq!(installed_version(py, Some(target), "beta_pkg"), "0.1");
    assert_eq!(installed_version(py, Some(target), "gamma"), "1.0");
}

#[test]
fn pip_and_uv_install_with_hashes_and_fall_through_to_the_next_index() {
    let f = fixture();
    let a = Server::start(&f.store_a, &[]);
    let b = Server::start(&f.store_b, &[]);
    let req = f.root.join("requirements.txt");
    hashed_requirements(&f, &req);

    // pip: A is the index, B the extra index; gamma is only in B.
    let target = f.root.join("pip-target");
    let mut c = Command::new("python3");
    pip_env(&mut c, &f.root);
    let (ok, log) = run(c
        .args(["-m", "pip", "install", "--no-cache-dir", "--require-hashes"])
        .args(["--index-url", &a.url, "--extra-index-url", &b.url])
        .arg("--target")
        .arg(&target)
        .arg("-r")
        .arg(&req));
    assert!(ok, "pip install failed:\n{log}");
    assert_installed(&target);

    // uv asks its indexes in order (extra first) and moves on when one answers 404: here alpha
    // and beta-pkg are not in B, so they come from A.
    let target = f.root.join("uv-target");
    let (ok, log) = run(Command::new("uv")
        .env("UV_NO_CONFIG", "1")
        .env("UV_PYTHON_DOWNLOADS", "never")
        .env("UV_CACHE_DIR", f.root.join("uv-cache"))
        .env("HOME", &f.root)
        .args(["pip", "install", "--no-cache", "--require-hashes"])
        .args(["--python", "python3"])
        .args(["--index-url", &a.url, "--extra-index-url", &b.url])
        .arg("--target")
        .arg(&target)
        .arg("-r")
        .arg(&req));
    assert!(ok, "uv pip install failed:\n{log}");
    assert_installed(&target);

    // A wrong hash is refused, by both (the index's hash is what they check against).
    let bad = f.root.join("bad.txt");
    std::fs::write(
        &bad,
        format!("gamma==1.0 --hash=sha256:{}\n", "0".repeat(64)),
    )
    .unwrap();
    let mut c = Command::new("python3");
    pip_env(&mut c, &f.root);
    let (ok, log) = run(c
        .args(["-m", "pip", "install", "--no-cache-dir", "--require-hashes"])
        .args(["--index-url", &b.url])
        .arg("--target")
        .arg(f.root.join("bad-target"))
        .arg("-r")
        .arg(&bad));
    assert!(!ok, "a wrong hash was accepted:\n{log}");
    assert!(
        log.contains("THESE PACKAGES DO NOT MATCH THE HASHES"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_follow_pep503_and_pep691() {
    let f = tokio::task::spawn_blocking(fixture).await.unwrap();
    let a = Server::start(&f.store_a, &[]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The project list, legacy HTML by default.
    let r = http.get(&a.url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let body = r.text().await.unwrap();
    assert!(body.contains("<a href=\"alpha/\">alpha</a>"), "{body}");
    assert!(
        body.contains("<a href=\"beta-pkg/\">beta-pkg</a>"),
        "{body}"
    );

    // Non-normalized names redirect to the normalized page.
    for spelling in ["Beta_Pkg/", "BETA.pkg/", "beta-pkg"] {
        let r = http
            .get(format!("{}{spelling}", a.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 301, "{spelling}");
        assert_eq!(r.headers()[header::LOCATION], "/simple/beta-pkg/");
    }

    // PEP 691 JSON, newest first, with hashes that match the built files.
    let r = http
        .get(format!("{}alpha/", a.url))
        .header(
            header::ACCEPT,
            "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "application/vnd.pypi.simple.v1+json"
    );
    assert_eq!(r.headers()[header::VARY], "Accept");
    assert!(r.headers()[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("max-age="));
    let etag = r.headers()[header::ETAG].clone();
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["name"], "alpha");
    assert_eq!(j["versions"], serde_json::json!(["2.0", "1.0"]));
    let first = &j["files"][0];
    assert_eq!(first["filename"], "alpha-2.0-py3-none-any.whl");
    let built = wheel(&f.wheels, "alpha-2.0-");
    assert_eq!(first["hashes"]["sha256"], sha256_file(built));
    assert_eq!(first["size"], std::fs::metadata(built).unwrap().len());
    // PEP 658 metadata and requires-python, read from the wheel at publish time.
    assert_eq!(first["requires-python"], ">=3.7");
    let meta_sha = first["core-metadata"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let meta_url = reqwest::Url::parse(&format!("{}alpha/", a.url))
        .unwrap()
        .join(&format!("{}.metadata", first["url"].as_str().unwrap()))
        .unwrap();
    let meta = http.get(meta_url).send().await.unwrap();
    assert_eq!(meta.status(), 200);
    let meta = meta.bytes().await.unwrap();
    assert_eq!(hex::encode(sha2::Sha256::digest(&meta)), meta_sha);
    let meta = String::from_utf8_lossy(&meta);
    assert!(
        meta.contains("Name: alpha") && meta.contains("Version: 2.0"),
        "{meta}"
    );

    // Same page again with the ETag: 304, no body.
    let r = http
        .get(format!("{}alpha/", a.url))
        .header(header::ACCEPT, "application/vnd.pypi.simple.v1+json")
        .header(header::IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let old_etag = etag;

    // HTML links carry #sha256= and resolve to the file, streamed with its bytes.
    let html = http
        .get(format!("{}alpha/", a.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let href = html
        .split("href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap();
    assert!(
        html.contains(&format!(
            "data-requires-python=\"&gt;=3.7\" data-dist-info-metadata=\"sha256={meta_sha}\""
        )),
        "{html}"
    );
    let (rel, frag) = href.split_once("#sha256=").unwrap();
    assert_eq!(frag, sha256_file(built));
    assert!(html.find("alpha-2.0-").unwrap() < html.find("alpha-1.0-").unwrap());
    let file_url = reqwest::Url::parse(&format!("{}alpha/", a.url))
        .unwrap()
        .join(rel)
        .unwrap();
    let r = http.get(file_url.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(r.bytes().await.unwrap(), std::fs::read(built).unwrap());
    // A byte range (uv reads wheel metadata this way).
    let r = http
        .get(file_url)
        .header(header::RANGE, "bytes=-22")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    let all = std::fs::read(built).unwrap();
    assert_eq!(r.bytes().await.unwrap(), all[all.len() - 22..]);

    // CI publishes a newer version while the index runs: the page shows it at once, and the old
    // ETag no longer matches.
    let root = f.root.clone();
    let store_a = f.store_a.clone();
    tokio::task::spawn_blocking(move || {
        let wh = root.join("wheelhouse-new");
        build_wheels(&root, &wh, &[py("alpha", "3.0")]);
        publish(&store_a, &wh);
    })
    .await
    .unwrap();
    let r = http
        .get(format!("{}alpha/", a.url))
        .header(header::ACCEPT, "application/vnd.pypi.simple.v1+json")
        .header(header::IF_NONE_MATCH, old_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["versions"], serde_json::json!(["3.0", "2.0", "1.0"]));

    // Unknown project: 404 (what makes clients try the next index). Unknown format: 406.
    let r = http.get(format!("{}gamma/", a.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{}alpha/", a.url))
        .header(header::ACCEPT, "application/vnd.pypi.simple.v9+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);

    // SIGTERM: a clean exit.
    assert!(a.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_is_required_when_configured() {
    let f = tokio::task::spawn_blocking(fixture).await.unwrap();
    let token_file = f.root.join("token");
    std::fs::write(&token_file, "tok-123\n").unwrap();
    // Token from a file (also accepted as the basic password), basic credentials from the env.
    let a = Server::start_with_args(
        &f.store_a,
        &[("KILN_INDEX_BASIC_AUTH", "ci:hunter2")],
        &["--auth-token-file", token_file.to_str().unwrap()],
    );
    let http = reqwest::Client::new();
    let r = http.get(&a.url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .starts_with("Basic realm="));
    let r = http
        .get(&a.url)
        .bearer_auth("tok-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(&a.url).bearer_auth("tok-12").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/healthz", a.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "health checks need no credentials");

    tokio::task::spawn_blocking(move || {
        let req = f.root.join("requirements.txt");
        hashed_requirements(&f, &req);
        let without_gamma: String = std::fs::read_to_string(&req)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("gamma"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&req, without_gamma).unwrap();
        // pip with the token as the password; uv with the basic credentials.
        let mut c = Command::new("python3");
        pip_env(&mut c, &f.root);
        let (ok, log) = run(c
            .args(["-m", "pip", "install", "--no-cache-dir", "--require-hashes"])
            .args(["--index-url", &a.url_with("__token__", "tok-123")])
            .arg("--target")
            .arg(f.root.join("t1"))
            .arg("-r")
            .arg(&req));
        assert!(ok, "pip with token failed:\n{log}");
        let (ok, log) = run(Command::new("uv")
            .env("UV_NO_CONFIG", "1")
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("UV_CACHE_DIR", f.root.join("uv-cache"))
            .env("HOME", &f.root)
            .args(["pip", "install", "--no-cache", "--require-hashes"])
            .args(["--python", "python3"])
            .args(["--index-url", &a.url_with("ci", "hunter2")])
            .arg("--target")
            .arg(f.root.join("t2"))
            .arg("-r")
            .arg(&req));
        assert!(ok, "uv with basic auth failed:\n{log}");
        // Wrong password: refused.
        let mut c = Command::new("python3");
        pip_env(&mut c, &f.root);
        let (ok, _) = run(c
            .args(["-m", "pip", "install", "--no-cache-dir"])
            .args(["--index-url", &a.url_with("ci", "wrong")])
            .arg("--target")
            .arg(f.root.join("t3"))
            .arg("alpha"));
        assert!(!ok, "a wrong password was accepted");
    })
    .await
    .unwrap();
}

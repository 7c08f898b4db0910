//! `cache.ccache.remote`: two machines (two ccache directories, two stores) share one compile
//! cache through a real redis-server on loopback (or an HTTP object store); the second one's
//! compiles are remote hits.

use crate::support;

use std::path::Path;
use std::process::Command;

use support::index::Redis;

/// ccache's counters for one cache dir, from `ccache --print-stats`.
fn ccache_stat(ccache_dir: &Path, key: &str) -> u64 {
    let out = Command::new("ccache")
        .env("CCACHE_DIR", ccache_dir)
        .arg("--print-stats")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(key)).then(|| it.next().unwrap_or("0").parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn compile(ccache_dir: &Path, src: &Path, redis: &str) {
    let out = Command::new("ccache")
        .env("CCACHE_DIR", ccache_dir)
        .env("CCACHE_REMOTE_STORAGE", redis)
        .env("CCACHE_BASEDIR", src.parent().unwrap().parent().unwrap())
        .env("CCACHE_NOHASHDIR", "1")
        .env("CCACHE_COMPILERCHECK", "content")
        .args(["gcc", "-O2", "-c", "shared.c", "-o", "shared.o"])
        .current_dir(src.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ccache gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn second_ccache_dir_hits_the_shared_redis() {
    let redis = Redis::start();
    let tmp = tempfile::tempdir().unwrap();
    // The same source in two checkouts on two "machines".
    let mut srcs = Vec::new();
    for m in ["a", "b"] {
        let dir = tmp.path().join(m).join("src");
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("shared.c");
        std::fs::write(&src, "int shared(int x) { return x * 7 + 3; }\n").unwrap();
        srcs.push(src);
    }
    let (cc_a, cc_b) = (tmp.path().join("a/ccache"), tmp.path().join("b/ccache"));
    compile(&cc_a, &srcs[0], &redis.url());
    assert_eq!(ccache_stat(&cc_a, "cache_miss"), 1);
    assert_eq!(ccache_stat(&cc_a, "remote_storage_hit"), 0);
    assert!(redis.keys() > 0, "nothing was written to redis");

    compile(&cc_b, &srcs[1], &redis.url());
    assert_eq!(ccache_stat(&cc_b, "cache_miss"), 0);
    assert_eq!(
        ccache_stat(&cc_b, "remote_storage_hit"),
        1,
        "the second machine's compile came from redis"
    );
    assert!(tmp.path().join("b/src/shared.o").exists());
}

#[test]
fn kiln_run_reports_remote_hits_in_the_summary() {
    let redis = Redis::start();
    let tmp = tempfile::tempdir().unwrap();
    let repo = support::run::fixture_repo(&tmp.path().join("repo"));
    // The fixture's kiln.yml plus the shared compile cache.
    let config = tmp.path().join("kiln-remote.yml");
    std::fs::write(
        &config,
        format!(
            "{}\ncache:\n  ccache:\n    remote: {}\n",
            std::fs::read_to_string(repo.join("kiln.yml")).unwrap(),
            redis.url()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let mut summaries = Vec::new();
    // Two machines: their own home, work dir and store; only redis is shared.
    for m in ["a", "b"] {
        let r = support::run::run(
            &tmp.path().join(format!("home-{m}")),
            &repo,
            "green",
            &tmp.path().join(format!("work-{m}")),
            &tmp.path().join(format!("store-{m}")),
            &["--config", config],
        );
        assert_eq!(r.code, 0, "run on {m} failed:\n{}", r.stderr);
        summaries.push(r.summary().clone());
    }
    let (a, b) = (&summaries[0].ccache, &summaries[1].ccache);
    assert!(a.enabled && a.misses >= 5, "machine a compiled: {a:?}");
    assert_eq!(a.remote_hits, 0, "{a:?}");
    assert!(
        b.remote_hits >= 5,
        "machine b's compiles came from redis: {b:?}"
    );
    assert_eq!(b.misses, 0, "nothing compiled on machine b: {b:?}");
    assert_eq!(
        summaries[1].wheels.built, 5,
        "b built its wheels (no shared store)"
    );
}

/// A minimal HTTP object store (GET/HEAD/PUT/DELETE on any path), in memory, on loopback: what
/// ccache's `http://` remote storage needs.
async fn http_store() -> (String, std::sync::Arc<std::sync::Mutex<usize>>) {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{Method, StatusCode, Uri};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    type Objects = Arc<Mutex<HashMap<String, Bytes>>>;
    let objects: Objects = Arc::default();
    let puts = Arc::new(Mutex::new(0usize));
    let counter = puts.clone();
    let app = axum::Router::new()
        .fallback(
            move |State(objects): State<Objects>, method: Method, uri: Uri, body: Bytes| {
                let counter = counter.clone();
                async move {
                    let key = uri.path().to_string();
                    let mut map = objects.lock().unwrap();
                    match method {
                        Method::PUT => {
                            map.insert(key, body);
                            *counter.lock().unwrap() += 1;
                            (StatusCode::CREATED, Bytes::new())
                        }
                        Method::GET | Method::HEAD => match map.get(&key) {
                            Some(b) => (StatusCode::OK, b.clone()),
                            None => (StatusCode::NOT_FOUND, Bytes::new()),
                        },
                        Method::DELETE => {
                            map.remove(&key);
                            (StatusCode::OK, Bytes::new())
                        }
                        _ => (StatusCode::METHOD_NOT_ALLOWED, Bytes::new()),
                    }
                }
            },
        )
        .with_state(objects);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/ccache"), puts)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_remote_storage_is_shared_too() {
    let (url, puts) = http_store().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut srcs = Vec::new();
    for m in ["a", "b"] {
        let dir = tmp.path().join(m).join("src");
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("shared.c");
        std::fs::write(&src, "int over_http(int x) { return x - 11; }\n").unwrap();
        srcs.push(src);
    }
    let root = tmp.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        compile(&root.join("a/ccache"), &srcs[0], &url);
        assert_eq!(ccache_stat(&root.join("a/ccache"), "cache_miss"), 1);
        compile(&root.join("b/ccache"), &srcs[1], &url);
        assert_eq!(
            ccache_stat(&root.join("b/ccache"), "remote_storage_hit"),
            1,
            "the second machine's compile came over http"
        );
    })
    .await
    .unwrap();
    assert!(*puts.lock().unwrap() > 0, "ccache wrote nothing over http");
}

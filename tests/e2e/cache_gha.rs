//! The `gha` store (GitHub Actions cache service, protocol v1) against a wiremock fake that
//! keeps state like the real service: reserve → PATCH chunks → commit, lookup by key and
//! version, ranged downloads, entries immutable once committed. Asserts on the requests made.

#![allow(clippy::cloned_ref_to_slice_refs)]

use std::collections::HashMap;
use std::fs;
use std::sync::{Arc, Mutex};

use kiln::cache::{self, RestoreHit, SaveOptions, Store};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Default)]
struct State {
    next_id: i64,
    /// id → (key, bytes so far)
    pending: HashMap<i64, (String, Vec<u8>)>,
    committed: HashMap<String, Vec<u8>>,
    base: String,
}

#[derive(Clone)]
struct FakeCache(Arc<Mutex<State>>);

const TOKEN: &str = "ghs_runtime_token_value";

impl Respond for FakeCache {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.lock().unwrap();
        let path = req.url.path().to_string();
        let method = req.method.as_str();
        if !path.starts_with("/blob/") {
            let auth = req
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if auth != format!("Bearer {TOKEN}") {
                return ResponseTemplate::new(401);
            }
        }
        match (method, path.as_str()) {
            ("GET", "/_apis/artifactcache/cache") => {
                let key = req
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "keys")
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default();
                if st.committed.contains_key(&key) {
                    let loc = format!("{}/blob/{}", st.base, url_escape(&key));
                    ResponseTemplate::new(200).set_body_json(serde_json::json!({
                        "archiveLocation": loc, "cacheKey": key, "scope": "refs/heads/main"
                    }))
                } else {
                    ResponseTemplate::new(204)
                }
            }
            ("POST", "/_apis/artifactcache/caches") => {
                let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
                let key = body["key"].as_str().unwrap().to_string();
                if st.committed.contains_key(&key) || st.pending.values().any(|(k, _)| *k == key) {
                    return ResponseTemplate::new(409);
                }
                st.next_id += 1;
                let id = st.next_id;
                st.pending.insert(id, (key, Vec::new()));
                ResponseTemplate::new(201).set_body_json(serde_json::json!({ "cacheId": id }))
            }
            (m, p) if p.starts_with("/_apis/artifactcache/caches/") => {
                let id: i64 = p.rsplit('/').next().unwrap().parse().unwrap();
                if m == "PATCH" {
                    let range = req.headers.get("content-range").unwrap().to_str().unwrap();
                    let start: usize = range
                        .trim_start_matches("bytes ")
                        .split('-')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    let entry = &mut st.pending.get_mut(&id).unwrap().1;
                    if entry.len() < start + req.body.len() {
                        entry.resize(start + req.body.len(), 0);
                    }
                    entry[start..start + req.body.len()].copy_from_slice(&req.body);
                    ResponseTemplate::new(204)
                } else {
                    let (key, bytes) = st.pending.remove(&id).unwrap();
                    st.committed.insert(key, bytes);
                    ResponseTemplate::new(204)
                }
            }
            ("GET", p) if p.starts_with("/blob/") => {
                let key = url_unescape(&p["/blob/".len()..]);
                let Some(bytes) = st.committed.get(&key) else {
                    return ResponseTemplate::new(404);
                };
                let total = bytes.len();
                match req.headers.get("range").and_then(|v| v.to_str().ok()) {
                    Some(r) => {
                        let spec = r.trim_start_matches("bytes=");
                        let (a, b) = spec.split_once('-').unwrap();
                        let a: usize = a.parse().unwrap();
                        let b: usize = if b.is_empty() {
                            total - 1
                        } else {
                            b.parse::<usize>().unwrap().min(total - 1)
                        };
                        ResponseTemplate::new(206)
                            .insert_header(
                                "content-range",
                                format!("bytes {a}-{b}/{total}").as_str(),
                            )
                            .set_body_bytes(bytes[a..=b].to_vec())
                    }
                    None => ResponseTemplate::new(200).set_body_bytes(bytes.clone()),
                }
            }
            _ => ResponseTemplate::new(404),
        }
    }
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn url_unescape(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() + 1 {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn gha_store_saves_and_restores_through_the_cache_service() {
    let server = MockServer::start().await;
    let state = Arc::new(Mutex::new(State {
        base: server.uri(),
        ..Default::default()
    }));
    Mock::given(any())
        .respond_with(FakeCache(state.clone()))
        .mount(&server)
        .await;

    let env = |k: &str| match k {
        "ACTIONS_CACHE_URL" => Some(format!("{}/", server.uri())),
        "ACTIONS_RUNTIME_TOKEN" => Some(TOKEN.to_string()),
        _ => None,
    };
    assert_eq!(
        kiln::settings::auto_url_from(&env),
        "gha",
        "chosen automatically"
    );
    // The service's variables go to this store only: the process environment is every test's.
    let store_env = |k: &str| match k {
        "KILN_STORE_RETRY_DELAY_MS" => Some("50".to_string()),
        _ => env(k),
    };
    let store = Store::from_url_with_env("gha", &store_env).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("wheels");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.whl"), b"wheel").unwrap();
    fs::write(src.join("sub/big"), vec![3u8; 3 << 20]).unwrap();

    let out = cache::save(
        &store,
        "kiln-1-wheels-x",
        &[src.clone()],
        &SaveOptions::default(),
    )
    .await;
    assert!(out.saved, "{out:?}");
    let patches = |reqs: &[Request]| reqs.iter().filter(|r| r.method.as_str() == "PATCH").count();
    let after_first = server.received_requests().await.unwrap();
    assert!(patches(&after_first) >= 2, "archive and manifest uploaded");
    {
        let st = state.lock().unwrap();
        assert!(st
            .committed
            .keys()
            .any(|k| k.ends_with("caches/kiln-1-wheels-x.json")));
    }

    // Unchanged: nothing uploaded.
    let again = cache::save(
        &store,
        "kiln-1-wheels-x",
        &[src.clone()],
        &SaveOptions::default(),
    )
    .await;
    assert!(!again.saved, "{again:?}");
    let after_second = server.received_requests().await.unwrap();
    assert_eq!(patches(&after_second), patches(&after_first));

    let dst = tmp.path().join("dst");
    let r = cache::restore(&store, "kiln-1-wheels-x", &[], &[dst.clone()]).await;
    assert_eq!(r.hit, RestoreHit::Exact, "{r:?}");
    assert_eq!(fs::read(dst.join("a.whl")).unwrap(), b"wheel");
    assert_eq!(fs::read(dst.join("sub/big")).unwrap().len(), 3 << 20);

    // The service cannot list: a restore prefix is a miss that says why.
    let r = cache::restore(
        &store,
        "kiln-1-wheels-y",
        &["kiln-1-wheels-".to_string()],
        &[tmp.path().join("d2")],
    )
    .await;
    assert_eq!(r.hit, RestoreHit::Miss);
    let w = r.warnings.join("\n");
    assert!(w.contains("cannot list"), "{w}");
    assert!(!w.contains(TOKEN));
}

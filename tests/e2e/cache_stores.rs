//! The cache engine against real servers on loopback, started here: moto's S3 server and nginx
//! with its WebDAV module. Includes killing the S3 server in the middle of an upload and of a
//! download (through a byte-counting TCP relay that pulls the trigger at a chosen point): the
//! save must end with a warning, the restore with a miss that leaves the target as it was.

#![allow(clippy::cloned_ref_to_slice_refs)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln::cache::{self, RestoreHit, SaveOptions, Store};

use crate::support::noise;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on {port}");
}

/// A server process killed when dropped.
struct Server {
    child: Arc<Mutex<Child>>,
    port: u16,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn moto() -> Server {
    let port = free_port();
    let mut child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto (pip install 'moto[server]'; scripts/setup.sh)");
    wait_for_port(port, &mut child, "moto");
    Server {
        child: Arc::new(Mutex::new(child)),
        port,
        _dir: None,
    }
}

/// Create a bucket (moto does not check signatures).
fn create_bucket(port: u16, bucket: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
}

/// moto's credentials and short store timeouts: handed to each store and `kiln` process, never
/// set on the test process (every test area shares it).
const STORE_ENV: [(&str, &str); 6] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing-secret-value"),
    ("AWS_REGION", "us-east-1"),
    ("KILN_STORE_RETRIES", "2"),
    ("KILN_STORE_RETRY_DELAY_MS", "100"),
    ("KILN_STORE_TIMEOUT", "10"),
];

fn store_env(name: &str) -> Option<String> {
    STORE_ENV
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn s3_store(port: u16, bucket: &str) -> Store {
    Store::from_url_with_env(
        &format!("s3://{bucket}/kiln?endpoint=http://127.0.0.1:{port}"),
        &store_env,
    )
    .unwrap()
}

fn nginx_dav() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path();
    fs::create_dir_all(d.join("data")).unwrap();
    fs::create_dir_all(d.join("tmp")).unwrap();
    let user = if unsafe_is_root() {
        "user root root;"
    } else {
        ""
    };
    let conf = format!(
        r#"load_module /usr/lib/nginx/modules/ngx_http_dav_ext_module.so;
{user}
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            root {d}/data;
            dav_methods PUT DELETE MKCOL COPY MOVE;
            dav_ext_methods PROPFIND OPTIONS;
            create_full_put_path on;
            dav_access user:rw group:rw all:r;
            autoindex on;
        }}
    }}
}}
"#,
        d = d.display()
    );
    fs::write(d.join("nginx.conf"), conf).unwrap();
    let mut child = Command::new("nginx")
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .arg("-p")
        .arg(d)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nginx (apt-get install nginx-extras; scripts/setup.sh)");
    wait_for_port(port, &mut child, "nginx");
    Server {
        child: Arc::new(Mutex::new(child)),
        port,
        _dir: Some(dir),
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn make_tree(dir: &Path, seed: u64, big: usize) {
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("a.txt"), format!("hello {seed}")).unwrap();
    fs::write(dir.join("sub/big.bin"), noise(seed, big)).unwrap();
    fs::write(dir.join("sub/text.txt"), "compressible ".repeat(10_000)).unwrap();
}

fn same_tree(a: &Path, b: &Path) -> bool {
    ["a.txt", "sub/big.bin", "sub/text.txt"]
        .iter()
        .all(|f| fs::read(a.join(f)).ok() == fs::read(b.join(f)).ok())
}

/// Save, skip-unchanged, exact and partial restore, list: the same behaviour on every store.
async fn exercise(store: &Store, root: &Path) {
    let src = root.join("src");
    make_tree(&src, 1, 3 << 20);
    let out = cache::save(
        store,
        "wheels-linux-aaa",
        &[src.clone()],
        &SaveOptions::default(),
    )
    .await;
    assert!(out.saved, "{out:?}");
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let again = cache::save(
        store,
        "wheels-linux-aaa",
        &[src.clone()],
        &SaveOptions::default(),
    )
    .await;
    assert!(
        !again.saved && again.bytes == 0,
        "unchanged content re-uploaded: {again:?}"
    );

    let dst = root.join("dst");
    let r = cache::restore(store, "wheels-linux-aaa", &[], &[dst.clone()]).await;
    assert_eq!(r.hit, RestoreHit::Exact, "{r:?}");
    assert!(same_tree(&src, &dst));

    let dst2 = root.join("dst2");
    let r = cache::restore(
        store,
        "wheels-linux-bbb",
        &["wheels-linux-".to_string()],
        &[dst2.clone()],
    )
    .await;
    assert_eq!(r.hit, RestoreHit::Partial, "{r:?}");
    assert_eq!(r.matched_key.as_deref(), Some("wheels-linux-aaa"));
    assert!(same_tree(&src, &dst2));

    let cat = kiln::cache::catalog::read(store, "").await.unwrap();
    assert_eq!(cat.caches.len(), 1);
    assert_eq!(cat.caches[0].key, "wheels-linux-aaa");
    assert!(cat.caches[0].size > 3 << 20);
    assert!(cat.orphans.is_empty(), "{:?}", cat.orphans);
}

#[tokio::test]
async fn s3_store_round_trip_on_moto() {
    let server = moto();
    create_bucket(server.port, "ci-cache");
    let store = s3_store(server.port, "ci-cache");
    assert!(store.display().starts_with("s3://ci-cache/kiln"));
    let tmp = tempfile::tempdir().unwrap();
    exercise(&store, tmp.path()).await;
}

#[tokio::test]
async fn webdav_store_round_trip_on_nginx() {
    let server = nginx_dav();
    let store = Store::from_url_with_env(
        &format!(
            "webdav+http://kiln:s3cret@127.0.0.1:{}/team/cache",
            server.port
        ),
        &store_env,
    )
    .unwrap();
    assert!(!store.display().contains("s3cret"), "{}", store.display());
    let tmp = tempfile::tempdir().unwrap();
    exercise(&store, tmp.path()).await;
    let dir = server._dir.as_ref().unwrap().path();
    assert!(dir
        .join("data/team/cache/caches/wheels-linux-aaa.json")
        .exists());
}

/// A TCP relay to `upstream` that calls `trigger` once `limit` bytes have gone in the chosen
/// direction (client→server for uploads, server→client for downloads).
struct Relay {
    port: u16,
    fired: Arc<AtomicBool>,
}

fn relay(upstream: u16, upload: bool, limit: u64, trigger: Arc<dyn Fn() + Send + Sync>) -> Relay {
    relay_with(upstream, upload, limit, trigger, false)
}

/// With `cut`, the connection that crosses `limit` is dropped there (once): a flaky network.
fn relay_with(
    upstream: u16,
    upload: bool,
    limit: u64,
    trigger: Arc<dyn Fn() + Send + Sync>,
    cut: bool,
) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let counted = Arc::new(AtomicU64::new(0));
    let fired = Arc::new(AtomicBool::new(false));
    let f2 = fired.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                drop(client);
                continue;
            };
            for (from, to, counts) in [
                (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    upload,
                ),
                (server, client, !upload),
            ] {
                let counted = counted.clone();
                let fired = f2.clone();
                let trigger = trigger.clone();
                std::thread::spawn(move || {
                    let (mut from, mut to) = (from, to);
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if counts
                            && counted.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > limit
                            && !fired.swap(true, Ordering::SeqCst)
                        {
                            trigger();
                            if cut {
                                let _ = from.shutdown(std::net::Shutdown::Both);
                                break;
                            }
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    Relay { port, fired }
}

fn killer(server: &Server) -> Arc<dyn Fn() + Send + Sync> {
    let child = server.child.clone();
    Arc::new(move || {
        if let Ok(mut c) = child.lock() {
            let _ = c.kill();
        }
    })
}

#[tokio::test]
async fn s3_server_killed_mid_upload_is_a_warning_not_a_failure() {
    let server = moto();
    create_bucket(server.port, "bucket-k");
    let relay = relay(server.port, true, 6 << 20, killer(&server));
    let store = s3_store(relay.port, "bucket-k");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, 7, 24 << 20);
    let started = Instant::now();
    let out = cache::save(&store, "big", &[src.clone()], &SaveOptions::default()).await;
    assert!(
        relay.fired.load(Ordering::SeqCst),
        "the server was killed mid-upload"
    );
    assert!(!out.saved, "{out:?}");
    assert_eq!(out.bytes, 0);
    let w = out.warnings.join("\n");
    eprintln!("save warnings: {w}");
    assert!(w.contains("not saved"), "{w}");
    assert!(
        !w.contains("testing-secret-value"),
        "credentials leaked: {w}"
    );
    assert!(started.elapsed() < Duration::from_secs(90));

    // The build goes on: the next restore is a plain miss with a warning.
    let dst = tmp.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    fs::write(dst.join("keep"), "x").unwrap();
    let r = cache::restore(&store, "big", &["bi".to_string()], &[dst.clone()]).await;
    assert_eq!(r.hit, RestoreHit::Miss);
    assert!(
        r.warnings.join("").contains("unavailable"),
        "{:?}",
        r.warnings
    );
    assert_eq!(fs::read_to_string(dst.join("keep")).unwrap(), "x");
}

#[tokio::test]
async fn s3_server_killed_mid_download_is_a_miss_and_target_is_untouched() {
    let server = moto();
    create_bucket(server.port, "bucket-k");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, 9, 24 << 20);
    let direct = s3_store(server.port, "bucket-k");
    let out = cache::save(&direct, "big", &[src.clone()], &SaveOptions::default()).await;
    assert!(out.saved, "{out:?}");

    let relay = relay(server.port, false, 4 << 20, killer(&server));
    let store = s3_store(relay.port, "bucket-k");
    let parent = tmp.path().join("work");
    let dst = parent.join("dst");
    fs::create_dir_all(&dst).unwrap();
    fs::write(dst.join("keep"), "x").unwrap();
    let r = cache::restore(&store, "big", &[], &[dst.clone()]).await;
    assert!(
        relay.fired.load(Ordering::SeqCst),
        "the server was killed mid-download"
    );
    assert_eq!(r.hit, RestoreHit::Miss, "{r:?}");
    assert!(!r.warnings.is_empty());
    eprintln!("restore warnings: {:?}", r.warnings);
    let names: Vec<_> = fs::read_dir(&dst)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("keep")]);
    let siblings: Vec<_> = fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings.len(), 1, "no staging left behind: {siblings:?}");
}

#[test]
fn two_processes_saving_one_key_on_s3_leave_one_valid_archive() {
    let server = moto();
    create_bucket(server.port, "race");
    let url = format!("s3://race/p?endpoint=http://127.0.0.1:{}", server.port);
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    make_tree(&a, 1, 4 << 20);
    make_tree(&b, 2, 4 << 20);
    let spawn = |dir: &PathBuf| {
        crate::support::kiln()
            .envs(STORE_ENV)
            .args(["cache", "save", "--key", "same", "--path"])
            .arg(dir)
            .args(["--store", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut pa, mut pb) = (spawn(&a), spawn(&b));
    assert!(pa.wait().unwrap().success() && pb.wait().unwrap().success());
    let dst = tmp.path().join("dst");
    let o = crate::support::kiln()
        .envs(STORE_ENV)
        .args(["cache", "restore", "--key", "same", "--path"])
        .arg(&dst)
        .args(["--store", &url])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "exact same");
    assert!(same_tree(&a, &dst) || same_tree(&b, &dst), "restored a mix");
}

#[tokio::test]
async fn s3_download_cut_once_is_retried_and_restores() {
    let server = moto();
    create_bucket(server.port, "bucket-flaky");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, 11, 12 << 20);
    let direct = s3_store(server.port, "bucket-flaky");
    assert!(
        cache::save(&direct, "flaky", &[src.clone()], &SaveOptions::default())
            .await
            .saved
    );

    let relay = relay_with(server.port, false, 2 << 20, Arc::new(|| {}), true);
    let store = s3_store(relay.port, "bucket-flaky");
    let dst = tmp.path().join("dst");
    let r = cache::restore(&store, "flaky", &[], &[dst.clone()]).await;
    assert!(
        relay.fired.load(Ordering::SeqCst),
        "a connection was cut mid-download"
    );
    assert_eq!(r.hit, RestoreHit::Exact, "{r:?}");
    assert!(same_tree(&src, &dst));
}

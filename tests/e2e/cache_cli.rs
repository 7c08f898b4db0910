//! `kiln cache save|restore|list|prune` driven as a user would, against a file:// store, plus
//! two concurrent saves of one key from two processes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{kiln, noise};

fn run(c: &mut Command) -> Output {
    let out = c.output().unwrap();
    eprintln!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn write(path: &Path, body: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
}

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    url: String,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let url = format!("file://{}/store", root.display());
    Env {
        _tmp: tmp,
        root,
        url,
    }
}

#[test]
fn save_restore_list_round_trip_through_the_cli() {
    let e = env();
    let src = e.root.join("wheels");
    write(&src.join("pkg-1.0-py3-none-any.whl"), b"wheel bytes");
    write(&src.join("sub/x.o"), &[1u8; 5000]);

    let o = run(kiln()
        .args(["cache", "save", "--key", "wheels-abc", "--path"])
        .arg(&src)
        .args(["--store", &e.url]));
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("saved wheels-abc"), "{}", stdout(&o));
    // Not a terminal: no progress bar, a log line with bytes and MB/s instead.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("MB/s"), "{err}");

    // Same content again: skipped.
    let o = run(kiln()
        .args(["cache", "save", "--key", "wheels-abc", "--path"])
        .arg(&src)
        .env("KILN_STORE", &e.url));
    assert!(o.status.success());
    assert!(stdout(&o).contains("skipped wheels-abc"), "{}", stdout(&o));

    let dst = e.root.join("restored");
    let gh_out = e.root.join("github_output");
    fs::write(&gh_out, "").unwrap();
    let o = run(kiln()
        .args(["cache", "restore", "--key", "wheels-abc", "--path"])
        .arg(&dst)
        .args(["--store", &e.url])
        .env("GITHUB_OUTPUT", &gh_out));
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), "exact wheels-abc");
    assert_eq!(
        fs::read(dst.join("pkg-1.0-py3-none-any.whl")).unwrap(),
        b"wheel bytes"
    );
    let gh = fs::read_to_string(&gh_out).unwrap();
    assert!(gh.contains("cache-hit=true"), "{gh}");

    // Partial through a restore key.
    let dst2 = e.root.join("restored2");
    let o = run(kiln()
        .args([
            "cache",
            "restore",
            "--key",
            "wheels-zzz",
            "--restore-key",
            "nope-",
            "--restore-key",
            "wheels-",
            "--path",
        ])
        .arg(&dst2)
        .args(["--store", &e.url]));
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), "partial wheels-abc");
    assert!(dst2.join("sub/x.o").exists());

    // Miss, and --fail-on-miss turns a miss (or partial) into exit 1.
    let o = run(kiln()
        .args(["cache", "restore", "--key", "other", "--path"])
        .arg(e.root.join("d3"))
        .args(["--store", &e.url]));
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), "miss");
    let o = run(kiln()
        .args([
            "cache",
            "restore",
            "--key",
            "wheels-zzz",
            "--restore-key",
            "wheels-",
            "--fail-on-miss",
            "--path",
        ])
        .arg(e.root.join("d4"))
        .args(["--store", &e.url]));
    assert_eq!(o.status.code(), Some(1));

    // --lookup-only says what would hit and writes nothing.
    let d5 = e.root.join("d5");
    let o = run(kiln()
        .args([
            "cache",
            "restore",
            "--key",
            "wheels-abc",
            "--lookup-only",
            "--path",
        ])
        .arg(&d5)
        .args(["--store", &e.url]));
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), "exact wheels-abc");
    assert!(!d5.exists());

    let o = run(kiln().args(["cache", "list", "--store", &e.url]));
    assert!(o.status.success());
    let s = stdout(&o);
    assert!(s.lines().next().unwrap().starts_with("KEY"), "{s}");
    let row = s
        .lines()
        .find(|l| l.starts_with("wheels-abc"))
        .expect("listed");
    assert!(
        row.contains("B") && row.trim_end().ends_with('s'),
        "size and age: {row}"
    );
    let o = run(kiln().args(["cache", "list", "--prefix", "zzz", "--store", &e.url]));
    assert!(stdout(&o).contains("0 caches"));
}

#[test]
fn bad_store_url_is_a_usage_error_and_credentials_are_not_echoed() {
    let o = run(kiln().args([
        "cache",
        "list",
        "--store",
        "ftp://bob:hunter2@example.invalid/x",
    ]));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unsupported"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    // Not even a URL: still printed without its password.
    let o = run(kiln().args([
        "cache",
        "list",
        "--store",
        "s3://bob:hunter2 x@bad host/prefix",
    ]));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a URL"), "{err}");
    assert!(err.contains("s3://bad host/prefix"), "{err}");
    assert!(!err.contains("hunter2") && !err.contains("bob"), "{err}");
}

/// Manifest `created` rewritten into the past, as if saved `days` ago.
fn age_cache(store: &Path, key: &str, days: i64) {
    let p = store.join(format!("caches/{key}.json"));
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    let t = chrono::Utc::now() - chrono::Duration::days(days);
    m["created"] = serde_json::Value::String(t.to_rfc3339());
    fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
}

#[test]
fn prune_by_age_then_by_size_and_cleans_old_leftovers() {
    let e = env();
    let store = e.root.join("store");
    for (i, key) in ["k-old", "k-mid", "k-new", "k-newest"].iter().enumerate() {
        let src = e.root.join(key);
        // Incompressible, so sizes are predictable (~64 KiB each).
        let body = noise(i as u64 + 1, 65536);
        write(&src.join("f"), &body);
        let o = run(kiln()
            .args(["cache", "save", "--key", key, "--path"])
            .arg(&src)
            .args(["--store", &e.url]));
        assert!(o.status.success());
    }
    age_cache(&store, "k-old", 40);
    age_cache(&store, "k-mid", 3);
    age_cache(&store, "k-new", 2);
    age_cache(&store, "k-newest", 1);
    // An old orphan archive (an interrupted save) and a fresh one (a save in progress).
    let old_orphan = store.join("caches/gone.123.tar.zst");
    write(&old_orphan, b"x");
    fs::File::options()
        .write(true)
        .open(&old_orphan)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    let fresh_orphan = store.join("caches/busy.456.tar.zst");
    write(&fresh_orphan, b"y");

    // Dry run deletes nothing.
    let o = run(kiln().args([
        "cache",
        "prune",
        "--max-age",
        "30d",
        "--dry-run",
        "--store",
        &e.url,
    ]));
    assert!(stdout(&o).contains("would delete k-old"));
    assert!(store.join("caches/k-old.json").exists());

    let o = run(kiln().args([
        "cache",
        "prune",
        "--max-age",
        "30d",
        "--max-total-size",
        "150K",
        "--store",
        &e.url,
    ]));
    assert!(o.status.success());
    let s = stdout(&o);
    assert!(
        s.contains("deleted k-old") && s.contains("older than max age"),
        "{s}"
    );
    assert!(
        s.contains("deleted k-mid") && s.contains("over the size budget"),
        "{s}"
    );
    assert!(!s.contains("deleted k-new "), "{s}");
    for gone in ["k-old", "k-mid"] {
        assert!(!store.join(format!("caches/{gone}.json")).exists());
    }
    for kept in ["k-new", "k-newest"] {
        assert!(store.join(format!("caches/{kept}.json")).exists());
    }
    assert!(!old_orphan.exists(), "old orphan removed");
    assert!(fresh_orphan.exists(), "a save in progress is left alone");
    // Only the kept keys' archives remain (plus the fresh orphan).
    let archives = fs::read_dir(store.join("caches"))
        .unwrap()
        .filter(|d| {
            d.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tar.")
        })
        .count();
    assert_eq!(archives, 3);
    let o = run(kiln().args(["cache", "prune", "--store", &e.url]));
    assert_eq!(o.status.code(), Some(2), "prune needs a limit");
}

#[test]
fn two_processes_saving_one_key_leave_one_valid_archive() {
    let e = env();
    let (a, b) = (e.root.join("a"), e.root.join("b"));
    for (dir, seed) in [(&a, 1u32), (&b, 2u32)] {
        for i in 0..40u32 {
            let body = noise(u64::from(seed) * 1000 + u64::from(i), 100_000);
            write(&dir.join(format!("f{i}")), &body);
        }
    }
    for round in 0..3 {
        let key = format!("race-{round}");
        let spawn = |dir: &Path| {
            kiln()
                .args(["cache", "save", "--key", &key, "--path"])
                .arg(dir)
                .args(["--store", &e.url])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (pa, pb) = (spawn(&a), spawn(&b));
        let (oa, ob) = (
            pa.wait_with_output().unwrap(),
            pb.wait_with_output().unwrap(),
        );
        assert!(oa.status.success() && ob.status.success());

        let dst = e.root.join(format!("dst-{round}"));
        let o = run(kiln()
            .args(["cache", "restore", "--key", &key, "--path"])
            .arg(&dst)
            .args(["--store", &e.url]));
        assert_eq!(stdout(&o).trim(), format!("exact {key}"));
        // Exactly one of the two trees, never a mix.
        let got: Vec<Vec<u8>> = (0..40)
            .map(|i| fs::read(dst.join(format!("f{i}"))).unwrap())
            .collect();
        let from_a: Vec<Vec<u8>> = (0..40)
            .map(|i| fs::read(a.join(format!("f{i}"))).unwrap())
            .collect();
        let from_b: Vec<Vec<u8>> = (0..40)
            .map(|i| fs::read(b.join(format!("f{i}"))).unwrap())
            .collect();
        assert!(
            got == from_a || got == from_b,
            "restored a mix of two saves"
        );
    }
}

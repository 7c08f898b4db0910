//! The cache engine on a file:// store: round trips, prefix fallback, skipped saves, and every
//! kind of hostile or damaged archive, each crafted by hand with the `tar` crate and planted in
//! the store. A bad archive must be a miss with a warning naming the reason, leave the target as
//! it was, and write nothing outside it.

#![allow(clippy::cloned_ref_to_slice_refs)]

use std::fs;
use std::path::{Path, PathBuf};

use kiln::cache::manifest::{self, Manifest};
use kiln::cache::{self, RestoreHit, SaveOptions, Store};
use kiln::settings::Compression;
use sha2::{Digest, Sha256};

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store_dir: PathBuf,
    store: Store,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let store_dir = root.join("store");
    let store = Store::from_url(&format!("file://{}", store_dir.display())).unwrap();
    Env {
        _tmp: tmp,
        root,
        store_dir,
        store,
    }
}

fn write(path: &Path, body: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
}

/// A small tree: nested files, an executable, an empty dir, an inside symlink.
fn make_tree(dir: &Path, salt: &str) {
    write(&dir.join("a.txt"), format!("hello {salt}").as_bytes());
    write(&dir.join("sub/deep/b.bin"), &vec![7u8; 100_000]);
    write(&dir.join("run.sh"), b"#!/bin/sh\necho hi\n");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(dir.join("empty")).unwrap();
    std::os::unix::fs::symlink("sub/deep/b.bin", dir.join("link")).unwrap();
}

/// Every file under `dir` with its content (symlinks as `-> target`), sorted.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
        let ft = e.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(e.path()).unwrap();
            out.push((rel, format!("-> {}", t.display()).into_bytes()));
        } else if ft.is_file() {
            out.push((rel, fs::read(e.path()).unwrap()));
        } else {
            out.push((rel + "/", Vec::new()));
        }
    }
    out
}

fn archives(store_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(store_dir.join("caches"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .filter(|n| n.contains(".tar."))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Save `dir` under `key` with the default options; whether it was saved.
async fn saved(e: &Env, key: &str, dir: &Path) -> bool {
    cache::save(&e.store, key, &[dir.to_path_buf()], &SaveOptions::default())
        .await
        .saved
}

#[tokio::test]
async fn round_trip_of_two_directories_is_exact() {
    let e = env();
    let (a, b) = (e.root.join("src/wheels"), e.root.join("src/ccache"));
    make_tree(&a, "a");
    make_tree(&b, "b");
    let out = cache::save(
        &e.store,
        "k1",
        &[a.clone(), b.clone()],
        &SaveOptions::default(),
    )
    .await;
    assert!(out.saved, "{out:?}");
    assert!(out.bytes > 0);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);

    let manifest: Manifest =
        serde_json::from_slice(&fs::read(e.store_dir.join("caches/k1.json")).unwrap()).unwrap();
    assert_eq!(manifest.file_count, 6);
    assert_eq!(manifest.paths.len(), 2);
    assert_eq!(manifest.compression, Compression::Zstd);
    assert_eq!(manifest.compressed_size, out.bytes);

    let (ra, rb) = (e.root.join("dst/w"), e.root.join("dst/c"));
    let r = cache::restore(&e.store, "k1", &[], &[ra.clone(), rb.clone()]).await;
    assert_eq!(r.hit, RestoreHit::Exact, "{r:?}");
    assert_eq!(r.matched_key.as_deref(), Some("k1"));
    assert_eq!(r.bytes, out.bytes);
    assert_eq!(snapshot(&ra), snapshot(&a));
    assert_eq!(snapshot(&rb), snapshot(&b));
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(ra.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "executable bit kept");
    // No staging or backup directories left next to the targets.
    let leftovers: Vec<_> = fs::read_dir(e.root.join("dst"))
        .unwrap()
        .map(|d| d.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn gzip_on_request_round_trips() {
    let e = env();
    let a = e.root.join("src");
    make_tree(&a, "g");
    let opts = SaveOptions {
        compression: Compression::Gzip,
        level: Some(1),
    };
    assert!(cache::save(&e.store, "g", &[a.clone()], &opts).await.saved);
    assert!(archives(&e.store_dir)[0].ends_with(".tar.gz"));
    let dst = e.root.join("dst");
    let r = cache::restore(&e.store, "g", &[], &[dst.clone()]).await;
    assert_eq!(r.hit, RestoreHit::Exact, "{r:?}");
    assert_eq!(snapshot(&dst), snapshot(&a));
}

#[tokio::test]
async fn restore_replaces_the_target_contents() {
    let e = env();
    let a = e.root.join("src");
    make_tree(&a, "x");
    assert!(saved(&e, "k", &a).await);
    let dst = e.root.join("dst");
    write(&dst.join("stale.txt"), b"old");
    let r = cache::restore(&e.store, "k", &[], &[dst.clone()]).await;
    assert_eq!(r.hit, RestoreHit::Exact);
    assert!(!dst.join("stale.txt").exists());
    assert_eq!(snapshot(&dst), snapshot(&a));
}

#[tokio::test]
async fn prefix_fallback_picks_the_newest_match_and_miss_leaves_target() {
    let e = env();
    let a = e.root.join("src");
    make_tree(&a, "old");
    assert!(saved(&e, "wheels-linux-aaa", &a).await);
    // Make sure the modification times differ.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(&a.join("a.txt"), b"newer");
    assert!(saved(&e, "wheels-linux-bbb", &a).await);
    let _ = cache::save(&e.store, "other-zzz", &[a.clone()], &SaveOptions::default()).await;

    let dst = e.root.join("dst");
    let r = cache::restore(
        &e.store,
        "wheels-linux-ccc",
        &["nothing-".to_string(), "wheels-linux-".to_string()],
        &[dst.clone()],
    )
    .await;
    assert_eq!(r.hit, RestoreHit::Partial, "{r:?}");
    assert_eq!(r.matched_key.as_deref(), Some("wheels-linux-bbb"));
    assert_eq!(fs::read(dst.join("a.txt")).unwrap(), b"newer");

    let miss_dst = e.root.join("miss");
    write(&miss_dst.join("keep"), b"1");
    let r = cache::restore(
        &e.store,
        "nope",
        &["also-no-".to_string()],
        &[miss_dst.clone()],
    )
    .await;
    assert_eq!(r.hit, RestoreHit::Miss);
    assert!(
        r.warnings.is_empty(),
        "a plain miss is not a warning: {:?}",
        r.warnings
    );
    assert_eq!(fs::read(miss_dst.join("keep")).unwrap(), b"1");
    // A miss still creates the directories.
    let fresh = e.root.join("fresh/dir");
    let r = cache::restore(&e.store, "nope", &[], &[fresh.clone()]).await;
    assert_eq!(r.hit, RestoreHit::Miss);
    assert!(fresh.is_dir());
}

#[tokio::test]
async fn unchanged_content_is_not_uploaded_again() {
    let e = env();
    let a = e.root.join("src");
    make_tree(&a, "same");
    let first = cache::save(&e.store, "k", &[a.clone()], &SaveOptions::default()).await;
    assert!(first.saved);
    let before = archives(&e.store_dir);
    // Touching files (new mtimes, same bytes) does not count as a change.
    let f = fs::File::options()
        .write(true)
        .open(a.join("a.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    let second = cache::save(&e.store, "k", &[a.clone()], &SaveOptions::default()).await;
    assert!(!second.saved, "{second:?}");
    assert_eq!(second.bytes, 0);
    assert!(second.skipped_reason.unwrap().contains("same content"));
    assert_eq!(archives(&e.store_dir), before);

    // A real change is saved, and the replaced archive is removed.
    write(&a.join("a.txt"), b"changed");
    let third = cache::save(&e.store, "k", &[a.clone()], &SaveOptions::default()).await;
    assert!(third.saved, "{third:?}");
    let after = archives(&e.store_dir);
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);
    let dst = e.root.join("dst");
    cache::restore(&e.store, "k", &[], &[dst.clone()]).await;
    assert_eq!(fs::read(dst.join("a.txt")).unwrap(), b"changed");
}

#[tokio::test]
async fn save_of_missing_paths_is_skipped_and_bad_keys_are_refused() {
    let e = env();
    let out = cache::save(
        &e.store,
        "k",
        &[e.root.join("nope")],
        &SaveOptions::default(),
    )
    .await;
    assert!(!out.saved);
    assert!(out.skipped_reason.unwrap().contains("none of the paths"));
    let a = e.root.join("src");
    make_tree(&a, "k");
    let out = cache::save(&e.store, "../evil", &[a.clone()], &SaveOptions::default()).await;
    assert!(!out.saved);
    assert!(!out.warnings.is_empty());
    assert!(!e.root.join("evil.json").exists());
    let r = cache::restore(&e.store, "../evil", &[], &[a.clone()]).await;
    assert_eq!(r.hit, RestoreHit::Miss);
}

// ---------------------------------------------------------------------------------------------
// Hostile and damaged archives.

/// One raw tar entry with exactly the name and link name given (the tar crate's builder refuses
/// `..` and absolute names, so the header bytes are written directly).
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: Option<&str>,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            gnu.linkname = [0; 100];
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn tar_of(entries: &[(&str, tar::EntryType, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        raw_entry(&mut b, name, *kind, *link, data);
    }
    b.into_inner().unwrap()
}

/// Compressed like Kiln's own archives (with zstd's frame checksum).
fn zstd_of(tar: &[u8]) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_checksum(true).unwrap();
    std::io::Write::write_all(&mut enc, tar).unwrap();
    enc.finish().unwrap()
}

/// What an archive really holds: (uncompressed tar bytes, regular files). Broken archives get
/// generous values so that their own fault, not a bound, is what refuses them.
fn declared(archive: &[u8]) -> (u64, u64) {
    let Ok(tar) = zstd::decode_all(archive) else {
        return (1 << 30, 1_000);
    };
    let files = tar::Archive::new(tar.as_slice())
        .entries()
        .map(|es| {
            es.filter_map(Result::ok)
                .filter(|e| e.header().entry_type().is_file())
                .count() as u64
        })
        .unwrap_or(1_000);
    (tar.len() as u64, files)
}

/// Put `archive` in the store under `key` with a manifest; `sha`/`size` override the true ones.
fn plant(e: &Env, key: &str, archive: &[u8], sha: Option<String>, size: Option<u64>) {
    let (uncompressed, files) = declared(archive);
    plant_with(e, key, archive, |m| {
        if let Some(sha) = sha {
            m.sha256 = sha;
        }
        if let Some(size) = size {
            m.compressed_size = size;
        }
        m.uncompressed_size = uncompressed;
        m.file_count = files;
    });
}

/// Put `archive` in the store under `key` with a manifest describing its size and hash, which
/// `edit` may then change.
fn plant_with(e: &Env, key: &str, archive: &[u8], edit: impl FnOnce(&mut Manifest)) {
    let object = manifest::archive_path(key, "planted", Compression::Zstd);
    write(&e.store_dir.join(&object), archive);
    let mut m = Manifest {
        format: manifest::FORMAT,
        key: key.into(),
        archive: object,
        compression: Compression::Zstd,
        level: 3,
        sha256: hex::encode(Sha256::digest(archive)),
        blake3: None,
        compressed_size: archive.len() as u64,
        uncompressed_size: 0,
        content_bytes: 0,
        file_count: 0,
        created: chrono::Utc::now(),
        kiln_version: "test".into(),
        paths: vec!["target".into()],
        content_digest: String::new(),
    };
    edit(&mut m);
    write(
        &e.store_dir.join(manifest::manifest_path(key)),
        &m.to_json(),
    );
}

/// Restore a planted archive into a target holding one marker file; assert a miss whose
/// warning mentions `reason`, an untouched target, nothing written outside it, no leftovers.
async fn assert_refused(e: &Env, key: &str, reason: &str) {
    let parent = e.root.join("work");
    let target = parent.join("target");
    write(&target.join("marker"), b"original");
    let r = cache::restore(&e.store, key, &[], &[target.clone()]).await;
    assert_eq!(r.hit, RestoreHit::Miss, "{key}: {r:?}");
    let all = r.warnings.join("\n");
    assert!(
        all.to_lowercase().contains(&reason.to_lowercase()),
        "{key}: warning should say {reason:?}: {all}"
    );
    assert_eq!(
        snapshot(&target),
        vec![
            ("/".to_string(), vec![]),
            ("marker".to_string(), b"original".to_vec())
        ],
        "{key}: target changed"
    );
    let names: Vec<String> = fs::read_dir(&parent)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        vec!["target".to_string()],
        "{key}: leftovers next to the target"
    );
    for outside in ["escape", "evil", "passwd-link", "dev", "pipe"] {
        assert!(
            fs::symlink_metadata(e.root.join(outside)).is_err(),
            "{key}: wrote {outside} outside the target"
        );
    }
}

use tar::EntryType as T;

#[tokio::test]
async fn entry_with_dotdot_is_refused() {
    let e = env();
    let t = tar_of(&[
        ("0/ok.txt", T::Regular, None, b"fine"),
        ("0/../../escape", T::Regular, None, b"pwned"),
    ]);
    plant(&e, "dotdot", &zstd_of(&t), None, None);
    assert_refused(&e, "dotdot", "`..`").await;
}

#[tokio::test]
async fn absolute_entry_is_refused() {
    let e = env();
    let abs = format!("{}/evil", e.root.display());
    let t = tar_of(&[(abs.as_str(), T::Regular, None, b"pwned")]);
    plant(&e, "absolute", &zstd_of(&t), None, None);
    assert_refused(&e, "absolute", "absolute").await;
}

#[tokio::test]
async fn symlink_escaping_the_target_is_refused() {
    let e = env();
    let t = tar_of(&[("0/passwd-link", T::Symlink, Some("../../passwd-link"), b"")]);
    plant(&e, "symup", &zstd_of(&t), None, None);
    assert_refused(&e, "symup", "outside").await;

    let t = tar_of(&[("0/l", T::Symlink, Some("/etc/passwd"), b"")]);
    plant(&e, "symabs", &zstd_of(&t), None, None);
    assert_refused(&e, "symabs", "absolute").await;
}

#[tokio::test]
async fn writing_through_a_symlink_is_refused() {
    let e = env();
    // A link to the slot root's parent spelled as a name then `..`, and a file written "into" it.
    let t = tar_of(&[
        ("0/d", T::Symlink, Some("x/../.."), b""),
        ("0/d/escape", T::Regular, None, b"pwned"),
    ]);
    plant(&e, "through", &zstd_of(&t), None, None);
    assert_refused(&e, "through", "symlink").await;

    // Link to "." then a link inside it pointing up: both look harmless alone.
    let t = tar_of(&[
        ("0/a", T::Symlink, Some("."), b""),
        ("0/a/b", T::Symlink, Some("../escape"), b""),
    ]);
    plant(&e, "chain", &zstd_of(&t), None, None);
    assert_refused(&e, "chain", "symlink").await;
}

#[tokio::test]
async fn hard_link_outside_is_refused() {
    let e = env();
    let t = tar_of(&[("0/h", T::Link, Some("/etc/passwd"), b"")]);
    plant(&e, "hardabs", &zstd_of(&t), None, None);
    assert_refused(&e, "hardabs", "hard link").await;

    let t = tar_of(&[("0/h", T::Link, Some("0/../../escape"), b"")]);
    plant(&e, "hardup", &zstd_of(&t), None, None);
    assert_refused(&e, "hardup", "hard link").await;
}

#[tokio::test]
async fn device_and_fifo_entries_are_refused() {
    let e = env();
    let t = tar_of(&[("0/dev", T::Char, None, b"")]);
    plant(&e, "chardev", &zstd_of(&t), None, None);
    assert_refused(&e, "chardev", "device").await;

    let t = tar_of(&[("0/blk", T::Block, None, b"")]);
    plant(&e, "blockdev", &zstd_of(&t), None, None);
    assert_refused(&e, "blockdev", "device").await;

    let t = tar_of(&[("0/pipe", T::Fifo, None, b"")]);
    plant(&e, "fifo", &zstd_of(&t), None, None);
    assert_refused(&e, "fifo", "fifo").await;
}

#[tokio::test]
async fn entry_outside_every_slot_is_refused() {
    let e = env();
    let t = tar_of(&[("7/x", T::Regular, None, b"x")]);
    plant(&e, "slot", &zstd_of(&t), None, None);
    assert_refused(&e, "slot", "directories").await;
}

#[tokio::test]
async fn a_saved_archive_is_checked_with_the_blake3_its_manifest_records() {
    let e = env();
    let a = e.root.join("src");
    make_tree(&a, "x");
    assert!(saved(&e, "b3", &a).await);
    let path = e.store_dir.join(manifest::manifest_path("b3"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let recorded = json["blake3"].as_str().unwrap().to_string();
    assert_eq!(recorded.len(), 64, "{json}");
    assert!(json.get("sha256").is_none(), "{json}");
    // The archive is intact; only the checksum its manifest records is another one.
    let other = if recorded.starts_with('a') { "b" } else { "a" }.repeat(64);
    let edited = String::from_utf8(std::fs::read(&path).unwrap())
        .unwrap()
        .replace(&recorded, &other);
    write(&path, edited.as_bytes());
    assert_refused(&e, "b3", "blake3 mismatch").await;
}

#[tokio::test]
async fn hash_mismatch_is_refused() {
    let e = env();
    let t = tar_of(&[("0/ok.txt", T::Regular, None, b"fine")]);
    plant(&e, "hash", &zstd_of(&t), Some("ab".repeat(32)), None);
    assert_refused(&e, "hash", "sha256 mismatch").await;
}

#[tokio::test]
async fn truncated_archive_is_refused() {
    let e = env();
    let big: Vec<u8> = (0..400_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let t = tar_of(&[("0/big", T::Regular, None, &big)]);
    let z = zstd_of(&t);
    let full_sha = hex::encode(Sha256::digest(&z));
    // The store lost the tail; the manifest describes the whole archive.
    plant(
        &e,
        "trunc",
        &z[..z.len() / 2],
        Some(full_sha),
        Some(z.len() as u64),
    );
    assert_refused(&e, "trunc", "truncated").await;
    // A manifest that matches the truncated bytes: the stream itself must be caught.
    let cut = &z[..z.len() / 2];
    plant(&e, "trunc2", cut, None, None);
    assert_refused(&e, "trunc2", "corrupt").await;
}

#[tokio::test]
async fn corrupt_stream_is_refused() {
    let e = env();
    let big: Vec<u8> = (0..400_000u32)
        .flat_map(|i| (i * 7).to_le_bytes())
        .collect();
    let t = tar_of(&[("0/big", T::Regular, None, &big)]);
    let mut z = zstd_of(&t);
    let mid = z.len() / 2;
    for b in &mut z[mid..mid + 64] {
        *b ^= 0x5a;
    }
    plant(&e, "corrupt", &z, None, None);
    assert_refused(&e, "corrupt", "corrupt").await;
    // Not even zstd.
    plant(&e, "garbage", b"this is not an archive at all", None, None);
    assert_refused(&e, "garbage", "corrupt").await;
}

#[tokio::test]
async fn bad_manifest_is_a_miss_not_a_crash() {
    let e = env();
    write(&e.store_dir.join("caches/m.json"), b"{not json");
    let target = e.root.join("t");
    let r = cache::restore(&e.store, "m", &[], &[target.clone()]).await;
    assert_eq!(r.hit, RestoreHit::Miss);
    assert!(r.warnings.join("").contains("manifest"), "{:?}", r.warnings);
}

#[tokio::test]
async fn inside_hard_links_and_symlinks_are_restored() {
    let e = env();
    let t = tar_of(&[
        ("0/dir/", T::Directory, None, b""),
        ("0/dir/f", T::Regular, None, b"content"),
        ("0/h", T::Link, Some("0/dir/f"), b""),
        ("0/dir/s", T::Symlink, Some("../h"), b""),
    ]);
    plant(&e, "links", &zstd_of(&t), None, None);
    let target = e.root.join("t");
    let r = cache::restore(&e.store, "links", &[], &[target.clone()]).await;
    assert_eq!(r.hit, RestoreHit::Exact, "{r:?}");
    assert_eq!(fs::read(target.join("h")).unwrap(), b"content");
    assert_eq!(fs::read(target.join("dir/s")).unwrap(), b"content");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(target.join("h")).unwrap().ino(),
        fs::metadata(target.join("dir/f")).unwrap().ino()
    );
}

// Hostile archives through `kiln cache restore`, each run with RLIMIT_FSIZE at 64 MiB: if a
// bound failed, the process would die on its first oversized file instead of filling the disk.

const FILE_SIZE_CAP: u64 = 64 << 20;

/// `kiln cache restore` of `key` into a target holding one marker file (file size capped).
/// Returns (exit code, stdout, stderr).
fn restore_capped(e: &Env, key: &str, extra: &[&str]) -> (i32, String, String) {
    use std::os::unix::process::CommandExt;
    let target = e.root.join("work/target");
    write(&target.join("marker"), b"original");
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln"));
    cmd.args(["cache", "restore", "--key", key, "--path"])
        .arg(&target)
        .arg("--store")
        .arg(format!("file://{}", e.store_dir.display()))
        .args(extra)
        .env_remove("KILN_LOG")
        .env_remove("GITHUB_OUTPUT");
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: FILE_SIZE_CAP,
                rlim_max: FILE_SIZE_CAP,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The restore printed `miss`, warned with `reason`, left the target as it was and wrote
/// nothing next to it.
fn assert_cli_refused(
    e: &Env,
    key: &str,
    (code, stdout, stderr): (i32, String, String),
    reason: &str,
) {
    assert_eq!(
        code, 0,
        "{key}: a refused archive is a miss, not a failure: {stderr}"
    );
    assert_eq!(stdout.trim(), "miss", "{key}: {stderr}");
    assert!(
        stderr.to_lowercase().contains(&reason.to_lowercase()),
        "{key}: warning should say {reason:?}: {stderr}"
    );
    let parent = e.root.join("work");
    assert_eq!(
        snapshot(&parent.join("target")),
        vec![
            ("/".to_string(), vec![]),
            ("marker".to_string(), b"original".to_vec())
        ],
        "{key}: target changed"
    );
    let names: Vec<String> = fs::read_dir(&parent)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        vec!["target".to_string()],
        "{key}: leftovers next to the target"
    );
}

/// A zstd archive of one file of `len` zeros, compressed as a stream (never held in memory).
fn zero_bomb(len: u64) -> Vec<u8> {
    let enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let mut b = tar::Builder::new(enc);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(T::Regular);
    h.set_size(len);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "0/zeros", std::io::repeat(0).take(len))
        .unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

use std::io::Read as _;

#[test]
fn bomb_with_a_lying_manifest_stops_at_the_declared_size() {
    let e = env();
    // 1 GiB of zeros, about 40 KB compressed; the manifest says it expands to 1 MiB.
    let bomb = zero_bomb(1 << 30);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    plant_with(&e, "bomb", &bomb, |m| {
        m.uncompressed_size = 1 << 20;
        m.file_count = 1;
    });
    let out = restore_capped(&e, "bomb", &[]);
    assert_cli_refused(&e, "bomb", out, "expands past the 1048576 bytes");

    // Told the truth, the same archive is still more than this restore may write.
    plant_with(&e, "honest-bomb", &bomb, |m| {
        m.uncompressed_size = (1 << 30) + 2048;
        m.file_count = 1;
    });
    let out = restore_capped(&e, "honest-bomb", &["--max-restore-size", "32M"]);
    assert_cli_refused(&e, "honest-bomb", out, "more than cache.max_restore_size");
}

#[test]
fn archive_larger_than_its_manifest_or_with_a_wrong_hash_is_refused() {
    let e = env();
    let big: Vec<u8> = (0..400_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let z = zstd_of(&tar_of(&[("0/big", T::Regular, None, &big)]));
    let (uncompressed, _) = declared(&z);
    // Every size honest, the hash of some other archive.
    plant_with(&e, "wrong-hash", &z, |m| {
        m.sha256 = "ab".repeat(32);
        m.uncompressed_size = uncompressed;
        m.file_count = 1;
    });
    let out = restore_capped(&e, "wrong-hash", &[]);
    assert_cli_refused(&e, "wrong-hash", out, "sha256 mismatch");
    // The download stops as soon as it passes the declared compressed size.
    plant_with(&e, "longer", &z, |m| {
        m.compressed_size = 1000;
        m.uncompressed_size = uncompressed;
        m.file_count = 1;
    });
    let out = restore_capped(&e, "longer", &[]);
    assert_cli_refused(
        &e,
        "longer",
        out,
        "larger than the 1000 bytes its manifest declares",
    );
}

#[test]
fn zstd_frame_asking_for_a_huge_window_is_refused() {
    let e = env();
    let t = tar_of(&[("0/ok.txt", T::Regular, None, b"fine")]);
    let mut z = zstd_of(&t);
    // Frame header: magic, descriptor (no single-segment flag, so a window descriptor follows),
    // window descriptor. Claim a 2 GiB window (log 31): the content itself stays valid.
    assert_eq!(&z[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    assert_eq!(z[4] & 0x20, 0, "frame must carry a window descriptor");
    z[5] = (31 - 10) << 3;
    let (uncompressed, files) = declared(&zstd_of(&t));
    plant_with(&e, "window", &z, |m| {
        m.uncompressed_size = uncompressed;
        m.file_count = files;
    });
    let out = restore_capped(&e, "window", &[]);
    assert_cli_refused(&e, "window", out, "window larger than the 128 MiB limit");
}

#[test]
fn more_files_than_declared_or_allowed_is_refused() {
    let e = env();
    let names: Vec<String> = (0..10_000).map(|i| format!("0/f{i}")).collect();
    let entries: Vec<(&str, T, Option<&str>, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), T::Regular, None, b"x".as_slice()))
        .collect();
    let z = zstd_of(&tar_of(&entries));
    let (uncompressed, files) = declared(&z);
    assert_eq!(files, 10_000);
    plant_with(&e, "files", &z, |m| {
        m.uncompressed_size = uncompressed;
        m.file_count = 1;
    });
    let out = restore_capped(&e, "files", &[]);
    assert_cli_refused(
        &e,
        "files",
        out,
        "more files than the 1 its manifest declares",
    );
    // Honest, but more entries than this restore may create.
    plant(&e, "entries", &z, None, None);
    let out = restore_capped(&e, "entries", &["--max-restore-entries", "500"]);
    assert_cli_refused(&e, "entries", out, "cache.max_restore_entries (500)");
}

#[test]
fn duplicate_paths_are_refused() {
    let e = env();
    let bodies: Vec<String> = (0..200).map(|i| format!("winner {i}")).collect();
    let entries: Vec<(&str, T, Option<&str>, &[u8])> = bodies
        .iter()
        .map(|b| ("0/same.txt", T::Regular, None, b.as_bytes()))
        .collect();
    let z = zstd_of(&tar_of(&entries));
    plant(&e, "dups", &z, None, None);
    let out = restore_capped(&e, "dups", &[]);
    assert_cli_refused(&e, "dups", out, "duplicate path");
    // The same name spelled differently is the same path.
    let z = zstd_of(&tar_of(&[
        ("0/a/x", T::Regular, None, b"one"),
        ("0/a/./x", T::Regular, None, b"two"),
    ]));
    plant(&e, "dups2", &z, None, None);
    let out = restore_capped(&e, "dups2", &[]);
    assert_cli_refused(&e, "dups2", out, "duplicate path");
}

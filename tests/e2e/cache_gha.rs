//! The `gha` store against a fake GitHub Actions cache service v2 (tests/gha_fake): the real
//! `kiln cache` driving Twirp calls, signed Azure block-blob uploads, prefix lookups, version
//! scoping, refused commits and cut uploads. Asserts on the requests made and on what a user
//! sees (exit codes, outputs, warnings, files).

use std::path::Path;
use std::process::Output;

use crate::support;
use crate::support::gha_fake::{Faults, GhaFake, RUNTIME_TOKEN};
use crate::support::noise;

/// `kiln cache ARGS` with the job's cache environment pointing at `fake`.
fn kiln_cache(fake: &GhaFake, home: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut c = support::kiln_home(home);
    c.arg("cache").args(args);
    for (k, v) in fake.env() {
        c.env(k, v);
    }
    c.env("KILN_STORE_RETRY_DELAY_MS", "20");
    for (k, v) in extra {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn write_tree(dir: &Path, files: &[(&str, &[u8])]) {
    for (name, data) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

fn save(
    fake: &GhaFake,
    home: &Path,
    key: &str,
    dir: &Path,
    extra: &[(&str, &str)],
) -> (String, String) {
    let o = kiln_cache(
        fake,
        home,
        &["save", "--key", key, "--path", dir.to_str().unwrap()],
        extra,
    );
    assert!(o.status.success(), "{o:?}");
    text(&o)
}

fn restore(fake: &GhaFake, home: &Path, key: &str, prefixes: &[&str], dir: &Path) -> String {
    let mut args = vec!["restore", "--key", key, "--path", dir.to_str().unwrap()];
    for p in prefixes {
        args.extend(["--restore-key", p]);
    }
    let o = kiln_cache(fake, home, &args, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        !err.contains(RUNTIME_TOKEN),
        "the token is never printed: {err}"
    );
    out.trim().to_string()
}

#[test]
fn exact_hit_goes_through_twirp_and_signed_blob_urls() {
    let fake = GhaFake::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("wheels");
    write_tree(&src, &[("a.whl", b"wheel a"), ("sub/b.whl", b"wheel b")]);

    let (out, _) = save(&fake, tmp.path(), "deps-linux-abc", &src, &[]);
    assert!(out.starts_with("saved deps-linux-abc"), "{out}");
    let log = fake.log();
    let twirp = |m: &str| format!("POST /twirp/github.actions.results.api.v1.CacheService/{m}");
    // Manifest lookup (is the key there?), then archive and manifest: reserve, blocks, commit.
    assert_eq!(
        log.iter()
            .filter(|l| **l == twirp("CreateCacheEntry"))
            .count(),
        2,
        "{log:#?}"
    );
    assert_eq!(
        log.iter()
            .filter(|l| **l == twirp("FinalizeCacheEntryUpload"))
            .count(),
        2
    );
    assert!(log
        .iter()
        .any(|l| l.starts_with("PUT /blob/") && l.contains("comp=block&blockid=")));
    assert!(log
        .iter()
        .any(|l| l.starts_with("PUT /blob/") && l.ends_with("comp=blocklist")));
    let keys = fake.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].starts_with("caches/deps-linux-abc.") && keys[0].ends_with(".tar.zst"));
    assert_eq!(
        keys[1], "caches/deps-linux-abc.json",
        "the manifest is committed last"
    );
    let e = fake.entries();
    assert_ne!(
        e[0].version, e[1].version,
        "archives and manifests have their own versions"
    );

    // Unchanged content: nothing reserved or uploaded again.
    fake.clear_log();
    let (out, _) = save(&fake, tmp.path(), "deps-linux-abc", &src, &[]);
    assert!(out.contains("already holds the same content"), "{out}");
    assert_eq!(fake.calls("CreateCacheEntry"), 0);

    let dst = tmp.path().join("restored");
    assert_eq!(
        restore(&fake, tmp.path(), "deps-linux-abc", &[], &dst),
        "exact deps-linux-abc"
    );
    assert_eq!(std::fs::read(dst.join("sub/b.whl")).unwrap(), b"wheel b");
    assert!(fake
        .log()
        .iter()
        .any(|l| l.starts_with("GET /blob/") && l.contains("sp=r")));
}

#[test]
fn prefix_fallback_restores_the_newest_match_and_only_kilns_versions() {
    let fake = GhaFake::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for (i, key) in ["deps-linux-req1", "deps-linux-req2"].iter().enumerate() {
        write_tree(&src, &[("version", format!("{i}").as_bytes())]);
        save(&fake, tmp.path(), key, &src, &[]);
    }
    // An entry with the same key prefix written by actions/cache (another version) is never read.
    {
        let mut st = fake.state.lock().unwrap();
        let mut theirs = st.entries.last().unwrap().clone();
        theirs.key = "caches/deps-linux-zzz.json".into();
        theirs.version = kiln::cache::gha::keys::actions_cache_version(&["~/.cache/pip"], "zstd");
        theirs.seq = 1000;
        theirs.id = 1000;
        st.entries.push(theirs);
    }

    // The requirements changed: no exact key, the newest entry of the prefix wins.
    fake.clear_log();
    let dst = tmp.path().join("dst");
    let r = restore(&fake, tmp.path(), "deps-linux-req3", &["deps-linux-"], &dst);
    assert_eq!(r, "partial deps-linux-req2");
    assert_eq!(std::fs::read_to_string(dst.join("version")).unwrap(), "1");
    // One lookup names the key and every prefix; one more finds the archive's download URL.
    assert_eq!(
        fake.calls("GetCacheEntryDownloadURL"),
        2,
        "{:#?}",
        fake.log()
    );

    // A miss everywhere is a miss, with `--fail-on-miss` a failure.
    let o = kiln_cache(
        &fake,
        tmp.path(),
        &[
            "restore",
            "--key",
            "other",
            "--restore-key",
            "nothing-",
            "--path",
            "x",
            "--fail-on-miss",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o).0.trim(), "miss");

    // Lookup only: the match is named, nothing is downloaded.
    fake.clear_log();
    let o = kiln_cache(
        &fake,
        tmp.path(),
        &[
            "restore",
            "--key",
            "deps-linux-req9",
            "--restore-key",
            "deps-linux-req1",
            "--path",
            "y",
            "--lookup-only",
        ],
        &[],
    );
    assert_eq!(text(&o).0.trim(), "partial deps-linux-req1");
    // The manifest is read (one lookup, one small GET); the archive is not looked up.
    assert_eq!(
        fake.calls("GetCacheEntryDownloadURL"),
        1,
        "{:#?}",
        fake.log()
    );
    assert_eq!(fake.calls("GET /blob/"), 1, "{:#?}", fake.log());
    assert!(!tmp.path().join("y").exists());
}

#[test]
fn more_restore_keys_than_one_lookup_takes_are_asked_in_turn() {
    let fake = GhaFake::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src, &[("f", b"x")]);
    save(&fake, tmp.path(), "last-prefix-hit", &src, &[]);
    fake.clear_log();
    let prefixes: Vec<String> = (0..12).map(|i| format!("nope{i}-")).collect();
    let mut refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    refs.push("last-");
    let r = restore(&fake, tmp.path(), "k", &refs, &tmp.path().join("d"));
    assert_eq!(r, "partial last-prefix-hit");
    // The key + 13 prefixes: the key and 9 prefixes, then the last 4 (the fake answers 400 to
    // more than 10 keys in one lookup); then the archive's URL.
    assert_eq!(
        fake.calls("GetCacheEntryDownloadURL"),
        3,
        "{:#?}",
        fake.log()
    );
}

#[test]
fn a_refused_commit_is_a_warning_naming_key_and_reason() {
    let fake = GhaFake::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src, &[("f", b"data")]);
    fake.set_faults(Faults {
        refuse_finalize: Some("cache size exceeds the repository limit".into()),
        ..Default::default()
    });
    let output = tmp.path().join("github_output");
    std::fs::write(&output, "").unwrap();
    let (out, err) = save(
        &fake,
        tmp.path(),
        "big-key",
        &src,
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_OUTPUT", output.to_str().unwrap()),
        ],
    );
    assert!(out.contains("skipped big-key"), "{out}");
    assert!(err.contains("cache big-key not saved"), "{err}");
    assert!(err.contains("FinalizeCacheEntryUpload refused"), "{err}");
    assert!(
        err.contains("cache size exceeds the repository limit"),
        "{err}"
    );
    assert!(
        out.contains("::warning title=Kiln cache::cache big-key not saved"),
        "{out}"
    );
    assert!(std::fs::read_to_string(&output)
        .unwrap()
        .contains("saved=false"));
    assert!(fake.keys().is_empty(), "nothing was committed");
    // And nothing is restored from it.
    assert_eq!(
        restore(
            &fake,
            tmp.path(),
            "big-key",
            &["big-"],
            &tmp.path().join("d")
        ),
        "miss"
    );
}

#[test]
fn an_upload_cut_midway_is_retried_and_a_dead_one_commits_nothing() {
    let fake = GhaFake::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src, &[("blob", &noise(7, 300 << 10))]);
    let small_blocks = [
        ("KILN_GHA_BLOCK_SIZE", "65536"),
        ("KILN_GHA_UPLOAD_CONCURRENCY", "1"),
    ];

    // Cut once: the block is sent again and the save completes.
    fake.set_faults(Faults {
        cut_blocks: 1,
        ..Default::default()
    });
    let (out, err) = save(&fake, tmp.path(), "cut-once", &src, &small_blocks);
    assert!(out.starts_with("saved cut-once"), "{out}{err}");

    // Cut every time: a warning, no entry, a later restore misses cleanly.
    fake.set_faults(Faults {
        cut_blocks: 1000,
        ..Default::default()
    });
    let (out, err) = save(&fake, tmp.path(), "cut-always", &src, &small_blocks);
    assert!(out.contains("skipped cut-always"), "{out}");
    assert!(
        err.contains("cache cut-always not saved: upload failed"),
        "{err}"
    );
    assert!(
        !fake.keys().iter().any(|k| k.contains("cut-always")),
        "{:?}",
        fake.keys()
    );
    fake.set_faults(Faults::default());
    let r = restore(&fake, tmp.path(), "cut-always", &[], &tmp.path().join("d"));
    assert_eq!(r, "miss");
}

#[test]
fn an_archive_larger_than_one_block_is_uploaded_in_order() {
    let fake = GhaFake::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let big = noise(11, 1 << 20);
    write_tree(&src, &[("big.bin", &big), ("small.txt", b"hello")]);
    save(
        &fake,
        tmp.path(),
        "blocks",
        &src,
        &[
            ("KILN_GHA_BLOCK_SIZE", "131072"),
            ("KILN_GHA_UPLOAD_CONCURRENCY", "4"),
        ],
    );
    let blocks = fake
        .log()
        .iter()
        .filter(|l| l.contains("comp=block&"))
        .count();
    // The archive (~1 MiB of noise) in 128 KiB blocks, plus the manifest's single block.
    assert!(blocks >= 9, "{blocks} blocks");
    let dst = tmp.path().join("dst");
    assert_eq!(
        restore(&fake, tmp.path(), "blocks", &[], &dst),
        "exact blocks"
    );
    assert_eq!(std::fs::read(dst.join("big.bin")).unwrap(), big);
}

#[test]
fn prune_lists_and_deletes_through_the_rest_api() {
    let fake = GhaFake::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for key in ["old-a", "old-b", "new-c"] {
        write_tree(
            &src,
            &[
                ("k", key.as_bytes()),
                ("n", &noise(key.len() as u64, 20 << 10)),
            ],
        );
        save(&fake, tmp.path(), key, &src, &[]);
    }
    let o = kiln_cache(&fake, tmp.path(), &["list"], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("3 caches"), "{out}");

    let o = kiln_cache(
        &fake,
        tmp.path(),
        &["prune", "--max-total-size", "30K"],
        &[],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("deleted old-a") && out.contains("deleted old-b"),
        "{out}"
    );
    let keys = fake.keys();
    assert!(
        keys.iter().all(|k| k.starts_with("caches/new-c.")),
        "{keys:?}"
    );
    assert!(fake
        .log()
        .iter()
        .any(|l| l.starts_with("DELETE /repos/acme/widgets/actions/caches/")));

    // Without GITHUB_TOKEN the service cannot list: the error says what is needed.
    let o = kiln_cache(&fake, tmp.path(), &["list"], &[("GITHUB_TOKEN", "")]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o).1.contains("needs GITHUB_TOKEN"),
        "{:?}",
        text(&o).1
    );
}

#[test]
fn a_partial_set_of_actions_variables_is_a_warning_not_a_broken_store() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = support::kiln_home(tmp.path());
    c.args(["cache", "list"])
        .env("GITHUB_ACTIONS", "true")
        .env("ACTIONS_RUNTIME_TOKEN", "x")
        .env("ACTIONS_CACHE_URL", "http://127.0.0.1:9/");
    let o = c.output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(err.contains("ACTIONS_RESULTS_URL is not set"), "{err}");
    assert!(
        out.contains("kiln/store"),
        "falls back to the file store: {out}"
    );
}

//! `kiln wheelhouse export` on one "machine" (its own HOME, work dir and store), `import` on
//! another, then a hash-checked `pip install --no-index` there: no index, no network.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::index::*;

/// `kiln` as run on a machine whose home is `home` (the embedded store and the default import
/// dir live under it).
fn kiln_on(home: &Path) -> Command {
    let mut c = kiln();
    c.env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("KILN_OFFLINE_WHEELHOUSE");
    c
}

fn platform_tag() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_platform())"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace(['-', '.'], "_")
}

fn ok(c: &mut Command) -> String {
    let (ok, log) = run(c);
    assert!(ok, "{c:?} failed:\n{log}");
    log
}

struct MachineA {
    home: PathBuf,
    wheels: Vec<PathBuf>,
}

/// Machine A: builds a pure-Python and a C-extension wheel and publishes them into its embedded
/// store (`~/.cache/kiln/store`), as a CI run's save stage would.
fn machine_a(root: &Path) -> MachineA {
    let home = root.join("a-home");
    let work = root.join("a-work");
    std::fs::create_dir_all(&home).unwrap();
    let wheels = build_wheels(
        &work,
        &work.join("wheelhouse"),
        &[
            py("alpha", "1.0"),
            Pkg {
                name: "fastc",
                version: "0.3",
                c_ext: true,
            },
        ],
    );
    let log = ok(kiln_on(&home)
        .args(["index", "publish"])
        .arg(work.join("wheelhouse")));
    assert!(log.contains("published 2 wheel(s)"), "{log}");
    assert!(home.join(".cache/kiln/store/wheels/fastc").is_dir());
    MachineA { home, wheels }
}

#[test]
fn export_on_one_machine_installs_on_another_without_an_index() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = machine_a(root);
    let archive = root.join("a-work/team-wheels.tar.zst");
    let plat = platform_tag();
    let log = ok(kiln_on(&a.home)
        .args(["wheelhouse", "export", "--platform", &plat, "--output"])
        .arg(&archive));
    assert!(log.contains("exported 2 wheel(s)"), "{log}");

    // Machine B: another home, another directory; only the archive travels.
    let home_b = root.join("b-home");
    let work_b = root.join("b-work");
    std::fs::create_dir_all(&home_b).unwrap();
    std::fs::create_dir_all(&work_b).unwrap();
    let carried = work_b.join("wheels.tar.zst");
    std::fs::copy(&archive, &carried).unwrap();
    let log = ok(kiln_on(&home_b)
        .args(["wheelhouse", "import"])
        .arg(&carried));
    assert!(log.contains("imported 2 wheel(s)"), "{log}");
    let imported = home_b.join(".cache/kiln/wheelhouse");
    assert!(imported.is_dir(), "default import dir");

    let req = work_b.join("requirements.txt");
    std::fs::write(
        &req,
        format!(
            "alpha==1.0 --hash=sha256:{}\nfastc==0.3 --hash=sha256:{}\n",
            sha256_file(wheel(&a.wheels, "alpha-1.0-")),
            sha256_file(wheel(&a.wheels, "fastc-0.3-"))
        ),
    )
    .unwrap();
    let venv = work_b.join("venv");
    ok(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    let python = venv.join("bin/python");
    let mut c = Command::new(&python);
    pip_env(&mut c, &home_b);
    ok(
        c.args(["-m", "pip", "install", "--no-index", "--require-hashes"])
            .arg("--find-links")
            .arg(&imported)
            .arg("-r")
            .arg(&req),
    );
    assert_eq!(installed_version(&python, None, "alpha"), "1.0");
    let out = Command::new(&python)
        .args(["-c", "import fastc_c; print(fastc_c.answer())"])
        .current_dir(&work_b)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    // Importing the same archive again changes nothing.
    let log = ok(kiln_on(&home_b)
        .args(["wheelhouse", "import", "--into"])
        .arg(&imported)
        .arg(&carried));
    assert!(
        log.contains("imported 0 wheel(s)") && log.contains("2 already there"),
        "{log}"
    );
}

#[test]
fn platform_filter_and_damaged_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = machine_a(root);

    // Another platform: only the pure-Python wheel fits.
    let arm = root.join("arm.tar.zst");
    let log = ok(kiln_on(&a.home)
        .args([
            "wheelhouse",
            "export",
            "--platform",
            "linux_aarch64",
            "--output",
        ])
        .arg(&arm));
    assert!(log.contains("exported 1 wheel(s)"), "{log}");
    let dest = root.join("arm-wheels");
    ok(kiln_on(&a.home)
        .args(["wheelhouse", "import", "--into"])
        .arg(&dest)
        .arg(&arm));
    let names: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["alpha-1.0-py3-none-any.whl"]);

    // From a directory, and damaged in transit: import refuses and writes nothing.
    let from_dir = root.join("dir.tar.zst");
    ok(kiln_on(&a.home)
        .args(["wheelhouse", "export", "--from"])
        .arg(root.join("a-work/wheelhouse"))
        .arg("--output")
        .arg(&from_dir));
    let mut bytes = std::fs::read(&from_dir).unwrap();
    bytes.truncate(bytes.len() * 2 / 3);
    std::fs::write(&from_dir, bytes).unwrap();
    let dest = root.join("damaged");
    let (success, log) = run(kiln_on(&a.home)
        .args(["wheelhouse", "import", "--into"])
        .arg(&dest)
        .arg(&from_dir));
    assert!(!success, "a truncated archive was imported:\n{log}");
    assert!(log.contains("unusable") || log.contains("sha256"), "{log}");
    let left: Vec<_> = std::fs::read_dir(&dest)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "files left after a failed import: {left:?}"
    );

    // Nothing to export is an error that says so.
    let (success, log) = run(kiln_on(&a.home)
        .args(["wheelhouse", "export", "--from"])
        .arg(root)
        .arg("--output")
        .arg(root.join("none.tar.zst")));
    assert!(!success);
    assert!(log.contains("no wheels to export"), "{log}");
}

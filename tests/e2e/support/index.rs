//! Helpers shared by the `index_*` tests: build real wheels offline, run `kiln index serve` on a
//! free loopback port, hash files.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sha2::{Digest, Sha256};

pub use super::kiln;

/// A package to build: pure Python, or with a small C extension (platform-specific wheel).
pub struct Pkg<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub c_ext: bool,
}

pub fn py(name: &str, version: &'static str) -> Pkg<'static> {
    Pkg {
        name: Box::leak(name.to_string().into_boxed_str()),
        version,
        c_ext: false,
    }
}

/// pip with no user config, no cache and no version check: only what the test says counts.
pub fn pip_env(c: &mut Command, home: &Path) {
    c.env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .env("PIP_NO_INPUT", "1")
        .env("HOME", home)
        .env_remove("PIP_INDEX_URL")
        .env_remove("PIP_EXTRA_INDEX_URL")
        .env_remove("PIP_FIND_LINKS");
}

/// Build wheels for `pkgs` into `out` with the real pip (no network, no build isolation).
/// The module `<name>` has `VERSION`; a C package also has `<name>_c.answer()` returning 42.
pub fn build_wheels(work: &Path, out: &Path, pkgs: &[Pkg]) -> Vec<PathBuf> {
    std::fs::create_dir_all(out).unwrap();
    let mut dirs = Vec::new();
    for p in pkgs {
        let module = p.name.to_lowercase().replace(['-', '.'], "_");
        let dir = work.join(format!("src-{}-{}", module, p.version));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{module}.py")),
            format!("VERSION = {:?}\n", p.version),
        )
        .unwrap();
        let ext = if p.c_ext {
            std::fs::write(
                dir.join(format!("{module}_c.c")),
                format!(
                    "#include <Python.h>\n\
                     static PyObject *answer(PyObject *s, PyObject *a) {{ return PyLong_FromLong(42); }}\n\
                     static PyMethodDef M[] = {{{{\"answer\", answer, METH_NOARGS, NULL}}, {{NULL, NULL, 0, NULL}}}};\n\
                     static struct PyModuleDef D = {{PyModuleDef_HEAD_INIT, \"{module}_c\", NULL, -1, M}};\n\
                     PyMODINIT_FUNC PyInit_{module}_c(void) {{ return PyModule_Create(&D); }}\n"
                ),
            )
            .unwrap();
            format!(", ext_modules=[Extension({module:?} + '_c', [{module:?} + '_c.c'])]")
        } else {
            String::new()
        };
        std::fs::write(
            dir.join("setup.py"),
            format!(
                "from setuptools import setup, Extension\nsetup(name={:?}, version={:?}, python_requires='>=3.7', py_modules=[{module:?}]{ext})\n",
                p.name, p.version
            ),
        )
        .unwrap();
        dirs.push(dir);
    }
    // pip builds one version of a project per call: batch the packages into rounds of distinct
    // names.
    let mut rounds: Vec<Vec<&PathBuf>> = Vec::new();
    let mut names: Vec<Vec<String>> = Vec::new();
    for (p, dir) in pkgs.iter().zip(&dirs) {
        let key = p.name.to_lowercase().replace(['_', '.'], "-");
        match names.iter().position(|n| !n.contains(&key)) {
            Some(i) => {
                names[i].push(key);
                rounds[i].push(dir);
            }
            None => {
                names.push(vec![key]);
                rounds.push(vec![dir]);
            }
        }
    }
    for round in rounds {
        let mut c = Command::new("python3");
        pip_env(&mut c, work);
        let status = c
            .args([
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
            ])
            .arg("-w")
            .arg(out)
            .args(round)
            .status()
            .unwrap();
        assert!(status.success(), "pip wheel failed");
    }
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    wheels.sort();
    wheels
}

pub fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

/// The one wheel in `wheels` whose file name starts with `prefix`.
pub fn wheel<'a>(wheels: &'a [PathBuf], prefix: &str) -> &'a Path {
    let found: Vec<&PathBuf> = wheels
        .iter()
        .filter(|w| w.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    assert_eq!(found.len(), 1, "wheels starting with {prefix}: {found:?}");
    found[0]
}

pub fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// `kiln index publish`, asserting success; returns its stdout.
pub fn publish(store: &Path, dir: &Path) -> String {
    let out = kiln()
        .args(["index", "publish", "--store"])
        .arg(file_url(store))
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running `kiln index serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT/simple/`
    pub url: String,
}

impl Server {
    pub fn start(store: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_with_args(store, env, &[])
    }

    pub fn start_with_args(store: &Path, env: &[(&str, &str)], args: &[&str]) -> Server {
        let mut c = kiln();
        c.args(["index", "serve", "--listen", "127.0.0.1:0", "--store"])
            .arg(file_url(store))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        Server { child, url }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        self.url.trim_end_matches("/simple/").to_string()
    }

    /// The index URL with credentials in it (what pip and uv are given).
    pub fn url_with(&self, user: &str, password: &str) -> String {
        self.url
            .replacen("http://", &format!("http://{user}:{password}@"), 1)
    }
}

impl Server {
    /// SIGTERM, then the exit status (the server finishes in-flight requests and exits 0).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a command, returning (success, stdout+stderr).
pub fn run(c: &mut Command) -> (bool, String) {
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `import <module>; print(<module>.VERSION)` with `path` on PYTHONPATH (or in a venv's python).
pub fn installed_version(python: &Path, pythonpath: Option<&Path>, module: &str) -> String {
    let mut c = Command::new(python);
    if let Some(p) = pythonpath {
        c.env("PYTHONPATH", p);
    }
    c.env("PYTHONNOUSERSITE", "1");
    let out = c
        .args(["-c", &format!("import {module}; print({module}.VERSION)")])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import {module}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A `redis-server` on a free loopback port, with no persistence; killed when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        // Ask the kernel for a free port, then hand it to redis (it cannot bind port 0 itself).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup.sh installs it)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let pong = Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "ping"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
                .unwrap_or(false);
            if pong {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Redis {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Number of keys stored (ccache's remote entries).
    pub fn keys(&self) -> usize {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "dbsize"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
